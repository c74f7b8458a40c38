"""Water alerts: continuous flow (a possible leak) and bursts, on simulated realistic meter series."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from custom_components.smartmeter.core.alerts.water import (
    WaterAlertSettings,
    WaterMonitor,
    WaterState,
    to_litres,
)

from .water_series import (
    DAY,
    HOUR,
    MINUTE,
    START,
    Flow,
    Household,
    Reading,
    Segment,
    sample,
    seconds,
    usage,
)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


Q30 = WaterAlertSettings()
Q60 = WaterAlertSettings(quiet_period=timedelta(minutes=60))


def _litres(reading: Reading, unit: str) -> Decimal:
    return to_litres(reading.value, unit)


def timeline(
    monitor: WaterMonitor, readings: Sequence[Reading], unit: str = "L"
) -> Iterator[tuple[float, WaterState]]:
    """Feed the readings; yield the state at every reading and at every change in between."""
    for i, reading in enumerate(readings):
        monitor.add(reading.when, _litres(reading, unit))
        state = monitor.state(reading.when)
        yield reading.seconds, state
        if i + 1 == len(readings):
            return
        until = readings[i + 1].when
        for _ in range(10):
            if state.next_change is None or state.next_change >= until:
                break
            now = state.next_change
            state = monitor.state(now)
            yield seconds(now), state


def _series(house: Household, **kwargs: Any) -> list[Reading]:
    return sample(Flow(usage(house)), end=house.end, **kwargs)


def _assert_sound(
    flow: Flow, states: Sequence[tuple[float, WaterState]], settings: WaterAlertSettings
) -> None:
    """Every leak alert is true: the real flow had no stand-still of the quiet period in the window."""
    q = settings.quiet_period.total_seconds()
    w = settings.window.total_seconds()
    quiet = [(a, b) for a, b in flow.quiet(-w, states[-1][0] + w) if b - a >= q]
    for t, state in states:
        if state.leak:
            assert not any(min(b, t) - max(a, t - w) >= q for a, b in quiet), t


# ---------------------------------------------------------------- units and settings


def test_to_litres() -> None:
    assert to_litres(Decimal("123.456"), "m³") == Decimal("123456.000")
    assert to_litres(Decimal("123.456"), "m3") == Decimal(123456)
    assert to_litres(Decimal(10), "L") == 10
    assert to_litres("1", "gal") == Decimal("3.785411784")
    assert to_litres(2, "ft³") == Decimal("56.633693184")
    assert to_litres(Decimal(1), "CCF") == Decimal("2831.6846592")
    with pytest.raises(ValueError, match="unit"):
        to_litres(Decimal(1), "kWh")
    with pytest.raises(ValueError, match="number"):
        to_litres("abc", "L")
    with pytest.raises(ValueError, match="finite"):
        to_litres(Decimal("NaN"), "L")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quiet_period": timedelta(0)},
        {"window": timedelta(minutes=30)},
        {"burst_window": timedelta(0)},
        {"burst_flow_l_min": Decimal(0)},
        {"max_flow_l_min": Decimal(5)},
        {"step_l": Decimal(0)},
        {"timestamp_tolerance": timedelta(seconds=-1)},
    ],
)
def test_settings_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WaterAlertSettings(**kwargs)  # type: ignore[arg-type]


def test_naive_time_and_bad_values_are_refused() -> None:
    monitor = WaterMonitor()
    with pytest.raises(ValueError, match="naive"):
        monitor.add(datetime(2024, 1, 1), Decimal(1))
    with pytest.raises(ValueError, match="finite"):
        monitor.add(START, Decimal("Infinity"))
    state = monitor.state(START)
    assert not state.leak
    assert state.last_reading is None
    assert not state.evidence_complete


# ---------------------------------------------------------------- a normal week and a holiday


@pytest.mark.parametrize(
    ("step", "unit", "cadence", "seed"),
    [(1, "L", 10.0, 1), (10, "L", 5.0, 2), (1, "m3", 60.0, 3), (1, "L", 900.0, 4), (10, "L", 2.0, 5)],
)
def test_normal_week_raises_nothing(step: int, unit: str, cadence: float, seed: int) -> None:
    house = Household(seed=seed, days=7)
    missing = 0.01 if cadence < 600 else 0.0  # a missed 15-minute reading leaves a gap as long as Q
    readings = _series(house, step_l=step, unit=unit, cadence=cadence, missing=missing, seed=seed)
    monitor = WaterMonitor()
    complete_seen = False
    for t, state in timeline(monitor, readings, unit):
        assert not state.leak, t
        assert not state.burst, t
        if state.evidence_complete:
            complete_seen = True
            assert state.longest_quiet_last_window is not None
            assert state.longest_quiet_last_window >= Q30.quiet_period
        else:
            assert state.longest_quiet_last_window is None
    # 15-minute readings still judge the window (no gap as long as Q), they just cannot prove a leak
    assert complete_seen
    assert monitor.restarts == 0


def test_holiday_is_quiet_and_evidence_stays_complete() -> None:
    house = Household(seed=7, days=7, holiday_days=frozenset({2, 3, 4, 5}))
    readings = _series(house, cadence=30.0, seed=7)
    monitor = WaterMonitor()
    for t, state in timeline(monitor, readings):
        assert not state.leak
        assert not state.burst
        if 4 * DAY <= t < 6 * DAY:  # a whole day of the holiday in the window
            assert state.evidence_complete
            assert state.longest_quiet_last_window == timedelta(hours=24)
            assert state.flow_l_min is not None
            assert state.flow_l_min.lower == 0


# ---------------------------------------------------------------- a dripping tap and a running toilet


def _first_leak(
    flow: Flow, readings: Sequence[Reading], settings: WaterAlertSettings, unit: str = "L"
) -> tuple[float | None, WaterMonitor, list[tuple[float, WaterState]]]:
    monitor = WaterMonitor(settings)
    states = list(timeline(monitor, readings, unit))
    _assert_sound(flow, states, settings)
    first = next((t for t, state in states if state.leak), None)
    return first, monitor, states


def test_drip_2l_h_on_1l_register_needs_a_60_minute_quiet_period() -> None:
    """A 2 L/h drip steps a 1 L register every 30 min: Q = 30 min can never see it, Q = 60 min does."""
    drip_from = 36.0  # hours
    house = Household(seed=11, days=6, drip_l_h=2.0, drip_from_h=drip_from)
    flow = Flow(usage(house))
    readings = sample(flow, end=house.end, step_l=1, cadence=10.0, missing=0.01, seed=11)

    first, _, states = _first_leak(flow, readings, Q30)
    assert first is None  # s/r = 30 min = Q: the stretches between steps always exceed Q

    first, _, states = _first_leak(flow, readings, Q60)
    assert first is not None
    start = drip_from * HOUR
    # on at most W - Q + s/r + c + τ after the drip starts (the documented bound; c with a missing reading)
    assert first - start <= 24 * HOUR - 60 * MINUTE + 30 * MINUTE + 60
    after = [s for t, s in states if t >= first]
    assert all(s.leak for s in after)  # and it stays on: the drip never stops
    last = after[-1]
    assert last.leak_since is not None
    assert last.no_quiet_since is not None
    assert seconds(last.no_quiet_since) <= first
    assert last.longest_quiet_last_window is not None
    assert last.longest_quiet_last_window < timedelta(minutes=60)


def test_drip_on_10l_register_cannot_be_seen() -> None:
    """10 L steps at 2 L/h come every 5 h: Q = 30 or 60 min cannot tell; a 6-hour Q can."""
    house = Household(seed=12, days=5, drip_l_h=2.0, drip_from_h=0.0)
    flow = Flow(usage(house))
    readings = sample(flow, end=house.end, step_l=10, cadence=10.0, seed=12)
    assert _first_leak(flow, readings, Q30)[0] is None
    assert _first_leak(flow, readings, Q60)[0] is None
    # ... but a 6-hour quiet period does: 5 h + 2 x 10 s + 2 s <= 6 h
    first, _, _ = _first_leak(flow, readings, WaterAlertSettings(quiet_period=timedelta(hours=6)))
    assert first is not None


@pytest.mark.parametrize(("unit", "cadence"), [("L", 10.0), ("m3", 3.0)])
def test_running_toilet_20l_h_is_a_leak_within_a_day(unit: str, cadence: float) -> None:
    toilet_from = 30.0
    house = Household(seed=13, days=4, running_toilet_l_h=20.0, running_toilet_from_h=toilet_from)
    flow = Flow(usage(house))
    readings = sample(flow, end=house.end, unit=unit, cadence=cadence, missing=0.02, seed=13)
    first, monitor, states = _first_leak(flow, readings, Q30, unit)
    assert first is not None
    assert first <= (toilet_from + 24) * HOUR  # W - Q + s/r (4.5 min) + c + τ
    assert all(s.leak for t, s in states if t >= first)
    assert not any(s.burst for _, s in states)
    assert monitor.restarts == 0


def test_running_toilet_with_15_minute_readings() -> None:
    """Readings every 15 min never prove a leak at Q = 30 min, at Q = 60 min they do.

    Each stretch spans two reading intervals (30 min), so Q = 30 min is never beaten.
    """
    house = Household(seed=14, days=4, running_toilet_l_h=20.0, running_toilet_from_h=12.0)
    flow = Flow(usage(house))
    readings = sample(flow, end=house.end, cadence=900.0, jitter=0.0, seed=14)
    first, _, states = _first_leak(flow, readings, Q30)
    assert first is None
    assert any(s.evidence_complete for _, s in states)
    first, _, _ = _first_leak(flow, readings, Q60)
    assert first is not None
    assert first <= (12 + 24) * HOUR + 60 * MINUTE


def test_leak_clears_after_a_quiet_period_and_an_outage_stops_the_proof() -> None:
    house = Household(seed=15, days=3, running_toilet_l_h=20.0, running_toilet_from_h=0.0, people=0)
    flow = Flow(usage(house))
    readings = sample(flow, end=house.end, cadence=10.0, outages=[(40 * HOUR, 41 * HOUR)], seed=15)
    monitor = WaterMonitor()
    states = list(timeline(monitor, readings))
    _assert_sound(flow, states, Q30)
    leaks = [t for t, s in states if s.leak]
    assert leaks
    assert min(leaks) <= 24 * HOUR
    # an hour without readings: no proof any more (evidence incomplete) until the window forgets it
    for t, s in states:
        if 40 * HOUR + 30 * MINUTE <= t <= 64 * HOUR:
            assert not s.leak, t
            assert not s.evidence_complete, t
            assert s.longest_quiet_last_window is None
    assert states[-1][1].leak  # back once the outage left the window
    assert states[-1][1].evidence_complete


def test_one_exact_stand_still_among_continuous_flow_is_no_leak() -> None:
    """36 L/h for two days, stopped once for exactly Q: never a leak while the stop is in the window.

    The edge case of the rule: a quiet period may begin right after the last reading before
    an increase, so a rule measuring between increase readings would raise a false alarm here.
    """
    stop = 30 * HOUR + 17.0
    segments = [Segment(0.0, stop, 36 / HOUR), Segment(stop + 30 * MINUTE, 3 * DAY, 36 / HOUR)]
    flow = Flow(segments)
    for cadence in (2.0, 7.0, 60.0, 299.0):
        readings = sample(flow, end=3 * DAY, cadence=cadence, jitter=0.0, seed=1)
        states = list(timeline(WaterMonitor(), readings))
        _assert_sound(flow, states, Q30)
        # on before the stop (flow since the start), off while the stop is in the window, on after
        assert any(s.leak for t, s in states if t < stop)
        assert not any(s.leak for t, s in states if stop + 30 * MINUTE <= t <= stop + 24 * HOUR)
        assert states[-1][1].leak


# ---------------------------------------------------------------- bursts


@pytest.mark.parametrize(
    ("step", "unit", "cadence", "l_min"),
    [
        (1, "L", 10.0, 20.0),
        (10, "L", 5.0, 20.0),
        (1, "m3", 60.0, 25.0),
        (1, "L", 2.0, 15.0),
        (10, "L", 30.0, 30.0),
    ],
)
def test_burst_fires_and_clears(step: int, unit: str, cadence: float, l_min: float) -> None:
    begin, minutes = 33.2, 20.0
    house = Household(seed=21, days=3, bursts=((begin, l_min, minutes),))
    readings = _series(house, step_l=step, unit=unit, cadence=cadence, jitter=0.1, missing=0.01, seed=21)
    settings = Q30
    d = settings.burst_duration.total_seconds()
    g = settings.burst_window.total_seconds()
    start, end = begin * HOUR, begin * HOUR + minutes * MINUTE
    margin = cadence * 1.2 * 2  # a reading interval with jitter, and a missing reading
    monitor = WaterMonitor(settings)
    on = [(t, s) for t, s in timeline(monitor, readings, unit) if s.burst]
    assert on, "burst not seen"
    first, last = on[0][0], on[-1][0]
    assert start + d <= first <= start + d + g + margin
    assert end <= last <= end + g + margin
    for t, s in on:
        assert start <= t <= end + g + margin  # nothing else in the three days
        assert s.burst_since is not None
        assert abs(seconds(s.burst_since) - start) <= g + margin
        assert s.flow_l_min is not None
        assert s.flow_l_min.lower > settings.burst_flow_l_min
    assert not any(s.leak for s in (x for _, x in on))


def test_burst_below_the_provable_flow_is_not_reported() -> None:
    """15 L/min on a 10 L register over a 5-minute window: 15 - 2 x 10 / 5 = 11 < 12: not proven."""
    house = Household(seed=22, days=1, people=0, bursts=((5.0, 15.0, 30.0),))
    readings = _series(house, step_l=10, cadence=5.0, jitter=0.0, seed=22)
    monitor = WaterMonitor()
    assert not any(s.burst for _, s in timeline(monitor, readings))
    # a 10-minute window proves it (15 - 2 > 12)
    monitor = WaterMonitor(WaterAlertSettings(burst_window=timedelta(minutes=10)))
    assert any(s.burst for _, s in timeline(monitor, readings))


def test_bath_and_short_high_flow_are_not_bursts() -> None:
    extra = (
        Segment(3 * HOUR, 3 * HOUR + 8 * MINUTE, 25 / MINUTE),  # a bath, 200 L in 8 min
        Segment(5 * HOUR, 5 * HOUR + 6 * MINUTE, 60 / MINUTE),  # a hose at 60 L/min for 6 minutes
        # twenty minutes of 20 L/min with a 5-minute pause in the middle
        Segment(7 * HOUR, 7 * HOUR + 8 * MINUTE, 20 / MINUTE),
        Segment(7 * HOUR + 13 * MINUTE, 7 * HOUR + 21 * MINUTE, 20 / MINUTE),
    )
    house = Household(seed=23, days=1, people=0, extra=extra)
    for step, cadence in ((1, 2.0), (10, 10.0)):
        readings = _series(house, step_l=step, cadence=cadence, jitter=0.0, seed=23)
        assert not any(s.burst for _, s in timeline(WaterMonitor(), readings))


def test_flow_bounds_contain_the_true_flow() -> None:
    # a holiday: only the constant 6 L/min flows
    house = Household(seed=24, days=1, holiday_days=frozenset({0}), extra=(Segment(0.0, DAY, 6 / MINUTE),))
    for step, unit, cadence in ((1, "L", 3.0), (10, "L", 10.0), (1, "m3", 60.0)):
        readings = _series(house, step_l=step, unit=unit, cadence=cadence, seed=24)
        monitor = WaterMonitor()
        checked = 0
        for _, state in timeline(monitor, readings, unit):
            flow = state.flow_l_min
            if flow is not None and flow.upper is not None:
                assert flow.lower <= 6 <= flow.upper + Decimal("0.001")
                checked += 1
        assert checked > 100
        assert monitor.step_l == step


# ---------------------------------------------------------------- odd readings


def test_out_of_order_duplicates_and_a_glitch_are_ignored() -> None:
    house = Household(seed=31, days=2)
    readings = _series(house, cadence=20.0, seed=31)
    clean = WaterMonitor()
    for r in readings:
        clean.add(r.when, r.value)
    noisy = WaterMonitor()
    for i, r in enumerate(readings):
        noisy.add(r.when, r.value)
        if i % 97 == 5:
            noisy.add(r.when, r.value + 5)  # duplicate time, other value
            noisy.add(r.when - timedelta(seconds=5), r.value)  # out of order
        if i == 3000:
            noisy.add(r.when + timedelta(seconds=1), Decimal(0))  # a glitch to zero
        if i == 4000:
            noisy.add(r.when + timedelta(seconds=1), r.value + 100_000)  # an impossible jump
    assert noisy.restarts == 0
    assert noisy.ignored > 0
    end = readings[-1].when
    assert noisy.state(end) == clean.state(end)


def test_meter_replacement_restarts_the_evidence() -> None:
    monitor = WaterMonitor()
    t = START
    total = Decimal(5000)
    for _ in range(int(30 * HOUR / 10)):  # a running toilet at 36 L/h: a litre every 100 s
        t += timedelta(seconds=10)
        total += Decimal("0.1")
        monitor.add(t, total.to_integral_value(rounding="ROUND_FLOOR"))
    assert monitor.state(t).leak
    new = Decimal(0)
    for _ in range(3):
        t += timedelta(seconds=10)
        monitor.add(t, new)
    assert monitor.restarts == 1
    state = monitor.state(t)
    assert not state.leak
    assert not state.evidence_complete
    assert state.total_l == 0


# ---------------------------------------------------------------- persistence and size


def test_persistence_round_trip_continues_identically() -> None:
    house = Household(seed=41, days=3, running_toilet_l_h=20.0, running_toilet_from_h=20.0)
    readings = _series(house, cadence=5.0, missing=0.01, seed=41)
    half = len(readings) // 2
    whole = WaterMonitor()
    first = WaterMonitor()
    for r in readings[:half]:
        whole.add(r.when, r.value)
        first.add(r.when, r.value)
    stored = json.dumps(first.as_dict())
    assert len(stored) < 20_000
    restored = WaterMonitor.from_dict(json.loads(stored))
    assert restored.state(readings[half].when) == whole.state(readings[half].when)
    for r in readings[half:]:
        whole.add(r.when, r.value)
        restored.add(r.when, r.value)
        assert restored.state(r.when) == whole.state(r.when)
    assert whole.state(readings[-1].when).leak
    # other settings: the evidence does not apply, a fresh monitor
    fresh = WaterMonitor.from_dict(json.loads(stored), Q60)
    assert fresh.state(readings[-1].when).last_reading is None
    # an empty monitor round-trips too
    assert WaterMonitor.from_dict(WaterMonitor().as_dict()).state(START).last_reading is None


@pytest.mark.parametrize("broken", [{"last": [1]}, {"gaps": [[1]]}, {"recent": []}, {"step": "x"}])
def test_malformed_stored_data_is_refused(broken: dict[str, object]) -> None:
    monitor = WaterMonitor()
    monitor.add(START, Decimal(1))
    monitor.add(START + timedelta(seconds=10), Decimal(2))
    data = {**monitor.as_dict(), **broken}
    with pytest.raises(ValueError, match="malformed"):
        WaterMonitor.from_dict(data)


def test_two_weeks_every_two_seconds_is_fast_and_bounded() -> None:
    """add() is O(1) amortised and the stored evidence stays small however dense the readings."""
    house = Household(seed=51, days=14, running_toilet_l_h=20.0, running_toilet_from_h=24 * 10.0)
    readings = _series(house, cadence=2.0, jitter=0.1, seed=51)
    assert len(readings) > 600_000
    monitor = WaterMonitor()
    biggest = 0
    begin = time.perf_counter()
    for i, r in enumerate(readings):
        monitor.add(r.when, r.value)
        if i % 1000 == 0:
            biggest = max(biggest, len(monitor._gaps), len(monitor._recent))
    per_reading = (time.perf_counter() - begin) / len(readings)
    assert per_reading < 50e-6  # about 2 µs on a laptop; generous for slow CI
    assert biggest <= 400
    assert len(json.dumps(monitor.as_dict())) < 30_000
    assert monitor.state(readings[-1].when).leak


# ---------------------------------------------------------------- properties


STEPS = st.sampled_from([(1, "L"), (10, "L"), (1, "m3")])
CADENCES = st.floats(min_value=0.0, max_value=math.log(900.0)).map(lambda x: round(math.exp(x), 3))


def _busy_with_quiet(seed: int, days: float, quiet: float, gap_max: float) -> list[Segment]:
    """Random use, often nearly continuous, with zero-flow stretches of ``quiet`` seconds.

    The stretches are at most ``gap_max`` apart, so every window of
    ``2 x quiet + gap_max`` holds one whole.
    """
    rng = random.Random(seed)  # noqa: S311 - a deterministic simulation
    end = days * DAY
    density = rng.choice([20.0, 60.0, 300.0, 1200.0])  # mean seconds between draws
    segments: list[Segment] = []
    t = 0.0
    while t < end:
        t += rng.expovariate(1 / density)
        litres, l_min = rng.uniform(0.2, 15.0), rng.uniform(1.0, 15.0)
        segments.append(Segment(t, t + litres / l_min * MINUTE, l_min / MINUTE))
    if rng.random() < 0.7:  # a trickle (a leak) for most of the time: only the stand-stills stop it
        segments.append(Segment(rng.uniform(0, end / 4), end, rng.uniform(0.5, 60.0) / HOUR))
    quiets = []
    a = rng.uniform(0, gap_max)
    while a < end:
        quiets.append((a, a + quiet))
        a += quiet + gap_max * rng.uniform(0.6, 1.0)  # mostly one stand-still per window
    cut: list[Segment] = []
    for seg in segments:
        pieces = [(seg.start, seg.end)]
        for lo, hi in quiets:
            pieces = [
                piece
                for s, e in pieces
                for piece in ((s, min(e, lo)), (max(s, hi), e))
                if piece[1] > piece[0]
            ]
        cut += [Segment(s, e, seg.rate) for s, e in pieces]
    return cut


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    step_unit=STEPS,
    cadence=CADENCES,
    jitter=st.sampled_from([0.0, 0.2, 0.45]),
    missing=st.sampled_from([0.0, 0.05, 0.3]),
    extra_quiet=st.sampled_from([0.0, 0.5, 5.0, 60.0, 600.0]),
)
def test_property_no_alarm_when_the_flow_stops_every_day(
    seed: int, step_unit: tuple[int, str], cadence: float, jitter: float, missing: float, extra_quiet: float
) -> None:
    settings = Q30
    # 1 ms over Q: cutting float segments at a + Q can leave a stretch a rounding error short of Q.
    q = settings.quiet_period.total_seconds() + extra_quiet + 0.001
    window = settings.window.total_seconds()
    days = min(3.0, max(1.3, 40_000 * cadence / DAY))
    segments = _busy_with_quiet(seed, days, q, window - 2 * q)
    flow = Flow(segments)
    # the precondition, from the truth: every window of 24 h holds a zero-flow stretch >= Q
    stretches = [
        (a, b) for a, b in flow.quiet(0.0, days * DAY) if b - a >= settings.quiet_period.total_seconds()
    ]
    assert stretches
    step, unit = step_unit
    readings = sample(
        flow,
        end=days * DAY,
        step_l=step,
        unit=unit,
        cadence=cadence,
        jitter=jitter,
        missing=missing,
        seed=seed,
    )
    monitor = WaterMonitor(settings)
    for t, state in timeline(monitor, readings, unit):
        assert not state.leak, (t, state)


@hsettings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    step_unit=STEPS,
    interval_fraction=st.floats(0.02, 0.33),
    cadence_fraction=st.floats(0.002, 0.05),
    quiet_minutes=st.sampled_from([30, 60]),
)
def test_property_constant_flow_is_detected(
    seed: int,
    step_unit: tuple[int, str],
    interval_fraction: float,
    cadence_fraction: float,
    quiet_minutes: int,
) -> None:
    """A constant flow stepping the register well within Q, read densely, is a leak.

    Steps every ``interval_fraction`` x Q, readings every ``cadence_fraction`` x Q:
    on within W + Q (here W - Q + s/r + c + τ) and on ever after.
    """
    settings = WaterAlertSettings(quiet_period=timedelta(minutes=quiet_minutes))
    q = settings.quiet_period.total_seconds()
    step, unit = step_unit
    rate = step / (interval_fraction * q)  # L/s
    end = 1.5 * DAY
    flow = Flow([Segment(0.0, end, rate)])
    readings = sample(
        flow,
        end=end,
        step_l=step,
        unit=unit,
        cadence=cadence_fraction * q,
        jitter=0.3,
        missing=0.02,
        seed=seed,
    )
    monitor = WaterMonitor(settings)
    bound = settings.window.total_seconds() + q
    on_since = None
    for t, state in timeline(monitor, readings, unit):
        if state.leak and on_since is None:
            on_since = t
        if on_since is not None:
            assert state.leak, t
        if t >= bound:
            assert state.leak, t
    assert on_since is not None
    assert on_since >= settings.window.total_seconds() - q


def test_module_is_pure() -> None:
    """No Home Assistant, no clock reads: times come with the readings."""
    import custom_components.smartmeter.core.alerts.water as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    assert "homeassistant" not in source
    assert ".now(" not in source
    assert "time.time" not in source
