"""P1 / DSMR telegram decoder: one generic OBIS line parser for every variant.

It reads DSMR 2.2, 3, 4.x and 5.x, Belgian e-MUCS, Luxembourg Smarty and the
Swedish, Austrian, Hungarian and Irish P1 flavours without being told which:
every ``OBIS(group)(group)...`` line is decoded, the CRC16 is checked when the
telegram carries one, and M-Bus channels become sub-meters.

Encrypted Smarty frames (general-global-cipher, first byte 0xDB) are decrypted
first with the user's key (see :mod:`.smarty`).

The decoder runs for every telegram (once a second on DSMR 5), so the common
lines take short paths: a known number such as ``1-0:1.8.1(001581.123*kWh)`` is
checked with two string methods and converted straight to ``Decimal``, and the
frozen dataclasses are filled through their slot descriptors rather than their
(slower) ``__init__``.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .crc import crc16_arc
from .errors import DecodeError
from .models import Frame, HistoryEntry, Integrity, Medium, Meter, Register, RegisterValue
from .obis import (
    MAIN_REGISTERS,
    MBUS_MEDIUM,
    MBUS_REGISTERS,
    OBIS_A_MEDIUM,
    READING_KEY,
    Kind,
    generic_key,
)
from .smarty import GCM_TAG, decrypt_frame

PROTOCOL = "dsmr"
DEFAULT_TZ = ZoneInfo("Europe/Amsterdam")

_new = object.__new__


def _setters(cls: type) -> tuple[Any, ...]:
    """The slot descriptors' setters of a frozen slotted dataclass, in field order.

    Filling the slots through them builds an instance about twice as fast as the
    dataclass ``__init__``, which goes through ``object.__setattr__`` per field.
    """
    return tuple(cls.__dict__[field.name].__set__ for field in fields(cls))


_REG_SET = _setters(Register)


def _reg(
    obis: str,
    key: str,
    value: RegisterValue,
    unit: str | None = None,
    timestamp: datetime | None = None,
    history: tuple[HistoryEntry, ...] = (),
) -> Register:
    """Build a frozen Register at plain-object speed."""
    reg = _new(Register)
    s_obis, s_key, s_value, s_unit, s_stamp, s_hist = _REG_SET
    s_obis(reg, obis)
    s_key(reg, key)
    s_value(reg, value)
    s_unit(reg, unit)
    s_stamp(reg, timestamp)
    s_hist(reg, history)
    return reg


_METER_SET = _setters(Meter)
_FRAME_SET = _setters(Frame)
_ENTRY_SET = _setters(HistoryEntry)


def _meter(
    meter_id: str,
    medium: Medium,
    channel: int,
    registers: tuple[Register, ...],
    timestamp: datetime | None,
    manufacturer: str | None,
    model: str | None,
    serial_number: str | None,
    parent_id: str | None,
) -> Meter:
    """Build a frozen Meter at plain-object speed."""
    meter = _new(Meter)
    (s_id, s_medium, s_channel, s_registers, s_stamp, s_manufacturer, s_model, s_serial, s_parent, s_name) = (
        _METER_SET
    )
    s_id(meter, meter_id)
    s_medium(meter, medium)
    s_channel(meter, channel)
    s_registers(meter, registers)
    s_stamp(meter, timestamp)
    s_manufacturer(meter, manufacturer)
    s_model(meter, model)
    s_serial(meter, serial_number)
    s_parent(meter, parent_id)
    s_name(meter, None)
    return meter


def _frame(
    integrity: Integrity,
    meters: tuple[Meter, ...],
    raw: bytes,
    header: str | None,
    version: str | None,
    encrypted: bool,
) -> Frame:
    """Build a frozen P1 Frame at plain-object speed."""
    frame = _new(Frame)
    s_protocol, s_integrity, s_meters, s_raw, s_header, s_version, s_encrypted = _FRAME_SET
    s_protocol(frame, PROTOCOL)
    s_integrity(frame, integrity)
    s_meters(frame, meters)
    s_raw(frame, raw)
    s_header(frame, header)
    s_version(frame, version)
    s_encrypted(frame, encrypted)
    return frame


def _entry(
    timestamp: datetime | None, value: Decimal | None, unit: str | None, start: datetime | None
) -> HistoryEntry:
    """Build a frozen HistoryEntry at plain-object speed."""
    entry = _new(HistoryEntry)
    s_stamp, s_value, s_unit, s_start = _ENTRY_SET
    s_stamp(entry, timestamp)
    s_value(entry, value)
    s_unit(entry, unit)
    s_start(entry, start)
    return entry


# One data line: the OBIS code (empty on a DSMR 2.2 continuation line) and
# the text between the first "(" and the last ")".
_LINE = re.compile(r"^([^(\r\n]*+)\((.*)\)[ \t]*+\r?$", re.MULTILINE)
# What may follow the "!": up to four hex digits of CRC (some meters drop a
# leading zero), then the line end.
_CRC_LINE = re.compile(rb"([0-9A-Fa-f]{0,4})[ \t]*(?:\r?\n|\r|$)")
_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")
# A value with its unit glued on, no "*" (some Fluvius firmware): "000123.456kWh".
_NUMBER_UNIT = re.compile(r"([-+]?[0-9]+(?:\.[0-9]+)?)([A-Za-z][A-Za-z0-9]{0,7})")


def _check_crc(raw: bytes, start: int, bang: int) -> Integrity:
    """Verdict on the CRC after the ``!`` at index ``bang`` (telegram from ``start``)."""
    match = _CRC_LINE.match(raw, bang + 1)
    if match is None:
        return Integrity.INVALID  # a mangled CRC line
    stated = match.group(1)
    if not stated:
        return Integrity.ABSENT
    computed = crc16_arc(raw[start : bang + 1])
    return Integrity.VALID if int(stated, 16) == computed else Integrity.INVALID


def parse_timestamp(text: str, tz: tzinfo) -> datetime | None:
    """``YYMMDDhhmmssX`` (X = S summer / W winter) or ``YY-MM-DD hh:mm:ss``.

    Returns an aware datetime in ``tz``, the DST flag choosing the right one of
    an ambiguous hour, or ``None`` for an impossible stamp (meters send
    ``632525252525W`` for "no value"). Two-digit years 69-99 are 1969-1999
    (``700101000000`` is how meters write "never"), 00-68 are 2000-2068.
    """
    size = len(text)
    if size == 13:
        flag = text[12]
        if flag == "W":
            fold = 1
        elif flag == "S":
            fold = 0
        else:
            return None
        text = text[:12]
    elif size == 12:
        fold = 0
    elif size == 17 and text[2] == text[5] == "-" and text[8] == " " and text[11] == text[14] == ":":
        text = text[0:2] + text[3:5] + text[6:8] + text[9:11] + text[12:14] + text[15:17]
        fold = 0
    else:
        return None
    if not (text.isascii() and text.isdecimal()):
        return None
    rest, second = divmod(int(text), 100)
    rest, minute = divmod(rest, 100)
    rest, hour = divmod(rest, 100)
    rest, day = divmod(rest, 100)
    year, month = divmod(rest, 100)
    try:
        return datetime(
            year + (1900 if year >= 69 else 2000), month, day, hour, minute, second, 0, tz, fold=fold
        )
    except ValueError:
        return None


def _looks_like_stamp(text: str) -> bool:
    size = len(text)
    return (
        (size == 13 and text[:12].isdecimal())
        or (size == 12 and text.isdecimal())
        or (size == 17 and text[2] == "-")
    )


def _number(text: str) -> tuple[Decimal, str | None] | None:
    """``002130.115*kWh`` -> (Decimal, "kWh"); ``000123.456kWh`` too; else None."""
    value, star, unit = text.partition("*")
    if value.replace(".", "", 1).isdecimal() or _NUMBER.fullmatch(value) is not None:
        return Decimal(value), (unit or None)
    if star:
        return None
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None:
        return None
    return Decimal(match.group(1)), match.group(2)


def _is_obis(text: str) -> bool:
    return "-" in text and ":" in text and "." in text


def _parse_log(groups: list[str], tz: tzinfo) -> tuple[RegisterValue, tuple[HistoryEntry, ...]]:
    """A profile-generic buffer: ``(n)(obis)[(obis)](entry fields)*n``.

    Belgian 0-0:98.1.0 entries are (month start)(peak time)(peak kW); DSMR
    1-0:99.97.0 entries are (end of failure)(duration*s). The register value is
    the entry count the meter states; the entries present go to ``history``.
    """
    head = groups[0]
    if not head.isdecimal():
        if len(groups) == 1 and not head:
            return 0, ()  # "()": an empty buffer
        # Hungarian 0-0:98.1.0 is a billing row: (timestamp)(value)(value)...
        entries = []
        for group in groups[1:]:
            parsed = _number(group)
            if parsed is not None:
                entries.append(_entry(None, parsed[0], parsed[1], None))
        return parse_timestamp(head, tz), tuple(entries)
    count = int(head)
    ids = 0
    while ids + 1 < len(groups) and _is_obis(groups[ids + 1]):
        ids += 1
    fields = groups[1 + ids :]
    # Each entry is a timestamp per capture object but the last, then the value.
    width = ids + 1 if ids else 2
    history = []
    for i in range(min(count, len(fields) // width)):
        entry = fields[i * width : (i + 1) * width]
        parsed = _number(entry[-1])
        stamp = parse_timestamp(entry[-2], tz) if width > 1 else None
        start = parse_timestamp(entry[0], tz) if width > 2 else None
        history.append(_entry(stamp, parsed[0] if parsed else None, parsed[1] if parsed else None, start))
    return count, tuple(history)


def _parse_stamped(groups: list[str], tz: tzinfo) -> tuple[Decimal | None, str | None, datetime | None]:
    """A stamped reading: (value, unit, timestamp).

    ``(stamp)(value*unit)`` (DSMR 4+), ``(value*unit)(YY-MM-DD hh:mm:ss)``
    (ACE4000), DSMR 2.2/3 ``(stamp)(00)(60)(1)(obis)(unit)`` + ``(value)`` on
    the next line, or a plain ``(value*unit)``.
    """
    if len(groups) >= 6:
        parsed = _number(groups[6]) if len(groups) > 6 else None
        unit = groups[5] or None
        if parsed is not None and parsed[1] is not None:
            unit = parsed[1]
        return (parsed[0] if parsed else None), unit, parse_timestamp(groups[0], tz)
    if len(groups) == 1:
        value_text, stamp = groups[0], None
    elif _looks_like_stamp(groups[0]):
        value_text, stamp = groups[-1], parse_timestamp(groups[0], tz)
    elif _looks_like_stamp(groups[-1]):
        value_text, stamp = groups[0], parse_timestamp(groups[-1], tz)
    else:
        value_text, stamp = groups[-1], None
    parsed = _number(value_text)
    if parsed is None:
        return None, None, stamp
    return parsed[0], parsed[1], stamp


def _parse_value(
    kind: Kind, groups: list[str], tz: tzinfo
) -> tuple[RegisterValue, str | None, datetime | None, tuple[HistoryEntry, ...]]:
    """Decode a line's groups: (value, unit, timestamp, history)."""
    if kind is Kind.NUMBER or kind is Kind.AUTO:
        parsed = _number(groups[-1])
        if parsed is not None:
            return parsed[0], parsed[1], None, ()
        if kind is Kind.NUMBER or not groups[-1]:
            return None, None, None, ()  # empty, or not a number where one belongs
        return groups[-1], None, None, ()
    if kind is Kind.TEXT:
        return groups[0] or None, None, None, ()
    if kind is Kind.TIME:
        return parse_timestamp(groups[0], tz), None, None, ()
    if kind is Kind.STAMPED:
        value, unit, stamp = _parse_stamped(groups, tz)
        return value, unit, stamp, ()
    count, history = _parse_log(groups, tz)
    return count, None, None, history


