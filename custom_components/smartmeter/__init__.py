"""The smartmeter integration: smart meters on every link, as Energy-dashboard sensors."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady
from homeassistant.helpers import device_registry as dr

from .const import (
    CONF_BAUDRATE,
    CONF_BYTESIZE,
    CONF_KEY,
    CONF_PARITY,
    CONF_STOPBITS,
    CONF_TIME_ZONE,
    CONF_URL,
    DOMAIN,
    FAILED_SETUPS,
    FIRST_FRAME_TIMEOUT,
    IDLE_TIMEOUT,
    OPTIONS_FLOW_RELOADS,
)
from .coordinator import SmartMeterConfigEntry, SmartMeterCoordinator
from .core.smarty import parse_key
from .core.source import P1Source, SerialSettings
from .repairs import async_clear_wrong_key, async_report_wrong_key
from .sensor import COUNTER_KEYS

PLATFORMS: list[Platform] = [Platform.SENSOR]


def build_source(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> P1Source:
    """The meter source an entry describes."""
    data = entry.data
    key_text = data.get(CONF_KEY)
    zone = entry.options.get(CONF_TIME_ZONE) or hass.config.time_zone
    return P1Source(
        data[CONF_URL],
        SerialSettings(
            baudrate=data.get(CONF_BAUDRATE, 115200),
            bytesize=data.get(CONF_BYTESIZE, 8),
            parity=data.get(CONF_PARITY, "N"),
            stopbits=data.get(CONF_STOPBITS, 1),
        ),
        key=parse_key(key_text) if key_text else None,
        tz=ZoneInfo(zone),
        idle_timeout=IDLE_TIMEOUT,
    )


async def async_setup_entry(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> bool:
    """Open the meter link, wait for a first telegram, then set up the sensors."""
    source = build_source(hass, entry)
    coordinator = SmartMeterCoordinator(hass, entry, source, COUNTER_KEYS)
    source.on_status = coordinator.async_link_status
    coordinator.async_start()
    if not await coordinator.async_wait_first(FIRST_FRAME_TIMEOUT):
        key_error = source.key_error
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
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: SmartMeterConfigEntry) -> None:
    """Forget the diagnostics of a failed setup of a removed entry."""
    hass.data.get(FAILED_SETUPS, {}).pop(entry.entry_id, None)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: SmartMeterConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Let the user delete the device of a meter that no longer reports (a replaced gas meter).

    A meter in the latest telegram would come straight back: it stays.
    """
    coordinator: SmartMeterCoordinator | None = getattr(entry, "runtime_data", None)
    reporting = set(coordinator.data.meters) if coordinator is not None and coordinator.data else set()
    return not any(domain == DOMAIN and meter_id in reporting for domain, meter_id in device.identifiers)
