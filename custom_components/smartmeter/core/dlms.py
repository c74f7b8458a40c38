"""DLMS/COSEM push meters on a HAN port: APDU, COSEM data and the meter model.

Norwegian and Swedish meters (Aidon, Kaifa, Kamstrup) push a DLMS
data-notification every few seconds over HDLC (see :mod:`.hdlc`); Austrian
ones encrypt it (general-glo-ciphering, AES-128-GCM). :func:`decode_dlms`
takes any of the layers:

* one HDLC frame, or the frames of a segmented message back to back;
* the LLC PDU without HDLC (``E6 E7 00`` + APDU);
* the bare APDU: ``0F`` data-notification, ``DB``/``DC`` general-glo/ded-ciphering.

The notification body is decoded generically (every COSEM data type) and then
read in one of the list layouts meters use:

* Aidon (and Austrian meters): an array or structure of structures
  ``{OBIS octet-string, value[, {scaler, unit}]}``;
* Kamstrup and Swedish Kaifa: a flat structure of ``OBIS, value`` pairs, no
  scaler (the scaling is the manufacturer's, from its HAN documentation);
  Kamstrup starts with its list version without OBIS code;
* Norwegian Kaifa: bare values without OBIS codes; the list length tells which
  list it is (1, 2 or 3, one- or three-phase), the OBIS codes follow from the
  position (the layouts of Kaifa's "KFM_001" lists, as amshan maps them).

Registers get the same keys as P1 (:mod:`.obis`): power in kW, energy in kWh,
exact ``Decimal`` values converted from the meter's W and Wh.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import ChecksumError, DecodeError, KeyRequiredError, WrongKeyError
from .hdlc import (
    FLAG,
    FORMAT_TYPE,
    LLC_HEADERS,
    HdlcFramer,
    check_frames,
    crc16_x25,
    header_length,
    parse_frames,
)
from .models import Frame, Integrity, Medium, Meter, Register, RegisterValue
from .obis import MAIN_REGISTERS, generic_key

PROTOCOL = "dlms"
DEFAULT_TZ = ZoneInfo("Europe/Oslo")
UNIDENTIFIED = "unidentified"  # meter id of a frame without one (list 1) when no default_id is given

DATA_NOTIFICATION = 0x0F
GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC
GCM_TAG = 12
MAX_DEPTH = 8

# Keys for HAN objects P1 does not have (new keys: see the module docstring of obis.py).
HAN_KEYS: dict[str, str] = {
    "1-1:0.2.129": "list_version",
    "1-0:0.2.129": "list_version",
    "0-0:96.1.7": "meter_model",
    "1-1:96.1.1": "meter_model",  # Kamstrup meter type
    "1-0:96.1.1": "meter_model",
    "1-1:0.0.5": "meter_serial",  # Kamstrup meter ID (GS1 number)
    "1-0:0.0.5": "meter_serial",
    "0-1:1.0.0": "timestamp",  # Kamstrup clock
}
_ID_KEYS = ("equipment_id", "meter_serial", "serial_number", "logical_device_name", "meter_id")

# COSEM physical units (Blue Book, class Register, enum unit), the usual ones.
UNITS: dict[int, str] = {
    1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "°", 9: "°C", 10: "currency",
    11: "m", 12: "m/s", 13: "m3", 14: "m3", 15: "m3/h", 16: "m3/h", 17: "m3/d", 18: "m3/d",
    19: "l", 20: "kg", 21: "N", 22: "Nm", 23: "Pa", 24: "bar", 25: "J", 26: "J/h", 27: "W",
    28: "VA", 29: "var", 30: "Wh", 31: "VAh", 32: "varh", 33: "A", 34: "C", 35: "V", 36: "V/m",
    37: "F", 38: "Ω", 41: "T", 44: "Hz", 52: "K", 56: "%", 57: "Ah", 60: "Wh/m3", 61: "J/m3",
}  # fmt: skip
# Units P1 states in kilo: W -> kW etc. (value scaled by 10^-3).
_KILO = {"W": "kW", "var": "kvar", "VA": "kVA", "Wh": "kWh", "varh": "kvarh", "VAh": "kVAh"}

# Value group C of electricity objects -> quantity, for values sent without scaler and unit.
_ACTIVE = {1, 2, 15, 16, 21, 22, 41, 42, 61, 62}
_REACTIVE = {3, 4, 5, 6, 7, 8, 23, 24, 43, 44, 63, 64}
_APPARENT = {9, 10, 29, 30, 49, 50, 69, 70}
_CURRENT = {11, 31, 51, 71}
_VOLTAGE = {12, 32, 52, 72}

# Positional lists of Norwegian Kaifa meters (values without OBIS codes).
_KAIFA_LIST_3_3PH = (
    "1-1:0.2.129.255",  # list version "KFM_001"
    "0-0:96.1.0.255",  # meter ID
    "0-0:96.1.7.255",  # meter type
    "1-0:1.7.0.255",
    "1-0:2.7.0.255",
    "1-0:3.7.0.255",
    "1-0:4.7.0.255",
    "1-0:31.7.0.255",
    "1-0:51.7.0.255",
    "1-0:71.7.0.255",
    "1-0:32.7.0.255",
    "1-0:52.7.0.255",
    "1-0:72.7.0.255",
    "0-0:1.0.0.255",  # clock
    "1-0:1.8.0.255",
    "1-0:2.8.0.255",
    "1-0:3.8.0.255",
    "1-0:4.8.0.255",
)
_KAIFA_LIST_3_1PH = _KAIFA_LIST_3_3PH[:8] + _KAIFA_LIST_3_3PH[10:11] + _KAIFA_LIST_3_3PH[13:]
_KAIFA_LISTS: dict[int, tuple[str, ...]] = {
    1: ("1-0:1.7.0.255",),
    len(_KAIFA_LIST_3_1PH) - 5: _KAIFA_LIST_3_1PH[:-5],
    len(_KAIFA_LIST_3_3PH) - 5: _KAIFA_LIST_3_3PH[:-5],
    len(_KAIFA_LIST_3_1PH): _KAIFA_LIST_3_1PH,
    len(_KAIFA_LIST_3_3PH): _KAIFA_LIST_3_3PH,
}
# Kamstrup's list version comes first, without its OBIS code.
_LIST_VERSION_OBIS = bytes((1, 1, 0, 2, 129, 255))

# Manufacturers from the list version prefix or the system title (FLAG ID).
_MANUFACTURERS = {
    "AIDON": "Aidon",
    "KFM": "Kaifa",
    "KAMSTRUP": "Kamstrup",
    "KAM": "Kamstrup",
    "SAG": "Sagemcom",
    "LGZ": "Landis+Gyr",
    "ISK": "Iskraemeco",
    "ELS": "Elster",
    "EMH": "EMH",
    "ADN": "Aidon",
}

# COSEM data types (Blue Book, Data ::= CHOICE).
NULL, ARRAY, STRUCTURE, BOOLEAN, BIT_STRING = 0, 1, 2, 3, 4
OCTET_STRING, VISIBLE_STRING, UTF8_STRING, COMPACT_ARRAY = 9, 10, 12, 19
INTEGER, ENUM, DATE_TIME, DATE, TIME, DONT_CARE = 15, 22, 25, 26, 27, 255
_FIXED: dict[int, struct.Struct] = {
    3: struct.Struct("B"),
    5: struct.Struct(">i"),
    6: struct.Struct(">I"),
    13: struct.Struct("B"),
    15: struct.Struct(">b"),
    16: struct.Struct(">h"),
    17: struct.Struct("B"),
    18: struct.Struct(">H"),
    20: struct.Struct(">q"),
    21: struct.Struct(">Q"),
    22: struct.Struct("B"),
    23: struct.Struct(">f"),
    24: struct.Struct(">d"),
}
_FIXED_BYTES = {DATE_TIME: 12, DATE: 5, TIME: 4}
_STRINGS = frozenset((OCTET_STRING, VISIBLE_STRING, UTF8_STRING))

type Node = tuple[int, Any]  # (COSEM type tag, value); arrays and structures hold lists of nodes


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    """An A-XDR length at ``pos``: (length, index after it)."""
    if pos >= len(buf):
        raise DecodeError("truncated APDU (length expected)")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if not 0 < size <= 4 or pos + 1 + size > len(buf):
        raise DecodeError("bad A-XDR length")
    return int.from_bytes(buf[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def parse_data(buf: bytes, pos: int = 0, depth: int = 0) -> tuple[Node, int]:
    """Decode one COSEM ``Data`` value at ``pos``: ((tag, value), index after it)."""
    if pos >= len(buf):
        raise DecodeError("truncated COSEM data")
    tag = buf[pos]
    pos += 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        end = pos + fixed.size
        if end > len(buf):
            raise DecodeError("truncated COSEM value")
        return (tag, fixed.unpack_from(buf, pos)[0]), end
    if tag in _STRINGS:
        size, pos = _length(buf, pos)
        end = pos + size
        if end > len(buf):
            raise DecodeError("truncated COSEM string")
        return (tag, buf[pos:end]), end
    if tag in (ARRAY, STRUCTURE):
        if depth >= MAX_DEPTH:
            raise DecodeError("COSEM data nested too deeply")
        count, pos = _length(buf, pos)
        if count > len(buf) - pos:
            raise DecodeError("COSEM array longer than the APDU")
        items: list[Node] = []
        append = items.append
        for _ in range(count):
            node, pos = parse_data(buf, pos, depth + 1)
            append(node)
        return (tag, items), pos
    if tag in (NULL, DONT_CARE):
        return (tag, None), pos
    width = _FIXED_BYTES.get(tag)
    if width is not None:
        if pos + width > len(buf):
            raise DecodeError("truncated COSEM date/time")
        return (tag, buf[pos : pos + width]), pos + width
    if tag == BIT_STRING:
        bits, pos = _length(buf, pos)
        end = pos + (bits + 7) // 8
        if end > len(buf):
            raise DecodeError("truncated COSEM bit string")
        return (tag, buf[pos:end]), end
    raise DecodeError(f"unsupported COSEM data type {tag}")


def cosem_datetime(raw: bytes, tz: tzinfo) -> datetime | None:
    """A COSEM date-time (12 bytes) as an aware datetime, or ``None``.

    0xFF fields are "not specified": an unspecified date gives ``None``, an
    unspecified time field counts as 0. The deviation (minutes of local time
    to UTC, 0x8000 = not specified) gives the offset as ``-deviation``, the
    reading of amshan and the Norwegian HAN documents; without one the time
    is local time in ``tz``, the clock status's daylight-saving bit (0x80)
    choosing the right one of an ambiguous hour. A clock status with the
    "invalid value" bit (0x01) set gives ``None``.
    """
    if len(raw) != 12:
        return None
    year = (raw[0] << 8) | raw[1]
    month, day = raw[2], raw[3]
    if year == 0xFFFF or not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    hour, minute, second, hundredths = raw[5], raw[6], raw[7], raw[8]
    hour = 0 if hour == 0xFF else hour
    minute = 0 if minute == 0xFF else minute
    second = 0 if second == 0xFF else second
    micro = 0 if hundredths == 0xFF or hundredths > 99 else hundredths * 10000
    deviation = (raw[9] << 8) | raw[10]
    status = raw[11]
    if status != 0xFF and status & 0x01:
        return None
    try:
        if deviation != 0x8000:
            if deviation & 0x8000:
                deviation -= 0x10000
            if not -720 <= deviation <= 720:
                return None
            offset = timezone(timedelta(minutes=-deviation))
            return datetime(year, month, day, hour, minute, second, micro, offset).astimezone(tz)
        stamp = datetime(year, month, day, hour, minute, second, micro, tz)
    except ValueError:
        return None
    if status != 0xFF and bool(stamp.dst()) != bool(status & 0x80):
        other = stamp.replace(fold=1)  # the repeated hour after the clocks went back
        if bool(other.dst()) == bool(status & 0x80):
            return other
    return stamp


# ---------------------------------------------------------------- encryption


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """GCM's encryption without its tag: AES-CTR from counter block 2."""
    stream = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).decryptor()
    return stream.update(data) + stream.finalize()


