"""Decode meter captures from the command line and print them as JSON.

``python -m custom_components.smartmeter.core.cli [--protocol auto|dsmr|sml|dlms|iec62056-21|mbus] [--key HEX]
[--tz ZONE] FILE`` (``scripts/decode`` wraps it). ``FILE`` may hold several
frames, or be ``-`` for standard input; ``*.hex`` files (and hex text on standard
input) are hex dumps of binary frames.

Exit status: 0 when at least one frame decoded with a valid or absent check, 1
when none did (one line on standard error says why), 2 for bad arguments.

Protocols live in :data:`PROTOCOLS`, built from the core's registry
(:data:`.protocols.PROTOCOLS`: P1/DSMR, SML, DLMS/COSEM, IEC 62056-21, M-Bus);
a new one is a :class:`ProtocolSpec` passed to :func:`register_protocol` (how
to split a capture, its decoder, and a cheap sniffing test that ``--protocol
auto`` uses, in registration order).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import NoReturn, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .dlms import split_dlms
from .errors import ChecksumError, DecryptionError, KeyRequiredError, SmartMeterError, WrongKeyError
from .framer import P1Framer
from .iec62056 import split_iec
from .mbus import split_mbus
from .models import Frame, HistoryEntry, Integrity, Meter, Register
from .p1 import DEFAULT_TZ
from .protocols import PROTOCOLS as ALL_PROTOCOLS
from .smarty import parse_key
from .sml import split_sml

PROG = "decode"
_HEX_TEXT = re.compile(rb"\A[0-9a-fA-F\s]+\Z")


class Framer(Protocol):
    """What a protocol's stream framer offers: bytes in, whole frames out."""

    discarded: int

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the frames they completed."""
        ...  # pragma: no cover


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """One protocol the decoder knows.

    ``split`` cuts a whole capture into raw frames and returns them with the
    number of bytes that belonged to no frame; ``decode`` turns one raw frame
    into a :class:`Frame` (raising :class:`SmartMeterError` otherwise);
    ``sniff`` tells ``--protocol auto`` whether a capture looks like this
    protocol.
    """

    name: str
    description: str
    split: Callable[[bytes], tuple[list[bytes], int]]
    decode: Callable[[bytes, bytes | None, tzinfo], Frame]
    sniff: Callable[[bytes], bool]


PROTOCOLS: dict[str, ProtocolSpec] = {}
FALLBACK = "dsmr"  # what ``auto`` decodes a capture as when nothing recognises it


def register_protocol(spec: ProtocolSpec) -> None:
    """Make a protocol available to ``--protocol`` (and to ``auto``, in order)."""
    PROTOCOLS[spec.name] = spec


def _split_p1(data: bytes) -> tuple[list[bytes], int]:
    framer = P1Framer()
    frames = framer.feed(data)
    # A capture may stop right after the CRC (no line end): end the last line so
    # the framer does not keep waiting for more CRC digits. When that newline
    # completes nothing and is thrown away, it is not the capture's byte.
    before = framer.discarded
    tail = framer.feed(b"\n")
    discarded = framer.discarded
    if not tail and discarded > before:
        discarded -= 1
    return frames + tail, discarded


# How each protocol cuts a whole capture (the stream framers, plus what to do
# with the bytes left at the end of the capture).
_SPLIT: dict[str, Callable[[bytes], tuple[list[bytes], int]]] = {
    "dsmr": _split_p1,
    "sml": split_sml,
    "dlms": split_dlms,
    "iec62056-21": split_iec,
    "mbus": split_mbus,
}

for _info in ALL_PROTOCOLS.values():
    register_protocol(
        ProtocolSpec(
            name=_info.name,
            description=_info.description,
            split=_SPLIT[_info.name],
            decode=_info.decode,
            sniff=_info.sniff,
        )
    )


def _structurally(spec: ProtocolSpec, data: bytes) -> bool:
    """Whether ``spec`` finds a frame of its own in ``data`` (even one that fails its check)."""
    try:
        raw_frames, _ = spec.split(data)
    except Exception:
        return False
    for raw in raw_frames:
        try:
            spec.decode(raw, None, DEFAULT_TZ)
        except (ChecksumError, DecryptionError):
            return True
        except Exception:  # noqa: S112 - not this protocol's frame
            continue
        return True
    return False


def detect_protocol(data: bytes) -> ProtocolSpec:
    """The first registered protocol whose sniffing test accepts ``data``.

    When none does (a frame whose header check fails defeats the cheap
    tests), the first of the core's protocols that finds one of its frames in
    the capture; else :data:`FALLBACK`.
    """
    for spec in PROTOCOLS.values():
        if spec.sniff(data):
            return spec
    for spec in PROTOCOLS.values():
        if spec.name != FALLBACK and spec.name in ALL_PROTOCOLS and _structurally(spec, data):
            return spec
    return PROTOCOLS.get(FALLBACK) or next(iter(PROTOCOLS.values()))


# ---------------------------------------------------------------- decoding


@dataclass(slots=True)
class DecodeReport:
    """Everything one run found in a capture."""

    protocol: str
    frames: list[Frame] = field(default_factory=list)
    discarded: int = 0
    found: int = 0
    crc_failed: int = 0
    key_required: int = 0
    wrong_key: int = 0
    undecodable: list[str] = field(default_factory=list)
    checksum_errors: list[str] = field(default_factory=list)  # frames rejected for their check

    @property
    def usable(self) -> list[Frame]:
        """Frames whose check passed or that carry none."""
        return [f for f in self.frames if f.integrity is not Integrity.INVALID]

    def failure(self) -> str | None:
        """One line saying why no frame is usable, or ``None`` when one is."""
        if self.usable:
            return None
        if not self.found:
            skipped = f" ({_plural(self.discarded, 'byte')} of other data)" if self.discarded else ""
            return f"no {self.protocol} telegram found{skipped}"
        reasons = []
        if self.key_required:
            reasons.append("encrypted telegram: pass --key")
        if self.wrong_key:
            reasons.append(f"wrong key: {_plural(self.wrong_key, 'encrypted frame')} did not decrypt")
        if self.crc_failed:
            verb = "frame failed its CRC" if self.crc_failed == 1 else "frames failed their CRC"
            reasons.append(f"no frame with a valid CRC: {self.crc_failed} {verb}")
        if self.undecodable:
            reasons.append(
                f"{_plural(len(self.undecodable), 'frame')} could not be decoded: {self.undecodable[0]}"
            )
        return "; ".join(reasons)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def decode_capture(
    data: bytes,
    *,
    protocol: str = "auto",
    key: bytes | None = None,
    tz: tzinfo = DEFAULT_TZ,
) -> DecodeReport:
    """Frame and decode every frame of a capture; never raises for bad data."""
    spec = detect_protocol(data) if protocol == "auto" else PROTOCOLS[protocol]
    raw_frames, discarded = spec.split(data)
    report = DecodeReport(protocol=spec.name, discarded=discarded, found=len(raw_frames))
    for raw in raw_frames:
        try:
            frame = spec.decode(raw, key, tz)
        except KeyRequiredError:
            report.key_required += 1
            continue
        except WrongKeyError:
            report.wrong_key += 1
            continue
        except ChecksumError as err:
            report.crc_failed += 1
            report.checksum_errors.append(str(err))
            continue
        except SmartMeterError as err:
            report.undecodable.append(str(err))
            continue
        except Exception as err:  # a decoder bug must not end in a traceback
            report.undecodable.append(f"decoder error {type(err).__name__}: {err}")
            continue
        if frame.integrity is Integrity.INVALID:
            report.crc_failed += 1
        report.frames.append(frame)
    return report


# ---------------------------------------------------------------- JSON


def _history_json(entry: HistoryEntry) -> dict[str, object]:
    return {"timestamp": entry.timestamp, "value": entry.value, "unit": entry.unit, "start": entry.start}


def _register_json(reg: Register) -> dict[str, object]:
    out: dict[str, object] = {
        "obis": reg.obis,
        "key": reg.key,
        "value": reg.value,
        "unit": reg.unit,
        "timestamp": reg.timestamp,
    }
    if reg.history:
        out["history"] = [_history_json(entry) for entry in reg.history]
    return out


def _meter_json(meter: Meter) -> dict[str, object]:
    return {
        "id": meter.id,
        "medium": meter.medium,
        "channel": meter.channel,
        "manufacturer": meter.manufacturer,
        "model": meter.model,
        "serial_number": meter.serial_number,
        "parent_id": meter.parent_id,
        "timestamp": meter.timestamp,
        "registers": [_register_json(reg) for reg in meter.registers],
    }


def frame_json(frame: Frame) -> dict[str, object]:
    """A decoded frame as plain data (Decimal and datetime values kept)."""
    return {
        "crc": frame.integrity,
        "encrypted": frame.encrypted,
        "header": frame.header,
        "version": frame.version,
        "meters": [_meter_json(meter) for meter in frame.meters],
    }


def report_json(report: DecodeReport) -> dict[str, object]:
    """The whole run as plain data: ``{"protocol", "frames", ...}``."""
    errors = (
        ["encrypted telegram: pass --key"] * report.key_required
        + ["wrong key"] * report.wrong_key
        + report.checksum_errors
        + report.undecodable
    )
    return {
        "protocol": report.protocol,
        "frames": [frame_json(frame) for frame in report.frames],
        "discarded_bytes": report.discarded,
        "errors": errors,
    }


def _scalar(value: object) -> str:
    """JSON text of a leaf value; Decimals become numbers written exactly as decoded."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else "null"
    if isinstance(value, (datetime, date)):
        return json.dumps(value.isoformat())
    if isinstance(value, (str, int, float)):
        return json.dumps(value)
    return json.dumps(str(value))


