"""Counter guard: property tests on random counter series with injected faults."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings, strategies as st

from custom_components.smartmeter.core.guard import REJECTED, CounterGuard, GuardLimits, Verdict
from custom_components.smartmeter.core.models import Medium

RES = Decimal("0.001")


def _limits(unit: str = "kWh") -> GuardLimits:
    return GuardLimits.for_register(Medium.ELECTRICITY, unit)


def test_accepts_plausible_growth_and_rejects_faults() -> None:
    guard = CounterGuard(_limits())
    assert guard.check(Decimal("100.000"), 0) is Verdict.ACCEPTED
    assert guard.check(Decimal("100.001"), 1) is Verdict.ACCEPTED
    assert guard.check(Decimal("0"), 2) is Verdict.ZERO
    assert guard.check(Decimal("99.000"), 3) is Verdict.DECREASE
    # 55 kW for 1 s is ~0.015 kWh: 5 kWh in one second is impossible
    assert guard.check(Decimal("105.000"), 4) is Verdict.JUMP
    assert guard.check(Decimal("100.002"), 5) is Verdict.ACCEPTED
    assert guard.value == Decimal("100.002")
    assert guard.rejected == {Verdict.ZERO: 1, Verdict.DECREASE: 1, Verdict.JUMP: 1}
    assert guard.rejected_total == 3


def test_long_gap_allows_large_growth() -> None:
    guard = CounterGuard(_limits())
    guard.seed(Decimal("100"), 0)
    # a day offline at 2 kW average
    assert guard.check(Decimal("148"), 86400) is Verdict.ACCEPTED


def test_units_scale_the_limit() -> None:
    guard = CounterGuard(_limits("Wh"))
    guard.seed(Decimal("1000000"), 0)
    assert guard.check(Decimal("1000010"), 1) is Verdict.ACCEPTED  # 10 Wh in 1 s = 36 kW
    assert guard.check(Decimal("1100010"), 2) is Verdict.JUMP  # 100 kWh in 1 s


def test_persistent_reset_is_confirmed() -> None:
    guard = CounterGuard(_limits())
    guard.seed(Decimal("5000"), 0)
    verdicts = [guard.check(Decimal("0.010") + Decimal(i) * RES, 10 + 30 * i) for i in range(4)]
    assert verdicts[:2] == [Verdict.DECREASE, Verdict.DECREASE]
    assert Verdict.RESET in verdicts
    assert guard.value is not None and guard.value < 1


def test_short_burst_of_replays_is_not_a_reset() -> None:
    guard = CounterGuard(_limits())
    guard.seed(Decimal("5000"), 0)
    for t in range(1, 6):  # the same old telegram replayed 5 times within 5 s
        assert guard.check(Decimal("4990"), t) is Verdict.DECREASE
    assert guard.check(Decimal("5000.001"), 7) is Verdict.ACCEPTED


@st.composite
def faulty_series(draw: st.DrawFn) -> tuple[list[tuple[Decimal, float]], Decimal]:
    """A true 1 Hz-ish counter with isolated faults: zeros, replays, jumps, drops.

    Returns the readings and the last true value among them.
    """
    steps = draw(st.lists(st.integers(0, 12), min_size=5, max_size=200))  # Wh per reading, <= 43 kW at 1 s
    start = Decimal(draw(st.integers(1, 10**7))) * RES
    true_value = start
    time = 0.0
    out: list[tuple[Decimal, float]] = [(start, time)]
    history = [start]
    last_was_fault = False
    observed = start
    for step in steps:
        time += draw(st.sampled_from([1.0, 1.0, 1.0, 10.0]))
        true_value += step * RES
        history.append(true_value)
        fault = draw(st.sampled_from(["none"] * 6 + ["zero", "replay", "jump", "drop"]))
        if last_was_fault or fault == "none":
            out.append((true_value, time))
            observed = true_value
            last_was_fault = False
        elif fault == "drop":
            last_was_fault = False
        else:
            last_was_fault = True
            if fault == "zero":
                bad = Decimal(0)
            elif fault == "replay":
                bad = history[max(0, len(history) - 1 - draw(st.integers(2, 50)))]
            else:
                bad = true_value + Decimal(draw(st.integers(1000, 10**6)))
            if bad == true_value:
                bad = Decimal(0)
            out.append((bad, time - 0.5))  # a bad reading between two good ones
            out.append((true_value, time))
            observed = true_value
    return out, observed


@settings(max_examples=300, deadline=None)
@given(faulty_series())
def test_guard_output_is_monotonic_and_exact(data: tuple[list[tuple[Decimal, float]], Decimal]) -> None:
    series, final_true = data
    guard = CounterGuard(_limits())
    accepted: list[Decimal] = []
    for value, time in series:
        verdict = guard.check(value, time)
        assert verdict is not Verdict.RESET
        if verdict not in REJECTED:
            accepted.append(value)
    assert accepted == sorted(accepted)
    # the accepted series ends at the true register, so its total equals the true consumption
    assert accepted[-1] == final_true
    assert accepted[-1] - accepted[0] == final_true - series[0][0]
