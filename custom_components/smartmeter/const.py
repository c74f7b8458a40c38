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
# Polled links: the M-Bus slaves (MbusSource address form) and IEC 62056-21 readout.
CONF_ADDRESSES: Final = "addresses"
CONF_READOUT: Final = "readout"
# The config flow may transmit (IEC sign-on, M-Bus requests) only with consent.
CONF_TRANSMIT: Final = "transmit"

# Options: how readings become recorder writes (core.policy) and what the
# counter guard accepts (core.guard).
CONF_LIVE: Final = "live"
CONF_COUNTER_INTERVAL: Final = "counter_interval"
CONF_MEASUREMENT_INTERVAL: Final = "measurement_interval"
CONF_DEADBAND: Final = "deadband"
CONF_MAX_POWER: Final = "max_power_kw"
CONF_MAX_GAS_FLOW: Final = "max_gas_flow_m3h"
CONF_MAX_WATER_FLOW: Final = "max_water_flow_m3h"
CONF_POLL_INTERVAL: Final = "poll_interval"

DEFAULT_LIVE: Final = False
DEFAULT_COUNTER_INTERVAL: Final = 300  # s: one write per 5-minute statistics period
DEFAULT_MEASUREMENT_INTERVAL: Final = 300  # s
DEFAULT_DEADBAND: Final = 10  # % of the last written value
DEFAULT_MAX_POWER: Final = 55  # kW: a 3x80 A home connection
DEFAULT_MAX_GAS_FLOW: Final = 25  # m3/h: a G16 gas meter
DEFAULT_MAX_WATER_FLOW: Final = 16  # m3/h: a Q3=16 water meter
DEFAULT_POLL_INTERVAL: Final = 60  # s: M-Bus and IEC 62056-21 readouts

# Fired per good telegram and meter with the raw (guarded, unthrottled) values;
# excluded from the recorder, so it costs no database write.
EVENT_READING: Final = "smartmeter_reading"

PROTOCOL_DSMR: Final = "dsmr"
PROTOCOL_MBUS: Final = "mbus"
PROTOCOL_IEC: Final = "iec62056-21"
# Meters read through Home Assistant's MQTT integration.
PROTOCOL_Z2M: Final = "zigbee2mqtt"
# Existing Home Assistant entities (ZHA, Shelly, ESPHome, ...) followed as meters.
PROTOCOL_ENTITY: Final = "entity"
CONF_ENTITIES: Final = "entities"
PROTOCOL_WMBUS: Final = "wmbusmeters"
MQTT_PROTOCOLS: Final = frozenset({PROTOCOL_Z2M, PROTOCOL_WMBUS})
# MQTT entries: Zigbee2MQTT's base topic and the selected IEEE addresses (with
# their friendly names when added, for display), wmbusmeters' topic and meter IDs.
CONF_BASE_TOPIC: Final = "base_topic"
CONF_DEVICES: Final = "devices"
CONF_NAMES: Final = "names"
CONF_TOPIC: Final = "topic"
CONF_METERS: Final = "meters"
# Shown in the flow and on the device.
PROTOCOL_NAMES: Final = {
    "dsmr": "P1 / DSMR",
    "sml": "SML",
    "dlms": "DLMS/COSEM (HAN)",
    "iec62056-21": "IEC 62056-21",
    "mbus": "M-Bus",
    "zigbee2mqtt": "Zigbee2MQTT",
    "wmbusmeters": "wmbusmeters (wireless M-Bus)",
    "octopus": "Octopus Energy",
    "tibber": "Tibber",
}

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
# How long the config flow waits for Zigbee2MQTT's retained device list, and
# listens for wmbusmeters telegrams (wM-Bus meters send every 10 s to minutes).
Z2M_LISTEN_TIMEOUT: Final = 5.0
WMBUS_LISTEN_TIMEOUT: Final = 30.0
# Raw telegrams kept for diagnostics.
RAW_HISTORY: Final = 5

