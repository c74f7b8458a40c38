"""Zigbee2MQTT: the bridge's device list and the metering devices' state payloads.

Zigbee2MQTT publishes its device list, retained, on ``<base>/bridge/devices``:
a JSON array with one object per device (``ieee_address``, ``friendly_name``,
``type``, ``definition`` with ``vendor``, ``model``, ``description`` and
``exposes``...). Each device's state is then published on
``<base>/<friendly_name>`` as a JSON object of properties (``{"energy":
1362.15, "power": 462, ...}``). This module turns both into the shared meter
model; it does no I/O.

* :func:`parse_bridge_devices` keeps the devices that expose a metering
  property (``energy``, ``produced_energy``, ``power``, per-phase values, tier
  registers, a ``gas`` or ``water_consumed`` volume...). Exposes are walked
  recursively (composite and ``switch`` features). ``gas`` is only a gas meter
  reading when it is a *numeric* expose with a volume unit: Zigbee2MQTT's
  ``e.gas()`` preset is the binary of a gas detector and some Tuya detectors
  expose a numeric ``gas`` in %LEL. The coordinator, disabled devices and
  devices without metering exposes are left out; entries that are not a device
  object (no IEEE address, wrong types) are skipped and counted.
* :func:`decode_state` reads one state payload of such a device into a
  :class:`~.models.Frame` with one :class:`~.models.Meter` whose ID is the
  device's IEEE address, so a rename in Zigbee2MQTT (new friendly name, new
  topic) keeps the meter.

Units are the ones Zigbee2MQTT states in the exposes (``kWh``, ``W``, ``V``,
``A``, ``m³``): its converters already apply the seMetering multiplier and
divisor, so values are taken as published (``energy`` in kWh, ``power`` in W).
Only a counter exposed *without* a unit is a raw summation; when the state
carries ``multiplier`` and ``divisor`` it is scaled by them (exactly, in
:class:`~decimal.Decimal`). Volumes stated in litres (``water_consumed`` of
Tuya and RTX valves) are converted to m³ exactly, so ``gas`` and ``water`` are
always m³ like the other protocols' readings.

Medium: the state's ``metering_device_type`` (ZCL seMetering attribute; the
mirrored types 127-142 are the base type plus 127) decides, then the Frient
ZHEMI101's ``interface_mode``, then what the exposes say. When the medium is
known, readings of another medium left in Zigbee2MQTT's cached state (the
``energy`` of a ZHEMI101 switched to gas mode) are dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from .errors import DecodeError
from .models import Frame, Integrity, Medium, Meter, Register

PROTOCOL: Final = "zigbee2mqtt"
MAX_PAYLOAD: Final[int] = 65536
# The device list of a large network is far bigger than a state message
# (1-3 kB per device with its exposes and endpoints).
MAX_DEVICE_LIST_PAYLOAD: Final[int] = 4 * 1024 * 1024
# Numbers beyond 10**15 in any unit are no meter reading (and keep Decimal
# arithmetic far from its context limits).
_MAX_ADJUSTED_EXPONENT: Final = 15


class PayloadTooLarge(DecodeError):
    """A payload over :data:`MAX_PAYLOAD` bytes was rejected unread."""


@dataclass(frozen=True, slots=True)
class Z2MDevice:
    """A metering device from Zigbee2MQTT's device list.

    ``ieee`` is the stable ID (the meter ID); ``friendly_name`` is the topic
    name, which the user may change. ``properties`` are the metering
    properties the device exposes, ``units`` the unit each states (property,
    unit) and ``raw_properties`` the counters exposed without a unit (raw
    summations, scaled by the state's multiplier and divisor).
    """

    ieee: str
    friendly_name: str
    vendor: str | None
    model: str | None
    description: str | None
    medium: Medium
    properties: tuple[str, ...]
    units: tuple[tuple[str, str], ...] = ()
    raw_properties: tuple[str, ...] = ()
    model_id: str | None = None
    power_source: str | None = None

    def unit(self, prop: str) -> str | None:
        """The unit the device's exposes state for a property, if any."""
        for name, unit in self.units:
            if name == prop:
                return unit
        return None


# --- The metering properties ---------------------------------------------

# Kinds of property: which medium a reading belongs to and whether it counts.
_ELEC: Final = "electricity"
_GAS: Final = "gas"
_WATER: Final = "water"
_VOLUME: Final = "volume"  # gas or water flow: belongs to either


@dataclass(frozen=True, slots=True)
class _Prop:
    key: str
    kind: str
    counter: bool
    default_unit: str


def _props() -> dict[str, _Prop]:
    table: dict[str, _Prop] = {
        # Generic seMetering / haElectricalMeasurement converters.
        "energy": _Prop("energy_import_total", _ELEC, True, "kWh"),
        "produced_energy": _Prop("energy_export_total", _ELEC, True, "kWh"),
        "energy_produced": _Prop("energy_export_total", _ELEC, True, "kWh"),
        "power": _Prop("power_import", _ELEC, False, "W"),
        "power_phase_b": _Prop("power_import_l2", _ELEC, False, "W"),
        "power_phase_c": _Prop("power_import_l3", _ELEC, False, "W"),
        "voltage": _Prop("voltage_l1", _ELEC, False, "V"),
        "voltage_phase_b": _Prop("voltage_l2", _ELEC, False, "V"),
        "voltage_phase_c": _Prop("voltage_l3", _ELEC, False, "V"),
        "current": _Prop("current_l1", _ELEC, False, "A"),
        "current_phase_b": _Prop("current_l2", _ELEC, False, "A"),
        "current_phase_c": _Prop("current_l3", _ELEC, False, "A"),
        "ac_frequency": _Prop("frequency", _ELEC, False, "Hz"),
        "power_factor": _Prop("power_factor", _ELEC, False, ""),
        "power_reactive": _Prop("reactive_power_import", _ELEC, False, "VAR"),
        "power_apparent": _Prop("apparent_power", _ELEC, False, "VA"),
        # LiXee ZLinky (French Linky TIC): attribute names as properties.
        "current_summ_delivered": _Prop("energy_import_total", _ELEC, True, "kWh"),
        "current_summ_received": _Prop("energy_export_total", _ELEC, True, "kWh"),
        "rms_voltage": _Prop("voltage_l1", _ELEC, False, "V"),
        "rms_voltage_ph_b": _Prop("voltage_l2", _ELEC, False, "V"),
        "rms_voltage_ph_c": _Prop("voltage_l3", _ELEC, False, "V"),
        "rms_current": _Prop("current_l1", _ELEC, False, "A"),
        "rms_current_ph_b": _Prop("current_l2", _ELEC, False, "A"),
        "rms_current_ph_c": _Prop("current_l3", _ELEC, False, "A"),
        "apparent_power": _Prop("apparent_power", _ELEC, False, "VA"),
        # Gas and water meter interfaces (Frient ZHEMI101, gas_metering, Tuya/RTX valves).
        "gas": _Prop("gas", _GAS, True, "m3"),
        "water_consumed": _Prop("water", _WATER, True, "m3"),
        "flow": _Prop("volume_flow", _VOLUME, False, "m3/h"),
        "volume_flow_rate": _Prop("volume_flow", _VOLUME, False, "m3/h"),
    }
    for tier in range(1, 11):
        table[f"energy_tier_{tier}"] = _Prop(f"energy_import_tariff_{tier}", _ELEC, True, "kWh")
        table[f"produced_energy_tier_{tier}"] = _Prop(f"energy_export_tariff_{tier}", _ELEC, True, "kWh")
        table[f"current_tier{tier}_summ_delivered"] = _Prop(
            f"energy_import_tariff_{tier}", _ELEC, True, "kWh"
        )
    return table


PROPERTIES: Final[dict[str, _Prop]] = _props()
# Properties that only make a device a meter together with a reading or power.
_AUXILIARY: Final = frozenset(
    {"voltage", "voltage_phase_b", "voltage_phase_c", "current", "current_phase_b", "current_phase_c"}
    | {"ac_frequency", "power_factor", "power_reactive", "power_apparent", "flow", "volume_flow_rate"}
    | {"rms_voltage", "rms_voltage_ph_b", "rms_voltage_ph_c", "rms_current", "rms_current_ph_b"}
    | {"rms_current_ph_c", "apparent_power"}
)
# Metering configuration the state may carry (the ZHEMI101 publishes them).
_CONFIG_PROPERTIES: Final = ("metering_device_type", "multiplier", "divisor", "unit_of_measure")

_VOLUME_UNITS: Final[dict[str, tuple[str, Decimal]]] = {
    "m³": ("m3", Decimal(1)),
    "m3": ("m3", Decimal(1)),
    "l": ("m3", Decimal("0.001")),
    "L": ("m3", Decimal("0.001")),
}
_UNIT_NAMES: Final[dict[str, str]] = {"m³": "m3", "m³/h": "m3/h"}

# ZCL seMetering MeteringDeviceType; 127 + n is the mirrored type n.
_DEVICE_TYPE_MEDIUM: Final[dict[int, Medium]] = {
    0: Medium.ELECTRICITY,
    1: Medium.GAS,
    2: Medium.WATER,
    3: Medium.HEAT,  # thermal (deprecated)
    5: Medium.HEAT,
    6: Medium.COOLING,
    7: Medium.ELECTRICITY,  # end use measurement device (EV charging)
    8: Medium.ELECTRICITY,  # PV generation
    9: Medium.ELECTRICITY,  # wind turbine generation
    10: Medium.ELECTRICITY,  # water turbine generation
    11: Medium.ELECTRICITY,  # micro generation
    12: Medium.HEAT,  # solar hot water generation
    13: Medium.ELECTRICITY,  # electric metering element / phase 1
    14: Medium.ELECTRICITY,
    15: Medium.ELECTRICITY,
}
_MIRRORED_OFFSET: Final = 127
_INTERFACE_MODE_MEDIUM: Final[dict[str, Medium]] = {
    "electricity": Medium.ELECTRICITY,
    "gas": Medium.GAS,
    "water": Medium.WATER,
    "kamstrup-kmp": Medium.ELECTRICITY,
    "linky": Medium.ELECTRICITY,
    "IEC62056-21": Medium.ELECTRICITY,
    "DSMR-2.3": Medium.ELECTRICITY,
    "DSMR-4.0": Medium.ELECTRICITY,
}
_KIND_MEDIUM: Final[dict[str, Medium]] = {_ELEC: Medium.ELECTRICITY, _GAS: Medium.GAS, _WATER: Medium.WATER}
_IEEE: Final = re.compile(r"0x[0-9a-fA-F]{16}")


def metering_device_type_medium(value: int) -> Medium:
    """The medium of a ZCL MeteringDeviceType, mirrored types (127-142) included."""
    if value >= _MIRRORED_OFFSET:
        value -= _MIRRORED_OFFSET
    return _DEVICE_TYPE_MEDIUM.get(value, Medium.UNKNOWN)


# --- JSON ---------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a number")


def load_json(payload: bytes | str, what: str = "payload", limit: int = MAX_PAYLOAD) -> Any:
    """Parse a JSON payload of at most ``limit`` bytes with exact decimals; DecodeError otherwise."""
    if isinstance(payload, str):
        if len(payload) > limit:  # a character is at least one byte
            raise PayloadTooLarge(f"{what}: over {limit} bytes")
        try:
            data = payload.encode("utf-8")
        except UnicodeEncodeError as err:
            raise DecodeError(f"{what}: not valid text") from err
    elif isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
    else:
        raise DecodeError(f"{what}: not bytes or text")
    if len(data) > limit:
        raise PayloadTooLarge(f"{what}: {len(data)} bytes, over {limit}")
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise DecodeError(f"{what}: not JSON ({err})") from err


def _number(value: object, prop: str) -> Decimal | None:
    """A JSON number as a finite Decimal; None stays None; other types are an error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise DecodeError(f"{prop}: {type(value).__name__} is not a number")
    number = Decimal(value)
    if not number.is_finite() or (number and number.adjusted() > _MAX_ADJUSTED_EXPONENT):
        raise DecodeError(f"{prop}: {value} out of range")
    return number


# --- bridge/devices -------------------------------------------------------


def _walk_exposes(exposes: object) -> Iterator[Mapping[str, Any]]:
    """Every expose and feature (composites, switch/light features), depth first."""
    if not isinstance(exposes, list):
        return
    stack: list[object] = list(reversed(exposes))
    seen = 0
    while stack and seen < 10_000:
        seen += 1
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        yield item
        features = item.get("features")
        if isinstance(features, list):
            stack.extend(reversed(features))


def _metering_exposes(exposes: object) -> dict[str, str | None]:
    """The metering properties a device exposes, with their units (or None)."""
    found: dict[str, str | None] = {}
    for expose in _walk_exposes(exposes):
        if expose.get("type") != "numeric":
            continue
        prop = expose.get("property")
        if not isinstance(prop, str) or (prop not in PROPERTIES and prop not in _CONFIG_PROPERTIES):
            continue
        unit = expose.get("unit")
        unit = unit if isinstance(unit, str) and unit else None
        spec = PROPERTIES.get(prop)
        if (
            spec is not None
            and spec.kind in (_GAS, _WATER)
            and unit is not None
            and unit not in _VOLUME_UNITS
        ):
            continue  # a gas concentration (%LEL, ppm), not a meter reading
        found.setdefault(prop, unit)
    return found


def _exposes_medium(props: Mapping[str, str | None]) -> Medium:
    """The medium the exposes imply: one kind of reading, or UNKNOWN if several or none."""
    kinds = {PROPERTIES[p].kind for p in props if p in PROPERTIES} & set(_KIND_MEDIUM)
    if len(kinds) == 1:
        return _KIND_MEDIUM[kinds.pop()]
    return Medium.UNKNOWN


def _optional_text(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value else None


def _device(entry: object) -> Z2MDevice | None:
    """One bridge/devices entry; None if it is no metering device; DecodeError if broken."""
    if not isinstance(entry, dict):
        raise DecodeError("device entry is not an object")
    ieee = entry.get("ieee_address")
    name = entry.get("friendly_name")
    if not isinstance(ieee, str) or not _IEEE.fullmatch(ieee):
        raise DecodeError(f"bad ieee_address {ieee!r}")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise DecodeError(f"bad friendly_name for {ieee}")
    if entry.get("type") == "Coordinator" or entry.get("disabled") is True:
        return None
    definition = entry.get("definition")
    if definition is None:
        return None  # unsupported or not yet interviewed
    if not isinstance(definition, dict):
        raise DecodeError(f"{ieee}: definition is not an object")
    exposes = definition.get("exposes")
    if exposes is not None and not isinstance(exposes, list):
        raise DecodeError(f"{ieee}: exposes is not a list")
    found = _metering_exposes(exposes)
    metering = [p for p in found if p in PROPERTIES]
    if not any(p not in _AUXILIARY for p in metering):
        return None  # voltage or current alone is no meter (a plug without metering, a sensor)
    return Z2MDevice(
        ieee=ieee.lower(),
        friendly_name=name,
        vendor=_optional_text(definition, "vendor"),
        model=_optional_text(definition, "model"),
        description=_optional_text(definition, "description"),
        medium=_exposes_medium(found),
        properties=tuple(metering),
        units=tuple((p, u) for p, u in found.items() if p in PROPERTIES and u is not None),
        raw_properties=tuple(p for p in metering if PROPERTIES[p].counter and found[p] is None),
        model_id=_optional_text(entry, "model_id"),
        power_source=_optional_text(entry, "power_source"),
    )


def parse_bridge_devices_counted(payload: bytes | str) -> tuple[list[Z2MDevice], int]:
    """The metering devices of a ``bridge/devices`` payload and how many entries were broken.

    DecodeError if the payload is no JSON array or over
    :data:`MAX_DEVICE_LIST_PAYLOAD` bytes; a broken entry (no object, no
    valid IEEE address or friendly name, malformed definition) is skipped and
    counted. A device listed twice keeps its first entry.
    """
    data = load_json(payload, "bridge/devices", MAX_DEVICE_LIST_PAYLOAD)
    if not isinstance(data, list):
        raise DecodeError("bridge/devices: not a JSON array")
    devices: list[Z2MDevice] = []
    seen: set[str] = set()
    skipped = 0
    for entry in data:
        try:
            device = _device(entry)
        except DecodeError:
            skipped += 1
            continue
        if device is not None and device.ieee not in seen:
            seen.add(device.ieee)
            devices.append(device)
    return devices, skipped


def parse_bridge_devices(payload: bytes | str) -> list[Z2MDevice]:
    """The metering devices of a ``bridge/devices`` payload (broken entries skipped)."""
    return parse_bridge_devices_counted(payload)[0]


# --- state ------------------------------------------------------------------


def _state_medium(device: Z2MDevice, state: Mapping[str, Any]) -> tuple[Medium, bool]:
    """The meter's medium and whether the device itself said so (not just the exposes)."""
    device_type = state.get("metering_device_type")
    if isinstance(device_type, int) and not isinstance(device_type, bool) and 0 <= device_type <= 255:
        medium = metering_device_type_medium(device_type)
        if medium is not Medium.UNKNOWN:
            return medium, True
    mode = state.get("interface_mode")
    if isinstance(mode, str) and mode in _INTERFACE_MODE_MEDIUM:
        return _INTERFACE_MODE_MEDIUM[mode], True
    if device.medium is not Medium.UNKNOWN:
        return device.medium, False
    kinds = {
        PROPERTIES[p].kind for p in device.properties if state.get(p) is not None and p in PROPERTIES
    } & set(_KIND_MEDIUM)
    if len(kinds) == 1:
        return _KIND_MEDIUM[kinds.pop()], False
    return Medium.UNKNOWN, False


def _scale(state: Mapping[str, Any]) -> Decimal | None:
    """The scale ``multiplier / divisor`` from the state, if both are positive integers."""
    multiplier = state.get("multiplier")
    divisor = state.get("divisor")
    for value in (multiplier, divisor):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**24:
            return None
    assert isinstance(multiplier, int) and isinstance(divisor, int)
    return Decimal(multiplier) / Decimal(divisor)


def decode_state(device: Z2MDevice, payload: bytes | str) -> Frame:
    """Decode one state payload of a metering device into a Frame.

    The frame's one meter has the device's IEEE address as ID. A property the
    payload lacks or sends as null gives no register; a property of the wrong
    type, a non-finite number or a negative counter is a DecodeError, as is a
    payload without any of the device's metering properties.
    """
    state = load_json(payload, device.friendly_name)
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if not isinstance(state, dict):
        raise DecodeError(f"{device.friendly_name}: state is not a JSON object")
    props = [p for p in device.properties if p in PROPERTIES and p in state]
    if not props:
        raise DecodeError(f"{device.friendly_name}: no metering property in the state")
    medium, stated = _state_medium(device, state)
    scale = _scale(state) if device.raw_properties else None
    values: dict[str, tuple[str, Decimal, str | None]] = {}  # key -> property, value, unit
    for prop in props:
        spec = PROPERTIES[prop]
        value = _number(state[prop], prop)
        if value is None:
            continue
        if stated and spec.kind in _KIND_MEDIUM and _KIND_MEDIUM[spec.kind] is not medium:
            continue  # cached reading of the interface's previous mode
        if stated and spec.kind == _VOLUME and medium not in (Medium.GAS, Medium.WATER):
            continue
        unit = device.unit(prop)
        try:
            if prop in device.raw_properties:
                if scale is None:
                    continue  # a raw summation without its scale is no reading
                value *= scale
                unit = spec.default_unit
            elif spec.kind in (_GAS, _WATER) and unit is not None:
                unit, factor = _VOLUME_UNITS.get(unit, (unit, Decimal(1)))
                value *= factor
        except ArithmeticError as err:  # pragma: no cover - ranges are checked above
            raise DecodeError(f"{prop}: {err}") from err
        if spec.counter and value < 0:
            raise DecodeError(f"{prop}: negative counter {value}")
        unit = _UNIT_NAMES.get(unit, unit) if unit is not None else spec.default_unit or None
        values.setdefault(spec.key, (prop, value, unit))
    _split_power(values, bidirectional="energy_export_total" in values)
    registers = tuple(
        Register(f"z2m:{prop}", key, value, unit) for key, (prop, value, unit) in values.items()
    )
    meter = Meter(
        id=device.ieee,
        medium=medium,
        registers=registers,
        manufacturer=device.vendor,
        model=device.model,
        name=device.friendly_name,
    )
    return Frame(protocol=PROTOCOL, integrity=Integrity.ABSENT, meters=(meter,), raw=raw)


def _split_power(values: dict[str, tuple[str, Decimal, str | None]], *, bidirectional: bool) -> None:
    """Per-phase power (``power`` is phase A beside phase B/C) and signed power, in place.

    Zigbee2MQTT's ``power`` is the ZCL ActivePower, phase A of a three-phase
    device: with ``power_phase_b``/``_c`` present it is ``power_import_l1`` and
    the total is the sum of the three phases (when all three are there in one
    unit). A negative power is export (bidirectional clamps): ``power_import``
    0 and ``power_export`` its magnitude, per phase alike; a state with an
    export counter always gets both.
    """
    main = values.get("power_import")
    phases = [values.get(f"power_import_l{n}") for n in (2, 3)]
    if main is not None and any(p is not None for p in phases):
        del values["power_import"]
        values["power_import_l1"] = main
        present = [main, *(p for p in phases if p is not None)]
        if len(present) == 3 and len({p[2] for p in present}) == 1:
            values["power_import"] = ("power", sum((p[1] for p in present), Decimal(0)), main[2])
    for key in ("power_import", "power_import_l1", "power_import_l2", "power_import_l3"):
        entry = values.get(key)
        if entry is None or (entry[1] >= 0 and not bidirectional):
            continue
        prop, value, unit = entry
        export_key = key.replace("import", "export")
        if value < 0:
            values[key] = (prop, Decimal(0), unit)
            values[export_key] = (prop, -value, unit)
        else:
            values.setdefault(export_key, (prop, Decimal(0), unit))
