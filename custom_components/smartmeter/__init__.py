"""The smartmeter integration: smart meters on every link, as Energy-dashboard sensors."""

from __future__ import annotations

import math
from typing import Any, cast
from zoneinfo import ZoneInfo

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, device_registry as dr, entity_registry as er
from homeassistant.helpers.typing import ConfigType

from .cloud import CloudConfigEntry, CloudCoordinator, device_id, make_client, provider_budget
from .const import (
    CLOUD_PROTOCOLS,
    CONF_ADDRESSES,
    CONF_BASE_TOPIC,
    CONF_BAUDRATE,
    CONF_BYTESIZE,
    CONF_DEVICES,
    CONF_ENTITIES,
    CONF_KEY,
    CONF_METERS,
    CONF_PARITY,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_READOUT,
    CONF_STOPBITS,
    CONF_TIME_ZONE,
    CONF_TOPIC,
    CONF_URL,
    DEFAULT_POLL_INTERVAL,
    DOMAIN,
    FAILED_SETUPS,
    FIRST_FRAME_TIMEOUT,
    IDLE_TIMEOUT,
    LOGGER,
    OPTIONS_FLOW_RELOADS,
    PROTOCOL_DSMR,
    PROTOCOL_ENTITY,
    PROTOCOL_IEC,
    PROTOCOL_MBUS,
    PROTOCOL_PLANNER,
    PROTOCOL_WMBUS,
    PROTOCOL_Z2M,
)
from .coordinator import SmartMeterConfigEntry, SmartMeterCoordinator
from .core.smarty import parse_key
from .core.source import IecReadoutSource, MbusSource, SerialSettings, StreamSource
from .entity_source import EntitySource, FollowedEntity, describe, meter_id_for
from .mqtt_source import (
    DEFAULT_WMBUS_TOPIC,
    DEFAULT_Z2M_BASE,
    MqttCoordinator,
    WmbusmetersSource,
    Zigbee2MqttSource,
)
from .repairs import async_clear_wrong_key, async_report_wrong_key
from .sensor import COUNTER_KEYS

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]
PLANNER_PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the planner's actions (once, whether or not a planner entry is loaded)."""
    from .services import async_setup_services  # noqa: PLC0415 - the planner loads on use

    async_setup_services(hass)
    return True


type Source = (
    StreamSource | IecReadoutSource | MbusSource | Zigbee2MqttSource | WmbusmetersSource | EntitySource
)


def _followed(hass: HomeAssistant, entity_ids: list[str]) -> list[FollowedEntity]:
    """What each chosen entity feeds: from its state, or its registry entry before it has one."""
    registry = er.async_get(hass)
    followed: list[FollowedEntity] = []
    for entity_id in entity_ids:
        state = hass.states.get(entity_id)
        if state is None and (entry := registry.async_get(entity_id)) is not None:
            attributes = {
                "device_class": entry.device_class or entry.original_device_class,
                "unit_of_measurement": entry.unit_of_measurement,
            }
            state = State(entity_id, STATE_UNKNOWN, attributes)
        found = describe(state) if state is not None else None
        if found is None:
            LOGGER.warning(
                "%s is not an energy, gas, water or power sensor (any more): not followed", entity_id
            )
            continue
        followed.append(FollowedEntity(entity_id, meter_id_for(hass, entity_id), *found))
    return followed


def build_source(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> Source:
    """The meter source an entry describes: a push stream, an IEC readout, an M-Bus master or MQTT."""
    data = entry.data
    if data.get(CONF_PROTOCOL) == PROTOCOL_ENTITY:
        return EntitySource(hass, _followed(hass, list(data[CONF_ENTITIES])))
    if data.get(CONF_PROTOCOL) == PROTOCOL_Z2M:
        return Zigbee2MqttSource(hass, data.get(CONF_BASE_TOPIC, DEFAULT_Z2M_BASE), data[CONF_DEVICES])
    if data.get(CONF_PROTOCOL) == PROTOCOL_WMBUS:
        return WmbusmetersSource(hass, data.get(CONF_TOPIC, DEFAULT_WMBUS_TOPIC), data[CONF_METERS])
    key_text = data.get(CONF_KEY)
    zone = ZoneInfo(entry.options.get(CONF_TIME_ZONE) or hass.config.time_zone)
    protocol = data.get(CONF_PROTOCOL, PROTOCOL_DSMR)
    settings = SerialSettings(
        baudrate=data.get(CONF_BAUDRATE, 115200),
        bytesize=data.get(CONF_BYTESIZE, 8),
        parity=data.get(CONF_PARITY, "N"),
        stopbits=data.get(CONF_STOPBITS, 1),
    )
    interval = float(entry.options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL))
    if protocol == PROTOCOL_MBUS:
        return MbusSource(
            data[CONF_URL], settings, addresses=list(data[CONF_ADDRESSES]), interval=interval, tz=zone
        )
    if protocol == PROTOCOL_IEC and data.get(CONF_READOUT):
        return IecReadoutSource(data[CONF_URL], interval=interval, tz=zone)
    return StreamSource(
        data[CONF_URL],
        settings,
        protocol=protocol,
        key=parse_key(key_text) if key_text else None,
        tz=zone,
        idle_timeout=IDLE_TIMEOUT,
    )


def idle_timeout(entry: SmartMeterConfigEntry) -> float | None:
    """How long without a good frame means the link is down; ``None``: the push default.

    A polled meter answers once per interval, so its limit is three intervals.
    """
    if entry.data.get(CONF_PROTOCOL) == PROTOCOL_MBUS or entry.data.get(CONF_READOUT):
        return max(IDLE_TIMEOUT, 3 * float(entry.options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL)))
    return None


