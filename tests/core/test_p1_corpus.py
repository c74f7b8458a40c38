"""Every P1 sample of the shared corpus decodes to what its source project asserts.

For each telegram in ``corpus/dsmr``: the CRC verdict equals the corpus
manifest's independent check, and every value the sample's ``*.expected.json``
states (in the source project's field names, mapped here to OBIS codes and our
register keys) is what we decode. The manifest notes add checks of their own:
the 3-digit CRC, the Belgian "no value" timestamps, the 99.97.0 power-failure
durations, the Fluvius 13-month peak history, M-Bus channels, Wh units.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core.crc import crc16_arc
from custom_components.smartmeter.core.models import (
    Frame,
    HistoryEntry,
    Integrity,
    Medium,
    Meter,
    Register,
)
from custom_components.smartmeter.core.obis import READING_KEY
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import parse_key
from tests.conftest import corpus_dir

CORPUS = corpus_dir()
FIXTURES = Path(__file__).parents[1] / "fixtures" / "p1"
MANIFEST: dict[str, dict[str, Any]] = {
    entry["file"].split(" ")[0]: entry for entry in json.loads((CORPUS / "manifest.json").read_text())
}
P1_FILES = sorted((CORPUS / "dsmr").glob("*.txt"))
SMARTY_FRAME = CORPUS / "smarty" / "lu_smarty_encrypted_frame.hex"
CRC_VERDICT = {"valid": Integrity.VALID, "INVALID": Integrity.INVALID, "no-crc": Integrity.ABSENT}
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def _decode(path: Path) -> Frame:
    return decode_telegram(path.read_bytes())


# ---------------------------------------------------------------- provenance


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.*")), ids=lambda p: p.name)
def test_fixture_copies_match_corpus(fixture: Path) -> None:
    """tests/fixtures/p1 holds byte-identical copies, each with a provenance line."""
    if fixture.name == ".gitattributes":
        return
    sources = [CORPUS / sub / fixture.name for sub in ("dsmr", "iec62056-21", "smarty")]
    source = next(path for path in sources if path.exists())
    assert fixture.read_bytes() == source.read_bytes()
    readme = (FIXTURES.parent / "README.md").read_text()
    assert f"`p1/{fixture.name}`" in readme
    assert MANIFEST[str(source.relative_to(CORPUS)).replace(".bin", ".hex")]["license"] in ("MIT", "EPL-2.0")


# ---------------------------------------------------------------- CRC verdict


@pytest.mark.parametrize("path", P1_FILES, ids=_ids(P1_FILES))
def test_crc_verdict_matches_manifest(path: Path) -> None:
    """Every sample decodes; its CRC verdict is the corpus builder's."""
    entry = MANIFEST[f"dsmr/{path.name}"]
    frame = _decode(path)
    assert frame.protocol == "dsmr"
    assert frame.integrity is CRC_VERDICT[entry["crc"]["crc_status"]]
    assert not frame.encrypted
    if entry["crc"]["crc_computed"]:
        raw = path.read_bytes()
        body = raw[raw.index(b"/") : raw.rindex(b"\n!") + 2]
        assert f"{crc16_arc(body):04X}" == entry["crc"]["crc_computed"]


# ---------------------------------------------------------------- source assertions