def decipher(apdu: bytes, key: bytes | None, auth_key: bytes | None) -> tuple[bytes, bytes, bool]:
    """Decrypt a general-glo/ded-ciphering APDU.

    Returns (plaintext APDU, system title, verified): ``verified`` is True
    when a GCM tag was checked. Raises :class:`KeyRequiredError` without a
    key, :class:`WrongKeyError` when the tag fails (or the key has the wrong
    size), :class:`DecodeError` for a malformed APDU.
    """
    if len(apdu) < 2:
        raise DecodeError("truncated ciphered APDU")
    title_len = apdu[1]
    title = apdu[2 : 2 + title_len]
    if title_len != 8 or len(title) != 8:
        raise DecodeError("ciphered APDU without an 8-byte system title")
    length, pos = _length(apdu, 2 + title_len)
    content = apdu[pos : pos + length]
    if len(content) != length or pos + length != len(apdu):
        raise DecodeError(f"ciphered APDU length {length} does not match its {len(apdu) - pos} bytes")
    if length < 5:
        raise DecodeError("ciphered APDU too short for its security header")
    control = content[0]
    if control & 0x80:
        raise DecodeError("compressed ciphered APDUs are not supported")
    authenticated, encrypted = bool(control & 0x10), bool(control & 0x20)
    iv = title + content[1:5]
    body = content[5:]
    if not encrypted:
        if not authenticated:
            return body, title, False
        if len(body) < GCM_TAG:
            raise DecodeError("authenticated APDU too short for its tag")
        plain, tag = body[:-GCM_TAG], body[-GCM_TAG:]
        if key is None or auth_key is None:
            return plain, title, False  # readable without keys, but not verified
        _check_key(key)
        decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, tag, min_tag_length=GCM_TAG)).decryptor()
        decryptor.authenticate_additional_data(bytes([control]) + auth_key + plain)
        try:
            decryptor.finalize()
        except InvalidTag as err:
            raise WrongKeyError("the keys are wrong (authentication tag mismatch)") from err
        return plain, title, True
    if key is None:
        raise KeyRequiredError("the frame is encrypted: a decryption key is required")
    _check_key(key)
    if authenticated:
        if len(body) < GCM_TAG:
            raise DecodeError("authenticated APDU too short for its tag")
        ciphertext, tag = body[:-GCM_TAG], body[-GCM_TAG:]
        if auth_key is None:
            # No authentication key: decrypt without checking the tag; the
            # plaintext must then parse as an APDU.
            return _ctr(key, iv, ciphertext), title, False
        decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, tag, min_tag_length=GCM_TAG)).decryptor()
        decryptor.authenticate_additional_data(bytes([control]) + auth_key)
        try:
            return decryptor.update(ciphertext) + decryptor.finalize(), title, True
        except InvalidTag as err:
            raise WrongKeyError("the decryption or authentication key is wrong (GCM tag mismatch)") from err
    return _ctr(key, iv, body), title, False


