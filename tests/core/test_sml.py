"""The SML 1.04 decoder: real eHZ frames, framing, CRC variants, and smllib as a reference.

Every SML sample of the shared corpus is decoded and checked against what its
``expected.json`` says (the source's assertions and the values smllib reads),
then against smllib itself (a test-only dependency) entry by entry. Synthetic
frames, built by a small SML encoder below (and read back by smllib too),
cover what the corpus lacks: escaped ``1B1B1B1B`` data, signed values, real
timestamps, meters that send only the public data set, Kermit CRCs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from smllib.reader import SmlStreamReader
from smllib.sml_frame import SmlFrame

from custom_components.smartmeter.core.errors import ChecksumError, DecodeError, SmartMeterError
from custom_components.smartmeter.core.models import Frame, Integrity, Medium
from custom_components.smartmeter.core.sml import (
    DEFAULT_TZ,
    ESCAPE,
    MAX_FRAME,
    START,
    SmlFramer,
    check_crc,
    crc16_kermit,
    crc16_x25,
    decode_sml,
    format_server_id,
    parse_messages,
    sniff_sml,
    split_sml,
)
from tests.conftest import corpus_dir

CORPUS = corpus_dir() / "sml"
NAMES = sorted(path.stem for path in CORPUS.glob("*.bin"))
RAW = {name: (CORPUS / f"{name}.bin").read_bytes() for name in NAMES}
EXPECTED = {name: json.loads((CORPUS / f"{name}.expected.json").read_text()) for name in NAMES}
FIXTURE_EMH = Path(__file__).parents[1] / "fixtures" / "sml" / "de_emh_ehz_smartmeter_obis.bin"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What the name plates of the corpus meters print (DIN 43863-5), or the hex
# server ID where it is not a DIN 43863-5 number.
METER_IDS = {
    "de_dzg_frame1": ("1DZG0042123440", "DZG"),  # 0A 01 DZG 00 0282C0B0
    "de_holley_frame2": ("1HLY0200271520", "HLY"),  # 0A 01 HLY 02 000424A0
    "de_emh_ehz_smartmeter_obis": ("1EMH0004321349", "EMH"),  # 09 01 EMH 00 0041F045
    "de_iskra_issue28": ("080535342d510177", "ISK"),  # 8 bytes, vendor format
    "de_ebz_issue8_ok": ("00000000000000000000", "EBZ"),  # the meter sends zeros
    "de_ebz_issue8_err": ("00000000000000000000", "EBZ"),
}
# DLMS unit code -> (unit we state, power of ten applied): Wh and W become kWh and kW.
UNIT_MAP = {30: ("kWh", -3), 27: ("kW", -3), 35: ("V", 0), 33: ("A", 0), 44: ("Hz", 0), 8: ("°", 0)}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _obis_text(code: str) -> str:
    """``0100010800ff`` -> ``1-0:1.8.0`` (F kept as ``*F`` unless 255)."""
    a, b, c, d, e, f = bytes.fromhex(code)
    base = f"{a}-{b}:{c}.{d}.{e}"
    return base if f == 255 else f"{base}*{f}"


def _expected_number(raw: int, unit: int | None, scaler: int | None) -> tuple[Decimal, str | None]:
    stated, shift = UNIT_MAP.get(unit, (None, 0)) if unit else (None, 0)
    return Decimal(raw).scaleb((scaler or 0) + shift), stated


def _expected_text(obis: str, raw: str) -> str:
    """What we show for an octet string that smllib / expected.json give as hex or text.

    Server IDs are printed like the name plate; printable ASCII is shown as
    text (smllib does so only for the manufacturer codes), the rest as hex.
    """
    if obis.startswith(("1-0:0.0.9", "1-0:96.1.0")):
        return format_server_id(bytes.fromhex(raw))
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        return raw  # already text
    text = data.decode("latin-1")
    return text if data and data.isascii() and text.isprintable() else raw


# ---------------------------------------------------------------- corpus


def test_corpus_is_there() -> None:
    assert len(NAMES) == 6
    for name in NAMES:
        assert bytes.fromhex((CORPUS / f"{name}.hex").read_text().strip()) == RAW[name]


def test_fixture_copy_is_identical_to_the_corpus() -> None:
    assert FIXTURE_EMH.read_bytes() == RAW["de_emh_ehz_smartmeter_obis"]


@pytest.mark.parametrize("name", NAMES)
def test_corpus_sample(name: str) -> None:
    raw = RAW[name]
    expected = EXPECTED[name]
    assert "X25 valid" in expected["sml_transport_crc_check_by_corpus_builder"]
    frames, discarded = split_sml(raw)
    assert frames == [raw]
    assert discarded == 0
    frame = decode_sml(raw)
    assert frame.protocol == "sml"
    assert frame.integrity is Integrity.VALID
    assert frame.raw == raw
    assert len(frame.meters) == 1
    meter = frame.main
    assert meter is not None
    meter_id, manufacturer = METER_IDS[name]
    assert meter.id == meter_id
    assert meter.manufacturer == manufacturer
    assert meter.medium is Medium.ELECTRICITY
    assert meter.channel == 0

    asserted = expected["source_assertions"]
    count_key = "val_list_entries (obis count incl. 81... manufacturer ids)"
    if count_key in asserted:
        assert len(meter.registers) == asserted[count_key]
    if "sml_messages_min" in asserted:
        assert len(parse_messages(_payload(raw))) >= asserted["sml_messages_min"]

    reference = next(value for key, value in expected.items() if key.startswith("reference_decode"))
    by_obis = {reg.obis: reg for reg in meter.registers}
    # smllib's get_obis() (the reference) skips some entries: every one it lists is ours.
    listed = [key for key in reference if not key.startswith("_")]
    assert {_obis_text(code) for code in listed} <= set(by_obis)
    for code in listed:
        entry = reference[code]
        reg = by_obis[_obis_text(code)]
        if isinstance(entry["raw"], int):
            value, unit = _expected_number(entry["raw"], entry["unit"], entry["scaler"])
            assert reg.value == value, code
            assert isinstance(reg.value, Decimal)
            assert reg.unit == unit, code
            if "value" in entry:  # smllib's scaled float, before our Wh -> kWh
                shift = UNIT_MAP.get(entry["unit"], (None, 0))[1] if entry["unit"] else 0
                assert float(reg.value) == pytest.approx(entry["value"] * 10**shift)
        else:
            assert reg.value == _expected_text(reg.obis, entry["raw"]), code
            assert reg.unit is None


def _payload(raw: bytes) -> bytes:
    """The SML file inside a frame (these samples hold no escaped data)."""
    assert ESCAPE not in raw[8:-8]
    return raw[8 : len(raw) - 8 - raw[-3]]


def test_emh_source_assertions() -> None:
    """smartmeter-obis asserts manufacturer EMH and 1-0:1.8.1 = 15338.5557 kWh."""
    meter = decode_sml(FIXTURE_EMH.read_bytes()).main
    assert meter is not None
    assert meter.values["manufacturer"].value == "EMH"
    tariff_1 = meter.values["energy_import_tariff_1"]
    assert tariff_1.obis == "1-0:1.8.1"
    assert tariff_1.value == Decimal("15338.5557")
    assert tariff_1.unit == "kWh"
    assert meter.values["power_net"].value == Decimal("0.5635")
    assert meter.values["power_net"].unit == "kW"
    assert meter.serial_number == "0901454d48000041f045"


def test_ebz_issue8_err_frame_parses() -> None:
    """SmlLib's "Issue #8 (ERR)" frame once broke its parser; its test now asserts it parses.

    It does here too, with every value (three or more messages, ten entries).
    """
    frame = decode_sml(RAW["de_ebz_issue8_err"])
    assert frame.integrity is Integrity.VALID
    meter = frame.main
    assert meter is not None
    values = {reg.key: reg.value for reg in meter.registers}
    assert values["energy_import_total"] == Decimal("461.78257063")
    assert values["energy_import_tariff_1"] == Decimal("460.76557063")
    assert values["energy_export_total"] == Decimal("2.19800000")
    assert values["power_net"] == Decimal("1.15607")
    assert len(parse_messages(_payload(RAW["de_ebz_issue8_err"]))) == 3


def test_holley_registers_and_keys() -> None:
    meter = decode_sml(RAW["de_holley_frame2"]).main
    assert meter is not None
    values = meter.values
    assert values["energy_import_total"].value == Decimal("4499.8962")
    assert values["voltage_l1"].value == Decimal("234.4")
    assert values["voltage_l1"].unit == "V"
    assert values["current_l2"].value == Decimal("0.78")
    assert values["frequency"].value == Decimal("50.0")
    assert values["frequency"].unit == "Hz"
    assert values["power_net"].value == Decimal("0.137")
    assert values["firmware_version"].value == "1.02.007"
    assert values["firmware_version"].obis == "1-0:0.2.0*0"
    assert values["manufacturer"].obis == "1-0:96.50.1*1"
    assert values["meter_serial"].value == "1HLY0200271520"
    # An F group other than 255 stays in the code and in the generic key.
    assert values["obis_1_0_96_90_2_1"].value == "A01A"
    assert values["obis_1_0_81_7_1"].unit == "°"


# ---------------------------------------------------------------- smllib differential


def _smllib_entries(raw: bytes) -> list[Any]:
    reader = SmlStreamReader()
    reader.add(raw)
    sml_frame = reader.get_frame()
    assert sml_frame is not None
    entries = []
    for message in sml_frame.parse_frame():
        val_list = getattr(message.message_body, "val_list", None)
        if val_list:
            entries.extend(val_list)
    return entries


def _assert_same_as_smllib(raw: bytes, frame: Frame) -> None:
    ours = [reg for meter in frame.meters for reg in meter.registers]
    theirs = _smllib_entries(raw)
    assert [reg.obis for reg in ours] == [_obis_text(str(entry.obis)) for entry in theirs]
    for reg, entry in zip(ours, theirs, strict=True):
        value = entry.value
        if isinstance(value, bool):
            assert reg.value == Decimal(int(value))
        elif isinstance(value, int):
            expected, unit = _expected_number(value, entry.unit, entry.scaler)
            assert reg.value == expected, reg.obis
            assert reg.unit == unit, reg.obis
        elif isinstance(value, str):
            # smllib: hex of the octet string, or its text for a few codes.
            assert reg.value == _expected_text(reg.obis, value), reg.obis
        elif isinstance(value, datetime):
            assert reg.value == value
        else:
            assert value is None
            assert reg.value is None
        if isinstance(entry.val_time, datetime):
            assert reg.timestamp == entry.val_time
        else:
            assert reg.timestamp is None


@pytest.mark.parametrize("name", NAMES)
def test_same_as_smllib(name: str) -> None:
    _assert_same_as_smllib(RAW[name], decode_sml(RAW[name]))


# ---------------------------------------------------------------- an SML encoder for synthetic frames


def _tl(kind: int, data_len: int) -> bytes:
    """TL bytes for ``data_len`` bytes of data (the length counts the TL bytes)."""
    count = 1
    while data_len + count > (1 << (4 * count)) - 1:
        count += 1
    total = data_len + count
    out = bytearray()
    for i in range(count):
        nibble = (total >> (4 * (count - 1 - i))) & 0x0F
        out.append((0x80 if i < count - 1 else 0) | (kind if i == 0 else 0) | nibble)
    return bytes(out)


def _list_tl(count: int) -> bytes:
    if count < 16:
        return bytes([0x70 | count])
    return bytes([0xF0 | (count >> 4), count & 0x0F])


class U:
    """An unsigned integer of a given byte size."""

    def __init__(self, value: int, size: int) -> None:
        self.data = value.to_bytes(size, "big")


class I:  # noqa: E742
    """A signed integer of a given byte size."""

    def __init__(self, value: int, size: int) -> None:
        self.data = value.to_bytes(size, "big", signed=True)


def enc(value: Any) -> bytes:
    if value is None:
        return b"\x01"
    if isinstance(value, bool):
        return b"\x42" + bytes([value])
    if isinstance(value, U):
        return _tl(0x60, len(value.data)) + value.data
    if isinstance(value, I):
        return _tl(0x50, len(value.data)) + value.data
    if isinstance(value, bytes):
        return _tl(0x00, len(value)) + value
    assert isinstance(value, list)
    return _list_tl(len(value)) + b"".join(enc(item) for item in value)


def message(txid: bytes, tag: int, body: list[Any]) -> bytes:
    head = b"\x76" + enc(txid) + enc(U(0, 1)) + enc(U(0, 1)) + enc([U(tag, 2), body])
    crc = crc16_x25(head)
    return head + b"\x63" + crc.to_bytes(2, "little") + b"\x00"


def transport(payload: bytes, crc: str = "x25") -> bytes:
    """Wrap an SML file in transport v1: pad, escape aligned 1B1B1B1B, end, CRC."""
    padding = -len(payload) % 4
    data = payload + bytes(padding)
    escaped = b"".join(
        data[i : i + 4] * (2 if data[i : i + 4] == ESCAPE else 1) for i in range(0, len(data), 4)
    )
    head = START + escaped + ESCAPE + b"\x1a" + bytes([padding])
    if crc == "x25":
        return head + crc16_x25(head).to_bytes(2, "little")
    if crc == "kermit":
        return head + crc16_kermit(head).to_bytes(2, "big")
    assert crc == "x25-swapped"
    return head + crc16_x25(head).to_bytes(2, "big")


def entry(
    obis: str, value: Any, unit: int | None = None, scaler: int | None = None, val_time: Any = None
) -> list[Any]:
    return [
        bytes.fromhex(obis),
        None,
        val_time,
        None if unit is None else U(unit, 1),
        None if scaler is None else I(scaler, 1),
        value,
        None,
    ]


SERVER = b"\x0a\x01EBZ\x01" + (507409).to_bytes(4, "big")  # printed 1EBZ0100507409


def sml_file(
    entries: list[Any],
    *,
    list_server: bytes | None = SERVER,
    open_server: bytes | None = SERVER,
    sensor_time: Any = None,
    gateway_time: Any = None,
) -> bytes:
    return (
        message(b"\x00\x01", 0x0101, [None, None, b"\x01\x02", open_server, None, None])
        + message(
            b"\x00\x02",
            0x0701,
            [None, list_server, bytes.fromhex("0100620affff"), sensor_time, entries, None, gateway_time],
        )
        + message(b"\x00\x03", 0x0201, [None])
    )


STAMP = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def synthetic() -> bytes:
    """A frame with most of what SML can carry, and escaped data in it."""
    return transport(
        sml_file(
            [
                entry("8181c78203ff", b"EBZ"),
                entry("0100010800ff", U(123_456_789, 8), unit=30, scaler=-1, val_time=[U(2, 1), U(STAMP, 4)]),
                entry("0100020800ff", U(5, 4), unit=30, scaler=3),
                entry("0100100700ff", I(-12345, 4), unit=27, scaler=-1),
                entry("0100240700ff", I(-1, 1), unit=27, scaler=0),
                entry("0100200700ff", U(2301, 2), unit=35, scaler=-1),
                entry("0100600500ff", True),
                entry("8181c78205ff", b"\x1b" * 8 + bytes(range(40))),  # long, with aligned escapes
                entry("01000e0700ff", U(4999, 2), unit=44, scaler=-2),
                entry("0100020700ff", U(0, 1), unit=99, scaler=0),  # unit code we do not know
            ],
            sensor_time=[U(1, 1), U(123456, 4)],
            gateway_time=[U(3, 1), [U(STAMP + 60, 4), I(60, 2), I(0, 2)]],
        )
    )


def test_encoder_output_is_what_smllib_reads() -> None:
    raw = synthetic()
    assert ESCAPE * 2 in raw  # the transport escaped the data
    assert len(_smllib_entries(raw)) == 10


def test_synthetic_frame() -> None:
    raw = synthetic()
    frame = decode_sml(raw)
    assert frame.integrity is Integrity.VALID
    meter = frame.main
    assert meter is not None
    assert meter.id == "1EBZ0100507409"
    assert meter.serial_number == SERVER.hex()
    assert meter.manufacturer == "EBZ"
    assert meter.medium is Medium.ELECTRICITY
    assert meter.timestamp == datetime.fromtimestamp(STAMP + 60, UTC)
    values = meter.values
    total = values["energy_import_total"]
    assert total.value == Decimal("12345.6789")
    assert total.unit == "kWh"
    assert total.timestamp == datetime.fromtimestamp(STAMP, UTC)
    assert total.timestamp.tzinfo is DEFAULT_TZ
    assert values["energy_export_total"].value == Decimal(5)
    assert values["power_net"].value == Decimal("-1.2345")
    assert values["power_net"].unit == "kW"
    assert values["power_net_l1"].value == Decimal("-0.001")
    assert values["voltage_l1"].value == Decimal("230.1")
    assert values["obis_1_0_96_5_0"].value == Decimal(1)
    assert values["public_key"].value == (b"\x1b" * 8 + bytes(range(40))).hex()
    assert values["frequency"].value == Decimal("49.99")
    assert values["power_export"].unit is None  # unit code 99 is not a DLMS unit
    _assert_same_as_smllib(raw, frame)


def test_public_data_set_takes_the_id_from_the_list_header() -> None:
    """No 1-0:0.0.9 entry: the meter is the GetList.Res server ID."""
    raw = transport(sml_file([entry("0100010800ff", U(10, 4), unit=30, scaler=0)], open_server=b"\x99"))
    meter = decode_sml(raw).main
    assert meter is not None
    assert meter.id == "1EBZ0100507409"
    assert meter.manufacturer == "EBZ"  # from the FLAG ID in the server ID
    assert meter.values["energy_import_total"].value == Decimal("0.010")


def test_no_list_server_id_takes_the_open_response_one() -> None:
    raw = transport(sml_file([entry("0100010800ff", U(10, 4), unit=30)], list_server=None))
    meter = decode_sml(raw).main
    assert meter is not None
    assert meter.id == "1EBZ0100507409"


def test_device_id_entry_wins_over_list_header() -> None:
    device = b"\x09\x01EMH\x00" + (4321349).to_bytes(4, "big")
    raw = transport(sml_file([entry("0100000009ff", device), entry("0100010800ff", U(1, 1), unit=30)]))
    meter = decode_sml(raw).main
    assert meter is not None
    assert meter.id == "1EMH0004321349"
    assert meter.values["server_id"].value == "1EMH0004321349"


def test_two_servers_are_two_meters() -> None:
    other = b"\x0a\x07GWF\x00" + (12345678).to_bytes(4, "big")
    payload = (
        message(b"\x01", 0x0101, [None, None, b"\x01", SERVER, None, None])
        + message(
            b"\x02", 0x0701, [None, SERVER, None, None, [entry("0100010800ff", U(1, 1), 30)], None, None]
        )
        + message(
            b"\x03", 0x0701, [None, other, None, None, [entry("0700030000ff", U(7, 1), 13)], None, None]
        )
        + message(b"\x04", 0x0201, [None])
    )
    frame = decode_sml(transport(payload))
    assert [(m.id, m.medium, m.channel) for m in frame.meters] == [
        ("1EBZ0100507409", Medium.ELECTRICITY, 0),
        ("7GWF0012345678", Medium.GAS, 1),
    ]
    assert frame.meters[1].registers[0].unit == "m3"


def test_holley_bare_integer_time_is_a_seconds_index() -> None:
    raw = transport(sml_file([entry("0100010800ff", U(1, 1), unit=30, val_time=U(4242, 4))]))
    reg = decode_sml(raw).main.registers[0]  # type: ignore[union-attr]
    assert reg.timestamp is None
    assert reg.value == Decimal("0.001")


# ---------------------------------------------------------------- server IDs


@pytest.mark.parametrize(
    ("server_id", "printed"),
    [
        ("0a01454d4801" + (507409).to_bytes(4, "big").hex(), "1EMH0100507409"),  # 2012: block decimal
        ("0a01445a47000282c0b0", "1DZG0042123440"),
        ("0901454d48000041f045", "1EMH0004321349"),  # 2010-07 format, block in hex
        ("090149534b1a" + (74036152).to_bytes(4, "big").hex(), "1ISK1A74036152"),
        ("0a0e454d480c" + (99).to_bytes(4, "big").hex(), "EEMH1200000099"),
        ("06454d48" + (1_14_01_00507409).to_bytes(6, "big").hex(), "1EMH140100507409"),  # 2010-02
        ("080535342d510177", "080535342d510177"),  # vendor format: hex
        ("0a01000000010000000a", "0a01000000010000000a"),  # no FLAG ID: hex
        ("00000000000000000000", "00000000000000000000"),
    ],
)
def test_format_server_id(server_id: str, printed: str) -> None:
    assert format_server_id(bytes.fromhex(server_id)) == printed


# ---------------------------------------------------------------- CRC


def test_crc_check_values() -> None:
    """The catalogue check values of CRC-16/X-25 and CRC-16/KERMIT."""
    assert crc16_x25(b"123456789") == 0x906E
    assert crc16_kermit(b"123456789") == 0x2189


@pytest.mark.parametrize("name", NAMES)
def test_crc_matches_smllib(name: str) -> None:
    from smllib.crc import kermit, x25

    body = RAW[name][:-2]
    assert crc16_x25(body) == int.from_bytes(x25.get_crc(body).to_bytes(2, "big"), "little")
    assert crc16_kermit(body) == kermit.get_crc(body)


def test_kermit_crc_is_accepted() -> None:
    payload = sml_file([entry("0100010800ff", U(1, 1), unit=30)])
    raw = transport(payload, crc="kermit")
    assert check_crc(raw) is Integrity.VALID
    assert decode_sml(raw).integrity is Integrity.VALID
    reader = SmlStreamReader(crc="kermit")  # smllib agrees on the byte order
    reader.add(raw)
    assert reader.get_frame() is not None


def test_x25_high_byte_first_is_not_a_variant() -> None:
    raw = transport(sml_file([entry("0100010800ff", U(1, 1), unit=30)]), crc="x25-swapped")
    assert raw[-2] != raw[-1]
    assert check_crc(raw) is Integrity.INVALID


@pytest.mark.parametrize("name", NAMES)
def test_bad_crc_raises_unless_accepted(name: str) -> None:
    raw = bytearray(RAW[name])
    raw[40] ^= 0x01  # a bit flip inside the messages
    with pytest.raises(ChecksumError):
        decode_sml(bytes(raw))
    frame = decode_sml(bytes(raw), accept_invalid=True)
    assert frame.integrity is Integrity.INVALID
    bad_crc = RAW[name][:-1] + bytes([RAW[name][-1] ^ 0xFF])
    with pytest.raises(ChecksumError, match="CRC mismatch"):
        decode_sml(bad_crc)
    assert decode_sml(bad_crc, accept_invalid=True).main == decode_sml(RAW[name]).main


# ---------------------------------------------------------------- bad frames


@pytest.mark.parametrize("cut", [1, 7, 8, 20, 100, -9, -8, -5, -3, -1])
def test_truncated_frame_is_a_decode_error(cut: int) -> None:
    raw = RAW["de_holley_frame2"]
    with pytest.raises(DecodeError):
        decode_sml(raw[:cut])


def test_not_sml() -> None:
    with pytest.raises(DecodeError, match="start sequence"):
        decode_sml(b"/ISK5\\2M550T-1012\r\n\r\n!1234\r\n")
    with pytest.raises(DecodeError):
        decode_sml(b"")


def test_valid_crc_over_a_truncated_file_is_a_decode_error() -> None:
    """The transport is fine, the SML inside is cut off: DecodeError, not IndexError."""
    payload = sml_file([entry("0100010800ff", U(1, 1), unit=30)])
    for cut in (3, 10, len(payload) // 2, len(payload) - 4):
        with pytest.raises(DecodeError):
            decode_sml(transport(payload[:cut]))


def test_no_values_is_a_decode_error() -> None:
    payload = message(b"\x01", 0x0101, [None, None, b"\x01", SERVER, None, None])
    with pytest.raises(DecodeError, match="GetList"):
        decode_sml(transport(payload))


def test_wrong_padding_count() -> None:
    """A padding count that would cut off more than the zero fill bytes."""
    raw = bytearray(transport(sml_file([entry("0100010800ff", U(1, 1), unit=30)])))
    body = raw[8:-8]
    raw[-3] = len(body) - len(body.rstrip(b"\x00")) + 1
    raw[-2:] = crc16_x25(bytes(raw[:-2])).to_bytes(2, "little")
    with pytest.raises(DecodeError):
        decode_sml(bytes(raw))


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DecodeError, match="nested"):
        parse_messages(b"\x71" * 200 + b"\x01")


@FAST
@given(payload=st.binary(min_size=1, max_size=300))
def test_any_payload_with_a_valid_crc_decodes_or_raises_decode_error(payload: bytes) -> None:
    try:
        frame = decode_sml(transport(payload))
    except DecodeError:
        return
    assert frame.integrity is Integrity.VALID


@FAST
@given(data=st.data())
def test_mutated_frames_never_raise_anything_else(data: st.DataObject) -> None:
    raw = bytearray(RAW[data.draw(st.sampled_from(NAMES))])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(8, len(raw) - 9))] = data.draw(st.integers(0, 255))
    try:
        frame = decode_sml(bytes(raw), accept_invalid=True)
    except SmartMeterError:
        return
    assert frame.integrity in {Integrity.VALID, Integrity.INVALID}


# ---------------------------------------------------------------- framing


STREAM = b"".join(RAW[name] for name in NAMES)
FRAMES = [RAW[name] for name in NAMES]


def _feed(chunks: list[bytes], framer: SmlFramer | None = None) -> tuple[list[bytes], SmlFramer]:
    framer = framer or SmlFramer()
    frames: list[bytes] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames, framer


def test_whole_stream_and_byte_by_byte() -> None:
    assert split_sml(STREAM) == (FRAMES, 0)
    frames, framer = _feed([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert frames == FRAMES
    assert framer.discarded == 0


@FAST
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same_frames(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    frames, framer = _feed([STREAM[a:b] for a, b in pairwise(points)])
    assert frames == FRAMES
    assert framer.discarded == 0


@FAST
@given(
    garbage=st.lists(st.binary(max_size=60), min_size=len(FRAMES) + 1, max_size=len(FRAMES) + 1),
    chunk=st.integers(1, 64),
)
def test_garbage_between_frames_is_counted(garbage: list[bytes], chunk: int) -> None:
    stream = garbage[0] + b"".join(frame + junk for frame, junk in zip(FRAMES, garbage[1:], strict=True))
    frames, framer = _feed([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    framer.reset()
    assert frames == FRAMES
    assert framer.discarded == sum(map(len, garbage))


def test_garbage_full_of_escapes() -> None:
    junk = ESCAPE + b"\x1b\x1b" + ESCAPE + b"\x1a" + ESCAPE + b"\x01\x01\x01" + b"\x1b" * 11
    stream = junk + RAW["de_dzg_frame1"] + junk + RAW["de_holley_frame2"] + junk
    frames, discarded = split_sml(stream)
    assert frames == [RAW["de_dzg_frame1"], RAW["de_holley_frame2"]]
    assert discarded == 3 * len(junk)


@pytest.mark.parametrize("name", NAMES)
def test_cut_off_frame_then_a_whole_one(name: str) -> None:
    """A frame cut off anywhere (also right at an escape) never costs the next one."""
    raw = RAW[name]
    following = RAW["de_iskra_issue28"]
    for cut in range(1, len(raw)):
        assert split_sml(raw[:cut] + following) == ([following], cut), cut


@FAST
@given(name=st.sampled_from(NAMES), cut=st.integers(1, 400), chunk=st.integers(1, 50))
def test_cut_off_frame_in_chunks(name: str, cut: int, chunk: int) -> None:
    raw = RAW[name]
    cut = min(cut, len(raw) - 1)
    stream = raw[:cut] + FRAMES[0] + raw
    frames, framer = _feed([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    assert frames == [FRAMES[0], raw]
    assert framer.discarded == cut


def test_start_sequence_in_the_data_is_data() -> None:
    """1B1B1B1B 01010101 inside a value (escaped, or off the grid) does not cut the frame."""
    for prefix in (b"", b"\xaa", b"\xaa\xbb", b"\xaa\xbb\xcc"):
        value = prefix + START + b"\x01" * 8
        raw = transport(sml_file([entry("8181c78205ff", value), entry("0100010800ff", U(1, 1), unit=30)]))
        assert START in raw[1:]
        for chunk in (1, 3, 4, 1000):
            frames, framer = _feed([raw[i : i + chunk] for i in range(0, len(raw), chunk)])
            assert frames == [raw], (prefix, chunk)
            assert framer.discarded == 0
        key = decode_sml(raw).main.values["public_key"]  # type: ignore[union-attr]
        assert key.value == value.hex()


def test_unknown_escape_breaks_the_frame() -> None:
    raw = RAW["de_dzg_frame1"]
    broken = raw[:16] + ESCAPE + b"\x02\x02\x02\x02" + raw[16:]
    frames, discarded = split_sml(broken + raw)
    assert frames == [raw]
    assert discarded == len(broken)


def test_endless_frame_is_given_up() -> None:
    framer = SmlFramer()
    assert framer.feed(START + bytes(MAX_FRAME)) == []
    assert framer.feed(RAW["de_dzg_frame1"]) == [RAW["de_dzg_frame1"]]
    assert framer.discarded == len(START) + MAX_FRAME


def test_reset_discards_a_partial_frame() -> None:
    framer = SmlFramer()
    assert framer.feed(RAW["de_dzg_frame1"][:50]) == []
    framer.reset()
    assert framer.discarded == 50
    assert framer.feed(RAW["de_dzg_frame1"]) == [RAW["de_dzg_frame1"]]


def test_split_counts_a_frame_cut_off_at_the_end() -> None:
    assert split_sml(STREAM + RAW["de_dzg_frame1"][:30]) == (FRAMES, 30)


def test_sniff() -> None:
    assert sniff_sml(STREAM)
    assert sniff_sml(b"junk" + RAW["de_dzg_frame1"])
    assert not sniff_sml(b"/ISK5\\2M550T-1012\r\n\r\n!1234\r\n")
    assert not sniff_sml(ESCAPE + b"\x1a\x00\x00\x00")


def test_smllib_reads_our_frames_after_framing() -> None:
    """Frames cut from a dirty stream are exactly the bytes smllib accepts."""
    stream = b"\x00\xff" + STREAM + b"\x1b\x1b"
    frames, _ = split_sml(stream)
    for raw in frames:
        reader = SmlStreamReader()
        reader.add(raw)
        assert isinstance(reader.get_frame(), SmlFrame)
