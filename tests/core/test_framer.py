"""The P1 stream framer: whole frames out of any chunking, resync after any damage.

Real telegrams (tests/fixtures/p1) go through the framer whole, split at every
byte boundary, one byte at a time, mixed with encrypted frames, after garbage,
cut off, with a gateway's junk after them and with bit flips. Whatever comes
out is decoded: a damaged telegram never yields a frame whose values differ
from what the meter sent unless its integrity says INVALID.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.errors import SmartMeterError
from custom_components.smartmeter.core.framer import MAX_TELEGRAM, P1Framer
from custom_components.smartmeter.core.models import Frame, Integrity
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import MAX_FRAME, encrypt_frame, parse_key

FIXTURES = Path(__file__).parents[1] / "fixtures" / "p1"
EASYMETER = (FIXTURES / "de_easymeter_q3d_b1024_com1.txt").read_bytes()
TELEGRAMS = {
    path.stem: path.read_bytes()
    for path in sorted(FIXTURES.glob("*.txt"))
    if path.name != "de_easymeter_q3d_b1024_com1.txt"
}
WITH_CRC = {name: raw for name, raw in TELEGRAMS.items() if decode_telegram(raw).integrity is Integrity.VALID}
KEY = parse_key("D491470F47126332B07D1923B3504188")
ENCRYPTED = (FIXTURES / "lu_smarty_encrypted_frame.bin").read_bytes()
KAIFA = TELEGRAMS["nl_dsmr42_kaifa"]
AM550 = TELEGRAMS["nl_dsmr50_iskra_am550_two_mbus"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _feed_all(chunks: list[bytes], framer: P1Framer | None = None) -> list[bytes]:
    framer = framer or P1Framer()
    frames: list[bytes] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames


def _decoded(raw: bytes) -> Frame | None:
    """The decoded frame, or None when the bytes are refused (any SmartMeterError)."""
    try:
        return decode_telegram(raw, key=KEY)
    except SmartMeterError:
        return None


def _no_bad_values(frames: list[bytes], original: bytes) -> None:
    """Every frame is refused, INVALID, or carries exactly the original's values."""
    expected = decode_telegram(original).meters
    for raw in frames:
        frame = _decoded(raw)
        if frame is not None and frame.integrity is not Integrity.INVALID:
            assert frame.meters == expected, raw


# ---------------------------------------------------------------- clean streams


def test_stream_of_every_telegram() -> None:
    """Back-to-back real telegrams come out one frame each, byte for byte, nothing discarded."""
    framer = P1Framer()
    assert framer.feed(b"".join(TELEGRAMS.values())) == list(TELEGRAMS.values())
    assert framer.discarded == 0


@pytest.mark.parametrize("name", sorted(TELEGRAMS))
def test_split_at_every_byte_boundary(name: str) -> None:
    """Any split of a telegram into two reads gives the same single frame."""
    raw = TELEGRAMS[name]
    for cut in range(len(raw) + 1):
        framer = P1Framer()
        assert framer.feed(raw[:cut]) + framer.feed(raw[cut:]) == [raw], cut
        assert framer.discarded == 0


def test_one_byte_at_a_time() -> None:
    """Every telegram and an encrypted frame, fed a byte per read."""
    stream = [*TELEGRAMS.values(), ENCRYPTED]
    data = b"".join(stream)
    framer = P1Framer()
    assert _feed_all([data[i : i + 1] for i in range(len(data))], framer) == stream
    assert framer.discarded == 0


@FAST
@given(st.lists(st.integers(min_value=1, max_value=700), max_size=40))
def test_any_chunking(sizes: list[int]) -> None:
    """Reads of any sizes: the same frames."""
    stream = [KAIFA, ENCRYPTED, AM550, TELEGRAMS["nl_dsmr22_iskra_mt382"], KAIFA]
    data = b"".join(stream)
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    assert _feed_all(chunks) == stream


def test_mixed_encrypted_and_plain() -> None:
    """Encrypted and plain frames interleaved, each kind decoding."""
    encrypted_kaifa = encrypt_frame(KAIFA, KEY, frame_counter=9)
    stream = [KAIFA, ENCRYPTED, AM550, encrypted_kaifa, ENCRYPTED, KAIFA]
    frames = P1Framer().feed(b"".join(stream))
    assert frames == stream
    assert decode_telegram(frames[3], key=KEY).meters == decode_telegram(KAIFA).meters
    assert decode_telegram(frames[1], key=KEY).encrypted


# ---------------------------------------------------------------- damage


@FAST
@given(st.binary(max_size=300).filter(lambda data: b"\xdb" not in data))
def test_resync_after_garbage(garbage: bytes) -> None:
    """Line noise, then a line end: the next telegram comes out intact.

    Any frame the noise itself forms is refused or INVALID.
    """
    framer = P1Framer()
    frames = framer.feed(garbage + b"\r\n" + KAIFA)
    assert frames[-1:] == [KAIFA]
    for raw in frames[:-1]:
        frame = _decoded(raw)
        assert frame is None or frame.integrity is Integrity.INVALID
    assert framer.discarded + sum(map(len, frames)) == len(garbage) + 2 + len(KAIFA)