# obis text -> (key, kind, channel, medium hint). channel 0 = main meter, n =
# M-Bus channel n, -1 = medium-coded object that joins the channel with an ID.
# A key of "" marks an M-Bus meter reading: it gets the medium's key later.
type _Spec = tuple[str, Kind, int, Medium | None]
_SPECS: dict[str, _Spec] = {obis: (key, kind, 0, None) for obis, (key, kind) in MAIN_REGISTERS.items()}
for _n in range(1, 5):
    for _cde, (_key, _kind) in MBUS_REGISTERS.items():
        _SPECS[f"0-{_n}:{_cde}"] = (_key or "", _kind, _n, None)
# Main-meter number registers: the hot path needs only their key.
_MAIN_NUMBER: dict[str, str] = {
    obis: key for obis, (key, kind) in MAIN_REGISTERS.items() if kind is Kind.NUMBER
}


def _canonical(obis: str) -> str:
    """Drop a ``*255`` (value group F) suffix: ``1-0:1.8.1*255`` -> ``1-0:1.8.1``."""
    star = obis.find("*")
    return obis[:star] if star > 0 else obis


def _spec_for(obis: str) -> _Spec | None:
    """Spec of a code missing from the table: a ``*255`` suffix, an unknown code."""
    known = _SPECS.get(obis)
    if known is not None:
        return known
    dash = obis.find("-")
    colon = obis.find(":")
    if dash <= 0 or colon < dash:
        return None
    a, b, cde = obis[:dash], obis[dash + 1 : colon], obis[colon + 1 :]
    if not (a.isascii() and a.isdecimal() and b.isascii() and b.isdecimal() and cde):
        return None
    mbus = MBUS_REGISTERS.get(cde)
    if a == "0" and b != "0" and int(b):
        if mbus is not None:
            return mbus[0] or "", mbus[1], int(b), None
        return generic_key(f"0-n:{cde}"), Kind.AUTO, int(b), None
    if a not in {"0", "1"} and int(a) in OBIS_A_MEDIUM:
        # Medium-coded object (7-0:23.1.0 gas): it belongs to an M-Bus meter.
        if mbus is not None:
            return mbus[0] or "", mbus[1], int(b) or -1, OBIS_A_MEDIUM[int(a)]
        return generic_key(obis), Kind.AUTO, int(b) or -1, OBIS_A_MEDIUM[int(a)]
    return generic_key(obis), Kind.AUTO, 0, None


