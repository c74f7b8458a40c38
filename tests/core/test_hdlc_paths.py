"""HDLC edge cases: malformed headers, frames without information, fill flags, noise and orphan segments."""

from __future__ import annotations

import pytest

from custom_components.smartmeter.core.dlms import decode_dlms
from custom_components.smartmeter.core.errors import DecodeError
from custom_components.smartmeter.core.hdlc import (
    MAX_MESSAGE,
    HdlcFramer,
    check_frames,
    crc16_x25,
    header_length,
    parse_frame,
    parse_frames,
)
from tests.conftest import corpus_dir

from .test_hdlc import build_frame

AIDON = (corpus_dir() / "han_dlms" / "se_aidon_3ph.bin").read_bytes()
KAIFA = (corpus_dir() / "han_dlms" / "no_kaifa_ma304h4d_list.bin").read_bytes()
# The DLMS "SNRM" a client sends to open an association: no information field, so no HCS.
SNRM = bytes.fromhex("7EA00703219" + "30F017E")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def raw_frame(body: bytes) -> bytes:
    """Flag, ``body`` (format, addresses, control ...), its FCS, flag: checks right, whatever the body says."""
    return b"\x7e" + body + crc16_x25(body).to_bytes(2, "little") + b"\x7e"


def segments_of(raw: bytes, cut: int, *, src: bytes = b"\x08\x83") -> tuple[bytes, bytes]:
    info = parse_frames(raw)[0].information
    return (
        build_frame(info[:cut], segmented=True, src=src),
        build_frame(info[cut:], segmented=False, src=src),
    )


# ---------------------------------------------------------------- parse_frame / parse_frames


def test_frame_without_information_has_no_hcs() -> None:
    frame, after = parse_frame(SNRM)
    assert (frame.destination, frame.source, frame.control) == (b"\x03", b"\x21", 0x93)
    assert frame.information == b""
    assert frame.hcs_valid is None
    assert frame.valid and after == len(SNRM)


def test_address_of_four_bytes_without_end_bit_is_malformed() -> None:
    # destination 02 02 02 02: bit 0 never set, so no address ends within 4 bytes
    raw = raw_frame(bytes([0xA0, 0x0A]) + b"\x02\x02\x02\x02\x03\x13")
    assert header_length(raw) == -1
    with pytest.raises(DecodeError, match="malformed HDLC address field"):
        parse_frame(raw)


def test_header_longer_than_the_frame_is_malformed() -> None:
    # 4-byte destination and source, but the stated length (7) leaves no room for them
    raw = bytes([0x7E, 0xA0, 0x07]) + b"\x02\x02\x02\x03\x02\x02\x02\x03\x13\x00\x00\x7e"
    with pytest.raises(DecodeError, match="malformed HDLC address field"):
        parse_frame(raw)


def test_one_byte_between_control_and_fcs_is_too_short_for_an_hcs() -> None:
    raw = raw_frame(bytes([0xA0, 0x08, 0x41, 0x03, 0x13, 0xAA]))
    with pytest.raises(DecodeError, match="too short for its header check sequence"):
        parse_frame(raw)


def test_garbage_before_the_first_frame() -> None:
    with pytest.raises(DecodeError, match="unexpected byte 0x55"):
        parse_frames(b"\x55" + AIDON)


def test_fill_flags_between_segments_are_skipped() -> None:
    first, second = segments_of(AIDON, 250)
    frames = parse_frames(first + b"\x7e\x7e" + second)
    assert [f.segmented for f in frames] == [True, False]
    assert decode_dlms(first + b"\x7e\x7e" + second).main == decode_dlms(AIDON).main


def test_two_whole_frames_are_not_one_message() -> None:
    frames = parse_frames(AIDON + KAIFA)
    assert len(frames) == 2 and all(f.valid for f in frames)
    with pytest.raises(DecodeError, match="without segmentation bit before the last segment"):
        check_frames(frames)
    with pytest.raises(DecodeError):
        decode_dlms(AIDON + KAIFA)


