"""Simulated household water use, read the way real water meters report it.

The truth is a list of constant-flow :class:`Segment` s (litres per second over
``[start, end)`` seconds from the series start), built from events:

* toilet flushes: the cistern refills 6-9 L at about 9 L/min, 4-6 per person a
  day while awake, with hand washing after; a night visit on some nights;
* a shower a day per person, 7-9 L/min for 5-10 minutes (mornings mostly);
* kitchen taps (0.3-4 L at 6-8 L/min), more around dinner;
* a dishwasher on about half the evenings (four fills of 3 L), a washing
  machine on about 40 % of the days (five fills of 8-12 L at 10 L/min);
* options: a dripping tap (constant L/h), a running toilet (a 1.5 L refill at
  6 L/min as often as the leak rate needs), bursts (L/min for minutes), and
  holiday days with no use at all.

:func:`sample` reads the cumulative volume as a register truncated to its step
(1 L, 10 L, or m³ with three decimals) at a cadence with jitter, missing
readings and outages. Everything is deterministic by seed.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

DAY = 86_400.0
HOUR = 3_600.0
MINUTE = 60.0
START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


@dataclass(frozen=True, slots=True)
class Segment:
    """Water flowing at ``rate`` L/s over ``[start, end)`` (seconds from the series start)."""

    start: float
    end: float
    rate: float


@dataclass(frozen=True, slots=True)
class Household:
    """What happens in the house (times in hours from the series start)."""

    days: int = 7
    people: int = 3
    seed: int = 0
    holiday_days: frozenset[int] = frozenset()
    drip_l_h: float = 0.0
    drip_from_h: float = 0.0
    running_toilet_l_h: float = 0.0
    running_toilet_from_h: float = 0.0
    bursts: tuple[tuple[float, float, float], ...] = ()  # (start hour, L/min, minutes)
    extra: tuple[Segment, ...] = field(default=())

    @property
    def end(self) -> float:
        """The series length in seconds."""
        return self.days * DAY


def _draw(segments: list[Segment], start: float, litres: float, l_min: float) -> float:
    """Add a draw of ``litres`` at ``l_min`` from ``start``; return its end."""
    rate = l_min / MINUTE
    end = start + litres / rate
    segments.append(Segment(start, end, rate))
    return end


def _day(rng: random.Random, day: int, people: int, segments: list[Segment]) -> None:
    base = day * DAY
    weekend = day % 7 in (5, 6)
    for _ in range(people):
        wake = (rng.uniform(7.5, 9.0) if weekend else rng.uniform(6.3, 7.5)) * HOUR
        bed = rng.uniform(22.3, 23.5) * HOUR
        # night visit (before waking)
        if rng.random() < 0.3:
            t = base + rng.uniform(1.0, 5.0) * HOUR
            end = _draw(segments, t, rng.uniform(6, 9), 9.0)
            _draw(segments, end + rng.uniform(5, 20), rng.uniform(0.3, 0.8), 5.0)
        # shower
        if rng.random() < 0.7:
            t = base + wake + rng.uniform(10, 40) * MINUTE
        else:
            t = base + rng.uniform(19.5, 21.5) * HOUR
        _draw(segments, t, rng.uniform(7, 9) * rng.uniform(5, 10), rng.uniform(7, 9))
        # toilet flushes with hand washing
        for _ in range(rng.randint(4, 6)):
            t = base + rng.uniform(wake, bed)
            end = _draw(segments, t, rng.uniform(6, 9), rng.uniform(8, 10))
            _draw(segments, end + rng.uniform(5, 30), rng.uniform(0.3, 1.0), rng.uniform(4, 6))
        # taps: drinking water, brushing teeth, kitchen
        for _ in range(rng.randint(3, 6)):
            _draw(segments, base + rng.uniform(wake, bed), rng.uniform(0.3, 2.0), rng.uniform(5, 8))
    for _ in range(rng.randint(4, 10)):  # cooking and washing up by hand
        _draw(segments, base + rng.uniform(17.0, 19.5) * HOUR, rng.uniform(0.5, 4.0), rng.uniform(6, 8))
    if rng.random() < 0.5:  # dishwasher
        t = base + rng.uniform(19.5, 21.5) * HOUR
        for _ in range(4):
            end = _draw(segments, t, 3.0, 6.0)
            t = end + rng.uniform(15, 20) * MINUTE
    if rng.random() < 0.4:  # washing machine
        t = base + rng.uniform(9.0, 18.0) * HOUR
        for _ in range(5):
            end = _draw(segments, t, rng.uniform(8, 12), 10.0)
            t = end + rng.uniform(10, 15) * MINUTE


def usage(house: Household) -> list[Segment]:
    """The flow segments of a household (unsorted, possibly overlapping)."""
    rng = random.Random(house.seed)  # noqa: S311 - a deterministic simulation
    segments: list[Segment] = []
    for day in range(house.days):
        day_segments: list[Segment] = []
        _day(rng, day, house.people, day_segments)  # drawn even on holidays: same days stay the same
        if day not in house.holiday_days:
            segments += day_segments
    end = house.end
    if house.drip_l_h > 0:
        segments.append(Segment(house.drip_from_h * HOUR, end, house.drip_l_h / HOUR))
    if house.running_toilet_l_h > 0:
        period = 1.5 / house.running_toilet_l_h * HOUR
        t = house.running_toilet_from_h * HOUR
        while t < end:
            _draw(segments, t, 1.5, 6.0)
            t += period
    for start_h, l_min, minutes in house.bursts:
        segments.append(Segment(start_h * HOUR, start_h * HOUR + minutes * MINUTE, l_min / MINUTE))
    segments += house.extra
    return [s for s in segments if s.end > s.start and s.start < end]


class Flow:
    """The cumulative volume of a set of segments, as a piecewise-linear function of time."""

    def __init__(self, segments: Iterable[Segment]) -> None:
        changes: dict[float, float] = {}
        for seg in segments:
            changes[seg.start] = changes.get(seg.start, 0.0) + seg.rate
            changes[seg.end] = changes.get(seg.end, 0.0) - seg.rate
        self.times: list[float] = [-math.inf]
        self.rates: list[float] = [0.0]  # rate from times[i] to times[i + 1]
        self.volumes: list[float] = [0.0]  # volume at times[i]
        rate = 0.0
        volume = 0.0
        last = 0.0
        for t in sorted(changes):
            volume += rate * (t - last) if rate > 0 else 0.0
            rate = rate + changes[t]
            if abs(rate) < 1e-12:
                rate = 0.0
            self.times.append(t)
            self.rates.append(rate)
            self.volumes.append(volume)
            last = t

    def volume(self, t: float) -> float:
        """The litres passed by ``t``."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.volumes[i] + self.rates[i] * (t - self.times[i]) if i > 0 else 0.0

    def quiet(self, start: float, end: float) -> list[tuple[float, float]]:
        """The zero-flow stretches within ``[start, end]``."""
        stretches: list[tuple[float, float]] = []
        bounds = [*self.times[1:], math.inf]
        for i, rate in enumerate(self.rates):
            lo, hi = max(self.times[i], start), min(bounds[i], end)
            if rate == 0.0 and hi > lo:
                if stretches and stretches[-1][1] >= lo:
                    stretches[-1] = (stretches[-1][0], hi)
                else:
                    stretches.append((lo, hi))
        return stretches


