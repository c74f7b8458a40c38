"""Meter sources on Home Assistant's MQTT client: Zigbee2MQTT and wmbusmeters.

Both implement :class:`~.core.source.MeterSource`: the subscription callbacks
decode each message with the pure core parsers and put the frames on a queue
that :meth:`frames` yields. A message that is too large, not JSON, lacks a
field, has a wrong type or an impossible value (NaN, a negative counter), and
a Zigbee2MQTT device list that changed shape, is ignored with a debug log and
counted (:attr:`LinkStats.frames_undecodable`, ``last_error`` and the
per-reason :attr:`ignored` counters shown in diagnostics); it never raises
into the MQTT client and never becomes a value.

* :class:`Zigbee2MqttSource` follows ``<base>/bridge/devices`` (retained) to
  map the selected IEEE addresses to their current friendly names and
  subscribes ``<base>/<friendly_name>`` of each: a device renamed in
  Zigbee2MQTT is followed to its new topic, its meter ID (the IEEE address)
  and entities stay.
* :class:`WmbusmetersSource` subscribes wmbusmeters' JSON topic (default
  ``wmbusmeters/#``) and keeps the telegrams of the selected meter IDs.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from homeassistant.components import mqtt
from homeassistant.components.mqtt import ReceiveMessage
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady

from .const import DOMAIN, LOGGER
from .coordinator import SmartMeterConfigEntry, SmartMeterCoordinator, SmartMeterData
from .core.errors import DecodeError
from .core.models import Frame, Integrity, LinkStats, Meter
from .core.source import MeterSource
from .core.wmbusmeters import decode_wmbusmeters
from .core.zigbee2mqtt import (
    MAX_PAYLOAD,
    PayloadTooLarge,
    Z2MDevice,
    decode_state,
    parse_bridge_devices,
)

# Zigbee2MQTT's device list carries every device's exposes: about 5-10 kB per
# device, so a large network's list is far above a state message's limit.
MAX_DEVICE_LIST = 16 * 1024 * 1024
# Frames waiting for the coordinator; more means it stalled: drop and count.
QUEUE_SIZE = 1000
DEFAULT_Z2M_BASE = "zigbee2mqtt"
DEFAULT_WMBUS_TOPIC = "wmbusmeters/#"
# Zigbee reports an unchanged counter at its maximum reporting interval (1 h by
# default); wM-Bus meters send every few seconds to minutes. A meter (or the
# whole entry) is stale only after three such intervals; a lost broker
# connection shows at once.
MQTT_IDLE_TIMEOUT = 3 * 3600.0


def parse_device_list(payload: bytes | str) -> list[Z2MDevice]:
    """The metering devices of a ``bridge/devices`` payload of any size up to :data:`MAX_DEVICE_LIST`.

    Zigbee2MQTT's list carries every device's exposes (5-10 kB per device). A
    list larger than the core parser reads at once is split into its entries
    here, each parsed alone (an entry too large even alone is skipped, as the
    core parser skips a broken one). DecodeError when the payload is no JSON
    array.
    """
    if len(payload) > MAX_DEVICE_LIST:
        raise DecodeError(f"bridge/devices: {len(payload)} bytes, over {MAX_DEVICE_LIST}")
    try:
        return parse_bridge_devices(payload)
    except PayloadTooLarge:
        pass
    try:
        entries = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise DecodeError(f"bridge/devices: not JSON ({err})") from err
    if not isinstance(entries, list):
        raise DecodeError("bridge/devices: not a JSON array")
    devices: dict[str, Z2MDevice] = {}
    for entry in entries:
        try:
            parsed = parse_bridge_devices(json.dumps([entry]))
        except DecodeError:
            continue
        for device in parsed:
            devices.setdefault(device.ieee, device)
    return list(devices.values())


def _valid_topic_part(name: str) -> bool:
    """Whether a friendly name can be subscribed as an exact topic level."""
    return bool(name) and not any(char in name for char in "+#\0")


class _MqttSource:
    """What both MQTT sources share: the queue, the counters, the subscriptions."""

    protocol = ""

    def __init__(self, hass: HomeAssistant, on_status: Callable[[bool], None] | None = None) -> None:
        self.hass = hass
        self.stats = LinkStats()
        # Ignored messages by reason (diagnostics); errors also count in stats.
        self.ignored: Counter[str] = Counter()
        self.on_status = on_status
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._subs: dict[str, CALLBACK_TYPE] = {}
        self._unsub_status: CALLBACK_TYPE | None = None
        self._started = False

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up (and we are subscribed)."""
        if not self._started or mqtt.DATA_MQTT not in self.hass.data:
            return False
        return mqtt.is_connected(self.hass)

    def diagnostics(self) -> dict[str, Any]:
        """Per-reason counters and the topics followed."""
        return {"ignored": dict(sorted(self.ignored.items())), "topics": sorted(self._subs)}

    async def async_start(self) -> None:
        """Subscribe; :class:`ConfigEntryNotReady` when the MQTT integration is not available."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_available")
        self._started = True
        self._unsub_status = mqtt.async_subscribe_connection_status(self.hass, self._async_status)
        await self._async_subscribe_initial()
        if mqtt.is_connected(self.hass):
            self.stats.connects += 1

    async def _async_subscribe_initial(self) -> None:
        raise NotImplementedError

    async def _async_subscribe(self, topic: str, handler: Callable[[ReceiveMessage], None]) -> None:
        self._subs[topic] = await mqtt.async_subscribe(self.hass, topic, handler, 0, encoding=None)

    @callback
    def _unsubscribe(self, topic: str) -> None:
        unsub = self._subs.pop(topic, None)
        if unsub is not None:
            unsub()

    @callback
    def _async_status(self, connected: bool) -> None:
        if connected:
            self.stats.connects += 1
        else:
            self.stats.disconnects += 1
        if self.on_status is not None:
            self.on_status(connected)

    @callback
    def _ignore(self, reason: str, topic: str, detail: str, *, error: bool = True) -> None:
        """Count and log an ignored message (debug only: bad input is not our error)."""
        self.ignored[reason] += 1
        if error:
            self.stats.frames_undecodable += 1
            self.stats.last_error = f"{topic}: {detail}"[:300]
        LOGGER.debug("Ignored MQTT message on %s (%s): %s", topic, reason, detail)

    @callback
    def _too_large(self, msg: ReceiveMessage, limit: int) -> bool:
        size = len(msg.payload)
        if size > limit:
            self._ignore("too_large", msg.topic, f"{size} bytes (limit {limit})")
            return True
        return False

    @callback
    def _push(self, frame: Frame) -> None:
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._ignore("queue_full", frame.protocol, "the coordinator does not keep up")
            return
        self.stats.frames_ok += 1

    async def frames(self) -> AsyncIterator[Frame]:
        """Yield the decoded frames of the selected meters until cancelled."""
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        """Unsubscribe everything (idempotent)."""
        for topic in list(self._subs):
            self._unsubscribe(topic)
        if self._unsub_status is not None:
            self._unsub_status()
            self._unsub_status = None
        self._started = False


class Zigbee2MqttSource(_MqttSource):
    """The selected Zigbee2MQTT devices, keyed by IEEE address."""

    protocol = "zigbee2mqtt"

    def __init__(
        self,
        hass: HomeAssistant,
        base: str,
        ieee_addresses: Iterable[str],
        on_status: Callable[[bool], None] | None = None,
    ) -> None:
        """Follow the devices ``ieee_addresses`` of the Zigbee2MQTT instance at topic ``base``."""
        super().__init__(hass, on_status)
        self.base = base.rstrip("/")
        self.selected = frozenset(ieee_addresses)
        self.devices: dict[str, Z2MDevice] = {}  # IEEE address -> device as last listed
        self._by_topic: dict[str, str] = {}  # state topic -> IEEE address
        self._bridge_topic = f"{self.base}/bridge/devices"
        self._update_lock = asyncio.Lock()
        self._follow_task: asyncio.Task[None] | None = None

    async def _async_subscribe_initial(self) -> None:
        await self._async_subscribe(self._bridge_topic, self._async_devices_received)

    @callback
    def _async_devices_received(self, msg: ReceiveMessage) -> None:
        if self._too_large(msg, MAX_DEVICE_LIST):
            return
        try:
            listed = parse_device_list(msg.payload)  # type: ignore[arg-type]
        except DecodeError as err:
            # Keep following the devices as last listed.
            self._ignore("bad_device_list", msg.topic, str(err))
            return
        devices = {device.ieee: device for device in listed if device.ieee in self.selected}
        for ieee in self.selected - devices.keys():
            if ieee not in self.devices:
                LOGGER.debug("Device %s is not in Zigbee2MQTT's device list on %s", ieee, self.base)
        # A device missing from a list keeps its last known topic (a partial list
        # must not silence it); a listed device follows its current name.
        merged = self.devices | devices
        self._follow_task = self.hass.async_create_background_task(
            self._async_follow(merged), f"{DOMAIN} z2m {self.base}"
        )

    async def _async_follow(self, devices: dict[str, Z2MDevice]) -> None:
        """Subscribe the state topics of ``devices``, unsubscribe the ones no longer used."""
        async with self._update_lock:
            if not self._started:
                return
            by_topic: dict[str, str] = {}
            for ieee, device in devices.items():
                if not _valid_topic_part(device.friendly_name):
                    self._ignore("bad_friendly_name", self._bridge_topic, repr(device.friendly_name))
                    continue
                by_topic[f"{self.base}/{device.friendly_name}"] = ieee
            self.devices = devices
            for topic in list(self._by_topic):
                if by_topic.get(topic) != self._by_topic[topic]:
                    LOGGER.debug("No longer following %s", topic)
                    self._unsubscribe(topic)
            old = self._by_topic
            self._by_topic = by_topic
            for topic, ieee in by_topic.items():
                if topic not in old or topic not in self._subs:
                    LOGGER.debug("Following %s for %s", topic, ieee)
                    await self._async_subscribe(topic, self._async_state_received)

    async def close(self) -> None:
        """Unsubscribe everything, also what a device-list update is subscribing now."""
        async with self._update_lock:
            await super().close()

    @callback
    def _async_state_received(self, msg: ReceiveMessage) -> None:
        ieee = self._by_topic.get(msg.topic)
        device = self.devices.get(ieee) if ieee is not None else None
        if device is None:  # renamed away while the message was in flight
            return
        if self._too_large(msg, MAX_PAYLOAD):
            return
        try:
            frame = decode_state(device, msg.payload)  # type: ignore[arg-type]
        except DecodeError as err:
            self._ignore("bad_state", msg.topic, str(err))
            return
        if not frame.meters:
            self._ignore("no_reading", msg.topic, "no metering value", error=False)
            return
        self._push(frame)


class WmbusmetersSource(_MqttSource):
    """The selected meters of wmbusmeters' MQTT JSON output, keyed by meter ID."""

    protocol = "wmbusmeters"

    def __init__(
        self,
        hass: HomeAssistant,
        topic: str,
        meter_ids: Iterable[str],
        on_status: Callable[[bool], None] | None = None,
    ) -> None:
        """Follow the meters ``meter_ids`` among the telegrams on ``topic`` (wildcards allowed)."""
        super().__init__(hass, on_status)
        self.topic = topic
        self.selected = frozenset(meter_ids)

    async def _async_subscribe_initial(self) -> None:
        await self._async_subscribe(self.topic, self._async_received)

    @callback
    def _async_received(self, msg: ReceiveMessage) -> None:
        if self._too_large(msg, MAX_PAYLOAD):
            return
        try:
            frame = decode_wmbusmeters(msg.payload)  # type: ignore[arg-type]
        except DecodeError as err:
            self._ignore("bad_telegram", msg.topic, str(err))
            return
        main = frame.main
        if main is None:
            self._ignore("no_reading", msg.topic, "no meter", error=False)
            return
        if main.id not in self.selected:
            self.ignored["other_meter"] += 1  # another meter in range: not an error
            return
        self._push(frame)