# dsmr_parser field names -> the OBIS code of the main meter's register.
MAIN_OBIS: dict[str, str] = {
    "P1_MESSAGE_HEADER": "1-3:0.2.8",
    "P1_MESSAGE_TIMESTAMP": "0-0:1.0.0",
    "EQUIPMENT_IDENTIFIER": "0-0:96.1.1",
    "BELGIUM_EQUIPMENT_IDENTIFIER": "0-0:96.1.1",
    "BELGIUM_VERSION_INFORMATION": "0-0:96.1.4",
    "COSEM_LOGICAL_DEVICE_NAME": "0-0:42.0.0",
    "LUXEMBOURG_EQUIPMENT_IDENTIFIER": "0-0:42.0.0",
    "EQUIPMENT_SERIAL_NUMBER": "0-0:96.1.0",
    "ELECTRICITY_IMPORTED_TOTAL": "1-0:1.8.0",
    "ELECTRICITY_EXPORTED_TOTAL": "1-0:2.8.0",
    "ELECTRICITY_REACTIVE_IMPORTED_TOTAL": "1-0:3.8.0",
    "ELECTRICITY_REACTIVE_EXPORTED_TOTAL": "1-0:4.8.0",
    "ELECTRICITY_COMBINED": "1-0:15.8.0",
    "ELECTRICITY_ACTIVE_TARIFF": "0-0:96.14.0",
    "CURRENT_ELECTRICITY_USAGE": "1-0:1.7.0",
    "CURRENT_ELECTRICITY_DELIVERY": "1-0:2.7.0",
    "FREQUENCY": "1-0:14.7.0",
    "INSTANTANEOUS_POWER_FACTOR_TOTAL": "1-0:13.7.0",
    "SHORT_POWER_FAILURE_COUNT": "0-0:96.7.21",
    "LONG_POWER_FAILURE_COUNT": "0-0:96.7.9",
    "POWER_EVENT_FAILURE_LOG": "1-0:99.97.0",
    "TEXT_MESSAGE_CODE": "0-0:96.13.1",
    "TEXT_MESSAGE": "0-0:96.13.0",
    "ACTUAL_TRESHOLD_ELECTRICITY": "0-0:17.0.0",
    "ACTUAL_SWITCH_POSITION": "0-0:96.3.10",
    "BELGIUM_CURRENT_AVERAGE_DEMAND": "1-0:1.4.0",
    "BELGIUM_MAXIMUM_DEMAND_MONTH": "1-0:1.6.0",
    "BELGIUM_MAXIMUM_DEMAND_13_MONTHS": "0-0:98.1.0",
}
for _n in range(1, 5):
    MAIN_OBIS[f"ELECTRICITY_USED_TARIFF_{_n}"] = f"1-0:1.8.{_n}"
    MAIN_OBIS[f"ELECTRICITY_DELIVERED_TARIFF_{_n}"] = f"1-0:2.8.{_n}"
    MAIN_OBIS[f"ELECTRICITY_REACTIVE_TOTAL_Q{_n}"] = f"1-0:{_n + 4}.8.0"
    MAIN_OBIS[f"INSTANTANEOUS_REACTIVE_POWER_Q{_n}"] = f"1-0:{_n + 4}.7.0"
for _p, _base in ((1, 20), (2, 40), (3, 60)):
    MAIN_OBIS[f"INSTANTANEOUS_ACTIVE_POWER_L{_p}_POSITIVE"] = f"1-0:{_base + 1}.7.0"
    MAIN_OBIS[f"INSTANTANEOUS_ACTIVE_POWER_L{_p}_NEGATIVE"] = f"1-0:{_base + 2}.7.0"
    MAIN_OBIS[f"INSTANTANEOUS_CURRENT_L{_p}"] = f"1-0:{_base + 11}.7.0"
    MAIN_OBIS[f"INSTANTANEOUS_VOLTAGE_L{_p}"] = f"1-0:{_base + 12}.7.0"
    MAIN_OBIS[f"INSTANTANEOUS_POWER_FACTOR_L{_p}"] = f"1-0:{_base + 13}.7.0"
    MAIN_OBIS[f"FUSE_THRESHOLD_L{_p}"] = f"1-0:{_base + 11}.4.0"
    MAIN_OBIS[f"VOLTAGE_SAG_L{_p}_COUNT"] = f"1-0:{_base + 12}.32.0"
    MAIN_OBIS[f"VOLTAGE_SWELL_L{_p}_COUNT"] = f"1-0:{_base + 12}.36.0"

# dsmr_parser field names of M-Bus objects -> our register key on the channel's
# meter ("" = the channel's meter reading, keyed by its medium).
MBUS_KEY: dict[str, str] = {
    "DEVICE_TYPE": "device_type",
    "MBUS_DEVICE_TYPE": "device_type",
    "EQUIPMENT_IDENTIFIER_GAS": "equipment_id",
    "MBUS_EQUIPMENT_IDENTIFIER": "equipment_id",
    "VALVE_POSITION_GAS": "valve_position",
    "MBUS_VALVE_POSITION": "valve_position",
    "GAS_METER_READING": "",
    "HOURLY_GAS_METER_READING": "",
    "MBUS_METER_READING": "",
}

