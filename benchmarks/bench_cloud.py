"""Cloud backfill: 2 years of Octopus half-hours for 2 meters into a real recorder, time and peak memory.

Issue 6. A fake Octopus Energy API (``tests/cloud_servers/octopus.py``) holds an
account with an electricity meter (Agile: a price for every half-hour, a few
of them negative, as on the real tariff) and a gas meter (flat variable rate,
m³ billed through Octopus' calorific formula), each with 730 days = 35,040
half-hours of deterministic consumption ending at the last whole hour. It is
served from a thread of this process, so its memory and CPU are not in the
measured process.

Each run is a fresh process (:mod:`benchmarks.cloud_worker`) with a fresh
SQLite database: a real Home Assistant with the real recorder, an Octopus
account entry (``backfill_days`` 731) pointed at the fake, timed from the
start of the entry's setup until the recorder has committed every statistics
row (consumption and cost, 4 series x 17,520 hours). After each run this
process reads the SQLite file and checks every row: one per hour with data,
each hour's value and running sum equal to the generated data's (exactly for
consumption and electricity cost, to 1e-12 relative for gas cost, whose
calorific factor does not terminate); a wrong import fails the benchmark.

Printed beside the figures, measured in the same run: the integration's
Octopus client alone on the same monthly windows (HTTP, JSON, parsing, cost)
and the hourly folding alone, without Home Assistant; rows/s; CPU of the
whole process and of the event loop thread (the rest is mostly the recorder
thread's SQLite work).

Memory: the target is the process RSS high-water growth over the backfill in
the timing runs (``VmHWM`` reset to the current RSS just before the setup, so
the figure is the backfill's own peak above the booted Home Assistant; it
counts everything: Python objects, SQLite's caches, allocator slack). The
Python allocations alone (``tracemalloc`` peak above the pre-setup level,
every thread) are measured in separate runs, since tracing slows the import
down, and printed beside it.

Environment: ``BENCH_CLOUD_DAYS`` (default 730), ``BENCH_CLOUD_RUNS`` timing
runs (default 3, median reported), ``BENCH_CLOUD_MEMORY_RUNS`` (default 1),
``BENCH_CLOUD_PROFILE=1`` adds a profiled run (event loop thread, cProfile)
and prints its top costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pstats
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.cloud_servers.octopus import FakeOctopus

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 10.0
GOAL_MB = 100.0
WORKER_TIMEOUT = 600.0  # s
HALF_HOUR = timedelta(minutes=30)
HOUR = timedelta(hours=1)
LONDON = ZoneInfo("Europe/London")

MPAN, SERIAL = "2000012345678", "21E5123456"
MPRN, GAS_SERIAL = "7654321098", "E6S98765432109"
AGILE = "E-1R-AGILE-18-02-21-H"
GAS_TARIFF = "G-1R-VAR-22-11-01-H"
GAS_PENCE = Decimal("6.89")
# Octopus' gas billing formula (m³ -> kWh): volume correction x calorific value / 3.6.
GAS_KWH_PER_M3 = (Decimal("1.02264"), Decimal("39.5"), Decimal("3.6"))
EXACT = Context(prec=60)  # wide enough for every sum here to be exact
GAS_COST_RTOL = 1e-12


def statistic_id(number: str, serial: str, register: str, *, cost: bool = False) -> str:
    """The integration's external statistic ID (``smartmeter:octopus_<mpan>_<serial>_<register>``)."""
    return f"smartmeter:octopus_{number}_{serial}_{register}".lower() + ("_cost" if cost else "")


ELEC_ID = statistic_id(MPAN, SERIAL, "energy_import_total")
GAS_ID = statistic_id(MPRN, GAS_SERIAL, "gas")


def agile_rates(
    start: datetime, end: datetime, seed: int = 7
) -> list[tuple[datetime, datetime | None, Decimal]]:
    """Agile-like half-hourly prices (pence/kWh inc VAT) in ``[start, end)``.

    Cheap nights, a 16:00-19:00 (London) peak, noise, and about 1 % negative
    half-hours; ``value_exc_vat`` has 2 decimals, inc VAT is x 1.05 (exact).
    """
    rng = random.Random(seed)  # noqa: S311 - test data
    rates: list[tuple[datetime, datetime | None, Decimal]] = []
    cursor = start
    while cursor < end:
        hour = cursor.astimezone(LONDON).hour
        if 16 <= hour < 19:
            exc = rng.randrange(2800, 4500)
        elif hour < 6:
            exc = rng.randrange(800, 1800)
        else:
            exc = rng.randrange(1500, 2800)
        if rng.random() < 0.01:
            exc = -rng.randrange(1, 500)
        rates.append((cursor, cursor + HALF_HOUR, Decimal(exc).scaleb(-2) * Decimal("1.05")))
        cursor += HALF_HOUR
    return rates


