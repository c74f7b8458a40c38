"""Zigbee2MQTT: bridge/devices to metering devices, state payloads to frames.

The state samples are the corpus' real Zigbee2MQTT publishes (Frient ZHEMI101,
a Tuya plug, an RTX valve with a null water reading) and the herdsman
converter test vectors for the ZHEMI101's electricity, gas and water modes; the
device list is the hand-built fixture (see tests/fixtures/zigbee2mqtt/README.md).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.errors import DecodeError
from custom_components.smartmeter.core.models import Frame, Medium
from custom_components.smartmeter.core.zigbee2mqtt import (
    MAX_DEVICE_LIST_PAYLOAD,
    MAX_PAYLOAD,
    PROPERTIES,
    PayloadTooLarge,
    Z2MDevice,
    decode_state,
    metering_device_type_medium,
    parse_bridge_devices,
    parse_bridge_devices_counted,
)
from tests.conftest import corpus_dir

FIXTURE = Path(__file__).parents[1] / "fixtures" / "zigbee2mqtt" / "bridge_devices.json"
CORPUS = corpus_dir() / "zigbee2mqtt"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PLUG = "0xa4c138d2e5f6a701"
ZHEMI = "0x0015bc001b02a5c4"
LINKY = "0x00158d0007a1b2c3"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _devices() -> dict[str, Z2MDevice]:
    return {device.ieee: device for device in parse_bridge_devices(FIXTURE.read_bytes())}


DEVICES = _devices()


def _values(frame: Frame) -> dict[str, tuple[Decimal, str | None]]:
    meter = frame.main
    assert meter is not None
    out: dict[str, tuple[Decimal, str | None]] = {}
    for reg in meter.registers:
        assert isinstance(reg.value, Decimal)
        out[reg.key] = (reg.value, reg.unit)
    return out


def _numeric(name: str, unit: str | None = None, prop: str | None = None) -> dict[str, Any]:
    expose: dict[str, Any] = {"access": 1, "name": name, "property": prop or name, "type": "numeric"}
    if unit is not None:
        expose["unit"] = unit
    return expose


def _entry(ieee: str, name: str, exposes: list[Any], **definition: Any) -> dict[str, Any]:
    return {
        "ieee_address": ieee,
        "friendly_name": name,
        "type": "EndDevice",
        "supported": True,
        "disabled": False,
        "definition": {
            "vendor": "Test",
            "model": "T1",
            "description": "test meter",
            "exposes": exposes,
            **definition,
        },
    }


def _device(exposes: list[Any], ieee: str = "0x0000000000000001") -> Z2MDevice:
    (device,) = parse_bridge_devices(json.dumps([_entry(ieee, "meter", exposes)]))
    return device


# --- bridge/devices ---------------------------------------------------------


def test_fixture_keeps_the_metering_devices_only() -> None:
    devices, skipped = parse_bridge_devices_counted(FIXTURE.read_bytes())
    assert skipped == 0
    # Coordinator, Aqara weather sensor (battery voltage only), gas detector (binary gas): left out.
    assert [d.ieee for d in devices] == [PLUG, ZHEMI, LINKY]
    plug, zhemi, linky = devices
    assert (plug.friendly_name, plug.vendor, plug.model) == ("washing_machine_plug", "Tuya", "TS011F_plug_1")
    assert plug.medium is Medium.ELECTRICITY
    assert plug.properties == ("power", "current", "voltage", "energy")
    assert plug.unit("energy") == "kWh" and plug.unit("power") == "W"
    assert plug.power_source == "Mains (single phase)"
    assert (zhemi.vendor, zhemi.model, zhemi.description) == (
        "Develco",
        "ZHEMI101",
        "Energy/gas/water meter interface",
    )
    # Energy, gas and water exposed at once: the medium comes from the state.
    assert zhemi.medium is Medium.UNKNOWN
    assert set(zhemi.properties) == {"energy", "produced_energy", "power", "gas", "water_consumed", "flow"}
    assert zhemi.raw_properties == ()
    assert zhemi.unit("gas") == "m³"
    assert linky.medium is Medium.ELECTRICITY
    assert linky.properties[:3] == (
        "current_summ_delivered",
        "current_tier1_summ_delivered",
        "current_tier2_summ_delivered",
    )


def test_broken_entries_are_skipped_and_counted() -> None:
    entries = json.loads(FIXTURE.read_text())
    entries += [
        "not a device",
        None,
        {"friendly_name": "no ieee", "definition": {}},
        {"ieee_address": "0x12", "friendly_name": "short ieee"},
        {"ieee_address": "0x00158d0001234567", "friendly_name": 5},
        {"ieee_address": "0x00158d0001234568", "friendly_name": "bad definition", "definition": []},
        {"ieee_address": "0x00158d0001234569", "friendly_name": "bad exposes", "definition": {"exposes": {}}},
        # Not broken: unsupported, not yet interviewed, disabled; no metering.
        {"ieee_address": "0x00158d000123456a", "friendly_name": "new", "definition": None},
        {**_entry("0x00158d000123456b", "off", [_numeric("energy", "kWh")]), "disabled": True},
    ]
    devices, skipped = parse_bridge_devices_counted(json.dumps(entries))
    assert skipped == 7
    assert [d.ieee for d in devices] == [PLUG, ZHEMI, LINKY]
    assert parse_bridge_devices(json.dumps(entries)) == devices


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"\xff\xfe", b'{"devices": []}', b'"text"', b"42", b"null", "[1, 2", b"[NaN]"],
)
def test_device_list_wrong_shape(payload: bytes | str) -> None:
    with pytest.raises(DecodeError):
        parse_bridge_devices(payload)


def test_device_list_size_limit() -> None:
    entry = json.loads(FIXTURE.read_text())[1]
    big = json.dumps([entry] * (MAX_PAYLOAD // len(json.dumps(entry)) + 5))
    assert len(big) > MAX_PAYLOAD  # a large network's list is far over a state message's limit
    assert [d.ieee for d in parse_bridge_devices(big)] == [PLUG]
    with pytest.raises(PayloadTooLarge):
        parse_bridge_devices(b"[" + b" " * MAX_DEVICE_LIST_PAYLOAD + b"]")


def test_exposes_in_features_and_units() -> None:
    # A composite / switch expose carries its values in features.
    device = _device(
        [{"type": "switch", "features": [{"type": "composite", "features": [_numeric("energy", "kWh")]}]}]
    )
    assert device.properties == ("energy",)


@pytest.mark.parametrize(
    ("exposes", "metering"),
    [
        ([{"type": "binary", "name": "gas", "property": "gas"}], False),  # gas detector
        ([_numeric("gas", "%LEL")], False),  # gas concentration
        ([_numeric("gas", "m³")], True),
        ([_numeric("water_consumed", "L")], True),  # RTX / Tuya valve
        ([_numeric("voltage", "V"), _numeric("current", "A")], False),  # no reading, no power
        ([_numeric("power", "W")], True),
        ([_numeric("energy", "kWh", prop="energy_l1")], False),  # endpoint-suffixed: unknown property
        ([_numeric("temperature", "°C")], False),
    ],
)
def test_which_devices_meter(exposes: list[Any], metering: bool) -> None:
    assert bool(parse_bridge_devices(json.dumps([_entry("0x0000000000000001", "x", exposes)]))) is metering


def test_rename_keeps_the_meter_id() -> None:
    entries = json.loads(FIXTURE.read_text())
    for entry in entries:
        if entry["ieee_address"] == ZHEMI:
            entry["friendly_name"] = "Hallway/energy meter"
            entry["ieee_address"] = ZHEMI.upper().replace("0X", "0x")
    renamed = {d.ieee: d for d in parse_bridge_devices(json.dumps(entries))}[ZHEMI]
    assert renamed.friendly_name == "Hallway/energy meter"
    payload = b'{"energy": 1362.15, "power": 462}'
    before = decode_state(DEVICES[ZHEMI], payload)
    after = decode_state(renamed, payload)
    assert before.main is not None and after.main is not None
    assert before.main.id == after.main.id == ZHEMI
    assert before.main.registers == after.main.registers


# --- state: corpus samples ---------------------------------------------------


def test_frient_zhemi101_corpus() -> None:
    sample = json.loads((CORPUS / "frient_zhemi101_electricity.json").read_text())
    expected = [(Decimal("1362.15"), Decimal(462)), (Decimal("1362.16"), Decimal(463))]
    for payload, (energy, power) in zip(sample["payloads"], expected, strict=True):
        frame = decode_state(DEVICES[ZHEMI], json.dumps(payload))
        assert frame.protocol == "zigbee2mqtt"
        meter = frame.main
        assert meter is not None
        assert meter.id == ZHEMI
        assert meter.medium is Medium.ELECTRICITY  # interface_mode null: the readings present say so
        assert (meter.manufacturer, meter.model) == ("Develco", "ZHEMI101")
        assert _values(frame) == {"energy_import_total": (energy, "kWh"), "power_import": (power, "W")}
        assert frame.raw == json.dumps(payload).encode()


def test_tuya_plug_corpus() -> None:
    sample = json.loads((CORPUS / "tuya_plug_with_metering.json").read_text())
    frame = decode_state(DEVICES[PLUG], json.dumps(sample["payload"]).encode())
    assert _values(frame) == {
        "energy_import_total": (Decimal("380.8"), "kWh"),
        "power_import": (Decimal(44), "W"),
        "voltage_l1": (Decimal(234), "V"),
        "current_l1": (Decimal(0), "A"),
    }


def test_rtx_valve_null_water_corpus() -> None:
    sample = json.loads((CORPUS / "rtx_zvg1_water_valve.json").read_text())
    valve = _device([_numeric("water_consumed", "L"), _numeric("battery", "%")])
    assert valve.medium is Medium.WATER
    frame = decode_state(valve, json.dumps(sample["payload"]))
    assert frame.main is not None
    assert frame.main.medium is Medium.WATER
    assert frame.main.registers == ()  # null is no reading, and no error
    # A reading in litres is the water meter's m³, exactly.
    payload = dict(sample["payload"], water_consumed=123456)
    assert _values(decode_state(valve, json.dumps(payload))) == {"water": (Decimal("123.456"), "m3")}


def _converter_cases() -> list[dict[str, Any]]:
    data = json.loads((CORPUS / "frient_zhemi101_converter_cases_elec_gas_water.json").read_text())
    cases: list[dict[str, Any]] = data["cases"]
    return cases


@pytest.mark.parametrize("case", _converter_cases(), ids=lambda case: case["name"])
def test_zhemi101_converter_cases(case: dict[str, Any]) -> None:
    """The herdsman converter vectors: Zigbee2MQTT merges each publish into the device's state."""
    state = {**case["device_state"], **case["expected_mqtt_payload"]}
    frame = decode_state(DEVICES[ZHEMI], json.dumps(state))
    assert frame.main is not None
    mode = case["device_state"]["interface_mode"]
    assert (
        frame.main.medium
        is {"electricity": Medium.ELECTRICITY, "gas": Medium.GAS, "water": Medium.WATER}[mode]
    )
    if mode == "electricity":
        # 280 raw * 1/1000 kW = 0.28 kW = 280 W; Zigbee2MQTT already scaled it: not again.
        assert _values(frame) == {"power_import": (Decimal(280), "W")}
    else:
        assert _values(frame) == {"volume_flow": (Decimal("0.28"), "m3/h")}