_DT_REPR = re.compile(r"datetime\.datetime\(([\d, ]+), tzinfo=(.+)\)")


def _expected_datetime(text: str) -> datetime:
    """A datetime as the expected files write it: a Python repr or ISO 8601."""
    match = _DT_REPR.fullmatch(text)
    if match is None:
        return datetime.fromisoformat(text)
    parts = [int(part) for part in match.group(1).split(",")]
    zone = match.group(2)
    tz: tzinfo = UTC if zone == "datetime.timezone.utc" else ZoneInfo(zone.split('"')[1])
    year, month, day, hour, minute, second = [*parts, 0, 0, 0][:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)


def _same_instant(actual: object, expected: str | None) -> None:
    if expected is None:
        assert actual is None
        return
    assert isinstance(actual, datetime), actual
    assert actual.astimezone(UTC) == _expected_datetime(expected).astimezone(UTC)


def _same_value(actual: object, expected: object) -> None:
    """Compare one decoded value with the source's (a string, a number, a datetime)."""
    if expected is None:
        assert actual is None
    elif isinstance(actual, datetime):
        assert isinstance(expected, str)
        _same_instant(actual, expected)
    elif isinstance(actual, Decimal):
        assert actual == Decimal(str(expected)), (actual, expected)
    elif isinstance(actual, int):  # a buffer's entry count
        assert actual == int(str(expected))
    else:  # text: identifiers, messages, versions (a numeric code compares by its digits)
        assert actual == str(expected), (actual, expected)


def _check_register(reg: Register | None, spec: dict[str, Any], what: str) -> None:
    if reg is None:
        # A value the source reports as None may be absent here (an empty
        # M-Bus channel makes no meter).
        assert spec.get("value", "missing") is None, f"{what}: not decoded"
        return
    if "value" in spec:
        _same_value(reg.value, spec["value"])
    if "unit" in spec:
        assert reg.unit == spec["unit"], what
    if "datetime" in spec:
        _same_instant(reg.timestamp, spec["datetime"])


def _check_entry(entry: HistoryEntry, spec: dict[str, Any]) -> None:
    """A Belgian 13-month peak: datetime = month start, occurred = peak time."""
    _same_value(entry.value, spec["value"])
    assert entry.unit == spec["unit"]
    _same_instant(entry.start, spec["datetime"])
    _same_instant(entry.timestamp, spec["occurred"])


def _channel(frame: Frame, number: int) -> Meter | None:
    return next((meter for meter in frame.meters if meter.channel == number), None)


def _main_register(frame: Frame, obis: str) -> Register | None:
    assert frame.main is not None
    return next((reg for reg in frame.main.registers if reg.obis == obis), None)


def _mbus_register(frame: Frame, channel: int, name: str) -> Register | None:
    meter = _channel(frame, channel)
    if meter is None:
        return None
    assert frame.main is not None
    assert meter.parent_id == frame.main.id
    key = MBUS_KEY[name] or READING_KEY[meter.medium]
    return meter.register(key)


def _check_assertion(frame: Frame, key: str, spec: Any) -> None:
    """One ``source_assertions`` item, whatever its shape in the expected file."""
    if key == "_object_count":  # dsmr_parser parsed this many objects
        assert frame.main is not None
        assert len(frame.main.registers) == spec
        return
    if key == "MBUS_DEVICES":
        for device in spec:
            channel = device["CHANNEL_ID"]
            for name, item in device.items():
                if name != "CHANNEL_ID":
                    _check_register(_mbus_register(frame, channel, name), item, f"mbus{channel}.{name}")
        return
    channel = 1
    match = re.fullmatch(r"mbus(\d)\.(\w+)|MBUS channel (\d) (\w+)", key)
    if match:
        channel = int(match.group(1) or match.group(3))
        key = match.group(2) or match.group(4)
    index = None
    match = re.fullmatch(r"(\w+)\[(\d+)\]", key)
    if match:
        key, index = match.group(1), int(match.group(2))
    if key == "EQUIPMENT_IDENTIFIER_GAS" and spec["obis"].startswith("0-0:"):
        key = "EQUIPMENT_SERIAL_NUMBER"  # ISKRA_IE names the main meter's 0-0:96.1.0 so
    if key in MBUS_KEY:
        _check_register(_mbus_register(frame, channel, key), spec, key)
        return
    reg = _main_register(frame, MAIN_OBIS[key])
    if isinstance(spec, list) or index is not None:
        assert reg is not None
        entries = spec if isinstance(spec, list) else [spec]
        first = index or 0
        assert len(reg.history) >= first + len(entries)
        for offset, item in enumerate(entries):
            _check_entry(reg.history[first + offset], item)
        return
    _check_register(reg, spec, key)


