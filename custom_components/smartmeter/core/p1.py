"""P1 / DSMR telegram decoder: one generic OBIS line parser for every variant.

It reads DSMR 2.2, 3, 4.x and 5.x, Belgian e-MUCS, Luxembourg Smarty and the
Swedish, Austrian, Hungarian and Irish P1 flavours without being told which:
every ``OBIS(group)(group)...`` line is decoded, the CRC16 is checked when the
telegram carries one, and M-Bus channels become sub-meters.

Encrypted Smarty frames (general-global-cipher, first byte 0xDB) are decrypted
first with the user's key (see :mod:`.smarty`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
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
_new = object.__new__
_SETTERS = tuple(Register.__dict__[name].__set__ for name in Register.__slots__)  # type: ignore[attr-defined]


def _reg(
    obis: str,
    key: str,
    value: RegisterValue,
    unit: str | None = None,
    timestamp: datetime | None = None,
    history: tuple[HistoryEntry, ...] = (),
) -> Register:
    """Build a frozen Register at plain-object speed (the hot path of a telegram)."""
    reg = _new(Register)
    s_obis, s_key, s_value, s_unit, s_stamp, s_hist = _SETTERS
    s_obis(reg, obis)
    s_key(reg, key)
    s_value(reg, value)
    s_unit(reg, unit)
    s_stamp(reg, timestamp)
    s_hist(reg, history)
    return reg
DEFAULT_TZ = ZoneInfo("Europe/Amsterdam")
# One data line: OBIS code (empty for a DSMR 2.2 continuation line), groups.
_LINE = re.compile(r"^([^(\r\n]*)\((.*)\)[ \t]*\r?$", re.MULTILINE)
_HEX = frozenset("0123456789abcdefABCDEF")
_NUMBER_CHARS = frozenset("0123456789.-+")


def _check_crc(raw: bytes, bang: int) -> Integrity:
    """Verdict on the CRC after the ``!`` at index ``bang``."""
    end = bang + 1
    stop = end
    limit = min(len(raw), end + 4)
    while stop < limit and raw[stop] in b"0123456789abcdefABCDEF":
        stop += 1
    stated = raw[end:stop]
    if not stated:
        return Integrity.ABSENT
    # Meters print the CRC as 4 hex digits; some (Warmtelink) drop a leading 0.
    return Integrity.VALID if int(stated, 16) == crc16_arc(raw[:end]) else Integrity.INVALID


def _year(yy: int) -> int:
    # "700101000000" is how meters write "never" (the Unix epoch).
    return 1900 + yy if yy >= 70 else 2000 + yy


def parse_timestamp(text: str, tz: tzinfo) -> datetime | None:
    """``YYMMDDhhmmssX`` (X = S summer / W winter) or ``YY-MM-DD hh:mm:ss``.

    Returns an aware datetime in ``tz``, the DST flag choosing the right one of
    an ambiguous hour, or ``None`` for an impossible stamp (meters send
    ``632525252525W`` for "no value").
    """
    if len(text) == 17 and text[2] == "-":  # YY-MM-DD hh:mm:ss
        text = text[0:2] + text[3:5] + text[6:8] + text[9:11] + text[12:14] + text[15:17]
        flag = ""
    elif len(text) == 13:
        flag = text[12]
        text = text[:12]
    elif len(text) == 12:
        flag = ""
    else:
        return None
    if not text.isdigit():
        return None
    try:
        local = datetime(
            _year(int(text[0:2])),
            int(text[2:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            tzinfo=tz,
            fold=1 if flag == "W" else 0,
        )
    except ValueError:
        return None
    return local


def _number(text: str) -> tuple[Decimal, str | None] | None:
    """``002130.115*kWh`` -> (Decimal, "kWh"); ``000123.456kWh`` too; else None."""
    value, star, unit = text.partition("*")
    if not star:
        # Some meters (Fluvius firmware) omit the '*': split at the first letter.
        i = 0
        for i, ch in enumerate(text):  # noqa: B007
            if ch not in _NUMBER_CHARS:
                break
        else:
            i = len(text)
        value, unit = text[:i], text[i:]
    if not value or not _NUMBER_CHARS.issuperset(value):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number, (unit or None)


def _is_obis(text: str) -> bool:
    return "-" in text and ":" in text and "." in text


def _parse_log(groups: list[str], tz: tzinfo) -> tuple[RegisterValue, str | None, tuple[HistoryEntry, ...]]:
    """A profile-generic buffer: ``(n)(obis)[(obis)](entry fields)*n``.

    Belgian 0-0:98.1.0 entries are (month start)(peak time)(peak kW); DSMR
    1-0:99.97.0 entries are (end of failure)(duration*s). The register value is
    the entry count; the entries go to ``history``.
    """
    if not groups or not groups[0].isdigit():
        # Hungarian 0-0:98.1.0 is a billing row: (timestamp)(value)(value)...
        stamp = parse_timestamp(groups[0], tz) if groups else None
        entries = []
        for group in groups[1:]:
            parsed = _number(group)
            if parsed is not None:
                entries.append(HistoryEntry(None, parsed[0], parsed[1]))
        return stamp, None, tuple(entries)
    count = int(groups[0])
    fields = [g for g in groups[1:] if not _is_obis(g)]
    if count == 0 or not fields or len(fields) % count:
        return count, None, ()
    width = len(fields) // count
    history = []
    for i in range(count):
        entry = fields[i * width : (i + 1) * width]
        stamps = [parse_timestamp(f, tz) for f in entry[:-1]]
        parsed = _number(entry[-1])
        history.append(
            HistoryEntry(
                timestamp=stamps[-1] if stamps else None,
                value=parsed[0] if parsed else None,
                unit=parsed[1] if parsed else None,
                start=stamps[0] if len(stamps) > 1 else None,
            )
        )
    return count, None, tuple(history)


def _parse_value(
    kind: Kind, groups: list[str], tz: tzinfo
) -> tuple[RegisterValue, str | None, datetime | None, tuple[HistoryEntry, ...]]:
    """Decode a line's groups: (value, unit, timestamp, history)."""
    if kind is Kind.NUMBER or kind is Kind.AUTO:
        parsed = _number(groups[-1])
        if parsed is not None:
            return parsed[0], parsed[1], None, ()
        if kind is Kind.NUMBER and groups[-1] == "":
            return None, None, None, ()
        return groups[-1], None, None, ()
    if kind is Kind.TEXT:
        return groups[0], None, None, ()
    if kind is Kind.TIME:
        return parse_timestamp(groups[0], tz), None, None, ()
    if kind is Kind.STAMPED:
        # (stamp)(value*unit) or (value*unit)(YY-MM-DD hh:mm:ss)
        if len(groups) >= 2 and _number(groups[0]) is not None and _number(groups[1]) is None:
            value_text, stamp_text = groups[0], groups[1]
        else:
            stamp_text, value_text = groups[0], groups[-1]
        parsed = _number(value_text)
        stamp = parse_timestamp(stamp_text, tz)
        if parsed is None:
            return None, None, stamp, ()
        return parsed[0], parsed[1], stamp, ()
    value, unit, history = _parse_log(groups, tz)
    return value, unit, None, history


