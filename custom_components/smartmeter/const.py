"""Constants for the smartmeter integration."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from homeassistant import config_entries
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.util.hass_dict import HassKey

if TYPE_CHECKING:
    from .coordinator import SmartMeterCoordinator

DOMAIN: Final = "smartmeter"
LOGGER = logging.getLogger(__package__)
# The coordinator of an entry's last failed setup, by entry ID (for diagnostics).
FAILED_SETUPS: HassKey[dict[str, SmartMeterCoordinator]] = HassKey(f"{DOMAIN}_failed_setups")

CONF_URL: Final = "url"
CONF_BAUDRATE: Final = "baudrate"
CONF_BYTESIZE: Final = "bytesize"
CONF_PARITY: Final = "parity"
CONF_STOPBITS: Final = "stopbits"
CONF_KEY: Final = "key"
CONF_PROTOCOL: Final = "protocol"
CONF_METER_ID: Final = "meter_id"
CONF_TIME_ZONE: Final = "time_zone"

PROTOCOL_DSMR: Final = "dsmr"

# Home Assistant 2025.8+ reloads an entry itself when its options flow changes
# the options (OptionsFlowWithReload); before, an update listener does it.
OPTIONS_FLOW_RELOADS: Final = hasattr(config_entries, "OptionsFlowWithReload")
# Home Assistant 2026.8+ links a device to its parent by the parent's device ID
# (via_device_id); before, by the parent's identifiers (via_device).
VIA_DEVICE_ID: Final = "via_device_id" in DeviceInfo.__annotations__

# How long setup waits for the first telegram (DSMR 4 sends every 10 s).
FIRST_FRAME_TIMEOUT: Final = 30.0
# How long the config flow listens per line setting while probing a port.
PROBE_TIMEOUT: Final = 12.0
# No data for this long means the link is dead: reconnect.
IDLE_TIMEOUT: Final = 60.0
# Raw telegrams kept for diagnostics.
RAW_HISTORY: Final = 5