def _check_amshan(frame: Frame, raw: bytes, key: str, spec: str) -> None:
    """toreamun/amshan's assertions: identification and end lines, OBIS -> "value unit"."""
    assert frame.main is not None
    if key == "identification_line":
        assert f"/{frame.header}" == spec
    elif key == "manufacturer_id":
        assert frame.main.manufacturer == spec
    elif key == "end_line":
        assert raw.rstrip(b"\r\n").endswith(b"\n" + spec.encode())
        assert frame.integrity is (Integrity.ABSENT if spec == "!" else Integrity.VALID)
    elif key == "checksum":
        assert spec.startswith("valid")
        assert frame.integrity is Integrity.VALID
    else:
        reg = _main_register(frame, key)
        assert reg is not None, key
        if " " in spec:
            value, unit = spec.split(" ")
            assert reg.value == Decimal(value)
            assert reg.unit == unit
        else:  # a timestamp as the meter wrote it
            naive = datetime.strptime(spec[:12], "%y%m%d%H%M%S")
            expected = naive.replace(tzinfo=AMSTERDAM, fold=1 if spec[12] == "W" else 0)
            _same_instant(reg.value, expected.isoformat())


EXPECTED_FILES = sorted(path for path in P1_FILES if path.with_suffix(".expected.json").exists())


@pytest.mark.parametrize("path", EXPECTED_FILES, ids=_ids(EXPECTED_FILES))
def test_source_assertions(path: Path) -> None:
    """Every value the source project asserts for this telegram is what we decode."""
    raw = path.read_bytes()
    frame = decode_telegram(raw)
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    checked = 0
    for block, assertions in expected.items():
        if not block.startswith("source_assertions"):
            continue
        for key, spec in assertions.items():
            if "amshan" in block:
                _check_amshan(frame, raw, key, spec)
            else:
                _check_assertion(frame, key, spec)
            checked += 1
    assert checked, "no source assertions found"


# ---------------------------------------------------------------- manifest notes


def _reg(frame: Frame, obis: str, channel: int = 0) -> Register:
    meter = _channel(frame, channel)
    assert meter is not None
    reg = next((reg for reg in meter.registers if reg.obis == obis), None)
    assert reg is not None, obis
    return reg


def _notes_warmtelink(frame: Frame) -> None:
    # "!B9F": a CRC printed with 3 digits is 0x0B9F, and valid.
    assert frame.integrity is Integrity.VALID
    heat = _channel(frame, 1)
    assert heat is not None
    assert heat.medium is Medium.HEAT
    reading = heat.register("heat")
    assert reading is not None
    assert (reading.value, reading.unit) == (Decimal("240.860"), "GJ")


def _notes_kaifa(frame: Frame) -> None:
    # test/objects/test_telegram.py: 99.97.0 buffer durations.
    log = _reg(frame, "1-0:99.97.0")
    assert log.value == 3
    assert [(e.value, e.unit) for e in log.history] == [
        (Decimal(237126), "s"),
        (Decimal(2147583646), "s"),
        (Decimal(2317482647), "s"),
    ]
    assert log.history[0].timestamp == datetime(2000, 1, 4, 17, 3, 20, tzinfo=UTC)


def _notes_xs210(frame: Frame) -> None:
    # 99.97.0 power-failure log with 5 entries, the last the "never" stamp.
    log = _reg(frame, "1-0:99.97.0")
    assert log.value == 5
    assert [e.value for e in log.history] == [Decimal(v) for v in (15270, 186, 1201, 611, 2147483647)]
    assert log.history[0].timestamp == datetime(2017, 6, 15, 10, 40, 4, tzinfo=UTC)