def test_zhemi101_modes_drop_stale_readings() -> None:
    # Zigbee2MQTT's cached state keeps the electricity-mode energy after a switch to gas.
    gas = {"interface_mode": "gas", "metering_device_type": 1, "energy": 10.5, "power": 3, "gas": 1234.567}
    assert _values(decode_state(DEVICES[ZHEMI], json.dumps(gas))) == {"gas": (Decimal("1234.567"), "m3")}
    water = {"interface_mode": "water", "water_consumed": 56.25, "flow": 0.012, "gas": 1234.567}
    frame = decode_state(DEVICES[ZHEMI], json.dumps(water))
    assert frame.main is not None and frame.main.medium is Medium.WATER
    assert _values(frame) == {"water": (Decimal("56.25"), "m3"), "volume_flow": (Decimal("0.012"), "m3/h")}


@pytest.mark.parametrize(
    ("device_type", "medium"),
    [
        (0, Medium.ELECTRICITY),
        (1, Medium.GAS),
        (2, Medium.WATER),
        (5, Medium.HEAT),
        (6, Medium.COOLING),
        (8, Medium.ELECTRICITY),
        (127, Medium.ELECTRICITY),  # mirrored electric
        (128, Medium.GAS),  # mirrored gas (a SMETS2 IHD's gas meter)
        (129, Medium.WATER),
        (132, Medium.HEAT),
        (133, Medium.COOLING),
        (4, Medium.UNKNOWN),  # pressure
        (200, Medium.UNKNOWN),
    ],
)
def test_metering_device_type(device_type: int, medium: Medium) -> None:
    assert metering_device_type_medium(device_type) is medium