# Cloud providers (core/cloud): one entry per account.
PROTOCOL_OCTOPUS: Final = "octopus"
PROTOCOL_TIBBER: Final = "tibber"
CLOUD_PROTOCOLS: Final = frozenset({PROTOCOL_OCTOPUS, PROTOCOL_TIBBER})
CONF_API_KEY: Final = "api_key"
CONF_ACCOUNT: Final = "account_number"
CONF_TOKEN: Final = "token"  # noqa: S105 - the name of the field
# Cloud options: how much history the first run imports, how far back each run
# re-imports corrections, when missing data becomes a repair issue.
CONF_BACKFILL_DAYS: Final = "backfill_days"
CONF_RESTATE_DAYS: Final = "restatement_days"
CONF_STALE_HOURS: Final = "stale_hours"
CONF_GAS_UNIT: Final = "gas_unit"
CONF_CALORIFIC_VALUE: Final = "calorific_value"
DEFAULT_BACKFILL_DAYS: Final = 365
DEFAULT_RESTATE_DAYS: Final = 7
DEFAULT_STALE_HOURS: Final = 72
DEFAULT_GAS_UNIT: Final = "m3"
DEFAULT_CALORIFIC_VALUE: Final = 39.5  # MJ/m3, the UK's typical value
DEFAULT_CLOUD_LIVE: Final = True
# How often a cloud account is polled (its data arrives hours late; prices daily).
CLOUD_POLL_INTERVAL: Final = 1800.0  # s

# The planner (core/planner): one entry per grid connection.
PROTOCOL_PLANNER: Final = "planner"
CONF_POWER_ENTITY: Final = "power_entity"
CONF_EXPORT_POWER_ENTITY: Final = "export_power_entity"
CONF_ENERGY_ENTITIES: Final = "energy_entities"
CONF_EXPORT_ENERGY_ENTITIES: Final = "export_energy_entities"
CONF_CURRENT_ENTITIES: Final = "current_entities"
CONF_DEMAND_ENTITY: Final = "demand_entity"  # 1-0:1.4.0, the quarter's average demand
CONF_MONTH_PEAK_ENTITY: Final = "month_peak_entity"  # 1-0:1.6.0, the month's peak
CONF_TARIFF_ENTITY: Final = "tariff_entity"  # 0-0:96.14.0
CONF_PRICE_MODE: Final = "price_mode"
PRICE_NONE: Final = "none"
PRICE_SCHEDULE: Final = "schedule"
PRICE_SENSOR: Final = "sensor"
PRICE_TARIFF: Final = "tariff"
CONF_PRICE_ENTITY: Final = "price_entity"
CONF_SCHEDULE: Final = "schedule"
CONF_PEAK_CODES: Final = "peak_codes"
CONF_FUSE: Final = "fuse_a"
CONF_PHASES: Final = "phases"
CONF_MAX_IMPORT: Final = "max_import_kw"
CONF_CAPACITY: Final = "capacity_tariff"
CONF_CAPACITY_PRICE: Final = "capacity_price"
CONF_CAPACITY_FLOOR: Final = "capacity_floor_kw"
DEFAULT_PHASES: Final = 3
DEFAULT_CAPACITY_PRICE: Final = 53.26  # EUR per kW per year (Fluvius Antwerpen 2025, incl. VAT)
DEFAULT_CAPACITY_FLOOR: Final = 2.5  # kW
# Events: a peak period starts or ends; the quarter will set a new month peak.
EVENT_PEAK_PERIOD: Final = "smartmeter_peak_period"
EVENT_QUARTER_PEAK: Final = "smartmeter_quarter_peak_warning"
SERVICE_PLAN_CHARGE: Final = "plan_charge"
SERVICE_CANCEL_PLAN: Final = "cancel_plan"

# Alerts (core/alerts): leaks, bursts, abnormal use, outages, on every meter entry.
CONF_WATER_QUIET: Final = "water_quiet_minutes"
CONF_BURST_FLOW: Final = "water_burst_flow_l_min"
CONF_BURST_MINUTES: Final = "water_burst_minutes"
CONF_LEAK_REPAIR_HOURS: Final = "leak_repair_hours"
CONF_HIGH_DAY_FACTOR: Final = "high_day_factor"
CONF_OUTAGE_TIMEOUT: Final = "outage_silence_seconds"
DEFAULT_WATER_QUIET: Final = 30  # min: a stand-still this long within 24 h means no leak
DEFAULT_BURST_FLOW: Final = 12  # L/min: more than a shower (about 8 L/min)
DEFAULT_BURST_MINUTES: Final = 10
DEFAULT_LEAK_REPAIR_HOURS: Final = 12  # a leak alert this long becomes a repair issue
DEFAULT_HIGH_DAY_FACTOR: Final = 2.5  # x the median same weekday
DEFAULT_OUTAGE_TIMEOUT: Final = 60  # s without a telegram: the link is lost (push meters)
# Fired when an alert comes on or clears (and for an outage found afterwards).
EVENT_ALERT: Final = "smartmeter_alert"