def _notes_landisgyr_e350(frame: Frame) -> None:
    # The 99.97.0 line states 5 entries but carries 2: both are read.
    log = _reg(frame, "1-0:99.97.0")
    assert log.value == 5
    assert [e.value for e in log.history] == [Decimal(5627), Decimal(43178677)]


def _notes_fluvius_alt(frame: Frame) -> None:
    # 632525252525W is "no value": the first month's peak has no time.
    history = _reg(frame, "0-0:98.1.0").history
    assert len(history) == 4
    assert history[0].timestamp is None
    assert history[0].start == datetime(2023, 7, 31, 22, 0, tzinfo=UTC)


def _notes_fluvius_gas(frame: Frame) -> None:
    # Values with the unit glued on ("000123.456kWh"); gas with an invalid
    # timestamp and no unit: the reading is kept, with no time and no unit.
    assert (_reg(frame, "1-0:1.8.1").value, _reg(frame, "1-0:1.8.1").unit) == (Decimal("123.456"), "kWh")
    assert (_reg(frame, "1-0:31.7.0").value, _reg(frame, "1-0:31.7.0").unit) == (Decimal(5), "A")
    gas = _channel(frame, 1)
    assert gas is not None
    assert gas.medium is Medium.GAS
    reading = gas.register("gas")
    assert reading is not None
    assert (reading.value, reading.unit, reading.timestamp) == (Decimal(0), None, None)
    assert gas.timestamp is None


def _notes_two_mbus(frame: Frame) -> None:
    # Channel 1 has an empty id and reading "(00000000)" without unit.
    one, two = _channel(frame, 1), _channel(frame, 2)
    assert one is not None
    assert two is not None
    assert one.register("equipment_id") is not None
    assert one.register("equipment_id").value is None  # type: ignore[union-attr]
    assert (one.register("gas").value, one.register("gas").unit) == (Decimal(0), None)  # type: ignore[union-attr]
    assert two.id == "4730303339303031393336393930363139"
    assert two.serial_number == "G0039001936990619"
    assert two.timestamp == datetime(2020, 4, 26, 20, 30, 1, tzinfo=UTC)
    assert one.id != two.id != frame.main.id  # type: ignore[union-attr]


def _notes_ace4000(frame: Frame) -> None:
    # *255 suffixes; 24 hourly gas readings 7-0:23.1.0 with "YY-MM-DD hh:mm:ss".
    assert frame.main is not None
    assert frame.main.id == "1234567890123456"
    assert _reg(frame, "1-0:1.8.0").value == Decimal("12345.074")
    gas = next(meter for meter in frame.meters if meter.medium is Medium.GAS)
    reading = gas.register("gas")
    assert reading is not None
    assert len(reading.history) == 24
    assert reading.value == Decimal("1240.690")
    assert reading.timestamp == datetime(2019, 1, 1, 12, 0, tzinfo=UTC)
    assert reading.history[0].timestamp == datetime(2018, 12, 31, 13, 0, tzinfo=UTC)
    assert gas.id == "12345678"
    assert gas.register("valve_position").value == Decimal(0)  # type: ignore[union-attr]


def _notes_austria(frame: Frame) -> None:
    # Units as the meter states them: Wh, W, varh, var (not kWh).
    assert frame.main is not None
    units = {reg.unit for reg in frame.main.registers if reg.unit}
    assert units == {"Wh", "W", "varh", "var"}


def _notes_smarty_long(frame: Frame) -> None:
    # The 0-0:42.0.0 line was lengthened and the old CRC kept.
    assert frame.integrity is Integrity.INVALID


def _notes_irish(frame: Frame) -> None:
    # The header's chr(2) artefact; the empty 0-1:96.1.1() makes no sub-meter.
    assert frame.main is not None
    assert frame.main.model == "MIE5T-200"
    assert [meter.channel for meter in frame.meters] == [0]