def test_mirrored_gas_from_state() -> None:
    # ZHEMI101 reads `metering_device_type & 7`, which takes mirrored gas (128) for electricity.
    frame = decode_state(DEVICES[ZHEMI], b'{"metering_device_type": 128, "gas": 2045.3, "energy": 7}')
    assert frame.main is not None and frame.main.medium is Medium.GAS
    assert _values(frame) == {"gas": (Decimal("2045.3"), "m3")}


def test_zlinky_state() -> None:
    state = {
        "current_summ_delivered": 12345.67,
        "current_tier1_summ_delivered": 4000.12,
        "current_tier2_summ_delivered": 8345.55,
        "rms_current": 3,
        "rms_voltage": 236,
        "apparent_power": 690,
        "meter_serial_number": "021961448081",
        "current_tarif": "H PLEINE/CREUSE",
        "linkquality": 120,
    }
    assert _values(decode_state(DEVICES[LINKY], json.dumps(state))) == {
        "energy_import_total": (Decimal("12345.67"), "kWh"),
        "energy_import_tariff_1": (Decimal("4000.12"), "kWh"),
        "energy_import_tariff_2": (Decimal("8345.55"), "kWh"),
        "current_l1": (Decimal(3), "A"),
        "voltage_l1": (Decimal(236), "V"),
        "apparent_power": (Decimal(690), "VA"),
    }