# obis text -> (key, kind, channel, medium hint). channel 0 = main meter, n =
# M-Bus channel n, -1 = medium-coded object that joins the channel with an ID.
type _Spec = tuple[str | None, Kind, int, Medium | None]
_SPECS: dict[str, _Spec] = {obis: (key, kind, 0, None) for obis, (key, kind) in MAIN_REGISTERS.items()}
for _n in range(1, 5):
    for _cde, (_key, _kind) in MBUS_REGISTERS.items():
        _SPECS[f"0-{_n}:{_cde}"] = (_key, _kind, _n, None)


def _canonical(obis: str) -> str:
    star = obis.find("*")
    return obis[:star] if star > 0 else obis


def _spec_for(obis: str) -> _Spec | None:
    """Spec of a code missing from the table: a ``*255`` suffix, an unknown code."""
    obis = _canonical(obis)
    known = _SPECS.get(obis)
    if known is not None:
        return known
    dash = obis.find("-")
    colon = obis.find(":")
    if dash <= 0 or colon < dash:
        return None
    a, b, cde = obis[:dash], obis[dash + 1 : colon], obis[colon + 1 :]
    if not (a.isdigit() and b.isdigit()):
        return None
    if a != "0" and a != "1" and cde in MBUS_REGISTERS:
        key, kind = MBUS_REGISTERS[cde]
        return key, kind, int(b) or -1, OBIS_A_MEDIUM.get(int(a))
    if a == "0" and b != "0":
        return generic_key(f"0-n:{cde}"), Kind.AUTO, int(b), None
    return generic_key(obis), Kind.AUTO, 0, None


