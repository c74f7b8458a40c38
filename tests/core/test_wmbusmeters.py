"""wmbusmeters: its MQTT JSON telegrams to frames.

The payloads are wmbusmeters' own expected JSON output for the corpus
telegrams (``../shared/corpus/wmbus/*.expected.json``, GPL-3.0, read in place,
not copied): exactly what wmbusmeters publishes on MQTT for those telegrams.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.errors import DecodeError
from custom_components.smartmeter.core.models import Frame, Medium
from custom_components.smartmeter.core.wmbusmeters import (
    MAX_PAYLOAD,
    PayloadTooLarge,
    decode_wmbusmeters,
    media_medium,
)
from tests.conftest import corpus_dir

CORPUS = corpus_dir() / "wmbus"
SAMPLES = sorted(CORPUS.glob("*.expected.json"))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Unit each field suffix states.
SUFFIX_UNITS = {
    "m3": "m3",
    "kwh": "kWh",
    "kw": "kW",
    "v": "V",
    "m3h": "m3/h",
    "c": "°C",
    "s": "s",
    "hca": None,
}

# What each sample must give under the integration's keys: key -> (value, unit).
EXPECTED: dict[str, tuple[Medium, dict[str, tuple[str, str | None]]]] = {
    "amiplus_86064864_electricity": (
        Medium.ELECTRICITY,
        {
            "power_import": ("1.732", "kW"),
            "power_export": ("0", "kW"),
            "voltage_l1": ("231", "V"),
            "voltage_l2": ("225", "V"),
            "voltage_l3": ("231", "V"),
            "energy_import_tariff_1": ("25011.061", "kWh"),
            "energy_import_tariff_2": ("18530.681", "kWh"),
            "energy_export_tariff_1": ("4.999", "kWh"),
            "energy_export_tariff_2": ("0.686", "kWh"),
            "wmbus_max_power_consumption_kw": ("22.852", "kW"),
        },
    ),
    "aventieswm_61070071_water": (
        Medium.WATER,
        {"water": ("466.472", "m3"), "wmbus_consumption_at_set_date_14_m3": ("357.84", "m3")},
    ),
    "ebzwmbe_22992299_electricity": (
        Medium.ELECTRICITY,
        {
            "energy_import_total": ("2816.304", "kWh"),
            "power_import": ("0.21679", "kW"),
            "power_import_l1": ("0.09471", "kW"),
            "power_import_l2": ("0.10602", "kW"),
            "power_import_l3": ("0.01606", "kW"),
        },
    ),
    "elf2_24271170_heat": (
        Medium.HEAT,
        {
            "heat": ("144", "kWh"),
            "cooling": ("1", "kWh"),
            "power": ("0", "kW"),
            "volume_flow": ("0", "m3/h"),
            "volume": ("17.856", "m3"),
            "wmbus_t1_temperature_c": ("22.5", "°C"),
            "wmbus_t2_temperature_c": ("22.6", "°C"),
            "wmbus_total_energy_period_kwh": ("72", "kWh"),
        },
    ),
    "engelmann_faw_22862420_water": (
        Medium.WATER,
        {"water": ("253.409", "m3"), "wmbus_consumption_at_reporting_date_m3": ("228.854", "m3")},
    ),
    "fhkvdataiv_14542076_hca": (
        Medium.HEAT_COST_ALLOCATOR,
        {"hca_units": ("2", None), "wmbus_consumption_at_set_date_hca": ("25", None)},
    ),
    "gwfgas_23115250_gas": (
        Medium.GAS,
        {"gas": ("101.886", "m3"), "wmbus_target_m3": ("0", "m3"), "wmbus_actuality_duration_s": ("94", "s")},
    ),
    "iwmtx5_22917370_water": (Medium.WATER, {"water": ("0.025", "m3")}),
    "unismart_00043094_gas": (Medium.GAS, {"gas": ("917", "m3"), "wmbus_target_m3": ("911.32", "m3")}),
    "waterstarm_50496629_water": (
        Medium.WATER,
        # -0.001 is the driver's empty history slot: kept as stated, it is no counter.
        {"water": ("0.003", "m3"), "wmbus_consumption_at_history_8_m3": ("-0.001", "m3")},
    ),
}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _expected_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(), parse_float=Decimal)["expected_json"]
    return data


def _payload(path: Path) -> str:
    return json.dumps(json.loads(path.read_text())["expected_json"])


def test_every_sample_is_known() -> None:
    assert sorted(path.name.removesuffix(".expected.json") for path in SAMPLES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name.removesuffix(".expected.json"))
def test_corpus_sample(path: Path) -> None:
    expected = _expected_json(path)
    payload = _payload(path)
    frame = decode_wmbusmeters(payload)
    assert frame.protocol == "wmbusmeters"
    assert frame.raw == payload.encode()
    assert len(frame.meters) == 1
    meter = frame.main
    assert meter is not None
    assert meter.id == expected["id"]
    assert meter.manufacturer == meter.model == expected["meter"]
    assert meter.timestamp is None  # 1111-11-11T11:11:11Z is wmbusmeters' test placeholder
    medium, keys = EXPECTED[path.name.removesuffix(".expected.json")]
    assert meter.medium is medium
    registers = {reg.key: reg for reg in meter.registers}
    for key, (value, unit) in keys.items():
        assert (registers[key].value, registers[key].unit) == (Decimal(value), unit), key
    # Every numeric field of the expected JSON is a register with its exact value
    # and the unit its suffix names; nothing else is.
    by_field = {reg.obis.removeprefix("wmbus:"): reg for reg in meter.registers}
    numeric = {
        field: value
        for field, value in expected.items()
        if isinstance(value, int | Decimal) and not isinstance(value, bool)
    }
    assert set(by_field) == set(numeric)
    for field, value in numeric.items():
        reg = by_field[field]
        assert reg.value == Decimal(value), field
        assert reg.timestamp is None
        suffix = field.rsplit("_", 1)[1]
        if suffix in SUFFIX_UNITS:
            assert reg.unit == SUFFIX_UNITS[suffix], field
    # Bytes and text decode alike.
    assert decode_wmbusmeters(payload.encode()).meters == frame.meters


def test_real_timestamp_stamps_meter_and_registers() -> None:
    data = json.loads(_payload(CORPUS / "iwmtx5_22917370_water.expected.json"))
    data["timestamp"] = "2024-05-11T10:38:24Z"
    meter = decode_wmbusmeters(json.dumps(data)).main
    assert meter is not None
    stamp = datetime(2024, 5, 11, 10, 38, 24, tzinfo=UTC)
    assert meter.timestamp == stamp
    assert meter.register("water") is not None
    assert meter.values["water"].timestamp == stamp
    for value in ("not a time", 17, None, "1999-12-31T23:59:59Z"):
        data["timestamp"] = value
        meter = decode_wmbusmeters(json.dumps(data)).main
        assert meter is not None and meter.timestamp is None


@pytest.mark.parametrize(
    ("media", "medium"),
    [
        ("water", Medium.WATER),
        ("cold water", Medium.WATER),
        ("warm water", Medium.HOT_WATER),
        ("hot water", Medium.HOT_WATER),
        ("gas", Medium.GAS),
        ("heat", Medium.HEAT),
        ("heat volume at inlet", Medium.HEAT),
        ("heat/cooling load", Medium.HEAT),
        ("cooling load volume at outlet", Medium.COOLING),
        ("electricity", Medium.ELECTRICITY),
        ("heat cost allocation", Medium.HEAT_COST_ALLOCATOR),
        ("heat cost allocator", Medium.HEAT_COST_ALLOCATOR),
        ("smoke detector", Medium.UNKNOWN),
    ],
)
def test_media(media: str, medium: Medium) -> None:
    assert media_medium(media) is medium


def _values(frame: Frame) -> dict[str, tuple[Any, str | None]]:
    assert frame.main is not None
    return {reg.key: (reg.value, reg.unit) for reg in frame.main.registers}


def test_heat_meter_fields() -> None:
    """A Kamstrup-style heat meter (fields as wmbusmeters' kamheat driver names them)."""
    telegram = {
        "_": "telegram",
        "media": "heat",
        "meter": "kamheat",
        "name": "Heat",
        "id": "67676767",
        "status": "OK",
        "total_energy_consumption_kwh": 22135,
        "total_volume_m3": 1058.1,
        "volume_flow_m3h": 0.126,
        "power_kw": 3.2,
        "flow_temperature_c": 56.9,
        "return_temperature_c": 34.01,
        "timestamp": "2025-01-02T03:04:05Z",
    }
    assert _values(decode_wmbusmeters(json.dumps(telegram))) == {
        "heat": (Decimal(22135), "kWh"),
        "volume": (Decimal("1058.1"), "m3"),
        "volume_flow": (Decimal("0.126"), "m3/h"),
        "power": (Decimal("3.2"), "kW"),
        "flow_temperature": (Decimal("56.9"), "°C"),
        "return_temperature": (Decimal("34.01"), "°C"),
    }
    gj = {"media": "heat", "meter": "x", "id": "1", "total_energy_consumption_gj": 12.345}
    assert _values(decode_wmbusmeters(json.dumps(gj))) == {"heat": (Decimal("12.345"), "GJ")}
    warm = {"media": "warm water", "meter": "x", "id": "2", "total_m3": 12.5}
    frame = decode_wmbusmeters(json.dumps(warm))
    assert frame.main is not None and frame.main.medium is Medium.HOT_WATER
    assert _values(frame) == {"hot_water": (Decimal("12.5"), "m3")}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"garbage",
        b"\xff\xfe",
        b"[]",
        b'"telegram"',
        b'{"media": "water", "total_m3": 1}',  # no id
        b'{"id": "12345678", "total_m3": 1}',  # no media
        b'{"id": 12345678, "media": "water"}',  # id of the wrong type
        b'{"id": "", "media": "water"}',
        b'{"id": "1 2", "media": "water"}',
        b'{"id": "12345678", "media": 7}',
        b'{"_": "status", "id": "12345678", "media": "water"}',
        b'{"id": "12345678", "media": "water", "total_m3": "1.5"}',
        b'{"id": "12345678", "media": "water", "total_m3": true}',
        b'{"id": "12345678", "media": "water", "total_m3": [1]}',
        b'{"id": "12345678", "media": "water", "total_m3": -3.5}',
        b'{"id": "12345678", "media": "water", "total_m3": NaN}',
        b'{"id": "12345678", "media": "water", "total_m3": Infinity}',
        b'{"id": "12345678", "media": "water", "total_m3": 1e999}',
        b'{"id": "12345678", "media": "electricity", "total_energy_consumption_kwh": -1}',
        b'{"id": "12345678", "media": "heat", "total_energy_consumption_kwh": -1}',
        b'{"id": "12345678", "media": "heat cost allocation", "current_consumption_hca": -2}',
        b'{"id": "12345678", "media": "water", "total_m3": 1',
    ],
)
def test_bad_input(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_wmbusmeters(payload)


def test_null_reading_is_no_register() -> None:
    frame = decode_wmbusmeters(b'{"id": "12345678", "media": "water", "meter": "x", "total_m3": null}')
    assert frame.main is not None and frame.main.registers == ()


def test_size_limit() -> None:
    payload = json.dumps({"id": "1", "media": "water", "total_m3": 1, "pad": "x" * MAX_PAYLOAD})
    with pytest.raises(PayloadTooLarge):
        decode_wmbusmeters(payload)


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
COUNTER_KEYS = {"water", "hot_water", "gas", "heat", "cooling", "volume", "hca_units"}
PAYLOADS = [json.loads(_payload(path)) for path in SAMPLES]
FIELDS = sorted({field for payload in PAYLOADS for field in payload})


def _decode(payload: bytes | str) -> None:
    try:
        frame = decode_wmbusmeters(payload)
    except DecodeError:
        return
    meter = frame.main
    assert meter is not None and meter.id
    for reg in meter.registers:
        assert isinstance(reg.value, Decimal)
        assert reg.value.is_finite()
        if reg.key in COUNTER_KEYS or reg.key.startswith(("energy_", "reactive_energy_")):
            assert reg.value >= 0, reg


@FUZZ
@given(JSON)
def test_fuzz_random_json(value: Any) -> None:
    _decode(json.dumps(value))


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_bytes(payload: bytes) -> None:
    _decode(payload)


@FUZZ
@given(st.sampled_from(PAYLOADS), st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6))
def test_fuzz_changed_fields(payload: dict[str, Any], changes: dict[str, Any]) -> None:
    _decode(json.dumps({**payload, **changes}))


NUMBERS = st.none() | st.integers(min_value=-10, max_value=10) | st.floats(min_value=-1e6, max_value=1e6)


@FUZZ
@given(st.sampled_from(PAYLOADS), st.dictionaries(st.sampled_from(FIELDS), NUMBERS, max_size=6))
def test_fuzz_changed_numbers(payload: dict[str, Any], changes: dict[str, Any]) -> None:
    """Plausible numbers, negative ones too: a frame never holds a negative counter."""
    _decode(json.dumps({**payload, **changes}))