def _is_leaf(value: object) -> bool:
    return not isinstance(value, (dict, list, tuple)) or not value


def _chunks(value: object, level: int) -> Iterator[str]:
    pad = "  " * (level + 1)
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        items = list(value.items())
        if all(_is_leaf(v) for _, v in items):
            yield (
                "{" + ", ".join(f"{json.dumps(str(k))}: {''.join(_chunks(v, level))}" for k, v in items) + "}"
            )
            return
        yield "{\n"
        for i, (k, v) in enumerate(items):
            yield f"{pad}{json.dumps(str(k))}: "
            yield from _chunks(v, level + 1)
            yield ",\n" if i < len(items) - 1 else "\n"
        yield "  " * level + "}"
    elif isinstance(value, (list, tuple)):
        if not value:
            yield "[]"
            return
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            yield "[" + ", ".join(_scalar(v) for v in value) + "]"
            return
        yield "[\n"
        for i, v in enumerate(value):
            yield pad
            yield from _chunks(v, level + 1)
            yield ",\n" if i < len(value) - 1 else "\n"
        yield "  " * level + "]"
    else:
        yield _scalar(value)


def dumps(value: object) -> str:
    """Indented JSON, one line per register; exact decimals (``2130.115`` stays ``2130.115``)."""
    return "".join(_chunks(value, 0))


