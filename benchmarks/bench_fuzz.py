"""Fuzzing every decoder and framer: random, truncated, bit-flipped, spliced and chunked frames.

For each protocol of :data:`~custom_components.smartmeter.core.protocols.PROTOCOLS`
(plus SML decoded with ``accept_invalid=True``), seeded from every sample of
that protocol in the shared corpus and ``tests/fixtures``, at least
:data:`CASES` mutated inputs (fixed seed) go through the decoder, and some
through the protocol's stream framer in random chunks. The decoder API
contract checked on every case:

- no exception but a :class:`SmartMeterError` leaves the decoder, none at all
  leaves a framer ("escaped");
- a single bit flipped inside the span a checksum covers (P1 CRC16 from ``/``
  to the CRC digits, the whole SML file, every HDLC frame flag to flag, the
  whole M-Bus frame, IEC 62056-21 STX to BCC, the whole GCM-authenticated
  Smarty/DLMS frame) never decodes ``VALID`` ("valid after flip in check");
- whatever decodes ``VALID`` passes an independent check of its checksum,
  computed here from the definitions (table CRCs, sums, XOR, AES-GCM), not by
  the decoder's code ("valid without check").

Checksums of 8 bits (M-Bus sum, IEC BCC) and 16 bits do collide with several
flipped bits; such a frame does pass its check, so it is counted ("valid,
mutated, check agrees"), not failed. Mutations outside the checked span (the
P1 line end after the CRC, bytes before ``/``) may leave a frame ``VALID``.

Plain random loops (not hypothesis), one seed: the same cases every run.
Prints per protocol: cases, rejected (SmartMeterError), INVALID, ABSENT (no
checksum to check), VALID unchanged, VALID after a mutation outside the check
or agreed by the check, escaped, valid after flip in check, valid without
check; the first few failures with their traceback summary and input hex; and
``target fuzz_escapes_<protocol> <count> 0``. Exit status 1 on any escape or
any ``VALID`` that should not be.
"""

from __future__ import annotations

import random
import re
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from custom_components.smartmeter.core.dlms import encrypt_apdu
from custom_components.smartmeter.core.errors import SmartMeterError
from custom_components.smartmeter.core.iec62056 import split_iec
from custom_components.smartmeter.core.models import Frame, Integrity
from custom_components.smartmeter.core.protocols import PROTOCOLS
from custom_components.smartmeter.core.smarty import encrypt_frame
from custom_components.smartmeter.core.sml import decode_sml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CASES = 100_000
SEED = 20250415
TZ: tzinfo = ZoneInfo("Europe/Amsterdam")
# How many failures of each protocol are printed in full.
SHOW = 3
# A decode taking longer than this (seconds) is a hang: counted as escaped.
HANG = 2.0

# Test keys: the published Smarty test key, and a DLMS key for frames built here.
SMARTY_KEY = bytes.fromhex("D491470F47126332B07D1923B3504188")
SMARTY_AUTH = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
DLMS_KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
DLMS_AUTH = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
DLMS_TITLE = b"KFM\x10\x00\x00\x00\x01"