@dataclass
class Dataset:
    """The served account and, per statistic ID, the exact value of every hour."""

    server: FakeOctopus
    days: int
    half_hours: int
    expected: dict[str, dict[float, Decimal]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Statistics rows a complete backfill writes."""
        return sum(len(hours) for hours in self.expected.values())


def build(days: int, now: datetime) -> Dataset:
    """The fake account: ``days`` of half-hours per meter up to the last whole hour, prices, expectations."""
    server = FakeOctopus(api_key="sk_live_bench0123456789abcdef", account="A-BENCH0001", page_size_cap=25000)
    server.add_electricity(MPAN, SERIAL, tariff_code=AGILE)
    server.add_gas(MPRN, GAS_SERIAL, tariff_code=GAS_TARIFF)
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    server.generate(MPAN, SERIAL, start, end, seed=1)
    server.generate(MPRN, GAS_SERIAL, start, end, seed=2)
    rates = agile_rates(start - timedelta(days=1), end + timedelta(days=3))
    server.set_rates(AGILE, rates)
    server.set_rates(GAS_TARIFF, [(start - timedelta(days=400), None, GAS_PENCE)])
    pence = {begin: value for begin, _, value in rates}
    data = Dataset(server, days, len(server.consumption(MPAN, SERIAL)))
    with localcontext(EXACT):
        gbp: dict[str, dict[float, Decimal]] = {}
        for stat, number, serial, price in (
            (ELEC_ID, MPAN, SERIAL, None),
            (GAS_ID, MPRN, GAS_SERIAL, GAS_PENCE),
        ):
            usage: dict[float, Decimal] = {}
            cost: dict[float, Decimal] = {}
            for begin, value in server.consumption(number, serial):
                hour = begin.replace(minute=0).timestamp()
                usage[hour] = usage.get(hour, Decimal(0)) + value
                cost[hour] = cost.get(hour, Decimal(0)) + value * (pence[begin] if price is None else price)
            data.expected[stat] = usage
            gbp[stat] = cost
        data.expected[f"{ELEC_ID}_cost"] = {h: v.scaleb(-2) for h, v in gbp[ELEC_ID].items()}
        correction, calorific, per_mj = GAS_KWH_PER_M3
        data.expected[f"{GAS_ID}_cost"] = {
            h: v.scaleb(-2) * correction * calorific / per_mj for h, v in gbp[GAS_ID].items()
        }
    return data


@dataclass
class Check:
    """What the SQLite file holds against the generated data."""

    ok: bool
    rows: int
    notes: list[str]
    last_sums: dict[str, tuple[float, Decimal]]  # statistic_id -> (stored, exact)
    max_rel_error: float  # over every state and sum (0 = bit-exact)


def verify(db_path: Path, data: Dataset) -> Check:
    """Every statistics row against the generated data (hours, values, running sums)."""
    notes: list[str] = []
    last: dict[str, tuple[float, Decimal]] = {}
    worst = 0.0
    total_rows = 0
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        stored: dict[str, list[tuple[float, float, float]]] = {}
        # The external statistics only: the entry's sensors get the recorder's own
        # compiled statistics (sensor.*) when a 5-minute or hourly compile falls in the run.
        for stat, start, state, running in db.execute(
            "SELECT m.statistic_id, s.start_ts, s.state, s.sum FROM statistics s"
            " JOIN statistics_meta m ON s.metadata_id = m.id WHERE m.statistic_id LIKE 'smartmeter:%'"
            " ORDER BY m.statistic_id, s.start_ts"
        ):
            stored.setdefault(stat, []).append((start, state, running))
    if set(stored) != set(data.expected):
        notes.append(f"statistic IDs {sorted(stored)} != expected {sorted(data.expected)}")
    with localcontext(EXACT):
        for stat, hours in data.expected.items():
            rows = stored.get(stat, [])
            total_rows += len(rows)
            if [row[0] for row in rows] != sorted(hours):
                notes.append(f"{stat}: {len(rows)} rows at other hours than the {len(hours)} expected")
                continue
            tolerant = stat == f"{GAS_ID}_cost"  # a non-terminating factor: rounded at 28 digits
            running = Decimal(0)
            bad = 0
            for start, state, got_sum in rows:
                running += hours[start]
                for got, want in ((state, hours[start]), (got_sum, running)):
                    target = float(want)
                    if got == target:
                        continue
                    error = abs(got - target) / max(abs(target), 1e-9)
                    worst = max(worst, error)
                    if not tolerant or error > GAS_COST_RTOL:
                        bad += 1
            if bad:
                notes.append(
                    f"{stat}: {bad} states/sums differ from the generated data (max rel {worst:.2e})"
                )
            last[stat] = (rows[-1][2] if rows else float("nan"), running)
    return Check(not notes, total_rows, notes, last, worst)


class ServerThread:
    """The fake API on its own event loop in a thread of this process."""

    def __init__(self, server: FakeOctopus) -> None:
        """Not started yet."""
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-octopus", daemon=True)

    def __enter__(self) -> str:
        """Start serving; the base URL."""
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=30)

    def __exit__(self, *exc: object) -> None:
        """Stop serving."""
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


def run_worker(mode: str, base_url: str, workdir: Path, profile: Path | None = None) -> dict[str, Any]:
    """One worker process; its JSON result."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.cloud_worker", mode, base_url, str(workdir)]
    if profile is not None:
        command += ["--profile", str(profile)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False, timeout=WORKER_TIMEOUT
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"worker {mode} did not finish within {WORKER_TIMEOUT:.0f} s") from err
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"worker {mode} failed with exit status {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _env_int(name: str, default: int, minimum: int) -> int:
    return max(minimum, int(os.environ.get(name, str(default))))


