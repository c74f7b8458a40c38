"""HDLC framing of DLMS push meters: CRC-16/X.25, frame checks, stream framer.

The framer must find every corpus frame in a stream however it is chunked,
resynchronise after garbage (counting it), reassemble segmented messages and
return frames with a bad HCS or FCS (counted) instead of dropping them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.dlms import decode_dlms
from custom_components.smartmeter.core.errors import ChecksumError, DecodeError
from custom_components.smartmeter.core.hdlc import (
    HdlcFramer,
    check_frames,
    crc16_x25,
    crc16_x25_reference,
    parse_frame,
    parse_frames,
)
from tests.conftest import corpus_dir

CORPUS = corpus_dir() / "han_dlms"
HDLC_FILES = sorted(p for p in CORPUS.glob("*.bin") if not p.name.endswith(".llc.bin"))
GOOD = [p for p in HDLC_FILES if "bad_hcs" not in p.name and "oss_brikken" not in p.name]
BAD_HCS = CORPUS / "no_aidon_bad_hcs.bin"
OSS = CORPUS / "no_aidon_oss_brikken_hourly.bin"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _verdict(path: Path) -> dict[str, bool | int]:
    """The corpus builder's independent HDLC check, from the expected.json text."""
    text = path.with_name(path.name[: -len(".bin")] + ".expected.json").read_text()
    match = re.search(r"format-length=(\d+), actual=(\d+), HCS (\w+), FCS (\w+)", text)
    assert match is not None
    return {
        "length": int(match.group(1)),
        "hcs": match.group(3) == "valid",
        "fcs": match.group(4) == "valid",
        "end_flag": "bad end flag" not in text,
    }


def build_frame(
    info: bytes, *, segmented: bool = False, dest: bytes = b"\x41", src: bytes = b"\x08\x83"
) -> bytes:
    """An HDLC frame (type 3, UI control 0x13) around an information field."""
    length = 2 + len(dest) + len(src) + 1 + 2 + len(info) + 2
    head = bytes([0xA0 | (0x08 if segmented else 0) | (length >> 8), length & 0xFF]) + dest + src + b"\x13"
    hcs = crc16_x25(head).to_bytes(2, "little")
    body = head + hcs + info
    return b"\x7e" + body + crc16_x25(body).to_bytes(2, "little") + b"\x7e"


# ---------------------------------------------------------------- CRC


def test_crc16_x25_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E
    assert crc16_x25_reference(b"123456789") == 0x906E
    assert crc16_x25(b"") == crc16_x25_reference(b"") == 0


@given(st.binary(max_size=600))
def test_crc16_x25_matches_reference(data: bytes) -> None:
    assert crc16_x25(data) == crc16_x25_reference(data)


# ---------------------------------------------------------------- frame checks


@pytest.mark.parametrize("path", HDLC_FILES, ids=lambda p: p.stem)
def test_frame_checks_match_corpus_verdict(path: Path) -> None:
    """HCS, FCS, length and end flag as the corpus builder found them."""
    raw = path.read_bytes()
    verdict = _verdict(path)
    frame, end = parse_frame(raw)
    assert ((raw[1] & 7) << 8 | raw[2]) == verdict["length"]
    assert frame.hcs_valid is verdict["hcs"]
    assert frame.fcs_valid is verdict["fcs"]
    assert frame.closed is verdict["end_flag"]
    assert frame.valid is (verdict["hcs"] and verdict["fcs"] and verdict["end_flag"])
    if frame.closed:
        assert end == len(raw)
        assert frame.information[:3] == b"\xe6\xe7\x00"


def test_bad_hcs_is_a_checksum_error() -> None:
    frames = parse_frames(BAD_HCS.read_bytes())
    with pytest.raises(ChecksumError, match="HCS"):
        check_frames(frames)


def test_addresses_of_aidon_and_kaifa() -> None:
    aidon, _ = parse_frame((CORPUS / "no_aidon_list1.bin").read_bytes())
    assert (aidon.destination, aidon.source, aidon.control) == (b"\x41", b"\x08\x83", 0x13)
    kaifa, _ = parse_frame((CORPUS / "no_kaifa_ma304h4_list1.bin").read_bytes())
    assert (kaifa.destination, kaifa.source, kaifa.control) == (b"\x01", b"\x02\x01", 0x10)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x7e", b"\x7e\xa0", b"\x7e\xb0\x10" + bytes(20), b"\x7e\xa0\x03\x41\x08\x83\x13\x00\x00\x7e"],
)
def test_not_a_frame(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_frames(raw)


def test_truncated_frames_raise() -> None:
    raw = GOOD[0].read_bytes()
    for size in range(len(raw) - 1):
        with pytest.raises(DecodeError):
            frames = parse_frames(raw[:size])
            check_frames(frames)
            if not frames[-1].valid:
                raise DecodeError("invalid")


# ---------------------------------------------------------------- framer


@pytest.mark.parametrize("path", HDLC_FILES, ids=lambda p: p.stem)
def test_framer_single_sample(path: Path) -> None:
    raw = path.read_bytes()
    framer = HdlcFramer()
    frames = framer.feed(raw)
    verdict = _verdict(path)
    if verdict["end_flag"]:
        assert frames == [raw]
        assert framer.discarded == 0
    else:
        # No flag where the length ends the frame, but a valid HCS: the frame is
        # returned (cut at its stated length) for the decoder to report.
        assert frames == [raw[: verdict["length"] + 1]]
        assert framer.discarded == len(raw) - verdict["length"] - 1
    assert framer.checksum_errors == (0 if verdict["hcs"] and verdict["fcs"] and verdict["end_flag"] else 1)
    assert framer.pending == 0


def _stream() -> tuple[bytes, list[bytes], int]:
    """Good corpus frames with garbage, fill flags and a bad frame between them."""
    # junk, bytes of it counted as discarded (fill flags before a frame are not)
    garbage = [
        (b"", 0),
        (b"\x00\xff\x7e", 2),
        (b"\x7e\x7e\x7e", 0),
        (b"hello\x7e\xa0\xff", 8),
        (b"\x7e\xa1", 2),
        (b"\x13\x37", 2),
    ]
    parts: list[bytes] = []
    expected: list[bytes] = []
    noise = 0
    for index, path in enumerate(GOOD * 2):
        junk, counted = garbage[index % len(garbage)]
        parts.append(junk)
        noise += counted
        raw = path.read_bytes()
        parts.append(raw)
        expected.append(raw)
    parts.append(BAD_HCS.read_bytes())
    expected.append(BAD_HCS.read_bytes())
    return b"".join(parts), expected, noise


def test_framer_stream_with_garbage() -> None:
    stream, expected, noise = _stream()
    framer = HdlcFramer()
    assert framer.feed(stream) == expected
    assert framer.discarded == noise
    assert framer.checksum_errors == 1
    assert framer.pending == 0


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=20000), max_size=40))
def test_framer_chunked_feeding_gives_the_same_frames(cuts: list[int]) -> None:
    stream, expected, noise = _stream()
    framer = HdlcFramer()
    frames: list[bytes] = []
    start = 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}):
        frames += framer.feed(stream[start:cut])
        start = cut
    frames += framer.feed(stream[start:])
    assert frames == expected
    assert framer.discarded == noise
    assert framer.checksum_errors == 1


