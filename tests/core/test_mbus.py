"""Wired M-Bus: link layer, application layer, meter mapping and master logic.

Oracles: every corpus sample (../shared/corpus/mbus) and every libmbus test
frame copied into tests/fixtures/mbus/libmbus is compared record by record
with libmbus' normalised XML (unit, value, storage, tariff, subunit), and
with pyMeterBus. Where a reference decoder is wrong, the divergence is listed
below with the reason, and the test checks that exactly those records differ.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import meterbus
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core import mbus
from custom_components.smartmeter.core.errors import (
    ChecksumError,
    DecodeError,
    KeyRequiredError,
    SmartMeterError,
)
from custom_components.smartmeter.core.models import Integrity, Medium
from tests.conftest import corpus_dir

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mbus"
LIBMBUS = FIXTURES / "libmbus"
CORPUS = corpus_dir() / "mbus"
UTC_TZ = ZoneInfo("UTC")


def _hex(path: Path) -> bytes:
    return bytes.fromhex(path.read_text())


CORPUS_FILES = sorted(CORPUS.glob("*.hex"))
LIBMBUS_FILES = sorted(LIBMBUS.glob("*.hex"))
ALL_FILES = CORPUS_FILES + LIBMBUS_FILES


def _xml_for(path: Path) -> Path:
    if path.parent == CORPUS:
        return path.with_name(path.stem + ".expected.norm.xml")
    return path.with_name(path.stem + ".norm.xml")


# ------------------------------------------------------------ libmbus oracle

# Our units -> libmbus' normalised unit and factor.
_TO_LIBMBUS: dict[str, tuple[str, Decimal]] = {
    "kWh": ("Wh", Decimal(1000)),
    "MWh": ("Wh", Decimal(10**6)),
    "GJ": ("J", Decimal(10**9)),
    "m3": ("m^3", Decimal(1)),
    "m3/h": ("m^3/h", Decimal(1)),
    "m3/min": ("m^3/min", Decimal(1)),
    "m3/s": ("m^3/s", Decimal(1)),
    "kJ/h": ("J/h", Decimal(1000)),
    "t": ("kg", Decimal(1000)),
    "s": ("s", Decimal(1)),
    "min": ("s", Decimal(60)),
    "h": ("s", Decimal(3600)),
    "d": ("s", Decimal(86400)),
    "Bd": ("Baud", Decimal(1)),
    "bittimes": ("Bittimes", Decimal(1)),
    "currency": ("Currency units", Decimal(1)),
}

# (file stem, record index) -> why libmbus' value is not the right one.
LIBMBUS_WRONG = {
    # VIFE 6F "date/time of last end": the data is a type F date, libmbus
    # scales it as a number (41065374.6 °C); all-zero dates are invalid.
    **{
        (stem, index): "orthogonal VIFE date/time of"
        for stem in ("landisgyr_ultraheat_t230_heat", "landis+gyr_ultraheat_t230")
        for index in (19, 20, 21, 22)
    },
    # Day 0 / month 0: an invalid date, libmbus prints it anyway.
    ("REL-Relay-Padpuls2", 1): "invalid date 00",
    ("ACW_Itron-BM-plus-m", 2): "invalid date 00",
    ("itron_bm_+m", 2): "invalid date 00",
    ("siemens_water", 3): "invalid date 00",
    ("siemens_wfh21", 3): "invalid date 00",
    # Hex digits A-F in a BCD field ("value during error state" filler):
    # not a number; libmbus skips the bad nibbles and prints a number.
    ("ELS_Elster-F96-Plus", 4): "invalid BCD",
    ("ELS_Elster-F96-Plus", 5): "invalid BCD",
    ("abb_f95", 2): "invalid BCD",
    ("abb_f95", 3): "invalid BCD",
}


def _libmbus_records(path: Path) -> list[ET.Element]:
    text = _xml_for(path).read_bytes().decode("utf-8").replace('encoding="ISO-8859-1"', "")
    return ET.fromstring(  # noqa: S314 - the project's own fixture files
        text
    ).findall("DataRecord")


def _ours_as_libmbus(rec: mbus.DataRecord) -> tuple[str, object]:
    """Our record in libmbus' normalised unit."""
    if rec.text_unit is not None:
        return "-", rec.value
    if isinstance(rec.value, datetime):
        return "-", rec.value
    if rec.quantity.startswith("vif_"):
        return "Reserved", rec.value
    if rec.quantity == "hca_units":
        return "Units for H.C.A.", rec.value
    if rec.unit is None:
        return "", rec.value
    unit, factor = _TO_LIBMBUS.get(rec.unit, (rec.unit, Decimal(1)))
    value = rec.value * factor if isinstance(rec.value, Decimal) else rec.value
    return unit, value


