"""Write policy: which readings become recorder writes.

At one telegram a second, thirty sensors would write hundreds of thousands of
rows a day. The policy keeps the numbers exact with a fraction of the writes:

- **Counters** (energy, gas, water, heat) are written when they change, at most
  every ``counter_interval`` seconds, and always with the last reading before
  each ``boundary`` (the recorder's 5-minute short-term statistics period), so
  every 5-minute and hourly sum is exact. A timer calls :meth:`CounterWriter.flush`
  just before each boundary for the case where the expected telegram never came.
- **Measurements** (power, voltage, current) are written as the time-weighted
  mean over ``measurement_interval``, and early when the value moves beyond
  the deadband from the last written value.
- **Live** mode writes every reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class WritePolicy:
    """Per-entry write settings (from the options flow)."""

    live: bool = False
    counter_interval: float = 60.0
    measurement_interval: float = 60.0
    deadband: float = 0.1  # relative to the last written value
    deadband_floor: float = 0.05  # absolute, in the register's unit (e.g. 50 W as 0.05 kW)
    boundary: float = 300.0


def _period(time: float, boundary: float) -> int:
    return math.floor(time / boundary)


class CounterWriter:
    """Decides when a cumulative register is written."""

    __slots__ = ("_gaps", "_last_seen_time", "_pending", "_written", "_written_time", "policy")

    def __init__(self, policy: WritePolicy) -> None:
        """Start with nothing written."""
        self.policy = policy
        self._written: Decimal | None = None
        self._written_time = -math.inf
        self._last_seen_time: float | None = None
        self._pending: Decimal | None = None
        # The last few gaps between readings: the shortest is when the next one is expected.
        self._gaps: tuple[float, ...] = ()

    def offer(self, value: Decimal, time: float) -> bool:
        """A new (guarded) reading at ``time``; ``True`` when it must be written now."""
        policy = self.policy
        previous = self._last_seen_time
        self._last_seen_time = time
        if previous is not None and time > previous:
            self._gaps = (*self._gaps[-2:], time - previous)
        if value == self._written:
            self._pending = None
            return False
        write = (
            policy.live
            or self._written is None
            or time - self._written_time >= policy.counter_interval
            # the first reading of a new 5-minute period while the last one was not written
            or (
                previous is not None
                and _period(time, policy.boundary) != _period(previous, policy.boundary)
                and self._pending is not None
            )
            # the last reading before the boundary: the next one is expected after it
            # (a lost telegram is covered by flush(), called just before the boundary)
            or _period(time + min(self._gaps, default=0.0) * 1.5, policy.boundary)
            != _period(time, policy.boundary)
        )
        if write:
            self._written = value
            self._written_time = time
            self._pending = None
        else:
            self._pending = value
        return write

    def flush(self, time: float) -> Decimal | None:
        """Called just before each boundary: the unwritten reading to write now, if any.

        This covers telegrams lost right before a boundary, when the last
        reading of the period was held back in expectation of another.
        """
        pending = self._pending
        if pending is None:
            return None
        self._written = pending
        self._written_time = time
        self._pending = None
        return pending


class MeasurementWriter:
    """Time-weighted mean of a measurement, written per interval or on a big move."""

    __slots__ = ("_area", "_current", "_start", "_time", "_written", "policy")

    def __init__(self, policy: WritePolicy) -> None:
        """Start with an empty interval."""
        self.policy = policy
        self._written: float | None = None
        self._start: float | None = None
        self._time: float | None = None
        self._current: float | None = None
        self._area = 0.0

    def offer(self, value: float, time: float) -> float | None:
        """A new reading; returns the value to write now, or ``None``."""
        policy = self.policy
        if policy.live or self._written is None or self._start is None or self._time is None:
            return self._emit(value, time)
        if self._current is not None and time > self._time:
            self._area += self._current * (time - self._time)
        self._time = time
        self._current = value
        band = max(abs(self._written) * policy.deadband, policy.deadband_floor)
        if abs(value - self._written) > band:
            return self._emit(value, time)
        if time - self._start >= policy.measurement_interval:
            span = time - self._start
            return self._emit(self._area / span if span > 0 else value, time, keep=value)
        return None

    def _emit(self, value: float, time: float, keep: float | None = None) -> float:
        self._written = value
        self._start = time
        self._time = time
        self._current = value if keep is None else keep
        self._area = 0.0
        return value