def test_resync_after_noise_posing_as_an_encrypted_frame() -> None:
    """A stray "DB 08" header swallows at most its stated length (< MAX_FRAME); resync follows."""
    fake = b"\xdb\x08" + b"SAG" + bytes(5) + b"\x82\x03\x00\x30" + b"noise"
    frames = _feed_all([fake, KAIFA, AM550, KAIFA, KAIFA, KAIFA])
    assert frames[-1] == KAIFA
    assert len(fake) + 0x300 < MAX_FRAME
    assert _decoded(frames[0]) is None  # the fake frame does not decrypt


@pytest.mark.parametrize(
    "name", ["nl_dsmr42_kaifa", "nl_dsmr22_iskra_mt382", "nl_dsmr50_warmtelink_unpadded_crc"]
)
def test_truncated_then_whole(name: str) -> None:
    """A telegram cut off anywhere, then a whole one: the whole one comes out.

    What the cut-off part forms is refused or INVALID, or (cut just before its
    line end) is the complete telegram.
    """
    raw = TELEGRAMS[name]
    for cut in range(1, len(raw)):
        frames = P1Framer().feed(raw[:cut] + AM550)
        assert frames[-1] == AM550, cut
        _no_bad_values(frames[:-1], raw)
        for extra in frames[:-1]:
            assert raw.startswith(extra), cut


def test_telegram_cut_in_half_by_a_reconnect() -> None:
    """The first half of one telegram joined to the second half of another: one INVALID frame, then resync."""
    first, second = KAIFA[: len(KAIFA) // 2], AM550[len(AM550) // 2 :]
    framer = P1Framer()
    frames = framer.feed(first + second + KAIFA)
    assert frames == [first + second, KAIFA]
    assert decode_telegram(frames[0]).integrity is Integrity.INVALID
    assert framer.discarded == 0


def test_gateway_junk_after_the_end() -> None:
    """The EasyMeter COM-1 gateway appends a counter and 0xFF padding after '!': dropped, counted."""
    telegram, junk = EASYMETER.split(b"!\r\n", 1)
    telegram += b"!\r\n"
    framer = P1Framer()
    frames = framer.feed(EASYMETER + EASYMETER + KAIFA)
    assert frames == [telegram, telegram, KAIFA]
    assert framer.discarded == 2 * len(junk)
    frame = decode_telegram(frames[0])
    assert frame.integrity is Integrity.ABSENT
    assert frame.main is not None
    assert frame.main.register("energy_import_total") is not None


def test_buffer_cap() -> None:
    """A start with no end never grows the buffer past MAX_TELEGRAM; the next telegram still comes out."""
    framer = P1Framer()
    for _ in range(40):
        assert framer.feed(b"/XYZ5 no end " + b"x" * 1000) == []
        assert len(framer._buf) <= MAX_TELEGRAM + 1013
    assert framer.discarded > 30 * 1000
    assert framer.feed(b"\r\n" + KAIFA) == [KAIFA]


def test_reset_forgets_a_partial_frame() -> None:
    """After a reconnect the half telegram is dropped and counted."""
    framer = P1Framer()
    assert framer.feed(KAIFA[:100]) == []
    framer.reset()
    assert framer.discarded == 100
    assert framer.feed(KAIFA[100:] + AM550) == [AM550]


# ---------------------------------------------------------------- bit flips


def test_every_single_bit_flip() -> None:
    """Each bit of a CRC-carrying telegram flipped in turn: never a frame with a bad value.

    The damaged telegram gives nothing, an INVALID frame, or (a flip in its
    line end) its own values; the telegram after it always comes out intact.
    """
    raw = TELEGRAMS["nl_dsmr50_warmtelink_unpadded_crc"]  # M-Bus heat, a 3-digit CRC
    for position in range(len(raw)):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[position] ^= 1 << bit
            frames = P1Framer().feed(bytes(damaged) + KAIFA)
            assert frames[-1] == KAIFA, (position, bit)
            _no_bad_values(frames[:-1], raw)


@FAST
@given(
    st.sampled_from(sorted(WITH_CRC)),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=3),
)
def test_bit_flips_never_give_a_bad_frame(name: str, flips: list[tuple[float, int]]) -> None:
    """One to three flipped bits anywhere (CRC16 catches every such error): INVALID or refused."""
    raw = WITH_CRC[name]
    damaged = bytearray(raw)
    for where, bit in flips:
        damaged[int(where * len(raw))] ^= 1 << bit
    frames = P1Framer().feed(bytes(damaged) + KAIFA)
    assert frames[-1:] == [KAIFA]
    _no_bad_values(frames[:-1], raw)
