"""Fuzzing the P1 decoder and framer with hypothesis.

Random, truncated and bit-flipped input never makes ``decode_telegram`` raise
anything but a :class:`SmartMeterError`, never makes the framer raise at all,
and never turns a telegram whose CRC does not check out into a VALID frame. The
CRC oracle here is independent of the decoder: the bitwise CRC definition over
the bytes from ``/`` to the ``!`` line, against the digits on that line.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.crc import crc16_arc_reference
from custom_components.smartmeter.core.errors import DecodeError, SmartMeterError
from custom_components.smartmeter.core.framer import P1Framer
from custom_components.smartmeter.core.models import Frame, Integrity
from custom_components.smartmeter.core.obis import MAIN_REGISTERS
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import encrypt_frame, parse_key

FIXTURES = Path(__file__).parents[1] / "fixtures" / "p1"
TELEGRAMS = [path.read_bytes() for path in sorted(FIXTURES.glob("*.txt"))]
KEY = parse_key("D491470F47126332B07D1923B3504188")
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
_END_LINE = re.compile(rb"[\r\n]!([0-9A-Fa-f]{1,4})[ \t]*(?:\r\n|\r|\n|$)")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _decode(raw: bytes, key: bytes | None = None) -> Frame | None:
    """Decode; a SmartMeterError is an accepted outcome (None), anything else fails the test."""
    try:
        frame = decode_telegram(raw, key=key)
    except SmartMeterError:
        return None
    _check_types(frame)
    return frame


def _check_types(frame: Frame) -> None:
    """Whatever is decoded has the model's types; numbers are finite."""
    assert frame.meters
    for meter in frame.meters:
        assert isinstance(meter.id, str)
        assert meter.id
        for reg in meter.registers:
            assert isinstance(reg.value, Decimal | int | str | datetime | type(None))
            if isinstance(reg.value, Decimal):
                assert reg.value.is_finite()
            assert reg.unit is None or isinstance(reg.unit, str)
            for entry in reg.history:
                assert entry.value is None or entry.value.is_finite()


def _crc_checks_out(raw: bytes) -> bool:
    """Independent oracle: the last "!" line's digits equal the CRC over "/" .. "!"."""
    ends = list(_END_LINE.finditer(raw))
    start = raw.find(b"/")
    if not ends or start < 0:
        return False
    end = ends[-1]
    bang = end.start() + 1
    return start < bang and int(end.group(1), 16) == crc16_arc_reference(raw[start : bang + 1])


def _not_valid_unless_crc_checks_out(raw: bytes, frame: Frame | None) -> None:
    if frame is not None and frame.integrity is Integrity.VALID:
        assert _crc_checks_out(frame.raw), raw


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    """Any bytes: a frame or a SmartMeterError, never VALID without a matching CRC."""
    _not_valid_unless_crc_checks_out(data, _decode(data))
    _decode(b"\xdb\x08" + data, key=KEY)  # as an encrypted frame


@FUZZ
@given(st.sampled_from(TELEGRAMS), st.integers(min_value=0), st.integers(min_value=0))
def test_truncated_telegrams(raw: bytes, start: int, stop: int) -> None:
    """Any slice of a real telegram."""
    start, stop = sorted((start % (len(raw) + 1), stop % (len(raw) + 1)))
    piece = raw[start:stop]
    _not_valid_unless_crc_checks_out(piece, _decode(piece))


@FUZZ
@given(
    st.sampled_from(TELEGRAMS),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8),
)
def test_corrupted_telegrams(raw: bytes, changes: list[tuple[float, int]]) -> None:
    """Bytes of a real telegram XORed with anything: never VALID unless the CRC still checks out."""
    damaged = bytearray(raw)
    for where, mask in changes:
        damaged[int(where * len(raw))] ^= mask
    frame = _decode(bytes(damaged))
    _not_valid_unless_crc_checks_out(bytes(damaged), frame)
    changed = sum(a != b for a, b in zip(damaged, raw, strict=True))
    # CRC16 catches any error within one byte, so such a telegram is never VALID
    # with other values. Several damaged bytes can collide with the CRC (1 in
    # 65,536): VALID then only says the CRC checks out, which is asserted above.
    if frame is not None and frame.integrity is Integrity.VALID and changed <= 1:
        assert frame.meters == decode_telegram(raw).meters


@FUZZ
@given(st.binary(min_size=1, max_size=1500), st.integers(0, 200))
def test_corrupted_encrypted_frames(noise: bytes, where: int) -> None:
    """An encrypted real telegram with bytes overwritten: refused, never a frame with other values."""
    frame = bytearray(encrypt_frame(TELEGRAMS[3], KEY))
    position = where % len(frame)
    frame[position : position + len(noise)] = noise[: len(frame) - position]
    decoded = _decode(bytes(frame), key=KEY)
    if decoded is not None:
        assert decoded.meters == decode_telegram(TELEGRAMS[3]).meters


# A telegram grammar: known and unknown OBIS codes with arbitrary value groups.
_CODES = st.sampled_from(
    [*MAIN_REGISTERS, "0-1:24.2.1", "0-2:96.1.0", "0-1:24.1.0", "7-0:23.1.0*255"]
) | st.from_regex(r"[0-9]{1,2}-[0-9]{1,2}:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)
_GROUP = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=20) | st.from_regex(
    r"[-+]?[0-9]{1,6}(\.[0-9]{1,4})?(\*[A-Za-z0-9]{0,5})?|[0-9]{12}[SWX]?|\(?[0-9A-F]{0,40}", fullmatch=True
)
_LINE = st.builds(
    lambda code, groups: code + "".join(f"({group})" for group in groups),
    _CODES,
    st.lists(_GROUP, min_size=1, max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(r"[A-Za-z]{3}[0-9][ -.0-~]{0,20}", fullmatch=True), st.lists(_LINE, max_size=15))
def test_generated_telegrams(header: str, lines: list[str]) -> None:
    """Well-formed telegrams of arbitrary lines, with a correct CRC: decoded VALID, sane types."""
    body = ("/" + header + "\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!").encode("latin-1")
    raw = body + f"{crc16_arc_reference(body):04X}\r\n".encode()
    frame = _decode(raw)
    assert frame is not None
    assert frame.integrity is Integrity.VALID
    assert frame.header == header.strip()
    if raw.isascii():  # a byte above 0x7F is line noise to the framer
        assert P1Framer().feed(raw) == [raw]


@FUZZ
@given(st.lists(st.binary(max_size=400) | st.sampled_from(TELEGRAMS), max_size=12), st.integers(1, 600))
def test_framer_never_raises_and_loses_no_byte(parts: list[bytes], chunk: int) -> None:
    """Any stream in any chunks: no exception; every byte is in a frame, discarded or still buffered."""
    data = b"".join(parts)
    framer = P1Framer()
    frames: list[bytes] = []
    for pos in range(0, len(data), chunk):
        frames += framer.feed(data[pos : pos + chunk])
    assert framer.discarded + sum(map(len, frames)) + len(framer._buf) == len(data)
    for raw in frames:
        assert raw in data
        _not_valid_unless_crc_checks_out(raw, _decode(raw, key=KEY))


def test_damaged_header_is_no_meter() -> None:
    """Regression (hypothesis): a telegram whose "/" was damaged and whose data holds a bare "/" is no meter."""
    with pytest.raises(DecodeError, match="no meter identification"):
        decode_telegram(b"junk/\r\n\r\n1-0:1.8.0(00000896.020*kWh)\r\n!")
