"""Interval data to hourly statistics: exact sums, continuous across runs.

Pure functions, no Home Assistant: the integration's importer
(``cloud_statistics.py``) feeds them what the provider returned and what the
database holds.

- :func:`hourly` folds intervals into hours (UTC) with exact Decimal sums. An
  interval within one hour adds to it; a longer one is spread over the hours it
  covers in proportion to time. A repeated interval (same start and end) counts
  once: the last one wins, as a provider's restatement would.
- :func:`running_sums` turns hourly values into Home Assistant statistic rows:
  ``sum`` continues from the sum the database holds before the first hour.
- :func:`import_window` says which hours to (re-)import: the first run
  backfills ``backfill`` back from now; later runs start at the earlier of the
  last imported hour and ``restate`` before now, so a restart in the middle of
  a backfill continues where it stopped (no gap) and re-importing rows that
  exist overwrites them (no duplicates).
- :func:`cost_of` prices consumption intervals with the unit prices valid at
  their start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from .base import Interval

HOUR = timedelta(hours=1)
_HOUR_S = 3600
_MICROSECOND = timedelta(microseconds=1)


def floor_hour(stamp: datetime) -> datetime:
    """The start (UTC) of the hour ``stamp`` falls in."""
    return stamp.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(stamp: datetime) -> datetime:
    """The first hour start (UTC) at or after ``stamp``."""
    start = floor_hour(stamp)
    return start if start == stamp else start + HOUR


def dedupe(intervals: Iterable[Interval]) -> list[Interval]:
    """Intervals sorted by start, a repeated (start, end) kept once (the last one), times in UTC.

    Times in another zone are converted first: Python compares and subtracts two
    datetimes of the same zone by wall clock, so in Europe/London the two 01:30 of
    the 25-hour day would be one, and 01:30 BST to 01:00 GMT would be negative.
    """
    found: dict[tuple[datetime, datetime], Interval] = {}
    for given in intervals:
        interval = given
        if given.start.tzinfo is not UTC or given.end.tzinfo is not UTC:
            interval = Interval(
                given.start.astimezone(UTC), given.end.astimezone(UTC), given.value, given.unit
            )
        if interval.end > interval.start:
            found[interval.start, interval.end] = interval
    return sorted(found.values(), key=lambda i: (i.start, i.end))


def hourly(intervals: Iterable[Interval]) -> dict[datetime, Decimal]:
    """Hour start (UTC) -> exact sum of the intervals' values in that hour."""
    hours: dict[datetime, Decimal] = {}
    for interval in dedupe(intervals):
        start = floor_hour(interval.start)
        if interval.end <= start + HOUR:
            hours[start] = hours.get(start, Decimal(0)) + interval.value
            continue
        # Shares by exact whole microseconds (whole seconds would divide by zero for an
        # interval under a second across an hour boundary, and lose the fractions); the
        # last hour takes what is left, so the shares add up to the value exactly even when
        # the division does not terminate (1 kWh over 3 hours).
        total = Decimal((interval.end - interval.start) // _MICROSECOND)
        spread = Decimal(0)
        cursor = interval.start
        while cursor < interval.end:
            hour = floor_hour(cursor)
            stop = min(hour + HOUR, interval.end)
            if stop < interval.end:
                share = interval.value * Decimal((stop - cursor) // _MICROSECOND) / total
                spread += share
            else:
                share = interval.value - spread
            hours[hour] = hours.get(hour, Decimal(0)) + share
            cursor = stop
    return hours


@dataclass(frozen=True, slots=True)
class HourRow:
    """One statistic row: the hour's value and the running sum at its end."""

    start: datetime
    value: Decimal
    sum: Decimal


def running_sums(hours: dict[datetime, Decimal], base: Decimal) -> list[HourRow]:
    """Rows oldest first, ``sum`` continuing from ``base`` (the sum before the first hour)."""
    rows: list[HourRow] = []
    total = base
    for start in sorted(hours):
        total += hours[start]
        rows.append(HourRow(start, hours[start], total))
    return rows


def import_window(
    now: datetime, last_hour: datetime | None, *, backfill: timedelta, restate: timedelta
) -> datetime:
    """The first hour (UTC) to fetch and (re-)import on this run."""
    if last_hour is None:
        return floor_hour(now - backfill)
    return min(floor_hour(last_hour), floor_hour(now - restate))


def chunks(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive windows of at most ``size``, oldest first."""
    if size <= timedelta(0):
        raise ValueError(f"chunk size must be positive, not {size}")  # it would never advance
    windows: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        stop = min(cursor + size, end)
        windows.append((cursor, stop))
        cursor = stop
    return windows


def price_at(prices: Sequence[Interval], stamp: datetime) -> Interval | None:
    """The price valid at ``stamp`` (prices sorted by start, non-overlapping)."""
    lo, hi = 0, len(prices)
    while lo < hi:
        mid = (lo + hi) // 2
        if prices[mid].start <= stamp:
            lo = mid + 1
        else:
            hi = mid
    if lo and prices[lo - 1].start <= stamp < prices[lo - 1].end:
        return prices[lo - 1]
    return None


def cost_of(consumption: Iterable[Interval], prices: Sequence[Interval], currency: str) -> list[Interval]:
    """Each consumption interval priced at the unit price valid at its start.

    Intervals with no known price are left out (their hour's cost row then
    misses them; a later restatement fills them in when the price arrives).
    """
    ordered = dedupe(prices)
    costs: list[Interval] = []
    for interval in consumption:
        price = price_at(ordered, interval.start)
        if price is not None:
            costs.append(Interval(interval.start, interval.end, interval.value * price.value, currency))
    return costs
