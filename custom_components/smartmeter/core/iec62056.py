r"""IEC 62056-21 (ex IEC 61107, "D0"): mode D push telegrams and mode A/B/C readouts.

Three pieces:

* :func:`decode_iec` decodes one message: a mode D push telegram
  (``/XXXZident`` CR LF, data lines, ``!`` CR LF; EasyMeter Q3D, EMH eHZ) or a
  readout (identification line, then the data message STX ... ``!`` CR LF ETX
  BCC; the BCC, the XOR of every byte after STX up to and including ETX, is
  checked). Data sets are ``address(value*unit)``, full OBIS codes
  (``1-0:1.8.0*255``) or the reduced codes of older meters (``1.8.1``,
  ``C.1.0``, ``F.F``, ``6.8*01``), one a line or several on one line, a data
  set with more values (``(value)(timestamp)``) or ``&``-separated values
  (``(088*C&082*C)``, Landis+Gyr/Siemens heat meters).
* :class:`IecFramer` cuts a byte stream (a push line, or the meter's side of a
  readout) into messages and resynchronises after garbage.
* :func:`read_mode_c` runs a readout over any link with ``write``/``read`` and
  a baud-rate switch (a ``serialx.AsyncSerial`` opened at 300 baud 7E1 works
  as it is): sign-on request, identification, acknowledgement/option select
  with the baud rate, baud-rate switch, data message.

Reduced codes carry no value groups A and B: A is the meter's medium (1,
electricity, unless the caller says otherwise or the data says heat meter:
energy and volume units), B is 0, missing D or E are 0. A value group F other
than 255 (``*01``: the value at the end of billing period 1) is kept in the
OBIS code (``6-0:6.8.0*1``) and its key gets ``_billing_1``. Register keys are
those of the P1 decoder (:mod:`.obis`) so the same OBIS code makes the same
entity whatever the protocol.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import serialx

from .crc import crc16_arc
from .errors import ChecksumError, ConnectionFailedError, DecodeError, NoTelegramError
from .models import Frame, HistoryEntry, Integrity, Medium, Meter, Register, RegisterValue
from .obis import MAIN_REGISTERS, OBIS_A_MEDIUM, Kind, generic_key
from .p1 import _decode_hex_id, _number, _parse_value, _reg, parse_timestamp

PROTOCOL = "iec62056-21"
DEFAULT_TZ = ZoneInfo("Europe/Berlin")

STX, ETX, ACK = 0x02, 0x03, 0x06
MAX_MESSAGE = 65536  # a readout with a load profile can be long; beyond this it is garbage
MAX_IDENT = 48  # "/XXXZ\W" + 16 identification characters, with room for sloppy meters

# Baud-rate character of the identification message (IEC 62056-21 6.3.14).
BAUD_MODE_B: dict[str, int] = {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}
BAUD_MODE_C: dict[str, int] = {
    "0": 300,
    "1": 600,
    "2": 1200,
    "3": 2400,
    "4": 4800,
    "5": 9600,
    "6": 19200,
}
INITIAL_BAUD = 300

# ---------------------------------------------------------------- patterns

# Identification line: "/", three manufacturer letters, the baud-rate character
# and the identification (printable ASCII but "/" and "!"), then the line end.
_ID_CHARS = rb'[ "-.0-~]'
_IDENT = re.compile(rb"/[A-Za-z]{3}" + _ID_CHARS + rb"{1,%d}\r?\n" % (MAX_IDENT - 4))
# What a cut-off identification line may look like so far.
_IDENT_PREFIX = re.compile(rb"/[A-Za-z]{0,3}" + _ID_CHARS + rb"{0,%d}\r?" % (MAX_IDENT - 4))
_IDENT_TEXT = re.compile(r"/?([A-Za-z]{3})([^/!\r\n])(?:\\(.))?([^/!\r\n]*)\r?\n?")
# Where a message may start: an identification line or a bare data message.
_START = re.compile(rb"/[A-Za-z]{3}|\x02")
# Between the identification and the STX: line ends and an echoed acknowledgement.
_GAP = re.compile(rb"(?:\r|\n|\x06[0-9][0-9A-Z][0-9]\r\n)*")
# Inside a push telegram: its end, the start of the next one, a byte no telegram has.
_PUSH_SCAN = re.compile(rb"!|/[A-Za-z]{3}|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
_PUSH_END = re.compile(rb"!(?:[0-9A-Fa-f]{4})?(?:\r\n|\n|\r(?=[^\n]))")
_PUSH_END_PREFIX = re.compile(rb"![0-9A-Fa-f]{0,4}\r?")
# Inside a data message: "!", ETX, the next identification, a byte no message has.
_BLOCK_SCAN = re.compile(rb"[!\x03]|/[A-Za-z]{3}|[\x00-\x02\x04-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
_BLOCK_TAIL = re.compile(rb"!(\r?\n?)(\x03?)")
# One data set: address (may be empty: one more value of the previous address) and value.
_DATASET = re.compile(r"([^()\r\n]*)\(([^()\r\n]*)\)")
# Address: full "A-B:C.D.E*F" or reduced "C.D.E*F", "C.D", "C" (C, F, L, P = 96..99;
# a letter stands alone: "C2" or "6F8" is no group).
_ADDRESS = re.compile(
    r"(?:(\d{1,3})-(\d{1,3}):)?(\d{1,3}|[CFLP])(?:\.(\d{1,3}|[CFLP]))?(?:\.(\d{1,3}))?(?:[*&](\d{1,3}))?"
)
_LETTER_GROUP = {"C": 96, "F": 97, "L": 98, "P": 99}
# "(0123ABCD)" after "!" in a push telegram: a CRC16 (Swedish/Dutch mode D flavour).
_CRC_AFTER_BANG = re.compile(rb"([0-9A-Fa-f]{4})\r?\n")
_SHORT_CODE_LINE = re.compile(
    rb"(?:^|[\n)])[0-9CFLP]{1,3}\.[0-9CFLP]{1,3}(?:\.[0-9]{1,3})?(?:\*[0-9]{1,3})?\("
)
_STX_AT_LINE_START = re.compile(rb"(?:\A|\n)\x02")
_FULL_CODE = re.compile(rb"(?:^|\n)(\d{1,3})-(\d{1,3}):")
_DSMR_MARKERS = (b"1-3:0.2.8(", b"0-0:1.0.0(", b"0-0:96.1.1(", b"0-0:96.14.0(", b":24.1.0(")
_ENERGY_UNITS = frozenset({"Wh", "kWh", "MWh", "GWh", "J", "kJ", "MJ", "GJ"})
_VOLUME_UNITS = frozenset({"m3", "l", "m3ph", "m3/h", "l/h"})
_DATE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[& T](\d{2}):(\d{2})(?::(\d{2}))?")
_MEDIUM_A: dict[Medium, int] = {medium: a for a, medium in OBIS_A_MEDIUM.items()}
_MEDIUM_A[Medium.UNKNOWN] = 0

# Registers IEC meters send that the P1 table does not have (reduced codes of
# general objects, heat meters). Looked up before obis.MAIN_REGISTERS.
_IEC_REGISTERS: dict[str, tuple[str, Kind]] = {}
for _a in (0, 1, 5, 6, 7, 8, 9):
    _IEC_REGISTERS[f"{_a}-0:0.0.0"] = ("meter_id", Kind.TEXT)  # device address / customer number
    _IEC_REGISTERS[f"{_a}-0:96.1.0"] = ("meter_serial", Kind.TEXT)  # C.1.0
    _IEC_REGISTERS[f"{_a}-0:97.97.0"] = ("error_register", Kind.TEXT)  # F.F
    _IEC_REGISTERS[f"{_a}-0:0.2.0"] = ("firmware_version", Kind.TEXT)
    _IEC_REGISTERS[f"{_a}-0:0.9.1"] = ("meter_time", Kind.TEXT)  # hhmmss
    _IEC_REGISTERS[f"{_a}-0:0.9.2"] = ("meter_date", Kind.TEXT)  # YYMMDD
_IEC_REGISTERS["6-0:6.8.0"] = ("heat", Kind.NUMBER)  # heat energy (Landis+Gyr/Siemens Ultraheat, WR5)
_IEC_REGISTERS["6-0:6.26.0"] = ("heat_volume", Kind.NUMBER)  # volume through the heat meter

_NUMBER_KINDS = frozenset({Kind.NUMBER, Kind.AUTO})
_ID_KEYS = ("equipment_id", "meter_serial", "serial_number", "logical_device_name", "meter_id")

# ---------------------------------------------------------------- identification


@dataclass(frozen=True, slots=True)
class Identification:
    r"""The identification message ``/XXXZ\Wident``.

    ``mode`` is "A" (no baud-rate switch), "B" (switch without
    acknowledgement), "C" (switch after the acknowledgement; also what mode D
    push meters send) or "E" (mode C with the ``\W`` enhanced-capability
    sequence, ``enhanced`` is W: "2" = HDLC/DLMS available). ``baudrate`` is
    the rate the meter offers (``None`` for mode A or a reserved character).
    ``short_reaction``: a lower-case third letter says the meter answers
    within 20 ms instead of 200 ms.
    """

    manufacturer: str
    baud_char: str
    mode: str
    baudrate: int | None
    ident: str
    enhanced: str | None
    short_reaction: bool
    line: str


def parse_identification(line: bytes | str) -> Identification:
    """Parse an identification line (with or without ``/`` and line end)."""
    text = line.decode("latin-1") if isinstance(line, bytes | bytearray) else line
    match = _IDENT_TEXT.fullmatch(text)
    if match is None:
        raise DecodeError(f"not an IEC 62056-21 identification message: {text[:40]!r}")
    manufacturer, baud_char, enhanced, ident = match.groups()
    baudrate: int | None
    if baud_char in BAUD_MODE_C or baud_char in "789":
        mode = "C" if enhanced is None else "E"
        baudrate = BAUD_MODE_C.get(baud_char)
    elif baud_char in BAUD_MODE_B or baud_char in "GHI":
        mode = "B"
        baudrate = BAUD_MODE_B.get(baud_char)
    else:
        mode, baudrate = "A", None
        if enhanced is not None:  # "\W" belongs to mode E only: it is part of the name here
            ident = "\\" + enhanced + ident
            enhanced = None
    return Identification(
        manufacturer=manufacturer,
        baud_char=baud_char,
        mode=mode,
        baudrate=baudrate,
        ident=ident.strip(),
        enhanced=enhanced,
        short_reaction=manufacturer[2].islower(),
        line=match.group(0).rstrip("\r\n").lstrip("/"),
    )


def sign_on_request(address: str = "") -> bytes:
    """``/?!`` CR LF, or ``/?address!`` CR LF for one meter on a bus."""
    if len(address) > 32 or not all(" " <= ch <= "~" and ch not in "/!?" for ch in address):
        raise ValueError(f"invalid IEC 62056-21 device address {address!r}")
    return b"/?" + address.encode("ascii") + b"!\r\n"


def ack_message(baud_char: str, *, mode: str = "0", protocol: str = "0") -> bytes:
    """Acknowledgement/option select: ACK, protocol V, baud rate Z, mode Y, CR LF.

    ``mode`` "0" is data readout ("1" programming), ``protocol`` "0" the normal
    protocol procedure.
    """
    return bytes((ACK,)) + (protocol + baud_char + mode).encode("ascii") + b"\r\n"


def bcc(data: bytes | bytearray | memoryview) -> int:
    """Block check character: the XOR of all bytes (without a per-byte Python loop)."""
    size = len(data)
    if not size:
        return 0
    value = int.from_bytes(data, "little")
    width = 1 << (size - 1).bit_length()  # bytes, a power of two
    while width > 1:
        width >>= 1
        shift = width * 8
        value = (value >> shift) ^ (value & ((1 << shift) - 1))
    return value


# ---------------------------------------------------------------- framer


class IecFramer:
    """Feed bytes in, get complete IEC 62056-21 messages out.

    A message is an identification line followed by a push telegram (data
    lines up to ``!`` and the line end) or by a data message (STX ... ``!``
    CR LF ETX BCC), or a data message on its own (what a readout client
    receives after its acknowledgement). Garbage, echoed requests, cut-off
    messages and bytes no message contains are thrown away and counted in
    ``discarded``; the framer never raises.
    """

    __slots__ = ("_buf", "_scanned", "_tail", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # how far the current message has been scanned
        self._tail = 0  # end of a data message that lacks ETX/BCC so far ("!" CR LF seen)
        self.discarded = 0

    def reset(self) -> None:
        """Forget a partial message (after a reconnect)."""
        self._drop(len(self._buf))

    def _drop(self, count: int) -> None:
        self.discarded += count
        del self._buf[:count]
        self._scanned = 0
        self._tail = 0

    def _take(self, count: int) -> bytes:
        frame = bytes(self._buf[:count])
        del self._buf[:count]
        self._scanned = 0
        self._tail = 0
        return frame

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the messages they completed."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while buf:
            first = buf[0]
            if first != STX and not (first == 0x2F and _IDENT.match(buf) is not None):
                if first == 0x2F and len(buf) < MAX_IDENT and _IDENT_PREFIX.fullmatch(buf):
                    break  # the start of an identification line, cut off for now
                start = _START.search(buf, 1)
                if start is None:
                    slash = buf.rfind(b"/", max(0, len(buf) - 3))
                    self._drop(slash if slash >= 0 else len(buf))
                    break
                self._drop(start.start())
                continue
            end = self._scan(buf)
            if end == 0:
                break
            if end < 0:
                self._drop(-end)
                continue
            frames.append(self._take(end))
        return frames

    def flush(self) -> list[bytes]:
        """End of the stream: return a data message that ended with ``!`` but no ETX/BCC.

        Everything else still buffered is discarded.
        """
        frames = [self._take(self._tail)] if self._buf and self._tail else []
        self._drop(len(self._buf))
        return frames

    def _scan(self, buf: bytearray) -> int:
        """Length of the message at the buffer start: >0 complete, 0 wait, <0 drop that many."""
        self._tail = 0
        if buf[0] == STX:
            return self._block(buf, 0)
        ident = _IDENT.match(buf)
        assert ident is not None
        body = ident.end()
        gap = _GAP.match(buf, body)
        after = gap.end() if gap is not None else body
        if after >= len(buf):
            return 0  # cannot tell a push telegram from a readout yet
        if buf[after] == STX:
            return self._block(buf, after)
        return self._push(buf, body)

    def _push(self, buf: bytearray, body: int) -> int:
        pos = max(body, self._scanned)
        while True:
            hit = _PUSH_SCAN.search(buf, pos)
            if hit is None:
                if len(buf) > MAX_MESSAGE:
                    return -1
                self._scanned = max(body, len(buf) - 3)
                return 0
            where = hit.start()
            if buf[where] != 0x21:  # "!"
                # a new identification line (this telegram was cut off) or a bad byte
                return -where if buf[where] == 0x2F else -(where + 1)
            end = _PUSH_END.match(buf, where)
            if end is not None:
                return end.end()
            prefix = _PUSH_END_PREFIX.match(buf, where)
            if prefix is not None and prefix.end() == len(buf):
                self._scanned = where
                return 0  # CRC digits or the line end still to come
            return -(where + 1)  # a "!" followed by something no telegram has

    def _block(self, buf: bytearray, stx: int) -> int:
        pos = max(stx + 1, self._scanned)
        while True:
            hit = _BLOCK_SCAN.search(buf, pos)
            if hit is None:
                if len(buf) > MAX_MESSAGE:
                    return -1
                self._scanned = max(stx + 1, len(buf) - 3)
                return 0
            where = hit.start()
            byte = buf[where]
            if byte == ETX:  # ETX without "!": the BCC follows
                return where + 2 if where + 1 < len(buf) else self._wait(where)
            if byte != 0x21:
                return -where if byte == 0x2F else -(where + 1)
            tail = _BLOCK_TAIL.match(buf, where)
            assert tail is not None
            line_end, etx = tail.groups()
            if etx:
                return tail.end() + 1 if tail.end() < len(buf) else self._wait(where)
            if tail.end() == len(buf):
                if line_end == b"\r\n":
                    self._tail = tail.end()  # complete but for ETX/BCC: flush() may take it
                return self._wait(where)
            if line_end in {b"\r\n", b"\n"}:
                return tail.end()  # "!" CR LF and no ETX (meters that leave it out)
            return -(where + 1)

    def _wait(self, where: int) -> int:
        self._scanned = where
        return 0


def split_iec(data: bytes) -> tuple[list[bytes], int]:
    """Cut a whole capture into messages; also return the count of bytes in none."""
    framer = IecFramer()
    frames = framer.feed(data)
    frames += framer.flush()
    return frames, framer.discarded


def sniff_iec(data: bytes) -> bool:
    """Whether a capture looks like IEC 62056-21 rather than P1/DSMR.

    True for a data message (STX ... ``!``), for data sets with reduced codes
    (``1.8.1(``), and for push telegrams without CRC whose full codes are all
    A = 0/1, B = 0 and that carry none of the DSMR-only objects.
    """
    stx = _STX_AT_LINE_START.search(data)
    if stx is not None and data.find(b"!", stx.end()) > 0:
        return True
    ident = _IDENT.search(data)
    if ident is None:
        return False
    window = data[ident.end() : ident.end() + MAX_MESSAGE]
    bang = window.find(b"!")
    if bang < 0:
        return False
    body = window[:bang]
    if _SHORT_CODE_LINE.search(body):
        return True
    if _CRC_AFTER_BANG.match(window, bang + 1) or any(marker in body for marker in _DSMR_MARKERS):
        return False
    codes = _FULL_CODE.findall(body)
    return bool(codes) and all(a in {b"0", b"1"} and b == b"0" for a, b in codes)


# ---------------------------------------------------------------- decoder


@dataclass(frozen=True, slots=True)
class _Address:
    obis: str
    key: str
    kind: Kind
    a: int


_ADDRESS_CACHE: dict[tuple[str, int], _Address | None] = {}


def _group(text: str | None, default: int) -> int:
    if not text:
        return default
    letter = _LETTER_GROUP.get(text)
    return letter if letter is not None else int(text)


def _address(text: str, default_a: int) -> _Address | None:
    """Normalised OBIS code, key and kind of a data set address (cached)."""
    cache_key = (text, default_a)
    try:
        return _ADDRESS_CACHE[cache_key]
    except KeyError:
        pass
    match = _ADDRESS.fullmatch(text)
    result: _Address | None = None
    if match is not None:
        a_text, b_text, c_text, d_text, e_text, f_text = match.groups()
        a = _group(a_text, default_a)
        b = _group(b_text, 0)
        c = _group(c_text, 0)
        d = _group(d_text, 0)
        e = _group(e_text, 0)
        obis = f"{a}-{b}:{c}.{d}.{e}"
        known = _IEC_REGISTERS.get(obis) or MAIN_REGISTERS.get(obis)
        if known is not None:
            key, kind = known
        else:
            # error and alarm registers (C = 97, "F"): flags, kept as sent
            key, kind = generic_key(obis), (Kind.TEXT if c == 97 else Kind.AUTO)
        if f_text is not None and int(f_text) != 255:
            billing = int(f_text)
            obis = f"{obis}*{billing}"
            key = f"{key}_billing_{billing}"
        result = _Address(obis, key, kind, a)
    if len(_ADDRESS_CACHE) > 4096:
        _ADDRESS_CACHE.clear()
    _ADDRESS_CACHE[cache_key] = result
    return result


def _stamp(text: str, tz: tzinfo) -> datetime | None:
    """A timestamp in one of the forms meters use, or None."""
    size = len(text)
    if size == 10 and text.isdecimal():  # YYMMDDhhmm
        return parse_timestamp(text + "00", tz)
    if size in {12, 13, 17}:
        return parse_timestamp(text, tz)
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = match.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), 0, tz)
    except ValueError:
        return None


type _Value = tuple[RegisterValue, str | None, datetime | None, tuple[HistoryEntry, ...]]


def _value(kind: Kind, groups: list[str], tz: tzinfo) -> _Value:
    """Decode a data set's values: (value, unit, timestamp, history)."""
    if kind is Kind.TEXT:
        return groups[0] or None, None, None, ()
    if kind is not Kind.NUMBER and kind is not Kind.AUTO:
        return _parse_value(kind, groups, tz)
    if len(groups) > 1:
        # (value)(timestamp), (timestamp)(value): max demand, stamped readings
        stamp = None
        value_text = None
        for text in groups:
            if stamp is None and "*" not in text and (found := _stamp(text, tz)) is not None:
                stamp = found
            elif value_text is None:
                value_text = text
        parsed = _number(value_text) if value_text is not None else None
        if parsed is not None:
            return parsed[0], parsed[1], stamp, ()
        if kind is Kind.NUMBER or value_text is None:
            return None, None, stamp, ()
        return value_text or None, None, stamp, ()
    text = groups[0]
    if "&" not in text:
        parsed = _number(text)
        if parsed is not None:
            return parsed[0], parsed[1], None, ()
        if kind is Kind.NUMBER or not text:
            return None, None, None, ()
        return text, None, None, ()
    # "&"-separated values: "088*C&082*C", "2017-01-18&01:36:47"
    when = _stamp(text, tz)
    if when is not None:
        return when, None, None, ()
    numbers = [_number(part) for part in text.split("&")]
    if all(numbers):
        entries = tuple(HistoryEntry(None, number[0], number[1]) for number in numbers if number)
        return entries[0].value, entries[0].unit, None, entries
    return (None if kind is Kind.NUMBER else text), None, None, ()


def _default_a(datasets: list[tuple[str, str]], medium: Medium | None) -> int:
    """Value group A for reduced codes: the caller's medium, else heat or electricity."""
    if medium is not None:
        return _MEDIUM_A.get(medium, 0)
    units = {inner.rpartition("*")[2] for _address_text, inner in datasets if "*" in inner}
    units |= {part.rpartition("*")[2] for _a, inner in datasets if "&" in inner for part in inner.split("&")}
    if units & _ENERGY_UNITS and units & _VOLUME_UNITS:
        return 6  # a heat meter: energy and volume
    return 1


def _find_bang(raw: bytes, start: int, stop: int) -> int:
    """The first ``!`` in ``raw[start:stop]`` outside parentheses, or -1."""
    bang = raw.find(b"!", start, stop)
    while bang >= 0 and raw.count(b"(", start, bang) != raw.count(b")", start, bang):
        bang = raw.find(b"!", bang + 1, stop)
    return bang


def decode_iec(
    raw: bytes,
    *,
    tz: tzinfo = DEFAULT_TZ,
    medium: Medium | None = None,
) -> Frame:
    """Decode one IEC 62056-21 message (push telegram or readout).

    ``medium`` sets value group A of reduced codes (default: heat when the data
    has energy and volume units, electricity otherwise). A data message whose
    BCC does not match comes back with ``integrity=INVALID``; one without ETX
    and BCC, and a push telegram without CRC, with ``ABSENT``. Raises
    :class:`DecodeError` for bytes that are not such a message.
    """
    ident_match = _IDENT.search(raw)
    stx = raw.find(b"\x02")
    if ident_match is not None and stx >= 0 and stx < ident_match.start():
        ident_match = None  # a data message on its own, "/" inside (garbage) after it
    ident = parse_identification(ident_match.group(0)) if ident_match is not None else None
    body_start = ident_match.end() if ident_match is not None else 0
    if stx >= body_start:
        etx = raw.find(b"\x03", stx + 1)
        end = etx if etx >= 0 else len(raw)
        bang = raw.find(b"!", stx + 1, end)
        if etx >= 0:
            if etx + 1 >= len(raw):
                raise DecodeError("truncated data message: no BCC after ETX")
            computed = bcc(memoryview(raw)[stx + 1 : etx + 1])
            integrity = Integrity.VALID if raw[etx + 1] == computed else Integrity.INVALID
        elif bang < 0:
            raise DecodeError("truncated data message: neither '!' nor ETX")
        else:
            integrity = Integrity.ABSENT
        body = raw[stx + 1 : bang if bang >= 0 else etx]
    else:
        if ident_match is None:
            raise DecodeError("not an IEC 62056-21 message: no identification line and no STX")
        bang = _find_bang(raw, body_start, len(raw))
        if bang < 0:
            raise DecodeError("truncated IEC 62056-21 telegram: no '!' end")
        crc = _CRC_AFTER_BANG.match(raw, bang + 1)
        if crc is None:
            integrity = Integrity.ABSENT
        else:
            stated = int(crc.group(1), 16)
            ok = stated == crc16_arc(memoryview(raw)[ident_match.start() : bang + 1])
            integrity = Integrity.VALID if ok else Integrity.INVALID
        body = raw[body_start:bang]

    datasets: list[tuple[str, str]] = _DATASET.findall(body.decode("latin-1"))
    if not datasets and integrity is Integrity.ABSENT:
        raise DecodeError("no data set and no checksum: not an IEC 62056-21 message")
    default_a = _default_a(datasets, medium)

    # Group continuation values ("address(v1)(v2)" or an empty address) with their address.
    grouped: list[tuple[str, list[str]]] = []
    for address_raw, inner in datasets:
        address_text = address_raw.strip()
        if not address_text and grouped:
            grouped[-1][1].append(inner)
        else:
            grouped.append((address_text, [inner]))

    registers: list[Register] = []
    append = registers.append
    ids: dict[str, str] = {}
    media: Counter[int] = Counter()
    timestamp: datetime | None = None
    clock: dict[str, str] = {}
    for address_text, groups in grouped:
        address = _address(address_text, default_a)
        if address is None:
            # not an OBIS code: keep it under its own name rather than lose it
            name = re.sub(r"[^0-9A-Za-z]+", "_", address_text).strip("_") or "unnamed"
            value, unit, stamp, history = _value(Kind.AUTO, groups, tz)
            registers.append(Register(address_text, f"iec_{name}", value, unit, stamp, history))
            continue
        key = address.key
        if address.a:
            media[address.a] += 1
        if len(groups) == 1 and address.kind in _NUMBER_KINDS:
            # the hot path: "(value*unit)" or "(value)", a plain number
            value_text, _, unit_text = groups[0].partition("*")
            if value_text.replace(".", "", 1).isdecimal() and "&" not in unit_text:
                append(_reg(address.obis, key, Decimal(value_text), unit_text or None))
                continue
        value, unit, stamp, history = _value(address.kind, groups, tz)
        if isinstance(value, str):
            if key in _ID_KEYS and key not in ids and value.strip():
                ids[key] = value.strip()
            elif key in {"meter_time", "meter_date"}:
                clock[key] = value
        elif key == "timestamp" and timestamp is None and isinstance(value, datetime):
            timestamp = value
        append(_reg(address.obis, key, value, unit, stamp, history))
    if timestamp is None and len(clock) == 2:
        timestamp = parse_timestamp(clock["meter_date"][-6:] + clock["meter_time"][:6], tz)

    header = ident.line if ident is not None else None
    meter_id = next((ids[key] for key in _ID_KEYS if key in ids), None)
    if meter_id is None:
        meter_id = header.replace("\\", "") if header else "unknown"
    main_a = media.most_common(1)[0][0] if media else 0
    meter = Meter(
        id=meter_id,
        medium=OBIS_A_MEDIUM.get(main_a, Medium.UNKNOWN),
        channel=0,
        registers=tuple(registers),
        timestamp=timestamp,
        manufacturer=ident.manufacturer if ident is not None else None,
        model=(ident.ident or None) if ident is not None else None,
        serial_number=_decode_hex_id(meter_id),
        parent_id=None,
    )
    return Frame(
        protocol=PROTOCOL,
        integrity=integrity,
        meters=(meter,),
        raw=raw,
        header=header,
        version=None,
        encrypted=False,
    )


# ---------------------------------------------------------------- mode C readout client


class IecLink(Protocol):
    """What :func:`read_mode_c` needs from a link (``serialx.AsyncSerial`` has it).

    For the baud-rate switch the link also needs ``async set_baudrate(int)``
    or ``async reconfigure_port(*, baudrate=int)`` (serialx); ``async flush()``,
    when present, is awaited so the acknowledgement has left the port before
    the switch.
    """

    async def write(self, data: bytes) -> None:
        """Send bytes."""

    async def read(self, n: int = -1) -> bytes:
        """Receive up to ``n`` bytes (``b""`` at end of stream)."""


@runtime_checkable
class _SetsBaudrate(Protocol):
    async def set_baudrate(self, baudrate: int) -> None: ...


@runtime_checkable
class _Reconfigures(Protocol):
    async def reconfigure_port(self, *, baudrate: int | None = None) -> None: ...


@runtime_checkable
class _Flushes(Protocol):
    async def flush(self) -> None: ...


_LINK_ERRORS = (OSError, serialx.SerialException)


async def _write(link: IecLink, data: bytes, baudrate: int) -> None:
    """Send ``data`` and wait until it has left the port."""
    try:
        await link.write(data)
        if isinstance(link, _Flushes):
            await link.flush()
        else:
            await asyncio.sleep(len(data) * 10 / baudrate + 0.02)
    except _LINK_ERRORS as err:
        raise ConnectionFailedError(f"cannot write to the meter link: {err}") from err


async def _switch_baudrate(link: IecLink, baudrate: int) -> None:
    try:
        if isinstance(link, _SetsBaudrate):
            await link.set_baudrate(baudrate)
        elif isinstance(link, _Reconfigures):
            await link.reconfigure_port(baudrate=baudrate)
        else:
            raise ConnectionFailedError("the link cannot change its baud rate")
    except _LINK_ERRORS as err:
        raise ConnectionFailedError(f"cannot switch the meter link to {baudrate} baud: {err}") from err


async def _read_some(link: IecLink, timeout: float, what: str) -> bytes:
    try:
        data = await asyncio.wait_for(link.read(1024), timeout)
    except TimeoutError as err:
        raise NoTelegramError(f"no {what} from the meter within {timeout:g} s") from err
    except _LINK_ERRORS as err:
        raise ConnectionFailedError(f"meter link failed: {err}") from err
    if not data:
        raise ConnectionFailedError("the meter link closed")
    return data


def _choose_baud(ident: Identification, max_baud: int) -> tuple[str, int]:
    """Baud-rate character and rate for the acknowledgement: the meter's best we allow."""
    offered = ident.baudrate or INITIAL_BAUD
    best = ("0", INITIAL_BAUD)
    for char, rate in BAUD_MODE_C.items():
        if rate <= offered and rate <= max_baud and rate > best[1]:
            best = (char, rate)
    return best


async def read_mode_c(
    link: IecLink,
    *,
    address: str = "",
    max_baud: int = 9600,
    timeout: float = 5.0,
    total_timeout: float = 120.0,
    initial_baud: int = INITIAL_BAUD,
    reaction_time: float | None = None,
    wakeup: int = 0,
    tz: tzinfo = DEFAULT_TZ,
    medium: Medium | None = None,
) -> Frame:
    """Read a meter out once (IEC 62056-21 mode A, B or C data readout).

    ``link`` is open at ``initial_baud`` (300) 7E1. Sends the sign-on request,
    reads the identification, then per the meter's mode: C/E sends the
    acknowledgement with the highest rate both allow (``max_baud``) and
    switches to it, B switches to the meter's rate at once, A stays. Returns
    the decoded readout (identification + data message).

    ``timeout`` is how long the meter may stay silent at each step,
    ``total_timeout`` caps the whole readout, ``reaction_time`` the pause
    before the acknowledgement (default 200 ms, 20 ms for meters that
    announce the short reaction time), ``wakeup`` a count of NUL bytes sent
    first (battery meters that sleep). Raises :class:`NoTelegramError` when
    the meter does not answer in time, :class:`ConnectionFailedError` when the
    link fails, :class:`ChecksumError` for a data message with a bad BCC and
    :class:`DecodeError` for one that cannot be decoded.
    """
    request = sign_on_request(address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_timeout

    def remaining() -> float:
        left = deadline - loop.time()
        if left <= 0:
            raise NoTelegramError(f"meter readout took longer than {total_timeout:g} s")
        return min(timeout, left)

    if wakeup:
        await _write(link, b"\x00" * wakeup, initial_baud)
    await _write(link, request, initial_baud)

    # The identification (an echo of our request, or noise, may come first).
    buf = b""
    while (match := _IDENT.search(buf)) is None:
        buf = buf[-MAX_IDENT:] + await _read_some(link, remaining(), "identification")
    ident_line = match.group(0)
    ident = parse_identification(ident_line)
    rest = buf[match.end() :]

    framer = IecFramer()
    frames: list[bytes] = []
    if ident.mode in {"C", "E"}:
        char, rate = _choose_baud(ident, max_baud)
        pause = reaction_time if reaction_time is not None else (0.02 if ident.short_reaction else 0.2)
        await asyncio.sleep(pause)
        await _write(link, ack_message(char), initial_baud)
        if rate != initial_baud:
            await _switch_baudrate(link, rate)
    elif ident.mode == "B" and ident.baudrate is not None:
        if ident.baudrate != initial_baud:
            await _switch_baudrate(link, ident.baudrate)
    else:  # mode A: the data message follows at the same rate
        frames = framer.feed(rest)

    while not frames:
        try:
            data = await _read_some(link, remaining(), "data message")
        except NoTelegramError:
            frames = framer.flush()  # "!" CR LF came, ETX/BCC never did
            if not frames:
                raise
            break
        frames = framer.feed(data)

    message = frames[0]
    raw = message if message[:1] == b"/" else ident_line + message
    frame = decode_iec(raw, tz=tz, medium=medium)
    if frame.integrity is Integrity.INVALID:
        stx = raw.find(b"\x02")
        etx = raw.find(b"\x03", stx + 1) if stx >= 0 else -1
        if etx < 0:
            raise ChecksumError("readout failed its checksum")
        raise ChecksumError(
            f"data message BCC mismatch: stated 0x{raw[etx + 1]:02X}, computed 0x{bcc(raw[stx + 1 : etx + 1]):02X}"
        )
    return frame
