"""One coordinator per config entry: it runs the entry's meter source.

The source is push: the coordinator consumes its frames in a config-entry
background task and hands each one to the entities with
``async_set_updated_data``. There is no polling and no ``util.Throttle``.

Every cumulative register goes through a :class:`~.core.guard.CounterGuard`
first: a reading that is lower, zero or an impossible jump never reaches an
entity, which keeps showing the last accepted value. The guards start from the
values the sensors saved at the last shutdown (restore state), so the first
telegram after a restart is judged too. Each good telegram is also fired as a
``smartmeter_reading`` event with the raw values (not recorded), and its
stamped sub-meter readings are booked at the meter's time.

A timer just before each 5-minute boundary lets the sensors write the counter
readings their write policy held back, so short-term statistics are exact.

A watchdog marks the meters stale when the link stays up but no good telegram
arrives (a re-keyed Smarty meter, a noisy line that breaks every CRC): the
entities go unavailable instead of showing old values as current, and a key
that stopped working starts a reauthentication flow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_time_interval, async_track_utc_time_change
from homeassistant.helpers.recorder import get_instance
from homeassistant.helpers.restore_state import async_get as async_get_restore_state
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from . import repairs
from .alerts import AlertHub, AlertOptions
from .const import (
    CONF_COUNTER_INTERVAL,
    CONF_DEADBAND,
    CONF_LIVE,
    CONF_MAX_GAS_FLOW,
    CONF_MAX_POWER,
    CONF_MAX_WATER_FLOW,
    CONF_MEASUREMENT_INTERVAL,
    CONF_METER_ID,
    CONF_TIME_ZONE,
    DEFAULT_COUNTER_INTERVAL,
    DEFAULT_DEADBAND,
    DEFAULT_LIVE,
    DEFAULT_MAX_GAS_FLOW,
    DEFAULT_MAX_POWER,
    DEFAULT_MAX_WATER_FLOW,
    DEFAULT_MEASUREMENT_INTERVAL,
    DOMAIN,
    EVENT_READING,
    IDLE_TIMEOUT,
    LOGGER,
    PROTOCOL_MBUS,
    RAW_HISTORY,
)
from .core.guard import REJECTED, UNIT_FACTORS, CounterGuard, GuardLimits, Verdict
from .core.models import Frame, Medium, Meter, Register, RegisterValue
from .core.obis import READING_KEY
from .core.policy import WritePolicy
from .core.source import MeterSource
from .statistics import MIN_YEAR, MeterTimeStatistics

type SmartMeterConfigEntry = ConfigEntry[SmartMeterCoordinator]
type RegisterId = tuple[str, str]  # (meter ID, register key)

# The medium of a meter-reading register (the others are electrical energy).
READING_MEDIA: dict[str, Medium] = {key: medium for medium, key in READING_KEY.items()}
# Restore-state key of a counter's guard (value, unit, time), saved by the sensors.
RESTORE_GUARD = "guard"


def write_policy(options: Mapping[str, Any]) -> WritePolicy:
    """The write policy an entry's options ask for."""
    return WritePolicy(
        live=bool(options.get(CONF_LIVE, DEFAULT_LIVE)),
        counter_interval=float(options.get(CONF_COUNTER_INTERVAL, DEFAULT_COUNTER_INTERVAL)),
        measurement_interval=float(options.get(CONF_MEASUREMENT_INTERVAL, DEFAULT_MEASUREMENT_INTERVAL)),
        deadband=float(options.get(CONF_DEADBAND, DEFAULT_DEADBAND)) / 100,
    )


def max_rates(options: Mapping[str, Any]) -> dict[Medium, Decimal]:
    """The maximum plausible power or flow per medium (per hour) an entry's options set."""
    power = Decimal(str(options.get(CONF_MAX_POWER, DEFAULT_MAX_POWER)))
    gas = Decimal(str(options.get(CONF_MAX_GAS_FLOW, DEFAULT_MAX_GAS_FLOW)))
    water = Decimal(str(options.get(CONF_MAX_WATER_FLOW, DEFAULT_MAX_WATER_FLOW)))
    return {Medium.ELECTRICITY: power, Medium.GAS: gas, Medium.WATER: water, Medium.HOT_WATER: water}


