"""SML, DLMS/COSEM, M-Bus and IEC 62056-21 decoding: the core's decoders against smllib, amshan and pyMeterBus.

Every sample of the shared corpus (``sml/*.bin``, ``han_dlms/*.bin`` and
``*.llc.bin``, ``mbus/*.bin``, ``iec62056-21/*.txt``) that the protocol's
reference library decodes correctly is decoded by both, and their values are
compared before anything is timed: a value on which they disagree fails the
benchmark (exit status 1). Samples the reference cannot decode, or decodes
wrongly in a way listed below with its reason, are left out and named.

Each side does the whole job from the frame's bytes, checksums included:

- SML: ``decode_sml`` / smllib's ``SmlStreamReader.add`` + ``get_frame`` (CRC,
  unescaping) + ``parse_frame``, collecting the value lists.
- DLMS: ``decode_dlms`` / amshan's ``HdlcFrameReader.read`` (HCS/FCS) +
  ``AutoDecoder.decode_message``; LLC PDUs (``*.llc.bin``, no HDLC framing)
  go to ``AutoDecoder.decode_message_payload``. amshan keeps one reader and one
  decoder per meter (the decoder remembers which list layout worked last):
  so does the benchmark, per sample.
- M-Bus: ``decode_mbus`` / pyMeterBus' ``meterbus.load(...).interpreted``
  (pyMeterBus decodes values lazily: ``interpreted`` computes them all).
- IEC 62056-21: ``decode_iec`` alone; no reference library is installed.

Every sample is timed on its own, in several runs (alternating which decoder
goes first); a protocol's figure is the mean over its samples of the median
time per frame, and its target line the ratio of those means.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import meterbus  # type: ignore[import-untyped]
from han.autodecoder import AutoDecoder
from han.hdlc import HdlcFrameReader
from smllib.reader import SmlStreamReader

from custom_components.smartmeter.core.dlms import decode_dlms
from custom_components.smartmeter.core.iec62056 import decode_iec, split_iec
from custom_components.smartmeter.core.mbus import decode_mbus
from custom_components.smartmeter.core.models import Frame, Meter, Register
from custom_components.smartmeter.core.sml import decode_sml, format_server_id

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
# Each timing runs one frame about this long (seconds), at least once.
TARGET_SECONDS = 0.02
# Goal of every target: ours at most as slow as the reference library.
GOAL = 1.0

# (protocol, reference library) in the order they are reported.
PROTOCOLS: tuple[tuple[str, str | None], ...] = (
    ("sml", "smllib"),
    ("dlms", "amshan"),
    ("mbus", "pyMeterBus"),
    ("iec62056-21", None),
)

# Samples on which the reference library is wrong, per protocol: sample ->
# (the fields or records where it is wrong, why). A disagreement on exactly
# those leaves the sample out; any other disagreement fails the benchmark.
REFERENCE_WRONG: dict[str, dict[str, tuple[frozenset[str], str]]] = {
    "dlms": {
        "no_kamstrup_list1_vendor_example.llc": (
            frozenset({"meter_datetime"}),
            "amshan ignores the clock status 'invalid value' and gives 2000-01-01 22:33 as the meter time",
        ),
    },
    "mbus": {
        "landisgyr_ultraheat_t230_heat": (
            frozenset({"mbus:9410/AD6F", "mbus:9410/BB6F", "mbus:9410/DA6F", "mbus:9410/DE6F"}),
            "pyMeterBus reads the four type F dates 'date/time of last end' (VIFE 6F) as numbers "
            "(e.g. 41065374.6 °C; libmbus does the same)",
        ),
        "lgb_g350_gas": (
            frozenset({"mbus:46/6D"}),
            "pyMeterBus reads the 6-byte type I date/time (DIF x6, VIF 6D) as a 4-byte type F one "
            "(2008-06-08 00:00 for 2016-07-22 08:00; libmbus agrees with ours)",
        ),
    },
}


class Mismatch(Exception):
    """Our decoder and the reference disagree on a value."""


class _Differ(Mismatch):
    """A disagreement on named fields (checked against REFERENCE_WRONG)."""

    def __init__(self, where: set[str], detail: str) -> None:
        super().__init__(detail)
        self.where = where


@dataclass
class Case:
    """One corpus sample: how each side decodes it, and its timings (seconds per frame)."""

    protocol: str
    name: str
    ours: Callable[[], object]
    reference: Callable[[], object] | None
    times: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "reference": []})

    def median(self, who: str) -> float:
        """Median seconds per frame over the runs."""
        return statistics.median(self.times[who])


def corpus_dir() -> Path:
    """The shared corpus beside the project (or /shared/corpus in the chroot)."""
    for candidate in (ROOT.parent / "shared" / "corpus", Path("/shared/corpus")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("../shared/corpus not found beside the project")


def _stem(path: Path) -> str:
    return path.name.removesuffix(".bin").removesuffix(".txt")


def _registers(frame: Frame) -> list[Register]:
    return [reg for meter in frame.meters for reg in meter.registers]


def _main(frame: Frame) -> Meter:
    meter = frame.main
    if meter is None:
        raise Mismatch("our frame has no meter")
    return meter


def _wrong(protocol: str, name: str, where: set[str]) -> str | None:
    """Why the sample is left out, if every disagreement is a known reference error."""
    known = REFERENCE_WRONG.get(protocol, {}).get(name)
    if known is not None and where and where <= known[0]:
        return known[1]
    return None


# ---------------------------------------------------------------- SML / smllib

# DLMS unit codes whose value we state in kilo-units (Wh -> kWh etc.).
_SML_KILO: dict[int, str] = {27: "kW", 29: "kvar", 30: "kWh", 32: "kvarh"}


def _smllib_decoder(raw: bytes) -> Callable[[], list[Any]]:
    """What smllib does: its whole job on one frame, with one stream reader kept (as for a meter)."""
    reader = SmlStreamReader()

    def decode() -> list[Any]:
        reader.add(raw)
        frame = reader.get_frame()
        if frame is None:
            raise ValueError("smllib found no frame")
        entries: list[Any] = []
        for message in frame.parse_frame():
            val_list = getattr(message.message_body, "val_list", None)
            if val_list:
                entries.extend(val_list)
        return entries

    return decode


def _obis_text(code: str) -> str:
    """Turn smllib's ``0100010800ff`` -> ``1-0:1.8.0`` (F kept as ``*F`` unless 255)."""
    a, b, c, d, e, f = bytes.fromhex(code)
    base = f"{a}-{b}:{c}.{d}.{e}"
    return base if f == 255 else f"{base}*{f}"


