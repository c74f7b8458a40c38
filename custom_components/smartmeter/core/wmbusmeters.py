"""wmbusmeters: the JSON telegrams it publishes on MQTT, read into the meter model.

wmbusmeters decodes wireless M-Bus telegrams with a driver per meter type and
publishes one flat JSON object per telegram, e.g.::

    {"_": "telegram", "media": "water", "meter": "iwmtx5", "name": "WaterWater",
     "id": "22917370", "total_m3": 0.025, "status": "PERMANENT_ERROR",
     "timestamp": "2024-05-11T10:38:24Z"}

Field names end in the unit (``_m3``, ``_kwh``, ``_gj``, ``_m3h``, ``_c``,
``_kw``, ``_v``, ``_hca``...; ``src/units.h`` in wmbusmeters), which fixes the
value's unit; ``media`` is the EN 13757-3 medium as wmbusmeters names it
(``mediaTypeJSON``). :func:`decode_wmbusmeters` maps one such object to a
:class:`~.models.Frame` with one :class:`~.models.Meter` whose ID is the
telegram's ``id``:

* the meter's reading gets the key the other protocols use for it: ``water``,
  ``hot_water`` or ``gas`` for ``total_m3``, ``heat`` or ``cooling`` for a heat
  meter's total energy (``total_energy_consumption_kwh``, ``total_energy_kwh``,
  ``total_heat_kwh``... in kWh, or the ``_gj``/``_mj`` variants in GJ/MJ);
* an electricity meter's registers get the P1 keys (``energy_import_total``,
  ``energy_import_tariff_1``, ``power_import``, ``power_import_l1``,
  ``voltage_l1``, ``current_l1``...);
* ``*_m3h`` flows are ``volume_flow``, ``flow_temperature_c`` and
  ``return_temperature_c`` the temperatures, a heat meter's ``current_power_kw``
  is ``power`` and a volume it counts is ``volume``;
* a heat cost allocator's ``current_consumption_hca`` is ``hca_units`` (the key
  the M-Bus decoder gives VIF ``6E``), without a unit;
* every other numeric field is kept as ``wmbus_<field>`` with the unit its
  suffix names (historic values at set dates, other tariffs, temperatures),
  as the meter stated it, even negative: some drivers use ``-0.001`` for an
  empty history slot.

The telegram's ``timestamp`` (when wmbusmeters received it) stamps the meter
and its registers; wmbusmeters' test output has the placeholder
``1111-11-11T11:11:11Z``, so a year before 2000 is no timestamp.

Bad input raises :class:`~.errors.DecodeError`: more than :data:`MAX_PAYLOAD`
bytes, no JSON object, no ``id`` or ``media``, NaN/Infinity, a reading or
energy counter that is not a number or is negative.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from .errors import DecodeError
from .models import Frame, Integrity, Medium, Meter, Register
from .zigbee2mqtt import MAX_PAYLOAD, PayloadTooLarge, load_json

PROTOCOL: Final = "wmbusmeters"
__all__ = ["MAX_PAYLOAD", "PROTOCOL", "PayloadTooLarge", "decode_wmbusmeters", "media_medium"]

# wmbusmeters' "media" (mediaTypeJSON) -> the meter model. Heat cost
# allocators have no Medium member yet: UNKNOWN.
_MEDIA: Final[dict[str, Medium]] = {
    "electricity": Medium.ELECTRICITY,
    "gas": Medium.GAS,
    "heat": Medium.HEAT,
    "heat volume at inlet": Medium.HEAT,
    "heat/cooling load": Medium.HEAT,
    "warm water": Medium.HOT_WATER,
    "hot water": Medium.HOT_WATER,
    "water": Medium.WATER,
    "cold water": Medium.WATER,
    "hot/cold water": Medium.WATER,
    "waste water": Medium.WATER,
    "cooling load volume at outlet": Medium.COOLING,
    "cooling load volume at inlet": Medium.COOLING,
}
HEAT_COST_ALLOCATOR_MEDIA: Final = frozenset({"heat cost allocation", "heat cost allocator"})

# Unit suffixes (wmbusmeters src/units.h, lower-case names) -> stated unit.
# Longest first, so "_m3h" is not read as "_h".
_UNITS: Final[dict[str, str | None]] = {
    "kvarh": "kvarh",
    "kvah": "kVAh",
    "kvar": "kvar",
    "kwh": "kWh",
    "mwh": "MWh",
    "m3ch": "m3°C/h",
    "m3c": "m3°C",
    "m3h": "m3/h",
    "mjh": "MJ/h",
    "kva": "kVA",
    "dbm": "dBm",
    "wh": "Wh",
    "mj": "MJ",
    "gj": "GJ",
    "kw": "kW",
    "jh": "J/h",
    "m3": "m3",
    "lh": "l/h",
    "hz": "Hz",
    "pa": "Pa",
    "bar": "bar",
    "rh": "%",
    "pct": "%",
    "ppm": "ppm",
    "hca": None,
    "w": "W",
    "l": "l",
    "c": "°C",
    "f": "°F",
    "k": "K",
    "v": "V",
    "a": "A",
    "s": "s",
    "min": "min",
    "h": "h",
    "d": "d",
    "month": "month",
    "y": "y",
    "counter": None,
    "nr": None,
    "factor": None,
    "deg": "°",
}
_FIELD: Final = re.compile(r"(?P<stem>[a-z0-9_]+?)_(?P<unit>" + "|".join(_UNITS) + r")")
_FIELD_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,64}")
_ID: Final = re.compile(r"[0-9A-Za-z_.:-]{1,32}")
_MIN_YEAR: Final = 2000
_MAX_ADJUSTED_EXPONENT: Final = 15
_VOLUME_MEDIA: Final = {Medium.WATER: "water", Medium.HOT_WATER: "hot_water", Medium.GAS: "gas"}
_HEAT_ENERGY_STEMS: Final = (
    "total_energy_consumption",
    "total_energy",
    "total_heat_energy",
    "total_heat",
    "total",
)
_ELECTRICITY: Final[dict[str, str]] = {
    "total_energy_consumption_kwh": "energy_import_total",
    "total_energy_production_kwh": "energy_export_total",
    "total_energy_returned_kwh": "energy_export_total",
    "total_energy_consumption_kvarh": "reactive_energy_import_total",
    "total_energy_production_kvarh": "reactive_energy_export_total",
    "current_power_consumption_kw": "power_import",
    "current_power_production_kw": "power_export",
}
for _n in range(1, 5):
    _ELECTRICITY[f"total_energy_consumption_tariff_{_n}_kwh"] = f"energy_import_tariff_{_n}"
    _ELECTRICITY[f"total_energy_production_tariff_{_n}_kwh"] = f"energy_export_tariff_{_n}"
for _n in range(1, 4):
    _ELECTRICITY[f"current_power_consumption_phase{_n}_kw"] = f"power_import_l{_n}"
    _ELECTRICITY[f"current_power_production_phase{_n}_kw"] = f"power_export_l{_n}"
    _ELECTRICITY[f"voltage_at_phase_{_n}_v"] = f"voltage_l{_n}"
    _ELECTRICITY[f"current_at_phase_{_n}_a"] = f"current_l{_n}"
# Keys that are counters: never negative.
_COUNTER_PREFIXES: Final = ("energy_", "reactive_energy_")
_READING_KEYS: Final = frozenset({"water", "hot_water", "gas", "heat", "cooling", "volume", "hca_units"})
_COMMON: Final[dict[str, str]] = {
    "flow_temperature_c": "flow_temperature",
    "return_temperature_c": "return_temperature",
    "current_volume_flow_m3h": "volume_flow",
    "volume_flow_m3h": "volume_flow",
    "flow_m3h": "volume_flow",
    "current_consumption_hca": "hca_units",
}
_SKIP: Final = frozenset({"_", "media", "meter", "name", "id", "timestamp"})


def media_medium(media: str) -> Medium:
    """The medium of a wmbusmeters ``media`` string (UNKNOWN for media we do not know)."""
    text = media.strip().lower()
    if text in HEAT_COST_ALLOCATOR_MEDIA:
        return Medium.HEAT_COST_ALLOCATOR
    return _MEDIA.get(text, Medium.UNKNOWN)


def _number(value: object, field: str) -> Decimal | None:
    """A finite Decimal from a JSON number; None for anything else (text fields, null)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    if not number.is_finite() or (number and number.adjusted() > _MAX_ADJUSTED_EXPONENT):
        raise DecodeError(f"{field}: {value} out of range")
    return number