class MqttCoordinator(SmartMeterCoordinator):
    """The coordinator of an MQTT entry: several independent meters, none of them "the" meter.

    Each message is one meter's frame. The entry is ready once subscribed (a
    meter may report only every few minutes), so the coordinator starts with
    no meters, and a frame of another meter is not a replaced main meter.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        entry: SmartMeterConfigEntry,
        source: MeterSource,
        counter_keys: frozenset[str] = frozenset(),
        *,
        idle_timeout: float | None = MQTT_IDLE_TIMEOUT,
    ) -> None:
        """Start with no meter: entities appear with each meter's first message."""
        super().__init__(hass, entry, source, counter_keys, idle_timeout=idle_timeout)
        self._changed: frozenset[str] | None = None
        protocol = getattr(source, "protocol", "mqtt")
        self.data = SmartMeterData(meters={}, frame=Frame(protocol, Integrity.ABSENT, ()))

    @callback
    def _check_new_meter(self, meters: list[Meter]) -> None:
        """Every selected device is its own meter: no main meter to replace."""

    @callback
    def async_handle_frame(self, frame: Frame) -> None:
        """Handle one meter's message, notifying only that meter's entities (and the platform)."""
        self._changed = frozenset(meter.id for meter in frame.meters)
        try:
            super().async_handle_frame(frame)
        finally:
            self._changed = None

    @callback
    def async_update_listeners(self) -> None:
        """Notify the listeners; during a message, not the entities of the other meters.

        An entry may follow hundreds of meters, each reporting on its own: an
        entity whose meter did not report has nothing new to offer its write
        policy (its own next message comes within its report interval).
        Availability changes (broker connection, staleness) reach every entity.
        """
        changed = self._changed
        if changed is None:
            super().async_update_listeners()
            return
        for update_callback, _context in list(self._listeners.values()):
            meter_id = getattr(getattr(update_callback, "__self__", None), "meter_id", None)
            if meter_id is None or meter_id in changed:
                update_callback()


