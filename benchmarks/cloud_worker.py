"""One run of the cloud backfill benchmark in its own process.

``python -m benchmarks.cloud_worker MODE BASE_URL WORKDIR [--profile FILE]``

``MODE``:

* ``time``: start a real Home Assistant in ``WORKDIR`` (registries, the real
  ``recorder`` on a SQLite file, no frontend; :func:`benchmarks.recorder_worker.home_assistant`),
  point the integration's Octopus client at ``BASE_URL`` (the fake API the
  benchmark serves from its own process), add an Octopus account entry with a
  731-day backfill and time it from the start of the entry's setup until the
  recorder has committed every statistics row the backfill queued (a
  synchronize task queued behind them has run (``async_block_till_done``); the rows are then counted
  in the SQLite file through a separate connection). Also the process RSS
  high-water growth over the backfill (``VmHWM`` reset to ``VmRSS`` through
  ``/proc/self/clear_refs`` just before), and CPU seconds of the whole process
  and of the event loop's thread.
* ``memory``: the same with ``tracemalloc`` tracing from just before the setup:
  the peak of Python allocations (every thread) above what was allocated
  before. Slower; never timed.
* ``client``: no Home Assistant: the integration's ``OctopusClient`` on a
  plain aiohttp session fetches the same months the coordinator fetches
  (``cloud.CHUNK`` windows from the backfill start), HTTP + JSON + parsing +
  cost, then folds them into hourly rows like the coordinator does
  (``hourly`` + ``running_sums`` + the recorder row dicts). The reference for
  "how much of the backfill is the network and parsing".

Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import sqlite3
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from unittest.mock import patch

ACCOUNT = "A-BENCH0001"
API_KEY = "sk_live_bench0123456789abcdef"
BACKFILL_DAYS = 731
SETUP_TIMEOUT = 600.0  # s


@dataclass
class Result:
    """What one run measured."""

    mode: str
    setup_s: float = 0.0  # entry setup returned (coordinator's first refresh + platforms)
    total_s: float = 0.0  # ... and the recorder committed every queued row
    fetch_s: float = 0.0  # client mode: HTTP + parse + cost
    fold_s: float = 0.0  # client mode: hourly + running sums + row dicts
    cpu_s: float = 0.0  # process CPU over total_s (every thread)
    loop_cpu_s: float = 0.0  # the event loop's thread alone
    imported_rows: int = 0  # rows the coordinator queued
    rows_at_done: int = 0  # smartmeter:* statistics rows in the SQLite file when total_s was taken
    max_backlog: int = 0  # longest recorder queue seen (sampled every 20 ms)
    requests: int = 0  # HTTP requests the client sent
    rss_before_mb: float = 0.0
    rss_hwm_growth_mb: float = 0.0  # VmHWM after - VmRSS before (HWM reset before)
    hwm_reset: bool = False  # whether /proc/self/clear_refs reset the high-water mark
    tracemalloc_peak_mb: float = 0.0  # memory mode: peak traced - traced before
    tracemalloc_after_mb: float = 0.0  # memory mode: still allocated at the end - before
    entry_state: str = ""
    statistic_ids: list[str] = field(default_factory=list)


def _status_kb(name: str) -> int:
    """A ``/proc/self/status`` field in kB (0 when missing)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0)."""
    try:
        with Path("/proc/self/clear_refs").open("w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _count_rows(db_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM statistics s JOIN statistics_meta m ON s.metadata_id = m.id"
            " WHERE m.statistic_id LIKE 'smartmeter:%'"
        ).fetchone()
    return int(count)


async def _sample_backlog(instance: Any, result: Result) -> None:
    """Track the recorder's longest queue (the backfill queues faster than SQLite writes)."""
    while True:
        result.max_backlog = max(result.max_backlog, instance.backlog)
        await asyncio.sleep(0.02)