@dataclass(frozen=True, slots=True)
class SmartMeterData:
    """What the entities read: the latest (guarded) state of every meter on the link."""

    meters: dict[str, Meter]
    frame: Frame
    received: datetime = field(default_factory=dt_util.utcnow)
    # The meters this frame reported (an M-Bus or MQTT frame is one meter of many).
    changed: tuple[str, ...] = ()


@dataclass(slots=True)
class _Seed:
    """A counter's last accepted reading from before a restart."""

    value: Decimal
    unit: str | None
    time: float


class RegisterGuards:
    """One counter guard per (meter, cumulative register) of an entry's link."""

    def __init__(self, counter_keys: frozenset[str], rates: Mapping[Medium, Decimal]) -> None:
        """Guard the registers ``counter_keys`` with the maximum rates ``rates``."""
        self.counter_keys = counter_keys
        self.rates = dict(rates)
        self.guards: dict[RegisterId, CounterGuard] = {}
        self.units: dict[RegisterId, str | None] = {}
        self._accepted: dict[RegisterId, Register] = {}
        self._seeds: dict[RegisterId, _Seed] = {}
        self.rejected: dict[Verdict, int] = {}
        self.resets: list[dict[str, str | None]] = []
        self._counters: dict[tuple[str, str | None], bool] = {}  # (key, unit) -> guarded

    def _guarded(self, reg: Register) -> bool:
        """Whether a register is a counter reading the guard judges."""
        kind = (reg.key, reg.unit)
        counter = self._counters.get(kind)
        if counter is None:
            if reg.key not in self.counter_keys:
                counter = False
            elif reg.unit is None:
                counter = reg.key in READING_MEDIA  # a gas or water reading sent without its unit
            else:
                counter = reg.unit.lower() in UNIT_FACTORS
            self._counters[kind] = counter
        if not counter or not isinstance(reg.value, Decimal):
            return False
        # A placeholder stamp is no reading (the sensor shows none).
        return reg.timestamp is None or reg.timestamp.year >= MIN_YEAR

    def seed(self, meter_id: str, key: str, value: Decimal, unit: str | None, time: float) -> None:
        """Start a register's guard from a reading saved before a restart."""
        self._seeds[(meter_id, key)] = _Seed(value, unit, time)

    @callback
    def async_restore(self, hass: HomeAssistant, entry_id: str) -> None:
        """Seed the guards from what the entry's sensors saved at the last shutdown or unload."""
        last_states = async_get_restore_state(hass).last_states
        for entity in er.async_entries_for_config_entry(er.async_get(hass), entry_id):
            stored = last_states.get(entity.entity_id)
            if stored is None or stored.extra_data is None:
                continue
            saved = stored.extra_data.as_dict().get(RESTORE_GUARD)
            if not isinstance(saved, dict):
                continue
            try:
                self.seed(
                    str(saved["meter_id"]),
                    str(saved["register"]),
                    Decimal(str(saved["value"])),
                    saved.get("unit"),
                    float(saved["time"]),
                )
            except (KeyError, TypeError, ValueError, InvalidOperation):
                LOGGER.debug("Ignored unreadable saved guard of %s: %s", entity.entity_id, saved)

    def saved(self, meter_id: str, key: str) -> dict[str, str | float | None] | None:
        """A register's guard state for restore state (``None`` when it has none)."""
        guard = self.guards.get((meter_id, key))
        if guard is None or guard.value is None or guard.time is None:
            return None
        return {
            "meter_id": meter_id,
            "register": key,
            "value": str(guard.value),
            "unit": self.units.get((meter_id, key)),
            "time": guard.time,
        }

    def _guard(self, meter: Meter, reg: Register) -> CounterGuard:
        rid = (meter.id, reg.key)
        guard = self.guards.get(rid)
        if guard is None:
            medium = READING_MEDIA.get(reg.key, Medium.ELECTRICITY)
            guard = CounterGuard(GuardLimits.for_register(medium, reg.unit, self.rates.get(medium)))
            seed = self._seeds.pop(rid, None)
            if seed is not None and seed.unit == reg.unit:
                guard.seed(seed.value, seed.time)
            self.guards[rid] = guard
            self.units[rid] = reg.unit
        return guard

    def check(self, meter: Meter, time: float) -> tuple[Meter, list[tuple[str, Decimal | None, Decimal]]]:
        """The meter with rejected readings replaced by the last accepted ones, and its resets.

        A reset is ``(register key, old value, new value)``: a new series that
        persisted (a replaced meter or a reset register).
        """
        registers: list[Register] = []
        resets: list[tuple[str, Decimal | None, Decimal]] = []
        changed = False
        for reg in meter.registers:
            if not self._guarded(reg):
                registers.append(reg)
                continue
            assert isinstance(reg.value, Decimal)
            guard = self._guard(meter, reg)
            old = guard.value
            verdict = guard.check(reg.value, time)
            if verdict in REJECTED:
                self.rejected[verdict] = self.rejected.get(verdict, 0) + 1
                LOGGER.debug(
                    "Rejected %s %s of meter %s (%s; last accepted %s)",
                    reg.key,
                    reg.value,
                    meter.id,
                    verdict,
                    guard.value,
                )
                registers.append(self._accepted.get((meter.id, reg.key)) or replace(reg, value=guard.value))
                changed = True
                continue
            if verdict is Verdict.RESET:
                LOGGER.debug("New series of %s of meter %s: %s after %s", reg.key, meter.id, reg.value, old)
                self.resets.append(
                    {"meter_id": meter.id, "register": reg.key, "old": str(old), "new": str(reg.value)}
                )
                resets.append((reg.key, old, reg.value))
            self._accepted[(meter.id, reg.key)] = reg
            registers.append(reg)
        if not changed:
            return meter, resets
        return replace(meter, registers=tuple(registers)), resets

    def as_dict(self) -> dict[str, Any]:
        """Counters for diagnostics."""
        return {
            "registers": len(self.guards),
            "rejected": {verdict.value: count for verdict, count in sorted(self.rejected.items())},
            "resets": list(self.resets),
        }


