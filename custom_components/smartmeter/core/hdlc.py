"""HDLC framing of DLMS/COSEM push meters (IEC 62056-46 / ISO 13239 frame format type 3).

A HAN port (Norway, Sweden, Austria...) pushes one frame every few seconds::

    7E | A<S><len:11> | dest addr | src addr | control | HCS:2 | information | FCS:2 | 7E

The 11-bit length counts every byte between the two flags. The addresses are
1, 2 or 4 bytes long, their last byte has bit 0 set. HCS and FCS are
CRC-16/X.25, least significant byte first; a frame without information has
no HCS. There is no byte stuffing on asynchronous links: the length, not the
flags, delimits a frame. A frame with the segmentation bit S set is followed
by the rest of the message in further frames; the last one has S clear.

:class:`HdlcFramer` cuts a byte stream into messages (one frame, or the frames
of a segmented message back to back), resynchronises after garbage and
counts what it throws away. Frames that fail their HCS or FCS are not dropped
silently: they are returned like any other (``checksum_errors`` counts them)
so the decoder reports them with :class:`~.errors.ChecksumError` or as a frame
with ``Integrity.INVALID``.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from .errors import ChecksumError, DecodeError

FLAG = 0x7E
FORMAT_TYPE = 0xA0  # high nibble of the first format byte
SEGMENTED = 0x08  # segmentation bit in the first format byte
MIN_LENGTH = 7  # format 2 + dest 1 + src 1 + control 1 + FCS 2
MAX_LENGTH = 0x7FF
MAX_MESSAGE = 65536  # reassembled segments
LLC_HEADERS = (b"\xe6\xe7\x00", b"\xe6\xe6\x00")

_BITREV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 (HDLC FCS): poly 0x1021 reflected, init and xorout 0xFFFF.

    ``binascii.crc_hqx`` computes the same polynomial unreflected (in C); the
    reflected CRC of a message is the bit-reversed unreflected CRC of the
    message with every byte bit-reversed.
    """
    crc = binascii.crc_hqx(bytes(data).translate(_BITREV8), 0xFFFF)
    return ((_BITREV8[crc & 0xFF] << 8) | _BITREV8[crc >> 8]) ^ 0xFFFF