def test_raw_summation_scaled_by_multiplier_and_divisor() -> None:
    raw = _device([_numeric("energy"), _numeric("power", "W")])
    assert raw.raw_properties == ("energy",)
    frame = decode_state(raw, b'{"energy": 123456789, "multiplier": 1, "divisor": 1000, "power": 5}')
    assert _values(frame)["energy_import_total"] == (Decimal("123456.789"), "kWh")
    # Without its scale a raw summation is no reading.
    assert "energy_import_total" not in _values(decode_state(raw, b'{"energy": 123456789, "power": 5}'))
    # A normalised counter (unit in the exposes) is never scaled again.
    scaled = decode_state(DEVICES[ZHEMI], b'{"energy": 12.5, "multiplier": 1, "divisor": 1000}')
    assert _values(scaled) == {"energy_import_total": (Decimal("12.5"), "kWh")}


def test_three_phase_and_export() -> None:
    meter = _device(
        [_numeric(name, "W") for name in ("power", "power_phase_b", "power_phase_c")]
        + [_numeric("energy", "kWh"), _numeric("produced_energy", "kWh")]
        + [_numeric(name, "V") for name in ("voltage", "voltage_phase_b", "voltage_phase_c")]
    )
    state = {
        "power": 1200,
        "power_phase_b": -300.5,
        "power_phase_c": 100,
        "energy": 5000.25,
        "produced_energy": 1200.5,
        "voltage": 230.1,
        "voltage_phase_b": 231,
        "voltage_phase_c": 229.9,
    }
    values = _values(decode_state(meter, json.dumps(state)))
    assert values == {
        "power_import_l1": (Decimal(1200), "W"),
        "power_import_l2": (Decimal(0), "W"),
        "power_export_l2": (Decimal("300.5"), "W"),
        "power_import_l3": (Decimal(100), "W"),
        "power_import": (Decimal("999.5"), "W"),
        "power_export": (Decimal(0), "W"),
        "power_export_l1": (Decimal(0), "W"),
        "power_export_l3": (Decimal(0), "W"),
        "energy_import_total": (Decimal("5000.25"), "kWh"),
        "energy_export_total": (Decimal("1200.5"), "kWh"),
        "voltage_l1": (Decimal("230.1"), "V"),
        "voltage_l2": (Decimal(231), "V"),
        "voltage_l3": (Decimal("229.9"), "V"),
    }
    # A bidirectional clamp on one phase: negative power is export.
    clamp = _device([_numeric("power", "W"), _numeric("energy", "kWh")])
    values = _values(decode_state(clamp, b'{"power": -1520, "energy": 1}'))
    assert values["power_import"] == (Decimal(0), "W")
    assert values["power_export"] == (Decimal(1520), "W")


def test_values_are_exact() -> None:
    frame = decode_state(DEVICES[PLUG], b'{"energy": 0.1, "power": 1e2}')
    assert _values(frame)["energy_import_total"] == (Decimal("0.1"), "kWh")
    assert _values(frame)["power_import"][0] == Decimal(100)