def _same_value(lib_text: str, ours: object) -> bool:
    if isinstance(ours, datetime):
        fmt = "%Y-%m-%dT%H:%M:%SZ" if len(lib_text) > 10 else "%Y-%m-%d"
        return ours.strftime(fmt) == lib_text
    if isinstance(ours, (Decimal, int)) or (isinstance(ours, str) and ours.isdecimal()):
        number = Decimal(ours)
        return abs(Decimal(lib_text) - number) <= max(Decimal("1e-6"), abs(number) * Decimal("1e-7"))
    if ours is None:
        return lib_text == ""
    return str(ours).strip() == lib_text.strip()


def _variable_files() -> list[Path]:
    return [p for p in ALL_FILES if mbus.parse_link_frame(_hex(p)).ci in (0x72, 0x76, 0x78)]


@pytest.mark.parametrize("path", _variable_files(), ids=lambda p: p.stem)
def test_records_match_libmbus(path: Path) -> None:
    """Every record: same unit and value (after unit normalisation), storage, tariff, subunit."""
    link = mbus.parse_link_frame(_hex(path))
    user = mbus.parse_user_data(link.ci or 0, link.data, tz=UTC_TZ)
    libs = _libmbus_records(path)
    ours: list[mbus.DataRecord | None] = list(user.records)
    if user.manufacturer_data is not None:
        ours.append(None)
    assert len(ours) == len(libs)
    diverging = set()
    for index, (lib, rec) in enumerate(zip(libs, ours, strict=True)):
        function = lib.findtext("Function")
        if rec is None:
            assert function in ("Manufacturer specific", "More records follow")
            assert (lib.findtext("Value") or "").replace(" ", "") == (
                user.manufacturer_data or b""
            ).hex().upper()
            continue
        if function is None:
            # libmbus could not decode it (VIF 7B without VIFE): ours is kept raw.
            assert rec.quantity.startswith("vif_")
            continue
        assert int(lib.findtext("StorageNumber") or "-1") == rec.storage
        tariff = lib.findtext("Tariff")
        if tariff is not None:
            assert (int(tariff), int(lib.findtext("Device") or "0")) == (rec.tariff, rec.subunit)
        else:
            assert (rec.tariff, rec.subunit) == (0, 0)
        expected_function = {
            "Instantaneous value": mbus.Function.INSTANTANEOUS,
            "Maximum value": mbus.Function.MAXIMUM,
            "Minimum value": mbus.Function.MINIMUM,
            "Value during error state": mbus.Function.ERROR,
        }[function]
        assert rec.function is expected_function
        unit, value = _ours_as_libmbus(rec)
        lib_unit = lib.findtext("Unit") or ""
        lib_value = lib.findtext("Value") or ""
        if (path.stem, index) in LIBMBUS_WRONG:
            diverging.add(index)
            continue
        assert unit == lib_unit, f"record {index}"
        assert _same_value(lib_value, value), f"record {index}: libmbus {lib_value!r}, ours {value!r}"
    assert diverging == {i for (stem, i) in LIBMBUS_WRONG if stem == path.stem}


def test_known_divergences_are_decoded_right() -> None:
    """The records where libmbus is wrong: what they really hold."""
    user = _user(CORPUS / "landisgyr_ultraheat_t230_heat.hex")
    dates = [r.value for r in user.records if r.suffix == "_last_end_time"]
    assert dates == [
        None,
        None,
        datetime(2011, 8, 26, 20, 50, tzinfo=UTC_TZ),
        datetime(2011, 8, 9, 11, 43, tzinfo=UTC_TZ),
    ]
    elster = _user(LIBMBUS / "ELS_Elster-F96-Plus.hex")
    assert [r.value for r in elster.records if r.function is mbus.Function.ERROR] == [None, None]


def _user(path: Path) -> mbus.UserData:
    link = mbus.parse_link_frame(_hex(path))
    return mbus.parse_user_data(link.ci or 0, link.data, tz=UTC_TZ)


@pytest.mark.parametrize("stem", ["manual_frame2", "sen_pollusonic_2"])
def test_fixed_data_structure_matches_libmbus(stem: str) -> None:
    frame = mbus.decode_mbus(_hex(LIBMBUS / f"{stem}.hex"))
    meter = frame.meters[0]
    root = ET.fromstring(  # noqa: S314 - the project's own fixture files
        _xml_for(LIBMBUS / f"{stem}.hex").read_bytes().decode("utf-8").replace('encoding="ISO-8859-1"', "")
    )
    assert meter.id == root.findtext("SlaveInformation/Id")
    first = root.findall("DataRecord")[0]
    reg = meter.registers[0]
    factor = {"l": Decimal(1000), "kWh": Decimal(1)}[first.findtext("Unit") or ""]
    assert isinstance(reg.value, Decimal)
    assert reg.value * factor == Decimal(first.findtext("Value") or "")
    assert (
        meter.medium
        is {"Water": Medium.WATER, "Heat": Medium.HEAT}[root.findtext("SlaveInformation/Medium") or ""]
    )