async def _async_setup_cloud(hass: HomeAssistant, entry: CloudConfigEntry) -> bool:
    """Discover a cloud account's meters, import their statistics, then set up the sensors."""
    client = make_client(hass, dict(entry.data), dict(entry.options))
    coordinator = CloudCoordinator(hass, entry, client, provider_budget(hass, entry.data[CONF_PROTOCOL]))
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator
    entry.async_on_unload(coordinator.async_stop)
    if not OPTIONS_FLOW_RELOADS:
        options = dict(entry.options)

        async def _async_entry_updated(hass: HomeAssistant, entry: CloudConfigEntry) -> None:
            if dict(entry.options) != options:
                await hass.config_entries.async_reload(entry.entry_id)

        entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    coordinator.async_start_live()
    return True


async def _async_setup_planner(hass: HomeAssistant, entry: ConfigEntry[Any]) -> bool:
    """Follow the meter and prices of a grid connection; restore its plan."""
    from .planner import PlannerCoordinator  # noqa: PLC0415 - the planner loads on use

    try:
        coordinator = PlannerCoordinator(hass, entry)
    except ValueError as err:  # a schedule that no longer parses (edited storage)
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="planner_invalid",
            translation_placeholders={"error": str(err)},
        ) from err
    await coordinator.async_start()
    entry.runtime_data = coordinator
    entry.async_on_unload(coordinator.async_stop)
    if not OPTIONS_FLOW_RELOADS:
        options = dict(entry.options)

        async def _async_entry_updated(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
            if dict(entry.options) != options:
                await hass.config_entries.async_reload(entry.entry_id)

        entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLANNER_PLATFORMS)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> bool:
    """Open the meter link, wait for a first telegram, then set up the sensors."""
    if entry.data.get(CONF_PROTOCOL) == PROTOCOL_PLANNER:
        return await _async_setup_planner(hass, entry)
    if entry.data.get(CONF_PROTOCOL) in CLOUD_PROTOCOLS:
        return await _async_setup_cloud(hass, cast(CloudConfigEntry, entry))
    source = build_source(hass, entry)
    coordinator: SmartMeterCoordinator
    if isinstance(source, Zigbee2MqttSource | WmbusmetersSource):
        # MQTT meters may report only every few minutes: the entry is ready
        # once subscribed, each meter's entities appear with its first message.
        await source.async_start()
        coordinator = MqttCoordinator(hass, entry, source, COUNTER_KEYS)
    elif isinstance(source, EntitySource):
        # Followed entities change when their meter counts (a water meter may
        # stand still all night): availability comes from their states, not
        # from time since the last change.
        coordinator = MqttCoordinator(hass, entry, source, COUNTER_KEYS, idle_timeout=math.inf)
    else:
        coordinator = SmartMeterCoordinator(
            hass, entry, source, COUNTER_KEYS, idle_timeout=idle_timeout(entry)
        )
    source.on_status = coordinator.async_link_status
    await coordinator.alerts.async_load()
    coordinator.async_start()
    if not isinstance(coordinator, MqttCoordinator) and not await coordinator.async_wait_first(
        FIRST_FRAME_TIMEOUT
    ):
        key_error = getattr(source, "key_error", None)
        last_error = source.stats.last_error or "no data"
        await coordinator.async_stop()
        # Kept for diagnostics: what the port delivered while setup waited.
        hass.data.setdefault(FAILED_SETUPS, {})[entry.entry_id] = coordinator
        if key_error is not None:
            async_report_wrong_key(hass, entry, str(key_error))
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN,
                translation_key="wrong_key",
                translation_placeholders={"error": str(key_error)},
            )
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="no_telegram",
            translation_placeholders={"error": last_error},
        )
    hass.data.get(FAILED_SETUPS, {}).pop(entry.entry_id, None)
    async_clear_wrong_key(hass, entry.entry_id)
    entry.runtime_data = coordinator
    entry.async_on_unload(coordinator.async_stop)
    if not OPTIONS_FLOW_RELOADS:
        options = dict(entry.options)

        async def _async_entry_updated(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> None:
            """Apply changed options by reloading the entry.

            Flows that change the data (reconfigure, reauth, rediscovery) reload
            the entry themselves; reloading here as well would open the port twice.
            """
            if dict(entry.options) != options:
                await hass.config_entries.async_reload(entry.entry_id)

        entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> bool:
    """Unload the sensors; the port is closed by the unload callback."""
    platforms = PLANNER_PLATFORMS if entry.data.get(CONF_PROTOCOL) == PROTOCOL_PLANNER else PLATFORMS
    return await hass.config_entries.async_unload_platforms(entry, platforms)


async def async_remove_entry(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> None:
    """Forget the diagnostics of a failed setup of a removed entry."""
    hass.data.get(FAILED_SETUPS, {}).pop(entry.entry_id, None)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: SmartMeterConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Let the user delete the device of a meter that no longer reports (a replaced gas meter).

    A meter in the latest telegram would come straight back: it stays.
    """
    if entry.data.get(CONF_PROTOCOL) in CLOUD_PROTOCOLS:
        cloud: CloudCoordinator | None = getattr(entry, "runtime_data", None)
        current = {device_id(s.meter) for s in cloud.meters.values()} if cloud is not None else set()
        return not any(domain == DOMAIN and ident in current for domain, ident in device.identifiers)
    coordinator: SmartMeterCoordinator | None = getattr(entry, "runtime_data", None)
    reporting = set(coordinator.data.meters) if coordinator is not None and coordinator.data else set()
    return not any(domain == DOMAIN and meter_id in reporting for domain, meter_id in device.identifiers)