def _decode_hex_id(value: str) -> str:
    """P1 equipment IDs are often ASCII in hex: show the readable form."""
    if len(value) >= 8 and len(value) % 2 == 0 and _HEX.issuperset(value):
        try:
            text = bytes.fromhex(value).decode("ascii")
        except UnicodeDecodeError:
            return value
        if text.isprintable() and text.isalnum():
            return text
    return value


class _Channel:
    __slots__ = ("device_type", "equipment_id", "medium", "pending", "registers")

    def __init__(self) -> None:
        self.registers: list[Register] = []
        self.pending: list[tuple[str, list[str]]] = []
        self.device_type: int | None = None
        self.equipment_id: str | None = None
        self.medium: Medium | None = None


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
    bang = raw.rfind(b"!")
    if start < 0 or bang < start:
        raise DecodeError("not a P1 telegram: no '/' header or no '!' end")
    integrity = _check_crc(raw[start:], bang - start)
    text = raw[start : bang + 1].decode("latin-1")
    eol = text.find("\n")
    header = text[1:eol].strip() if eol > 0 else text[1:].strip()

    main_regs: list[Register] = []
    channels: dict[int, _Channel] = {}
    version: str | None = None
    electricity = False
    last: list[str] | None = None
    spec_get = _SPECS.get
    number_kind = Kind.NUMBER

    for obis, inner in _LINE.findall(text, eol + 1 if eol > 0 else len(text)):
        if not obis:
            # DSMR 2.2/3 gas: the value is on its own line after 0-n:24.3.0
            if last is not None:
                last.append(inner)
            continue
        spec = spec_get(obis)
        if spec is not None and spec[1] is number_kind and ")(" not in inner:
            value_text, star, unit_text = inner.partition("*")
            if star and value_text:
                try:
                    main_regs.append(_reg(obis, spec[0] or "", Decimal(value_text), unit_text or None))
                    electricity = electricity or obis[0] == "1"
                    continue
                except InvalidOperation:
                    pass
        groups = inner.split(")(")
        if spec is None:
            spec = _spec_for(obis)
            if spec is None:
                continue
        reg_key, kind, channel_no, medium_hint = spec
        if channel_no:
            if channel_no < 0:  # medium-coded (7-0:23.1.0): join the channel with an ID
                channel_no = next((n for n, c in sorted(channels.items()) if c.equipment_id), 1)
            channel = channels.get(channel_no)
            if channel is None:
                channel = channels[channel_no] = _Channel()
            if medium_hint is not None and channel.medium is None:
                channel.medium = medium_hint
            if obis.endswith("24.3.0"):
                last = groups
                channel.pending.append((obis, groups))
                continue
            value, unit, stamp, history = _parse_value(kind, groups, tz)
            if reg_key == "device_type" and isinstance(value, Decimal):
                channel.device_type = int(value)
            elif reg_key == "equipment_id" and isinstance(value, str) and value.strip():
                channel.equipment_id = value.strip()
            channel.registers.append(_reg(_canonical(obis), reg_key or "", value, unit, stamp, history))
            continue
        value, unit, stamp, history = _parse_value(kind, groups, tz)
        if reg_key == "p1_version" and isinstance(value, str):
            version = value
        electricity = electricity or obis[:4] == "1-0:"
        main_regs.append(_reg(_canonical(obis), reg_key or "", value, unit, stamp, history))

    for channel in channels.values():
        for obis, groups in channel.pending:
            value, unit, stamp, _history = _parse_value(Kind.STAMPED, groups, tz)
            channel.registers.append(_reg(_canonical(obis), "", value, unit, stamp))

    main = _main_meter(header, main_regs, electricity)
    meters = [main]
    for number in sorted(channels):
        sub = _sub_meter(main.id, number, channels[number])
        if sub is not None:
            meters.append(sub)
    return Frame(
        protocol=PROTOCOL,
        integrity=integrity,
        meters=tuple(meters),
        raw=raw,
        header=header,
        version=version,
        encrypted=encrypted,
    )