def _check_key(key: bytes) -> None:
    if len(key) not in (16, 32):
        raise WrongKeyError("the key must be 16 bytes (32 hexadecimal digits)")


def _axdr_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    if size < 0x100:
        return bytes([0x81, size])
    return b"\x82" + size.to_bytes(2, "big")


def encrypt_apdu(
    plaintext: bytes,
    key: bytes,
    *,
    system_title: bytes,
    frame_counter: int,
    security_control: int = 0x30,
    auth_key: bytes | None = None,
    tag: int = GENERAL_GLO_CIPHERING,
) -> bytes:
    """Build a general-glo-ciphering APDU the way a meter does (simulator, tests)."""
    iv = system_title + frame_counter.to_bytes(4, "big")
    if security_control & 0x10:
        encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(bytes([security_control]) + (auth_key or b""))
        body = encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag[:GCM_TAG]
    else:
        body = _ctr(key, iv, plaintext)
    content = bytes([security_control]) + frame_counter.to_bytes(4, "big") + body
    size = len(content)
    length = _axdr_length(size)
    return bytes([tag, len(system_title)]) + system_title + length + content


# ---------------------------------------------------------------- APDU


def _strip_llc(payload: bytes) -> bytes:
    if payload[:3] in LLC_HEADERS:
        return payload[3:]
    return payload


