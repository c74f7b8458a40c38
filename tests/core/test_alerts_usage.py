"""Abnormal gas and electricity use, on simulated household series (tests/core/usage_series.py).

Five weeks from Monday 6 January 2025 (Europe/Amsterdam), seeded: weeks 1-3
learn, the rules speak from week 4 on.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import median
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core.alerts.profile import DayRecord, WeekdayProfile, quantile
from custom_components.smartmeter.core.alerts.usage import (
    AlertKind,
    ElectricityMonitor,
    GasMonitor,
    UsageAlert,
    split_interval,
)
from tests.core.usage_series import Extra, electricity_readings, gas_readings

TZ = ZoneInfo("Europe/Amsterdam")
START = datetime(2025, 1, 6, tzinfo=TZ)  # a Monday
DAYS = 35
HOLIDAY = frozenset(range(21, 28))  # week 4
SEEDS = (1, 2, 3)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _day(index: int) -> date:
    return (START + timedelta(days=index)).date()


def _run_gas(
    readings: Iterable[tuple[datetime, Decimal]], monitor: GasMonitor | None = None, at_hour: int = 20
) -> tuple[GasMonitor, list[UsageAlert], dict[date, Decimal | None]]:
    monitor = monitor or GasMonitor(tz=TZ)
    alerts: list[UsageAlert] = []
    percent: dict[date, Decimal | None] = {}
    for moment, total in readings:
        alerts += monitor.add_reading(moment, total)
        if moment.hour == at_hour and moment.minute == 0:
            percent[moment.date()] = monitor.today_vs_typical()
    return monitor, alerts, percent


def _run_electricity(
    readings: Iterable[tuple[datetime, Decimal, Decimal]],
    monitor: ElectricityMonitor | None = None,
    *,
    power: bool = True,
) -> tuple[ElectricityMonitor, list[UsageAlert], dict[date, Decimal | None], dict[date, Decimal | None]]:
    monitor = monitor or ElectricityMonitor(tz=TZ)
    alerts: list[UsageAlert] = []
    percent: dict[date, Decimal | None] = {}
    base: dict[date, Decimal | None] = {}
    for moment, total, kw in readings:
        alerts += monitor.add_reading(moment, total)
        if power:
            monitor.add_power(moment, kw)
        if moment.hour == 20 and moment.minute == 0:
            percent[moment.date()] = monitor.today_vs_typical()
        if moment.hour == 23 and moment.minute == 59:
            base[moment.date()] = monitor.base_load()
    return monitor, alerts, percent, base


def _gas(seed: int, holidays: Collection[int] = (), **kwargs: object) -> list[tuple[datetime, Decimal]]:
    return gas_readings(START, DAYS, seed=seed, holidays=holidays, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- gas


@pytest.mark.parametrize("seed", SEEDS)
def test_gas_normal_weeks_raise_nothing(seed: int) -> None:
    monitor, alerts, percent = _run_gas(_gas(seed))
    assert alerts == []
    # 35 days: every weekday learned 5 times, but the last Sunday, still being booked
    assert [monitor.profile.learned(wd) for wd in range(7)] == [5, 5, 5, 5, 5, 5, 4]
    # nights are learned as without use, the morning and evening as with
    assert monitor.normally_none(0, 3)
    assert not monitor.normally_none(0, 7)
    assert not monitor.normally_none(0, 19)
    # today vs typical: unknown for the first 2 weeks, then around 100 % (the weather moves it)
    later = [value for day, value in percent.items() if day >= _day(14)]
    assert all(value is not None and Decimal(50) <= value <= Decimal(180) for value in later), later
    assert Decimal(85) <= median(v for v in later if v is not None) <= Decimal(120)
    assert all(percent[_day(i)] is None for i in range(14))


@pytest.mark.parametrize("step", [5, 60])
def test_gas_at_3am_after_quiet_weeks_fires_once(step: int) -> None:
    """0.3 m³ between 03:10 and 03:40: during learning (week 1) nothing, in week 4 one alert for 03:00."""
    in_learning = _day(1)  # Tuesday of week 1
    after = _day(23)  # Wednesday of week 4
    extras = [
        Extra(
            datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=3, minutes=10),
            datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=3, minutes=40),
            0.3,
        )
        for day in (in_learning, after)
    ]
    _, alerts, _ = _run_gas(_gas(1, extras=extras, step_minutes=step))
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert.kind is AlertKind.UNUSUAL_HOUR
    assert alert.period_start == datetime(2025, 1, 29, 3, 0, tzinfo=TZ)
    # the hour's use when it fired: at the first reading past 0.02 m³, or the whole hour at once
    assert Decimal("0.02") <= alert.value <= Decimal("0.31")
    if step == 60:
        assert alert.value >= Decimal("0.29")
    assert alert.reference == Decimal("0.005")
    assert alert.unit == "m³"
    # 5-minute readings tell at once; hourly ones (DSMR 4) when the hour's reading arrives
    assert alert.detected <= datetime(2025, 1, 29, 4, 0, tzinfo=TZ)


def test_gas_three_times_day_fires_once() -> None:
    _, alerts, _ = _run_gas(_gas(2, scale={30: 3.0}))
    assert [(a.kind, a.period_start.date()) for a in alerts] == [(AlertKind.HIGH_DAY, _day(30))]
    alert = alerts[0]
    assert alert.value > alert.reference * Decimal("2.5")
    assert alert.detected.date() == _day(30)  # the same day, not at midnight


def test_gas_high_day_not_during_learning() -> None:
    _, alerts, _ = _run_gas(_gas(2, scale={9: 3.0}))
    assert alerts == []


@pytest.mark.parametrize("seed", SEEDS)
def test_gas_holiday_fires_nothing_and_reads_low(seed: int) -> None:
    _, alerts, percent = _run_gas(_gas(seed, HOLIDAY))
    assert alerts == []
    for index in HOLIDAY:
        assert percent[_day(index)] == Decimal("0.0")
    # the week after the holiday is normal again: the median shrugs off one empty week
    after = [percent[_day(i)] for i in range(28, 35)]
    assert all(value is not None and value >= Decimal(70) for value in after), after


# ---------------------------------------------------------------- electricity


@pytest.mark.parametrize("seed", SEEDS)
def test_electricity_normal_weeks_base_load_and_percent(seed: int) -> None:
    readings = electricity_readings(START, DAYS, seed=seed, base_w=120)
    monitor, alerts, percent, base = _run_electricity(readings)
    assert alerts == []
    # base load: the simulated always-on 120 W (±3 W noise) within 5 W, from power readings
    assert monitor.base_load_detail()[0] == "power"
    for day, value in base.items():
        assert value is not None, day
        assert Decimal("0.115") <= value <= Decimal("0.125"), (day, value)
    later = [value for day, value in percent.items() if day >= _day(14)]
    assert all(value is not None and Decimal(70) <= value <= Decimal(140) for value in later), later
    assert Decimal(88) <= median(v for v in later if v is not None) <= Decimal(112)


@pytest.mark.parametrize("base_w", [80, 200])
def test_electricity_base_load_from_energy_only(base_w: int) -> None:
    """Without power readings: 15-minute energy slots of a 1 Wh register, within 8 W."""
    readings = electricity_readings(START, 3, seed=4, base_w=base_w)
    monitor, _, _, base = _run_electricity(readings, power=False)
    assert monitor.base_load_detail()[0] == "energy"
    for value in base.values():
        assert value is not None
        assert abs(value - Decimal(base_w) / 1000) <= Decimal("0.008"), value


def test_electricity_base_load_needs_six_hours() -> None:
    readings = electricity_readings(START, 1, seed=4)
    monitor = ElectricityMonitor(tz=TZ)
    for moment, total, kw in readings[: 5 * 60]:
        monitor.add_reading(moment, total)
        monitor.add_power(moment, kw)
    assert monitor.base_load() is None
    for moment, total, kw in readings[5 * 60 : 7 * 60]:
        monitor.add_reading(moment, total)
        monitor.add_power(moment, kw)
    assert monitor.base_load() is not None


def test_electricity_export_windows_are_left_out() -> None:
    """Solar export makes the import 0: those windows say nothing about the always-on load."""
    monitor = ElectricityMonitor(tz=TZ)
    moment = START
    for minute in range(24 * 60):
        exporting = 10 * 60 <= minute < 16 * 60
        monitor.add_power(
            moment, Decimal(0) if exporting else Decimal("0.150"), Decimal("1.2") if exporting else None
        )
        moment += timedelta(minutes=1)
    assert monitor.base_load() == Decimal("0.150")


@pytest.mark.parametrize("seed", SEEDS)
def test_electricity_holiday_fires_nothing_and_reads_low(seed: int) -> None:
    readings = electricity_readings(START, DAYS, seed=seed, holidays=HOLIDAY)
    _, alerts, percent, base = _run_electricity(readings)
    assert alerts == []
    for index in HOLIDAY:
        value = percent[_day(index)]
        assert value is not None
        assert value < Decimal(75), (index, value)
        # the always-on load is still there
        holiday_base = base[_day(index)]
        assert holiday_base is not None
        assert Decimal("0.115") <= holiday_base <= Decimal("0.125")


def test_electricity_three_times_day_fires() -> None:
    """A 1.5 kW heater left on from 07:00 to 23:00 (+24 kWh on a ~5 kWh day)."""
    day = datetime.combine(_day(29), datetime.min.time(), TZ)
    extras = [Extra(day + timedelta(hours=7), day + timedelta(hours=23), 1500)]
    _, alerts, percent, _ = _run_electricity(electricity_readings(START, DAYS, seed=1, extras=extras))
    assert [(a.kind, a.period_start.date()) for a in alerts] == [(AlertKind.HIGH_DAY, _day(29))]
    assert alerts[0].unit == "kWh"
    assert percent[_day(29)] is not None
    assert percent[_day(29)] > Decimal(250)  # type: ignore[operator]


# ---------------------------------------------------------------- booking, persistence


def test_split_interval_is_exact() -> None:
    start = 100 * 900_000_000 + 123  # µs, just after a slot boundary
    end = start + 3 * 900_000_000 + 7
    pieces = list(split_interval(start, end, Decimal("1.001")))
    assert [slot for slot, *_ in pieces] == [100, 101, 102, 103]
    assert sum(share for _, share, _, _ in pieces) == Decimal("1.001")
    assert sum(covered for _, _, covered, _ in pieces) == end - start


def test_today_use_follows_the_meter_across_midnight() -> None:
    readings = gas_readings(START, 2, seed=5, step_minutes=7)
    monitor = GasMonitor(tz=TZ)
    for moment, total in readings:
        if moment < START + timedelta(days=1, hours=15):
            monitor.add_reading(moment, total)
            last = moment, total
    first_today = next(total for moment, total in readings if moment >= START + timedelta(days=1))
    assert monitor.today == _day(1)
    # readings every 7 minutes straddle midnight: the straddling one is split by time
    assert abs(monitor.today_use - (last[1] - first_today)) < Decimal("0.02")
    assert monitor.profile.learned(0) == 1  # Monday, complete
    assert monitor.profile.learned(1) == 0  # Tuesday: still being booked


def test_reset_and_gap_are_not_booked() -> None:
    monitor = GasMonitor(tz=TZ)
    monitor.add_reading(START, Decimal(100))
    monitor.add_reading(START + timedelta(hours=1), Decimal("100.5"))
    monitor.add_reading(START + timedelta(hours=2), Decimal(3))  # a new meter
    monitor.add_reading(START + timedelta(hours=10), Decimal(8))  # 8 h gap: not spread
    monitor.add_reading(START + timedelta(hours=10, minutes=5), Decimal("8.25"))
    monitor.add_reading(START + timedelta(hours=10, minutes=5), Decimal(9))  # not newer: ignored
    assert monitor.today_use == Decimal("0.75")
    assert monitor.today_hours[0] == Decimal("0.5")
    assert monitor.today_hours[10] == Decimal("0.25")
    with pytest.raises(ValueError, match="timezone"):
        monitor.add_reading(datetime(2025, 1, 7), Decimal(10))


def test_incomplete_days_are_not_learned() -> None:
    readings = gas_readings(START + timedelta(hours=12), 3, seed=5)
    monitor, _, _ = _run_gas(readings)
    # started at noon on day 0: day 0 is not learned, days 1 and 2 are (day 3 is partial, current)
    assert monitor.profile.learned(_day(0).weekday()) == 0
    assert monitor.profile.learned(_day(1).weekday()) == 1
    assert monitor.profile.learned(_day(2).weekday()) == 1


@pytest.mark.parametrize("cut", [24 * 17 * 12 + 7, 24 * 26 * 12 + 100])
def test_gas_persistence_round_trip_mid_stream(cut: int) -> None:
    """Stop, store as JSON, restore, go on: the same alerts and figures as an uninterrupted run."""
    day = datetime.combine(_day(23), datetime.min.time(), TZ)
    readings = _gas(
        1,
        extras=[Extra(day + timedelta(hours=3, minutes=10), day + timedelta(hours=3, minutes=40), 0.3)],
        scale={30: 3.0},
    )
    whole, alerts_whole, percent_whole = _run_gas(readings)
    first, alerts_a, percent_a = _run_gas(readings[:cut])
    stored = json.loads(json.dumps(first.as_dict()))
    restored = GasMonitor.from_dict(stored, tz=TZ)
    assert restored.as_dict() == first.as_dict()
    second, alerts_b, percent_b = _run_gas(readings[cut:], restored)
    assert alerts_a + alerts_b == alerts_whole
    assert [a.kind for a in alerts_whole] == [AlertKind.UNUSUAL_HOUR, AlertKind.HIGH_DAY]
    assert percent_a | percent_b == percent_whole
    assert second.as_dict() == whole.as_dict()


def test_electricity_persistence_round_trip() -> None:
    readings = electricity_readings(START, 16, seed=3)
    whole, _, _, _ = _run_electricity(readings)
    cut = 15 * 24 * 60 + 3 * 60 + 2
    first, _, _, _ = _run_electricity(readings[:cut])
    restored = ElectricityMonitor.from_dict(json.loads(json.dumps(first.as_dict())), tz=TZ)
    second, _, _, _ = _run_electricity(readings[cut:], restored)
    assert second.as_dict() == whole.as_dict()
    assert second.base_load() == whole.base_load()
    assert second.today_vs_typical() == whole.today_vs_typical()


def test_monitor_from_dict_rejects_other_data() -> None:
    with pytest.raises(ValueError, match="format"):
        GasMonitor.from_dict({"version": 2}, tz=TZ)
    with pytest.raises(ValueError, match="stored monitor"):
        ElectricityMonitor.from_dict({"version": 1, "profile": {}}, tz=TZ)


# ---------------------------------------------------------------- the profile


def test_profile_window_quantiles_and_round_trip() -> None:
    profile = WeekdayProfile(weeks=3)
    for week in range(5):
        hours = [Decimal(0)] * 24
        hours[7] = Decimal(week)
        hours[18] = Decimal("1.5")
        profile.add_day(DayRecord(_day(7 * week), tuple(hours)))
    assert profile.learned(0) == 3  # bounded: only the last 3 Mondays
    assert profile.hour_samples(0, 7) == (Decimal(2), Decimal(3), Decimal(4))
    assert profile.hour_mean(0, 7) == Decimal(3)
    assert profile.hour_quantile(0, 7, Decimal("0.25")) == Decimal("2.5")
    assert profile.quiet_count(0, 3, Decimal(0)) == 3
    assert profile.quiet_count(0, 7, Decimal(2), last=2) == 0
    assert profile.daily_totals(0) == (Decimal("3.5"), Decimal("4.5"), Decimal("5.5"))
    assert profile.typical_day(0) == Decimal("4.5")
    assert profile.typical_until(0, 18, Decimal("0.5")) == Decimal("3.75")
    assert profile.typical_until(0, 24) == Decimal("4.5")
    assert profile.typical_day(1) is None
    # an old day does not push out newer ones; a repeated date replaces
    profile.add_day(DayRecord(_day(0), tuple([Decimal(9)] * 24)))
    assert profile.hour_samples(0, 7) == (Decimal(2), Decimal(3), Decimal(4))
    profile.add_day(DayRecord(_day(28), tuple([Decimal(1)] * 24)))
    assert profile.hour_samples(0, 7) == (Decimal(2), Decimal(3), Decimal(1))
    restored = WeekdayProfile.from_dict(json.loads(json.dumps(profile.as_dict())))
    assert restored.as_dict() == profile.as_dict()
    assert quantile([], Decimal("0.5")) is None
    with pytest.raises(ValueError, match="24"):
        DayRecord(_day(0), (Decimal(0),))
    with pytest.raises(ValueError, match="stored profile"):
        WeekdayProfile.from_dict({"version": 1, "weeks": 2, "days": [{"date": "x"}]})


def test_dst_days_book_every_hour() -> None:
    """Spring forward (23 h) and fall back (25 h): the days are learned, their totals are the meter's."""
    for first in (datetime(2025, 3, 29, tzinfo=TZ), datetime(2025, 10, 25, tzinfo=TZ)):
        readings = gas_readings(first, 3, seed=6)
        monitor, _, _ = _run_gas(readings)
        change = first.date() + timedelta(days=1)
        (record,) = monitor.profile.days(change.weekday())
        assert record.day == change
        start = next(t for m, t in readings if m == datetime.combine(change, datetime.min.time(), TZ))
        end = next(
            t
            for m, t in readings
            if m == datetime.combine(change + timedelta(days=1), datetime.min.time(), TZ)
        )
        assert record.total == end - start