# ------------------------------------------------------------ pyMeterBus oracle

# pyMeterBus crashes on VIF 7B without extension; it reads LVAR binary
# numbers and types as plain integers; it has no fixed-structure decoder.
PYMETERBUS_UNUSABLE = {"sen_pollutherm", "manual_frame2", "sen_pollusonic_2", "example_binary16_lvar"}


def _pymeterbus_value(value: object) -> object:
    if isinstance(value, float):
        return Decimal(str(value))
    return value


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_records_match_pymeterbus(path: Path) -> None:
    if path.stem in PYMETERBUS_UNUSABLE:
        pytest.skip("pyMeterBus cannot decode this frame (see PYMETERBUS_UNUSABLE)")
    telegram = meterbus.load(_hex(path))
    theirs = [r for r in telegram.body.bodyPayload.records if not r.dib.is_eoud]
    user = _user(path)
    assert len(theirs) == len(user.records)
    for index, (their, rec) in enumerate(zip(theirs, user.records, strict=True)):
        if (path.stem, index) in LIBMBUS_WRONG:
            continue  # pyMeterBus makes the same mistakes
        info = their.interpreted
        assert info.get("storage_number", 0) == rec.storage
        if "tariff" in info:
            assert (info["tariff"], info["device"]) == (rec.tariff, rec.subunit)
        value = _pymeterbus_value(their.parsed_value)
        _unit, ours = _ours_as_libmbus(rec)
        if isinstance(ours, datetime):
            if rec.dib[0] & 0x0F == 0x06:
                continue  # pyMeterBus reads a 6-byte type I date/time as type F (libmbus agrees with us)
            fmt = "%Y-%m-%dT%H:%M" if len(str(value)) > 10 else "%Y-%m-%d"
            assert ours.strftime(fmt) == value, f"record {index}"
        elif isinstance(ours, str) and rec.text_unit is None and ours.isdecimal():
            assert Decimal(ours) == Decimal(str(value)), f"record {index}"  # identifiers as digits
        elif isinstance(ours, (Decimal, int)):
            assert isinstance(value, (Decimal, int)), f"record {index}: {value!r}"
            assert abs(Decimal(value) - Decimal(ours)) <= max(
                Decimal("1e-6"), abs(Decimal(ours)) * Decimal("1e-6")
            )
        elif ours is None:
            assert value in (None, "", 0) or isinstance(value, str)
        else:
            assert str(value).strip() == str(ours).strip(), f"record {index}"


# ------------------------------------------------------------ meter model


def test_decode_heat_meter_t230() -> None:
    raw = _hex(CORPUS / "landisgyr_ultraheat_t230_heat.hex")
    frame = mbus.decode_mbus(raw, tz=UTC_TZ)
    assert frame.protocol == "mbus"
    assert frame.integrity is Integrity.VALID
    assert frame.raw == raw
    meter = frame.meters[0]
    assert meter.id == "66660205"
    assert meter.serial_number == "6666020532A70704"
    assert meter.manufacturer == "LUG"
    assert meter.medium is Medium.HEAT
    assert meter.timestamp == datetime(2012, 1, 13, 12, 4, tzinfo=UTC_TZ)
    values = meter.values
    assert values["heat"].value == Decimal(0)
    assert values["heat"].unit == "kWh"
    assert values["heat"].timestamp == meter.timestamp
    assert values["flow_temperature"].value == Decimal("19.5")
    assert values["flow_temperature"].unit == "°C"
    assert values["temperature_difference"].value == Decimal("-0.2")  # negative BCD (F nibble)
    assert values["on_time_error"].value == Decimal(3769)
    assert values["on_time_error"].unit == "h"
    assert values["averaging_duration_tariff_1"].unit == "min"
    assert values["energy_tariff_5"].value == Decimal(0)
    assert values["flow_temperature_max_tariff_1_storage_1"].value == Decimal("30.7")
    assert values["heat_storage_1"].value == Decimal(0)
    assert values["datetime_storage_510"].value == datetime(2027, 1, 1, tzinfo=UTC_TZ)
    assert values["manufacturer_data"].value == "0907006601"
    assert values["status"].value == 0x10
    assert len(set(values)) == len(meter.registers)  # keys are unique


def test_decode_water_meter_history_and_due_date() -> None:
    meter = mbus.decode_mbus(_hex(CORPUS / "engelmann_waterstar_water.hex"), tz=UTC_TZ).meters[0]
    assert meter.medium is Medium.HOT_WATER
    values = meter.values
    assert values["hot_water"].value == Decimal("0.332")
    assert values["hot_water"].unit == "m3"
    assert values["hot_water"].timestamp == datetime(2014, 3, 13, 12, 10, tzinfo=UTC_TZ)
    # Storage 1: the due-date value, stamped with the storage-1 date.
    assert values["hot_water_storage_1"].value == Decimal("0.331")
    assert values["hot_water_storage_1"].timestamp == datetime(2013, 12, 31, tzinfo=UTC_TZ)
    assert values["hot_water_storage_2"].value == Decimal("0.332")
    assert values["fabrication_number"].value == "4990254"
    assert values["volume_flow_max"].value == Decimal("2.070")