def corpus_dir() -> Path:
    """The shared corpus (../shared/corpus beside the project, or /shared/corpus)."""
    for candidate in (ROOT.parent / "shared" / "corpus", Path("/shared/corpus")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("../shared/corpus not found beside the project")


# ---------------------------------------------------------------- independent checks


def _table(poly: int) -> list[int]:
    """Byte table of a reflected CRC-16 with polynomial ``poly`` (reversed form)."""
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        out.append(crc)
    return out


_ARC = _table(0xA001)  # CRC-16/ARC (P1, IEC push): x^16 + x^15 + x^2 + 1, reflected
_CCITT = _table(0x8408)  # CRC-16/X-25 and KERMIT (SML, HDLC): x^16 + x^12 + x^5 + 1, reflected


def _crc(table: list[int], data: bytes | bytearray, init: int, xorout: int) -> int:
    crc = init
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ xorout


def crc_arc(data: bytes | bytearray) -> int:
    """CRC-16/ARC (check value 0xBB3D for b"123456789")."""
    return _crc(_ARC, data, 0, 0)


def crc_x25(data: bytes | bytearray) -> int:
    """CRC-16/X-25 (check value 0x906E)."""
    return _crc(_CCITT, data, 0xFFFF, 0xFFFF)


def crc_kermit(data: bytes | bytearray) -> int:
    """CRC-16/KERMIT (check value 0x2189)."""
    return _crc(_CCITT, data, 0, 0)


_P1_CRC = re.compile(rb"[0-9A-Fa-f]{1,4}")


def _p1_plain_ok(raw: bytes) -> bool:
    """The last ``!`` line's digits equal the CRC-16/ARC from ``/`` to that ``!``."""
    start = raw.find(b"/")
    bang = max(raw.rfind(b"\n!"), raw.rfind(b"\r!")) + 1
    if start < 0 or bang <= start:
        return False
    stated = _P1_CRC.match(raw, bang + 1)
    return stated is not None and int(stated.group(0), 16) == crc_arc(raw[start : bang + 1])


def _glo_parts(raw: bytes, hdr_at: int) -> tuple[int, bytes, int, bytes] | None:
    """(security byte, IV, end, body) of a general-glo-ciphering APDU whose length is at ``hdr_at``."""
    if len(raw) < hdr_at + 1:
        return None
    first = raw[hdr_at]
    if first < 0x80:
        length, hdr = first, hdr_at + 1
    elif first == 0x81 and len(raw) > hdr_at + 1:
        length, hdr = raw[hdr_at + 1], hdr_at + 2
    elif first == 0x82 and len(raw) > hdr_at + 2:
        length, hdr = int.from_bytes(raw[hdr_at + 1 : hdr_at + 3], "big"), hdr_at + 3
    else:
        return None
    end = hdr + length
    if length < 5 or len(raw) < end:
        return None
    return raw[hdr], raw[2:10] + raw[hdr + 1 : hdr + 5], end, raw[hdr + 5 : end]


def _gcm_open(key: bytes, iv: bytes, body: bytes, aad: bytes) -> bytes | None:
    """AES-GCM with a 12-byte tag at the end of ``body``: the plaintext, or None when the tag fails."""
    if len(body) < 12:
        return None
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, body[-12:], min_tag_length=12)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(body[:-12]) + decryptor.finalize()
    except InvalidTag:
        return None


def dsmr_ok(raw: bytes, key: bytes | None) -> bool:
    """A P1 telegram's CRC, or for a Smarty frame its GCM tag (with the telegram's CRC inside)."""
    if raw[:1] != b"\xdb":
        return _p1_plain_ok(raw)
    if key is None or raw[1:2] != b"\x08":
        return False
    parts = _glo_parts(raw, 10)
    if parts is None or not parts[0] & 0x10:
        return False  # an unauthenticated frame has only the inner CRC, checked as a plain telegram
    security, iv, _end, body = parts
    plain = _gcm_open(key, iv, body, bytes([security]) + SMARTY_AUTH)
    return plain is not None and _p1_plain_ok(plain)


def sml_ok(raw: bytes, key: bytes | None) -> bool:
    """A whole SML transport v1 file whose CRC is X-25 (low byte first) or KERMIT (high byte first)."""
    size = len(raw)
    if size < 16 or size % 4 or raw[:8] != b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01":
        return False
    if raw[-8:-4] != b"\x1b\x1b\x1b\x1b" or raw[-4] != 0x1A:
        return False
    body = raw[:-2]
    return crc_x25(body) == raw[-2] | raw[-1] << 8 or crc_kermit(body) == raw[-2] << 8 | raw[-1]


def _hdlc_frame_ok(frame: bytes) -> bool:
    """One HDLC frame without its flags: FCS over all of it, HCS over the header when information follows."""
    if len(frame) < 7 or crc_x25(frame[:-2]) != frame[-2] | frame[-1] << 8:
        return False
    pos = 2
    for _address in range(2):  # destination, source: the last byte of each has bit 0 set
        while pos < len(frame) and not frame[pos] & 1:
            pos += 1
        pos += 1
    head = pos + 1  # the control byte
    if len(frame) - 2 > head:
        return len(frame) - 2 >= head + 2 and crc_x25(frame[:head]) == frame[head] | frame[head + 1] << 8
    return True