NOTES: dict[str, Callable[[Frame], None]] = {
    "nl_dsmr50_warmtelink_unpadded_crc": _notes_warmtelink,
    "nl_dsmr42_kaifa": _notes_kaifa,
    "nl_dsmr42_kaifa_oh_sagemcom_xs210": _notes_xs210,
    "nl_dsmr42_landisgyr_e350_nocrc": _notes_landisgyr_e350,
    "be_fluvius_emucs171_alt": _notes_fluvius_alt,
    "be_fluvius_invalid_gas_timestamp": _notes_fluvius_gas,
    "nl_dsmr50_iskra_am550_two_mbus": _notes_two_mbus,
    "nl_itron_ace4000_gprs": _notes_ace4000,
    "at_sagemcom_t210dr_oh": _notes_austria,
    "at_sagemcom_t210dr_plain": _notes_austria,
    "lu_smarty_sagemcom_long_decrypted": _notes_smarty_long,
    "ie_iskra_ie5_esb": _notes_irish,
}


@pytest.mark.parametrize("name", sorted(NOTES))
def test_manifest_notes(name: str) -> None:
    """What the corpus manifest notes about a sample holds for our decode."""
    NOTES[name](_decode(CORPUS / "dsmr" / f"{name}.txt"))


def _openhab_value_count(frame: Frame) -> int:
    """Value groups decoded, counted the way openHAB's parser test counts them."""
    total = 0
    for meter in frame.meters:
        for reg in meter.registers:
            if reg.history and isinstance(reg.value, int):  # buffer: (n)(id)((stamp)(value))*n
                total += 2 + 2 * len(reg.history)
            elif reg.history:  # one reading sent n times: ((value)(stamp))*n
                total += 2 * len(reg.history)
            else:
                total += 2 if reg.timestamp else 1
    return total


OPENHAB_COUNTED = sorted(
    path for path in P1_FILES if "cosem_values_total" in MANIFEST[f"dsmr/{path.name}"]["expected"]
)


@pytest.mark.parametrize("path", OPENHAB_COUNTED, ids=_ids(OPENHAB_COUNTED))
def test_openhab_value_counts(path: Path) -> None:
    """The value count of openHAB's parser test (none unknown) is ours too."""
    expected = MANIFEST[f"dsmr/{path.name}"]["expected"]
    assert expected["unknown_cosem_objects"] == 0
    assert _openhab_value_count(_decode(path)) == expected["cosem_values_total"]


def test_every_line_is_decoded() -> None:
    """No OBIS line of any sample is silently dropped.

    Except on an M-Bus channel with no meter attached (an empty equipment id and
    no reading, e.g. DSMR 5's unused channel 2): no sub-meter is made for it.
    """
    for path in [*P1_FILES, CORPUS / "iec62056-21" / "de_easymeter_q3d_b1024_com1.txt"]:
        raw = path.read_bytes()
        frame = decode_telegram(raw)
        channels = {meter.channel for meter in frame.meters}
        lines = re.findall(rb"^(\d+)-(\d+):([\d.]+)(?:\*\d+)?\((.*)\)\r$", raw, re.MULTILINE)
        expected = 0
        for a, b, cde, groups in lines:
            if a == b"0" and int(b) not in channels:
                assert cde in (b"24.1.0", b"96.1.0", b"96.1.1"), path.name
                assert cde == b"24.1.0" or groups == b"", path.name
                continue
            expected += 1
        # A reading sent several times (ACE4000) is one register with history.
        decoded = sum(
            len(reg.history) if reg.history and isinstance(reg.value, Decimal) else 1
            for meter in frame.meters
            for reg in meter.registers
        )
        assert decoded == expected, path.name


# ---------------------------------------------------------------- Smarty


def test_smarty_encrypted_frame() -> None:
    """The real encrypted frame decrypts with the published key to the corpus plaintext."""
    entry = MANIFEST["smarty/lu_smarty_encrypted_frame.hex"]
    key = parse_key(entry["expected"]["decryption_key"])
    frame = decode_telegram(bytes.fromhex(SMARTY_FRAME.read_text().strip()), key=key)
    plaintext = (CORPUS / "dsmr" / "lu_smarty_sagemcom_long_decrypted.txt").read_bytes()
    assert frame.encrypted
    assert frame.raw == plaintext
    assert frame.integrity is Integrity.INVALID  # the plaintext's CRC is wrong (see the manifest)
    assert frame.meters == decode_telegram(plaintext).meters
    assert frame.main is not None
    assert frame.main.serial_number == "SAG1030700114004" * 3