def _timestamp(value: object) -> datetime | None:
    """The receive time wmbusmeters stamps; placeholders (year < 2000) and unreadable text are none."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.year < _MIN_YEAR:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _key(field: str, medium: Medium) -> str | None:
    """The integration key of a field; None for a field kept with a generic key."""
    if field in _COMMON:
        return _COMMON[field]
    if field in ("total_m3", "total_volume_m3"):
        return _VOLUME_MEDIA.get(medium, "volume")
    if medium is Medium.ELECTRICITY:
        return _ELECTRICITY.get(field)
    if medium in (Medium.HEAT, Medium.COOLING):
        reading = "heat" if medium is Medium.HEAT else "cooling"
        for unit in ("kwh", "mwh", "gj", "mj"):
            if field in (f"{stem}_{unit}" for stem in _HEAT_ENERGY_STEMS):
                return reading
            if field in (f"total_energy_cooling_{unit}", f"total_cooling_energy_{unit}"):
                return "cooling"
        if field in ("current_power_kw", "power_kw"):
            return "power"
    return None


def decode_wmbusmeters(payload: bytes | str) -> Frame:
    """Decode one wmbusmeters JSON telegram (as published on MQTT) into a Frame."""
    data = load_json(payload, "wmbusmeters")
    if not isinstance(data, dict):
        raise DecodeError("wmbusmeters: not a JSON object")
    kind = data.get("_")
    if kind is not None and kind != "telegram":
        raise DecodeError(f"wmbusmeters: not a telegram ({kind!r})")
    meter_id = data.get("id")
    media = data.get("media")
    if not isinstance(meter_id, str) or not _ID.fullmatch(meter_id):
        raise DecodeError(f"wmbusmeters: bad or missing id {meter_id!r}")
    if not isinstance(media, str) or not media or len(media) > 64:
        raise DecodeError(f"wmbusmeters {meter_id}: bad or missing media")
    driver = data.get("meter")
    driver = driver if isinstance(driver, str) and driver and len(driver) <= 64 else None
    name = data.get("name")
    name = name.strip() if isinstance(name, str) and name.strip() and len(name) <= 64 else None
    medium = media_medium(media)
    stamp = _timestamp(data.get("timestamp"))
    registers: dict[str, Register] = {}
    for field, value in data.items():
        if field in _SKIP or not _FIELD_NAME.fullmatch(field):
            continue  # the header fields, or a name no driver writes
        key = _key(field, medium)
        number = _number(value, field)
        if number is None:
            if key is not None and value is not None:
                raise DecodeError(f"wmbusmeters {meter_id}: {field} is not a number")
            continue
        match = _FIELD.fullmatch(field)
        unit = _UNITS[match["unit"]] if match else None
        if key is None:
            key = "wmbus_" + field
        elif (key in _READING_KEYS or key.startswith(_COUNTER_PREFIXES)) and number < 0:
            raise DecodeError(f"wmbusmeters {meter_id}: negative counter {field}={number}")
        if key in registers:
            key = "wmbus_" + field  # a second field for the same key (total_m3 and total_volume_m3)
        registers[key] = Register(f"wmbus:{field}", key, number, unit, stamp)
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    meter = Meter(
        id=meter_id,
        medium=medium,
        registers=tuple(registers.values()),
        timestamp=stamp,
        manufacturer=driver,
        model=driver,
        serial_number=meter_id,
        name=name,
    )
    return Frame(protocol=PROTOCOL, integrity=Integrity.ABSENT, meters=(meter,), raw=raw)