def parse_notification(apdu: bytes) -> tuple[bytes | None, Node]:
    """A data-notification APDU: (its date-time octets or None, the body)."""
    if len(apdu) < 6 or apdu[0] != DATA_NOTIFICATION:
        raise DecodeError("not a DLMS data-notification APDU")
    pos = 5  # tag + long-invoke-id-and-priority
    marker = apdu[pos]
    stamp: bytes | None = None
    if marker == 0x00:
        pos += 1
    elif marker == 0x0C:
        stamp, pos = apdu[pos + 1 : pos + 13], pos + 13
    elif marker == OCTET_STRING and pos + 1 < len(apdu) and apdu[pos + 1] == 0x0C:
        stamp, pos = apdu[pos + 2 : pos + 14], pos + 14  # Kaifa: typed octet-string
    else:
        raise DecodeError(f"bad date-time field 0x{marker:02X} in the data-notification")
    if stamp is not None and len(stamp) != 12:
        raise DecodeError("truncated data-notification date-time")
    body, end = parse_data(apdu, pos)
    if end != len(apdu):
        raise DecodeError(f"{len(apdu) - end} bytes after the data-notification body")
    return stamp, body


# ---------------------------------------------------------------- COSEM lists

type _Entry = tuple[bytes | None, Node, tuple[int, int] | None]  # OBIS, value, (scaler, unit)