# ---------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}") from err


def _key(text: str) -> bytes:
    try:
        return parse_key(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def build_parser() -> argparse.ArgumentParser:
    """The ``decode`` command's arguments."""
    protocols = ", ".join(f"{name} ({spec.description})" for name, spec in PROTOCOLS.items())
    parser = _Parser(
        prog=PROG,
        description="Decode a meter capture and print its frames as JSON.",
        epilog=f"protocols: {protocols}. Exit status 0 when at least one frame decoded with a "
        "valid or absent CRC, 1 when none did, 2 for bad arguments.",
    )
    parser.add_argument(
        "--protocol",
        choices=["auto", *PROTOCOLS],
        default="auto",
        help="the capture's protocol (default: auto-detect)",
    )
    parser.add_argument(
        "--key",
        type=_key,
        metavar="HEX",
        help="decryption key, 32 hex digits (Luxembourg Smarty, encrypted DLMS)",
    )
    parser.add_argument(
        "--tz",
        type=_tz,
        default=DEFAULT_TZ,
        metavar="ZONE",
        help="time zone of the meter's clock (default: Europe/Amsterdam)",
    )
    parser.add_argument(
        "file", metavar="FILE", help="capture to decode ('-' for standard input; *.hex = hex text)"
    )
    return parser


def read_capture(name: str) -> bytes:
    """The capture's bytes: a file, ``-`` for stdin; hex text is turned into bytes.

    Raises ``ValueError`` for a ``.hex`` file that is not hex text, ``OSError``
    when the file cannot be read.
    """
    if name == "-":
        data = sys.stdin.buffer.read()
        return bytes.fromhex(data.decode("ascii")) if _HEX_TEXT.match(data) else data
    path = Path(name)
    data = path.read_bytes()
    if path.suffix.lower() == ".hex":
        try:
            return bytes.fromhex(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"{name}: not hex text") from err
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        data = read_capture(args.file)
    except (OSError, ValueError) as err:
        message = f"cannot read {args.file}: {err.strerror}" if isinstance(err, OSError) else str(err)
        print(f"{PROG}: {message}", file=sys.stderr)
        return 1
    report = decode_capture(data, protocol=args.protocol, key=args.key, tz=args.tz)
    try:
        print(dumps(report_json(report)))
        sys.stdout.flush()
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    failure = report.failure()
    if failure is not None:
        print(f"{PROG}: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
