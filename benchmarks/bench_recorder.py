"""Recorder load: one simulated day of 1 Hz telegrams through ours and Home Assistant's dsmr.

Issue 3. One day of DSMR 5 telegrams (``P1TelegramModel``, the default Iskra
MT382 template, a fixed seed) is fed over a pseudo-terminal, one telegram per
simulated second, to a real Home Assistant with the real ``recorder`` on a
SQLite file: once to the built-in ``dsmr`` integration at its defaults, once to
ours with its default write policy and once to ours in live mode (entry
option ``{"live": true}``: every telegram written). Home Assistant runs on a
simulated clock, event loop included (real time with the idle rest of each
second skipped, see :mod:`benchmarks.recorder_sim`), so the recorder commits
and compiles its 5-minute and hourly statistics on its own schedule, in
simulated time. Each scenario runs in its own process
(:mod:`benchmarks.recorder_worker`), one after the other.

Measured per scenario:

* recorder ``states`` rows written during the day for the entry's entities;
* hourly energy error: for every hour and every import-energy sensor,
  |change of Home Assistant's hourly ``sum`` statistic - change of the meter
  register over the hour| in Wh, where the register at an hour boundary is the
  value of the last telegram before it; the table shows the maximum;
* CPU seconds (``time.process_time`` of the worker, recorder thread included,
  over the day's feeding and the recorder draining that follows), and the
  event loop thread's alone (``time.thread_time``): the integration's own work
  (reading, decoding, guard, entities, Home Assistant's state machine) without
  the recorder thread's database writes, which the row count measures.

The CPU target compares the two "every telegram" modes (ours live, ``dsmr``
with ``time_between_update: 0``) in separate short runs, alternated and
repeated; it is the ratio of the medians of their 5-minute slices of event-loop
CPU per telegram (the process ratio, recorder thread included, is printed
beside it: in this mode both write a row for every changed state, and the
recorder's SQLite commits are the same work for both). For context, not a target: ours live with only the sensors
``dsmr`` enables by default (the others pre-disabled in the entity registry),
the rows of those sensors alone, and a "harness" row with what the feeding
loop alone costs.

Environment: ``BENCH_RECORDER_HOURS`` (default 24) shortens the day for a
quick look (rows/day are then extrapolated and marked so).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.recorder_sim import Day, render_day
from benchmarks.recorder_worker import DSMR_DEFAULT_SENSORS

ROOT = Path(__file__).resolve().parents[1]
DAY_SECONDS = 86_400
# CPU comparison of the two every-telegram modes: ROUNDS alternating runs of
# CPU_SECONDS telegrams each, measured in slices of CPU_SLICE telegrams.
CPU_ROUNDS = 3
CPU_SECONDS = 1_800
CPU_SLICE = 300
WORKER_TIMEOUT = 1800.0  # seconds; a full day of one scenario takes about 3 minutes
GOALS = {"recorder_rows_vs_dsmr": 0.25, "hourly_energy_error_wh": 0.0, "cpu_per_telegram_vs_dsmr": 0.5}
LABELS = {
    "dsmr": "dsmr (defaults)",
    "smartmeter": "smartmeter (default policy)",
    "smartmeter-live": "smartmeter (live)",
    "dsmr-live": "dsmr (every telegram)",
    "smartmeter-live-dsmr-sensors": "smartmeter (live, dsmr's sensors)",
    "harness": "harness only (no integration)",
}


@dataclass
class Scored:
    """A worker result with what the benchmark derives from it."""

    raw: dict[str, Any]
    max_error_wh: float | None = None
    hours_checked: int = 0

    @property
    def telegrams(self) -> int:
        """Telegrams fed after midnight."""
        return int(self.raw["telegrams"])

    @property
    def rows(self) -> int:
        """State rows of the entry's entities during the simulated time."""
        return sum(int(count) for count in self.raw["rows"].values())

    @property
    def rows_per_day(self) -> float:
        """Rows scaled to a whole day (linear when fewer than 24 h ran)."""
        return self.rows * DAY_SECONDS / self.telegrams

    @property
    def cpu_us_per_telegram(self) -> float:
        """CPU microseconds per telegram over the whole run."""
        return float(self.raw["cpu_s"]) / self.telegrams * 1e6

    def slice_us(self, key: str = "slices_cpu_s") -> list[float]:
        """CPU microseconds per telegram of each slice (``slices_loop_cpu_s``: the event loop's thread)."""
        size = self.raw["slice"]
        return [cpu / size * 1e6 for cpu in self.raw[key]] if size else []