# --- state: bad input ---------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'"energy"',
        b"null",
        b'{"linkquality": 100}',  # no metering property at all
        b'{"energy": "12.5"}',
        b'{"energy": true}',
        b'{"energy": [1]}',
        b'{"energy": {"value": 1}}',
        b'{"energy": NaN}',
        b'{"energy": Infinity}',
        b'{"power": -Infinity}',
        b'{"energy": -0.01}',
        b'{"energy": 1e400}',
        b'{"energy": 1' + b"0" * 5000 + b"}",
        b'{"energy": 12.5',
        b"[" * 100_000,
    ],
)
def test_bad_state(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_state(DEVICES[PLUG], payload)


def test_state_size_limit() -> None:
    payload = json.dumps({"energy": 1, "pad": "x" * MAX_PAYLOAD})
    with pytest.raises(PayloadTooLarge):
        decode_state(DEVICES[PLUG], payload)
    with pytest.raises(PayloadTooLarge):
        decode_state(DEVICES[PLUG], payload.encode())
    assert issubclass(PayloadTooLarge, DecodeError)


# --- fuzzing -------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.integers(min_value=-5, max_value=5)
    | st.floats(min_value=-10, max_value=10)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
METERING_PROPERTIES = [*sorted(PROPERTIES), "metering_device_type", "multiplier", "divisor", "interface_mode"]
COUNTER_KEYS = {spec.key for spec in PROPERTIES.values() if spec.counter}


def _check(frame: Frame, device: Z2MDevice) -> None:
    meter = frame.main
    assert meter is not None and meter.id == device.ieee
    for reg in meter.registers:
        assert isinstance(reg.value, Decimal)
        assert reg.value.is_finite()
        if reg.key in COUNTER_KEYS or reg.key.startswith(("power_import", "power_export")):
            assert reg.value >= 0, reg


def _decode(device: Z2MDevice, payload: bytes | str) -> None:
    try:
        frame = decode_state(device, payload)
    except DecodeError:
        return
    _check(frame, device)


ALL_DEVICES = [*DEVICES.values(), _device([_numeric("energy"), _numeric("water_consumed", "L")])]


@FUZZ
@given(st.sampled_from(ALL_DEVICES), JSON)
def test_fuzz_state_random_json(device: Z2MDevice, value: Any) -> None:
    _decode(device, json.dumps(value))


@FUZZ
@given(
    st.sampled_from(ALL_DEVICES),
    st.dictionaries(st.sampled_from(METERING_PROPERTIES), JSON, max_size=12),
)
def test_fuzz_state_metering_fields(device: Z2MDevice, state: dict[str, Any]) -> None:
    _decode(device, json.dumps(state))  # json.dumps writes NaN and Infinity as such


@FUZZ
@given(st.sampled_from(ALL_DEVICES), st.binary(max_size=200))
def test_fuzz_state_bytes(device: Z2MDevice, payload: bytes) -> None:
    _decode(device, payload)


def _mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node a path of choices leads to (the device list changes shape)."""
    if not path:
        return replacement
    if isinstance(value, list) and value:
        index = path[0] % len(value)
        return [*value[:index], _mutate(value[index], path[1:], replacement), *value[index + 1 :]]
    if isinstance(value, dict) and value:
        key = sorted(value)[path[0] % len(value)]
        return {**value, key: _mutate(value[key], path[1:], replacement)}
    return replacement


FIXTURE_ENTRIES = json.loads(FIXTURE.read_text())


def _check_devices(payload: str) -> None:
    try:
        devices, skipped = parse_bridge_devices_counted(payload)
    except DecodeError:
        return
    assert skipped >= 0
    for device in devices:
        assert device.ieee.startswith("0x") and len(device.ieee) == 18
        assert device.friendly_name
        assert device.properties and all(p in PROPERTIES for p in device.properties)
        assert isinstance(device.medium, Medium)


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=50), max_size=8), JSON)
def test_fuzz_device_list_shape(path: list[int], replacement: Any) -> None:
    _check_devices(json.dumps(_mutate(FIXTURE_ENTRIES, path, replacement)))


@FUZZ
@given(JSON)
def test_fuzz_device_list_random_json(value: Any) -> None:
    _check_devices(json.dumps(value))


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=50), max_size=8), JSON, JSON)
def test_fuzz_state_of_mutated_devices(path: list[int], replacement: Any, state: Any) -> None:
    """Whatever device a changed list yields decodes any state to DecodeError or a sane frame."""
    try:
        devices = parse_bridge_devices(json.dumps(_mutate(FIXTURE_ENTRIES, path, replacement)))
    except DecodeError:
        return
    for device in devices:
        _decode(device, json.dumps(state))


NUMBERS = st.none() | st.integers(min_value=-10, max_value=10) | st.floats(min_value=-1e6, max_value=1e6)


@FUZZ
@given(
    st.sampled_from(ALL_DEVICES),
    st.dictionaries(st.sampled_from(METERING_PROPERTIES), NUMBERS, max_size=12),
)
def test_fuzz_state_numbers(device: Z2MDevice, state: dict[str, Any]) -> None:
    """Plausible numbers, negative ones too: a frame never holds a negative counter."""
    _decode(device, json.dumps(state))
