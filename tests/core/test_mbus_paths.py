"""M-Bus edge cases: master frames, link errors, the secondary search's corners, records and headers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from custom_components.smartmeter.core import mbus
from custom_components.smartmeter.core.errors import DecodeError
from custom_components.smartmeter.core.models import Medium

from .test_mbus import SimulatedBus, _bus_frames, _secondary

HEADER = bytes.fromhex("785634122D2C01022A000000")  # ID 12345678, KAM, v1, electricity


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def rsp_ud(ci: int, data: bytes, address: int = 5) -> bytes:
    """A slave's RSP_UD long frame."""
    body = bytes((0x08, address, ci)) + data
    return bytes((0x68, len(body), len(body), 0x68)) + body + bytes((mbus.checksum(body), 0x16))


def records(hex_data: str, **kwargs: object) -> list[mbus.DataRecord]:
    found, _mfct, _more = mbus.parse_records(bytes.fromhex(hex_data), **kwargs)  # type: ignore[arg-type]
    return found


# ---------------------------------------------------------------- master frames and the link layer


def test_master_frames_and_their_limits() -> None:
    assert mbus.parse_link_frame(mbus.req_ud1(5, fcb=True)) == mbus.LinkFrame(
        mbus.FrameKind.SHORT, mbus.C_REQ_UD1 | mbus.FCB, 5
    )
    assert mbus.req_ud1(5) == bytes((0x10, 0x5A, 0x05, 0x5F, 0x16))
    link = mbus.parse_link_frame(mbus.set_primary_address(0, 17))
    assert (link.a, link.ci, link.data) == (0, mbus.CI_DATA_SEND, b"\x01\x7a\x11")
    with pytest.raises(ValueError, match="primary address 251 outside"):
        mbus.set_primary_address(0, 251)
    assert len(mbus.snd_ud(1, mbus.CI_DATA_SEND, bytes(mbus.MAX_LONG_DATA))) == mbus.MAX_LONG_DATA + 9
    with pytest.raises(ValueError, match="user data too long"):
        mbus.snd_ud(1, mbus.CI_DATA_SEND, bytes(mbus.MAX_LONG_DATA + 1))
    with pytest.raises(ValueError, match="not 3 letters"):
        mbus.manufacturer_code("KA")
    assert not mbus.mask_matches("FFFFFFFF", "6666020532A70704")  # not 16 digits


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes.fromhex("105B055F17"), "short frame without stop byte 16 \\(found 17\\)"),
        (bytes.fromhex("6802026808010916"), "long frame with L=2"),
        (bytes.fromhex("6803036808"), "truncated M-Bus long frame \\(5 bytes\\)"),
    ],
)
def test_malformed_link_frames(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        mbus.parse_link_frame(raw)


# ---------------------------------------------------------------- secondary search


async def test_search_rejects_a_bad_mask() -> None:
    with pytest.raises(ValueError, match="not 16 hex digits"):
        await mbus.search_secondary(SimulatedBus({}).transact, "12345")


async def test_search_with_a_known_id_and_with_a_full_address() -> None:
    frames = _bus_frames()
    bus = SimulatedBus(frames)
    address = _secondary(next(iter(frames.values())))
    by_id = await mbus.search_secondary(bus.transact, address[:8] + "FFFFFFFF")
    assert by_id.found == [address]
    full = await mbus.search_secondary(bus.transact, address)
    assert (full.found, full.probes) == ([address], 1)  # nothing to narrow: one select
    absent = await mbus.search_secondary(bus.transact, "00000000" + address[8:])
    assert (absent.found, absent.unresolved, absent.probes) == ([], [], 1)


async def test_search_with_a_given_manufacturer_narrows_version_and_medium() -> None:
    frames = _bus_frames()
    address = _secondary(next(iter(frames.values())))
    bus = SimulatedBus(frames)
    result = await mbus.search_secondary(bus.transact, address[:12] + "FFFF")
    assert result.found == [address]


async def test_selected_slave_that_does_not_answer_its_read() -> None:
    """Selects are acknowledged but REQ_UD2 to 253 gets nothing: no slave found, none unresolved."""
    requests: list[bytes] = []

    async def transact(frame: bytes) -> bytes | None:
        requests.append(frame)
        return b"\xe5" if mbus.parse_link_frame(frame).kind is mbus.FrameKind.LONG else None

    result = await mbus.search_secondary(transact, "1234567FFFFFFFFF")
    assert (result.found, result.unresolved) == ([], [])
    assert result.probes == 10  # each digit tried once, none narrowed further
    assert requests.count(mbus.req_ud2(mbus.ADDRESS_NETWORK)) == 10


async def test_selected_slave_whose_answer_has_no_header_is_unresolved() -> None:
    """A single slave answers, but its RSP_UD (CI 78, no header) does not say its address."""

    async def transact(frame: bytes) -> bytes | None:
        link = mbus.parse_link_frame(frame)
        if link.kind is mbus.FrameKind.LONG:
            return b"\xe5" if link.data[:4] == bytes.fromhex("78563412") else None
        return rsp_ud(mbus.CI_VARIABLE_NO_HEADER, bytes.fromhex("0413E8030000"), address=253)

    result = await mbus.search_secondary(transact, "1234567FFFFFFFFF")
    assert result.found == []
    assert result.unresolved == ["12345678FFFFFFFF"]


# ---------------------------------------------------------------- records


def test_plain_records() -> None:
    plain, stored, tariff = records("0413E80300004413E80300008410133E000000")
    assert plain.plain and plain.value == Decimal("1.000")
    assert not stored.plain and stored.storage == 1
    assert not tariff.plain and tariff.tariff == 1


def test_real_value_that_is_not_a_number() -> None:
    assert records("052B0000C07F")[0].value is None  # NaN
    assert records("052B0000807F")[0].value is None  # infinity


def test_plain_text_vif_cut_short() -> None:
    with pytest.raises(DecodeError, match="plain-text VIF cut short"):
        records("0D7C")


def test_vife_multiplier_1000_and_additive_correction() -> None:
    thousand, offset = records("04937D0100000004937801000000")
    assert (thousand.quantity, thousand.value, thousand.unit) == ("volume", Decimal(1), "m3")
    assert thousand.suffix == ""
    assert (offset.value, offset.suffix) == (Decimal("0.001"), "_offset_0")  # flagged, not applied


def test_date_time_codings() -> None:
    type_j, bcd, type_i, type_i_invalid, type_i_impossible = records(
        "036D"
        "563412"  # 24-bit: type J time of day 12:34:56
        "0B6D"
        "563412"  # 6-digit BCD with a date-time VIF: kept as the number
        "066D"
        "1E1E0B0F3303"  # type I: 2024-03-15 11:30:30
        "066D"
        "1E9E0B0F3303"  # type I with the invalid bit
        "066D"
        "1E1E0B1F3D03",  # type I: month 13
        tz=UTC,
    )
    assert type_j.value == "123456"
    assert bcd.value == 123456
    assert type_i.value == datetime(2024, 3, 15, 11, 30, 30, tzinfo=UTC)
    assert type_i_invalid.value is None
    assert type_i_impossible.value is None


def test_a_date_sent_as_text_is_text() -> None:
    """Regression: an LVAR text with a date VIF came out as the hex of its reversed bytes."""
    (record,) = records("0D6D0A" + b"2024-03-15"[::-1].hex())
    assert record.value == "2024-03-15"
    assert record.unit is None


def test_reserved_primary_vif_is_named_by_its_code() -> None:
    (record,) = records("026F0500")
    assert (record.quantity, record.value) == ("vif_6f", 5)


def test_manufacturer_record() -> None:
    (record,) = records("02FD0A2D2C")
    assert (record.quantity, record.value) == ("manufacturer", "KAM")


# ---------------------------------------------------------------- headers and frames


def test_msb_first_frame_reads_like_the_lsb_one() -> None:
    lsb = mbus.parse_user_data(mbus.CI_VARIABLE, HEADER + bytes.fromhex("0413E803000002FD1C6009"))
    msb_header = HEADER[3::-1] + HEADER[5:3:-1] + HEADER[6:10] + HEADER[11:9:-1]
    msb = mbus.parse_user_data(mbus.CI_VARIABLE_MSB, msb_header + bytes.fromhex("0413000003E802FD1C0960"))
    assert msb.header == lsb.header
    assert msb.header is not None and msb.header.secondary_address == "123456782C2D0102"
    assert [(r.quantity, r.value) for r in msb.records] == [(r.quantity, r.value) for r in lsb.records]
    assert [r.value for r in msb.records] == [Decimal("1.000"), Decimal(2400)]


def test_user_data_headers() -> None:
    with pytest.raises(DecodeError, match="short header too short: 3 of 4 bytes"):
        mbus.parse_user_data(mbus.CI_VARIABLE_SHORT, b"\x01\x02\x03")
    with pytest.raises(DecodeError, match="CI 51 is not a variable data response"):
        mbus.parse_user_data(0x51, HEADER)
    bare = mbus.parse_user_data(mbus.CI_VARIABLE_NO_HEADER, bytes.fromhex("0413E8030000"))
    assert bare.header is None
    assert [r.value for r in bare.records] == [Decimal("1.000")]


def test_frame_without_header_is_named_by_its_primary_address() -> None:
    frame = mbus.decode_mbus(rsp_ud(mbus.CI_VARIABLE_NO_HEADER, bytes.fromhex("0413E8030000"), address=7))
    meter = frame.main
    assert meter is not None
    assert (meter.id, meter.medium, meter.serial_number, meter.manufacturer, meter.model) == (
        "primary-7",
        Medium.UNKNOWN,
        None,
        None,
        None,
    )
    assert (frame.header, frame.version) == (None, None)
    assert [r.key for r in meter.registers if r.key in ("status", "access_number")] == []  # no header, none
    assert meter.register("volume") is not None


def test_fixed_data_structure_of_the_wrong_size() -> None:
    with pytest.raises(DecodeError, match="fixed data structure of 15 bytes"):
        mbus.decode_mbus(rsp_ud(mbus.CI_FIXED, bytes(15)))


def test_electricity_tariffs_beyond_4_get_no_p1_key() -> None:
    # energy, tariff 1 (DIFE 10) and tariff 5 (DIFE 90: bit 0, then DIFE 10: bit 2)
    data = HEADER + bytes.fromhex("841003E803000084901003E8030000")
    frame = mbus.decode_mbus(rsp_ud(mbus.CI_VARIABLE, data))
    assert frame.main is not None
    tariffs = {r.key: r.value for r in frame.main.registers if "energy" in r.key}
    assert tariffs["energy_import_tariff_1"] == Decimal("1.000")
    assert "energy_import_tariff_5" not in tariffs
    assert len(tariffs) == 2  # the tariff-5 value is kept, under its generic key