def _register(day: Day, boundary: float, spec: str) -> Decimal:
    """A register (or ``a+b`` sum of registers) at an hour boundary."""
    values = day.boundaries[boundary]
    return sum((values[part] for part in spec.split("+")), Decimal(0))


def hourly_errors(day: Day, raw: dict[str, Any]) -> tuple[float | None, int, list[str]]:
    """Max |hourly statistic change - register change| (Wh), hours checked, notes."""
    hours = raw["telegrams"] // 3600
    worst: float | None = None
    notes: list[str] = []
    checked = 0
    for statistic_id, spec in raw["import_sensors"].items():
        sums: dict[float, float | None] = dict(raw["hourly"].get(statistic_id, []))
        for hour in range(hours):
            start = day.day_start_ts + hour * 3600
            expected = _register(day, start + 3600, spec) - _register(day, start, spec)
            now, before = sums.get(start), sums.get(start - 3600)
            if now is None or before is None:
                notes.append(f"{statistic_id}: no hourly statistic around hour {hour}")
                error = float(expected) * 1000
            else:
                error = abs((now - before) - float(expected)) * 1000
            error = round(error, 3)
            checked += 1
            worst = error if worst is None else max(worst, error)
    return worst, checked, notes


def _common_rows(raw: dict[str, Any]) -> int:
    """Our rows on the sensors that dsmr enables by default."""
    unique_ids: dict[str, str] = raw["unique_ids"]
    return sum(
        count
        for entity_id, count in raw["rows"].items()
        if any(unique_ids.get(entity_id, "").endswith(f"_{key}") for key in DSMR_DEFAULT_SENSORS)
    )