def test_byte_by_byte() -> None:
    stream, expected, noise = _stream()
    framer = HdlcFramer()
    frames = [frame for byte in stream for frame in framer.feed(bytes([byte]))]
    assert frames == expected
    assert framer.discarded == noise


def test_shared_flags() -> None:
    """Frames may share one flag between them (7E ... 7E ... 7E)."""
    first, second = (p.read_bytes() for p in GOOD[:2])
    framer = HdlcFramer()
    assert framer.feed(first + second[1:]) == [first, second]
    assert framer.discarded == 0


def test_truncated_frame_then_good_frame() -> None:
    """A frame cut short (bytes lost) is reported; the next one is found."""
    cut, good = GOOD[0].read_bytes()[:60], GOOD[1].read_bytes()
    framer = HdlcFramer()
    # The framer waits for the cut frame's stated length (its header is valid),
    # then finds no closing flag there and rescans.
    frames = framer.feed(cut + good * 8)
    assert frames[1:] == [good] * 8
    assert frames[0] == cut  # its HCS is valid: returned for the decoder to reject
    assert framer.checksum_errors == 1
    with pytest.raises(DecodeError):
        decode_dlms(frames[0])


def test_garbage_flag_with_huge_length_resyncs() -> None:
    good = GOOD[0].read_bytes()
    framer = HdlcFramer()
    frames = framer.feed(b"\x7e\xa7\xff\x41\x08\x83\x13" + good)
    assert frames == [good]
    assert framer.discarded == 7


def test_no_flag_at_all() -> None:
    framer = HdlcFramer()
    assert framer.feed(bytes(range(0x7E))) == []
    assert framer.discarded == 0x7E


def test_reset_counts_the_partial_frame() -> None:
    good = GOOD[0].read_bytes()
    framer = HdlcFramer()
    assert framer.feed(good[:50]) == []
    assert framer.pending == 50
    framer.reset()
    assert framer.discarded == 50
    assert framer.feed(good) == [good]


# ---------------------------------------------------------------- segmentation


def _segment(llc: bytes, sizes: list[int]) -> list[bytes]:
    pieces, start = [], 0
    for size in sizes:
        pieces.append(llc[start : start + size])
        start += size
    pieces.append(llc[start:])
    return [build_frame(piece, segmented=i < len(pieces) - 1) for i, piece in enumerate(pieces)]


def test_segmented_message_reassembled() -> None:
    raw = (CORPUS / "se_aidon_3ph.bin").read_bytes()
    llc = parse_frames(raw)[0].information
    segments = _segment(llc, [200, 200])
    framer = HdlcFramer()
    out = framer.feed(b"".join(segments) + raw)
    assert out == [b"".join(segments), raw]
    assert framer.checksum_errors == 0
    assert decode_dlms(out[0]).main == decode_dlms(raw).main


def test_segmented_message_with_shared_flags_decodes() -> None:
    raw = (CORPUS / "se_aidon_3ph.bin").read_bytes()
    llc = parse_frames(raw)[0].information
    first, second = _segment(llc, [300])
    message = first + second[1:]
    assert decode_dlms(message).main == decode_dlms(raw).main
    (out,) = HdlcFramer().feed(message)
    assert out == first + second  # each segment with its own flags
    assert decode_dlms(out).main == decode_dlms(raw).main


def test_orphan_segment_is_discarded() -> None:
    """A first segment whose sequel was lost does not swallow the next message."""
    raw = (CORPUS / "se_aidon_3ph.bin").read_bytes()
    first, _second = _segment(parse_frames(raw)[0].information, [300])
    framer = HdlcFramer()
    assert framer.feed(first + raw) == [raw]
    assert framer.discarded == len(first)


def test_missing_last_segment_is_an_error() -> None:
    raw = (CORPUS / "se_aidon_3ph.bin").read_bytes()
    first, _second = _segment(parse_frames(raw)[0].information, [300])
    with pytest.raises(DecodeError, match="last segment"):
        decode_dlms(first)