def _same_sml_text(obis: str, ours: object, theirs: str) -> bool:
    """Compare text: smllib gives octet strings as hex (a few as text): ours as text, hex or name-plate ID."""
    if ours == theirs:
        return True
    try:
        data = bytes.fromhex(theirs)
    except ValueError:
        return False
    return ours in (data.decode("latin-1"), format_server_id(data))


def _compare_sml(frame: Frame, entries: list[Any]) -> None:
    ours = _registers(frame)
    if [reg.obis for reg in ours] != [_obis_text(str(entry.obis)) for entry in entries]:
        raise Mismatch(
            f"OBIS codes differ: ours {[reg.obis for reg in ours]}, "
            f"smllib {[_obis_text(str(entry.obis)) for entry in entries]}"
        )
    for reg, entry in zip(ours, entries, strict=True):
        value = entry.value
        if isinstance(value, bool):
            ok = reg.value == Decimal(int(value))
        elif isinstance(value, int):
            shift = -3 if entry.unit in _SML_KILO else 0
            ok = reg.value == Decimal(value).scaleb((entry.scaler or 0) + shift)
            if entry.unit in _SML_KILO and reg.unit != _SML_KILO[entry.unit]:
                raise Mismatch(f"{reg.obis}: unit {reg.unit!r}, smllib unit code {entry.unit}")
        elif isinstance(value, str):
            ok = _same_sml_text(reg.obis, reg.value, value)
        elif isinstance(value, datetime):
            ok = reg.value == value
        else:
            ok = value is None and reg.value is None
        if not ok:
            raise Mismatch(
                f"{reg.obis}: ours {reg.value!r} {reg.unit}, smllib {value!r} scaler {entry.scaler}"
            )
        stamp = entry.val_time if isinstance(entry.val_time, datetime) else None
        if reg.timestamp != stamp:
            raise Mismatch(f"{reg.obis}: time ours {reg.timestamp}, smllib {stamp}")