@contextlib.contextmanager
def _workdirs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        yield Path(tmp)


def _import_run(
    mode: str, base_url: str, workdir: Path, data: Dataset, profile: Path | None = None
) -> dict[str, Any]:
    """A Home Assistant run, checked against the data; the result with ``check`` added."""
    raw = run_worker(mode, base_url, workdir, profile)
    if raw["entry_state"] != "loaded":
        raise RuntimeError(f"{mode} run: the entry is {raw['entry_state']!r}, not loaded")
    check = verify(workdir / "home-assistant_v2.db", data)
    if raw["rows_at_done"] != check.rows:
        check.notes.append(f"{raw['rows_at_done']} rows when timed, {check.rows} at the end")
        check.ok = False
    raw["check"] = check
    return raw


def _print_run(label: str, raw: dict[str, Any]) -> None:
    check: Check = raw["check"]
    rows = raw["rows_at_done"]
    memory = f"{raw['tracemalloc_peak_mb']:>9.1f}" if raw["mode"] == "memory" else f"{'':>9}"
    print(
        f"{label:<9} {raw['setup_s']:>7.2f} {raw['total_s']:>7.2f} {rows:>7,} {rows / raw['total_s']:>8,.0f}"
        f" {raw['cpu_s']:>6.2f} {raw['loop_cpu_s']:>8.2f} {raw['requests']:>5} {raw['max_backlog']:>5}"
        f" {raw['rss_hwm_growth_mb']:>8.1f} {memory} {'ok' if check.ok else 'WRONG'}",
        flush=True,
    )
    for note in check.notes[:6]:
        print(f"  check: {note}")


def run() -> int:
    """Benchmark entry point (see :mod:`benchmarks`)."""
    try:
        return _run()
    except RuntimeError as err:
        print(f"cloud benchmark failed: {err}")
        return 1