# ---------------------------------------------------------------- framer


def test_framer_passes_a_frame_without_information() -> None:
    framer = HdlcFramer()
    assert framer.feed(SNRM + AIDON) == [SNRM, AIDON]
    assert (framer.checksum_errors, framer.discarded) == (0, 0)


@pytest.mark.parametrize(
    "noise",
    [
        bytes([0x7E, 0xA0, 0x03, 0x41, 0x08]),  # stated length below the minimum
        bytes([0x7E, 0xA0, 0x07]) + b"\x02\x02\x02\x03\x02\x02\x02\x03\x13",  # header longer than length
    ],
    ids=["length-too-short", "header-too-long"],
)
def test_framer_drops_impossible_headers(noise: bytes) -> None:
    framer = HdlcFramer()
    assert framer.feed(noise + AIDON) == [AIDON]
    assert framer.discarded == len(noise)
    assert framer.checksum_errors == 0


def test_framer_drops_a_flag_with_a_bad_header_and_no_end() -> None:
    """A 7E A0 in noise: bad HCS, no flag where its length ends, flags inside that start nothing."""
    fake_header = bytes([0x7E, 0xA0, 0x20, 0x41, 0x08, 0x83, 0x13, 0x00, 0x00])  # HCS 0000: wrong
    inside = b"\x55\x7e\x55" + bytes([0x7E, 0xA0, 0x10, 0x41, 0x08, 0x83, 0x13, 0x12, 0x34]) + b"\x55" * 20
    noise = fake_header + inside
    assert len(noise) > 0x20 + 1 and noise[0x20 + 1] != 0x7E  # where the fake frame would end
    framer = HdlcFramer()
    assert framer.feed(noise + AIDON) == [AIDON]
    assert framer.discarded == len(noise)
    assert framer.checksum_errors == 0  # noise, not a damaged frame


def test_framer_unclosed_frame_drops_the_pending_segments() -> None:
    """A first segment, then a frame with a good header that lost its end: both out, the segment counted."""
    first, _ = segments_of(AIDON, 250)
    cut = KAIFA[:-30]  # valid header and HCS, end missing; the next frame starts where it should end
    framer = HdlcFramer()
    out = framer.feed(first + cut + AIDON)
    assert out == [cut, AIDON]
    assert framer.discarded == len(first)
    assert framer.checksum_errors == 1
    with pytest.raises(DecodeError):
        decode_dlms(out[0])


def test_framer_segment_from_another_sender_makes_the_first_an_orphan() -> None:
    first, _ = segments_of(AIDON, 250)
    other_first, other_second = segments_of(AIDON, 100, src=b"\x10\x01")
    framer = HdlcFramer()
    # the sequel of ``first`` is lost; another sender's message comes whole
    out = framer.feed(first + other_first[:1] + other_first[1:] + other_second)
    assert out == [other_first + other_second]
    assert framer.discarded == len(first)
    assert decode_dlms(out[0]).main == decode_dlms(AIDON).main


def test_framer_bounds_a_runaway_segmented_message() -> None:
    """Segments that never end are not held without limit: past MAX_MESSAGE the oldest are dropped."""
    first, _ = segments_of(AIDON, 250)
    middle = build_frame(b"\x55" * 2000, segmented=True)
    count = MAX_MESSAGE // len(middle) + 2
    last = build_frame(b"\x55" * 10)
    framer = HdlcFramer()
    assert framer.feed(first + middle * count) == []
    assert framer.discarded > 0
    assert framer.pending <= MAX_MESSAGE
    assert framer.discarded + framer.pending == len(first) + count * len(middle)
    (message,) = framer.feed(last)
    assert len(message) <= MAX_MESSAGE + len(last)
    assert message.endswith(last)
    assert framer.pending == 0
    with pytest.raises(DecodeError):
        decode_dlms(message)  # the head of the message is gone: it cannot decode