async def run_home_assistant(mode: str, base_url: str, workdir: Path, result: Result) -> None:
    """Set up the Octopus entry in a real Home Assistant; measure the backfill."""
    from aiohttp.resolver import AsyncResolver  # noqa: PLC0415

    from homeassistant import config_entries  # noqa: PLC0415 - heavy, not in the parent
    from homeassistant.config_entries import ConfigEntry  # noqa: PLC0415
    from homeassistant.helpers import aiohttp_client, recorder as recorder_helper  # noqa: PLC0415

    from benchmarks.recorder_worker import home_assistant  # noqa: PLC0415
    from custom_components.smartmeter import cloud  # noqa: PLC0415

    cloud.BASE_URLS["octopus"] = base_url
    if mode == "rowwise":  # the reference: Home Assistant's own row-by-row import of the same rows
        from custom_components.smartmeter import cloud_statistics  # noqa: PLC0415

        cloud_statistics.BULK_IMPORT = False
    # Home Assistant's shared session resolves through zeroconf (mDNS, multicast sockets,
    # the network integration); like its test harness, use aiohttp's plain resolver
    # instead (the fake's URL is an IP literal: nothing is resolved either way).
    db_path = workdir / "home-assistant_v2.db"
    with patch.object(aiohttp_client, "_async_make_resolver", side_effect=lambda hass: AsyncResolver()):
        async with home_assistant(workdir, db_path) as hass:
            entry = ConfigEntry(
                data={"protocol": "octopus", "api_key": API_KEY, "account_number": ACCOUNT},
                discovery_keys=MappingProxyType({}),
                domain="smartmeter",
                minor_version=1,
                options={"backfill_days": BACKFILL_DAYS},
                source=config_entries.SOURCE_USER,
                subentries_data=None,
                title=f"Octopus Energy {ACCOUNT}",
                unique_id=f"octopus_{ACCOUNT}",
                version=1,
            )
            instance = recorder_helper.get_instance(hass)
            await hass.async_block_till_done()
            gc.collect()
            result.rss_before_mb = _status_kb("VmRSS") / 1024
            if mode == "memory":
                tracemalloc.start()
                traced_before = tracemalloc.get_traced_memory()[0]
            result.hwm_reset = _reset_hwm()
            hwm_before = _status_kb("VmHWM")
            started = time.perf_counter()
            cpu_started, loop_started = time.process_time(), time.thread_time()
            sampler = asyncio.create_task(_sample_backlog(instance, result))
            async with asyncio.timeout(SETUP_TIMEOUT):
                await hass.config_entries.async_add(entry)
                result.setup_s = time.perf_counter() - started
                await hass.async_block_till_done()
                # Every import task the backfill queued, committed (each runs in its own
                # session): the recorder's own "block till done" (a synchronize task
                # behind them in its FIFO queue, whatever its form in this version).
                await instance.async_block_till_done()
            result.total_s = time.perf_counter() - started
            result.cpu_s = time.process_time() - cpu_started
            result.loop_cpu_s = time.thread_time() - loop_started
            sampler.cancel()
            if mode == "memory":
                current, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                result.tracemalloc_peak_mb = (peak - traced_before) / 2**20
                result.tracemalloc_after_mb = (current - traced_before) / 2**20
            hwm_after = _status_kb("VmHWM")
            base_kb = result.rss_before_mb * 1024 if result.hwm_reset else hwm_before
            result.rss_hwm_growth_mb = (hwm_after - base_kb) / 1024
            result.rows_at_done = await hass.async_add_executor_job(_count_rows, db_path)
            result.entry_state = entry.state.value
            coordinator = getattr(entry, "runtime_data", None)
            if coordinator is not None:
                result.imported_rows = coordinator.imported_rows
                result.requests = coordinator.client.requests
                result.statistic_ids = coordinator.statistic_ids()


async def run_client(base_url: str, result: Result) -> None:
    """The integration's Octopus client alone, on the coordinator's windows; then the hourly folding."""
    import aiohttp  # noqa: PLC0415

    from custom_components.smartmeter.cloud import CHUNK  # noqa: PLC0415
    from custom_components.smartmeter.cloud_statistics import rows  # noqa: PLC0415
    from custom_components.smartmeter.core.cloud.base import Interval  # noqa: PLC0415
    from custom_components.smartmeter.core.cloud.hourly import (  # noqa: PLC0415
        HOUR,
        chunks,
        floor_hour,
        hourly,
        import_window,
        running_sums,
    )
    from custom_components.smartmeter.core.cloud.octopus import OctopusClient  # noqa: PLC0415

    now = datetime.now().astimezone()
    start = import_window(now, None, backfill=timedelta(days=BACKFILL_DAYS), restate=timedelta(days=3))
    fetched: list[tuple[tuple[Interval, ...], tuple[Interval, ...]]] = []
    async with aiohttp.ClientSession() as session:
        client = OctopusClient(session, API_KEY, ACCOUNT, base_url=base_url)
        started = time.perf_counter()
        cpu_started, loop_started = time.process_time(), time.thread_time()
        account = await client.async_account()
        for meter in account.meters:
            for register in meter.registers:
                for first, stop in chunks(start, floor_hour(now) + HOUR, CHUNK):
                    data = await client.async_intervals(meter, register, first, stop)
                    fetched.append((data.consumption, data.cost))
        result.fetch_s = time.perf_counter() - started
        folding = time.perf_counter()
        count = 0
        for consumption, cost in fetched:
            for series in (consumption, cost):
                count += len(rows(running_sums(hourly(series), Decimal(0))))
        result.fold_s = time.perf_counter() - folding
        result.total_s = time.perf_counter() - started
        result.cpu_s = time.process_time() - cpu_started
        result.loop_cpu_s = time.thread_time() - loop_started
        result.imported_rows = count
        result.requests = client.requests


def _profile_recorder_thread(path: Path) -> None:
    """Profile the recorder's thread too (cProfile sees one thread); its stats go to ``path`` when it ends."""
    from homeassistant.components.recorder.core import Recorder  # noqa: PLC0415

    original = Recorder.run

    def run(self: Recorder) -> None:
        profiler = cProfile.Profile()
        try:
            profiler.runcall(original, self)
        finally:
            profiler.dump_stats(path)

    Recorder.run = run  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """Run one mode; print its result as one JSON line."""
    parser = argparse.ArgumentParser(prog="cloud_worker", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("time", "memory", "client", "rowwise"))
    parser.add_argument("base_url", help="the fake Octopus API (http://127.0.0.1:PORT/v1/)")
    parser.add_argument("workdir", type=Path, help="empty directory for the config and database")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats of the run here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # "custom integration not tested by Home Assistant": expected, ours.
    logging.getLogger("homeassistant.loader").setLevel(logging.ERROR)
    result = Result(args.mode)
    if args.mode == "client":
        work: Any = run_client(args.base_url, result)
    else:
        work = run_home_assistant(args.mode, args.base_url, args.workdir, result)
    if args.profile is not None:
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, work)
        profiler.dump_stats(args.profile)
    else:
        asyncio.run(work)
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
