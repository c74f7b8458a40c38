"""Wired M-Bus (EN 13757-2 link layer, EN 13757-3 application layer).

Three parts, all pure logic with no I/O:

* **Link layer**: the single character ``E5``, short frames ``10 C A CS 16``,
  control frames and long frames ``68 L L 68 C A CI data CS 16``
  (:func:`parse_link_frame`), a stream framer that resynchronises after
  garbage (:class:`MbusFramer`) and frame builders for the master
  (:func:`snd_nke`, :func:`req_ud2`, :func:`application_reset`,
  :func:`select_secondary`, :func:`snd_ud`).
* **Application layer**: the variable data structure (CI ``72``, ``76`` with
  most significant byte first, ``78`` without header, ``7A`` with the short
  header that wireless M-Bus uses) with every DIF/DIFE/VIF/VIFE of
  EN 13757-3:2013 the meters in the wild send (:func:`parse_user_data`,
  :func:`parse_records`), the fixed data structure (CI ``73``/``77``), and
  :func:`decode_mbus`, which maps one ``RSP_UD`` to the shared meter model.
* **Master**: the secondary-address search (wildcard narrowing, with
  collision handling down to the manufacturer, version and medium nibbles)
  and the primary-address scan, written against an async
  ``transact(frame) -> answer`` callable so any transport can drive them
  (:func:`search_secondary`, :func:`scan_primary`).

Values are exact :class:`~decimal.Decimal` numbers in the unit the VIF states,
with the VIF's decimal scaling applied (``0C 13 32 01 00 00`` is
``Decimal("0.132")`` m3). Energy is given in kWh (Wh VIFs), GJ (J VIFs) or
MWh (the ``FB`` extension), volume in m3, power in W, temperatures in °C.

Register keys: the medium's cumulative reading (storage 0, tariff 0, subunit
0, instantaneous) gets the key the P1 sub-meters use (``gas``, ``water``,
``hot_water``, ``heat``, ``cooling``; ``energy_import_total`` for
electricity), every other record a stable key built from the VIF meaning and
the DIF's function, tariff, subunit and storage number, e.g.
``volume_storage_1``, ``power_max_tariff_1``, ``flow_temperature``.

Standard points libmbus and pyMeterBus get wrong, and what this decoder does:

* Orthogonal VIFE ``E110 1f1b`` / ``E100 uf1b`` / ``E011 1001`` (*date/time
  of* ..., EN 13757-3:2013 table 15) turn the record's data into a date
  (2 bytes, type G) or date and time (4 bytes type F, 6 bytes type I).
  Landis+Gyr Ultraheat T230/UH50 send the dates of their maximum flow and
  temperatures like this (``94 10 DA 6F 32 14 7A 18`` is 2011-08-26 20:50,
  not 41065374.6 °C as libmbus prints).
* LVAR ``C0h``-``C9h`` / ``D0h``-``D9h`` announce ``(LVAR - C0h) * 2``
  *digits*, i.e. ``LVAR - C0h`` bytes (both reference decoders read twice as
  many bytes).

Manufacturer quirks (all verified on captured frames from libmbus' test set):

* Itron/Actaris Cyble (ACW): plain-text VIFs (``7C``) for "cust. ID" and
  "bat. time"; a VIFE ``7F`` marks a record as manufacturer specific (kept,
  key suffix ``_mfct``). Text is sent last character first (as the standard
  says) and is reversed here.
* Landis+Gyr G350 (LGB) gas: the fabrication number is a 17-character LVAR
  string, the valve state is ``FD 1A`` (digital output) on subunit 1.
* Landis+Gyr T230/UH50 (LUG): see the date/time VIFEs above; the storage-510
  record (``84 8F 0F 6D``) is the next due date and is kept as
  ``datetime_storage_510``.
* Kamstrup (KAM) Multical 601 and 382: a block of manufacturer data after
  ``0F`` closes the frame; it is kept as hex in ``manufacturer_data``. The
  382 states its tariff energies on subunit 1 (``energy_tariff_1_subunit_1``).
* ABB (ABB) Delta: manufacturer-specific VIFs ``FF 9x 00`` (meaning not
  published) get ``mfct_vif_..`` keys with no unit; the VIFE ``00`` after
  ``FD 97`` (error flags) is the "no error" record code and is ignored; ``1F``
  at the end says more records follow (``more_records_follow``).
* Meters with an EN 13757-3:2004 header fill the signature with anything
  (``FFFF``, random bytes): only an AES security mode whose payload lacks the
  ``2F 2F`` check bytes counts as encrypted (:class:`KeyRequiredError`).
* Engelmann (EFE) and other meters that put the due-date values under
  storage 1 and a second copy under storage 2 with a tariff-0 DIFE: kept as
  separate keys (``water_storage_2``).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo
from decimal import Decimal
from enum import IntEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from .errors import ChecksumError, DecodeError, KeyRequiredError
from .models import Frame, Integrity, Medium, Meter, Register, RegisterValue
from .obis import MAIN_REGISTERS, READING_KEY

PROTOCOL = "mbus"
DEFAULT_TZ = ZoneInfo("Europe/Amsterdam")

# ------------------------------------------------------------------ link layer

ACK = 0xE5
START_SHORT = 0x10
START_LONG = 0x68
STOP = 0x16

# C field values (master to slave have bit 6 set).
C_SND_NKE = 0x40
C_SND_UD = 0x53
C_REQ_UD2 = 0x5B
C_REQ_UD1 = 0x5A
C_RSP_UD = 0x08
FCB = 0x20
FCV = 0x10

# CI field values.
CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECT = 0x52
CI_SELECT_MSB = 0x56
CI_ERROR = 0x70
CI_ALARM = 0x71
CI_VARIABLE = 0x72
CI_FIXED = 0x73
CI_VARIABLE_MSB = 0x76
CI_FIXED_MSB = 0x77
CI_VARIABLE_NO_HEADER = 0x78
CI_VARIABLE_SHORT = 0x7A

ADDRESS_NETWORK = 0xFD  # 253: the slave selected by secondary address
ADDRESS_BROADCAST_ANSWER = 0xFE  # 254: every slave answers
ADDRESS_BROADCAST = 0xFF  # 255: nobody answers
MAX_PRIMARY = 250
MAX_LONG_DATA = 252  # L counts C, A, CI and data: at most 255


class FrameKind(IntEnum):
    """The four link-layer frame formats."""

    ACK = 0
    SHORT = 1
    CONTROL = 2
    LONG = 3


@dataclass(frozen=True, slots=True)
class LinkFrame:
    """One link-layer frame: its kind, C, A, CI fields and user data."""

    kind: FrameKind
    c: int = 0
    a: int = 0
    ci: int | None = None
    data: bytes = b""


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The M-Bus checksum: the arithmetic sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


def _short(c: int, a: int) -> bytes:
    return bytes((START_SHORT, c, a, (c + a) & 0xFF, STOP))


def _long(c: int, a: int, ci: int, data: bytes = b"") -> bytes:
    if len(data) > MAX_LONG_DATA:
        raise ValueError(f"user data too long for one frame: {len(data)} bytes")
    length = len(data) + 3
    body = bytes((c, a, ci)) + data
    return bytes((START_LONG, length, length, START_LONG)) + body + bytes((checksum(body), STOP))


def parse_link_frame(raw: bytes) -> LinkFrame:
    """Check and split one whole link-layer frame.

    Raises :class:`ChecksumError` for a wrong checksum, :class:`DecodeError`
    for anything else that is not exactly one frame (truncated, wrong start
    or stop byte, L fields that differ, trailing bytes).
    """
    size = len(raw)
    if not size:
        raise DecodeError("empty M-Bus frame")
    first = raw[0]
    if first == ACK:
        if size != 1:
            raise DecodeError(f"single character E5 followed by {size - 1} more bytes")
        return LinkFrame(FrameKind.ACK)
    if first == START_SHORT:
        if size != 5:
            raise DecodeError(f"short frame of {size} bytes (5 expected)")
        if raw[4] != STOP:
            raise DecodeError(f"short frame without stop byte 16 (found {raw[4]:02X})")
        if checksum(raw[1:3]) != raw[3]:
            raise ChecksumError(f"short frame checksum {raw[3]:02X}, computed {checksum(raw[1:3]):02X}")
        return LinkFrame(FrameKind.SHORT, raw[1], raw[2])
    if first != START_LONG:
        raise DecodeError(f"not an M-Bus frame: starts with {first:02X}")
    if size < 6:
        raise DecodeError(f"truncated M-Bus long frame ({size} bytes)")
    length = raw[1]
    if raw[2] != length or raw[3] != START_LONG:
        raise DecodeError("long frame header is not 68 L L 68")
    if length < 3:
        raise DecodeError(f"long frame with L={length} (at least 3: C, A, CI)")
    if size < length + 6:
        raise DecodeError(f"truncated M-Bus frame: {size} of {length + 6} bytes")
    if size > length + 6:
        raise DecodeError(f"{size - length - 6} bytes after the end of the M-Bus frame")
    if raw[-1] != STOP:
        raise DecodeError(f"long frame without stop byte 16 (found {raw[-1]:02X})")
    body = raw[4 : 4 + length]
    if checksum(body) != raw[-2]:
        raise ChecksumError(f"long frame checksum {raw[-2]:02X}, computed {checksum(body):02X}")
    kind = FrameKind.CONTROL if length == 3 else FrameKind.LONG
    return LinkFrame(kind, raw[4], raw[5], raw[6], bytes(raw[7 : 4 + length]))


_STARTS = frozenset((ACK, START_SHORT, START_LONG))
_FRAME_START = re.compile(rb"[\xe5\x10\x68]")


class MbusFramer:
    """Cuts a byte stream into whole M-Bus frames; never raises.

    A candidate is kept only when its structure holds (start and stop bytes,
    matching L fields, and for short frames the checksum, since ``10`` is a
    common data byte); a long frame with a bad checksum is still handed out so
    the decoder can count it as such. Whatever belongs to no frame is counted
    in ``discarded``.
    """

    __slots__ = ("_buf", "discarded")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        self.discarded += len(self._buf)
        self._buf.clear()

    def _drop(self, count: int) -> None:
        self.discarded += count
        del self._buf[:count]

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the frames they completed."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while buf:
            first = buf[0]
            if first not in _STARTS:
                match = _FRAME_START.search(buf)
                self._drop(match.start() if match else len(buf))
                continue
            if first == ACK:
                frames.append(bytes(buf[:1]))
                del buf[:1]
                continue
            if first == START_SHORT:
                if len(buf) < 5:
                    break
                if buf[4] == STOP and (buf[1] + buf[2]) & 0xFF == buf[3]:
                    frames.append(bytes(buf[:5]))
                    del buf[:5]
                else:
                    self._drop(1)
                continue
            if len(buf) < 4:
                break
            length = buf[1]
            if buf[2] != length or buf[3] != START_LONG or length < 3:
                self._drop(1)
                continue
            total = length + 6
            if len(buf) < total:
                break
            if buf[total - 1] != STOP:
                self._drop(1)
                continue
            frames.append(bytes(buf[:total]))
            del buf[:total]
        return frames


def split_mbus(data: bytes) -> tuple[list[bytes], int]:
    """Cut a whole capture into frames: (frames, bytes that belonged to none)."""
    framer = MbusFramer()
    frames = framer.feed(data)
    return frames, framer.discarded + framer.pending


def sniff_mbus(data: bytes) -> bool:
    """Whether a capture looks like M-Bus: it starts with a whole frame."""
    if len(data) >= 6 and data[0] == START_LONG and data[3] == START_LONG and data[1] == data[2]:
        end = data[1] + 5
        return end < len(data) and data[end] == STOP
    if len(data) >= 5 and data[0] == START_SHORT:
        return data[4] == STOP and (data[1] + data[2]) & 0xFF == data[3]
    return data[:1] == b"\xe5" and (len(data) == 1 or data[1] in (ACK, START_SHORT, START_LONG))


# ---------------------------------------------------------------- master frames


def snd_nke(address: int) -> bytes:
    """SND_NKE: link reset (and, to 253, deselect) of one slave."""
    return _short(C_SND_NKE, _check_address(address))


def req_ud2(address: int, fcb: bool = False) -> bytes:
    """REQ_UD2: ask a slave for its class 2 data (its readings)."""
    return _short(C_REQ_UD2 | (FCB if fcb else 0), _check_address(address))


def req_ud1(address: int, fcb: bool = False) -> bytes:
    """REQ_UD1: ask a slave for class 1 (alarm) data."""
    return _short(C_REQ_UD1 | (FCB if fcb else 0), _check_address(address))


def snd_ud(address: int, ci: int, data: bytes = b"", fcb: bool = False) -> bytes:
    """SND_UD: send user data to a slave."""
    return _long(C_SND_UD | (FCB if fcb else 0), _check_address(address), ci, data)


def application_reset(address: int, subcode: int | None = None) -> bytes:
    """SND_UD with CI 50: application reset (optionally with its subcode byte)."""
    return snd_ud(address, CI_APPLICATION_RESET, b"" if subcode is None else bytes((subcode & 0xFF,)))


def set_primary_address(address: int, new_address: int) -> bytes:
    """SND_UD that writes a new primary address (DIF 01, VIF 7A)."""
    if not 0 <= new_address <= MAX_PRIMARY:
        raise ValueError(f"primary address {new_address} outside 0..250")
    return snd_ud(address, CI_DATA_SEND, bytes((0x01, 0x7A, new_address)))


def _check_address(address: int) -> int:
    if not 0 <= address <= 0xFF:
        raise ValueError(f"address {address} outside 0..255")
    return address


_MASK = re.compile(r"[0-9A-Fa-f]{16}")


def select_secondary(mask: str) -> bytes:
    """SND_UD to 253 with CI 52: select the slave(s) matching a secondary address.

    ``mask`` is 16 hex digits as libmbus writes secondary addresses: the
    8-digit ID, the manufacturer (4 hex digits of its 2-byte code), the
    version and the medium (2 each). ``F`` is a wildcard nibble (in the ID),
    ``FF``/``FFFF`` a wildcard byte in the other fields.
    """
    if _MASK.fullmatch(mask) is None:
        raise ValueError(f"secondary address mask {mask!r} is not 16 hex digits")
    mask = mask.upper()
    ident = bytes.fromhex(mask[:8])[::-1]
    manufacturer = bytes.fromhex(mask[8:12])[::-1]
    rest = bytes.fromhex(mask[12:16])
    return snd_ud(ADDRESS_NETWORK, CI_SELECT, ident + manufacturer + rest)


def secondary_address(ident: str, manufacturer: str, version: int, medium: int) -> str:
    """The 16-hex-digit secondary address (libmbus format) of a slave."""
    return f"{ident}{manufacturer_code(manufacturer):04X}{version:02X}{medium:02X}"


def mask_matches(mask: str, address: str) -> bool:
    """Whether a secondary address matches a select mask (F nibbles are wildcards)."""
    mask = mask.upper()
    address = address.upper()
    if len(mask) != 16 or len(address) != 16:
        return False
    for i in range(8):
        if mask[i] != "F" and mask[i] != address[i]:
            return False
    # Manufacturer, version and medium: wildcards are whole bytes (FF).
    for start, end in ((8, 12), (12, 14), (14, 16)):
        part = mask[start:end]
        if part != "F" * (end - start) and part != address[start:end]:
            return False
    return True


class FcbTracker:
    """The frame count bit of REQ_UD2 per primary address.

    After SND_NKE the slave expects FCB=1 first; the bit toggles after every
    exchange that got an answer, and stays put for a retry after a timeout.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[int, bool] = {}

    def reset(self, address: int) -> None:
        """Call after SND_NKE to that address."""
        self._next[address] = True

    def req_ud2(self, address: int) -> bytes:
        """The next REQ_UD2 for this address."""
        return req_ud2(address, self._next.get(address, True))

    def answered(self, address: int) -> None:
        """The last request got its answer: toggle."""
        self._next[address] = not self._next.get(address, True)