def load_sml() -> tuple[list[Case], list[str]]:
    """SML samples smllib decodes; both decoders' values compared."""
    cases: list[Case] = []
    skipped: list[str] = []
    for path in sorted((corpus_dir() / "sml").glob("*.bin")):
        raw, name = path.read_bytes(), _stem(path)
        reference = _smllib_decoder(raw)
        try:
            theirs = reference()
        except Exception as err:  # the reference fails: not its sample
            skipped.append(f"sml {name}: smllib fails ({type(err).__name__})")
            continue
        ours = partial(decode_sml, raw)
        if _agree("sml", name, ours, partial(_compare_sml, entries=theirs), skipped):
            cases.append(Case("sml", name, ours, reference))
    return cases, skipped


# ---------------------------------------------------------------- DLMS / amshan

# amshan field -> (our register key, factor from our unit to amshan's): W/Wh vs kW/kWh.
AMSHAN_FIELDS: dict[str, tuple[str, int]] = {
    "active_power_import": ("power_import", 1000),
    "active_power_export": ("power_export", 1000),
    "reactive_power_import": ("reactive_power_import", 1000),
    "reactive_power_export": ("reactive_power_export", 1000),
    "active_power_import_total": ("energy_import_total", 1000),
    "active_power_export_total": ("energy_export_total", 1000),
    "reactive_power_import_total": ("reactive_energy_import_total", 1000),
    "reactive_power_export_total": ("reactive_energy_export_total", 1000),
    "list_ver_id": ("list_version", 1),
    "meter_id": ("meter_serial", 1),
    "meter_type": ("meter_model", 1),
    **{
        f"{field}_l{phase}": (f"{key}_l{phase}", factor)
        for phase in (1, 2, 3)
        for field, key, factor in (
            ("active_power_import", "power_import", 1000),
            ("active_power_export", "power_export", 1000),
            ("reactive_power_import", "reactive_power_import", 1000),
            ("reactive_power_export", "reactive_power_export", 1000),
            ("current", "current", 1),
            ("voltage", "voltage", 1),
        )
    },
}


def _amshan_decoder(raw: bytes) -> Callable[[], list[dict[str, Any]]]:
    """What amshan does: its whole job on one sample, with one reader and one decoder kept (as for a meter)."""
    decoder = AutoDecoder()
    if raw[:1] != b"\x7e":  # an LLC PDU without HDLC framing

        def decode_llc() -> list[dict[str, Any]]:
            decoded = decoder.decode_message_payload(raw)
            return [] if decoded is None else [decoded]

        return decode_llc
    reader = HdlcFrameReader(use_octet_stuffing=False)

    def decode_hdlc() -> list[dict[str, Any]]:
        found = []
        for frame in reader.read(raw):
            if frame.is_good_ffc and frame.is_expected_length:
                decoded = decoder.decode_message(frame)
                if decoded is not None:
                    found.append(decoded)
        return found

    return decode_hdlc


def _compare_dlms(frame: Frame, decoded: list[dict[str, Any]]) -> None:
    """Every value amshan finds is ours; the fields where we differ."""
    meter = _main(frame)
    values = {reg.key: reg.value for reg in meter.registers}
    differ: set[str] = set()
    details: list[str] = []
    compared = 0
    for stated_fields in decoded:
        for name, stated in stated_fields.items():
            if name == "meter_manufacturer":
                # amshan names the maker of the list layout it matched; we only
                # when the frame says so (a list version string).
                if "list_version" in values and meter.manufacturer != stated:
                    raise Mismatch(f"manufacturer: ours {meter.manufacturer!r}, amshan {stated!r}")
                continue
            if name == "meter_datetime":
                ours_time = meter.timestamp
                if ours_time is not None and stated.tzinfo is None:
                    ours_time = ours_time.replace(tzinfo=None)
                if ours_time != stated:
                    differ.add(name)
                    details.append(f"meter time: ours {meter.timestamp}, amshan {stated}")
                continue
            if name not in AMSHAN_FIELDS:
                raise Mismatch(f"amshan field {name!r} has no register key in the benchmark")
            key, factor = AMSHAN_FIELDS[name]
            if key not in values:
                raise Mismatch(f"{key}: missing in ours, amshan {name} = {stated!r}")
            ours = values[key]
            if isinstance(stated, str):
                same = ours == stated
            else:
                same = isinstance(ours, Decimal) and ours * factor == Decimal(repr(stated))
            if not same:
                raise Mismatch(f"{key}: ours {ours!r}, amshan {name} = {stated!r}")
            compared += 1
    if not compared:
        raise Mismatch("amshan decoded no value to compare")
    if differ:
        raise _Differ(differ, "; ".join(details))