def run_worker(day_file: Path, scenario: str, seconds: int, slice_size: int, tmp: Path) -> dict[str, Any]:
    """Run one scenario in its own process; its JSON result."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{scenario}-", dir=tmp))
    command = [
        sys.executable,
        "-m",
        "benchmarks.recorder_worker",
        str(day_file),
        scenario,
        str(workdir),
        "--seconds",
        str(seconds),
        "--slice",
        str(slice_size),
    ]
    try:
        done = subprocess.run(
            command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False, timeout=WORKER_TIMEOUT
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"worker {scenario} did not finish within {WORKER_TIMEOUT:.0f} s") from err
    if done.returncode != 0:
        raise RuntimeError(f"worker {scenario} failed with exit status {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _fmt_rows(scored: Scored, partial: bool) -> str:
    return f"{scored.rows_per_day:,.0f}{'*' if partial else ''}"


def report(
    day: Day,
    day_runs: dict[str, Scored],
    cpu_runs: dict[str, list[float]],
    loop_runs: dict[str, list[float]],
    harness: Scored,
) -> dict[str, float]:
    """Print the table; return the target values."""
    partial = day.seconds < DAY_SECONDS
    header = (
        f"{'integration (mode)':<30} {'sensors':>7} {'rows/day':>10} {'max hourly error Wh':>20}"
        f" {'CPU s':>8} {'CPU µs/telegram':>16} {'loop CPU s':>11}"
    )
    print(header)
    for scenario, scored in day_runs.items():
        error = "n/a" if scored.max_error_wh is None else f"{scored.max_error_wh:.3f}"
        print(
            f"{LABELS[scenario]:<30} {scored.raw['enabled_entities']:>7} {_fmt_rows(scored, partial):>10}"
            f" {error:>20} {scored.raw['cpu_s']:>8.1f} {scored.cpu_us_per_telegram:>16.0f}"
            f" {scored.raw['loop_cpu_s']:>11.1f}"
        )
    print(
        f"{LABELS['harness']:<30} {'':>7} {'':>10} {'':>20} {harness.raw['cpu_s']:>8.1f}"
        f" {harness.cpu_us_per_telegram:>16.0f}"
    )
    hours = day.seconds / 3600
    print(
        f"(day: {day.seconds} telegrams = {hours:g} h from local midnight, {day.warmup} warm-up telegrams before;"
        f" hourly error over {', '.join(f'{s.hours_checked}' for s in day_runs.values())} sensor-hours)"
    )
    if partial:
        print(f"* ran {hours:g} h, not a full day: rows/day extrapolated linearly from {hours:g} h")
    medians = {scenario: statistics.median(values) for scenario, values in cpu_runs.items()}
    loop_medians = {scenario: statistics.median(values) for scenario, values in loop_runs.items()}
    print(
        f"every-telegram CPU, median of {len(cpu_runs['dsmr-live'])} slices of {CPU_SLICE} telegrams"
        f" ({CPU_ROUNDS} alternating runs of {CPU_SECONDS} telegrams each); process = all threads,"
        " event loop = the integration's work (read, decode, guard, entities, state machine) without"
        " the recorder thread's database writes, which the rows above measure:"
    )
    for scenario, median in medians.items():
        values = cpu_runs[scenario]
        loop_values = loop_runs[scenario]
        print(
            f"  {LABELS[scenario]:<28} process {median:6.0f} µs/telegram"
            f" (slices {min(values):.0f}..{max(values):.0f}),"
            f" event loop {loop_medians[scenario]:6.0f} µs/telegram"
            f" (slices {min(loop_values):.0f}..{max(loop_values):.0f})"
        )
    print(
        "cpu_per_telegram_vs_dsmr is the event-loop ratio;"
        f" the process ratio is {medians['smartmeter-live'] / medians['dsmr-live']:.3f}"
        f" (ours with dsmr's sensor set: {medians['smartmeter-live-dsmr-sensors'] / medians['dsmr-live']:.3f})"
    )
    ours_common = (
        _common_rows(day_runs["smartmeter"].raw) * DAY_SECONDS / day_runs["smartmeter"].raw["telegrams"]
    )
    print(
        f"rows/day of the {len(DSMR_DEFAULT_SENSORS)} sensors dsmr enables by default"
        f" ({', '.join(sorted(DSMR_DEFAULT_SENSORS))}): smartmeter (default policy) {ours_common:,.0f}"
        f" = {ours_common / day_runs['dsmr'].rows_per_day:.3f} of dsmr's"
    )
    for scenario, scored in day_runs.items():
        top = sorted(scored.raw["rows"].items(), key=lambda item: -item[1])
        listed = ", ".join(f"{entity.removeprefix('sensor.')} {count}" for entity, count in top)
        print(f"rows {LABELS[scenario]}: {listed}")
    ours_error = [
        s.max_error_wh
        for name, s in day_runs.items()
        if name.startswith("smartmeter") and s.max_error_wh is not None
    ]
    return {
        "recorder_rows_vs_dsmr": day_runs["smartmeter"].rows_per_day / day_runs["dsmr"].rows_per_day,
        "hourly_energy_error_wh": max(ours_error) if ours_error else float("nan"),
        "cpu_per_telegram_vs_dsmr": loop_medians["smartmeter-live"] / loop_medians["dsmr-live"],
    }


def run() -> int:
    """Benchmark entry point (see :mod:`benchmarks`)."""
    try:
        return _run()
    except RuntimeError as err:
        print(f"recorder benchmark failed: {err}")
        return 1


def _run() -> int:
    hours = float(os.environ.get("BENCH_RECORDER_HOURS", "24"))
    seconds = max(3600, round(hours * 3600))
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        day = render_day(max(seconds, CPU_SECONDS))
        day_file = tmp / "day.pickle"
        day.save(day_file)
        print(f"rendered {len(day.telegrams)} telegrams in {time.perf_counter() - started:.1f} s", flush=True)
        day.seconds = seconds
        day_runs: dict[str, Scored] = {}
        for scenario in ("dsmr", "smartmeter", "smartmeter-live"):
            started = time.perf_counter()
            scored = Scored(run_worker(day_file, scenario, seconds, 0, tmp))
            scored.max_error_wh, scored.hours_checked, notes = hourly_errors(day, scored.raw)
            for note in notes[:5]:
                print(f"  {scenario}: {note}")
            day_runs[scenario] = scored
            print(
                f"  {scenario}: {scored.raw['telegrams']} telegrams in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        cpu_runs: dict[str, list[float]] = {
            "dsmr-live": [],
            "smartmeter-live": [],
            "smartmeter-live-dsmr-sensors": [],
        }
        loop_runs: dict[str, list[float]] = {scenario: [] for scenario in cpu_runs}
        for round_no in range(CPU_ROUNDS):
            names = list(cpu_runs)
            for scenario in names[round_no % len(names) :] + names[: round_no % len(names)]:
                raw = run_worker(day_file, scenario, CPU_SECONDS, CPU_SLICE, tmp)
                cpu_runs[scenario].extend(Scored(raw).slice_us())
                loop_runs[scenario].extend(Scored(raw).slice_us("slices_loop_cpu_s"))
        print("  every-telegram CPU runs done", flush=True)
        harness = Scored(run_worker(day_file, "harness", CPU_SECONDS, 0, tmp))
        values = report(day, day_runs, cpu_runs, loop_runs, harness)
    if day_runs["smartmeter"].raw["rows"] == day_runs["smartmeter-live"].raw["rows"]:
        print("note: default policy and live mode wrote the same rows (is the write policy wired in yet?)")
    for name, value in values.items():
        print(f"target {name} {value:.4f} {GOALS[name]:g}")
    return 0
