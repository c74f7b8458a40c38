"""The simulated day of the recorder benchmark: telegrams, meter registers and the clock.

One day of 1 Hz DSMR 5 telegrams is rendered once by
:class:`~custom_components.smartmeter.core.simulator.P1TelegramModel` (the
default template, a real Iskra MT382 telegram) and fed to every scenario, so
each integration sees the very same bytes. A short warm-up before midnight
lets the integrations set up (our setup waits for a first telegram; the
built-in ``dsmr`` creates its entities on the first telegram its throttle lets
through) and gives the recorder the state it needs for the first hour's sum.

:class:`SimClock` is Home Assistant's notion of "now" during a run: it patches
``dt_util.utcnow`` (what the recorder, the statistics and ``util.Throttle``
read) and the entity helper's ``timer`` (the ``last_updated`` of every state
written), so a state written for the telegram of 13:00:05 is stamped 13:00:05
whatever the wall clock says. The event loop keeps real time.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest.mock import patch
from zoneinfo import ZoneInfo

from custom_components.smartmeter.core.simulator import P1TelegramModel

TIME_ZONE = "Europe/Amsterdam"
# A Wednesday in winter (no DST change, both tariffs during the day).
DAY = datetime(2025, 1, 15, tzinfo=ZoneInfo(TIME_ZONE))
WARMUP_SECONDS = 300  # one 5-minute statistics period before midnight
SEED = 20250115
# The import-energy registers the hourly error is measured on.
IMPORT_REGISTERS = ("1-0:1.8.1", "1-0:1.8.2")
PERIOD = 300  # the recorder's short-term statistics period (seconds)


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


class SimClock:
    """Home Assistant's "now" during a run, moved by the feeder (see the module docstring)."""

    def __init__(self, start: float) -> None:
        """Start at ``start`` (a UNIX timestamp)."""
        self.now = start

    def set(self, timestamp: float) -> None:
        """Move to ``timestamp``."""
        self.now = timestamp

    def time(self) -> float:
        """``time.time()`` on the simulated clock."""
        return self.now

    def utcnow(self) -> datetime:
        """``dt_util.utcnow()`` on the simulated clock."""
        return datetime.fromtimestamp(self.now, UTC)

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Make Home Assistant read this clock."""
        with contextlib.ExitStack() as stack:
            for target in ("homeassistant.util.dt.utcnow", "homeassistant.util.utcnow"):
                stack.enter_context(patch(target, self.utcnow))
            stack.enter_context(patch("homeassistant.helpers.entity.timer", self.time))
            yield


def period_start(timestamp: float) -> datetime:
    """Start of the statistics period ending at ``timestamp`` (a period boundary)."""
    return datetime.fromtimestamp(timestamp, UTC) - timedelta(seconds=PERIOD)