def manufacturer_code(text: str) -> int:
    """``"KAM"`` -> the 2-byte code of the header (0x2C2D)."""
    text = text.upper()
    if len(text) != 3 or not all("@" <= ch <= "_" for ch in text):
        raise ValueError(f"manufacturer {text!r} is not 3 letters")
    return ((ord(text[0]) - 64) << 10) | ((ord(text[1]) - 64) << 5) | (ord(text[2]) - 64)


def manufacturer_text(code: int) -> str:
    """The 2-byte code of the header -> ``"KAM"``."""
    return "".join(chr(((code >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


# ------------------------------------------------------------ master procedures

type Transact = Callable[[bytes], Awaitable[bytes | None]]


class Answer(IntEnum):
    """What came back for one request."""

    NONE = 0  # timeout
    ACK = 1
    FRAME = 2  # a valid frame other than E5
    COLLISION = 3  # bytes that are not one valid frame


def classify(answer: bytes | None) -> Answer:
    """Sort an answer: timeout, E5, a valid frame, or a collision."""
    if not answer:
        return Answer.NONE
    if answer == b"\xe5":
        return Answer.ACK
    try:
        parse_link_frame(answer)
    except DecodeError:
        return Answer.COLLISION
    return Answer.FRAME


@dataclass(slots=True)
class PrimaryScan:
    """Result of :func:`scan_primary`."""

    found: list[int] = field(default_factory=list)
    collisions: list[int] = field(default_factory=list)


async def scan_primary(
    transact: Transact,
    addresses: Iterable[int] = range(MAX_PRIMARY + 1),
    retries: int = 1,
) -> PrimaryScan:
    """Find the slaves on primary addresses: SND_NKE to each, E5 means present.

    An answer that is not a clean E5 (two slaves with the same address) is a
    collision: the address is in use, by more than one slave.
    """
    result = PrimaryScan()
    for address in addresses:
        for _ in range(retries + 1):
            kind = classify(await transact(snd_nke(address)))
            if kind is Answer.ACK:
                result.found.append(address)
                break
            if kind is not Answer.NONE:
                result.collisions.append(address)
                break
    return result


@dataclass(slots=True)
class SecondaryScan:
    """Result of :func:`search_secondary`: addresses found and probes sent."""

    found: list[str] = field(default_factory=list)
    probes: int = 0
    unresolved: list[str] = field(default_factory=list)


_ID_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789ABCDEF"


async def search_secondary(
    transact: Transact,
    mask: str = "FFFFFFFFFFFFFFFF",
    on_found: Callable[[str, bytes], None] | None = None,
) -> SecondaryScan:
    """The standard secondary-address search by wildcard narrowing.

    For each position of the mask, each digit is tried: a select that nobody
    acknowledges prunes that branch; a single acknowledgement is confirmed by
    REQ_UD2 to address 253, whose RSP_UD gives the slave's full address; a
    collision (garbled acknowledgements, or garbled RSP_UDs of several
    selected slaves) narrows the next position. When the 8 ID digits do not
    separate the slaves, the manufacturer, version and medium bytes are
    narrowed too, so slaves that share an ID are found.
    """
    if _MASK.fullmatch(mask) is None:
        raise ValueError(f"secondary address mask {mask!r} is not 16 hex digits")
    result = SecondaryScan()
    await _search(transact, mask.upper(), 0, result, on_found)
    return result


async def _probe(transact: Transact, mask: str, result: SecondaryScan) -> tuple[Answer, bytes | None]:
    """Select ``mask``; on a single E5 read the selected slave."""
    result.probes += 1
    kind = classify(await transact(select_secondary(mask)))
    if kind is not Answer.ACK:
        return (Answer.COLLISION if kind is not Answer.NONE else Answer.NONE), None
    answer = await transact(req_ud2(ADDRESS_NETWORK))
    kind = classify(answer)
    if kind is Answer.FRAME:
        return Answer.FRAME, answer
    if kind is Answer.NONE:
        return Answer.NONE, None
    return Answer.COLLISION, None


def _next_positions(mask: str, pos: int) -> int | None:
    """The next wildcard position to narrow (a nibble of the ID, then whole bytes)."""
    for index in range(pos, 16):
        if index < 8:
            if mask[index] == "F":
                return index
        elif index % 2 == 0 and mask[index : index + 2] == "FF":
            if index in (8, 10) and mask[8:12] != "FFFF":
                continue  # manufacturer narrowed through its 4 nibbles below
            return index
    return None


async def _search(
    transact: Transact,
    mask: str,
    pos: int,
    result: SecondaryScan,
    on_found: Callable[[str, bytes], None] | None,
) -> None:
    index = _next_positions(mask, pos)
    if index is None:
        # Fully specified and still colliding: report and give up on it.
        kind, answer = await _probe(transact, mask, result)
        if kind is Answer.FRAME and answer is not None:
            _found(answer, mask, result, on_found)
        elif kind is Answer.COLLISION:
            result.unresolved.append(mask)
        return
    if index < 8:
        candidates = [(mask[:index] + digit + mask[index + 1 :]) for digit in _ID_DIGITS]
        following = index + 1
    else:
        # Manufacturer (two bytes: four nibbles at once is too many probes:
        # narrow it byte by byte), version, medium.
        candidates = [(mask[:index] + f"{value:02X}" + mask[index + 2 :]) for value in range(256)]
        following = index + 2
    for candidate in candidates:
        kind, answer = await _probe(transact, candidate, result)
        if kind is Answer.NONE:
            continue
        if kind is Answer.FRAME and answer is not None:
            _found(answer, candidate, result, on_found)
            continue
        await _search(transact, candidate, following, result, on_found)
    return


def _found(
    answer: bytes, mask: str, result: SecondaryScan, on_found: Callable[[str, bytes], None] | None
) -> None:
    try:
        link = parse_link_frame(answer)
        header = _long_header(link.data[:12], msb=link.ci == CI_VARIABLE_MSB)
    except DecodeError:
        result.unresolved.append(mask)
        return
    address = header.secondary_address
    if address not in result.found and mask_matches(mask, address):
        result.found.append(address)
        if on_found is not None:
            on_found(address, answer)


# ------------------------------------------------------------ application layer


@dataclass(frozen=True, slots=True)
class MbusHeader:
    """The transport header of a variable data response."""

    ident: str  # 8 BCD digits as sent (may hold hex letters in broken meters)
    manufacturer: str
    version: int
    medium: int
    access_no: int
    status: int
    signature: int

    @property
    def secondary_address(self) -> str:
        """16 hex digits: ID, manufacturer code, version, medium (libmbus format)."""
        return secondary_address(self.ident, self.manufacturer, self.version, self.medium)


class Function(IntEnum):
    """The DIF function field."""

    INSTANTANEOUS = 0
    MAXIMUM = 1
    MINIMUM = 2
    ERROR = 3


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One decoded data record."""

    dib: bytes
    vib: bytes
    storage: int
    tariff: int
    subunit: int
    function: Function
    quantity: str  # the VIF meaning, as a key stem ("volume", "flow_temperature")
    suffix: str  # what the orthogonal VIFEs add ("_per_hour", "_last_end_time")
    unit: str | None
    value: RegisterValue
    text_unit: str | None = None  # the unit of a plain-text VIF (7C/FC)

    @property
    def plain(self) -> bool:
        """Storage 0, tariff 0, subunit 0, instantaneous, no orthogonal VIFE."""
        return not (self.storage or self.tariff or self.subunit or self.function or self.suffix)


@dataclass(frozen=True, slots=True)
class UserData:
    """The application layer of one response."""

    ci: int
    header: MbusHeader | None
    records: tuple[DataRecord, ...]
    manufacturer_data: bytes | None = None
    more_records_follow: bool = False


def _fast_builder[T](cls: type[T]) -> Callable[[tuple[object, ...]], T]:
    """A constructor for a frozen slotted dataclass that fills its slots directly.

    The dataclass ``__init__`` goes through ``object.__setattr__`` per field,
    which is most of the decoding time of a 40-record frame; the slot
    descriptors' setters are about twice as fast (the same trick as p1.py).
    """
    setters = tuple(cls.__dict__[f.name].__set__ for f in fields(cast("Any", cls)))
    new = object.__new__

    def build(values: tuple[object, ...]) -> T:
        obj = new(cls)
        for setter, value in zip(setters, values, strict=True):
            setter(obj, value)
        return obj

    return build


_new_record = _fast_builder(DataRecord)
_new_register = _fast_builder(Register)
_FUNCTIONS = tuple(Function)

# Value kinds of a VIF.
_NUM = 0  # a scaled quantity: Decimal in unit
_INT = 1  # a counter or bit field: unsigned int
_ID = 2  # an identifier: digits (BCD) or text
_DATE = 3  # type G (or F/I when the field is longer)
_DATETIME = 4
_MFCT = 5  # manufacturer specific VIF: raw int / hex
_MANUFACTURER = 6  # FD 0A: the 3-letter code

type _VifInfo = tuple[str, str | None, int, int]  # stem, unit, exponent, kind

_TIME_UNITS = ("s", "min", "h", "d")
_LONG_TIME_UNITS = ("h", "d", "months", "years")


def _primary_table() -> list[_VifInfo]:
    table: list[_VifInfo] = [("reserved", None, 0, _INT)] * 128
    for n in range(8):
        table[0x00 + n] = ("energy", "kWh", n - 6, _NUM)
        table[0x08 + n] = ("energy", "GJ", n - 9, _NUM)
        table[0x10 + n] = ("volume", "m3", n - 6, _NUM)
        table[0x18 + n] = ("mass", "kg", n - 3, _NUM)
        table[0x28 + n] = ("power", "W", n - 3, _NUM)
        table[0x30 + n] = ("power", "kJ/h", n - 3, _NUM)
        table[0x38 + n] = ("volume_flow", "m3/h", n - 6, _NUM)
        table[0x40 + n] = ("volume_flow", "m3/min", n - 7, _NUM)
        table[0x48 + n] = ("volume_flow", "m3/s", n - 9, _NUM)
        table[0x50 + n] = ("mass_flow", "kg/h", n - 3, _NUM)
    for n in range(4):
        table[0x20 + n] = ("on_time", _TIME_UNITS[n], 0, _NUM)
        table[0x24 + n] = ("operating_time", _TIME_UNITS[n], 0, _NUM)
        table[0x58 + n] = ("flow_temperature", "°C", n - 3, _NUM)
        table[0x5C + n] = ("return_temperature", "°C", n - 3, _NUM)
        table[0x60 + n] = ("temperature_difference", "K", n - 3, _NUM)
        table[0x64 + n] = ("external_temperature", "°C", n - 3, _NUM)
        table[0x68 + n] = ("pressure", "bar", n - 3, _NUM)
        table[0x70 + n] = ("averaging_duration", _TIME_UNITS[n], 0, _NUM)
        table[0x74 + n] = ("actuality_duration", _TIME_UNITS[n], 0, _NUM)
    table[0x6C] = ("date", None, 0, _DATE)
    table[0x6D] = ("datetime", None, 0, _DATETIME)
    table[0x6E] = ("hca_units", None, 0, _NUM)
    table[0x78] = ("fabrication_number", None, 0, _ID)
    table[0x79] = ("enhanced_identification", None, 0, _ID)
    table[0x7A] = ("bus_address", None, 0, _INT)
    table[0x7E] = ("any_vif", None, 0, _INT)
    table[0x7F] = ("mfct_vif", None, 0, _MFCT)
    return table


def _fd_table() -> list[_VifInfo]:
    table: list[_VifInfo] = [("reserved", None, 0, _INT)] * 128
    for n in range(4):
        table[0x00 + n] = ("credit", "currency", n - 3, _NUM)
        table[0x04 + n] = ("debit", "currency", n - 3, _NUM)
        table[0x24 + n] = ("storage_interval", _TIME_UNITS[n], 0, _NUM)
        table[0x2C + n] = ("duration_since_readout", _TIME_UNITS[n], 0, _NUM)
        table[0x34 + n] = ("tariff_period", _TIME_UNITS[n], 0, _NUM)
        table[0x68 + n] = ("duration_since_cumulation", _LONG_TIME_UNITS[n], 0, _NUM)
        table[0x6C + n] = ("battery_operating_time", _LONG_TIME_UNITS[n], 0, _NUM)
    for n in range(1, 4):
        table[0x30 + n] = ("tariff_duration", _TIME_UNITS[n], 0, _NUM)
    for n in range(16):
        table[0x40 + n] = ("voltage", "V", n - 9, _NUM)
        table[0x50 + n] = ("current", "A", n - 12, _NUM)
    names = {
        0x08: ("access_number", _INT),
        0x09: ("medium", _INT),
        0x0A: ("manufacturer", _MANUFACTURER),
        0x0B: ("parameter_set_id", _ID),
        0x0C: ("model_version", _ID),
        0x0D: ("hardware_version", _ID),
        0x0E: ("firmware_version", _ID),
        0x0F: ("software_version", _ID),
        0x10: ("customer_location", _ID),
        0x11: ("customer", _ID),
        0x12: ("access_code_user", _INT),
        0x13: ("access_code_operator", _INT),
        0x14: ("access_code_system_operator", _INT),
        0x15: ("access_code_developer", _INT),
        0x16: ("password", _INT),
        0x17: ("error_flags", _INT),
        0x18: ("error_mask", _INT),
        0x1A: ("digital_output", _INT),
        0x1B: ("digital_input", _INT),
        0x1E: ("retry", _INT),
        0x1F: ("remote_control", _INT),
        0x20: ("first_storage", _INT),
        0x21: ("last_storage", _INT),
        0x22: ("storage_block_size", _INT),
        0x30: ("tariff_start", _DATETIME),
        0x60: ("reset_counter", _INT),
        0x61: ("cumulation_counter", _INT),
        0x62: ("control_signal", _INT),
        0x63: ("day_of_week", _INT),
        0x64: ("week_number", _INT),
        0x65: ("day_change_time", _INT),
        0x66: ("parameter_activation_state", _INT),
        0x67: ("special_supplier_information", _INT),
        0x70: ("battery_change_datetime", _DATETIME),
        0x72: ("daylight_saving", _INT),
        0x73: ("listening_window", _INT),
        0x75: ("meter_stops", _INT),
        0x76: ("manufacturer_protocol_data", _MFCT),
    }
    for code, (name, kind) in names.items():
        table[code] = (name, None, 0, kind)
    table[0x1C] = ("baudrate", "Bd", 0, _NUM)
    table[0x1D] = ("response_delay", "bittimes", 0, _NUM)
    table[0x28] = ("storage_interval", "months", 0, _NUM)
    table[0x29] = ("storage_interval", "years", 0, _NUM)
    table[0x38] = ("tariff_period", "months", 0, _NUM)
    table[0x39] = ("tariff_period", "years", 0, _NUM)
    table[0x3A] = ("dimensionless", None, 0, _NUM)
    table[0x71] = ("rf_level", "dBm", 0, _NUM)
    table[0x74] = ("remaining_battery_life", "d", 0, _NUM)
    return table


def _fb_table() -> list[_VifInfo]:
    table: list[_VifInfo] = [("reserved", None, 0, _INT)] * 128
    for n in range(2):
        table[0x00 + n] = ("energy", "MWh", n - 1, _NUM)
        table[0x08 + n] = ("energy", "GJ", n - 1, _NUM)
        table[0x10 + n] = ("volume", "m3", n + 2, _NUM)
        table[0x18 + n] = ("mass", "t", n + 2, _NUM)
        table[0x1A + n] = ("relative_humidity", "%", n - 1, _NUM)
        table[0x22 + n] = ("volume", "gal", n - 1, _NUM)
        table[0x28 + n] = ("power", "MW", n - 1, _NUM)
        table[0x30 + n] = ("power", "GJ/h", n - 1, _NUM)
    table[0x21] = ("volume", "ft3", -1, _NUM)
    table[0x24] = ("volume_flow", "gal/min", -3, _NUM)
    table[0x25] = ("volume_flow", "gal/min", 0, _NUM)
    table[0x26] = ("volume_flow", "gal/h", 0, _NUM)
    for n in range(4):
        table[0x58 + n] = ("flow_temperature", "°F", n - 3, _NUM)
        table[0x5C + n] = ("return_temperature", "°F", n - 3, _NUM)
        table[0x60 + n] = ("temperature_difference", "°F", n - 3, _NUM)
        table[0x64 + n] = ("external_temperature", "°F", n - 3, _NUM)
        table[0x70 + n] = ("temperature_limit", "°F", n - 3, _NUM)
        table[0x74 + n] = ("temperature_limit", "°C", n - 3, _NUM)
    for n in range(8):
        table[0x78 + n] = ("cumulative_max_power_count", "W", n - 3, _NUM)
    return table


_PRIMARY = _primary_table()
_EXT_FD = _fd_table()
_EXT_FB = _fb_table()

# Orthogonal (combinable) VIFE codes, EN 13757-3:2013 table 15: key suffixes.
_ORTHOGONAL: dict[int, str] = {
    0x12: "_average",
    0x13: "_inverse_compact_profile",
    0x14: "_relative_deviation",
    0x1D: "_standard_conform",
    0x1E: "_compact_profile_registers",
    0x1F: "_compact_profile",
    0x20: "_per_second",
    0x21: "_per_minute",
    0x22: "_per_hour",
    0x23: "_per_day",
    0x24: "_per_week",
    0x25: "_per_month",
    0x26: "_per_year",
    0x27: "_per_measurement",
    0x28: "_per_input_pulse_0",
    0x29: "_per_input_pulse_1",
    0x2A: "_per_output_pulse_0",
    0x2B: "_per_output_pulse_1",
    0x2C: "_per_litre",
    0x2D: "_per_m3",
    0x2E: "_per_kg",
    0x2F: "_per_kelvin",
    0x30: "_per_kwh",
    0x31: "_per_gj",
    0x32: "_per_kw",
    0x33: "_per_kelvin_litre",
    0x34: "_per_volt",
    0x35: "_per_ampere",
    0x36: "_times_s",
    0x37: "_times_s_per_v",
    0x38: "_times_s_per_a",
    0x39: "_start_date",
    0x3A: "_uncorrected",
    0x3B: "_forward",
    0x3C: "_backward",
    0x3E: "_base_conditions",
    0x3F: "_obis",
    0x40: "_lower_limit",
    0x48: "_upper_limit",
    0x41: "_lower_limit_exceeds",
    0x49: "_upper_limit_exceeds",
    0x68: "_during_lower_limit_exceed",
    0x6C: "_during_upper_limit_exceed",
    0x69: "_leakage",
    0x6D: "_overflow",
    0x7E: "_future",
}
# Extension of combinable VIFE codes (after VIFE FC), EN 13757-3:2018 table 16.
_EXTENDED_ORTHOGONAL: dict[int, str] = {
    0x00: "",
    0x01: "_l1",
    0x02: "_l2",
    0x03: "_l3",
    0x04: "_neutral",
    0x05: "_l1_l2",
    0x06: "_l2_l3",
    0x07: "_l3_l1",
    0x08: "_q1",
    0x09: "_q2",
    0x0A: "_q3",
    0x0B: "_q4",
    0x0C: "_import_minus_export",
    0x10: "_absolute",
}
_UNIT_SUFFIX = {
    0x20: "/s",
    0x21: "/min",
    0x22: "/h",
    0x23: "/d",
    0x24: "/week",
    0x25: "/month",
    0x26: "/year",
}
_FIRST_LAST = ("first", "last")
_BEGIN_END = ("begin", "end")
_LOWER_UPPER = ("lower", "upper")
# Date(/time) of ...: E100 uf1b and E110 1f1b (and E011 1001 start date).
_DATE_OF: set[int] = {0x39}
for _u in range(2):
    for _f in range(2):
        for _b in range(2):
            _code = 0x42 | (_u << 3) | (_f << 2) | _b
            _ORTHOGONAL[_code] = f"_{_LOWER_UPPER[_u]}_limit_{_FIRST_LAST[_f]}_{_BEGIN_END[_b]}_time"
            _DATE_OF.add(_code)
        for _nn in range(4):
            _ORTHOGONAL[0x50 | (_u << 3) | (_f << 2) | _nn] = (
                f"_{_LOWER_UPPER[_u]}_limit_{_FIRST_LAST[_f]}_duration_{_TIME_UNITS[_nn]}"
            )
for _f in range(2):
    for _nn in range(4):
        _ORTHOGONAL[0x60 | (_f << 2) | _nn] = f"_{_FIRST_LAST[_f]}_duration_{_TIME_UNITS[_nn]}"
    for _b in range(2):
        _code = 0x6A | (_f << 2) | _b
        _ORTHOGONAL[_code] = f"_{_FIRST_LAST[_f]}_{_BEGIN_END[_b]}_time"
        _DATE_OF.add(_code)
for _e in range(0x15, 0x1D):
    _ORTHOGONAL[_e] = f"_record_error_{_e - 0x14}"

# Data field: (length in bytes, coding) for DIF & 0x0F.
_BIN, _BCD, _REAL, _NODATA, _VAR = 0, 1, 2, 3, 4
_DATA_FIELD: dict[int, tuple[int, int]] = {
    0x0: (0, _NODATA),
    0x1: (1, _BIN),
    0x2: (2, _BIN),
    0x3: (3, _BIN),
    0x4: (4, _BIN),
    0x5: (4, _REAL),
    0x6: (6, _BIN),
    0x7: (8, _BIN),
    0x8: (0, _NODATA),  # selection for readout (master to slave)
    0x9: (1, _BCD),
    0xA: (2, _BCD),
    0xB: (3, _BCD),
    0xC: (4, _BCD),
    0xD: (0, _VAR),
    0xE: (6, _BCD),
}

_SLUG = re.compile(r"[^a-z0-9]+")
_DIF_MANUFACTURER = 0x0F
_DIF_MORE_FOLLOW = 0x1F
_DIF_FILLER = 0x2F
_MAX_DIFE = 10
_MAX_VIFE = 10


def _bcd(data: bytes) -> int | None:
    """Little-endian BCD; a leading ``F`` nibble makes it negative. None if not BCD."""
    digits = data[::-1].hex()
    negative = digits[0] == "f"
    if negative:
        digits = digits[1:]
    if not digits.isdecimal():
        return None if digits else (0 if negative else None)
    value = int(digits)
    return -value if negative else value


def _float32_decimal(data: bytes) -> Decimal | None:
    """The shortest decimal that reads back as the same 32-bit float."""
    value = struct.unpack("<f", data)[0]
    if not math.isfinite(value):
        return None
    for digits in range(6, 10):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == data:
            return Decimal(text)
    return Decimal(repr(value))  # pragma: no cover - 9 digits always round-trip


def _type_f(data: bytes, tz: tzinfo) -> datetime | None:
    """Type F (CP32) date and time; None when marked invalid or impossible."""
    b0, b1, b2, b3 = data[0], data[1], data[2], data[3]
    if b0 & 0x80:
        return None
    year = ((b2 & 0xE0) >> 5) | ((b3 & 0xF0) >> 1)
    hundred = (b1 & 0x60) >> 5
    if hundred == 0 and year <= 80:
        hundred = 1  # two-digit years of meters that predate the century bits
    try:
        return datetime(
            1900 + 100 * hundred + year,
            b3 & 0x0F,
            b2 & 0x1F,
            b1 & 0x1F,
            b0 & 0x3F,
            tzinfo=tz,
            fold=0 if b1 & 0x80 else 1,
        )
    except ValueError:
        return None


def _type_g(data: bytes, tz: tzinfo) -> datetime | None:
    """Type G (CP16) date, as midnight in ``tz``; None for ``FFFF`` or impossible."""
    b0, b1 = data[0], data[1]
    year = ((b0 & 0xE0) >> 5) | ((b1 & 0xF0) >> 1)
    try:
        return datetime(2000 + year if year <= 80 else 1900 + year, b1 & 0x0F, b0 & 0x1F, tzinfo=tz)
    except ValueError:
        return None


def _type_i(data: bytes, tz: tzinfo) -> datetime | None:
    """Type I (CP48) date and time with seconds."""
    if data[1] & 0x80:
        return None
    year = ((data[3] & 0xE0) >> 5) | ((data[4] & 0xF0) >> 1)
    try:
        return datetime(
            2000 + year if year <= 80 else 1900 + year,
            data[4] & 0x0F,
            data[3] & 0x1F,
            data[2] & 0x1F,
            data[1] & 0x3F,
            data[0] & 0x3F,
            tzinfo=tz,
            fold=0 if data[0] & 0x40 else 1,
        )
    except ValueError:
        return None


def _datetime_value(data: bytes, tz: tzinfo) -> datetime | None:
    size = len(data)
    if size == 4:
        return _type_f(data, tz)
    if size == 2:
        return _type_g(data, tz)
    return _type_i(data, tz)  # size 6: the caller passes 2, 4 or 6 bytes


def _scaled(raw: int, exponent: int) -> Decimal:
    if exponent >= 0:
        return Decimal(raw * 10**exponent)
    return Decimal(raw).scaleb(exponent)


def _long_header(data: bytes, msb: bool = False) -> MbusHeader:
    if len(data) < 12:
        raise DecodeError(f"variable data header too short: {len(data)} of 12 bytes")
    ident = data[0:4]
    man = data[4:6]
    sig = data[10:12]
    if msb:
        ident, man, sig = ident[::-1], man[::-1], sig[::-1]
    return MbusHeader(
        ident=ident[::-1].hex().upper(),
        manufacturer=manufacturer_text(man[0] | man[1] << 8),
        version=data[6],
        medium=data[7],
        access_no=data[8],
        status=data[9],
        signature=sig[0] | sig[1] << 8,
    )


def _lvar(lvar: int) -> tuple[int, int]:
    """(length in bytes, coding) announced by an LVAR byte."""
    if lvar <= 0xBF:
        return lvar, _VAR  # text
    if 0xC0 <= lvar <= 0xC9:
        return lvar - 0xC0, _BCD
    if 0xD0 <= lvar <= 0xD9:
        return lvar - 0xD0, -_BCD  # negative BCD
    if 0xE0 <= lvar <= 0xEF:
        return lvar - 0xE0, _BIN
    if 0xF0 <= lvar <= 0xFA:
        return 4 * (lvar - 0xEC), _BIN
    raise DecodeError(f"reserved LVAR {lvar:02X}")


def parse_records(
    data: bytes, *, tz: tzinfo = DEFAULT_TZ, msb: bool = False
) -> tuple[list[DataRecord], bytes | None, bool]:
    """Decode the data records of a variable data structure.

    Returns (records, manufacturer data after DIF 0F/1F or None, whether
    DIF 1F said more records follow). Raises :class:`DecodeError` for a
    record cut short or malformed.
    """
    records: list[DataRecord] = []
    append = records.append
    size = len(data)
    pos = 0
    primary = _PRIMARY
    while pos < size:
        dif = data[pos]
        if dif == _DIF_FILLER:
            pos += 1
            continue
        if dif in (_DIF_MANUFACTURER, _DIF_MORE_FOLLOW):
            return records, bytes(data[pos + 1 :]), dif == _DIF_MORE_FOLLOW
        start = pos
        coding_code = dif & 0x0F
        if coding_code == 0x0F:
            raise DecodeError(f"reserved special-function DIF {dif:02X} at byte {pos}")
        length, coding = _DATA_FIELD[coding_code]
        storage = (dif >> 6) & 1
        tariff = subunit = 0
        pos += 1
        if dif & 0x80:
            shift = 0
            while True:
                if pos >= size:
                    raise DecodeError("data record cut short in its DIFE")
                if shift >= _MAX_DIFE:
                    raise DecodeError("more than 10 DIFE in one record")
                dife = data[pos]
                pos += 1
                storage |= (dife & 0x0F) << (1 + 4 * shift)
                tariff |= ((dife >> 4) & 0x03) << (2 * shift)
                subunit |= ((dife >> 6) & 0x01) << shift
                shift += 1
                if not dife & 0x80:
                    break
        dib = data[start:pos]
        if pos >= size:
            raise DecodeError("data record cut short before its VIF")
        vib_start = pos
        vif = data[pos]
        pos += 1
        text_unit: str | None = None
        code = vif & 0x7F
        if code == 0x7C:
            if pos >= size:
                raise DecodeError("plain-text VIF cut short")
            text_len = data[pos]
            if pos + 1 + text_len > size:
                raise DecodeError("plain-text VIF cut short")
            text_unit = data[pos + 1 : pos + 1 + text_len][::-1].decode("latin-1")
            pos += 1 + text_len
        vifes: list[int] = []
        more = vif & 0x80
        while more:
            if pos >= size:
                raise DecodeError("data record cut short in its VIFE")
            if len(vifes) >= _MAX_VIFE:
                raise DecodeError("more than 10 VIFE in one record")
            vife = data[pos]
            pos += 1
            vifes.append(vife)
            more = vife & 0x80
        vib = data[vib_start:pos]
        # What the VIF says.
        orthogonal = vifes
        if vif in (0xFD, 0xFB):  # both have the extension bit: vifes holds at least one
            stem, unit, exponent, kind = (_EXT_FD if vif == 0xFD else _EXT_FB)[vifes[0] & 0x7F]
            if stem == "reserved":
                stem = f"vif_{vif:02x}_{vifes[0] & 0x7F:02x}"
            orthogonal = vifes[1:]
        elif code == 0x7C:
            slug = _SLUG.sub("_", (text_unit or "").lower()).strip("_")
            stem, unit, exponent, kind = "text_" + (slug or "vif"), text_unit, 0, _NUM
        elif code in (0x7B, 0x7D):
            stem, unit, exponent, kind = f"vif_{code:02x}", None, 0, _INT  # extension code without VIFE
        else:
            stem, unit, exponent, kind = primary[code]
            if stem == "reserved":
                stem = f"vif_{code:02x}"
            elif kind == _MFCT:
                stem = "mfct_vif" + "".join(f"_{v & 0x7F:02x}" for v in vifes)
                orthogonal = []
        suffix = ""
        date_of = False
        extended = False
        for vife in orthogonal:
            ocode = vife & 0x7F
            if extended:
                # After FC: the extended combinable table (phases, quadrants).
                suffix += _EXTENDED_ORTHOGONAL.get(ocode, f"_ext_{ocode:02x}")
                extended = False
            elif 0x70 <= ocode <= 0x77:
                exponent += ocode - 0x76
            elif ocode == 0x7D:
                exponent += 3
            elif 0x78 <= ocode <= 0x7B:
                suffix += f"_offset_{ocode & 3}"  # additive correction: flagged, not applied
            elif ocode == 0x7F:
                suffix += "_mfct"
                break  # the rest of the VIFEs and the data are manufacturer specific
            elif ocode == 0x7C:
                extended = True
            elif ocode <= 0x0F:
                if ocode:
                    suffix += f"_action_{ocode:02x}"
            else:
                label = _ORTHOGONAL.get(ocode)
                if label is None:
                    label = f"_vife_{ocode:02x}"
                suffix += label
                if ocode in _DATE_OF:
                    date_of = True
                elif ocode in _UNIT_SUFFIX and unit is not None:
                    unit += _UNIT_SUFFIX[ocode]
        # The data field.
        if coding == _VAR:
            if pos >= size:
                raise DecodeError("variable-length record cut short before its LVAR")
            length, coding = _lvar(data[pos])
            pos += 1
        if pos + length > size:
            raise DecodeError(f"data record cut short: {length} data bytes announced, {size - pos} left")
        raw = data[pos : pos + length]
        pos += length
        if msb and coding != _VAR and length > 1:
            raw = raw[::-1]
        value: RegisterValue
        if date_of:
            kind = _DATETIME
            unit = None
        if coding == _NODATA:
            value = None
        elif coding == _VAR:  # text, whatever the VIF (a date too)
            value = raw[::-1].decode("latin-1")
            if kind == _NUM:
                unit = text_unit if code == 0x7C else unit
        elif kind in (_DATETIME, _DATE):
            if coding == _BIN and length in (2, 4, 6):
                value = _datetime_value(raw, tz)
            elif coding == _BIN and length == 3 and kind == _DATETIME:
                value = raw[::-1].hex()  # type J time of day, kept as hex hhmmss
            else:
                value = _plain_value(raw, coding, signed=True)
        elif kind == _NUM:
            number = _plain_value(raw, coding, signed=True)
            if isinstance(number, int):
                value = _scaled(number, exponent)
            elif isinstance(number, Decimal):
                value = number.scaleb(exponent) if exponent else number
            else:
                value = number
        elif kind == _ID:
            if coding in (_BCD, -_BCD):
                value = raw[::-1].hex().upper()
            else:
                value = str(int.from_bytes(raw, "little"))
        elif kind == _MANUFACTURER and coding == _BIN and length == 2:
            value = manufacturer_text(raw[0] | raw[1] << 8)
        elif coding == _BIN:
            value = int.from_bytes(raw, "little", signed=kind == _MFCT)
        else:
            value = _plain_value(raw, coding, signed=False)
        append(
            _new_record(
                (
                    bytes(dib),
                    bytes(vib),
                    storage,
                    tariff,
                    subunit,
                    _FUNCTIONS[(dif >> 4) & 0x03],
                    stem,
                    suffix,
                    unit,
                    value,
                    text_unit,
                )
            )
        )
    return records, None, False


def _plain_value(raw: bytes, coding: int, signed: bool) -> int | Decimal | str | None:
    if coding == _BIN:
        if len(raw) > 8:
            return raw[::-1].hex(" ").upper()  # a long LVAR binary number: hex, most significant byte first
        return int.from_bytes(raw, "little", signed=signed)
    if coding == _BCD:
        return _bcd(raw)
    if coding == -_BCD:
        number = _bcd(raw)
        return -number if number is not None else None
    return _float32_decimal(raw)  # _REAL: no-data and LVAR text never come here


def parse_user_data(
    ci: int, data: bytes, *, tz: tzinfo = DEFAULT_TZ, header: MbusHeader | None = None
) -> UserData:
    """Decode the application layer after the CI field.

    CI ``72``/``76``: 12-byte long header then records; ``7A``: 4-byte short
    header (access number, status, signature; the rest comes from the
    wireless link layer, pass it as ``header``); ``78``: no header.
    """
    msb = ci == CI_VARIABLE_MSB
    if ci in (CI_VARIABLE, CI_VARIABLE_MSB):
        header = _long_header(data, msb)
        body = data[12:]
    elif ci == CI_VARIABLE_SHORT:
        if len(data) < 4:
            raise DecodeError(f"short header too short: {len(data)} of 4 bytes")
        base = header or MbusHeader("00000000", "@@@", 0, 0, 0, 0, 0)
        header = MbusHeader(
            base.ident, base.manufacturer, base.version, base.medium, data[0], data[1], data[2] | data[3] << 8
        )
        body = data[4:]
    elif ci == CI_VARIABLE_NO_HEADER:
        body = data
    else:
        raise DecodeError(f"CI {ci:02X} is not a variable data response")
    if header is not None:
        # EN 13757-3:2004 meters fill the signature with anything (FFFF, or
        # random bytes), so only the AES modes with an encrypted-looking
        # payload (no 2F 2F check bytes) count as encrypted.
        mode = (header.signature >> 8) & 0x1F
        if mode in _AES_MODES and body[:2] != b"\x2f\x2f":
            raise KeyRequiredError(f"encrypted M-Bus payload (security mode {mode}); decrypt it first")
    records, mfct, more = parse_records(body, tz=tz, msb=msb)
    return UserData(ci, header, tuple(records), mfct, more)


_AES_MODES = frozenset((5, 7, 8, 9, 10, 13))

# EN 13757-3 medium codes -> the meter model.
MBUS_MEDIUM: dict[int, Medium] = {
    0x02: Medium.ELECTRICITY,
    0x03: Medium.GAS,
    0x04: Medium.HEAT,
    0x06: Medium.HOT_WATER,
    0x07: Medium.WATER,
    0x0A: Medium.COOLING,
    0x0B: Medium.COOLING,
    0x0C: Medium.HEAT,
    0x0D: Medium.HEAT,
    0x15: Medium.HOT_WATER,
    0x16: Medium.WATER,
    0x17: Medium.WATER,
    0x28: Medium.WATER,  # waste water
    0x08: Medium.HEAT_COST_ALLOCATOR,
}
MEDIUM_HEAT_COST_ALLOCATOR = 0x08

MEDIUM_NAMES: dict[int, str] = {
    0x00: "other",
    0x01: "oil",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat (outlet)",
    0x05: "steam",
    0x06: "warm water",
    0x07: "water",
    0x08: "heat cost allocator",
    0x09: "compressed air",
    0x0A: "cooling (outlet)",
    0x0B: "cooling (inlet)",
    0x0C: "heat (inlet)",
    0x0D: "heat / cooling",
    0x0E: "bus / system component",
    0x0F: "unknown",
    0x15: "hot water",
    0x16: "cold water",
    0x17: "dual register water",
    0x18: "pressure",
    0x19: "A/D converter",
    0x1A: "smoke detector",
    0x1B: "room sensor",
    0x1C: "gas detector",
    0x20: "breaker (electricity)",
    0x21: "valve (gas or water)",
    0x25: "customer unit",
    0x28: "waste water",
    0x29: "garbage",
    0x2A: "carbon dioxide",
    0x31: "communication controller",
    0x32: "unidirectional repeater",
    0x33: "bidirectional repeater",
    0x36: "radio converter (system side)",
    0x37: "radio converter (meter side)",
}

# The stem of the record that is "the" reading of each medium.
_READING_STEM: dict[Medium, tuple[str, ...]] = {
    Medium.GAS: ("volume",),
    Medium.WATER: ("volume",),
    Medium.HOT_WATER: ("volume",),
    Medium.HEAT: ("energy",),
    Medium.COOLING: ("energy",),
    Medium.ELECTRICITY: ("energy",),
}
_FUNCTION_SUFFIX = ("", "_max", "_min", "_error")


def _electricity_key(rec: DataRecord) -> str | None:
    """P1 keys for electricity records an M-Bus meter states plainly."""
    if rec.storage or rec.subunit or rec.function:
        return None
    if rec.quantity == "energy" and rec.suffix in ("", "_forward", "_backward"):
        direction = "export" if rec.suffix == "_backward" else "import"
        if rec.tariff == 0:
            key = f"energy_{direction}_total"
        elif rec.tariff <= 4:
            key = f"energy_{direction}_tariff_{rec.tariff}"
        else:
            return None
        return key if key in _P1_KEYS else None
    if (
        rec.quantity == "power"
        and rec.unit == "W"
        and rec.suffix in ("", "_forward", "_backward")
        and not rec.tariff
    ):
        return "power_export" if rec.suffix == "_backward" else "power_import"
    return None


_P1_KEYS = {key for key, _kind in MAIN_REGISTERS.values()}


def record_key(rec: DataRecord) -> str:
    """The generic stable key of a record (before medium readings and repeats)."""
    key = rec.quantity + rec.suffix + _FUNCTION_SUFFIX[rec.function]
    if rec.tariff:
        key += f"_tariff_{rec.tariff}"
    if rec.subunit:
        key += f"_subunit_{rec.subunit}"
    if rec.storage:
        key += f"_storage_{rec.storage}"
    return key


def meter_registers(user: UserData, medium: Medium) -> tuple[list[Register], datetime | None]:
    """The registers of one response, and the meter's own date and time."""
    reading_stems = _READING_STEM.get(medium, ())
    reading_key = READING_KEY.get(medium)
    stamps: dict[int, datetime] = {}
    meter_time: datetime | None = None
    for rec in user.records:
        if (
            rec.quantity in ("datetime", "date")
            and not (rec.suffix or rec.tariff or rec.subunit or rec.function)
            and isinstance(rec.value, datetime)
            and rec.storage not in stamps
        ):
            if rec.quantity == "datetime" or rec.storage:
                stamps[rec.storage] = rec.value
            if rec.storage == 0 and rec.quantity == "datetime" and meter_time is None:
                meter_time = rec.value
    registers: list[Register] = []
    seen: dict[str, int] = {}
    reading_done: set[int] = set()
    # The storage number of "the" reading: 0, or for meters that send only
    # stamped stored values (Landis+Gyr G350: the last hourly value under
    # storage 1 with its date/time) the lowest storage that has a stamp.
    storages = {
        rec.storage
        for rec in user.records
        if rec.quantity in reading_stems
        and rec.suffix in ("", "_forward")
        and not (rec.tariff or rec.subunit or rec.function)
    }
    reading_storage = 0
    if storages and 0 not in storages:
        stamped = sorted(storages & stamps.keys())
        if stamped:
            reading_storage = stamped[0]
            if meter_time is None:
                meter_time = stamps[reading_storage]
    for rec in user.records:
        key: str | None = None
        if (
            reading_key
            and rec.quantity in reading_stems
            and not (rec.tariff or rec.subunit or rec.function)
            and rec.suffix in ("", "_forward")
            and rec.storage not in reading_done
        ):
            reading_done.add(rec.storage)
            key = reading_key if rec.storage == reading_storage else f"{reading_key}_storage_{rec.storage}"
        if key is None and medium is Medium.ELECTRICITY:
            key = _electricity_key(rec)
        if key is None:
            key = record_key(rec)
        count = seen.get(key, 0) + 1
        seen[key] = count
        if count > 1:
            key = f"{key}_{count}"
        obis = f"mbus:{rec.dib.hex().upper()}/{rec.vib.hex().upper()}"
        registers.append(_new_register((obis, key, rec.value, rec.unit, stamps.get(rec.storage), ())))
    if user.manufacturer_data:
        registers.append(Register("mbus:0F", "manufacturer_data", user.manufacturer_data.hex().upper()))
    if user.more_records_follow:
        registers.append(Register("mbus:1F", "more_records_follow", 1))
    return registers, meter_time


def _fixed_registers(data: bytes, tz: tzinfo) -> tuple[MbusHeader, list[Register]]:
    """CI 73/77: the fixed data structure (ID, access no, status, medium/units, 2 counters)."""
    if len(data) != 16:
        raise DecodeError(f"fixed data structure of {len(data)} bytes (16 expected)")
    status = data[5]
    medium_units = data[6] | data[7] << 8
    medium = ((medium_units >> 6) & 0x03) | ((medium_units >> 12) & 0x0C)
    header = MbusHeader(data[3::-1].hex().upper(), "@@@", 0, medium, data[4], status, 0)
    registers = []
    for index, (unit_code, raw) in enumerate(
        ((medium_units & 0x3F, data[8:12]), ((medium_units >> 8) & 0x3F, data[12:16]))
    ):
        number = _bcd(raw) if not status & 0x80 else int.from_bytes(raw, "little")
        stem, unit, exponent = _FIXED_UNITS.get(unit_code, (f"fixed_unit_{unit_code:02x}", None, 0))
        value = _scaled(number, exponent) if number is not None else None
        key = f"counter_{index + 1}_{stem}" + ("_stored" if status & 0x40 else "")
        registers.append(Register(f"mbus:fixed{index + 1}", key, value, unit))
    return header, registers


_FIXED_UNITS: dict[int, tuple[str, str | None, int]] = {}
for _n in range(9):
    _FIXED_UNITS[0x02 + _n] = ("energy", "kWh", _n - 3)
    _FIXED_UNITS[0x0B + _n] = ("energy", "GJ", _n - 6)
    _FIXED_UNITS[0x14 + _n] = ("power", "W", _n)
    _FIXED_UNITS[0x26 + _n] = ("volume", "m3", _n - 6)
_FIXED_UNITS[0x3F] = ("count", None, 0)


def decode_mbus(raw: bytes, *, tz: tzinfo = DEFAULT_TZ) -> Frame:
    """Decode one RSP_UD long frame (as :class:`MbusFramer` cuts them).

    The slave becomes one :class:`Meter`: id = its 8-digit secondary-address
    ID, serial_number = the full 16-digit secondary address, manufacturer =
    the 3-letter code; the meter's date/time record (storage 0) is the
    timestamp of its readings. Raises :class:`ChecksumError` for a bad
    checksum and :class:`DecodeError` for anything that is not a decodable
    data response (E5, short frames, application errors, truncation).
    """
    link = parse_link_frame(bytes(raw))
    if link.kind is not FrameKind.LONG or link.ci is None:
        raise DecodeError(f"{link.kind.name} frame carries no data")
    ci = link.ci
    if ci == CI_ERROR:
        code = link.data[0] if link.data else 0
        raise DecodeError(
            f"slave {link.a} reports application error {code:02X}: {_APP_ERRORS.get(code, 'reserved')}"
        )
    if ci in (CI_FIXED, CI_FIXED_MSB):
        fixed, fixed_registers = _fixed_registers(link.data, tz)
        fixed_registers.append(Register("mbus:status", "status", fixed.status))
        fixed_medium = MBUS_MEDIUM.get(fixed.medium, Medium.UNKNOWN)
        fixed_meter = Meter(
            fixed.ident, fixed_medium, 0, tuple(fixed_registers), None, None, None, fixed.ident, None
        )
        return Frame(PROTOCOL, Integrity.VALID, (fixed_meter,), bytes(raw), fixed.ident, None, False)
    user = parse_user_data(ci, link.data, tz=tz)
    header = user.header
    if header is None:
        ident = f"primary-{link.a}"
        medium = Medium.UNKNOWN
        serial = None
        manufacturer = None
        version = None
    else:
        ident = header.ident
        medium = MBUS_MEDIUM.get(header.medium, Medium.UNKNOWN)
        serial = header.secondary_address
        manufacturer = header.manufacturer
        version = str(header.version)
    registers, meter_time = meter_registers(user, medium)
    if header is not None:
        registers.append(Register("mbus:status", "status", header.status))
        registers.append(Register("mbus:access_no", "access_number", header.access_no))
    model = MEDIUM_NAMES.get(header.medium) if header is not None else None
    meter = Meter(ident, medium, 0, tuple(registers), meter_time, manufacturer, model, serial, None)
    return Frame(PROTOCOL, Integrity.VALID, (meter,), bytes(raw), serial, version, False)


_APP_ERRORS = {
    0x00: "unspecified error",
    0x01: "unimplemented CI field",
    0x02: "buffer too long, truncated",
    0x03: "too many records",
    0x04: "premature end of record",
    0x05: "more than 10 DIFE",
    0x06: "more than 10 VIFE",
    0x08: "application busy",
    0x09: "too many readouts",
}