def test_decode_gas_meters() -> None:
    cyble = mbus.decode_mbus(_hex(CORPUS / "itron_cyble_v14_gas.hex"), tz=UTC_TZ).meters[0]
    assert (cyble.id, cyble.medium, cyble.manufacturer) == ("10020387", Medium.GAS, "ACW")
    assert cyble.values["gas"].value == Decimal("0.26")
    assert cyble.values["gas_storage_1"].value == Decimal("0.25")
    assert cyble.values["text_bat_time"].value == Decimal(4050)
    assert cyble.values["text_bat_time"].unit == "bat. time"
    assert cyble.values["volume_mfct"].value == Decimal(0)
    # G350: only the stamped hourly value (storage 1) is sent: it is the reading.
    g350 = mbus.decode_mbus(_hex(CORPUS / "lgb_g350_gas.hex"), tz=UTC_TZ).meters[0]
    assert g350.values["gas"].value == Decimal("10834.092")
    assert g350.values["gas"].timestamp == datetime(2016, 7, 22, 8, 0, tzinfo=UTC_TZ)
    assert g350.timestamp == g350.values["gas"].timestamp
    assert g350.values["fabrication_number"].value == "G0017591208205814"
    assert g350.values["digital_output_subunit_1"].value == 1


def test_decode_electricity_meters_use_p1_keys() -> None:
    abb = mbus.decode_mbus(_hex(CORPUS / "abb_delta_electricity.hex")).meters[0]
    assert abb.medium is Medium.ELECTRICITY
    for key in (
        "energy_import_total",
        "energy_import_tariff_1",
        "energy_import_tariff_4",
        "energy_subunit_2",
    ):
        assert abb.values[key].unit == "kWh"
    assert abb.values["more_records_follow"].value == 1
    eastron = mbus.decode_mbus(_hex(CORPUS / "eastron_sdm630_electricity.hex")).meters[0]
    assert eastron.values["voltage"].value == Decimal("1234.56")
    assert eastron.values["current"].value == Decimal("123.456")
    assert eastron.values["power_import"].value == Decimal("12345.6")
    assert eastron.values["power_import"].unit == "W"
    assert "voltage_6" in eastron.values  # repeated records get numbered keys
    kamstrup = mbus.decode_mbus(_hex(CORPUS / "kamstrup_382_electricity.hex")).meters[0]
    assert kamstrup.values["on_time"].value == Decimal(9)
    assert kamstrup.values["power_max"].unit == "W"


def test_every_frame_decodes_to_a_meter() -> None:
    for path in ALL_FILES:
        raw = _hex(path)
        try:
            frame = mbus.decode_mbus(raw)
        except KeyRequiredError:
            continue
        meter = frame.meters[0]
        assert meter.registers
        assert len({r.key for r in meter.registers}) == len(meter.registers), path.stem


# ------------------------------------------------------------ values


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("0C1332010000"), Decimal("0.132")),  # 8-digit BCD, 1 l
        (bytes.fromhex("0B62020F0F"), None),  # hex digit in the middle: not BCD
        (bytes.fromhex("0A5A01F0"), Decimal("-0.1")),  # negative BCD, F in the top nibble
        (bytes.fromhex("0213FFFF"), Decimal("-0.001")),  # binary is signed
        (bytes.fromhex("0313010080"), Decimal("-8388.607")),
        (bytes.fromhex("06130100000000FF"), Decimal("-1099511627.775")),
        (bytes.fromhex("0713" + "01" + "00" * 7), Decimal("0.001")),
        (bytes.fromhex("052B0000C03F"), Decimal("1.5")),  # 32-bit real, W
        (bytes.fromhex("05FD48CDCC4C3F"), Decimal("0.08")),  # 0.8 * 0.1 V
        (bytes.fromhex("0E8400012345678900"), Decimal("89674523.01")),  # 12-digit BCD, 10 Wh
    ],
)
def test_value_encodings(data: bytes, expected: Decimal | None) -> None:
    records, _mfct, _more = mbus.parse_records(data)
    assert len(records) == 1
    assert records[0].value == expected


def test_lvar_number_codings() -> None:
    # LVAR C2: positive BCD with 4 digits = 2 bytes; D2 negative; E3 3-byte binary.
    records, _mfct, _more = mbus.parse_records(bytes.fromhex("0D13C234120D13D234120D13E3010000011301"))
    assert [r.value for r in records] == [
        Decimal("1.234"),
        Decimal("-1.234"),
        Decimal("0.001"),
        Decimal("0.001"),
    ]
    with pytest.raises(DecodeError, match="reserved LVAR"):
        mbus.parse_records(bytes.fromhex("0D13FF"))