def _amshan_refusal(raw: bytes) -> str:
    """Why amshan decodes nothing from a sample."""
    if raw[:1] != b"\x7e":
        return "no list layout matches"
    frames = HdlcFrameReader(use_octet_stuffing=False).read(raw)
    if not frames:
        return "its HDLC reader finds no complete frame"
    if not any(frame.is_good_ffc and frame.is_expected_length for frame in frames):
        return "its HDLC reader rejects the frame: check sequence or length"
    return "no list layout matches"


def _ours_on(raw: bytes) -> str:
    try:
        decode_dlms(raw)
    except Exception as err:  # only described
        return f"ours raises {type(err).__name__}"
    return "ours decodes it"


def load_dlms() -> tuple[list[Case], list[str]]:
    """DLMS samples amshan decodes (HDLC frames and LLC PDUs); values compared."""
    cases: list[Case] = []
    skipped: list[str] = []
    for path in sorted((corpus_dir() / "han_dlms").glob("*.bin")):
        raw, name = path.read_bytes(), _stem(path)
        reference = _amshan_decoder(raw)
        try:
            theirs = reference()
        except Exception as err:  # the reference fails: not its sample
            skipped.append(f"dlms {name}: amshan fails ({type(err).__name__})")
            continue
        if not theirs:
            skipped.append(f"dlms {name}: amshan decodes nothing ({_amshan_refusal(raw)}; {_ours_on(raw)})")
            continue
        ours = partial(decode_dlms, raw)
        if _agree("dlms", name, ours, partial(_compare_dlms, decoded=theirs), skipped):
            cases.append(Case("dlms", name, ours, reference))
    return cases, skipped


# ---------------------------------------------------------------- M-Bus / pyMeterBus

# Our unit -> (pyMeterBus' unit, factor from ours to it).
_MBUS_UNITS: dict[str, tuple[str, int]] = {
    "kWh": ("MeasureUnit.WH", 1000),
    "MWh": ("MeasureUnit.WH", 10**6),
    "Wh": ("MeasureUnit.WH", 1),
    "W": ("MeasureUnit.W", 1),
    "kW": ("MeasureUnit.W", 1000),
    "V": ("MeasureUnit.V", 1),
    "A": ("MeasureUnit.A", 1),
    "K": ("MeasureUnit.K", 1),
    "°C": ("MeasureUnit.C", 1),
    "m3": ("MeasureUnit.M3", 1),
    "m3/h": ("MeasureUnit.M3_H", 1),
    "s": ("MeasureUnit.SECONDS", 1),
    "min": ("MeasureUnit.SECONDS", 60),
    "h": ("MeasureUnit.SECONDS", 3600),
    "d": ("MeasureUnit.SECONDS", 86400),
}
_REL = Decimal("1e-9")  # pyMeterBus computes scaled values in binary floating point


def _pymeterbus_decode(raw: bytes) -> dict[str, Any]:
    """What pyMeterBus does: its whole job: parse the telegram and interpret every field and record."""
    interpreted: dict[str, Any] = meterbus.load(raw).interpreted
    return interpreted


def _same_mbus_value(reg: Register, info: dict[str, Any]) -> bool:
    ours, theirs = reg.value, info["value"]
    if isinstance(ours, datetime):
        text = str(theirs)
        return ours.strftime("%Y-%m-%dT%H:%M" if len(text) > 10 else "%Y-%m-%d") == text
    if isinstance(ours, str):
        if ours.isdecimal() and isinstance(theirs, (int, Decimal)):
            return Decimal(ours) == Decimal(theirs)  # identification numbers as digits
        return str(theirs).strip() == ours.strip()
    if ours is None:
        return theirs in (None, "") or (isinstance(theirs, str) and not theirs.strip())
    if not isinstance(theirs, (int, Decimal)):
        return False
    unit, factor = _MBUS_UNITS.get(reg.unit or "", (None, 1))
    if unit is not None and info["unit"] != unit:
        return False
    expected = Decimal(ours) * factor
    return abs(Decimal(theirs) - expected) <= max(_REL, abs(expected) * _REL)


