"""CRC16/ARC (poly 0x8005 reflected, init 0), the checksum of DSMR P1 telegrams.

Pure Python, two bytes per step: for a 16-bit CRC the state after one 16-bit
little-endian word ``w`` is ``T[state ^ w]``, where ``T`` advances a state over
16 zero bits. ``T`` is a list (its ints are shared objects, so a lookup
allocates nothing), built on first use. About 20 ns a byte on CPython 3.13.
"""

from __future__ import annotations

import sys
from array import array


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_T8 = _byte_table()
_T16: list[int] = []


def _word_table() -> list[int]:
    if not _T16:
        t8 = _T8
        for x in range(65536):
            c = (x >> 8) ^ t8[x & 0xFF]
            _T16.append((c >> 8) ^ t8[c & 0xFF])
    return _T16


def crc16_arc(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC16/ARC of ``data``."""
    table = _T16 or _word_table()
    n = len(data)
    words = array("H", bytes(data[: n & ~1]))
    if sys.byteorder == "big":  # pragma: no cover - x86 and ARM hosts are little-endian
        words.byteswap()
    crc = 0
    for word in words.tolist():
        crc = table[crc ^ word]
    if n & 1:
        crc = (crc >> 8) ^ _T8[(crc ^ data[n - 1]) & 0xFF]
    return crc