def dlms_ok(raw: bytes, key: bytes | None) -> bool:
    """Every HDLC frame's FCS and HCS, or for a bare/LLC APDU a verified GCM tag."""
    if raw[:1] != b"\x7e":
        apdu = raw[3:] if raw[:3] in (b"\xe6\xe7\x00", b"\xe6\xe6\x00") else raw
        if key is None or apdu[:2] != b"\xdb\x08":
            return False
        parts = _glo_parts(apdu, 10)
        if parts is None or not parts[0] & 0x10 or parts[2] != len(apdu):
            return False
        security, iv, _end, body = parts
        return _gcm_open(key, iv, body, bytes([security]) + DLMS_AUTH) is not None
    pos, size, frames = 0, len(raw), 0
    while pos < size:
        if raw[pos] != 0x7E:
            return False
        while pos + 1 < size and raw[pos + 1] == 0x7E:
            pos += 1
        if pos + 1 >= size:
            break
        if pos + 3 > size:
            return False
        end = pos + 1 + (((raw[pos + 1] & 0x07) << 8) | raw[pos + 2])
        if end >= size or raw[end] != 0x7E or not _hdlc_frame_ok(raw[pos + 1 : end]):
            return False
        frames += 1
        pos = end
    return frames > 0


def mbus_ok(raw: bytes, key: bytes | None) -> bool:
    """An M-Bus long frame: 68 L L 68, L bytes summing to the checksum, 16."""
    size = len(raw)
    return (
        size >= 9
        and raw[0] == 0x68 == raw[3]
        and raw[1] == raw[2]
        and size == raw[1] + 6
        and raw[-1] == 0x16
        and sum(raw[4:-2]) & 0xFF == raw[-2]
    )


_IEC_CRC = re.compile(rb"[0-9A-Fa-f]{4}")


def iec_ok(raw: bytes, key: bytes | None) -> bool:
    """Some STX .. ETX block followed by its BCC (XOR after STX up to ETX), or a push telegram's CRC16."""
    stx = raw.find(b"\x02")
    while stx >= 0:
        etx = raw.find(b"\x03", stx + 1)
        if 0 <= etx < len(raw) - 1:
            check = 0
            for byte in raw[stx + 1 : etx + 1]:
                check ^= byte
            if check == raw[etx + 1]:
                return True
        stx = raw.find(b"\x02", stx + 1)
    for slash in (m.start() for m in re.finditer(rb"/", raw)):
        for bang in (m.start() for m in re.finditer(rb"!", raw[slash:])):
            stated = _IEC_CRC.match(raw, slash + bang + 1)
            if stated is not None and int(stated.group(0), 16) == crc_arc(raw[slash : slash + bang + 1]):
                return True
    return False


# ---------------------------------------------------------------- samples


