"""The simulated day of the recorder benchmark: telegrams, meter registers and the clock.

One day of 1 Hz DSMR 5 telegrams is rendered once by
:class:`~custom_components.smartmeter.core.simulator.P1TelegramModel` (the
default template, a real Iskra MT382 telegram) and fed to every scenario, so
each integration sees the very same bytes. A short warm-up before midnight
lets the integrations set up (our setup waits for a first telegram; the
built-in ``dsmr`` creates its entities on the first telegram its throttle lets
through) and gives the recorder the state it needs for the first hour's sum.

:class:`SimClock` is Home Assistant's clock during a run: real time with
the idle rest of each simulated second skipped, read by the event loop
(:class:`SimLoop`) and, through patches, as Home Assistant's wall clock. A
state written for the telegram of 13:00:05 is stamped 13:00:05 (and a few
milliseconds), and the recorder commits and compiles its statistics when the
simulated clock says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

from homeassistant.util import dt as dt_util

from custom_components.smartmeter.core.simulator import P1TelegramModel

TIME_ZONE = "Europe/Amsterdam"
# A Wednesday in winter (no DST change, both tariffs during the day).
DAY = datetime(2025, 1, 15, tzinfo=ZoneInfo(TIME_ZONE))
WARMUP_SECONDS = 300  # one 5-minute statistics period before midnight
SEED = 20250115
# The import-energy registers the hourly error is measured on.
IMPORT_REGISTERS = ("1-0:1.8.1", "1-0:1.8.2")


@dataclass
class Day:
    """The rendered telegrams and the meter registers at every hour boundary."""

    first_ts: float  # timestamp of telegrams[0] (the warm-up starts here)
    day_start_ts: float  # local midnight
    seconds: int  # telegrams after midnight
    telegrams: list[bytes]
    # Hour boundary timestamp -> register -> value (kWh) of the last telegram before it.
    boundaries: dict[float, dict[str, Decimal]] = field(default_factory=dict)

    @property
    def warmup(self) -> int:
        """Telegrams before midnight."""
        return round(self.day_start_ts - self.first_ts)

    def timestamp(self, index: int) -> float:
        """When telegram ``index`` was sent (1 Hz)."""
        return self.first_ts + index

    def save(self, path: Path) -> None:
        """Write the day for the worker processes."""
        with path.open("wb") as file:
            pickle.dump(self, file, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: Path) -> Day:
        """Read a day written by :meth:`save`."""
        with path.open("rb") as file:
            day = pickle.load(file)  # noqa: S301 - our own file, written just before
        if not isinstance(day, cls):
            raise TypeError(f"{path} does not hold a Day")
        return day


def render_day(seconds: int = 86_400, *, warmup: int = WARMUP_SECONDS, seed: int = SEED) -> Day:
    """Render ``warmup`` telegrams before midnight and ``seconds`` after, one per second."""
    model = P1TelegramModel(tz=ZoneInfo(TIME_ZONE), seed=seed)
    day_start = DAY.timestamp()
    first = day_start - warmup
    telegrams: list[bytes] = []
    boundaries: dict[float, dict[str, Decimal]] = {}
    last: dict[str, Decimal] = {}
    for index in range(warmup + seconds):
        ts = first + index
        if (ts - day_start) % 3600 == 0 and last:
            boundaries[ts] = dict(last)
        telegrams.append(model.render(datetime.fromtimestamp(ts, UTC)))
        assert model.last is not None
        last = {obis: model.last.values[obis] for obis in IMPORT_REGISTERS}
    boundaries[first + warmup + seconds] = dict(last)
    return Day(first, day_start, seconds, telegrams, boundaries)


class _TimeModule:
    """The ``time`` module as a module that imported it sees it, with ``time()`` simulated."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.time()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class SimClock:
    """Home Assistant's clock during a run: real time with the idle time skipped.

    The clock runs at real speed, and the feeder jumps it forward to each
    telegram's second (never back): the integration's busy time is real, the
    idle rest of each second is skipped. The event loop runs on it
    (:class:`SimLoop`), so every timer (the recorder's commits and 5-minute
    statistics, the integrations' throttles and watchdogs, our boundary flush)
    fires at its simulated time, in order with the telegrams; and the patches
    of :meth:`patched` make Home Assistant read it as the wall clock.
    """

    def __init__(self, start: float) -> None:
        """Start at ``start`` (a UNIX timestamp)."""
        self._wall0 = start
        self._mono0 = time.monotonic()
        self.skipped = 0.0

    def monotonic(self) -> float:
        """The event loop's clock."""
        return time.monotonic() + self.skipped

    def time(self) -> float:
        """``time.time()``."""
        return self._wall0 + (time.monotonic() - self._mono0) + self.skipped

    def utcnow(self) -> datetime:
        """``dt_util.utcnow()``."""
        return datetime.fromtimestamp(self.time(), UTC)

    def now(self, time_zone: tzinfo | None = None) -> datetime:
        """``dt_util.now()``."""
        return datetime.fromtimestamp(self.time(), time_zone or dt_util.get_default_time_zone())

    def advance_to(self, timestamp: float) -> None:
        """Skip ahead to ``timestamp`` (no-op when it has passed already)."""
        gap = timestamp - self.time()
        if gap > 0:
            self.skipped += gap

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Make Home Assistant read this clock as the wall clock."""
        module = _TimeModule(self)
        with contextlib.ExitStack() as stack:
            for target, value in (
                ("homeassistant.util.dt.utcnow", self.utcnow),
                ("homeassistant.util.dt.now", self.now),
                ("homeassistant.util.utcnow", self.utcnow),  # util.Throttle
                ("homeassistant.helpers.entity.timer", self.time),  # every state's last_updated
                ("homeassistant.helpers.event.time_tracker_utcnow", self.utcnow),
                ("homeassistant.helpers.event.time_tracker_timestamp", self.time),
                ("homeassistant.helpers.event.time", module),  # point-in-time timers
                ("homeassistant.core.time", module),  # event and state timestamps
            ):
                stack.enter_context(patch(target, value))
            yield


class SimLoop(asyncio.SelectorEventLoop):
    """An event loop on a :class:`SimClock`."""

    def __init__(self, clock: SimClock) -> None:
        """Run timers on ``clock``."""
        super().__init__()
        self.clock = clock

    def time(self) -> float:
        """The loop's clock: the simulated monotonic clock."""
        return self.clock.monotonic()