def _decode_hex_id(value: str) -> str:
    """P1 equipment IDs are often ASCII in hex: show the readable form."""
    if len(value) >= 8 and not len(value) % 2 and value.isascii() and value.isalnum():
        try:
            text = bytes.fromhex(value).decode("latin-1")
        except ValueError:  # not hex
            return value
        if text.isascii() and text.isalnum():
            return text
    return value


type _Reading = tuple[str, Decimal | None, str | None, datetime | None]  # obis, value, unit, stamp


class _Channel:
    """What one telegram said about one M-Bus channel."""

    __slots__ = ("device_type", "equipment_id", "medium", "readings", "registers")

    def __init__(self) -> None:
        self.registers: list[Register] = []
        self.readings: list[_Reading] = []
        self.device_type: int | None = None
        self.equipment_id: str | None = None
        self.medium: Medium | None = None


_ID_KEYS = ("equipment_id", "meter_serial", "serial_number", "logical_device_name", "meter_id")
_ID_KEY_SET = frozenset(_ID_KEYS)


def decode_telegram(
    raw: bytes,
    *,
    key: bytes | None = None,
    tz: tzinfo = DEFAULT_TZ,
) -> Frame:
    """Decode one P1 telegram (plain, or a Smarty encrypted frame with ``key``).

    Never raises anything but :class:`~.errors.SmartMeterError` sub-classes:
    :class:`DecodeError` for bytes that are not a telegram,
    :class:`DecryptionError` for an encrypted frame without the right key. A
    telegram whose CRC does not match is returned with
    ``integrity=INVALID`` so callers can count and drop it.
    """
    encrypted = False
    if raw[:1] == b"\xdb":
        raw = decrypt_frame(raw, key, tag_length=GCM_TAG)
        encrypted = True
    start = raw.find(b"/")
    bang = max(raw.rfind(b"\n!"), raw.rfind(b"\r!")) + 1  # the "!" that starts the last line
    if start < 0 or bang <= start:
        raise DecodeError("not a P1 telegram: no '/' header or no '!' end line")
    integrity = _check_crc(raw, start, bang)
    text = raw[start : bang + 1].decode("latin-1")
    eol = text.find("\n")
    if eol < 0:
        eol = len(text)
    header = text[1:eol].strip()

    main_regs: list[Register] = []
    append = main_regs.append
    channels: dict[int, _Channel] = {}
    ids: dict[str, str] = {}
    version: str | None = None
    stamp_value: datetime | None = None
    number_get = _MAIN_NUMBER.get
    spec_get = _SPECS.get
    text_kind = Kind.TEXT
    time_kind = Kind.TIME
    s_obis, s_key, s_value, s_unit, s_stamp, s_hist = _REG_SET

    for code, inner in _LINE.findall(text, eol + 1):
        reg_key = number_get(code)
        if reg_key is not None:
            # The hot path, most lines of every telegram: a known main-meter
            # number, "(value*unit)" or "(value)".
            value_text, _, unit_text = inner.partition("*")
            if value_text.replace(".", "", 1).isdecimal() and ")" not in unit_text:
                reg = _new(Register)
                s_obis(reg, code)
                s_key(reg, reg_key)
                s_value(reg, Decimal(value_text))
                s_unit(reg, unit_text or None)
                s_stamp(reg, None)
                s_hist(reg, ())
                append(reg)
                continue
        spec = spec_get(code)
        if spec is not None and not spec[2] and ")" not in inner:
            kind = spec[1]
            if kind is text_kind or kind is time_kind:
                # The next most common: identifiers, messages, the clock.
                reg_key = spec[0]
                value: RegisterValue
                if kind is text_kind:
                    value = inner or None
                    if value is not None:
                        if reg_key in _ID_KEY_SET:
                            if reg_key not in ids and value.strip():
                                ids[reg_key] = value.strip()
                        elif reg_key == "p1_version":
                            version = value
                else:
                    value = parse_timestamp(inner, tz)
                    if reg_key == "timestamp" and stamp_value is None:
                        stamp_value = value
                reg = _new(Register)
                s_obis(reg, code)
                s_key(reg, reg_key)
                s_value(reg, value)
                s_unit(reg, None)
                s_stamp(reg, None)
                s_hist(reg, ())
                append(reg)
                continue
        if spec is None:
            if not code:
                continue  # a DSMR 2.2/3 continuation line, read with the line before
            spec = _spec_for(_canonical(code))
            if spec is None:
                continue
        obis = _canonical(code)
        reg_key, kind, channel_no, medium_hint = spec
        groups = inner.split(")(")
        if channel_no:
            if channel_no < 0:  # medium-coded (7-0:23.1.0): join the channel with an ID
                channel_no = next((n for n, c in sorted(channels.items()) if c.equipment_id), 1)
            channel = channels.get(channel_no)
            if channel is None:
                channel = channels[channel_no] = _Channel()
            if medium_hint is not None and channel.medium is None:
                channel.medium = medium_hint
            if kind is Kind.STAMPED:
                if len(groups) == 6:
                    # DSMR 2.2/3: (stamp)(00)(60)(1)(obis)(unit), value on the next line.
                    nxt = _LINE.match(text, text.find("\n", text.find(f"{code}({inner})")) + 1)
                    if nxt is not None and not nxt.group(1):
                        groups.append(nxt.group(2))
                channel.readings.append((obis, *_parse_stamped(groups, tz)))
                continue
            value, unit_text, stamp, history = _parse_value(kind, groups, tz)
            if reg_key == "device_type" and isinstance(value, Decimal):
                channel.device_type = int(value)
            elif reg_key == "equipment_id" and isinstance(value, str) and value.strip():
                channel.equipment_id = value.strip()
            channel.registers.append(_reg(obis, reg_key, value, unit_text, stamp, history))
            continue
        value, unit_text, stamp, history = _parse_value(kind, groups, tz)
        if reg_key in _ID_KEY_SET:
            if isinstance(value, str) and value.strip() and reg_key not in ids:
                ids[reg_key] = value.strip()
        elif reg_key == "timestamp":
            if stamp_value is None and isinstance(value, datetime):
                stamp_value = value
        elif reg_key == "p1_version" and isinstance(value, str):
            version = value
        append(_reg(obis, reg_key, value, unit_text, stamp, history))

    if integrity is Integrity.ABSENT and not main_regs and not channels:
        raise DecodeError("no data line and no CRC: not a telegram")
    main = _main_meter(header, main_regs, ids, stamp_value, "\n1-0:" in text)
    meters = [main]
    for number in sorted(channels):
        channel = channels[number]
        sub = _sub_meter(main.id, number, channel)
        if sub is not None:
            meters.append(sub)
    return _frame(integrity, tuple(meters), raw, header, version, encrypted)


