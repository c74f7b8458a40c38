"""OBIS codes: normalisation, register keys and value kinds.

The P1 decoder is generic: every ``A-B:C.D.E(...)`` line is decoded, known codes
get a stable ``key`` (used in entity unique IDs) and a value kind, unknown codes
get a key derived from the code itself, so nothing the meter sends is lost.
"""

from __future__ import annotations

from enum import Enum

from .models import Medium


class Kind(Enum):
    """How a register's value groups are read."""

    NUMBER = "number"  # (value*unit) or (value)
    TEXT = "text"  # identifiers, messages: kept as the meter sent them
    TIME = "time"  # (YYMMDDhhmmssX)
    STAMPED = "stamped"  # (YYMMDDhhmmssX)(value*unit): M-Bus readings, max demand
    LOG = "log"  # profile generic buffer: (n)(obis)...(entries)
    AUTO = "auto"  # unknown code: number if it looks like one, text otherwise


_K = Kind

# Registers of the main (channel 0) meter, keyed by normalised OBIS code.
MAIN_REGISTERS: dict[str, tuple[str, Kind]] = {
    "1-3:0.2.8": ("p1_version", _K.TEXT),
    "0-0:96.1.4": ("p1_version_be", _K.TEXT),
    "0-0:1.0.0": ("timestamp", _K.TIME),
    "0-0:96.1.1": ("equipment_id", _K.TEXT),
    "0-0:96.1.0": ("meter_serial", _K.TEXT),
    "0-0:42.0.0": ("logical_device_name", _K.TEXT),
    "1-0:0.0.0": ("meter_id", _K.TEXT),
    "0-0:96.1.255": ("serial_number", _K.TEXT),  # EasyMeter Q3D
    "1-0:96.5.5": ("meter_status", _K.TEXT),  # EasyMeter Q3D, hex status word
    "0-0:96.14.0": ("active_tariff", _K.NUMBER),
    "0-0:96.13.0": ("text_message", _K.TEXT),
    "0-0:96.13.1": ("text_message_code", _K.TEXT),
    "0-0:96.13.2": ("text_message_2", _K.TEXT),
    "0-0:96.13.3": ("text_message_3", _K.TEXT),
    "0-0:96.13.4": ("text_message_4", _K.TEXT),
    "0-0:96.13.5": ("text_message_5", _K.TEXT),
    "0-0:96.3.10": ("breaker_state", _K.NUMBER),
    "0-0:17.0.0": ("power_threshold", _K.NUMBER),
    "0-0:96.7.21": ("power_failures", _K.NUMBER),
    "0-0:96.7.9": ("long_power_failures", _K.NUMBER),
    "1-0:99.97.0": ("power_failure_log", _K.LOG),
    "1-0:1.4.0": ("current_average_demand", _K.NUMBER),
    "1-0:1.6.0": ("maximum_demand_month", _K.STAMPED),
    "0-0:98.1.0": ("maximum_demand_history", _K.LOG),
    "1-0:14.7.0": ("frequency", _K.NUMBER),
    "1-0:13.7.0": ("power_factor", _K.NUMBER),
    "1-0:1.7.0": ("power_import", _K.NUMBER),
    "1-0:2.7.0": ("power_export", _K.NUMBER),
    "1-0:3.7.0": ("reactive_power_import", _K.NUMBER),
    "1-0:4.7.0": ("reactive_power_export", _K.NUMBER),
    "1-0:15.7.0": ("power_absolute", _K.NUMBER),
    "1-0:1.8.0": ("energy_import_total", _K.NUMBER),
    "1-0:2.8.0": ("energy_export_total", _K.NUMBER),
    "1-0:3.8.0": ("reactive_energy_import_total", _K.NUMBER),
    "1-0:4.8.0": ("reactive_energy_export_total", _K.NUMBER),
    "1-0:15.8.0": ("energy_absolute_total", _K.NUMBER),
}
for _t in range(1, 5):
    MAIN_REGISTERS[f"1-0:1.8.{_t}"] = (f"energy_import_tariff_{_t}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:2.8.{_t}"] = (f"energy_export_tariff_{_t}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:3.8.{_t}"] = (f"reactive_energy_import_tariff_{_t}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:4.8.{_t}"] = (f"reactive_energy_export_tariff_{_t}", _K.NUMBER)
for _q in range(1, 5):
    MAIN_REGISTERS[f"1-0:{_q + 4}.8.0"] = (f"reactive_energy_q{_q}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_q + 4}.7.0"] = (f"reactive_power_q{_q}", _K.NUMBER)
for _p, _base in ((1, 20), (2, 40), (3, 60)):
    MAIN_REGISTERS[f"1-0:{_base + 1}.7.0"] = (f"power_import_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 2}.7.0"] = (f"power_export_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 3}.7.0"] = (f"reactive_power_import_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 4}.7.0"] = (f"reactive_power_export_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 11}.7.0"] = (f"current_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 12}.7.0"] = (f"voltage_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 13}.7.0"] = (f"power_factor_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 11}.4.0"] = (f"current_limit_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 12}.32.0"] = (f"voltage_sags_l{_p}", _K.NUMBER)
    MAIN_REGISTERS[f"1-0:{_base + 12}.36.0"] = (f"voltage_swells_l{_p}", _K.NUMBER)

# Registers of an M-Bus channel (0-n:C.D.E), keyed by "C.D.E". ``None`` as key
# means "the meter reading": its key is the medium's (gas, water, heat).
MBUS_REGISTERS: dict[str, tuple[str | None, Kind]] = {
    "24.1.0": ("device_type", _K.NUMBER),
    "96.1.0": ("equipment_id", _K.TEXT),
    "96.1.1": ("equipment_id", _K.TEXT),
    "24.4.0": ("valve_position", _K.NUMBER),
    "24.2.1": (None, _K.STAMPED),
    "24.2.3": (None, _K.STAMPED),
    "24.3.0": (None, _K.STAMPED),  # DSMR 2.2/3: value on the next line
    "23.1.0": (None, _K.STAMPED),  # A=7 gas with "(value)(YY-MM-DD hh:mm:ss)"
}

# EN 13757-3 medium codes as P1 sends them in 0-n:24.1.0 (decimal).
MBUS_MEDIUM: dict[int, Medium] = {
    2: Medium.ELECTRICITY,
    3: Medium.GAS,
    4: Medium.HEAT,
    6: Medium.HOT_WATER,
    7: Medium.WATER,
    10: Medium.COOLING,
    11: Medium.COOLING,
    12: Medium.HEAT,
    13: Medium.HEAT,
    21: Medium.HOT_WATER,
    22: Medium.WATER,
}

# OBIS value group A (medium) for abstract and non-electricity objects.
OBIS_A_MEDIUM: dict[int, Medium] = {
    1: Medium.ELECTRICITY,
    5: Medium.COOLING,
    6: Medium.HEAT,
    7: Medium.GAS,
    8: Medium.WATER,
    9: Medium.HOT_WATER,
}

READING_KEY: dict[Medium, str] = {
    Medium.GAS: "gas",
    Medium.WATER: "water",
    Medium.HOT_WATER: "hot_water",
    Medium.HEAT: "heat",
    Medium.COOLING: "cooling",
    Medium.ELECTRICITY: "energy_import_total",
}


def generic_key(obis: str) -> str:
    """A stable key for an OBIS code the registry does not know."""
    return "obis_" + obis.replace("-", "_").replace(":", "_").replace(".", "_")