def _scaler_unit(node: Node) -> tuple[int, int] | None:
    if node[0] != STRUCTURE or len(node[1]) != 2:
        return None
    scaler, unit = node[1]
    if scaler[0] != INTEGER or unit[0] != ENUM:
        return None
    return scaler[1], unit[1]


def _is_obis(node: Node) -> bool:
    return node[0] == OCTET_STRING and len(node[1]) == 6


def list_entries(body: Node) -> list[_Entry]:
    """The (OBIS, value, scaler-unit) entries of a notification body, in order.

    OBIS is ``None`` for values the meter sent without a code.
    """
    items = body[1] if body[0] in (ARRAY, STRUCTURE) else [body]
    entries: list[_Entry] = []
    index, count = 0, len(items)
    while index < count:
        node = items[index]
        tag = node[0]
        if tag == STRUCTURE:
            fields = node[1]
            if len(fields) >= 2 and _is_obis(fields[0]):
                # {OBIS, value[, {scaler, unit}]} (Aidon, Austrian meters)
                entries.append(
                    (fields[0][1], fields[1], _scaler_unit(fields[2]) if len(fields) > 2 else None)
                )
                index += 1
                continue
        elif tag == NULL:
            index += 1  # Kamstrup pads between elements
            continue
        elif _is_obis(node) and index + 1 < count:
            # OBIS, value[, {scaler, unit}] flat in the list (Kamstrup, Swedish Kaifa)
            value = items[index + 1]
            scaler = _scaler_unit(items[index + 2]) if index + 2 < count else None
            entries.append((node[1], value, scaler))
            index += 3 if scaler is not None else 2
            continue
        entries.append((None, node, None))
        index += 1
    return entries


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def _printable(raw: bytes) -> bool:
    return raw.isascii() and all(0x20 <= b < 0x7F for b in raw)


_OBIS_CACHE: dict[bytes, tuple[str, str, int, int, int]] = {}


