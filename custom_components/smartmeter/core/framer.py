r"""Stream framer for P1 links: cuts a byte stream into whole frames.

It finds plain telegrams (``/`` ... ``!CRC\r\n``) and Smarty encrypted frames
(``DB 08`` ...), and resynchronises after garbage, a telegram cut in half, a
truncated frame or a link that starts mid-telegram. Whatever it throws away is
counted in ``discarded``; it never raises.

A plain telegram ends at the line end after its ``!`` and up to four CRC hex
digits. With all four digits in, the frame is complete: it is returned at once
rather than when the line end arrives (some meters send none), and the line end
that follows is then skipped without counting it as discarded.
"""

from __future__ import annotations

import re

from .smarty import frame_length

MAX_TELEGRAM = 16384
# In a plain telegram: its end '!', a byte no telegram contains, or a new start.
_SCAN = re.compile(rb"[!\x80-\xff]|\n/")
_START = re.compile(rb"/|\xdb\x08")
_HEXDIGITS = b"0123456789abcdefABCDEF"
_CR, _LF, _GLO_CIPHER = 0x0D, 0x0A, 0xDB


class P1Framer:
    """Feed bytes in, get complete raw frames out."""

    __slots__ = ("_buf", "_scanned", "_skip_eol", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        # How far the current plain telegram has been scanned (no end in it yet).
        self._scanned = 1
        # A frame just ended at its last CRC digit: its CR LF may follow.
        self._skip_eol = False
        self.discarded = 0

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        self.discarded += len(self._buf)
        self._buf.clear()
        self._scanned = 1
        self._skip_eol = False

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
            if self._skip_eol:
                if buf[0] == _CR or buf[0] == _LF:
                    del buf[0]
                    continue
                self._skip_eol = False
            if buf[0] != 0x2F and buf[0] != _GLO_CIPHER:  # not at a '/' or 0xDB
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
        match = _SCAN.search(buf, self._scanned)
        if match is None:
            if len(buf) > MAX_TELEGRAM:
                self._drop(len(buf))
            else:
                self._scanned = max(1, len(buf) - 1)  # "\n/" may straddle the next feed
            return None
        token = match.group()
        if token == b"\n/":
            self._drop(match.start() + 1)  # cut-off telegram: restart at the new '/'
            return 0
        if token != b"!":
            self._drop(match.start())  # binary garbage: not a telegram
            return 0
        bang = match.start()
        end = bang + 1
        size = len(buf)
        while end < size and end - bang <= 4 and buf[end] in _HEXDIGITS:
            end += 1
        if end - bang == 5:  # "!" and four CRC digits: complete, with what is here of its CR LF
            if end < size and buf[end] == _CR:
                end += 1
            if end < size and buf[end] == _LF:
                end += 1
            self._skip_eol = buf[end - 1] != _LF
            return end
        self._scanned = bang  # the end is known; wait for the rest of its line
        if end == size:
            return None  # more CRC digits or the line end may follow
        if buf[end] == _CR:
            if end + 1 == size:
                return None
            end += 1
        if buf[end] == _LF:
            end += 1
        return end