def test_vife_multipliers_and_extensions() -> None:
    records, _m, _f = mbus.parse_records(
        bytes.fromhex(
            "04937501000000"  # volume 10^-3 m3 * 10^(5-6): 0.0001 m3
            "04FB0001000000"  # FB 00: 0.1 MWh
            "02FD1C6009"  # baud rate 2400
            "02FD3A0500"  # dimensionless
            "04FDBB0001000000"  # FD 3B? reserved FD code with a VIFE
            "03A2220A0000"  # on time hours, per hour
            "017F05"  # manufacturer specific VIF
        )
    )
    assert records[0].value == Decimal("0.0001")
    assert (records[1].value, records[1].unit) == (Decimal("0.1"), "MWh")
    assert (records[2].quantity, records[2].value, records[2].unit) == ("baudrate", Decimal(2400), "Bd")
    assert records[3].quantity == "dimensionless"
    assert records[4].quantity == "vif_fd_3b"
    assert (records[5].suffix, records[5].unit) == ("_per_hour", "h/h")
    assert (records[6].quantity, records[6].value) == ("mfct_vif", 5)


def test_lvar_text_and_plain_text_vif() -> None:
    records, _m, _f = mbus.parse_records(bytes.fromhex("0D7C03626120" + "03" + "434241"))
    assert records[0].text_unit == " ab"
    assert records[0].value == "ABC"
    assert records[0].quantity == "text_ab"


def test_dif_special_functions() -> None:
    records, mfct, more = mbus.parse_records(bytes.fromhex("2F2F0113012F1F0102"))
    assert [r.value for r in records] == [Decimal("0.001")]
    assert (mfct, more) == (b"\x01\x02", True)
    with pytest.raises(DecodeError, match="reserved special-function"):
        mbus.parse_records(bytes.fromhex("3F00"))


def test_type_f_summer_time_and_century() -> None:
    records, _m, _f = mbus.parse_records(bytes.fromhex("046D" + "1E9D1C3A"), tz=ZoneInfo("Europe/Berlin"))
    # hour 0x9D & 0x1F = 29: impossible, so no value
    assert records[0].value is None
    records, _m, _f = mbus.parse_records(bytes.fromhex("046D" + "1E821B3A"), tz=ZoneInfo("Europe/Berlin"))
    # minute 30, hour 2 with SU bit, 27 Oct 2024: the summer-time 02:30 (fold 0).
    value = records[0].value
    assert isinstance(value, datetime)
    assert (value.year, value.month, value.day, value.hour, value.minute, value.fold) == (
        2024,
        10,
        27,
        2,
        30,
        0,
    )
    assert value.utcoffset() is not None and value.utcoffset().total_seconds() == 7200


# ------------------------------------------------------------ link layer errors


def test_link_layer_errors() -> None:
    raw = _hex(CORPUS / "kamstrup_382_electricity.hex")
    with pytest.raises(ChecksumError):
        mbus.decode_mbus(raw[:-2] + bytes(((raw[-2] + 1) & 0xFF,)) + raw[-1:])
    with pytest.raises(DecodeError, match="truncated"):
        mbus.decode_mbus(raw[:-5])
    with pytest.raises(DecodeError, match="stop byte"):
        mbus.decode_mbus(raw[:-1] + b"\x00")
    with pytest.raises(DecodeError, match="68 L L 68"):
        mbus.decode_mbus(raw[:2] + b"\x00" + raw[3:])
    with pytest.raises(DecodeError, match="not an M-Bus frame"):
        mbus.decode_mbus(b"xyz")
    with pytest.raises(DecodeError, match="empty"):
        mbus.decode_mbus(b"")
    with pytest.raises(DecodeError, match="carries no data"):
        mbus.decode_mbus(b"\xe5")
    with pytest.raises(DecodeError, match="carries no data"):
        mbus.decode_mbus(mbus.snd_nke(5))
    with pytest.raises(ChecksumError):
        mbus.parse_link_frame(b"\x10\x40\x05\x00\x16")
    with pytest.raises(DecodeError, match="after the end"):
        mbus.parse_link_frame(raw + b"\x00")


@pytest.mark.parametrize("path", sorted((FIXTURES / "libmbus-errors").glob("*.hex")), ids=lambda p: p.stem)
def test_libmbus_error_frames_raise_decode_errors(path: Path) -> None:
    """The libmbus broken and error frames: a DecodeError, never another exception."""
    raw = _hex(path)
    try:
        frame = mbus.decode_mbus(raw)
    except DecodeError:
        return
    assert frame.meters  # a few are well-formed frames libmbus rejects by policy (too many records)