def _compare_mbus(frame: Frame, raw: bytes) -> None:
    """Every pyMeterBus record against our register with its DIB/VIB; the codes where they differ."""
    telegram = meterbus.load(raw)
    header = telegram.body.bodyHeader
    meter = _main(frame)
    if meter.manufacturer != header.manufacturer_field.decodeManufacturer:
        raise Mismatch(f"manufacturer: ours {meter.manufacturer}, pyMeterBus {header.interpreted}")
    if meter.id != "".join(f"{byte:02x}" for byte in header.id_nr):
        raise Mismatch(f"identification: ours {meter.id}, pyMeterBus {header.interpreted}")
    unused = list(meter.registers)
    differ: set[str] = set()
    details: list[str] = []
    compared = 0
    for record in telegram.body.bodyPayload.records:
        if record.dib.is_eoud:
            continue  # manufacturer data / more records follow
        code = "mbus:" + bytes(record.dib.parts).hex().upper() + "/" + bytes(record.vib.parts).hex().upper()
        # A plain-text VIF (7C/FC) carries its text after it: ours names it in the code.
        reg = next((r for r in unused if r.obis == code), None) or next(
            (r for r in unused if r.obis.startswith(code) and record.vib.parts[0] & 0x7F == 0x7C), None
        )
        if reg is None:
            raise Mismatch(f"record {code}: not in ours")
        unused.remove(reg)
        info = record.interpreted
        if not _same_mbus_value(reg, info):
            differ.add(code)
            details.append(
                f"{code}: ours {reg.value!r} {reg.unit}, pyMeterBus {info['value']!r} {info['unit']}"
            )
        compared += 1
    if not compared:
        raise Mismatch("pyMeterBus decoded no record")
    if differ:
        raise _Differ(differ, "; ".join(details))


def load_mbus() -> tuple[list[Case], list[str]]:
    """M-Bus samples pyMeterBus decodes; record values compared."""
    cases: list[Case] = []
    skipped: list[str] = []
    for path in sorted((corpus_dir() / "mbus").glob("*.bin")):
        raw, name = path.read_bytes(), _stem(path)
        reference = partial(_pymeterbus_decode, raw)
        try:
            reference()
        except Exception as err:  # the reference fails: not its sample
            skipped.append(f"mbus {name}: pyMeterBus fails ({type(err).__name__})")
            continue
        ours = partial(decode_mbus, raw)
        if _agree("mbus", name, ours, partial(_compare_mbus, raw=raw), skipped):
            cases.append(Case("mbus", name, ours, reference))
    return cases, skipped


# ---------------------------------------------------------------- IEC 62056-21 (no reference)


def load_iec() -> tuple[list[Case], list[str]]:
    """IEC 62056-21 messages (cut from each sample as the framer does): ours alone."""
    cases: list[Case] = []
    for path in sorted((corpus_dir() / "iec62056-21").glob("*.txt")):
        frames, _discarded = split_iec(path.read_bytes())
        for index, message in enumerate(frames):
            name = _stem(path) if len(frames) == 1 else f"{_stem(path)}#{index}"
            ours = partial(decode_iec, message)
            try:
                frame = ours()
            except Exception as err:
                raise Mismatch(f"iec62056-21 {name}: ours fails: {type(err).__name__}: {err}") from err
            if not _registers(frame):
                raise Mismatch(f"iec62056-21 {name}: ours decodes no register")
            cases.append(Case("iec62056-21", name, ours, None))
    return cases, []


# ---------------------------------------------------------------- common


def _agree(
    protocol: str,
    name: str,
    ours: Callable[[], Frame],
    compare: Callable[[Frame], None],
    skipped: list[str],
) -> bool:
    """Decode with ours and compare: True when they agree, False for a known reference error.

    Raises :class:`Mismatch` for any other disagreement, or when ours fails.
    """
    try:
        frame = ours()
    except Exception as err:
        raise Mismatch(
            f"{protocol} {name}: ours fails where the reference decodes: {type(err).__name__}: {err}"
        ) from err
    try:
        compare(frame)
    except _Differ as err:
        why = _wrong(protocol, name, err.where)
        if why is None:
            raise Mismatch(f"{protocol} {name}: {err}") from err
        skipped.append(f"{protocol} {name}: reference wrong: {why}")
        return False
    except Mismatch as err:
        raise Mismatch(f"{protocol} {name}: {err}") from err
    return True


