"""CRC16/ARC (poly 0x8005 reflected, init 0), the checksum of DSMR P1 telegrams.

A byte-at-a-time table loop costs CPython about 20 ns a byte (15 us for a
typical 800-byte telegram). This module computes the same CRC with a handful of
big-integer operations instead, which run in C:

* A CRC is the remainder of a polynomial division over GF(2):
  ``crc = M(x) * x^16 mod P(x)``, where ``M`` is the message read bit by bit
  (least significant bit of each byte first, since ARC is "reflected") and
  ``P(x) = x^16 + x^15 + x^2 + 1``. Reversing the bits of every byte
  (``bytes.translate``) and reading the bytes big-endian turns the message into
  one Python int whose bit ``k`` is the coefficient of ``x^k``.
* ``P`` factors as ``(x + 1) * Q`` with ``Q(x) = x^15 + x + 1``, a trinomial,
  so the remainder is found modulo each factor and recombined (Chinese
  remainder theorem):

  - modulo ``x + 1`` the remainder is ``M(1)``, the parity of the message bits;
  - modulo ``Q`` we use ``x^15 = x + 1``, and by squaring (``(a + b)^2 = a^2 + b^2``
    over GF(2)) ``x^(15 * 2^j) = x^(2^j) + 1``. So the bits above position
    ``L = 15 * 2^j`` fold down with two shifts and XORs:
    ``h * x^L + l = h * x^(2^j) + h + l``. Folding with ``j`` from large to
    small halves the number's length each step: about 9 steps for a telegram.

  The unique ``R`` of degree < 16 with ``R = r (mod Q)`` and ``R(1) = parity``
  is ``r`` or ``r + Q`` (``Q(1) = 1``), and the CRC is ``R`` bit-reversed.

About 5 us for a typical telegram, three times faster than the table loop.
:func:`crc16_arc_reference` is the plain bitwise definition, for tests.
"""

from __future__ import annotations

_BITREV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_Q = (1 << 15) | 0b11  # x^15 + x + 1
# Masks of the low 15 * 2^j bits, precomputed for messages up to 7.5 KiB (15 KB in all).
_FOLD_MASKS = tuple((1 << (15 << j)) - 1 for j in range(13))


def crc16_arc(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC16/ARC of ``data``."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    rem = int.from_bytes(data.translate(_BITREV8), "big")
    parity = rem.bit_count() & 1
    rem <<= 16
    j = (rem.bit_length() // 15).bit_length() - 1
    while j >= 0:
        width = 15 << j
        high = rem >> width
        if high:
            shift = 1 << j
            mask = _FOLD_MASKS[j] if j < 13 else (1 << width) - 1
            while high:
                rem = (rem & mask) ^ high ^ (high << shift)
                high = rem >> width
        j -= 1
    if (rem.bit_count() & 1) != parity:
        rem ^= _Q
    return (_BITREV8[rem & 0xFF] << 8) | _BITREV8[rem >> 8]


def crc16_arc_reference(data: bytes | bytearray | memoryview) -> int:
    """CRC16/ARC computed bit by bit, straight from its definition (slow)."""
    crc = 0
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc
