"""DLMS/COSEM edge cases: A-XDR data types, clock values, security headers, list layouts, default units."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from custom_components.smartmeter.core import dlms
from custom_components.smartmeter.core.dlms import (
    cosem_datetime,
    decipher,
    decode_dlms,
    encrypt_apdu,
    list_entries,
    parse_data,
    sniff_dlms,
)
from custom_components.smartmeter.core.errors import DecodeError, KeyRequiredError, WrongKeyError
from custom_components.smartmeter.core.models import Meter
from tests.conftest import corpus_dir

KEY = bytes(range(16))
AUTH = bytes(range(16, 32))
TITLE = b"KFM\x10\x10\x00\x00\x23"
AIDON = (corpus_dir() / "han_dlms" / "se_aidon_3ph.bin").read_bytes()


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


# ---------------------------------------------------------------- A-XDR builders


def octets(data: bytes) -> bytes:
    return bytes((9, len(data))) + data


def visible(text: str) -> bytes:
    return bytes((10, len(text))) + text.encode()


def obis(code: str) -> bytes:
    """An OBIS code "1-0:1.7.0.255" as the 6-byte octet string."""
    return octets(bytes(int(p) for p in code.replace("-", ".").replace(":", ".").split(".")))


def u32(value: int) -> bytes:
    return b"\x06" + struct.pack(">I", value)


def u8(value: int) -> bytes:
    return bytes((17, value))


def structure(*items: bytes) -> bytes:
    return bytes((2, len(items))) + b"".join(items)


def array(*items: bytes) -> bytes:
    return bytes((1, len(items))) + b"".join(items)


def scaler_unit(scaler: int, unit: int) -> bytes:
    return structure(bytes((15, scaler & 0xFF)), bytes((22, unit)))


def notification(body: bytes) -> bytes:
    """A data-notification APDU without date-time around ``body``."""
    return b"\x0f\x00\x00\x00\x01\x00" + body


def meter(body: bytes, **kwargs: object) -> Meter:
    frame = decode_dlms(notification(body), **kwargs)  # type: ignore[arg-type]
    assert frame.main is not None
    return frame.main


def values(m: Meter) -> dict[str, tuple[object, str | None]]:
    return {r.obis: (r.value, r.unit) for r in m.registers}


# ---------------------------------------------------------------- parse_data


def test_nesting_is_bounded() -> None:
    deep = b"\x01\x01" * (dlms.MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DecodeError, match="nested too deeply"):
        parse_data(deep)
    ok = b"\x01\x01" * dlms.MAX_DEPTH + b"\x00"
    node, end = parse_data(ok)
    assert end == len(ok) and node[0] == dlms.ARRAY


def test_bit_string_and_its_truncation() -> None:
    assert parse_data(b"\x04\x0c\xab\xc0\xff") == ((dlms.BIT_STRING, b"\xab\xc0"), 4)  # 12 bits: 2 bytes
    with pytest.raises(DecodeError, match="truncated COSEM bit string"):
        parse_data(b"\x04\x11\xab\xcd")  # 17 bits need 3 bytes


def test_truncated_date_time_and_unsupported_types() -> None:
    with pytest.raises(DecodeError, match="truncated COSEM date/time"):
        parse_data(b"\x19" + bytes(11))  # date-time is 12 bytes
    assert parse_data(b"\x1a" + bytes(5)) == ((dlms.DATE, bytes(5)), 6)
    with pytest.raises(DecodeError, match="unsupported COSEM data type 19"):
        parse_data(b"\x13\x00")  # compact array


# ---------------------------------------------------------------- cosem_datetime


def _stamp(deviation: int, status: int = 0x00) -> bytes:
    return (
        bytes((0x07, 0xE8, 3, 15, 5, 12, 30, 0, 0))
        + (deviation & 0xFFFF).to_bytes(2, "big")
        + bytes((status,))
    )


def test_cosem_datetime_deviation_and_bad_inputs() -> None:
    # deviation -60: local time is UTC+1 (the amshan / Norwegian HAN reading)
    assert cosem_datetime(_stamp(-60), UTC) == datetime(2024, 3, 15, 11, 30, tzinfo=UTC)
    assert cosem_datetime(_stamp(-60), UTC).utcoffset() == timedelta(0)  # type: ignore[union-attr]
    assert cosem_datetime(_stamp(721), UTC) is None  # more than 12 h off UTC: not a deviation
    assert cosem_datetime(_stamp(-721), UTC) is None
    assert cosem_datetime(_stamp(0x8000, status=0x01), UTC) is None  # clock status "invalid value"
    assert cosem_datetime(_stamp(-60)[:11], UTC) is None  # not 12 bytes
    tz = timezone(timedelta(hours=2))
    assert cosem_datetime(_stamp(0x8000, status=0xFF), tz) == datetime(2024, 3, 15, 12, 30, tzinfo=tz)


# ---------------------------------------------------------------- security headers


def _glo(content: bytes) -> bytes:
    return b"\xdb\x08" + TITLE + bytes((len(content),)) + content


def test_security_header_too_short() -> None:
    with pytest.raises(DecodeError, match="truncated ciphered APDU"):
        decode_dlms(b"\xdb")
    with pytest.raises(DecodeError, match="too short for its security header"):
        decipher(_glo(b"\x30\x00\x00\x01"), KEY, None)


def test_compressed_apdus_are_refused() -> None:
    with pytest.raises(DecodeError, match="compressed"):
        decipher(_glo(b"\xb0\x00\x00\x00\x01" + bytes(20)), KEY, None)


def test_neither_encrypted_nor_authenticated_needs_no_key() -> None:
    plain = (corpus_dir() / "han_dlms" / "no_kaifa_list2.llc.bin").read_bytes()[3:]
    apdu = _glo(b"\x00\x00\x00\x00\x07" + plain)
    assert decipher(apdu, None, None) == (plain, TITLE, False)
    frame = decode_dlms(apdu)
    assert frame.encrypted and frame.header == TITLE.hex().upper()
    assert frame.main is not None and frame.main.id == "6970631402614476"


@pytest.mark.parametrize(("control", "key"), [(0x10, None), (0x30, KEY)], ids=["auth-only", "auth-encrypted"])
def test_authenticated_apdu_shorter_than_its_tag(control: int, key: bytes | None) -> None:
    with pytest.raises(DecodeError, match="authenticated APDU too short for its tag"):
        decipher(_glo(bytes((control,)) + b"\x00\x00\x00\x01" + bytes(11)), key, AUTH)


def test_authenticated_plaintext_that_is_not_an_apdu_is_a_decode_error() -> None:
    """The tag checks out, so the key is right: the content itself is bad (not 'wrong key')."""
    apdu = encrypt_apdu(b"\x01\x02\x03", KEY, system_title=TITLE, frame_counter=9, auth_key=AUTH)
    with pytest.raises(DecodeError) as err:
        decode_dlms(apdu, key=KEY, auth_key=AUTH)
    assert not isinstance(err.value, (WrongKeyError, KeyRequiredError))
    # without the authentication key the same garbage means the key is wrong
    with pytest.raises(WrongKeyError):
        decode_dlms(apdu, key=KEY)


# ---------------------------------------------------------------- lists and registers


def test_structure_without_obis_and_null_padding() -> None:
    body = array(
        structure(obis("0-0:96.1.0.255"), visible("7359992895913195")),
        b"\x00",  # Kamstrup-style padding
        structure(u32(5), u32(6)),  # a structure that does not start with an OBIS code
        structure(obis("1-0:1.7.0.255"), u32(1234), scaler_unit(0, 27)),
    )
    node, _ = parse_data(body)
    entries = list_entries(node)
    assert [e[0] is None for e in entries] == [False, True, False]
    m = meter(body)
    assert m.id == "7359992895913195"
    # the value without a code is not a register
    assert values(m) == {"0-0:96.1.0": ("7359992895913195", None), "1-0:1.7.0": (Decimal("1.234"), "kW")}


def test_scaler_unit_of_the_wrong_types_is_not_one() -> None:
    """{uint8, uint8} after a value is a third element, not its scaler and unit: the defaults apply."""
    body = array(
        structure(obis("0-0:96.1.0.255"), visible("M1")),
        structure(obis("1-0:1.7.0.255"), u32(1500), structure(u8(0), u8(27))),
    )
    assert values(meter(body))["1-0:1.7.0"] == (Decimal("1.500"), "kW")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("1-0:9.7.0.255", (Decimal("0.230"), "kVA")),  # apparent power
        ("1-0:10.8.0.255", (Decimal("0.230"), "kVAh")),  # apparent energy
        ("1-0:14.7.0.255", (Decimal("230"), "Hz")),  # frequency
        ("1-0:13.7.0.255", (Decimal("230"), None)),  # power factor: no unit
        ("1-0:1.2.0.255", (Decimal("230"), None)),  # cumulative maximum: D=2, no default
        ("0-0:96.14.0.255", (Decimal("230"), None)),  # abstract object (A=0)
    ],
)
def test_default_units_of_values_without_scaler(code: str, expected: tuple[Decimal, str | None]) -> None:
    body = array(structure(obis("0-0:96.1.0.255"), visible("M1")), structure(obis(code), u32(230)))
    assert values(meter(body))[code[: code.rindex(".")]] == expected


def test_kamstrup_energy_without_scaler_is_in_10_wh() -> None:
    body = array(
        visible("Kamstrup_V0001"),  # Kamstrup's list version comes first, without a code
        obis("1-1:0.0.5.255"),
        visible("5706567274389702"),
        obis("1-1:1.8.0.255"),
        u32(123456),
    )
    m = meter(body)
    assert m.manufacturer == "Kamstrup"
    assert values(m)["1-1:1.8.0"] == (Decimal("1234.560"), "kWh")


def test_value_types_that_are_not_numbers() -> None:
    not_a_clock = bytes((0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10))  # 12 bytes, unprintable, not a date
    body = array(
        structure(obis("0-0:96.1.0.255"), visible("M1")),
        structure(obis("0-0:96.13.0.255"), bytes((12, 4)) + "Grüß".encode()[:4]),  # utf8-string
        structure(obis("0-0:96.13.1.255"), octets(not_a_clock)),
        structure(obis("0-0:96.50.0.255"), b"\x19" + _stamp(-60)),  # date-time type
        structure(obis("0-0:96.50.1.255"), b"\x00"),  # null
        structure(obis("0-0:96.50.2.255"), b"\x04\x08\xa5"),  # bit string
        structure(obis("0-0:96.3.10.255"), b"\x03\x01"),  # boolean
        structure(obis("0-0:96.14.0.255"), b"\x16\x02"),  # enum
        structure(obis("0-0:99.1.0.255"), array(u32(1), u32(2))),  # a profile: not a value
    )
    got = values(meter(body, tz=UTC))
    assert got["0-0:96.13.0"] == ("Grü", None)
    assert got["0-0:96.13.1"] == (not_a_clock.hex().upper(), None)
    assert got["0-0:96.50.0"] == (datetime(2024, 3, 15, 11, 30, tzinfo=UTC), None)
    assert got["0-0:96.50.1"] == (None, None)
    assert got["0-0:96.50.2"] == ("A5", None)
    assert got["0-0:96.3.10"] == (Decimal(1), None)
    assert got["0-0:96.14.0"] == (Decimal(2), None)
    assert "0-0:99.1.0" not in got


def test_lists_without_obis_codes_from_an_unknown_meter() -> None:
    with pytest.raises(DecodeError, match="a list of 2 values without OBIS codes from an unknown meter"):
        decode_dlms(notification(array(visible("XYZ_001"), u32(5))))


def test_empty_notification_body() -> None:
    with pytest.raises(DecodeError, match="empty notification body"):
        decode_dlms(notification(array()))


def test_manufacturer_from_list_version_or_system_title() -> None:
    plain = notification(
        array(
            structure(obis("1-1:0.2.129.255"), visible("FOO_V1")),
            structure(obis("0-0:96.1.0.255"), visible("M1")),
        )
    )
    assert decode_dlms(plain).main.manufacturer is None  # type: ignore[union-attr]
    printable = encrypt_apdu(plain, KEY, system_title=b"SAG\x05\x00\x00\x00\x01", frame_counter=1)
    assert decode_dlms(printable, key=KEY).main.manufacturer == "Sagemcom"  # type: ignore[union-attr]
    binary = encrypt_apdu(plain, KEY, system_title=b"\x01\x02\x03\x05\x00\x00\x00\x01", frame_counter=1)
    assert decode_dlms(binary, key=KEY).main.manufacturer is None  # type: ignore[union-attr]


def test_obis_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    full = {i.to_bytes(6, "big"): ("x", "x", 0, 0, 0) for i in range(4096)}
    monkeypatch.setattr(dlms, "_OBIS_CACHE", full)
    code = bytes((1, 0, 1, 7, 0, 255))
    assert dlms._obis_info(code) == ("1-0:1.7.0", "power_import", 1, 1, 7)
    assert code not in full and len(full) == 4096


# ---------------------------------------------------------------- sniffing


def test_sniff_skips_flags_that_start_no_valid_header() -> None:
    noise = b"\x7e\x55" + b"\x7e\xa0\x10\x41\x08\x83\x13\x00\x00" + b"\x7e\xa0\x10\x02\x02\x02\x02\x02\x02"
    assert not sniff_dlms(noise)
    assert sniff_dlms(noise + AIDON)