LOADERS: dict[str, Callable[[], tuple[list[Case], list[str]]]] = {
    "sml": load_sml,
    "dlms": load_dlms,
    "mbus": load_mbus,
    "iec62056-21": load_iec,
}


def _calibrate(func: Callable[[], object], seconds: float) -> int:
    """How many calls take about ``seconds``."""
    timer = timeit.Timer(func)
    number, elapsed = 1, 0.0
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= seconds / 10 or number >= 1_000_000:
            break
        number *= 10
    return max(1, round(number * seconds / max(elapsed, 1e-9)))


def measure(cases: list[Case], runs: int = RUNS, seconds: float = TARGET_SECONDS) -> None:
    """Time every case ``runs`` times with each decoder (alternating their order)."""
    plan: list[tuple[Case, dict[str, tuple[Callable[[], object], int]]]] = []
    for case in cases:
        funcs: dict[str, Callable[[], object]] = {"ours": case.ours}
        if case.reference is not None:
            funcs["reference"] = case.reference
        plan.append((case, {who: (func, _calibrate(func, seconds)) for who, func in funcs.items()}))
    for run_no in range(runs):
        for case, timed in plan:
            for who in sorted(timed, reverse=run_no % 2 == 1):
                func, number = timed[who]
                case.times[who].append(timeit.Timer(func).timeit(number) / number)


def _mean(cases: list[Case], who: str) -> float:
    return sum(case.median(who) for case in cases) / len(cases) * 1e6


def report(cases: list[Case], skipped: list[str], runs: int) -> dict[str, float]:
    """Print the per-sample and per-protocol tables; return ours / reference per protocol."""
    width = max(len(case.name) for case in cases)
    print(f"{'protocol':<12} {'sample':<{width}} {'ours µs':>9} {'reference µs':>13} {'ratio':>7}")
    for case in cases:
        ours = case.median("ours") * 1e6
        if case.reference is None:
            print(f"{case.protocol:<12} {case.name:<{width}} {ours:9.1f} {'-':>13} {'-':>7}")
        else:
            theirs = case.median("reference") * 1e6
            print(f"{case.protocol:<12} {case.name:<{width}} {ours:9.1f} {theirs:13.1f} {ours / theirs:7.3f}")
    print()
    print(
        f"{'protocol':<12} {'reference':<11} {'samples':>7} {'ours µs':>9} {'reference µs':>13} {'ratio':>7}"
    )
    ratios: dict[str, float] = {}
    for protocol, library in PROTOCOLS:
        chosen = [case for case in cases if case.protocol == protocol]
        if not chosen:
            print(f"{protocol:<12} {library or '-':<11} {0:7d} {'-':>9} {'-':>13} {'-':>7}")
            continue
        ours = _mean(chosen, "ours")
        if library is None:
            print(
                f"{protocol:<12} {'-':<11} {len(chosen):7d} {ours:9.1f} {'-':>13} {'-':>7}  (no reference library)"
            )
            continue
        theirs = _mean(chosen, "reference")
        ratios[protocol] = ours / theirs
        print(
            f"{protocol:<12} {library:<11} {len(chosen):7d} {ours:9.1f} {theirs:13.1f} {ours / theirs:7.3f}"
        )
    print(
        f"(µs per frame: mean over the samples of the median of {runs} runs; checksums checked by both; "
        "values compared before timing)"
    )
    print("iec62056-21: no reference library decodes it (none installed); ours is shown alone.")
    for reason in skipped:
        print(f"left out: {reason}")
    return ratios


def run(runs: int = RUNS, seconds: float = TARGET_SECONDS) -> int:
    """Benchmark entry point (see :mod:`benchmarks`)."""
    cases: list[Case] = []
    skipped: list[str] = []
    try:
        for loader in LOADERS.values():
            found, left_out = loader()
            cases += found
            skipped += left_out
    except Mismatch as err:
        print(f"MISMATCH: {err}")
        print("decoders disagree: nothing timed")
        return 1
    if not cases:
        print("no corpus sample to time")
        return 1
    measure(cases, runs, seconds)
    ratios = report(cases, skipped, runs)
    for protocol, library in PROTOCOLS:
        if library is not None and protocol in ratios:
            print(f"target {protocol}_decode_time_vs_{library.lower()} {ratios[protocol]:.4f} {GOAL:.1f}")
    return 0