@dataclass(frozen=True, slots=True)
class Sample:
    """A seed frame: its bytes, key, and the span a single bit flip must never pass."""

    name: str
    raw: bytes
    key: bytes | None
    span: tuple[int, int] | None  # [start, stop) covered by the checksum, None without a valid one
    # Where the checksum is written in hex digits: changing a letter's case there changes nothing.
    digits: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One decoder under test."""

    name: str  # as printed in the target line
    protocol: str  # the PROTOCOLS entry whose framer and samples it uses
    decode: Callable[[bytes, bytes | None], Frame]
    check: Callable[[bytes, bytes | None], bool]


def _registry_decoder(protocol: str) -> Callable[[bytes, bytes | None], Frame]:
    decode = PROTOCOLS[protocol].decode
    return lambda raw, key: decode(raw, key, TZ)


TARGETS: tuple[Target, ...] = (
    Target("dsmr", "dsmr", _registry_decoder("dsmr"), dsmr_ok),
    Target("sml", "sml", _registry_decoder("sml"), sml_ok),
    Target(
        "sml_accept_invalid",
        "sml",
        lambda raw, key: decode_sml(raw, tz=TZ, accept_invalid=True),
        sml_ok,
    ),
    Target("dlms", "dlms", _registry_decoder("dlms"), dlms_ok),
    Target("mbus", "mbus", _registry_decoder("mbus"), mbus_ok),
    Target("iec62056_21", "iec62056-21", _registry_decoder("iec62056-21"), iec_ok),
)


def _files(*patterns: tuple[Path, str]) -> Iterable[tuple[str, bytes]]:
    """(name, bytes) of every file matched, each content once."""
    seen: set[bytes] = set()
    for folder, pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            data = bytes.fromhex(path.read_text()) if path.suffix == ".hex" else path.read_bytes()
            if data and data not in seen:
                seen.add(data)
                yield f"{folder.name}/{path.name}", data


def _p1_sample(name: str, raw: bytes) -> Sample:
    if not _p1_plain_ok(raw):
        return Sample(name, raw, None, None)
    bang = max(raw.rfind(b"\n!"), raw.rfind(b"\r!")) + 1
    stated = _P1_CRC.match(raw, bang + 1)
    assert stated is not None
    return Sample(name, raw, None, (raw.find(b"/"), stated.end()), stated.span())


def _iec_span(raw: bytes) -> tuple[int, int] | None:
    stx = raw.find(b"\x02")
    etx = raw.find(b"\x03", stx + 1)
    if stx >= 0 and etx > stx and iec_ok(raw[stx:], None):
        return stx, etx + 2
    return None


def _hdlc(info: bytes) -> bytes:
    """An HDLC frame type 3 around ``info`` (addresses 41 / 0883, UI control), HCS and FCS computed here."""
    length = 2 + 1 + 2 + 1 + 2 + len(info) + 2
    head = bytes([0xA0 | (length >> 8), length & 0xFF, 0x41, 0x08, 0x83, 0x13])
    body = head + crc_x25(head).to_bytes(2, "little") + info
    return b"\x7e" + body + crc_x25(body).to_bytes(2, "little") + b"\x7e"


def _bcc(data: bytes | bytearray) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check


def load_samples() -> dict[str, list[Sample]]:
    """Seed frames per protocol: the corpus and tests/fixtures, plus frames built from them.

    Built frames (named ``built:``): Smarty frames encrypted here from a valid
    telegram (the corpus's one carries a wrong inner CRC), DLMS APDUs
    encrypted here (HDLC-framed and bare, authenticated), an IEC mode C
    readout with its BCC corrected and a mode D push telegram with a CRC16, so
    that every protocol has frames whose check is valid.
    """
    corpus = corpus_dir()
    out: dict[str, list[Sample]] = {}

    dsmr: list[Sample] = []
    for name, raw in _files(
        (corpus / "dsmr", "*.txt"), (FIXTURES / "p1", "*.txt"), (corpus / "iec62056-21", "de_easymeter*.txt")
    ):
        dsmr.append(_p1_sample(name, raw))
    for name, raw in _files((corpus / "smarty", "*.bin")):
        dsmr.append(Sample(name, raw, SMARTY_KEY, None))  # its inner CRC is wrong: never VALID
    valid_plain = [s for s in dsmr if s.span is not None]
    for sample in valid_plain[:3]:
        frame = encrypt_frame(sample.raw, SMARTY_KEY, frame_counter=7)
        dsmr.append(Sample(f"built:smarty({sample.name})", frame, SMARTY_KEY, (0, len(frame))))
    out["dsmr"] = dsmr

    out["sml"] = [
        Sample(name, raw, None, (0, len(raw)) if sml_ok(raw, None) else None)
        for name, raw in _files((corpus / "sml", "*.bin"), (FIXTURES / "sml", "*.bin"))
    ]

    dlms: list[Sample] = []
    for name, raw in _files((corpus / "han_dlms", "*.bin"), (FIXTURES / "han_dlms", "*.bin")):
        dlms.append(Sample(name, raw, None, (0, len(raw)) if dlms_ok(raw, None) else None))
        if name.endswith(".llc.bin"):
            apdu = raw[3:] if raw[:3] == b"\xe6\xe7\x00" else raw
            cipher = encrypt_apdu(
                apdu, DLMS_KEY, system_title=DLMS_TITLE, frame_counter=0x1234, auth_key=DLMS_AUTH
            )
            wrapped = _hdlc(b"\xe6\xe7\x00" + cipher)
            dlms.append(Sample(f"built:hdlc+glo({name})", wrapped, DLMS_KEY, (0, len(wrapped))))
            dlms.append(Sample(f"built:glo({name})", cipher, DLMS_KEY, None))
    out["dlms"] = dlms

    out["mbus"] = [
        Sample(name, raw, None, (0, len(raw)) if mbus_ok(raw, None) else None)
        for name, raw in _files(
            (corpus / "mbus", "*.bin"),
            (FIXTURES / "mbus" / "libmbus", "*.hex"),
            (FIXTURES / "mbus" / "libmbus-errors", "*.hex"),
        )
    ]

    iec: list[Sample] = []
    for path in sorted((corpus / "iec62056-21").glob("*.txt")):
        frames, _discarded = split_iec(path.read_bytes())
        for index, raw in enumerate(frames):
            iec.append(Sample(f"iec62056-21/{path.stem}#{index}", raw, None, _iec_span(raw)))
    for sample in list(iec):
        etx = sample.raw.find(b"\x03")
        stx = sample.raw.find(b"\x02")
        if 0 <= stx < etx < len(sample.raw) - 1 and sample.span is None:
            fixed = bytearray(sample.raw)
            fixed[etx + 1] = _bcc(fixed[stx + 1 : etx + 1])
            iec.append(Sample(f"built:bcc({sample.name})", bytes(fixed), None, _iec_span(bytes(fixed))))
        elif stx < 0 and sample.raw.rstrip().endswith(b"!"):
            body = sample.raw[: sample.raw.rindex(b"!") + 1]
            start = body.find(b"/")
            pushed = body + b"%04X\r\n" % crc_arc(body[start:])
            end = len(pushed) - 2
            iec.append(Sample(f"built:crc({sample.name})", pushed, None, (start, end), (end - 4, end)))
    out["iec62056-21"] = iec
    return out


# ---------------------------------------------------------------- mutations


@dataclass(slots=True)
class Case:
    """One mutated input and what is known about it."""

    kind: str
    raw: bytes
    flip_in_check: bool = False  # exactly one bit flipped, inside the checked span
    unchanged: bool = False


def _flip(sample: Sample, rng: random.Random, count: int) -> Case:
    data = bytearray(sample.raw)
    bits = rng.sample(range(len(data) * 8), min(count, len(data) * 8))
    for bit in bits:
        data[bit >> 3] ^= 1 << (bit & 7)
    if len(bits) == 1:
        return flip_case(sample, bytes(data), bits[0])
    return Case("flipN", bytes(data))


def flip_case(sample: Sample, data: bytes, bit: int) -> Case:
    """The case of ``sample`` with bit number ``bit`` flipped (``data``)."""
    where = bit >> 3
    inside = sample.span is not None and sample.span[0] <= where < sample.span[1]
    digits = sample.digits
    if inside and digits is not None and bit & 7 == 5 and digits[0] <= where < digits[1]:
        inside = not sample.raw[where : where + 1].isalpha()  # "A" <-> "a": the same hex digit
    return Case("flip1", data, flip_in_check=inside)


def mutate(sample: Sample, pool: list[Sample], rng: random.Random) -> Case:
    """One random mutation of ``sample``: the mix every target gets."""
    raw = sample.raw
    size = len(raw)
    roll = rng.random()
    if roll < 0.05:
        return Case("random", rng.randbytes(rng.randrange(0, 2 * size + 2)))
    if roll < 0.10:  # random bytes with the sample's first bytes (gets past the first checks)
        head = raw[: rng.randrange(1, min(size, 16) + 1)]
        return Case("random", head + rng.randbytes(rng.randrange(0, size + 1)))
    if roll < 0.25:  # truncation: a prefix, a suffix or a slice
        start = rng.randrange(0, size + 1) if rng.random() < 0.5 else 0
        stop = rng.randrange(start, size + 1) if start or rng.random() < 0.9 else size
        return Case("truncate", raw[start:stop], unchanged=(start, stop) == (0, size))
    if roll < 0.55:
        return _flip(sample, rng, 1)
    if roll < 0.70:
        return _flip(sample, rng, rng.randrange(2, 9))
    if roll < 0.85:  # byte edits: insert, delete, replace, duplicate a run
        data = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            where = rng.randrange(0, len(data) + 1)
            op = rng.randrange(4)
            if op == 0:
                data[where:where] = rng.randbytes(rng.randrange(1, 4))
            elif op == 1:
                del data[where : where + rng.randrange(1, 4)]
            elif op == 2 and where < len(data):
                data[where] = rng.randrange(256)
            else:
                run = data[where : where + rng.randrange(1, 9)]
                data[where:where] = run
        return Case("edit", bytes(data), unchanged=bytes(data) == raw)
    if roll < 0.92:  # splice: the head of one sample on the tail of another
        other = rng.choice(pool).raw
        return Case("splice", raw[: rng.randrange(0, size + 1)] + other[rng.randrange(0, len(other) + 1) :])
    # a region overwritten with a neighbouring region of the frame (structure-preserving noise)
    data = bytearray(raw)
    if size > 2:
        width = rng.randrange(1, min(16, size // 2) + 1)
        src, dst = rng.randrange(0, size - width + 1), rng.randrange(0, size - width + 1)
        data[dst : dst + width] = raw[src : src + width]
    return Case("overwrite", bytes(data), unchanged=bytes(data) == raw)


def stream(sample: Sample, pool: list[Sample], rng: random.Random) -> tuple[bytes, list[int]]:
    """A capture for the framer: garbage, frames (some mutated), garbage; and random chunk sizes."""
    parts = [rng.randbytes(rng.randrange(0, 40))]
    for _ in range(rng.randrange(1, 4)):
        seed = sample if rng.random() < 0.6 else rng.choice(pool)
        parts.append(seed.raw if rng.random() < 0.5 else mutate(seed, pool, rng).raw)
        if rng.random() < 0.3:
            parts.append(rng.randbytes(rng.randrange(0, 20)))
    data = b"".join(parts)
    chunks = []
    left = len(data)
    while left > 0:
        chunk = min(left, rng.choice((1, 2, 3, 7, 16, 64, 256, 4096)))
        chunks.append(chunk)
        left -= chunk
    return data, chunks


# ---------------------------------------------------------------- running


@dataclass
class Tally:
    """Outcomes of one target."""

    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def fail(
        self, what: str, kind: str, sample: Sample, raw: bytes, err: BaseException | None = None
    ) -> None:
        """Count a failure; keep the first few with the input and where it went wrong."""
        self.counts[what] += 1
        if len(self.failures) < SHOW:
            lines = [f"{what}: {kind} of {sample.name}: input ({len(raw)} bytes) {raw.hex()}"]
            if err is not None:
                summary = traceback.extract_tb(err.__traceback__)[-3:]
                lines += [f"    {type(err).__name__}: {err}"]
                lines += [
                    f"    at {entry.filename.rsplit('/', 1)[-1]}:{entry.lineno} {entry.name}"
                    for entry in summary
                ]
            self.failures.append("\n".join(lines))


class Hang(BaseException):
    """A decode or feed ran longer than :data:`HANG` (raised by the alarm; no ``except Exception`` stops it)."""


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang(f"still running after {HANG} s")


def guarded[T](call: Callable[[], T]) -> T:
    """``call()``, interrupted by :class:`Hang` after :data:`HANG` seconds (main thread only)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_case(target: Target, sample: Sample, case: Case, tally: Tally) -> None:
    """Decode one input and classify the result against the contract."""
    tally.counts["cases"] += 1
    try:
        frame = guarded(lambda: target.decode(case.raw, sample.key))
    except SmartMeterError:
        tally.counts["rejected"] += 1
        return
    except (Exception, Hang) as err:  # what the fuzzer is looking for
        tally.fail("escaped", case.kind, sample, case.raw, err)
        return
    integrity = frame.integrity
    if integrity is Integrity.INVALID:
        tally.counts["invalid"] += 1
    elif integrity is Integrity.ABSENT:
        tally.counts["absent"] += 1
    elif case.flip_in_check:
        tally.fail("valid_after_flip_in_check", case.kind, sample, case.raw)
    elif not target.check(case.raw, sample.key):
        tally.fail("valid_without_check", case.kind, sample, case.raw)
    elif case.unchanged or case.raw == sample.raw:
        tally.counts["valid_unchanged"] += 1
    else:
        tally.counts["valid_mutated_check_agrees"] += 1


def check_stream(
    target: Target, sample: Sample, pool: list[Sample], rng: random.Random, tally: Tally
) -> None:
    """Feed a capture through a fresh framer in random chunks; decode every frame it cuts."""
    data, chunks = stream(sample, pool, rng)
    framer = PROTOCOLS[target.protocol].framer()
    frames: list[bytes] = []
    pos = 0

    def feed_all() -> None:
        nonlocal pos, frames
        for chunk in chunks:
            frames += framer.feed(data[pos : pos + chunk])
            pos += chunk

    try:
        guarded(feed_all)
    except (Exception, Hang) as err:
        tally.counts["cases"] += 1
        tally.fail("escaped", "framer", sample, data, err)
        return
    tally.counts["framed"] += len(frames)
    for raw in frames:
        check_case(target, sample, Case("framed", raw, unchanged=any(raw == s.raw for s in pool)), tally)


def fuzz(target: Target, samples: list[Sample], cases: int, seed: int = SEED) -> Tally:
    """Run ``cases`` decodes (about 8% of them through the framer) on one target."""
    rng = random.Random(f"{seed}:{target.name}")  # noqa: S311 - reproducible cases, not secrets
    tally = Tally()
    while tally.counts["cases"] < cases:
        sample = rng.choice(samples)
        if rng.random() < 0.05:
            check_stream(target, sample, samples, rng, tally)
        else:
            check_case(target, sample, mutate(sample, samples, rng), tally)
    return tally


def every_single_flip(target: Target, samples: list[Sample], tally: Tally) -> int:
    """Flip every bit of every checked span, one at a time: never VALID (hex digit case aside)."""
    flips = 0
    for sample in samples:
        if sample.span is None:
            continue
        for where in range(*sample.span):
            for bit in range(8):
                data = bytearray(sample.raw)
                data[where] ^= 1 << bit
                check_case(target, sample, flip_case(sample, bytes(data), where * 8 + bit), tally)
                flips += 1
    return flips


# (counter, column heading) in the order printed.
COLUMNS = (
    ("cases", "cases"),
    ("rejected", "rejected"),
    ("invalid", "INVALID"),
    ("absent", "ABSENT"),
    ("valid_unchanged", "VALID_same"),
    ("valid_mutated_check_agrees", "VALID_mut_ok"),
    ("escaped", "escaped"),
    ("valid_after_flip_in_check", "VALID_flip"),
    ("valid_without_check", "VALID_nochk"),
)
BAD = ("escaped", "valid_after_flip_in_check", "valid_without_check")


def run(cases: int = CASES, seed: int = SEED, *, exhaustive: bool = True) -> int:
    """Benchmark entry point (see :mod:`benchmarks`); ``exhaustive=False`` skips the every-flip pass."""
    samples = load_samples()
    status = 0
    print(f"seed {seed}, {cases} cases per decoder")
    for protocol, found in samples.items():
        checked = sum(sample.span is not None for sample in found)
        print(f"samples {protocol}: {len(found)} ({checked} with a valid check)")
    print(f"{'decoder':<19}{'secs':>6}" + "".join(f"{heading:>13}" for _name, heading in COLUMNS))
    results: dict[str, Tally] = {}
    for target in TARGETS:
        start = time.perf_counter()
        tally = fuzz(target, samples[target.protocol], cases, seed)
        if exhaustive:
            every_single_flip(target, samples[target.protocol], tally)
        results[target.name] = tally
        took = time.perf_counter() - start
        counts = "".join(f"{tally.counts[name]:>13}" for name, _heading in COLUMNS)
        print(f"{target.name:<19}{took:>6.1f}{counts}", flush=True)
    print("cases: the random mix, then every single bit flip of every checked span; rejected:")
    print("SmartMeterError; INVALID/ABSENT: decoded with a failed/no check; VALID_same: the seed")
    print("itself; VALID_mut_ok: mutated outside the checked span, or the independent check")
    print("agrees (collisions of several flips); escaped: any other exception or a hang;")
    print("VALID_flip: VALID after one bit flipped in the checked span; VALID_nochk: VALID")
    print("though the independent check fails. The last three must be 0.")
    for name, tally in results.items():
        for failure in tally.failures:
            print(f"FAIL {name}: {failure}")
        if any(tally.counts[what] for what in BAD):
            status = 1
    for name, tally in results.items():
        print(f"target fuzz_escapes_{name} {tally.counts['escaped']} 0")
    for name, tally in results.items():
        wrong = tally.counts["valid_after_flip_in_check"] + tally.counts["valid_without_check"]
        print(f"target fuzz_false_valid_{name} {wrong} 0")
    return status
