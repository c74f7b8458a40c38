"""Interval data to hourly statistics: exact sums in UTC hours, continuous across runs and restarts."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from custom_components.smartmeter.core.cloud.base import Interval
from custom_components.smartmeter.core.cloud.hourly import (
    HOUR,
    HourRow,
    ceil_hour,
    chunks,
    cost_of,
    dedupe,
    floor_hour,
    hourly,
    import_window,
    price_at,
    running_sums,
)

LONDON = ZoneInfo("Europe/London")
PLUS1 = timezone(timedelta(hours=1))
HALF = timedelta(minutes=30)
QUARTER = timedelta(minutes=15)
T0 = datetime(2025, 1, 15, tzinfo=UTC)
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def iv(start: datetime, end: datetime, value: str | Decimal, unit: str = "kWh") -> Interval:
    return Interval(start, end, Decimal(value), unit)


def series(start: datetime, step: timedelta, values: list[Decimal], tz: tzinfo = UTC) -> list[Interval]:
    """Consecutive intervals of ``step`` from ``start``, their times shown in ``tz``."""
    out = []
    for n, value in enumerate(values):
        begin = start + n * step
        out.append(Interval(begin.astimezone(tz), (begin + step).astimezone(tz), value, "kWh"))
    return out


# --------------------------------------------------------------------------- floor/ceil
def test_floor_and_ceil_hour() -> None:
    assert floor_hour(datetime(2025, 1, 1, 10, 59, 59, 999_999, tzinfo=UTC)) == datetime(
        2025, 1, 1, 10, tzinfo=UTC
    )
    assert floor_hour(datetime(2025, 1, 1, 10, 15, tzinfo=PLUS1)) == datetime(2025, 1, 1, 9, tzinfo=UTC)
    # a half-hour zone: the UTC hour, not the local one
    india = timezone(timedelta(hours=5, minutes=30))
    assert floor_hour(datetime(2025, 1, 1, 10, 45, tzinfo=india)) == datetime(2025, 1, 1, 5, tzinfo=UTC)
    assert floor_hour(datetime(2025, 1, 1, 10, 15, tzinfo=india)).tzinfo is UTC
    assert ceil_hour(datetime(2025, 1, 1, 10, tzinfo=UTC)) == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert ceil_hour(datetime(2025, 1, 1, 10, 0, 0, 1, tzinfo=UTC)) == datetime(2025, 1, 1, 11, tzinfo=UTC)
    assert ceil_hour(datetime(2025, 1, 1, 11, tzinfo=PLUS1)) == datetime(2025, 1, 1, 10, tzinfo=UTC)


# --------------------------------------------------------------------------- hourly()
def test_half_hours_fold_exactly() -> None:
    values = ["1.836", "0.146", "0.100", "0.200", "0.001", "2.999"]
    data = series(T0, HALF, [Decimal(v) for v in values])
    hours = hourly(data)
    assert hours == {
        T0: Decimal("1.982"),
        T0 + HOUR: Decimal("0.300"),
        T0 + 2 * HOUR: Decimal("3.000"),
    }
    assert all(isinstance(v, Decimal) for v in hours.values())
    assert sum(hours.values()) == sum(Decimal(v) for v in values)


def test_quarter_hours_fold_exactly() -> None:
    data = series(T0 + HOUR, QUARTER, [Decimal("0.125")] * 4 + [Decimal("0.333")] * 4)
    assert hourly(data) == {T0 + HOUR: Decimal("0.500"), T0 + 2 * HOUR: Decimal("1.332")}


def test_hours_are_utc_with_offset_times() -> None:
    # Octopus answers in local time: 00:00+01:00 is 23:00 UTC the day before
    start = datetime(2020, 5, 8, 0, 0, tzinfo=PLUS1)
    data = [
        iv(start, start + HALF, "1.836"),
        iv(start + HALF, start + 2 * HALF, "0.146"),
        iv(start + 2 * HALF, start + 3 * HALF, "0.500"),
    ]
    hours = hourly(data)
    assert hours == {
        datetime(2020, 5, 7, 23, tzinfo=UTC): Decimal("1.982"),
        datetime(2020, 5, 8, 0, tzinfo=UTC): Decimal("0.500"),
    }
    assert all(hour.tzinfo is UTC for hour in hours)


def test_repeated_interval_counts_once_last_wins() -> None:
    data = [
        iv(T0, T0 + HALF, "1.000"),
        iv(T0 + HALF, T0 + HOUR, "2.000"),
        iv(T0, T0 + HALF, "1.500"),  # a restatement of the first
        # the same instants written in another zone: still the same interval
        iv((T0 + HALF).astimezone(PLUS1), (T0 + HOUR).astimezone(PLUS1), "2.250"),
    ]
    assert hourly(data) == {T0: Decimal("3.750")}
    assert [i.value for i in dedupe(data)] == [Decimal("1.500"), Decimal("2.250")]


def test_zero_and_negative_length_intervals_are_ignored() -> None:
    data = [
        iv(T0, T0, "5"),
        iv(T0 + HOUR, T0, "7"),
        iv(T0 + HALF, T0 + HALF - timedelta(microseconds=1), "9"),
        iv(T0, T0 + HALF, "0.250"),
    ]
    assert hourly(data) == {T0: Decimal("0.250")}
    assert hourly([iv(T0, T0, "1")]) == {}


def test_empty_input() -> None:
    assert hourly([]) == {}
    assert hourly(iter(())) == {}
    assert running_sums({}, Decimal("12.5")) == []


def test_three_hour_interval_spread_proportionally() -> None:
    assert hourly([iv(T0, T0 + 3 * HOUR, "3.000")]) == {
        T0: Decimal("1.000"),
        T0 + HOUR: Decimal("1.000"),
        T0 + 2 * HOUR: Decimal("1.000"),
    }
    # a value that does not divide: the shares still add up to it exactly
    hours = hourly([iv(T0, T0 + 3 * HOUR, "1")])
    assert sorted(hours) == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert sum(hours.values()) == Decimal(1)
    assert all(abs(v - Decimal(1) / 3) < Decimal("1e-26") for v in hours.values())
    # a daily gas reading spread over 24 hours, total preserved
    day = hourly([iv(T0, T0 + 24 * HOUR, "7.123")])
    assert len(day) == 24 and sum(day.values()) == Decimal("7.123")


def test_ninety_minutes_straddling_hours() -> None:
    start = T0 + HALF
    assert hourly([iv(start, start + 3 * HALF, "0.900")]) == {
        T0: Decimal("0.300"),
        T0 + HOUR: Decimal("0.600"),
    }
    # 00:45-02:15: 15 + 60 + 15 minutes
    start = T0 + 3 * QUARTER
    assert hourly([iv(start, start + 6 * QUARTER, "1.2")]) == {
        T0: Decimal("0.2"),
        T0 + HOUR: Decimal("0.8"),
        T0 + 2 * HOUR: Decimal("0.2"),
    }
    # added to the hours' other intervals
    data = [
        iv(T0, T0 + HALF, "0.050"),
        iv(T0 + HALF, T0 + 2 * HOUR, "0.900"),
        iv(T0 + 2 * HOUR, T0 + 5 * HALF, "1"),
    ]
    assert hourly(data) == {T0: Decimal("0.350"), T0 + HOUR: Decimal("0.600"), T0 + 2 * HOUR: Decimal("1")}


def test_whole_hour_interval_stays_in_its_hour() -> None:
    assert hourly([iv(T0, T0 + HOUR, "0.7")]) == {T0: Decimal("0.7")}


def test_sub_second_interval_across_an_hour() -> None:
    # 800 ms before the hour, 200 ms after it
    start = T0 + HOUR - timedelta(milliseconds=800)
    hours = hourly([iv(start, start + timedelta(seconds=1), "1")])
    assert hours == {T0: Decimal("0.8"), T0 + HOUR: Decimal("0.2")}
    # fractions of a second count in a long interval too
    start = T0 + HOUR - timedelta(seconds=1, milliseconds=500)
    hours = hourly([iv(start, start + timedelta(seconds=3), "3")])
    assert hours == {T0: Decimal("1.5"), T0 + HOUR: Decimal("1.5")}


def _local_day(day: datetime) -> tuple[datetime, datetime]:
    """UTC start and end of a local Europe/London day."""
    start = datetime(day.year, day.month, day.day, tzinfo=LONDON)
    end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), LONDON)
    return start.astimezone(UTC), end.astimezone(UTC)


@pytest.mark.parametrize(
    ("day", "hours_in_day", "times_local"),
    [
        (datetime(2025, 3, 30), 23, ["00:00", "00:30", "02:00", "02:30"]),  # 01:00-02:00 does not exist
        (datetime(2025, 10, 26), 25, ["00:00", "00:30", "01:00", "01:30", "01:00", "01:30", "02:00"]),
    ],
)
@pytest.mark.parametrize("shown_in", [LONDON, UTC, PLUS1], ids=["london", "utc", "plus1"])
def test_dst_days_from_local_half_hours(
    day: datetime, hours_in_day: int, times_local: list[str], shown_in: tzinfo
) -> None:
    start, end = _local_day(day)
    assert (end - start) == hours_in_day * HOUR
    slots = int((end - start) / HALF)
    values = [Decimal(n + 1) / 1000 for n in range(slots)]  # 0.001, 0.002, ... all distinct
    data = series(start, HALF, values, tz=shown_in)
    if shown_in is LONDON:
        # the local wall clock of the day's first slots, as a supplier's portal shows them
        shown = [f"{i.start:%H:%M}" for i in data[: len(times_local)]]
        assert shown == times_local
    hours = hourly(data)
    assert len(hours) == hours_in_day
    assert sorted(hours) == [start + n * HOUR for n in range(hours_in_day)]
    assert sum(hours.values()) == sum(values)
    for n, hour in enumerate(sorted(hours)):
        assert hours[hour] == values[2 * n] + values[2 * n + 1]
    rows = running_sums(hours, Decimal(0))
    assert len(rows) == hours_in_day and rows[-1].sum == sum(values)


def test_dst_spread_interval_in_local_time() -> None:
    # a 3-hour reading over the autumn change, written in local time: 00:00 BST to 02:00 GMT
    start = datetime(2025, 10, 26, 0, 0, tzinfo=LONDON)
    end = datetime(2025, 10, 26, 2, 0, tzinfo=LONDON)
    assert end.astimezone(UTC) - start.astimezone(UTC) == 3 * HOUR
    hours = hourly([Interval(start, end, Decimal("3.3"), "kWh")])
    first = datetime(2025, 10, 25, 23, tzinfo=UTC)
    assert hours == {first: Decimal("1.1"), first + HOUR: Decimal("1.1"), first + 2 * HOUR: Decimal("1.1")}


values_3dp = st.integers(min_value=0, max_value=9_999_999).map(lambda n: Decimal(n).scaleb(-3))


@st.composite
def interval_series(draw: st.DrawFn) -> list[Interval]:
    step = draw(st.sampled_from([HALF, QUARTER]))
    start = T0 + draw(st.integers(min_value=0, max_value=3 if step == QUARTER else 1)) * step
    values = draw(st.lists(values_3dp, min_size=0, max_size=150))
    tz = draw(st.sampled_from([UTC, PLUS1, LONDON]))
    data = series(start, step, values, tz=tz)
    # the provider may repeat a page: repeated intervals count once
    repeats = draw(st.lists(st.sampled_from(data), max_size=10)) if data else []
    return data + repeats


@PROPERTY
@given(data=interval_series(), base=values_3dp)
def test_property_hourly_preserves_the_total_and_sums_continue(data: list[Interval], base: Decimal) -> None:
    hours = hourly(data)
    unique = {(i.start, i.end): i.value for i in data}
    total = sum(unique.values(), Decimal(0))
    assert sum(hours.values(), Decimal(0)) == total
    assert all(hour.tzinfo is UTC and hour == floor_hour(hour) for hour in hours)
    # each hour is exactly the sum of the intervals that start in it
    for hour, value in hours.items():
        assert value == sum((v for (s, _), v in unique.items() if floor_hour(s) == hour), Decimal(0))
    rows = running_sums(hours, base)
    assert [r.start for r in rows] == sorted(hours)
    running = base
    for row in rows:
        running += row.value
        assert row.sum == running and row.value == hours[row.start]
    assert (rows[-1].sum if rows else base) == base + total
    for before, after in itertools.pairwise(rows):
        assert before.start < after.start and after.sum - before.sum == after.value


@PROPERTY
@given(
    start_s=st.integers(min_value=0, max_value=7 * 86_400),
    length_s=st.integers(min_value=1, max_value=3 * 86_400),
    value=values_3dp,
)
def test_property_long_intervals_spread_preserving_total(start_s: int, length_s: int, value: Decimal) -> None:
    start = T0 + timedelta(seconds=start_s)
    end = start + timedelta(seconds=length_s)
    hours = hourly([Interval(start, end, value, "kWh")])
    assert sum(hours.values(), Decimal(0)) == value
    assert sorted(hours)[0] == floor_hour(start) and sorted(hours)[-1] == floor_hour(
        end - timedelta(microseconds=1)
    )
    assert len(hours) == int((ceil_hour(end) - floor_hour(start)) / HOUR)
    # proportional to time in each hour, to Decimal precision
    for hour, share in hours.items():
        inside = (min(end, hour + HOUR) - max(start, hour)).total_seconds()
        assert abs(share - value * Decimal(inside) / Decimal(length_s)) < Decimal("1e-20")


def test_running_sums_from_base() -> None:
    hours = {T0 + HOUR: Decimal("0.5"), T0: Decimal("1.25"), T0 + 3 * HOUR: Decimal("0")}
    assert running_sums(hours, Decimal("100.000")) == [
        HourRow(T0, Decimal("1.25"), Decimal("101.250")),
        HourRow(T0 + HOUR, Decimal("0.5"), Decimal("101.750")),
        HourRow(T0 + 3 * HOUR, Decimal("0"), Decimal("101.750")),
    ]


# --------------------------------------------------------------------------- import_window / chunks
def test_import_window_first_run_backfills() -> None:
    now = datetime(2025, 6, 10, 14, 37, 12, tzinfo=UTC)
    assert import_window(now, None, backfill=timedelta(days=30), restate=timedelta(days=2)) == datetime(
        2025, 5, 11, 14, tzinfo=UTC
    )
    # a local "now" gives the same UTC hour
    assert import_window(
        now.astimezone(LONDON), None, backfill=timedelta(days=30), restate=timedelta(days=2)
    ) == datetime(2025, 5, 11, 14, tzinfo=UTC)


def test_import_window_later_runs_restate() -> None:
    now = datetime(2025, 6, 10, 14, 37, tzinfo=UTC)
    restate = timedelta(days=2)
    # last imported hour recent: start a restatement window back
    last = datetime(2025, 6, 10, 11, tzinfo=UTC)
    assert import_window(now, last, backfill=timedelta(days=30), restate=restate) == datetime(
        2025, 6, 8, 14, tzinfo=UTC
    )
    # last imported hour older than the restatement window (a restart mid-backfill): continue from it
    last = datetime(2025, 5, 20, 7, tzinfo=UTC)
    assert import_window(now, last, backfill=timedelta(days=30), restate=restate) == last
    # even older than the backfill: still no gap
    last = datetime(2025, 1, 1, 0, tzinfo=UTC)
    assert import_window(now, last, backfill=timedelta(days=30), restate=restate) == last
    # a last hour given off the hour or in another zone is floored to its UTC hour
    odd = datetime(2025, 5, 20, 8, 30, tzinfo=PLUS1)
    assert import_window(now, odd, backfill=timedelta(days=30), restate=restate) == datetime(
        2025, 5, 20, 7, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("start", "end", "size", "expected"),
    [
        (T0, T0, HOUR, []),
        (T0 + HOUR, T0, HOUR, []),
        (T0, T0 + HALF, HOUR, [(T0, T0 + HALF)]),
        (T0, T0 + 2 * HOUR, HOUR, [(T0, T0 + HOUR), (T0 + HOUR, T0 + 2 * HOUR)]),
        (
            T0,
            T0 + 5 * HALF,
            HOUR,
            [(T0, T0 + HOUR), (T0 + HOUR, T0 + 2 * HOUR), (T0 + 2 * HOUR, T0 + 5 * HALF)],
        ),
    ],
)
def test_chunks(
    start: datetime, end: datetime, size: timedelta, expected: list[tuple[datetime, datetime]]
) -> None:
    assert chunks(start, end, size) == expected


@pytest.mark.parametrize("size", [timedelta(0), -HOUR])
def test_chunks_refuse_a_size_that_never_advances(size: timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        chunks(T0, T0 + HOUR, size)


@PROPERTY
@given(
    start_s=st.integers(min_value=0, max_value=10**7),
    length_s=st.integers(min_value=-1000, max_value=10**6),
    size_s=st.integers(min_value=1, max_value=10**6).map(lambda s: s if s > 100 else s * 600),
)
def test_property_chunks_cover_without_gap_or_overlap(start_s: int, length_s: int, size_s: int) -> None:
    start = T0 + timedelta(seconds=start_s)
    end = start + timedelta(seconds=length_s)
    size = timedelta(seconds=size_s)
    windows = chunks(start, end, size)
    if end <= start:
        assert windows == []
        return
    assert windows[0][0] == start and windows[-1][1] == end
    for (_, b), (c, _) in itertools.pairwise(windows):
        assert b == c  # no gap, no overlap
    assert all(a < b <= a + size for a, b in windows)
    assert all(b - a == size for a, b in windows[:-1])


# --------------------------------------------------------------------------- prices
PRICES = [
    iv(T0, T0 + HALF, "0.2455", "GBP/kWh"),
    iv(T0 + HALF, T0 + HOUR, "0.1900", "GBP/kWh"),
    # no price 01:00-02:00
    iv(T0 + 2 * HOUR, T0 + 3 * HOUR, "-0.0210", "GBP/kWh"),  # Agile pays you sometimes
]


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (T0 - timedelta(microseconds=1), None),
        (T0, "0.2455"),  # start inclusive
        (T0 + HALF - timedelta(microseconds=1), "0.2455"),
        (T0 + HALF, "0.1900"),  # end exclusive: the next one
        (T0 + HOUR, None),  # the gap
        (T0 + 90 * timedelta(minutes=1), None),
        (T0 + 2 * HOUR, "-0.0210"),
        (T0 + 3 * HOUR - timedelta(microseconds=1), "-0.0210"),
        (T0 + 3 * HOUR, None),
        ((T0 + HALF).astimezone(PLUS1), "0.1900"),  # another zone, same instant
    ],
)
def test_price_at(stamp: datetime, expected: str | None) -> None:
    price = price_at(PRICES, stamp)
    assert (price.value if price else None) == (Decimal(expected) if expected else None)


def test_price_at_empty_and_single() -> None:
    assert price_at([], T0) is None
    assert price_at(PRICES[:1], T0 + HALF) is None
    assert price_at(PRICES[:1], T0 + QUARTER) is PRICES[0]


def test_cost_of_exact_and_skips_unpriced() -> None:
    consumption = series(T0, HALF, [Decimal("1.836"), Decimal("0.146"), Decimal("0.5"), Decimal("0.7")])
    consumption.append(iv(T0 + 2 * HOUR, T0 + 2 * HOUR + HALF, "2.000"))
    # prices unsorted, one restated (the last wins), one zero-length (ignored)
    prices = [
        PRICES[2],
        iv(T0 + HALF, T0 + HOUR, "0.9999", "GBP/kWh"),
        PRICES[0],
        PRICES[1],
        iv(T0 + HOUR, T0 + HOUR, "5", "GBP/kWh"),
    ]
    costs = cost_of(consumption, prices, "GBP")
    assert [(c.start, c.end, c.value, c.unit) for c in costs] == [
        (T0, T0 + HALF, Decimal("0.4507380"), "GBP"),
        (T0 + HALF, T0 + HOUR, Decimal("0.0277400"), "GBP"),
        (T0 + 2 * HOUR, T0 + 2 * HOUR + HALF, Decimal("-0.0420000"), "GBP"),
    ]
    assert Decimal("1.836") * Decimal("0.2455") == Decimal("0.4507380")
    assert hourly(costs) == {T0: Decimal("0.4784780"), T0 + 2 * HOUR: Decimal("-0.0420000")}
    assert cost_of([], prices, "GBP") == []
    assert cost_of(consumption, [], "GBP") == []


# --------------------------------------------------------------------------- restart in the middle of a backfill
class Provider:
    """Interval data as a provider serves it: intervals starting in ``[start, end)``."""

    def __init__(self, data: list[Interval]) -> None:
        self.data = sorted(data, key=lambda i: i.start)
        self.starts = [i.start for i in self.data]
        self.calls = 0

    def fetch(self, start: datetime, end: datetime) -> list[Interval]:
        """The intervals starting in ``[start, end)``."""
        self.calls += 1
        return self.data[bisect_left(self.starts, start) : bisect_left(self.starts, end)]


def run(
    provider: Provider,
    now: datetime,
    db: dict[datetime, HourRow],
    *,
    backfill: timedelta = timedelta(days=10),
    restate: timedelta = timedelta(days=2),
    chunk: timedelta = timedelta(days=1),
    stop_after: Callable[[int], bool] = lambda _n: False,
) -> None:
    """One importer run: pure core, writing rows chunk by chunk into ``db`` (start -> row, overwrite)."""
    last_hour = max(db) if db else None
    start = import_window(now, last_hour, backfill=backfill, restate=restate)
    before = [row for hour, row in db.items() if hour < start]
    base = max(before, key=lambda r: r.start).sum if before else Decimal(0)
    for n, (a, b) in enumerate(chunks(start, floor_hour(now), chunk)):
        rows = running_sums(hourly(provider.fetch(a, b)), base)
        for row in rows:
            db[row.start] = row
        if rows:
            base = rows[-1].sum
        if stop_after(n):
            return  # the restart: Home Assistant stops mid-backfill


def _half_hourly(now: datetime, days: int, seed: int) -> list[Interval]:
    start = floor_hour(now) - timedelta(days=days)
    count = days * 48
    values = [Decimal((n * 7919 + seed * 104729) % 2000).scaleb(-3) for n in range(count)]
    return series(start, HALF, values, tz=PLUS1)


@pytest.mark.parametrize(("stop", "mid_backfill"), [(0, True), (3, True), (6, True), (8, False)])
def test_restart_mid_backfill_equals_one_run(stop: int, mid_backfill: bool) -> None:
    now = datetime(2025, 6, 10, 14, 37, tzinfo=UTC)
    provider = Provider(_half_hourly(now, days=12, seed=stop))

    whole: dict[datetime, HourRow] = {}
    run(provider, now, whole)
    assert len(whole) == 10 * 24  # backfill hours up to the last complete hour
    assert min(whole) == floor_hour(now) - timedelta(days=10)

    interrupted: dict[datetime, HourRow] = {}
    run(provider, now, interrupted, stop_after=lambda n: n == stop)
    stopped_at = max(interrupted)
    # older than the restatement window (the second run continues from it), or within it
    assert (stopped_at < floor_hour(now) - timedelta(days=2)) is mid_backfill
    if stop:  # the last chunk only partly written
        for hour in sorted(interrupted)[-3:]:
            del interrupted[hour]
    run(provider, now, interrupted)

    assert interrupted == whole  # no duplicate hour, no gap, identical values and sums
    hours = sorted(interrupted)
    assert all(b - a == HOUR for a, b in itertools.pairwise(hours))


@PROPERTY
@given(
    keep=st.integers(min_value=1, max_value=10 * 24 - 1),
    seed=st.integers(min_value=0, max_value=1000),
    chunk_hours=st.sampled_from([1, 5, 24, 36]),
)
def test_property_restart_after_any_hour(keep: int, seed: int, chunk_hours: int) -> None:
    now = datetime(2025, 10, 28, 9, 5, tzinfo=UTC)  # a backfill across the October clock change
    provider = Provider(_half_hourly(now, days=11, seed=seed))
    chunk = timedelta(hours=chunk_hours)
    whole: dict[datetime, HourRow] = {}
    run(provider, now, whole, chunk=chunk)

    # the first run got as far as `keep` hours and stopped: rows up to some hour, as the database has them
    first = dict(sorted(whole.items())[:keep])
    second = dict(first)
    last_hour = max(second)
    start = import_window(now, last_hour, backfill=timedelta(days=10), restate=timedelta(days=2))
    assert start <= last_hour + HOUR  # never a gap
    run(provider, now, second, chunk=chunk)
    assert second == whole


def test_restatement_within_window_overwrites_without_duplicates() -> None:
    now = datetime(2025, 6, 10, 14, 37, tzinfo=UTC)
    data = _half_hourly(now, days=12, seed=5)
    db: dict[datetime, HourRow] = {}
    run(Provider(data), now, db)

    # a day later the provider restates yesterday's figures and has a day more
    later = now + timedelta(days=1)
    restated = [
        Interval(i.start, i.end, i.value + Decimal("0.010"), i.unit)
        if i.start >= floor_hour(later) - timedelta(days=2)
        else i
        for i in data
    ] + series(floor_hour(now), HALF, [Decimal("0.321")] * 48)
    run(Provider(restated), later, db)

    # equal to one run over the restated data from the first run's start
    fresh: dict[datetime, HourRow] = {}
    run(Provider(restated), later, fresh, backfill=later - min(db))
    assert min(fresh) == min(db)
    assert db == fresh
    hours = sorted(db)
    assert all(b - a == HOUR for a, b in itertools.pairwise(hours))