def _event_value(value: RegisterValue) -> float | str | None:
    """A register value as the reading event carries it."""
    if isinstance(value, Decimal | int):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class SmartMeterCoordinator(DataUpdateCoordinator[SmartMeterData]):
    """Runs one meter source and publishes its (guarded) frames."""

    config_entry: SmartMeterConfigEntry

    @staticmethod
    def clock() -> datetime:
        """The time readings are stamped with (for the guard and the write policy)."""
        return dt_util.utcnow()

    def __init__(
        self,
        hass: HomeAssistant,
        entry: SmartMeterConfigEntry,
        source: MeterSource,
        counter_keys: frozenset[str] = frozenset(),
        *,
        idle_timeout: float | None = None,
    ) -> None:
        """Set up the coordinator for one config entry's source."""
        super().__init__(hass, LOGGER, config_entry=entry, name=DOMAIN)
        self.source = source
        # None: the push default (IDLE_TIMEOUT); polled meters answer once per interval.
        self.idle_timeout = idle_timeout
        self.frames: deque[bytes] = deque(maxlen=RAW_HISTORY)
        self.policy = write_policy(entry.options)
        self.guards = RegisterGuards(counter_keys, max_rates(entry.options))
        self.statistics = MeterTimeStatistics(hass, entry)
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubs: list[CALLBACK_TYPE] = []
        self._boundary_listeners: list[Callable[[float], None]] = []
        self._last_frame = 0.0
        self._booked: dict[str, tuple[object, ...]] = {}
        self.last_seen: dict[
            str, float
        ] = {}  # meter ID -> loop time of its last good frame  # meter ID -> stamped readings last booked
        # The main meter on the link (a new identifier in its place is a new meter).
        self._main_id: str | None = entry.data.get(CONF_METER_ID)
        self.stale = False
        zone = entry.options.get(CONF_TIME_ZONE) or hass.config.time_zone
        self.alerts = AlertHub(
            hass,
            entry,
            AlertOptions.from_options(entry.options, IDLE_TIMEOUT if idle_timeout is None else idle_timeout),
            tz=ZoneInfo(zone),
            coordinator=self,
        )

    @property
    def connected(self) -> bool:
        """Whether the link delivers good telegrams now."""
        return self.source.connected and not self.stale

    def meter_reporting(self, meter_id: str) -> bool:
        """Whether this meter answered lately (a polled bus: one silent slave among others)."""
        if self.idle_timeout is None:
            return True  # push links: the link's state says it for all meters
        seen = self.last_seen.get(meter_id)
        return seen is not None and self.hass.loop.time() - seen <= self.idle_timeout

    @callback
    def async_start(self) -> None:
        """Seed the guards, then start reading in a background task owned by the config entry.

        The alert hub's stored state is loaded before (:meth:`AlertHub.async_load`).
        """
        self.guards.async_restore(self.hass, self.config_entry.entry_id)
        self.alerts.async_start()
        if "recorder" in self.hass.config.components:
            # The raw-value event is for automations, not for the database.
            get_instance(self.hass).exclude_event_types.add(EVENT_READING)
        self._last_frame = self.hass.loop.time()
        self._task = self.config_entry.async_create_background_task(
            self.hass, self._run(), f"{DOMAIN} reader {self.config_entry.title}"
        )
        self._unsubs = [
            async_track_time_interval(self.hass, self._async_watchdog, timedelta(seconds=IDLE_TIMEOUT / 4)),
            # Just before each 5-minute boundary (the short-term statistics period).
            async_track_utc_time_change(self.hass, self._async_boundary, minute=range(4, 60, 5), second=59),
        ]

    @callback
    def async_add_boundary_listener(self, listener: Callable[[float], None]) -> CALLBACK_TYPE:
        """Call ``listener(time)`` just before each 5-minute boundary; returns the remover."""
        self._boundary_listeners.append(listener)

        @callback
        def _remove() -> None:
            self._boundary_listeners.remove(listener)

        return _remove

    @callback
    def _async_boundary(self, now: datetime) -> None:
        """A 5-minute boundary is near: the sensors write what they held back."""
        time = now.timestamp()
        for listener in list(self._boundary_listeners):
            listener(time)

    @callback
    def _async_watchdog(self, _now: datetime) -> None:
        """Mark the meters stale when no good telegram came for a while."""
        limit = IDLE_TIMEOUT if self.idle_timeout is None else self.idle_timeout
        if self.stale or self.hass.loop.time() - self._last_frame <= limit:
            return
        self.stale = True
        if self.source.connected:  # a dropped link was reported by the source already
            LOGGER.warning(
                "No valid telegram from %s for %.0f s: %s",
                self.config_entry.title,
                limit,
                self.source.stats.last_error,
            )
        if (key_error := getattr(self.source, "key_error", None)) is not None:
            repairs.async_report_wrong_key(self.hass, self.config_entry, str(key_error))
            self.config_entry.async_start_reauth(self.hass)
        if self.data is not None:
            self.async_update_listeners()

    async def async_wait_first(self, timeout: float) -> bool:
        """Wait for the first good frame; ``False`` on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._first.wait()
        except TimeoutError:
            return False
        return True

    async def async_stop(self) -> None:
        """Stop reading and release the link."""
        await self.alerts.async_stop()
        unsubs, self._unsubs = self._unsubs, []
        for unsub in unsubs:
            unsub()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.source.close()

    async def _run(self) -> None:
        """Hand every frame to the entities; a bug on one frame must not stop the reader."""
        try:
            async for frame in self.source.frames():
                try:
                    self.async_handle_frame(frame)
                except Exception:
                    LOGGER.exception("Error handling a telegram from %s", self.config_entry.title)
        except Exception:
            LOGGER.exception("Reading %s stopped", self.config_entry.title)
            self.last_update_success = False
            self.async_update_listeners()

    @callback
    def async_link_status(self, connected: bool) -> None:
        """The source reports the link going up or down: refresh availability."""
        self.alerts.async_link_status(connected)
        if self.data is not None:
            self.async_update_listeners()

    @callback
    def async_handle_frame(self, frame: Frame) -> None:
        """Guard one good frame, merge it into the meters' state and notify entities."""
        received = self.clock()
        time = received.timestamp()
        self._last_frame = self.hass.loop.time()
        if self.stale:
            self.stale = False
            LOGGER.info("Valid telegrams from %s again", self.config_entry.title)
            repairs.async_clear_wrong_key(self.hass, self.config_entry.entry_id)
        meters = dict(self.data.meters) if self.data is not None else {}
        raw = _unique_meters(frame)
        if frame.protocol != PROTOCOL_MBUS:  # an M-Bus frame is one slave of many, each its own main meter
            self._check_new_meter(raw)
        for meter in raw:
            self.last_seen[meter.id] = self.hass.loop.time()
        guarded: list[Meter] = []
        for meter in raw:
            checked, resets = self.guards.check(meter, time)
            for key, old, new in resets:
                self._report_replacement(meter.id, key, old, new)
            meters[meter.id] = checked
            guarded.append(checked)
        self.frames.append(frame.raw)
        self.async_set_updated_data(
            SmartMeterData(
                meters=meters, frame=frame, received=received, changed=tuple(meter.id for meter in guarded)
            )
        )
        for meter in guarded:
            self.hass.bus.async_fire(
                EVENT_READING,
                {
                    "entry_id": self.config_entry.entry_id,
                    "meter_id": meter.id,
                    "values": {
                        reg.key: value
                        for reg in meter.registers
                        if (value := _event_value(reg.value)) is not None
                    },
                },
            )
        self._book(raw)
        self._first.set()
        self.alerts.async_feed(guarded, received)

    @callback
    def _book(self, meters: list[Meter]) -> None:
        """Book the stamped sub-meter readings at the meter's time (external statistics)."""
        if "recorder" not in self.hass.config.components:
            return
        for meter in meters:
            if not meter.channel:
                continue
            stamps = tuple(
                (reg.key, reg.timestamp, reg.value, reg.history[-1] if reg.history else None)
                for reg in meter.registers
                if reg.timestamp is not None or reg.history
            )
            # Telegrams repeat a stamped reading until the meter's next one.
            if stamps and self._booked.get(meter.id) != stamps:
                self._booked[meter.id] = stamps
                self.config_entry.async_create_background_task(
                    self.hass, self.statistics.async_book(meter), f"{DOMAIN} statistics {meter.id}"
                )

    @callback
    def _check_new_meter(self, meters: list[Meter]) -> None:
        """A new equipment identifier where the main meter was: the meter was swapped."""
        main = next((meter for meter in meters if meter.channel == 0 and meter.parent_id is None), None)
        if main is None:
            return
        old, self._main_id = self._main_id, main.id
        if old is None or old == main.id or any(meter.id == old for meter in meters):
            return
        LOGGER.info("Meter %s on %s replaced meter %s", main.id, self.config_entry.title, old)
        repairs.async_report_new_meter(self.hass, self.config_entry, old, main.id)

    @callback
    def _report_replacement(self, meter_id: str, key: str, old: Decimal | None, new: Decimal) -> None:
        """A counter started a new series that persisted: ask the user to confirm the replacement."""
        LOGGER.info("%s of meter %s started a new series at %s (was %s)", key, meter_id, new, old)
        repairs.async_report_replacement(self.hass, self.config_entry, meter_id, key, old, new)

    @callback
    def async_confirm_replacement(self, meter_id: str, register_key: str) -> None:
        """The user confirmed a replacement in the repair flow: it is no longer pending."""
        self.guards.resets = [
            reset
            for reset in self.guards.resets
            if (reset["meter_id"], reset["register"]) != (meter_id, register_key)
        ]


def _unique_meters(frame: Frame) -> list[Meter]:
    """The frame's meters, a sub-meter that repeats an earlier meter's ID renamed by its channel.

    Meters are keyed by ID (devices, unique IDs); a gas meter reporting the
    electricity meter's ID (seen in anonymised telegrams) must not replace it.
    """
    seen: set[str] = set()
    out: list[Meter] = []
    for meter in frame.meters:
        unique = meter
        if meter.id in seen and meter.parent_id is not None:
            unique = replace(meter, id=f"{meter.parent_id}-mbus{meter.channel}")
        seen.add(unique.id)
        out.append(unique)
    return out