@dataclass(frozen=True, slots=True)
class Reading:
    """A reading as the monitor gets it, with its time in seconds for the test's bookkeeping."""

    when: datetime
    value: Decimal
    seconds: float


def sample(
    flow: Flow,
    *,
    end: float,
    step_l: int = 1,
    unit: str = "L",
    cadence: float = 10.0,
    jitter: float = 0.2,
    missing: float = 0.0,
    outages: Sequence[tuple[float, float]] = (),
    seed: int = 0,
    start: datetime = START,
) -> list[Reading]:
    """Read the register every ``cadence`` seconds (± ``jitter`` of it), dropping some.

    The register is the volume truncated to ``step_l`` litres; with ``unit`` "m3"
    it is stated in m³ with three decimals (``step_l`` must then be 1).
    """
    if unit == "m3" and step_l != 1:
        raise ValueError("an m³ register with three decimals has 1 L steps")
    rng = random.Random(seed)  # noqa: S311 - a deterministic simulation
    readings: list[Reading] = []
    k = 0
    while True:
        t = k * cadence + (rng.uniform(-jitter, jitter) * cadence if k else 0.0)
        k += 1
        t = round(t * 1e6) / 1e6
        if t > end:
            return readings
        if k > 1 and rng.random() < missing:
            continue
        if any(lo <= t < hi for lo, hi in outages):
            continue
        steps = math.floor(flow.volume(t) / step_l)
        value = Decimal(steps * step_l) if unit == "L" else Decimal(steps).scaleb(-3)
        # readings keep microsecond times, like a meter or a receiving host would
        readings.append(Reading(start + timedelta(microseconds=round(t * 1e6)), value, t))


def seconds(when: datetime, start: datetime = START) -> float:
    """A time as seconds from the series start."""
    return (when - start).total_seconds()