def _obis_info(code: bytes) -> tuple[str, str, int, int, int]:
    """(normalised OBIS text, register key, A, C, D) of a 6-byte OBIS code."""
    info = _OBIS_CACHE.get(code)
    if info is not None:
        return info
    a, b, c, d, e, f = code
    base = f"{a}-{b}:{c}.{d}.{e}"
    obis = base if f == 255 else f"{base}*{f}"
    key = HAN_KEYS.get(obis)
    if key is None and f == 255:
        spec = MAIN_REGISTERS.get(base)
        if spec is None and a == 1 and b:
            spec = MAIN_REGISTERS.get(f"1-0:{c}.{d}.{e}")  # Kamstrup, Aidon: B=1
        if spec is not None:
            key = spec[0]
    if key is None:
        key = generic_key(obis)
    info = (obis, key, a, c, d)
    if len(_OBIS_CACHE) < 4096:
        _OBIS_CACHE[code] = info
    return info


def _default_unit(a: int, c: int, d: int) -> str | None:
    """The unit of an electricity value the meter sent without one."""
    if a != 1:
        return None
    energy = d in (8, 9, 29)
    if d not in (4, 5, 6, 7, 8, 9, 24, 25, 26, 27, 29):
        return None
    if c in _ACTIVE:
        return "Wh" if energy else "W"
    if c in _REACTIVE:
        return "varh" if energy else "var"
    if c in _APPARENT:
        return "VAh" if energy else "VA"
    if d == 7 and c in _CURRENT:
        return "A"
    if d == 7 and c in _VOLTAGE:
        return "V"
    if d == 7 and c == 14:
        return "Hz"
    return None


def _implied_scaler(manufacturer: str | None, model: str | None, c: int, d: int) -> int:
    """Scaler of a value sent without one: from the manufacturer's HAN documentation."""
    if manufacturer == "Kaifa":
        if c in _CURRENT:
            return -3  # mA
        if c in _VOLTAGE:
            return -1  # 0.1 V
    elif manufacturer == "Kamstrup":
        if c in _CURRENT:
            return -3 if model is not None and model.startswith("685") else -2  # CT meters: mA
        if d == 8:
            return 1  # 10 Wh (0.01 kWh)
    return 0


def _number(raw: int | float, scaler: int, unit: str | None) -> tuple[Decimal, str | None]:
    value = Decimal(raw) if isinstance(raw, int) else Decimal(repr(raw))
    kilo = _KILO.get(unit) if unit is not None else None
    if kilo is not None:
        return value.scaleb(scaler - 3), kilo
    if scaler:
        return value.scaleb(scaler), unit
    return value, unit


def _manufacturer(text: str | None) -> str | None:
    if not text:
        return None
    upper = text.upper()
    for prefix, name in _MANUFACTURERS.items():
        if upper.startswith(prefix):
            return name
    return None


def _value(node: Node, clock: bool, tz: tzinfo) -> RegisterValue:
    """A non-numeric COSEM value as a register value."""
    tag = node[0]
    raw: bytes = node[1]
    if tag == OCTET_STRING:
        if len(raw) == 12 and (clock or not _printable(raw)):
            stamp = cosem_datetime(raw, tz)
            if stamp is not None or clock:
                return stamp
        return _text(raw) if _printable(raw) else raw.hex().upper()
    if tag == VISIBLE_STRING:
        return _text(raw)
    if tag == UTF8_STRING:
        return raw.decode("utf-8", "replace")
    if tag == DATE_TIME:
        return cosem_datetime(raw, tz)
    if tag in (NULL, DONT_CARE):
        return None
    return raw.hex().upper()  # bit string, date, time: every other tag parse_data gives holds bytes


def _positional(entries: list[_Entry]) -> list[_Entry]:
    """Give OBIS codes to a Kaifa list of bare values (or a lone value)."""
    first = entries[0][1]
    kaifa = first[0] in _STRINGS and first[1][:4] == b"KFM_"
    lone_number = len(entries) == 1 and first[0] in _FIXED and first[0] not in (BOOLEAN, ENUM)
    layout = _KAIFA_LISTS.get(len(entries))
    if layout is None or not (kaifa or lone_number):
        raise DecodeError(f"a list of {len(entries)} values without OBIS codes from an unknown meter")
    return [
        (bytes(int(part) for part in code.replace("-", ".").replace(":", ".").split(".")), value, None)
        for code, (_none, value, _su) in zip(layout, entries, strict=True)
    ]