_ID_KEYS = ("equipment_id", "meter_serial", "logical_device_name", "meter_id")


def _main_meter(header: str, regs: list[Register], electricity: bool) -> Meter:
    by_key = {reg.key: reg for reg in regs}
    meter_id = None
    for id_key in _ID_KEYS:
        reg = by_key.get(id_key)
        if reg is not None and isinstance(reg.value, str) and reg.value.strip():
            meter_id = reg.value.strip()
            break
    if meter_id is None:
        meter_id = header.replace("\\", "").replace("\x02", "")
    stamp_reg = by_key.get("timestamp")
    stamp = stamp_reg.value if stamp_reg and isinstance(stamp_reg.value, datetime) else None
    manufacturer = header[:3] if len(header) >= 5 else None
    model = header[5:].lstrip("\\\x02") if len(header) > 5 else None
    return Meter(
        id=meter_id,
        medium=Medium.ELECTRICITY if electricity else Medium.UNKNOWN,
        channel=0,
        registers=tuple(regs),
        timestamp=stamp,
        manufacturer=manufacturer,
        model=model,
        serial_number=_decode_hex_id(meter_id),
    )


def _sub_meter(main_id: str, number: int, channel: _Channel) -> Meter | None:
    medium = channel.medium
    if channel.device_type is not None:
        medium = MBUS_MEDIUM.get(channel.device_type, medium)
    readings = [r for r in channel.registers if r.key == ""]
    if medium is None:
        units = {r.unit for r in readings}
        medium = Medium.HEAT if units & {"GJ", "kWh", "MWh"} else Medium.GAS if readings else Medium.UNKNOWN
    reading_key = READING_KEY.get(medium, "reading")
    if len(readings) > 1:
        # ACE4000 sends the last 24 hourly readings: keep the newest as the
        # value, all of them as history (oldest first).
        ordered = sorted(readings, key=lambda r: r.timestamp or datetime.min.replace(tzinfo=UTC))
        newest = ordered[-1]
        history = tuple(HistoryEntry(r.timestamp, r.value if isinstance(r.value, Decimal) else None, r.unit) for r in ordered)
        readings = [Register(newest.obis, reading_key, newest.value, newest.unit, newest.timestamp, history)]
    else:
        readings = [
            Register(r.obis, reading_key, r.value, r.unit, r.timestamp, r.history) for r in readings
        ]
    others = [r for r in channel.registers if r.key != ""]
    if not readings and channel.equipment_id is None:
        return None
    meter_id = channel.equipment_id or f"{main_id}-mbus{number}"
    return Meter(
        id=meter_id,
        medium=medium,
        channel=number,
        registers=tuple(others + readings),
        timestamp=readings[0].timestamp if readings else None,
        serial_number=_decode_hex_id(meter_id) if channel.equipment_id else None,
        parent_id=main_id,
    )
