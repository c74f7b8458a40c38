"""One scenario of the recorder benchmark in its own process: a real Home Assistant, one integration.

``python -m benchmarks.recorder_worker DAY_FILE SCENARIO WORKDIR [--seconds N] [--slice N]``
starts Home Assistant in ``WORKDIR`` with the real ``recorder`` on a SQLite
file, sets up one integration on a pseudo-terminal (the built-in ``dsmr`` or
ours, see :data:`SCENARIOS`), feeds it the day's telegrams through the pty one
per simulated second and prints one JSON line: CPU time, recorder rows,
hourly statistics of the import-energy sensors.

Home Assistant runs on the simulated clock of :mod:`benchmarks.recorder_sim`
(event loop included): the recorder commits every 5 simulated seconds and
compiles its 5-minute and hourly statistics on its own schedule, as it would
in a real day. Each telegram is written after the previous one was framed by
the integration (a hook counts ``DSMRProtocol.handle_telegram`` /
``StreamSource.decode`` calls; the integration's handling of a telegram runs in
the same event-loop step), and the clock jumps to the telegram's second just
before, so every state is stamped with its telegram's second. The recorder
thread is drained before each CPU reading, so the rows an integration causes
are paid for in its own CPU time. One process per scenario keeps the CPU
attribution clean (``time.process_time`` covers the recorder thread) and
leaves no Home Assistant state behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import sys
import time
import tty
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from unittest.mock import patch

from homeassistant import bootstrap, config_entries, loader
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, recorder as recorder_helper
from homeassistant.setup import async_setup_component
from homeassistant.util.unit_system import METRIC_SYSTEM

from benchmarks.recorder_sim import TIME_ZONE, Day, SimClock, SimLoop
from custom_components.smartmeter.core.p1 import decode_telegram

# Our sensors that match the ones the built-in dsmr enables by default for a
# DSMR 5 meter (power, energy per tariff, active tariff, gas reading).
DSMR_DEFAULT_SENSORS = frozenset(
    {
        "power_import",
        "power_export",
        "energy_import_tariff_1",
        "energy_import_tariff_2",
        "energy_export_tariff_1",
        "energy_export_tariff_2",
        "active_tariff",
        "gas",
    }
)


@dataclass(frozen=True)
class Scenario:
    """An integration (``None``: the bare feeding loop), its entry options, and which sensors it may enable."""

    domain: str | None
    options: dict[str, Any] = field(default_factory=dict)
    only_sensors: frozenset[str] | None = None  # description keys; others pre-disabled in the registry


SCENARIOS: dict[str, Scenario] = {
    "dsmr": Scenario("dsmr"),  # HA's defaults: one update every 30 s
    "dsmr-live": Scenario("dsmr", {"time_between_update": 0}),  # every telegram
    "smartmeter": Scenario("smartmeter"),  # our default write policy
    "smartmeter-live": Scenario("smartmeter", {"live": True}),  # every telegram
    # ours in live mode with only the sensors dsmr enables by default
    "smartmeter-live-dsmr-sensors": Scenario("smartmeter", {"live": True}, DSMR_DEFAULT_SENSORS),
    "harness": Scenario(None),  # the feeding loop alone: a reader that only counts telegrams
}
# Import-energy sensors by unique-ID suffix -> the register they show ("+" joins a sum).
IMPORT_SENSORS: dict[str, dict[str, str]] = {
    "dsmr": {
        "_electricity_used_tariff_1": "1-0:1.8.1",
        "_electricity_used_tariff_2": "1-0:1.8.2",
        "_electricity_imported_total": "1-0:1.8.1+1-0:1.8.2",
    },
    "smartmeter": {
        "_energy_import_tariff_1": "1-0:1.8.1",
        "_energy_import_tariff_2": "1-0:1.8.2",
        "_energy_import_total": "1-0:1.8.1+1-0:1.8.2",
    },
}
TELEGRAM_TIMEOUT = 10.0  # real seconds: a telegram not framed by then is a failure
SETUP_TIMEOUT = 60.0
# The recorder compiles a 5-minute period 10 s after it ended.
STATISTICS_DELAY = 15.0
# Recorder queue length at which the feeder pauses until the recorder caught up.
BACKLOG_LIMIT = 100


class Arrivals:
    """Counts the telegrams an integration framed; lets the feeder wait for the next one."""

    def __init__(self) -> None:
        """Nothing framed yet."""
        self.count = 0
        self._target = 0
        self._waiter: asyncio.Future[None] | None = None

    def tick(self) -> None:
        """One more telegram framed."""
        self.count += 1
        waiter = self._waiter
        if waiter is not None and self.count >= self._target and not waiter.done():
            waiter.set_result(None)

    async def wait(self, target: int, timeout: float) -> bool:
        """Wait until ``target`` telegrams were framed; ``False`` on timeout."""
        if self.count >= target:
            return True
        self._target = target
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True


@contextlib.contextmanager
def counting(arrivals: Arrivals) -> Iterator[None]:
    """Count every telegram either integration frames (a call wrapped around their framing point)."""
    from dsmr_parser.clients.protocol import DSMRProtocol  # noqa: PLC0415 - only here

    # Entries read P1 through StreamSource (P1Source is its P1-only subclass).
    from custom_components.smartmeter.core.source import StreamSource  # noqa: PLC0415

    original_handle = DSMRProtocol.handle_telegram
    original_decode = StreamSource.decode

    def handle_telegram(self: Any, telegram: Any) -> Any:
        arrivals.tick()
        return original_handle(self, telegram)

    def decode(self: StreamSource, raw: bytes) -> Any:
        arrivals.tick()
        return original_decode(self, raw)

    with (
        patch.object(DSMRProtocol, "handle_telegram", handle_telegram),
        patch.object(StreamSource, "decode", decode),
    ):
        yield


class PtyLine:
    """A pseudo-terminal: the feeder writes the master, the integration opens the slave path."""

    def __init__(self) -> None:
        """Open the pair (raw, so the slave neither echoes nor buffers lines)."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self.slave)

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` (waiting when the pty buffer is full)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.001)

    def close(self) -> None:
        """Close both ends."""
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class CountingReader:
    """The bare harness: reads the slave and counts telegrams, nothing else."""

    def __init__(self, path: str, arrivals: Arrivals) -> None:
        """Open ``path`` and count every ``!`` (one per telegram) read from it."""
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        self.arrivals = arrivals
        asyncio.get_running_loop().add_reader(self.fd, self._read)

    def _read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for _ in range(os.read(self.fd, 65536).count(b"!")):
                self.arrivals.tick()

    def close(self) -> None:
        """Stop reading."""
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


@contextlib.asynccontextmanager
async def home_assistant(workdir: Path, db_path: Path) -> AsyncIterator[HomeAssistant]:
    """A Home Assistant with registries and the recorder on SQLite, started; stopped on exit."""
    config_dir = workdir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    hass = HomeAssistant(str(config_dir))
    loader.async_setup(hass)
    hass.config.skip_pip = True
    hass.config.units = METRIC_SYSTEM
    await hass.config.async_set_time_zone(TIME_ZONE)
    hass.config_entries = config_entries.ConfigEntries(hass, {})
    await bootstrap.async_load_base_functionality(hass)
    recorder_helper.async_initialize_recorder(hass)
    try:
        if not await async_setup_component(
            hass, "recorder", {"recorder": {"db_url": f"sqlite:///{db_path}"}}
        ):
            raise RuntimeError("the recorder did not set up")
        await hass.async_start()
        instance = recorder_helper.get_instance(hass)
        if not await instance.async_db_ready:
            raise RuntimeError("the recorder database did not come up")
        # Past its startup batch: a stop requested during that batch is lost
        # (the thread resets stop_requested after it) and would hang the shutdown.
        # (async_block_till_done queues the recorder's synchronize task, whose form
        # changed across Home Assistant versions: an Event, later a Future.)
        await instance.async_block_till_done()
        yield hass
    finally:
        await hass.async_stop(force=True)


def _dsmr_entry(port: str, telegram: bytes, options: dict[str, Any]) -> ConfigEntry:
    """A ``dsmr`` entry as its config flow stores it for a DSMR 5 meter on ``port``."""
    from dsmr_parser import telegram_specifications  # noqa: PLC0415 - only here
    from dsmr_parser.parsers import TelegramParser  # noqa: PLC0415

    parsed = TelegramParser(telegram_specifications.V5).parse(telegram.decode("ascii"))
    serial_id = getattr(parsed, "EQUIPMENT_IDENTIFIER", None)
    serial_id_gas = getattr(parsed, "EQUIPMENT_IDENTIFIER_GAS", None)
    return ConfigEntry(
        data={
            "port": port,
            "dsmr_version": "5",
            "protocol": "dsmr_protocol",
            "serial_id": serial_id.value if serial_id is not None else None,
            "serial_id_gas": serial_id_gas.value if serial_id_gas is not None else None,
        },
        discovery_keys=MappingProxyType({}),
        domain="dsmr",
        minor_version=1,
        options=options,
        source=config_entries.SOURCE_USER,
        subentries_data=None,
        title=port,
        unique_id=serial_id.value if serial_id is not None else None,
        version=1,
    )


def _smartmeter_entry(port: str, telegram: bytes, options: dict[str, Any]) -> ConfigEntry:
    """A ``smartmeter`` entry as our config flow stores it for the meter on ``port``."""
    main = decode_telegram(telegram).main
    if main is None:
        raise RuntimeError("the telegram has no main meter")
    return ConfigEntry(
        data={
            "url": port,
            "protocol": "dsmr",
            "baudrate": 115200,
            "bytesize": 8,
            "parity": "N",
            "stopbits": 1,
            "key": None,
            "meter_id": main.id,
        },
        discovery_keys=MappingProxyType({}),
        domain="smartmeter",
        minor_version=1,
        options=options,
        source=config_entries.SOURCE_USER,
        subentries_data=None,
        title="Electricity meter",
        unique_id=main.id,
        version=1,
    )


def _disable_sensors(hass: HomeAssistant, entry: ConfigEntry, telegram: bytes, keep: frozenset[str]) -> None:
    """Register our sensors other than ``keep`` as disabled before the entry sets up.

    (Without a config entry: the entry does not exist yet; the platform links them.)
    """
    from custom_components.smartmeter.sensor import SENSORS  # noqa: PLC0415 - only here

    registry = er.async_get(hass)
    for meter in decode_telegram(telegram).meters:
        for description in SENSORS:
            if description.key not in keep:
                registry.async_get_or_create(
                    "sensor",
                    entry.domain,
                    f"{meter.id}_{description.key}",
                    disabled_by=er.RegistryEntryDisabler.INTEGRATION,
                )


def _ready(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Loaded, with entities, every enabled one with a state."""
    if entry.state is not ConfigEntryState.LOADED:
        return False
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    enabled = [e for e in entities if e.disabled_by is None]
    return bool(enabled) and all(hass.states.get(e.entity_id) is not None for e in enabled)


@dataclass
class Result:
    """What one scenario measured (printed as JSON)."""

    scenario: str
    telegrams: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    # CPU seconds of each slice of ``slice`` telegrams (recorder drained at each end).
    slice: int = 0
    slices_cpu_s: list[float] = field(default_factory=list)
    # The same for the event loop's thread alone: reading, decoding, entities and
    # state machine, without the recorder thread's database work.
    loop_cpu_s: float = 0.0
    slices_loop_cpu_s: list[float] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # entity_id -> state rows in the day
    unique_ids: dict[str, str] = field(default_factory=dict)  # entity_id -> unique_id (enabled ones)
    entities: int = 0
    enabled_entities: int = 0
    # statistic_id -> register it shows, and its hourly rows: [start_ts, sum]
    import_sensors: dict[str, str] = field(default_factory=dict)
    hourly: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    setup_s: float = 0.0
    max_backlog: int = 0  # longest recorder queue seen before the feeder paused
    options: dict[str, Any] = field(default_factory=dict)


def _query(
    db_path: Path, start_ts: float, end_ts: float, entity_ids: list[str]
) -> tuple[dict[str, int], dict[str, list[tuple[float, float | None]]]]:
    """State rows per entity in ``[start_ts, end_ts)`` and every hourly statistics row."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = {
            entity_id: count
            for entity_id, count in db.execute(
                "SELECT m.entity_id, COUNT(*) FROM states s JOIN states_meta m ON s.metadata_id = m.metadata_id"
                " WHERE s.last_updated_ts >= ? AND s.last_updated_ts < ? GROUP BY m.entity_id",
                (start_ts, end_ts),
            )
            if entity_id in entity_ids
        }
        hourly: dict[str, list[tuple[float, float | None]]] = {}
        for statistic_id, start, total in db.execute(
            "SELECT m.statistic_id, s.start_ts, s.sum FROM statistics s"
            " JOIN statistics_meta m ON s.metadata_id = m.id ORDER BY s.start_ts"
        ):
            hourly.setdefault(statistic_id, []).append((start, total))
    return rows, hourly


async def run(
    day: Day, scenario: str, workdir: Path, seconds: int, slice_size: int, clock: SimClock
) -> Result:
    """Feed ``seconds`` telegrams after the warm-up to one scenario (on ``clock``'s loop); measure."""
    spec = SCENARIOS[scenario]
    domain = spec.domain
    result = Result(scenario, slice=slice_size, options=spec.options)
    arrivals = Arrivals()
    line = PtyLine()
    db_path = workdir / "home-assistant_v2.db"
    with clock.patched(), counting(arrivals), contextlib.ExitStack() as cleanup:
        cleanup.callback(line.close)
        if domain is None:
            reader = CountingReader(line.path, arrivals)
            cleanup.callback(reader.close)
            await _feed(day, line, clock, arrivals, None, None, seconds, slice_size, result)
            return result
        async with home_assistant(workdir, db_path) as hass:
            entry = (_dsmr_entry if domain == "dsmr" else _smartmeter_entry)(
                line.path, day.telegrams[0], spec.options
            )
            if spec.only_sensors is not None:
                _disable_sensors(hass, entry, day.telegrams[0], spec.only_sensors)
            setup_started = time.perf_counter()
            await _set_up(hass, entry, day, line, clock, arrivals)
            result.setup_s = time.perf_counter() - setup_started
            await _feed(day, line, clock, arrivals, hass, entry, seconds, slice_size, result)
            registry = er.async_get(hass)
            entities = er.async_entries_for_config_entry(registry, entry.entry_id)
            result.entities = len(entities)
            result.enabled_entities = sum(1 for e in entities if e.disabled_by is None)
            result.unique_ids = {e.entity_id: e.unique_id for e in entities if e.disabled_by is None}
            for reg_entry in entities:
                for suffix, register in IMPORT_SENSORS[domain].items():
                    if reg_entry.unique_id.endswith(suffix):
                        result.import_sensors[reg_entry.entity_id] = register
            end_ts = day.day_start_ts + seconds
            rows, hourly = await hass.async_add_executor_job(
                _query, db_path, day.day_start_ts, end_ts, [e.entity_id for e in entities]
            )
            result.rows = rows
            result.hourly = {k: v for k, v in hourly.items() if k in result.import_sensors}
    return result


async def _set_up(
    hass: HomeAssistant, entry: ConfigEntry, day: Day, line: PtyLine, clock: SimClock, arrivals: Arrivals
) -> None:
    """Add the entry and feed warm-up telegrams until its entities have states."""
    setup = hass.async_create_task(hass.config_entries.async_add(entry))
    index = 0
    deadline = time.monotonic() + SETUP_TIMEOUT
    while not (setup.done() and _ready(hass, entry)):
        if index >= day.warmup or time.monotonic() > deadline:
            raise RuntimeError(f"{entry.domain} not ready after {index} warm-up telegrams ({entry.state})")
        clock.advance_to(day.timestamp(index))
        target = arrivals.count + 1
        await line.write(day.telegrams[index])
        # The port may not be open yet: a telegram can go unread (or be read in part).
        await arrivals.wait(target, 0.5)
        if setup.done():  # (while it runs, our setup waits for a telegram: no block_till_done)
            await hass.async_block_till_done()
        index += 1
    await setup
    # The rest of the warm-up, one telegram per second like the day itself.
    for rest in range(index, day.warmup):
        await _feed_one(day, line, clock, arrivals, rest)
    await hass.async_block_till_done()


async def _feed_one(day: Day, line: PtyLine, clock: SimClock, arrivals: Arrivals, index: int) -> None:
    clock.advance_to(day.timestamp(index))
    target = arrivals.count + 1
    await line.write(day.telegrams[index])
    if not await arrivals.wait(target, TELEGRAM_TIMEOUT):
        raise RuntimeError(f"telegram {index} was not framed within {TELEGRAM_TIMEOUT} s")


async def _drain(hass: HomeAssistant | None) -> None:
    """Let Home Assistant and the recorder finish what the telegrams so far caused."""
    if hass is None:
        return
    await hass.async_block_till_done()
    await recorder_helper.get_instance(hass).async_block_till_done()


async def _feed(
    day: Day,
    line: PtyLine,
    clock: SimClock,
    arrivals: Arrivals,
    hass: HomeAssistant | None,
    entry: ConfigEntry | None,
    seconds: int,
    slice_size: int,
    result: Result,
) -> None:
    """Feed the day's telegrams from midnight, measuring CPU; end past the last statistics run."""
    first = day.warmup
    instance = recorder_helper.get_instance(hass) if hass is not None else None
    await _drain(hass)
    wall = time.perf_counter()
    start = slice_start = time.process_time()
    loop_start = loop_slice_start = time.thread_time()  # this coroutine runs in the event loop's thread
    for index in range(first, first + seconds):
        await _feed_one(day, line, clock, arrivals, index)
        if instance is not None and (backlog := instance.backlog) > BACKLOG_LIMIT:
            # In a real second the recorder has the idle rest of it to catch up:
            # give it that time here (idle, no CPU) instead of letting it fall behind.
            result.max_backlog = max(result.max_backlog, backlog)
            while instance.backlog:  # noqa: ASYNC110 - the recorder thread's queue has no event to await
                await asyncio.sleep(0.001)
        if slice_size and (index + 1 - first) % slice_size == 0:
            await _drain(hass)
            now = time.process_time()
            loop_now = time.thread_time()
            result.slices_cpu_s.append(now - slice_start)
            result.slices_loop_cpu_s.append(loop_now - loop_slice_start)
            slice_start, loop_slice_start = now, loop_now
    # Past the recorder's statistics run for the last period (at hh:mm:10).
    clock.advance_to(day.timestamp(first + seconds) + STATISTICS_DELAY)
    await asyncio.sleep(0.05)
    await _drain(hass)
    result.cpu_s = time.process_time() - start
    result.loop_cpu_s = time.thread_time() - loop_start
    result.wall_s = time.perf_counter() - wall
    result.telegrams = seconds
    if entry is not None and entry.state is not ConfigEntryState.LOADED:
        raise RuntimeError(f"{entry.domain} entry is {entry.state} after the day")


def main(argv: list[str] | None = None) -> int:
    """Run one scenario; print its result as one JSON line on stdout."""
    parser = argparse.ArgumentParser(prog="recorder_worker", description=__doc__.splitlines()[0])
    parser.add_argument("day", type=Path, help="day file written by the benchmark")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("workdir", type=Path, help="empty directory for the config and database")
    parser.add_argument("--seconds", type=int, default=None, help="telegrams after midnight (default: all)")
    parser.add_argument("--slice", type=int, default=0, help="CPU reading every N telegrams")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # "custom integration not tested by Home Assistant": expected, ours.
    logging.getLogger("homeassistant.loader").setLevel(logging.ERROR)
    day = Day.load(args.day)
    seconds = day.seconds if args.seconds is None else min(args.seconds, day.seconds)
    clock = SimClock(day.first_ts)
    result = asyncio.run(
        run(day, args.scenario, args.workdir, seconds, args.slice, clock), loop_factory=lambda: SimLoop(clock)
    )
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