def _split_header(header: str) -> tuple[str | None, str | None]:
    r"""Manufacturer and model from the identification line ``XXXZ\Wident``.

    ``XXX`` is the manufacturer, ``Z`` the baud rate character, ``\W`` an
    optional enhanced-mode sequence, the rest the meter's identification.
    """
    if len(header) < 5:
        return None, None
    model = header[4:]
    if model[:1] == "\\":
        model = model[2:]
    elif model[:1] == "\x02":  # "\2" turned into chr(2) by a Python string literal
        model = model[1:]
    return header[:3], model.strip() or None


def _main_meter(
    header: str, regs: list[Register], ids: dict[str, str], stamp: datetime | None, electricity: bool
) -> Meter:
    for id_key in _ID_KEYS:
        meter_id = ids.get(id_key)
        if meter_id is not None:
            break
    else:
        meter_id = header.replace("\\", "").replace("\x02", "")
    if not meter_id.strip():
        # Neither an equipment identifier nor an identification line: a damaged
        # telegram (a bare "/" found in its data), not a meter.
        raise DecodeError("no meter identification: no equipment identifier and an empty header")
    manufacturer, model = _split_header(header)
    return _meter(
        meter_id,
        Medium.ELECTRICITY if electricity else Medium.UNKNOWN,
        0,
        tuple(regs),
        stamp,
        manufacturer,
        model,
        _decode_hex_id(meter_id),
        None,
    )


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _sub_meter(main_id: str, number: int, channel: _Channel) -> Meter | None:
    """The meter on one M-Bus channel, or None for an empty channel."""
    readings = channel.readings
    medium = channel.medium
    if channel.device_type is not None:
        medium = MBUS_MEDIUM.get(channel.device_type, medium)
    if medium is None:
        units = {unit for _obis, _value, unit, _stamp in readings}
        medium = Medium.HEAT if units & {"GJ", "kWh", "MWh"} else Medium.GAS if readings else Medium.UNKNOWN
    if not readings and channel.equipment_id is None:
        return None
    reading_key = READING_KEY.get(medium, "reading")
    out = channel.registers
    if len(readings) == 1:
        obis, value, unit, stamp = readings[0]
        out.append(_reg(obis, reading_key, value, unit, stamp))
        first_stamp = stamp
    else:
        # Readings grouped by code: the first code is "the" reading (gas,
        # water...). A code sent several times (ACE4000: the last 24 hourly
        # readings) keeps the newest as the value, all of them as history.
        by_code: dict[str, list[_Reading]] = {}
        for reading in readings:
            by_code.setdefault(reading[0], []).append(reading)
        first_stamp = None
        for index, (obis, group) in enumerate(by_code.items()):
            key = reading_key if index == 0 else generic_key(obis.replace(f"0-{number}:", "0-n:", 1))
            ordered = sorted(group, key=lambda r: r[3] or _EPOCH)
            _obis, value, unit, stamp = ordered[-1]
            history = tuple(_entry(s, v, u, None) for _o, v, u, s in ordered) if len(group) > 1 else ()
            out.append(_reg(obis, key, value, unit, stamp, history))
            if index == 0:
                first_stamp = stamp
    meter_id = channel.equipment_id
    if meter_id is None or meter_id == main_id:
        meter_id = f"{main_id}-mbus{number}"
    return _meter(
        meter_id,
        medium,
        number,
        tuple(out),
        first_stamp,
        None,
        None,
        _decode_hex_id(meter_id) if channel.equipment_id else None,
        main_id,
    )
