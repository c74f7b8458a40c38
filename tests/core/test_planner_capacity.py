"""The capacity-tariff tracker: quarter-hours, monthly peaks, the 12-month average, the meter's registers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.planner.capacity import (
    CapacityTracker,
    QuarterState,
    available_current,
    monthly_peaks_from_history,
)
from custom_components.smartmeter.core.planner.models import CapacityTariff
from tests.conftest import corpus_dir

BRUSSELS = ZoneInfo("Europe/Brussels")
TARIFF = CapacityTariff(price_per_kw_year=Decimal("53.0"))
D = Decimal
Q = timedelta(minutes=15)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BRUSSELS, fold=fold)  # type: ignore[misc]


# ---------------------------------------------------------------- corpus


def _expected_time(text: str) -> datetime:
    """expected.json writes times as ISO or as a Python repr with ZoneInfo("Europe/Brussels")."""
    match = re.fullmatch(r"datetime\.datetime\(([\d, ]+), tzinfo=ZoneInfo\(\"([^\"]+)\"\)\)", text)
    if match:
        parts = [int(p) for p in match.group(1).split(",")]
        return datetime(*parts, tzinfo=ZoneInfo(match.group(2)))  # type: ignore[misc]
    return datetime.fromisoformat(text)


def _history_expected(assertions: dict[str, object]) -> list[tuple[datetime | None, Decimal]]:
    """(occurred, kW) for every 98.1.0 entry the source asserts."""
    out: list[tuple[datetime | None, Decimal]] = []
    for key, item in assertions.items():
        if not key.startswith("BELGIUM_MAXIMUM_DEMAND_13_MONTHS"):
            continue
        for entry in item if isinstance(item, list) else [item]:
            occurred = entry["occurred"]
            out.append((None if occurred is None else _expected_time(occurred), D(str(entry["value"]))))
    return out


BELGIAN = ["be_fluvius_emucs171_alt", "be_fluvius_emucs171_sagemcom_t211"]


@pytest.mark.parametrize("name", BELGIAN)
@pytest.mark.parametrize("via_meter", [True, False])
def test_belgian_telegram_registers(name: str, via_meter: bool) -> None:
    raw = (corpus_dir() / "dsmr" / f"{name}.txt").read_bytes()
    expected = json.loads((corpus_dir() / "dsmr" / f"{name}.expected.json").read_text())["source_assertions"]
    frame = decode_telegram(raw, tz=BRUSSELS)
    meter = frame.meters[0]
    assert meter.timestamp is not None
    regs = {r.key: r for r in meter.registers}
    tracker = CapacityTracker(TARIFF)
    if via_meter:
        tracker.update_from_meter(meter)
    else:
        tracker.update_meter_registers(
            meter.timestamp,
            regs["current_average_demand"].value,  # type: ignore[arg-type]
            regs["maximum_demand_month"].value,  # type: ignore[arg-type]
            regs["maximum_demand_month"].timestamp,
            monthly_peaks_from_history(regs["maximum_demand_history"].history),
        )
    state = tracker.state(meter.timestamp)

    # The month's peak and its stamp, as the source asserts them.
    month = expected["BELGIUM_MAXIMUM_DEMAND_MONTH"]
    assert state.month_peak_kw == D(str(month["value"]))
    assert state.month_peak_at == _expected_time(month["datetime"])
    assert state.month_peak_at is not None
    assert state.month_peak_at.tzinfo is UTC

    # 1.4.0 is the quarter's energy so far over the whole quarter.
    demand = D(str(expected["BELGIUM_CURRENT_AVERAGE_DEMAND"]["value"]))
    assert state.accrued_kw == demand
    assert state.energy_kwh == demand / 4

    # Earlier months from 98.1.0: each peak in the month it occurred; placeholders left out.
    history = _history_expected(expected)
    stated = [(at, kw) for at, kw in history if at is not None]
    peaks = {
        (m.astimezone(BRUSSELS).year, m.astimezone(BRUSSELS).month): (kw, at)
        for m, kw, at in tracker.monthly_peaks()
    }
    for at, kw in stated:
        key = (at.astimezone(BRUSSELS).year, at.astimezone(BRUSSELS).month)
        assert peaks[key] == (kw, at)
    placeholders = [kw for at, kw in history if at is None]
    assert len(peaks) == len(stated) + 1  # + the current month
    assert all(kw == 0 for kw in placeholders)

    # The rolling average: this month and the earlier ones, each at least 2.5 kW.
    floored = [max(D(str(month["value"])), D("2.5"))] + [max(kw, D("2.5")) for _at, kw in stated]
    assert state.months_in_average == len(floored)
    assert state.rolling_average_kw == sum(floored) / len(floored)


def test_belgian_alt_values_by_hand() -> None:
    """The 2023-11-02 telegram: Aug 1.862 (floored), Sep 4.229, Oct 4.927, Nov 3.064 so far; July has no peak."""
    raw = (corpus_dir() / "dsmr" / "be_fluvius_emucs171_alt.txt").read_bytes()
    meter = decode_telegram(raw, tz=BRUSSELS).meters[0]
    tracker = CapacityTracker(TARIFF)
    tracker.update_from_meter(meter)
    state = tracker.state(utc(2023, 11, 2, 11, 15, 48))
    assert state.rolling_average_kw == (D("2.5") + D("4.229") + D("4.927") + D("3.064")) / 4 == D("3.68")
    assert state.start == utc(2023, 11, 2, 11, 15)
    assert state.energy_kwh == D("0.013")
    # 0.013 kWh over the 48 s the quarter has run.
    assert state.demand_so_far_kw == D("0.975")
    # The projection: 0.013 kWh + 0.338 kW for the 852 s left, over the quarter.
    assert state.projected_kw == (D("0.013") * 3600 + D("0.338") * 852) / 900
    assert not state.will_exceed  # 3.064 kW is this month's bar
    assert state.target_kw == D("3.064")


def test_belgian_telegram_without_demand_registers() -> None:
    """A Fluvius telegram without 1.4.0/1.6.0: computed from the energy registers instead."""
    raw = (corpus_dir() / "dsmr" / "be_fluvius_invalid_gas_timestamp.txt").read_bytes()
    meter = decode_telegram(raw, tz=BRUSSELS).meters[0]
    tracker = CapacityTracker(TARIFF)
    tracker.update_from_meter(meter)
    assert meter.timestamp is not None
    state = tracker.state(meter.timestamp)
    assert state.month_peak_kw == 0
    assert state.month_peak_at is None
    assert state.rolling_average_kw == D("2.5")
    # 1.7.0 is 1.234 kW and nothing is known yet: the whole quarter at that power.
    assert state.projected_kw == D("1.234")
    # A second reading a minute later: 123.456 + 234.567 kWh, then 0.02 kWh more.
    later = meter.timestamp + timedelta(minutes=1)
    tracker.update_energy(later, D("123.456") + D("234.567") + D("0.02"), D("345.678") + D("456.789"))
    state = tracker.state(later)
    assert state.energy_kwh == D("0.02")
    assert state.demand_so_far_kw == D("1.2")


# ---------------------------------------------------------------- a day of 1-second readings


def _power_w(second: int) -> int:
    """A load that changes every few minutes, with spikes, in whole watts."""
    minute = second // 60
    base = 300 + (minute * 37) % 900
    if 600 <= minute % 180 < 620:
        base += 7000  # an oven
    if second % 97 < 5:
        base += 2500  # a kettle burst
    return base


def test_one_second_day_exact_quarters() -> None:
    tracker = CapacityTracker(TARIFF)
    start = local(2024, 6, 12)
    start_utc = start.astimezone(UTC)
    joules = 0
    registers = {}
    for second in range(24 * 3600 + 1):
        when = start_utc + timedelta(seconds=second)
        kwh = D(joules // 3600) / 1000  # the register counts whole Wh, as meters do
        registers[second] = kwh
        tracker.update_energy(when, kwh, D(0))
        joules += _power_w(second)
    # Closing the last quarter: a reading past its end.
    tracker.update_energy(start_utc + timedelta(days=1, seconds=1), D(joules // 3600) / 1000)
    closed = tracker.closed_quarters()
    assert len(closed) == 96
    for index, (qstart, kw) in enumerate(closed):
        assert qstart == start_utc + index * Q
        delta = registers[(index + 1) * 900] - registers[index * 900]
        assert kw == delta * 4
    state = tracker.state(start_utc + timedelta(days=1, seconds=1))
    peak = max(closed, key=lambda item: item[1])
    # The last quarter of the day counts for June too; the state is of the new day's quarter.
    assert state.month_peak_kw == peak[1]
    assert state.month_peak_at == peak[0]


# ---------------------------------------------------------------- gaps, resets, order


def test_gap_straddling_a_boundary_is_shared_in_proportion() -> None:
    tracker = CapacityTracker(TARIFF)
    tracker.update_energy(utc(2024, 1, 10, 12, 0), D("100"))
    tracker.update_energy(utc(2024, 1, 10, 12, 10), D("100.5"))  # 3 kW for 10 min
    tracker.update_energy(utc(2024, 1, 10, 12, 20), D("101.5"))  # 1 kWh over 12:10-12:20
    closed = tracker.closed_quarters()
    # 12:00 quarter: 0.5 + half of 1.0 = 1.0 kWh -> 4 kW.
    assert closed == [(utc(2024, 1, 10, 12, 0), D("4"))]
    state = tracker.state(utc(2024, 1, 10, 12, 20))
    assert state.energy_kwh == D("0.5")
    assert state.demand_so_far_kw == D("6")  # 0.5 kWh over 5 min
    assert state.month_peak_kw == D("4")


def test_long_gap_closes_with_what_is_known() -> None:
    tracker = CapacityTracker(TARIFF)
    tracker.update_energy(utc(2024, 1, 10, 12, 0), D("100"))
    tracker.update_energy(utc(2024, 1, 10, 12, 5), D("100.25"))  # 3 kW for 5 min
    tracker.update_energy(utc(2024, 1, 10, 12, 40), D("103"))  # 35 min gap: not shared out
    tracker.update_energy(utc(2024, 1, 10, 12, 42), D("103.1"))
    closed = tracker.closed_quarters()
    # 12:00 closes with its 0.25 kWh; 12:15 is missing.
    assert closed == [(utc(2024, 1, 10, 12, 0), D("1.00"))]
    state = tracker.state(utc(2024, 1, 10, 12, 42))
    assert state.start == utc(2024, 1, 10, 12, 30)
    assert state.energy_kwh == D("0.1")
    assert state.demand_so_far_kw == D("3")  # known since 12:40 only
    # The 10 unknown minutes before 12:40 and the 3 left are filled at the average (no power known).
    assert state.projected_kw == (D("0.1") * 3600 + D(3) * (600 + 180)) / 900


def test_quarter_missing_inside_a_gap_with_proportional_share() -> None:
    """A gap up to max_gap that covers a whole quarter shares energy into it too."""
    tracker = CapacityTracker(TARIFF, max_gap=timedelta(minutes=30))
    tracker.update_energy(utc(2024, 1, 10, 12, 10), D("0"))
    tracker.update_energy(utc(2024, 1, 10, 12, 35), D("2.5"))  # 25 min: 0.5 | 1.5 | 0.5
    tracker.update_energy(utc(2024, 1, 10, 12, 45), D("3"))
    tracker.update_energy(utc(2024, 1, 10, 12, 46), D("3"))
    assert tracker.closed_quarters() == [
        (utc(2024, 1, 10, 12, 0), D("2.0")),
        (utc(2024, 1, 10, 12, 15), D("6.0")),
        (utc(2024, 1, 10, 12, 30), D("4.0")),  # 0.5 + 0.5 kWh
    ]


def test_register_reset_and_out_of_order() -> None:
    tracker = CapacityTracker(TARIFF)
    tracker.update_energy(utc(2024, 1, 10, 12, 0), D("500"))
    tracker.update_energy(utc(2024, 1, 10, 12, 3), D("500.2"))
    tracker.update_energy(utc(2024, 1, 10, 12, 2), D("900"))  # out of order: ignored
    tracker.update_energy(utc(2024, 1, 10, 12, 3), D("900"))  # repeat: ignored
    tracker.update_energy(utc(2024, 1, 10, 12, 4), D("0.1"))  # meter swapped: decrease ignored
    tracker.update_energy(utc(2024, 1, 10, 12, 6), D("0.2"))
    state = tracker.state(utc(2024, 1, 10, 12, 6))
    assert state.energy_kwh == D("0.3")
    tracker.update_energy(utc(2024, 1, 10, 12, 15), D("0.5"))
    tracker.update_energy(utc(2024, 1, 10, 12, 16), D("0.6"))
    # The quarter had a hole (12:03-12:04): it closes with what is known, 0.6 kWh.
    assert tracker.closed_quarters() == [(utc(2024, 1, 10, 12, 0), D("2.4"))]


def test_naive_datetime_is_refused() -> None:
    tracker = CapacityTracker(TARIFF)
    with pytest.raises(ValueError, match="naive"):
        tracker.update_energy(datetime(2024, 1, 1), D(1))
    with pytest.raises(ValueError, match="naive"):
        tracker.state(datetime(2024, 1, 1))


# ---------------------------------------------------------------- months, DST


def _minute_readings(tracker: CapacityTracker, first: datetime, last: datetime, kw: Decimal) -> None:
    """Readings every minute at constant ``kw`` from ``first`` to ``last`` (UTC)."""
    energy = D(0)
    when = first
    while when <= last:
        tracker.update_energy(when, energy)
        energy += kw / 60
        when += timedelta(minutes=1)


@pytest.mark.parametrize(
    ("day", "quarters"),
    [((2024, 10, 27), 100), ((2024, 3, 31), 92), ((2024, 6, 1), 96)],
)
def test_dst_days_have_fixed_quarters(day: tuple[int, int, int], quarters: int) -> None:
    tracker = CapacityTracker(TARIFF)
    first = local(*day).astimezone(UTC)
    next_day = (local(*day) + timedelta(days=1)).replace(hour=0)
    last = next_day.astimezone(UTC) + timedelta(minutes=1)
    _minute_readings(tracker, first, last, D("1.2"))
    day_quarters = [(s, kw) for s, kw in tracker.closed_quarters() if s < next_day]
    assert len(day_quarters) == quarters
    assert all(b[0] - a[0] == Q for a, b in pairwise(day_quarters))
    assert {kw for _s, kw in day_quarters} == {D("1.2")}


def test_month_rollover_is_local() -> None:
    """The 23:45 quarter of 31 October (local) is October's; 00:00 on 1 November (23:00 UTC) is November's."""
    tracker = CapacityTracker(TARIFF)
    base = utc(2024, 10, 31, 22, 30)  # 23:30 local (CET)
    tracker.update_energy(base, D("0"))
    tracker.update_energy(base + Q, D("0.5"))  # 23:30-23:45: 2 kW
    tracker.update_energy(base + 2 * Q, D("1.5"))  # 23:45-00:00: 4 kW, still October
    tracker.update_energy(base + 3 * Q, D("1.75"))  # 00:00-00:15 local on 1 Nov: 1 kW
    tracker.update_energy(base + 3 * Q + timedelta(seconds=1), D("1.75"))
    peaks = tracker.monthly_peaks()
    assert peaks == [
        (utc(2024, 9, 30, 22, 0), D("4.00"), utc(2024, 10, 31, 22, 45)),
        (utc(2024, 10, 31, 23, 0), D("1.00"), utc(2024, 10, 31, 23, 0)),
    ]
    state = tracker.state(base + 3 * Q + timedelta(seconds=1))
    assert state.month_peak_kw == D("1.00")
    # November (1 -> 2.5) and October (4.00).
    assert state.rolling_average_kw == (D("2.5") + D("4.00")) / 2
    assert state.months_in_average == 2


def test_view_closes_the_quarter_without_a_new_reading() -> None:
    tracker = CapacityTracker(TARIFF)
    tracker.update_energy(utc(2024, 5, 1, 8, 0), D("0"))
    tracker.update_energy(utc(2024, 5, 1, 8, 15), D("1.5"))  # 6 kW quarter, not closed yet
    assert tracker.closed_quarters() == []
    state = tracker.state(utc(2024, 5, 1, 8, 20))
    assert state.month_peak_kw == D("6.0")
    assert state.month_peak_at == utc(2024, 5, 1, 8, 0)
    assert state.energy_kwh == 0
    assert tracker.closed_quarters() == []  # a view: nothing changed


def test_rolling_average_window() -> None:
    tracker = CapacityTracker(TARIFF)
    now = utc(2025, 3, 10, 12, 0)
    # 14 earlier months of history, Jan 2024 .. Feb 2025; the window takes Apr 2024 .. Feb 2025 + March.
    history = [(local(2024 + (m - 1) // 12, (m - 1) % 12 + 1, 15, 18), D(m)) for m in range(1, 15)]
    tracker.update_meter_registers(now, D("0"), D("1.0"), local(2025, 3, 2, 9), history)
    state = tracker.state(now)
    window = [D("2.5")] + [D(m) for m in range(4, 15)]
    assert state.months_in_average == 12
    assert state.rolling_average_kw == sum(window) / 12
    # A history entry for the running month is not history: 1.6.0 stays this month's peak.
    tracker.update_meter_registers(now, None, None, None, [(local(2025, 3, 5, 8), D("9"))])
    assert tracker.state(now).month_peak_kw == D("1.0")
    # A new meter starts with fewer months: the average runs over the months known.
    fresh = CapacityTracker(TARIFF)
    fresh.update_meter_registers(
        now, None, D("3.5"), local(2025, 3, 2, 9), [(local(2025, 2, 3, 8), D("5.5"))]
    )
    assert fresh.state(now).rolling_average_kw == D("4.5")


def test_meter_peak_takes_precedence_and_stale_stamp_is_ignored() -> None:
    tracker = CapacityTracker(TARIFF)
    tracker.update_energy(utc(2024, 5, 1, 8, 0), D("0"))
    tracker.update_energy(utc(2024, 5, 1, 8, 15), D("1.5"))
    tracker.update_energy(utc(2024, 5, 1, 8, 16), D("1.6"))
    assert tracker.state(utc(2024, 5, 1, 8, 16)).month_peak_kw == D("6.0")
    # The meter says 5.9 kW (its own quarter): it wins.
    tracker.update_meter_registers(utc(2024, 5, 1, 8, 16), None, D("5.9"), utc(2024, 5, 1, 8, 0))
    assert tracker.state(utc(2024, 5, 1, 8, 16)).month_peak_kw == D("5.9")
    # A quarter that closes after the meter spoke, and is higher, counts until the meter speaks again.
    tracker.update_energy(utc(2024, 5, 1, 8, 30), D("3.5"))  # 8:15-8:30: 0.1 + 1.9 kWh, 8 kW
    tracker.update_energy(utc(2024, 5, 1, 8, 31), D("3.5"))
    assert tracker.state(utc(2024, 5, 1, 8, 31)).month_peak_kw == D("8.0")
    tracker.update_meter_registers(utc(2024, 5, 1, 8, 31), None, D("7.98"), utc(2024, 5, 1, 8, 15))
    state = tracker.state(utc(2024, 5, 1, 8, 31))
    assert (state.month_peak_kw, state.month_peak_at) == (D("7.98"), utc(2024, 5, 1, 8, 15))
    # Just after the month turns, 1.6.0 still stamped in May: not June's peak.
    june = utc(2024, 5, 31, 22, 0, 5)
    tracker.update_meter_registers(june, None, D("7.98"), utc(2024, 5, 1, 8, 15))
    state = tracker.state(june)
    assert state.month_peak_kw == 0
    assert state.rolling_average_kw == (D("2.5") + D("7.98")) / 2


def test_meter_demand_on_a_boundary() -> None:
    tracker = CapacityTracker(TARIFF)
    tracker.update_meter_registers(utc(2024, 5, 1, 8, 14, 50), D("3.9"), None, None)
    # At 8:15:00 exactly, a larger value is still the ending quarter's.
    tracker.update_meter_registers(utc(2024, 5, 1, 8, 15), D("4.0"), None, None)
    # A smaller one at the next boundary is the new quarter's first value.
    tracker.update_meter_registers(utc(2024, 5, 1, 8, 15, 10), D("0.01"), None, None)
    assert tracker.closed_quarters() == [(utc(2024, 5, 1, 8, 0), D("4.0"))]
    state = tracker.state(utc(2024, 5, 1, 8, 15, 10))
    assert state.energy_kwh == D("0.0025")
    assert state.accrued_kw == D("0.01")


# ---------------------------------------------------------------- projection and headroom


def _quarter_with(peak: Decimal | None, power: Decimal) -> QuarterState:
    """9 minutes at 3 kW (0.45 kWh), now ``power`` kW, 6 minutes left."""
    tracker = CapacityTracker(TARIFF)
    start = utc(2024, 2, 5, 12, 0)
    if peak is not None:
        tracker.update_meter_registers(start, None, peak, start - timedelta(days=1))
    tracker.update_energy(start, D("1000"))
    tracker.update_energy(start + timedelta(minutes=9), D("1000.45"))
    tracker.update_power(start + timedelta(minutes=9), power)
    return tracker.state(start + timedelta(minutes=9))


def test_projection_and_headroom_exact() -> None:
    state = _quarter_with(D("4"), D("2"))
    assert state.energy_kwh == D("0.45")
    assert state.demand_so_far_kw == D("3")
    assert state.accrued_kw == D("1.80")
    # 0.45 + 2 kW x 0.1 h = 0.65 kWh -> 2.6 kW.
    assert state.projected_kw == D("2.6")
    # (4 kW x 0.25 h - 0.65 kWh) / 0.1 h = 3.5 kW more.
    assert state.headroom_kw == D("3.5")
    assert state.target_kw == D("4")
    assert not state.will_exceed
    assert state.end - state.start == Q


def test_headroom_negative_under_the_floor() -> None:
    state = _quarter_with(D("2.0"), D("2"))  # 2.0 kW peak: the 2.5 kW floor is the bar
    assert state.target_kw == D("2.5")
    assert state.headroom_kw == D("-0.25")
    assert state.will_exceed


def test_headroom_without_a_peak_and_at_exactly_the_bar() -> None:
    state = _quarter_with(None, D("5.5"))  # 0.45 + 0.55 = 1.0 kWh -> 4 kW
    assert state.month_peak_kw == 0
    assert state.projected_kw == D("4")
    assert state.headroom_kw == D("-3.75")  # (2.5 kW x 0.25 h - 1.0 kWh) / 0.1 h
    state = _quarter_with(D("4"), D("5.5"))
    assert state.headroom_kw == 0
    assert not state.will_exceed  # exactly at the peak does not raise it


def test_power_only_integration() -> None:
    """No energy register: the power is integrated (the previous value held until the next)."""
    tracker = CapacityTracker(TARIFF)
    start = utc(2024, 2, 5, 12, 0)
    for step in range(15 * 6 + 1):
        tracker.update_power(start + timedelta(seconds=10 * step), D("4") if step < 45 else D("2"))
    tracker.update_power(start + Q + timedelta(seconds=10), D("2"))
    assert tracker.closed_quarters() == [(start, D("3"))]


# ---------------------------------------------------------------- export


def test_import_only_by_default_and_netting_when_asked() -> None:
    start = utc(2024, 7, 1, 10, 0)
    readings = [(start, D("10"), D("50")), (start + timedelta(minutes=5), D("10.5"), D("50.2"))]
    readings.append((start + Q, D("10.6"), D("50.2")))
    readings.append((start + Q + timedelta(minutes=1), D("10.6"), D("51")))
    plain, net = CapacityTracker(TARIFF), CapacityTracker(TARIFF, net_export=True)
    for when, imp, exp in readings:
        plain.update_energy(when, imp, exp)
        net.update_energy(when, imp, exp)
    assert plain.closed_quarters() == [(start, D("2.4"))]  # 0.6 kWh of import
    assert net.closed_quarters() == [(start, D("1.6"))]  # 0.6 - 0.2
    # A quarter that exports more than it imports counts 0, never negative.
    assert net.state(start + Q + timedelta(minutes=1)).energy_kwh == 0
    plain.update_power(start + Q + timedelta(minutes=1), D("0.5"), D("3"))
    net.update_power(start + Q + timedelta(minutes=1), D("0.5"), D("3"))
    assert plain.state(start + Q + timedelta(minutes=1)).projected_kw == D("0.5") * 14 / 15
    assert net.state(start + Q + timedelta(minutes=1)).projected_kw == 0


# ---------------------------------------------------------------- persistence


def test_round_trip_through_json() -> None:
    raw = (corpus_dir() / "dsmr" / "be_fluvius_emucs171_alt.txt").read_bytes()
    meter = decode_telegram(raw, tz=BRUSSELS).meters[0]
    tracker = CapacityTracker(TARIFF)
    tracker.update_from_meter(meter)
    when = utc(2023, 11, 2, 11, 16)
    tracker.update_energy(when, D("571.600"), D("0.005"))
    tracker.update_energy(when + timedelta(minutes=3), D("571.700"), D("0.005"))
    snapshot = json.loads(json.dumps(tracker.as_dict()))
    restored = CapacityTracker.from_dict(snapshot, TARIFF)
    later = when + timedelta(minutes=3)
    assert restored.state(later) == tracker.state(later)
    assert restored.monthly_peaks() == tracker.monthly_peaks()
    assert restored.closed_quarters() == tracker.closed_quarters()
    # Counting continues where it stopped.
    for t in (tracker, restored):
        t.update_energy(later + timedelta(minutes=2), D("571.800"), D("0.005"))
    assert restored.state(later + timedelta(minutes=2)) == tracker.state(later + timedelta(minutes=2))
    # Garbage or another version restores nothing, and does not raise.
    assert CapacityTracker.from_dict({"version": 99}, TARIFF).monthly_peaks() == []
    broken = CapacityTracker.from_dict({"version": 1, "months": [{"month": "x"}]}, TARIFF)
    assert broken.monthly_peaks() == []


# ---------------------------------------------------------------- available current


def test_available_current() -> None:
    assert available_current(D("25"), [D("10.5"), D("30"), None]) == [D("14.5"), D("0"), None]
    assert available_current(D("40"), []) == []