@given(st.binary(max_size=300))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_raises_only_smartmeter_errors(data: bytes) -> None:
    for candidate in (data, b"\x68" + bytes((len(data) + 3,)) * 2 + b"\x68\x08\x01\x72" + data):
        with contextlib.suppress(SmartMeterError):
            mbus.decode_mbus(candidate)


@given(st.sampled_from(ALL_FILES), st.integers(min_value=19, max_value=400), st.integers(0, 255))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_corrupted_user_data_raises_only_decode_errors(path: Path, index: int, byte: int) -> None:
    """A flipped byte with a fixed-up checksum: decoded or DecodeError, nothing else."""
    raw = bytearray(_hex(path))
    if index >= len(raw) - 2:
        return
    raw[index] = byte
    raw[-2] = mbus.checksum(raw[4:-2])
    with contextlib.suppress(DecodeError):
        mbus.decode_mbus(bytes(raw))


def test_truncated_records_raise() -> None:
    for data in ("0C13320100", "8C", "0C", "0D13", "0D1305414243", "0C7C05", "0CFD"):
        with pytest.raises(DecodeError):
            mbus.parse_records(bytes.fromhex(data))
    with pytest.raises(DecodeError, match="10 DIFE"):
        mbus.parse_records(b"\x8c" + b"\x80" * 11 + b"\x13\x00\x00\x00\x00")


def test_application_error_and_encryption() -> None:
    error = mbus._long(0x08, 1, 0x70, b"\x08")
    with pytest.raises(DecodeError, match="application busy"):
        mbus.decode_mbus(error)
    # A 2013-style config field with AES mode 5 and no 2F 2F check bytes.
    header = bytes.fromhex("78563412") + bytes.fromhex("2D2C") + b"\x01\x07\x00\x00" + bytes.fromhex("1005")
    frame = mbus._long(0x08, 1, 0x72, header + bytes(16))
    with pytest.raises(KeyRequiredError):
        mbus.decode_mbus(frame)


# ------------------------------------------------------------ framer


def _stream() -> tuple[bytes, list[bytes]]:
    frames = [_hex(p) for p in CORPUS_FILES] + [b"\xe5", mbus.req_ud2(3, True), mbus.snd_nke(7)]
    return b"".join(frames), frames


