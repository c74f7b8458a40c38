"""Learned usage profiles: what a meter normally does per weekday and hour of day.

The profile is windowed, not exponential: per weekday it keeps the hourly use of
the last ``weeks`` complete days of that weekday (default 8, so at most
7 x 8 x 24 = 1344 values). A window gives medians and quantiles that one odd day
(a party, a holiday) cannot drag, answers "how many of the last M Mondays had no
use at 3 a.m.", and forgets a season's habits after two months. Everything a
profile derives (daily totals, hour quantiles, use up to a time of day) comes
from the same day records, so the figures agree with one another.

Values are exact ``Decimal`` in the meter's unit (kWh, m³). The profile persists
as a plain JSON-able dict (:meth:`WeekdayProfile.as_dict` /
:meth:`WeekdayProfile.from_dict`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

HOURS = 24
DEFAULT_WEEKS = 8
FORMAT_VERSION = 1
_ZERO = Decimal(0)
_HALF = Decimal("0.5")


def quantile(values: Iterable[Decimal], q: Decimal) -> Decimal | None:
    """The ``q`` quantile (0..1) of ``values``, linear between order statistics.

    Exact for the median of an even count (the mean of the two middle values);
    ``None`` for no values.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    if not _ZERO <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    frac = pos - low
    if frac == 0 or low + 1 >= len(ordered):
        return ordered[low]
    return ordered[low] + (ordered[low + 1] - ordered[low]) * frac


def median(values: Iterable[Decimal]) -> Decimal | None:
    """The median of ``values`` (``None`` for none)."""
    return quantile(values, _HALF)


@dataclass(frozen=True, slots=True)
class DayRecord:
    """The use of one complete local day, per local hour (index 0..23).

    On the autumn DST change the repeated hour adds up in its index; in spring
    the skipped hour stays 0, so ``total`` is always the day's use.
    """

    day: date
    hours: tuple[Decimal, ...]

    def __post_init__(self) -> None:
        """Reject a record that does not have one value per hour."""
        if len(self.hours) != HOURS:
            raise ValueError(f"a day record needs {HOURS} hourly values, got {len(self.hours)}")

    @property
    def total(self) -> Decimal:
        """The day's use."""
        return sum(self.hours, _ZERO)

    def until(self, hour: int, fraction: Decimal = _ZERO) -> Decimal:
        """Use from midnight to ``hour`` plus ``fraction`` (0..1) of that hour.

        Within the hour the use is taken as even (the profile knows hours, not minutes).
        """
        done = sum(self.hours[:hour], _ZERO)
        if hour < HOURS and fraction:
            done += self.hours[hour] * fraction
        return done


class WeekdayProfile:
    """The last ``weeks`` complete days of each weekday (Monday = 0), hour by hour."""

    def __init__(self, weeks: int = DEFAULT_WEEKS) -> None:
        """Keep at most ``weeks`` days per weekday."""
        if weeks < 1:
            raise ValueError("a profile needs a window of at least one week")
        self._weeks = weeks
        self._days: list[deque[DayRecord]] = [deque(maxlen=weeks) for _ in range(7)]

    @property
    def weeks(self) -> int:
        """The window: how many days of each weekday are kept."""
        return self._weeks

    def add_day(self, record: DayRecord) -> None:
        """Learn one complete day; a record for a date already held replaces it."""
        days = self._days[record.day.weekday()]
        for i, held in enumerate(days):
            if held.day == record.day:
                days[i] = record
                return
        if days and record.day < days[-1].day:
            return  # older than what the window holds: nothing to learn
        days.append(record)

    def days(self, weekday: int) -> tuple[DayRecord, ...]:
        """The held days of a weekday, oldest first."""
        return tuple(self._days[weekday])

    def learned(self, weekday: int) -> int:
        """How many days of this weekday the profile holds."""
        return len(self._days[weekday])

    def hour_samples(self, weekday: int, hour: int, last: int | None = None) -> tuple[Decimal, ...]:
        """The use in ``hour`` on the held days of ``weekday`` (the ``last`` newest only if given)."""
        days: Sequence[DayRecord] = self._days[weekday]
        if last is not None:
            days = list(days)[-last:] if last > 0 else []
        return tuple(day.hours[hour] for day in days)

    def quiet_count(self, weekday: int, hour: int, limit: Decimal, last: int | None = None) -> int:
        """On how many of the (last) held days of ``weekday`` ``hour`` used at most ``limit``."""
        return sum(1 for value in self.hour_samples(weekday, hour, last) if value <= limit)

    def hour_mean(self, weekday: int, hour: int) -> Decimal | None:
        """The mean use in ``hour`` of ``weekday`` (``None`` before any day is learned)."""
        samples = self.hour_samples(weekday, hour)
        return sum(samples, _ZERO) / len(samples) if samples else None

    def hour_quantile(self, weekday: int, hour: int, q: Decimal) -> Decimal | None:
        """The ``q`` quantile of the use in ``hour`` of ``weekday``."""
        return quantile(self.hour_samples(weekday, hour), q)

    def daily_totals(self, weekday: int) -> tuple[Decimal, ...]:
        """The totals of the held days of ``weekday``, oldest first."""
        return tuple(day.total for day in self._days[weekday])

    def typical_day(self, weekday: int) -> Decimal | None:
        """The median daily total of ``weekday``."""
        return median(self.daily_totals(weekday))

    def typical_until(self, weekday: int, hour: int, fraction: Decimal = _ZERO) -> Decimal | None:
        """The median use from midnight to ``hour`` + ``fraction`` on the held days of ``weekday``.

        The median of the per-day sums, not the sum of per-hour medians: a
        household that cooks at 18:00 one week and 19:00 the next still has a
        typical evening.
        """
        return median(day.until(hour, fraction) for day in self._days[weekday])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the whole profile."""
        return {
            "version": FORMAT_VERSION,
            "weeks": self._weeks,
            "days": [
                {"date": record.day.isoformat(), "hours": [str(value) for value in record.hours]}
                for days in self._days
                for record in days
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], weeks: int | None = None) -> WeekdayProfile:
        """Rebuild a profile from :meth:`as_dict` output (``weeks`` overrides the stored window).

        Raises:
            ValueError: the data is not a profile this version wrote.
        """
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a stored profile: unknown format {data.get('version')!r}")
        try:
            profile = cls(weeks if weeks is not None else int(data["weeks"]))
            records = [
                DayRecord(date.fromisoformat(item["date"]), tuple(Decimal(str(v)) for v in item["hours"]))
                for item in data["days"]
            ]
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as err:
            raise ValueError(f"not a stored profile: {err!r}") from err
        for record in sorted(records, key=lambda r: r.day):
            profile.add_day(record)
        return profile