def build_meter(
    entries: list[_Entry],
    notification_time: datetime | None,
    tz: tzinfo,
    *,
    system_title: bytes | None = None,
    default_id: str | None = None,
) -> tuple[Meter, str | None]:
    """The meter a list describes, and its list version."""
    if not entries:
        raise DecodeError("empty notification body")
    if all(obis is None for obis, _value, _su in entries):
        entries = _positional(entries)
    elif entries[0][0] is None and entries[0][1][0] in _STRINGS:
        entries = [(_LIST_VERSION_OBIS, entries[0][1], None), *entries[1:]]
    # A first pass for the strings that decide the scaling (list version, model).
    texts: dict[str, str] = {}
    for obis, node, _su in entries:
        if obis is not None and node[0] in _STRINGS:
            key = _obis_info(obis)[1]
            if key in ("list_version", "meter_model") and key not in texts:
                texts[key] = _text(node[1]).strip()
    version = texts.get("list_version")
    model = texts.get("meter_model")
    manufacturer = _manufacturer(version)
    if manufacturer is None and system_title is not None:
        flag = system_title[:3]
        if _printable(flag):
            manufacturer = _MANUFACTURERS.get(flag.decode("ascii"), flag.decode("ascii"))

    registers: list[Register] = []
    ids: dict[str, str] = {}
    stamp: datetime | None = None
    for obis, node, scaler_unit in entries:
        if obis is None:
            continue  # a value without a code in a coded list: nothing names it
        code, key, a, c, d = _obis_info(obis)
        tag, raw = node
        unit: str | None
        if tag in _FIXED and tag not in (BOOLEAN, ENUM):
            if scaler_unit is not None:
                scaler, unit = scaler_unit[0], UNITS.get(scaler_unit[1])
            else:
                scaler, unit = _implied_scaler(manufacturer, model, c, d), _default_unit(a, c, d)
            value: RegisterValue
            value, unit = _number(raw, scaler, unit)
        elif tag in (BOOLEAN, ENUM):
            value, unit = Decimal(raw), None
        elif tag in (ARRAY, STRUCTURE):
            continue  # profile rows and the like: not a register value
        else:
            value, unit = _value(node, key == "timestamp", tz), None
            if isinstance(value, str):
                value = value.strip() or None
                if value is not None and key in _ID_KEYS and key not in ids:
                    ids[key] = value
            elif key == "timestamp" and stamp is None and isinstance(value, datetime):
                stamp = value
        registers.append(Register(code, key, value, unit))
    if stamp is None and notification_time is not None:
        stamp = notification_time
        registers.append(Register("0-0:1.0.0", "timestamp", notification_time))
    meter_id = next((ids[k] for k in _ID_KEYS if k in ids), None)
    meter = Meter(
        id=meter_id or default_id or UNIDENTIFIED,
        medium=Medium.ELECTRICITY,
        channel=0,
        registers=tuple(registers),
        timestamp=stamp,
        manufacturer=manufacturer,
        model=model,
        serial_number=meter_id,
    )
    return meter, version


# ---------------------------------------------------------------- entry points


def decode_dlms(
    raw: bytes,
    *,
    key: bytes | None = None,
    auth_key: bytes | None = None,
    tz: tzinfo = DEFAULT_TZ,
    default_id: str | None = None,
) -> Frame:
    """Decode one DLMS push message: HDLC frame(s), LLC PDU or bare APDU.

    ``key`` decrypts general-glo-ciphering APDUs, ``auth_key`` checks their
    GCM tag when the security control byte asks for authentication (without
    it the frame is decrypted unverified and must parse). ``default_id`` is the
    meter ID for frames that carry none (list 1).

    Raises :class:`ChecksumError` for a bad HCS, or a bad FCS whose contents
    do not decode; a bad FCS whose contents decode gives a frame with
    ``integrity=INVALID``. :class:`KeyRequiredError`/:class:`WrongKeyError` for
    encrypted frames without the right key, :class:`DecodeError` otherwise.
    """
    raw = bytes(raw)
    if not raw:
        raise DecodeError("empty DLMS frame")
    integrity = Integrity.ABSENT
    if raw[0] == FLAG:
        payload, fcs_ok = check_frames(parse_frames(raw))
        integrity = Integrity.VALID if fcs_ok else Integrity.INVALID
        if not payload:
            raise DecodeError("HDLC frame without information field")
    else:
        payload = raw
    try:
        return _decode_payload(raw, _strip_llc(payload), integrity, key, auth_key, tz, default_id)
    except KeyRequiredError:
        raise
    except WrongKeyError as err:
        # A frame damaged on the line does not decrypt either: that is line
        # noise (a bad FCS), not a wrong key to ask the user about.
        if integrity is Integrity.INVALID:
            raise ChecksumError(f"HDLC frame check sequence (FCS) mismatch: {err}") from err
        raise
    except DecodeError as err:
        if integrity is Integrity.INVALID:
            raise ChecksumError(f"HDLC frame check sequence (FCS) mismatch: {err}") from err
        raise