def test_framer_whole_stream() -> None:
    data, frames = _stream()
    assert mbus.split_mbus(data) == (frames, 0)


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=200))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_framer_any_chunking(cuts: list[int]) -> None:
    data, frames = _stream()
    framer = mbus.MbusFramer()
    out: list[bytes] = []
    pos = 0
    for size in cuts * (len(data) // max(1, sum(cuts)) + 1):
        out += framer.feed(data[pos : pos + size])
        pos += size
        if pos >= len(data):
            break
    out += framer.feed(data[pos:])
    assert out == frames
    assert framer.discarded == 0


@given(st.binary(min_size=1, max_size=40).filter(lambda b: not any(x in b for x in (0xE5, 0x10, 0x68))))
def test_framer_resyncs_after_garbage(garbage: bytes) -> None:
    data, frames = _stream()
    framer = mbus.MbusFramer()
    assert framer.feed(garbage + data[:100]) + framer.feed(data[100:]) == frames
    assert framer.discarded == len(garbage)


def test_framer_resyncs_after_a_cut_frame_and_false_starts() -> None:
    raw = _hex(CORPUS / "lgb_g350_gas.hex")
    framer = mbus.MbusFramer()
    # A frame cut after 20 bytes, then a whole one: the cut one's start byte
    # is dropped, the scan finds the real frame inside.
    got = framer.feed(raw[:20] + raw)
    assert got == [raw]
    assert framer.discarded == 20
    # A short-frame start whose checksum is wrong is not a frame.
    framer = mbus.MbusFramer()
    assert framer.feed(b"\x10\x01\x02\x04\x16" + raw) == [raw]
    assert framer.discarded == 5
    framer.feed(raw[:10])
    framer.reset()
    assert framer.discarded == 15


def test_sniff() -> None:
    assert mbus.sniff_mbus(_hex(CORPUS / "abb_delta_electricity.hex"))
    assert mbus.sniff_mbus(mbus.snd_nke(1))
    assert mbus.sniff_mbus(b"\xe5")
    assert not mbus.sniff_mbus(b"/ISK5\\2M550T-1012\r\n")
    assert not mbus.sniff_mbus(b"\x68\x10\x10\x68" + bytes(10))


# ------------------------------------------------------------ master frames


def test_master_frames() -> None:
    assert mbus.snd_nke(1) == bytes.fromhex("1040014116")
    assert mbus.req_ud2(1) == bytes.fromhex("105B015C16")
    assert mbus.req_ud2(1, fcb=True) == bytes.fromhex("107B017C16")
    assert mbus.application_reset(1) == bytes.fromhex("68030368530150A416")
    link = mbus.parse_link_frame(mbus.application_reset(254, 0x10))
    assert (link.c, link.a, link.ci, link.data) == (0x53, 254, 0x50, b"\x10")
    # ID 14491001, manufacturer code 1057, version 01, medium 06.
    assert mbus.select_secondary("1449100110570106") == bytes.fromhex("680B0B6853FD5201104914571001067E16")
    wildcard = mbus.parse_link_frame(mbus.select_secondary("1234FFFFFFFFFFFF")).data
    assert wildcard == bytes.fromhex("FFFF3412FFFFFFFF")
    assert mbus.parse_link_frame(mbus.set_primary_address(0, 5)).data == bytes.fromhex("017A05")
    with pytest.raises(ValueError):
        mbus.select_secondary("123")
    with pytest.raises(ValueError):
        mbus.snd_nke(256)


def test_fcb_toggles_per_address() -> None:
    fcb = mbus.FcbTracker()
    fcb.reset(5)
    first = fcb.req_ud2(5)
    assert first[1] & mbus.FCB
    assert fcb.req_ud2(5) == first  # retry after a timeout: same bit
    fcb.answered(5)
    assert not fcb.req_ud2(5)[1] & mbus.FCB
    fcb.answered(5)
    assert fcb.req_ud2(5)[1] & mbus.FCB
    assert fcb.req_ud2(6)[1] & mbus.FCB  # other addresses are independent


def test_manufacturer_codes() -> None:
    assert mbus.manufacturer_code("KAM") == 0x2C2D
    assert mbus.manufacturer_text(0x2C2D) == "KAM"
    assert mbus.mask_matches("FFFFFFFFFFFFFFFF", "6666020532A70704")
    assert mbus.mask_matches("6FFFFFFF32A7FF04", "6666020532A70704")
    assert not mbus.mask_matches("6FFFFFFF32A7FF03", "6666020532A70704")


# ------------------------------------------------------------ simulated bus


class SimulatedBus:
    """Slaves built from real frames, answering like an M-Bus segment.

    Several slaves answering at once collide: their bytes OR together, which
    is never one valid frame (the E5s of a select are also garbled when
    ``garble_acks``; on a real bus identical E5s may survive, which the
    REQ_UD2 to 253 then exposes).
    """

    def __init__(self, frames: dict[int, bytes], garble_acks: bool = True) -> None:
        self.slaves: list[tuple[int, str, bytes]] = []
        for primary, raw in frames.items():
            link = mbus.parse_link_frame(raw)
            header = mbus._long_header(link.data[:12])
            self.slaves.append((primary, header.secondary_address, raw))
        self.selected: set[int] = set()
        self.garble_acks = garble_acks
        self.requests = 0

    @staticmethod
    def _collide(answers: list[bytes]) -> bytes | None:
        if not answers:
            return None
        if len(answers) == 1:
            return answers[0]
        size = max(len(a) for a in answers)
        out = bytearray(size)
        for answer in answers:
            for i, byte in enumerate(answer):
                out[i] |= byte
        out[0] = 0x00  # the start bits collide too
        return bytes(out)

    async def transact(self, frame: bytes) -> bytes | None:
        """Answer one master frame as the slaves on the bus would."""
        self.requests += 1
        link = mbus.parse_link_frame(frame)
        if link.kind is mbus.FrameKind.SHORT:
            c, a = link.c & ~mbus.FCB, link.a
            if a == mbus.ADDRESS_NETWORK:
                targets = [s for s in self.slaves if s[1] in self.selected]
            else:
                targets = [s for s in self.slaves if s[0] == a]
            if c == mbus.C_SND_NKE:
                if a == mbus.ADDRESS_NETWORK:
                    self.selected.clear()
                return (
                    self._collide([b"\xe5"] * len(targets))
                    if len(targets) < 2 or self.garble_acks
                    else b"\xe5"
                )
            if c == mbus.C_REQ_UD2:
                return self._collide([s[2] for s in targets])
            return None
        if link.ci == mbus.CI_SELECT:
            mask = (
                link.data[3::-1].hex().upper()
                + link.data[5:3:-1].hex().upper()
                + link.data[6:8].hex().upper()
            )
            self.selected = {s[1] for s in self.slaves if mbus.mask_matches(mask, s[1])}
            count = len(self.selected)
            if count == 0:
                return None
            if count == 1 or not self.garble_acks:
                return b"\xe5"
            return b"\xe5\xff\x03"
        return None


def _bus_frames() -> dict[int, bytes]:
    return {index + 1: _hex(path) for index, path in enumerate(CORPUS_FILES)}


def _secondary(raw: bytes) -> str:
    return mbus._long_header(mbus.parse_link_frame(raw).data[:12]).secondary_address


@pytest.mark.parametrize("garble_acks", [True, False])
async def test_secondary_search_finds_every_slave(garble_acks: bool) -> None:
    frames = _bus_frames()
    bus = SimulatedBus(frames, garble_acks)
    found: list[str] = []
    result = await mbus.search_secondary(bus.transact, on_found=lambda addr, raw: found.append(addr))
    expected = sorted(_secondary(raw) for raw in frames.values())
    assert sorted(result.found) == expected
    assert found == result.found
    assert result.unresolved == []
    assert result.probes < 400


async def test_secondary_search_separates_slaves_sharing_an_id() -> None:
    """Two slaves with the same ID (a multi-medium device): narrowed by medium."""
    water = _hex(CORPUS / "engelmann_waterstar_water.hex")
    body = bytearray(water)
    body[14] = 0x07  # medium 06 -> 07 on a copy with the same ID
    body[-2] = mbus.checksum(body[4:-2])
    bus = SimulatedBus({1: water, 2: bytes(body), 3: _hex(CORPUS / "kamstrup_382_electricity.hex")})
    result = await mbus.search_secondary(bus.transact)
    assert sorted(result.found) == sorted(
        [
            _secondary(water),
            _secondary(bytes(body)),
            _secondary(_hex(CORPUS / "kamstrup_382_electricity.hex")),
        ]
    )


async def test_secondary_search_with_a_mask() -> None:
    bus = SimulatedBus(_bus_frames())
    result = await mbus.search_secondary(bus.transact, "FFFFFFFFFFFFFF03")  # gas meters only
    assert sorted(result.found) == sorted(
        _secondary(_hex(CORPUS / name)) for name in ("itron_cyble_v14_gas.hex", "lgb_g350_gas.hex")
    )


async def test_primary_scan() -> None:
    frames = _bus_frames()
    bus = SimulatedBus(frames)
    result = await mbus.scan_primary(bus.transact)
    assert result.found == sorted(frames)
    assert result.collisions == []
    # Two slaves on the same primary address collide.
    bus.slaves.append((3, "0000000000000000", _hex(CORPUS / "kamstrup_382_electricity.hex")))
    result = await mbus.scan_primary(bus.transact, range(5))
    assert result.found == [1, 2, 4]
    assert result.collisions == [3]


async def test_read_after_search() -> None:
    """Select a found slave and read it through address 253 with FCB toggling."""
    frames = _bus_frames()
    bus = SimulatedBus(frames)
    result = await mbus.search_secondary(bus.transact)
    fcb = mbus.FcbTracker()
    for address in result.found:
        assert await bus.transact(mbus.select_secondary(address)) == b"\xe5"
        fcb.reset(mbus.ADDRESS_NETWORK)
        answer = await bus.transact(fcb.req_ud2(mbus.ADDRESS_NETWORK))
        assert answer is not None
        fcb.answered(mbus.ADDRESS_NETWORK)
        assert mbus.decode_mbus(answer).meters[0].serial_number == address


def test_timing_smoke() -> None:
    """Decoding stays cheap: all corpus frames well under a millisecond each on average."""
    import time

    raws = [
        _hex(p) for p in ALL_FILES if p.stem not in {"amt_calec_mb", "example_data_01", "example_data_02"}
    ]
    start = time.perf_counter()
    for _ in range(5):
        for raw in raws:
            mbus.decode_mbus(raw)
    per_frame = (time.perf_counter() - start) / (5 * len(raws))
    assert per_frame < 0.005


def test_short_header_payload_of_a_wireless_telegram() -> None:
    """CI 7A (wireless M-Bus short header), unencrypted amiplus sample, vs wmbusmeters' expected values."""
    sample = corpus_dir() / "wmbus" / "amiplus_86064864_electricity.hex"
    raw = _hex(sample)
    # L C M M A A A A A A CI: the link layer belongs to the wireless decoder; the
    # last two bytes are outside the records.
    header = mbus.MbusHeader(
        raw[4:8][::-1].hex().upper(), mbus.manufacturer_text(raw[2] | raw[3] << 8), raw[8], raw[9], 0, 0, 0
    )
    user = mbus.parse_user_data(raw[10], raw[11:-2], header=header)
    assert user.header is not None
    assert (user.header.ident, user.header.manufacturer) == ("86064864", "APA")
    values = {mbus.record_key(r): r.value for r in user.records}
    assert values["energy_tariff_1"] == Decimal("25011.061")
    assert values["energy_tariff_2"] == Decimal("18530.681")
    assert values["energy_backward_tariff_1"] == Decimal("4.999")
    assert values["energy_backward_tariff_2"] == Decimal("0.686")
    assert values["power_max"] == Decimal(22852)
    assert values["power"] == Decimal(1732)
    assert (values["voltage_l1"], values["voltage_l2"], values["voltage_l3"]) == (
        Decimal(231),
        Decimal(225),
        Decimal(231),
    )
