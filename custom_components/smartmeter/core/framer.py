"""Stream framer for P1 links: cuts a byte stream into whole frames.

It finds plain telegrams (``/`` ... ``!CRC\\r\\n``) and Smarty encrypted frames
(``DB 08`` ...), and resynchronises after garbage, a telegram cut in half, a
truncated frame or a link that starts mid-telegram. Whatever it throws away is
counted in ``discarded``; it never raises.
"""

from __future__ import annotations

import re

from .smarty import frame_length

MAX_TELEGRAM = 16384
# In a plain telegram: its end '!', a byte no telegram contains, or a new start.
_SCAN = re.compile(rb"[!\x80-\xff]|\n/")
_START = re.compile(rb"/|\xdb\x08")
_HEXDIGITS = b"0123456789abcdefABCDEF"


class P1Framer:
    """Feed bytes in, get complete raw frames out."""

    __slots__ = ("_buf", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        self.discarded += len(self._buf)
        self._buf.clear()

    def _drop(self, count: int) -> None:
        self.discarded += count
        del self._buf[:count]

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they completed."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while buf:
            start = _START.search(buf)
            if start is None:
                # keep a trailing 0xDB: it may begin an encrypted frame
                keep = 1 if buf[-1] == 0xDB else 0
                self._drop(len(buf) - keep)
                break
            if start.start():
                self._drop(start.start())
            if buf[0] == 0xDB:
                total = frame_length(buf)
                if total is None:
                    break
                if total < 0:
                    self._drop(1)
                    continue
                if len(buf) < total:
                    break
                frames.append(bytes(buf[:total]))
                del buf[:total]
                continue
            match = _SCAN.search(buf, 1)
            if match is None:
                if len(buf) > MAX_TELEGRAM:
                    self._drop(len(buf))
                break
            token = match.group()
            if token == b"\n/":
                self._drop(match.start() + 1)  # cut-off telegram: restart at '/'
                continue
            if token != b"!":
                self._drop(match.start())  # binary garbage: not a telegram
                continue
            bang = match.start()
            end = bang + 1
            size = len(buf)
            while end < size and end - bang <= 4 and buf[end] in _HEXDIGITS:
                end += 1
            if end == size:
                break  # more CRC digits or the line end may follow
            if buf[end] == 0x0D:
                if end + 1 == size:
                    break
                end += 1
            if buf[end] == 0x0A:
                end += 1
            frames.append(bytes(buf[:end]))
            del buf[:end]
        return frames