def crc16_x25_reference(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 computed bit by bit from its definition (slow; for tests)."""
    crc = 0xFFFF
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def _address_end(buf: bytes | bytearray, pos: int, limit: int) -> int:
    """Index after the HDLC address starting at ``pos`` (1, 2 or 4 bytes), or -1."""
    for size in (1, 2, 3, 4):
        if pos + size > limit:
            return -1
        if buf[pos + size - 1] & 1:
            return pos + size if size != 3 else -1
    return -1


def header_length(buf: bytes | bytearray, start: int = 0) -> int:
    """Bytes from the opening flag to the end of the control field, or -1.

    -1 when the addresses are malformed or not all in ``buf`` yet.
    """
    limit = len(buf)
    dest_end = _address_end(buf, start + 3, limit)
    if dest_end < 0:
        return -1
    src_end = _address_end(buf, dest_end, limit)
    if src_end < 0 or src_end >= limit:
        return -1
    return src_end + 1 - start  # + control byte


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One HDLC frame, parsed and checked."""

    segmented: bool
    destination: bytes
    source: bytes
    control: int
    information: bytes
    hcs_valid: bool | None  # None: no information field, so no HCS
    fcs_valid: bool
    closed: bool  # the closing flag is where the length says

    @property
    def valid(self) -> bool:
        """Both check sequences match and the frame is closed by a flag."""
        return self.fcs_valid and self.hcs_valid is not False and self.closed


def parse_frame(raw: bytes | bytearray, start: int = 0) -> tuple[HdlcFrame, int]:
    """Parse the HDLC frame at ``raw[start]`` (the opening flag).

    Returns the frame and the index after it (after the closing flag, or after
    the stated length when the flag is missing). Raises :class:`DecodeError`
    when the bytes cannot be an HDLC frame or are truncated.
    """
    size = len(raw)
    if size - start < 3 or raw[start] != FLAG or raw[start + 1] & 0xF0 != FORMAT_TYPE:
        raise DecodeError("not an HDLC frame (no 7E flag and frame format type 3)")
    length = ((raw[start + 1] & 0x07) << 8) | raw[start + 2]
    if length < MIN_LENGTH:
        raise DecodeError(f"HDLC frame length {length} is too short")
    end = start + 1 + length  # index of the closing flag
    if end >= size:
        raise DecodeError(f"truncated HDLC frame: {size - start} of {length + 2} bytes")
    head = header_length(raw, start)
    if head < 0 or start + head > end - 2:
        raise DecodeError("malformed HDLC address field")
    hdr_end = start + head
    dest = bytes(raw[start + 3 : start + 3 + _addr_len(raw, start + 3)])
    src = bytes(raw[start + 3 + len(dest) : hdr_end - 1])
    control = raw[hdr_end - 1]
    fcs_valid = crc16_x25(raw[start + 1 : end - 2]) == (raw[end - 2] | (raw[end - 1] << 8))
    hcs_valid: bool | None
    if end - 2 > hdr_end:
        if end - 2 < hdr_end + 2:
            raise DecodeError("HDLC frame too short for its header check sequence")
        hcs_valid = crc16_x25(raw[start + 1 : hdr_end]) == (raw[hdr_end] | (raw[hdr_end + 1] << 8))
        information = bytes(raw[hdr_end + 2 : end - 2])
    else:
        hcs_valid = None
        information = b""
    closed = end < size and raw[end] == FLAG
    frame = HdlcFrame(
        segmented=bool(raw[start + 1] & SEGMENTED),
        destination=dest,
        source=src,
        control=control,
        information=information,
        hcs_valid=hcs_valid,
        fcs_valid=fcs_valid,
        closed=closed,
    )
    return frame, end + 1 if closed else end


def _addr_len(buf: bytes | bytearray, pos: int) -> int:
    return _address_end(buf, pos, len(buf)) - pos


def parse_frames(raw: bytes) -> list[HdlcFrame]:
    """Parse one HDLC frame or several back to back (a segmented message).

    Frames may share a flag (``7E ... 7E ... 7E``) or each have their own
    (``7E ... 7E7E ... 7E``).
    """
    frames: list[HdlcFrame] = []
    pos = 0
    size = len(raw)
    while pos < size:
        if raw[pos] != FLAG:
            if frames and frames[-1].closed:
                pos -= 1  # the previous closing flag opens this frame
            else:
                raise DecodeError(f"unexpected byte 0x{raw[pos]:02X} after an HDLC frame")
        while pos + 1 < size and raw[pos + 1] == FLAG:
            pos += 1  # inter-frame fill flags
        if pos + 1 >= size:
            break
        frame, pos = parse_frame(raw, pos)
        frames.append(frame)
        if not frame.closed:
            break  # no closing flag: the rest cannot be delimited
    if not frames:
        raise DecodeError("no HDLC frame in the data")
    return frames


def check_frames(frames: list[HdlcFrame]) -> tuple[bytes, bool]:
    """Reassemble a message's information fields; return it and the FCS verdict.

    Raises :class:`ChecksumError` when a header check sequence fails (the
    addresses and length cannot be trusted then) and :class:`DecodeError`
    when the segments do not form one message.
    """
    for index, frame in enumerate(frames):
        if frame.hcs_valid is False:
            raise ChecksumError(f"HDLC header check sequence (HCS) mismatch in frame {index + 1}")
        if frame.segmented == (index == len(frames) - 1):
            if frame.segmented:
                raise DecodeError("segmented HDLC message without its last segment")
            raise DecodeError("HDLC frame without segmentation bit before the last segment")
    valid = all(frame.fcs_valid and frame.closed for frame in frames)
    return b"".join(frame.information for frame in frames), valid


class HdlcFramer:
    """Feed bytes in, get whole HDLC messages out.

    A message is one frame, or the frames of a segmented message back to back
    (each with its flags), ready for :func:`parse_frames`. ``discarded``
    counts bytes that belonged to no frame (fill flags between frames are not
    counted), ``checksum_errors`` the frames returned with a bad HCS or FCS.
    """

    __slots__ = ("_buf", "_kept", "_segments", "checksum_errors", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._segments: list[bytes] = []
        self._kept = False  # buf[0] is the closing flag of the last frame
        self.discarded = 0
        self.checksum_errors = 0

    def reset(self) -> None:
        """Forget a partial frame or message (after a reconnect)."""
        self.discarded += self.pending
        self._buf.clear()
        self._segments.clear()
        self._kept = False

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame or message (fill flags excluded)."""
        held = len(self._buf) if self._buf.strip(b"\x7e") else 0
        return held + sum(len(s) for s in self._segments)

    def _drop(self, count: int) -> None:
        # a kept closing flag is not garbage, even when no frame follows it
        self.discarded += count - 1 if self._kept else count
        self._kept = False
        del self._buf[:count]

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the messages they completed."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            size = len(buf)
            if not size:
                break
            if buf[0] != FLAG:
                start = buf.find(FLAG)
                if start < 0:
                    self._drop(size)
                    break
                self._drop(start)
                continue
            # skip fill flags: keep the last one as this frame's opening flag
            flags = 1
            while flags < size and buf[flags] == FLAG:
                flags += 1
            if flags > 1:
                del buf[: flags - 1]
                size = len(buf)
                self._kept = False
            if size < 3:
                break
            if buf[1] & 0xF0 != FORMAT_TYPE:
                self._drop(1)
                continue
            length = ((buf[1] & 0x07) << 8) | buf[2]
            if length < MIN_LENGTH:
                self._drop(1)
                continue
            head = header_length(buf)
            if head < 0:
                if size >= 13 or size > length + 1:  # longest header in: malformed addresses
                    self._drop(1)
                    continue
                break
            if head > length - 1:
                self._drop(1)
                continue
            end = length + 1  # index of the closing flag
            if head + 2 <= end - 2 and size >= head + 2:
                hcs_ok = crc16_x25(buf[1:head]) == (buf[head] | (buf[head + 1] << 8))
                if not hcs_ok and self._next_start(1, min(size, end)) > 0:
                    # a bad header, and a good one inside its stated length: noise
                    self._drop(1)
                    continue
            if size <= end:
                break
            if buf[end] != FLAG:
                broken = self._unclosed(end, head)
                if broken is not None:
                    out.append(broken)
                continue
            frame = bytes(buf[: end + 1])
            del buf[:end]  # the closing flag may open the next frame
            self._kept = True
            self._complete(frame, head, out)
        return out

    def _unclosed(self, end: int, head: int) -> bytes | None:
        """No flag where the length says the frame ends.

        With a valid HCS the header is real: the frame lost its end or was cut
        short by the next frame. It is returned (up to the next frame start)
        so the decoder reports it; otherwise the flag was noise and is dropped.
        """
        buf = self._buf
        if head + 2 <= end - 2 and crc16_x25(buf[1:head]) == (buf[head] | (buf[head + 1] << 8)):
            nxt = self._next_start(1, end)
            stop = nxt if nxt > 0 else end
            self.checksum_errors += 1
            if self._segments:
                self.discarded += sum(len(s) for s in self._segments)
                self._segments.clear()
            frame = bytes(buf[:stop])
            del buf[:stop]
            self._kept = False
            return frame
        self._drop(1)
        return None

    def _next_start(self, first: int, stop: int) -> int:
        """Index of a frame start with a valid HCS in ``buf[first:stop]``, or -1."""
        buf = self._buf
        pos = buf.find(FLAG, first, stop)
        while pos >= 0:
            if pos + 2 < len(buf) and buf[pos + 1] & 0xF0 == FORMAT_TYPE:
                head = header_length(buf, pos)
                if head > 0 and pos + head + 2 <= len(buf):
                    hcs = buf[pos + head] | (buf[pos + head + 1] << 8)
                    if crc16_x25(buf[pos + 1 : pos + head]) == hcs:
                        return pos
            pos = buf.find(FLAG, pos + 1, stop)
        return -1

    def _complete(self, frame: bytes, head: int, out: list[bytes]) -> None:
        """A closed frame: check it, and reassemble segmented messages."""
        end = len(frame) - 1
        fcs_ok = crc16_x25(frame[1 : end - 2]) == (frame[end - 2] | (frame[end - 1] << 8))
        hcs_ok = True
        if end - 2 > head:
            hcs_ok = end - 2 >= head + 2 and crc16_x25(frame[1:head]) == (
                frame[head] | (frame[head + 1] << 8)
            )
        if not (fcs_ok and hcs_ok):
            self.checksum_errors += 1
        segments = self._segments
        if segments:
            info = frame[head + 2 : head + 5]
            if frame[3 : head - 1] != segments[0][3 : header_length(segments[0]) - 1] or info in LLC_HEADERS:
                # another sender, or a new message: the earlier segments are orphans
                self.discarded += sum(len(s) for s in segments)
                segments.clear()
        if frame[1] & SEGMENTED:
            if sum(len(s) for s in segments) + len(frame) > MAX_MESSAGE:
                self.discarded += sum(len(s) for s in segments)
                segments.clear()
            segments.append(frame)
            return
        if segments:
            segments.append(frame)
            out.append(b"".join(segments))
            segments.clear()
        else:
            out.append(frame)
