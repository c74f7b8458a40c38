"""P1 telegram decoding: the core's decode_telegram against dsmr_parser's TelegramParser.

Both decode the same real telegrams of the shared corpus, CRC check included
(``apply_checksum_validation=True``; DSMR 2.2/3 telegrams carry no CRC, for
either). dsmr_parser gets, per file, the telegram specification of the file's
variant; telegrams it cannot parse cleanly are left out so both do the same
work. Every telegram is timed on its own, in several runs; the table shows the
median per-telegram time and the target line the ratio of the summed medians.
"""

from __future__ import annotations

import logging
import re
import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

from custom_components.smartmeter.core.models import Integrity
from custom_components.smartmeter.core.p1 import decode_telegram

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
# Each timing runs a telegram this long (seconds), at least once.
TARGET_SECONDS = {"ours": 0.02, "dsmr_parser": 0.04}
GOAL = 0.2
# Corpus file name (regex) -> dsmr_parser specification of that variant.
SPEC_FOR_FILE: tuple[tuple[str, str], ...] = (
    (r"^nl_dsmr22_", "V2_2"),
    (r"^nl_dsmr30_", "V3"),
    (r"^nl_dsmr42_", "V4"),
    (r"^nl_dsmr50_", "V5"),
    (r"^nl_itron_ace4000", "V2_2"),
    (r"^be_fluvius_", "BELGIUM_FLUVIUS"),
    (r"^lu_smarty_", "LUXEMBOURG_SMARTY"),
    (r"^ie_iskra_", "ISKRA_IE"),
    (r"^hu_eon_", "EON_HUNGARY"),
    (r"^se_", "SWEDEN"),
    # dsmr_parser's SAGEMCOM_T210_D_R spec expects the encrypted hex frame; the
    # plaintext is DSMR 5.
    (r"^at_sagemcom_", "V5"),
)


def corpus_dir() -> Path:
    """The shared corpus beside the project (or /shared/corpus in the chroot)."""
    for candidate in (ROOT.parent / "shared" / "corpus", Path("/shared/corpus")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("../shared/corpus not found beside the project")


@dataclass
class Case:
    """One telegram, its dsmr_parser spec and its timings (seconds per decode)."""

    name: str
    spec_name: str
    raw: bytes
    text: str
    parser: Any
    times: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "dsmr_parser": []})

    def median(self, who: str) -> float:
        """Median seconds per decode over the runs."""
        return statistics.median(self.times[who])


class _ErrorSeen(logging.Handler):
    """Notices dsmr_parser logging a line it could not parse."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen = True


def spec_name_for(file_name: str) -> str | None:
    """The dsmr_parser specification for a corpus file, by its variant."""
    for pattern, spec_name in SPEC_FOR_FILE:
        if re.search(pattern, file_name):
            return spec_name
    return None


def load_cases() -> tuple[list[Case], list[str]]:
    """The telegrams both decoders parse cleanly; and why the others were left out."""
    cases: list[Case] = []
    skipped: list[str] = []
    dsmr_logger = logging.getLogger("dsmr_parser")
    watcher = _ErrorSeen()
    dsmr_logger.addHandler(watcher)
    dsmr_logger.propagate = False
    try:
        for path in sorted((corpus_dir() / "dsmr").glob("*.txt")):
            spec_name = spec_name_for(path.name)
            if spec_name is None:
                skipped.append(f"{path.name}: no dsmr_parser specification for this variant")
                continue
            raw = path.read_bytes()
            text = raw.decode("latin-1")
            parser = TelegramParser(
                getattr(telegram_specifications, spec_name), apply_checksum_validation=True
            )
            watcher.seen = False
            try:
                parser.parse(text)
            except Exception as err:  # any failure means "not the same work"
                skipped.append(f"{path.name}: dsmr_parser {spec_name}: {type(err).__name__}")
                continue
            if watcher.seen:
                skipped.append(f"{path.name}: dsmr_parser {spec_name} logged a parse error")
                continue
            if decode_telegram(raw).integrity is Integrity.INVALID:
                skipped.append(f"{path.name}: CRC invalid")
                continue
            cases.append(Case(path.stem, spec_name, raw, text, parser))
    finally:
        dsmr_logger.removeHandler(watcher)
    return cases, skipped


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


def measure(cases: list[Case], runs: int = RUNS) -> None:
    """Time every case ``runs`` times with each decoder (alternating their order)."""
    funcs: dict[str, dict[str, Callable[[], object]]] = {}
    numbers: dict[tuple[str, str], int] = {}
    logging.getLogger("dsmr_parser").disabled = True
    for case in cases:
        raw, text, parser = case.raw, case.text, case.parser
        funcs[case.name] = {"ours": partial(decode_telegram, raw), "dsmr_parser": partial(parser.parse, text)}
        for who, func in funcs[case.name].items():
            numbers[case.name, who] = _calibrate(func, TARGET_SECONDS[who])
    for run_no in range(runs):
        order = ("ours", "dsmr_parser") if run_no % 2 == 0 else ("dsmr_parser", "ours")
        for case in cases:
            for who in order:
                number = numbers[case.name, who]
                elapsed = timeit.Timer(funcs[case.name][who]).timeit(number)
                case.times[who].append(elapsed / number)


def report(cases: list[Case], skipped: list[str]) -> float:
    """Print the table; return ours / dsmr_parser over the whole corpus."""
    width = max(len(case.name) for case in cases)
    print(
        f"{'telegram':<{width}}  {'dsmr_parser spec':<17} {'ours µs':>9} {'dsmr_parser µs':>15} {'ratio':>7}"
    )
    for case in cases:
        ours, theirs = case.median("ours") * 1e6, case.median("dsmr_parser") * 1e6
        print(f"{case.name:<{width}}  {case.spec_name:<17} {ours:9.1f} {theirs:15.1f} {ours / theirs:7.3f}")
    ours_mean = sum(case.median("ours") for case in cases) / len(cases) * 1e6
    theirs_mean = sum(case.median("dsmr_parser") for case in cases) / len(cases) * 1e6
    ratio = ours_mean / theirs_mean
    name = f"mean of {len(cases)} telegrams"
    print(f"{name:<{width}}  {'':<17} {ours_mean:9.1f} {theirs_mean:15.1f} {ratio:7.3f}")
    print(f"(median of {RUNS} runs per telegram; CRC checked by both)")
    for reason in skipped:
        print(f"left out: {reason}")
    return ratio


def run() -> int:
    """Benchmark entry point (see :mod:`benchmarks`)."""
    cases, skipped = load_cases()
    if not cases:
        print("no telegram both decoders parse")
        return 1
    measure(cases)
    ratio = report(cases, skipped)
    print(f"target p1_decode_time_vs_dsmr_parser {ratio:.4f} {GOAL}")
    return 0
