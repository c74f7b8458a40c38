r"""Stream framer for P1 links: cuts a byte stream into whole frames.

It finds plain telegrams (``/`` ... ``!CRC\r\n``) and Smarty encrypted frames
(``DB 08`` ...), and resynchronises after garbage, a telegram cut in half, a
truncated frame or a link that starts mid-telegram. Whatever it throws away is
counted in ``discarded``; it never raises.

A plain telegram ends at a ``!`` that starts a line, followed by up to four CRC
hex digits and the line end (or, after four digits, directly the next
telegram); a ``!`` anywhere else, or one followed by anything else (a corrupted
byte, a cut-off CRC), is not an end. An
identification line (``/`` and three letters) inside a telegram means the one
before was cut off: scanning restarts there.
"""

from __future__ import annotations

import re

from .smarty import frame_length

MAX_TELEGRAM = 16384
# In a plain telegram: an end ("!" at a line start), a byte no telegram
# contains, or the identification line of a new telegram.
_SCAN = re.compile(rb"[\r\n]!|[\x80-\xff]|/[A-Za-z]{3}")
_START = re.compile(rb"/|\xdb\x08")
# After the "!": up to four CRC digits (and blanks), then the line end.
_CRC_DIGITS = re.compile(rb"[0-9A-Fa-f]{0,4}[ \t]*")
_CR, _LF, _SLASH, _GLO_CIPHER = 0x0D, 0x0A, 0x2F, 0xDB


class P1Framer:
    """Feed bytes in, get complete raw frames out."""

    __slots__ = ("_buf", "_scanned", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        # How far the current plain telegram has been scanned (no end in it yet).
        self._scanned = 1
        self.discarded = 0

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        self.discarded += len(self._buf)
        self._buf.clear()
        self._scanned = 1

    def _drop(self, count: int) -> None:
        self.discarded += count
        del self._buf[:count]
        self._scanned = 1

    def _take(self, count: int) -> bytes:
        frame = bytes(self._buf[:count])
        del self._buf[:count]
        self._scanned = 1
        return frame

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the frames they completed."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while buf:
            if buf[0] != _SLASH and buf[0] != _GLO_CIPHER:
                start = _START.search(buf)
                if start is None:
                    # keep a trailing 0xDB: it may begin an encrypted frame
                    self._drop(len(buf) - (1 if buf[-1] == _GLO_CIPHER else 0))
                    break
                self._drop(start.start())
            if buf[0] == _GLO_CIPHER:
                total = frame_length(buf)
                if total is None:
                    break  # not enough bytes to know the length yet
                if total < 0:
                    self._drop(1)  # not a frame start after all
                    continue
                if len(buf) < total:
                    break
                frames.append(self._take(total))
                continue
            end = self._plain_end(buf)
            if end is None:
                break
            if end > 0:
                frames.append(self._take(end))
        return frames

    def _plain_end(self, buf: bytearray) -> int | None:
        """Length of the complete plain telegram at the buffer's start.

        ``None`` while more bytes are needed, ``0`` when bytes were dropped
        (a cut-off telegram or garbage) and scanning should start over.
        """
        pos = self._scanned
        while True:
            match = _SCAN.search(buf, pos)
            if match is None:
                if len(buf) > MAX_TELEGRAM:
                    self._drop(len(buf))
                else:
                    self._scanned = max(1, len(buf) - 3)  # a token may straddle the next feed
                return None
            token = match.group()
            if token[0] == _SLASH:  # "/XYZ": a new telegram; the one before was cut off
                self._drop(match.start())
                return 0
            if token[-1] != 0x21:  # binary garbage: not a telegram
                self._drop(match.start())
                return 0
            bang = match.start() + 1
            digits = _CRC_DIGITS.match(buf, bang + 1)
            stop = digits.end() if digits else bang + 1
            size = len(buf)
            if stop == size or (buf[stop] == _CR and stop + 1 == size):
                self._scanned = match.start()  # wait for the rest of the CRC line
                return None
            if buf[stop] == _LF:
                return stop + 1
            if buf[stop] == _CR:
                return stop + 2 if buf[stop + 1] == _LF else stop + 1
            if buf[stop] == _SLASH and stop - bang == 5:
                return stop  # a complete CRC, and the next telegram without a line end
            pos = bang  # a "!" followed by something else: not the end