def _decode_payload(
    raw: bytes,
    apdu: bytes,
    integrity: Integrity,
    key: bytes | None,
    auth_key: bytes | None,
    tz: tzinfo,
    default_id: str | None,
) -> Frame:
    if not apdu:
        raise DecodeError("empty APDU")
    title: bytes | None = None
    encrypted = False
    tag = apdu[0]
    if tag in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        plain, title, verified = decipher(apdu, key, auth_key)
        encrypted = True
        if verified and integrity is Integrity.ABSENT:
            integrity = Integrity.VALID
        stamp_raw, entries = _parse_plain(plain, verified)
    elif tag == DATA_NOTIFICATION:
        stamp_raw, body = parse_notification(apdu)
        entries = list_entries(body)
    else:
        raise DecodeError(f"unsupported DLMS APDU tag 0x{tag:02X}")
    notification_time = cosem_datetime(stamp_raw, tz) if stamp_raw is not None else None
    meter, version = build_meter(entries, notification_time, tz, system_title=title, default_id=default_id)
    header = title.hex().upper() if title is not None else None
    return Frame(
        protocol=PROTOCOL,
        integrity=integrity,
        meters=(meter,),
        raw=raw,
        header=header,
        version=version,
        encrypted=encrypted,
    )


def _parse_plain(plain: bytes, verified: bool) -> tuple[bytes | None, list[_Entry]]:
    """Parse a decrypted APDU; unverified garbage means the key is wrong."""
    try:
        stamp_raw, body = parse_notification(plain)
        entries = list_entries(body)
    except DecodeError as err:
        if verified:
            raise
        raise WrongKeyError("the decryption key is wrong (the decrypted data is not a DLMS APDU)") from err
    return stamp_raw, entries


def split_dlms(data: bytes) -> tuple[list[bytes], int]:
    """Cut a capture into messages; return them and the bytes that belong to none.

    A capture of a bare LLC PDU or APDU (no HDLC) is one message.
    """
    data = bytes(data)
    if data[:3] in LLC_HEADERS or data[:1] in (b"\x0f", b"\xdb", b"\xdc"):
        return [data], 0
    framer = HdlcFramer()
    frames = framer.feed(data)
    return frames, framer.discarded + framer.pending


def sniff_dlms(data: bytes) -> bool:
    """Whether a capture looks like DLMS: an HDLC header with a valid HCS, or an LLC PDU.

    A bare ``DB 08`` start is left to P1 (Luxembourg Smarty frames look the same).
    """
    if data[:3] in LLC_HEADERS or (data[:1] == b"\x0f" and len(data) > 6):
        return True
    head = data[:4096]
    pos = head.find(FLAG)
    while pos >= 0:
        if pos + 2 < len(head) and head[pos + 1] & 0xF0 == FORMAT_TYPE:
            size = header_length(head, pos)
            if size > 0 and pos + size + 2 <= len(head):
                hcs = head[pos + size] | (head[pos + size + 1] << 8)
                if crc16_x25(head[pos + 1 : pos + size]) == hcs:
                    return True
        pos = head.find(FLAG, pos + 1)
    return False
