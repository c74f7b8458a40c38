"""CRC16/ARC: the fast big-integer computation equals the bitwise definition."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from custom_components.smartmeter.core.crc import crc16_arc, crc16_arc_reference

FIXTURES = Path(__file__).parents[1] / "fixtures" / "p1"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def test_check_value() -> None:
    """The catalogue check value of CRC-16/ARC."""
    assert crc16_arc(b"123456789") == crc16_arc_reference(b"123456789") == 0xBB3D
    assert crc16_arc(b"") == 0


@pytest.mark.parametrize("size", [*range(40), 255, 256, 479, 480, 481, 959, 960, 961, 7679, 7680, 20000])
def test_every_length(size: int) -> None:
    """Lengths around the folding steps (15 * 2^j bits) and past the precomputed masks."""
    data = bytes((i * 131 + size) & 0xFF for i in range(size))
    assert crc16_arc(data) == crc16_arc_reference(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_data(data: bytes) -> None:
    """Any bytes, as bytes, bytearray or memoryview."""
    expected = crc16_arc_reference(data)
    assert crc16_arc(data) == expected
    assert crc16_arc(bytearray(data)) == expected
    assert crc16_arc(memoryview(data)) == expected


@pytest.mark.parametrize(
    "path", sorted(p for p in FIXTURES.glob("*.txt") if b"\n!" in p.read_bytes()), ids=lambda p: p.stem
)
def test_real_telegrams(path: Path) -> None:
    """The CRC over '/' .. '!' of every real telegram that carries a valid one is what it states."""
    raw = path.read_bytes()
    bang = raw.rindex(b"\n!") + 1
    stated = raw[bang + 1 :].split(b"\r")[0]
    body = raw[raw.index(b"/") : bang + 1]
    assert crc16_arc(body) == crc16_arc_reference(body)
    if stated and path.stem != "lu_smarty_sagemcom_long_decrypted":
        assert crc16_arc(body) == int(stated, 16)