def _run() -> int:
    days = _env_int("BENCH_CLOUD_DAYS", 730, 1)
    runs = _env_int("BENCH_CLOUD_RUNS", 3, 1)
    memory_runs = _env_int("BENCH_CLOUD_MEMORY_RUNS", 1, 1)
    profile = os.environ.get("BENCH_CLOUD_PROFILE", "") not in ("", "0")
    started = time.perf_counter()
    data = build(days, datetime.now(UTC))
    print(
        f"fake Octopus API: electricity {MPAN} (Agile, a price per half-hour) and gas {MPRN} (m³, flat rate),"
        f" {days} days = {data.half_hours:,} half-hours each, {data.rows:,} statistics rows expected"
        f" ({len(data.expected)} series: consumption + cost); generated in {time.perf_counter() - started:.1f} s;"
        " served from a thread of this process (not in the measured process)",
        flush=True,
    )
    timing: list[dict[str, Any]] = []
    client: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    failed = False
    with ServerThread(data.server) as base_url, _workdirs() as tmp:
        print(
            f"{'run':<9} {'setup s':>7} {'total s':>7} {'rows':>7} {'rows/s':>8} {'CPU s':>6} {'loop CPU':>8}"
            f" {'HTTP':>5} {'queue':>5} {'RSS MB':>8} {'trace MB':>9} check"
        )
        for index in range(runs):
            ref = run_worker("client", base_url, tmp / f"client-{index}")
            if ref["imported_rows"] != data.rows:
                print(f"  client run {index + 1}: {ref['imported_rows']} rows folded, {data.rows} expected")
                failed = True
            client.append(ref)
            raw = _import_run("time", base_url, tmp / f"time-{index}", data)
            timing.append(raw)
            failed |= not raw["check"].ok
            _print_run(f"time {index + 1}", raw)
        rowwise = _import_run("rowwise", base_url, tmp / "rowwise", data)
        failed |= not rowwise["check"].ok
        _print_run("HA import", rowwise)
        for index in range(memory_runs):
            raw = _import_run("memory", base_url, tmp / f"memory-{index}", data)
            memory.append(raw)
            failed |= not raw["check"].ok
            _print_run(f"memory {index + 1}", raw)
        if profile:
            stats_file = tmp / "profile.pstats"
            raw = _import_run("time", base_url, tmp / "profile", data, stats_file)
            failed |= not raw["check"].ok
            _print_run("profiled", raw)
            # cProfile on Python >= 3.12 (sys.monitoring) sees every thread: loop, recorder, executor.
            profiled = pstats.Stats(str(stats_file), stream=sys.stdout)
            print("profile (every thread; cProfile slows it down), top 20 by own time:")
            profiled.sort_stats("tottime").print_stats(20)
            print("the integration's and the recorder's statistics functions by cumulative time:")
            profiled.sort_stats("cumulative").print_stats(r"smartmeter/|recorder/statistics\.py", 15)
    print(
        "(setup s: until the entry was loaded; total s: until the recorder committed every row;"
        " HTTP: requests to the fake API; queue: longest recorder queue seen, in tasks;"
        " RSS MB: process RSS high-water growth over the backfill; trace MB: tracemalloc peak of Python"
        " allocations above the pre-setup level, memory runs only)"
    )
    total = statistics.median(raw["total_s"] for raw in timing)
    setup = statistics.median(raw["setup_s"] for raw in timing)
    cpu = statistics.median(raw["cpu_s"] for raw in timing)
    loop_cpu = statistics.median(raw["loop_cpu_s"] for raw in timing)
    fetch = statistics.median(ref["fetch_s"] for ref in client)
    fold = statistics.median(ref["fold_s"] for ref in client)
    rss = statistics.median(raw["rss_hwm_growth_mb"] for raw in timing)
    traced = statistics.median(raw["tracemalloc_peak_mb"] for raw in memory)
    rss_traced = statistics.median(raw["rss_hwm_growth_mb"] for raw in memory)
    print(
        f"backfill, median of {runs}: {total:.2f} s to committed rows ({setup:.2f} s until the entry loaded),"
        f" {data.rows / total:,.0f} rows/s; CPU {cpu:.2f} s, of which the event loop thread {loop_cpu:.2f} s"
        f" (the rest: the recorder thread's SQLite work and executor jobs); the recorder queue peaked at"
        f" {statistics.median(raw['max_backlog'] for raw in timing):.0f} tasks"
        " (the coordinator queues every month of every series long before the recorder has written"
        " it: memory grows with the backfill length)"
    )
    print(
        f"reference, same run, no Home Assistant (median of {runs}): the Octopus client alone fetches the same"
        f" {client[0]['requests']} requests (HTTP + JSON + parsing + cost) in {fetch:.2f} s"
        f" ({fetch / total:.0%} of the backfill); folding into hourly rows {fold:.2f} s"
        f" ({fold / total:.0%}); the remaining {max(total - fetch - fold, 0):.2f} s is Home Assistant's import"
        " (statistics queueing, recorder, SQLite)"
    )
    print(
        f"reference, same run: the same rows through Home Assistant's async_add_external_statistics"
        f" (one lookup query per row) take {rowwise['total_s']:.2f} s; our batched recorder task"
        f" {total:.2f} s ({total / rowwise['total_s']:.2f} of it)"
    )
    print(
        f"memory: RSS high-water growth over the backfill {rss:.1f} MB (median of the {runs} timing runs;"
        f" the target: everything the process needed, Python objects, SQLite's caches, allocator slack);"
        f" Python allocations alone, tracemalloc peak {traced:.1f} MB"
        f" (median of {memory_runs} traced run(s), whose RSS growth with tracing was {rss_traced:.1f} MB)"
    )
    checked = len(timing) + len(memory) + (1 if profile else 0)
    last = timing[-1]["check"].last_sums
    print(
        f"correctness: {'every' if not failed else 'NOT every'} row of {checked} import(s) checked against the"
        f" generated data ({data.rows:,} rows each; max relative error"
        f" {max(raw['check'].max_rel_error for raw in timing + memory):.1e});"
        " last sums "
        + ", ".join(
            f"{stat.split(':')[1]} {got:.6f} (exact {float(want):.6f})" for stat, (got, want) in last.items()
        )
    )
    print(f"target cloud_backfill_seconds {total:.2f} {GOAL_SECONDS:g}")
    print(f"target cloud_backfill_peak_mb {rss:.1f} {GOAL_MB:g}")
    if failed:
        print("cloud benchmark failed: the imported statistics are not the generated data")
        return 1
    return 0