async def async_listen_z2m(hass: HomeAssistant, base: str, timeout: float) -> list[Z2MDevice] | None:
    """The devices in Zigbee2MQTT's retained device list at ``base`` (``None``: no list came).

    A list that does not parse is logged and waited past (another may follow).
    """
    topic = f"{base.rstrip('/')}/bridge/devices"
    found: asyncio.Future[list[Z2MDevice]] = hass.loop.create_future()

    @callback
    def _received(msg: ReceiveMessage) -> None:
        if found.done() or len(msg.payload) > MAX_DEVICE_LIST:
            return
        try:
            found.set_result(parse_device_list(msg.payload))  # type: ignore[arg-type]
        except DecodeError as err:
            LOGGER.debug("Ignored device list on %s: %s", topic, err)

    unsub = await mqtt.async_subscribe(hass, topic, _received, 0, encoding=None)
    try:
        async with asyncio.timeout(timeout):
            return await found
    except TimeoutError:
        return None
    finally:
        unsub()


async def async_listen_wmbus(hass: HomeAssistant, topic: str, timeout: float) -> dict[str, Frame]:
    """The meters heard on wmbusmeters' ``topic`` within ``timeout`` seconds: meter ID -> last frame."""
    found: dict[str, Frame] = {}

    @callback
    def _received(msg: ReceiveMessage) -> None:
        if len(msg.payload) > MAX_PAYLOAD:
            return
        try:
            frame = decode_wmbusmeters(msg.payload)  # type: ignore[arg-type]
        except DecodeError as err:
            LOGGER.debug("Ignored telegram on %s: %s", msg.topic, err)
            return
        if frame.main is not None:
            found[frame.main.id] = frame

    unsub = await mqtt.async_subscribe(hass, topic, _received, 0, encoding=None)
    try:
        await asyncio.sleep(timeout)
    finally:
        unsub()
    return found
