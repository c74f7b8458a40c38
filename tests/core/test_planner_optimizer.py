"""The charge-plan optimizer against a brute force over every current assignment, and its edge cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from itertools import pairwise, product
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.planner.models import (
    QUARTER,
    CapacityTariff,
    Charger,
    ChargeRequest,
    Limits,
    Plan,
    PriceSlot,
)
from custom_components.smartmeter.core.planner.optimizer import energy_needed, plan_charge, quarters

T0 = datetime(2025, 1, 6, 22, 0, tzinfo=UTC)
BRUSSELS = ZoneInfo("Europe/Brussels")
D = Decimal


# ---------------------------------------------------------------- the model, independently
@dataclass(frozen=True)
class Instance:
    """A small planning problem: its request, prices, limits, base loads and month peak."""

    request: ChargeRequest
    prices: tuple[PriceSlot, ...]
    limits: Limits
    base: tuple[Decimal, ...]  # per quarter of the grid
    month_peak: Decimal

    @cached_property
    def _bases(self) -> dict[datetime, Decimal]:
        grid = quarters(self.prices, self.request.start, self.request.deadline)
        return {_floor(slot.start): base for slot, base in zip(grid, self.base, strict=False)}

    def base_at(self, when: datetime) -> Decimal:
        """The base load of the quarter starting at ``when``."""
        return self._bases.get(when, D(0))

    @cached_property
    def grid(self) -> list[tuple[PriceSlot, Fraction]]:
        """The priced quarters with their base loads."""
        grid = quarters(self.prices, self.request.start, self.request.deadline)
        return [(slot, Fraction(self.base_at(_floor(slot.start)))) for slot in grid]


def _grid_with_base(inst: Instance) -> list[tuple[PriceSlot, Fraction]]:
    return inst.grid


def _floor(when: datetime) -> datetime:
    return when.replace(minute=when.minute - when.minute % 15, second=0, microsecond=0)


def evaluate(inst: Instance, currents: list[int]) -> tuple[Fraction, Fraction, Fraction, bool]:
    """(energy into the battery, objective with prices clamped at 0, true total, within limits)."""
    charger, limits = inst.request.charger, inst.limits
    grid = _grid_with_base(inst)
    k = Fraction(charger.voltage) * charger.phases / 1000
    eff = Fraction(charger.efficiency)
    energy = clamped = true = Fraction(0)
    baseline = max([Fraction(inst.month_peak), *(b for _, b in grid)])
    peak = baseline
    ok = True
    used: list[int] = []
    for index, ((slot, base), current) in enumerate(zip(grid, currents, strict=True)):
        if current == 0:
            continue
        used.append(index)
        if not charger.min_current <= current <= charger.max_current:
            ok = False
        power = k * current
        for limit in (limits.fuse_kw, limits.max_import_kw):
            if limit is not None and base + power > Fraction(limit):
                ok = False
        if inst.request.price_cap is not None and slot.price > inst.request.price_cap:
            ok = False
        hours = Fraction((slot.end - slot.start) / timedelta(microseconds=1)) / 3_600_000_000
        energy += power * hours * eff
        clamped += max(Fraction(slot.price), Fraction(0)) * power * hours
        true += Fraction(slot.price) * power * hours
        peak = max(peak, base + power * hours * 4)
    if inst.request.continuous and used:
        if used != list(range(used[0], used[-1] + 1)):
            ok = False
        for a, b in pairwise(used):
            if grid[a][0].end != grid[b][0].start:
                ok = False
    capacity = limits.capacity
    if capacity is not None:

        def monthly(p: Fraction) -> Fraction:
            return (
                max(p, Fraction(capacity.floor_kw)) * Fraction(capacity.price_per_kw_year) / capacity.months
            )

        increase = monthly(peak) - monthly(baseline)
        clamped += increase
        true += increase
    return energy, clamped, true, ok


def brute_force(inst: Instance) -> tuple[bool, Fraction, Fraction]:
    """(complete, best energy, best objective) over every assignment within the limits."""
    charger = inst.request.charger
    grid = _grid_with_base(inst)
    options = [0, *range(charger.min_current, charger.max_current + 1)]
    need = Fraction(inst.request.energy_kwh)
    best_complete: Fraction | None = None
    best_energy_complete = Fraction(0)
    best_incomplete: tuple[Fraction, Fraction] | None = None  # (-energy, objective)
    for currents in product(options, repeat=len(grid)):
        energy, clamped, _, ok = evaluate(inst, list(currents))
        if not ok:
            continue
        if energy >= need:
            if best_complete is None or clamped < best_complete:
                best_complete, best_energy_complete = clamped, energy
        elif best_incomplete is None or (-energy, clamped) < best_incomplete:
            best_incomplete = (-energy, clamped)
    if best_complete is not None:
        return True, best_energy_complete, best_complete
    assert best_incomplete is not None
    return False, -best_incomplete[0], best_incomplete[1]


def plan_currents(inst: Instance, plan: Plan) -> list[int]:
    grid = quarters(inst.prices, inst.request.start, inst.request.deadline)
    by_start = {slot.start: slot for slot in plan.slots}
    currents = []
    for slot in grid:
        planned = by_start.pop(slot.start, None)
        if planned is not None:
            assert planned.end == slot.end
            assert planned.price == slot.price
            assert planned.power_kw == inst.request.charger.power_kw(planned.current)
        currents.append(0 if planned is None else planned.current)
    assert not by_start, "slots outside the priced grid"
    return currents


def check(inst: Instance) -> Plan:
    """Plan, check every constraint, compare with the brute force; return the plan."""
    plan = plan_charge(
        inst.request, inst.prices, inst.limits, base_load_kw=inst.base_at, month_peak_kw=inst.month_peak
    )
    currents = plan_currents(inst, plan)
    energy, clamped, true, ok = evaluate(inst, currents)
    assert ok, (currents, plan)
    assert all(slot.current > 0 for slot in plan.slots)
    assert [s.start for s in plan.slots] == sorted(s.start for s in plan.slots)
    assert all(inst.request.start <= s.start < s.end <= inst.request.deadline for s in plan.slots)
    complete, best_energy, best = brute_force(inst)
    assert plan.complete is complete
    assert clamped == best, (currents, float(clamped), float(best))
    if complete:
        assert energy >= Fraction(inst.request.energy_kwh)
    else:
        assert energy == best_energy
    # The reported figures match the exact ones (Decimal context rounding only).
    assert abs(Fraction(plan.energy_kwh) - energy) < Fraction(1, 10**20)
    assert abs(Fraction(plan.total_cost) - true) < Fraction(1, 10**20)
    assert abs(Fraction(sum((s.energy_kwh for s in plan.slots), D(0))) - energy) < Fraction(1, 10**20)
    return plan


# ---------------------------------------------------------------- random small instances
@st.composite
def instances(draw: st.DrawFn, *, partial: bool = True, capacity: bool | None = None) -> Instance:
    n = draw(st.integers(1, 5 if not partial else 4))
    start = T0 + timedelta(minutes=draw(st.sampled_from([0, 5, 10])) if partial else 0)
    end_cut = draw(st.sampled_from([0, 5])) if partial else 0
    deadline = T0 + QUARTER * n - timedelta(minutes=end_cut)
    if deadline <= start:
        deadline = start + timedelta(minutes=5)
    grid_len = len(quarters([PriceSlot(T0 - QUARTER, T0 + QUARTER * 9, D(0))], start, deadline))
    if draw(st.booleans()):  # hourly prices
        prices = tuple(
            PriceSlot(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), D(draw(st.integers(0, 9))) / 100)
            for h in range(2)
        )
    else:
        prices = tuple(
            PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(draw(st.integers(0, 9))) / 100)
            for i in range(n)
            if i == 0 or draw(st.integers(0, 9)) != 0  # now and then a quarter without a price
        )
    lo = draw(st.integers(1, 3))
    hi = lo + draw(st.integers(0, 3 if n <= 3 else 2))
    charger = Charger(lo, hi, phases=1, voltage=D(100), efficiency=draw(st.sampled_from([D(1), D("0.9")])))
    fuse = draw(st.one_of(st.none(), st.integers(2, 9).map(D)))
    max_import = draw(st.one_of(st.none(), st.sampled_from([D("0.4"), D("0.55"), D("0.8")])))
    use_capacity = draw(st.booleans()) if capacity is None else capacity
    tariff = (
        CapacityTariff(
            D(draw(st.integers(1, 40))) / 10,
            floor_kw=draw(st.sampled_from([D(0), D("0.3"), D("0.5")])),
            months=draw(st.sampled_from([1, 12])),
        )
        if use_capacity
        else None
    )
    limits = Limits(fuse_a=fuse, phases=1, voltage=D(100), max_import_kw=max_import, capacity=tariff)
    base = tuple(D(draw(st.integers(0, 6))) / 10 for _ in range(max(grid_len, 1)))
    energy = D(draw(st.integers(0, 30))) / 100
    request = ChargeRequest(
        energy,
        start,
        deadline,
        charger,
        continuous=draw(st.booleans()),
        price_cap=draw(st.one_of(st.none(), st.sampled_from([D("0.03"), D("0.06")]))),
    )
    month_peak = D(draw(st.integers(0, 8))) / 10
    return Instance(request, prices, limits, base, month_peak)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(partial=False))
def test_equals_brute_force_full_quarters(inst: Instance) -> None:
    check(inst)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(partial=True))
def test_equals_brute_force_partial_quarters(inst: Instance) -> None:
    check(inst)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(partial=False, capacity=True))
def test_equals_brute_force_with_capacity(inst: Instance) -> None:
    check(inst)


def _semicontinuous(prices: list[int], caps: list[int], lo: int, need_aq: int) -> Instance:
    """Full quarters with per-quarter caps set through the base load under a fuse (k = 0.1 kW/A)."""
    n = len(prices)
    hi = max(caps)
    fuse = D(hi)  # 10 A at 100 V -> 1 kW... fuse_kw = hi * 0.1
    base = tuple(D(hi - c) / 10 for c in caps)
    return Instance(
        ChargeRequest(
            D(need_aq) / 40,  # ampere-quarters x 0.1 kW x 0.25 h
            T0,
            T0 + QUARTER * n,
            Charger(lo, hi, phases=1, voltage=D(100)),
        ),
        tuple(PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(p)) for i, p in enumerate(prices)),
        Limits(fuse_a=fuse, phases=1, voltage=D(100)),
        base,
        D(0),
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.integers(1, 4).flatmap(
        lambda lo: st.tuples(
            st.just(lo),
            st.lists(st.integers(1, 6), min_size=2, max_size=5),
            st.lists(st.integers(lo, lo + 3), min_size=5, max_size=5),
            st.integers(1, 25),
        )
    )
)
def test_semicontinuous_knapsack_equals_brute_force(case: tuple[int, list[int], list[int], int]) -> None:
    """The min-current structure (a cheap quarter with a small cap left out, a later one used) is exact."""
    lo, prices, caps, need = case
    check(_semicontinuous(prices, caps[: len(prices)], lo, need))


def test_skipping_a_cheap_small_quarter() -> None:
    """Need 13 A·q, min 6 A: 6 (price 1, cap 6) + 7 (price 3) beats 6 + 6 + 6 with an overshoot."""
    inst = _semicontinuous([1, 2, 3], [6, 6, 7], 6, 13)
    plan = check(inst)
    assert [s.current for s in plan.slots] == [6, 7]


def test_min_current_fix_up_lowers_the_cheap_quarter() -> None:
    """Need 17 A·q with 16 A in the cheapest quarter: 11 + 6 is cheaper than 16 + 6."""
    inst = _semicontinuous([1, 2], [16, 16], 6, 17)
    plan = check(inst)
    assert [s.current for s in plan.slots] == [11, 6]


# ---------------------------------------------------------------- quarters()
def test_quarters_dst_spring_and_autumn() -> None:
    for day, count in ((datetime(2025, 3, 30), 92), (datetime(2025, 10, 26), 100)):
        start = day.replace(tzinfo=BRUSSELS).astimezone(UTC)
        end = (day + timedelta(days=1)).replace(tzinfo=BRUSSELS).astimezone(UTC)
        hours = int((end - start) / timedelta(hours=1))
        prices = [
            PriceSlot(start + timedelta(hours=h), start + timedelta(hours=h + 1), D(h)) for h in range(hours)
        ]
        grid = quarters(prices, start, end)
        assert len(grid) == count
        assert all(slot.end - slot.start == QUARTER for slot in grid)
        assert all(a.end == b.start for a, b in pairwise(grid))
        assert [slot.price for slot in grid[::4]] == [D(h) for h in range(hours)]
        # Local quarter boundaries are UTC quarter boundaries.
        assert all(slot.start.astimezone(BRUSSELS).minute % 15 == 0 for slot in grid)


def test_quarters_mixed_hourly_and_15_minute_prices_and_partial_ends() -> None:
    hourly = [PriceSlot(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), D(10 + h)) for h in range(2)]
    quarterly = [
        PriceSlot(T0 + timedelta(hours=2) + QUARTER * i, T0 + timedelta(hours=2) + QUARTER * (i + 1), D(i))
        for i in range(4)
    ]
    grid = quarters(hourly + quarterly, T0 + timedelta(minutes=7), T0 + timedelta(hours=2, minutes=40))
    assert grid[0] == PriceSlot(T0 + timedelta(minutes=7), T0 + QUARTER, D(10))
    assert grid[-1] == PriceSlot(
        T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=2, minutes=40), D(2)
    )
    assert [s.price for s in grid] == [D(10)] * 4 + [D(11)] * 4 + [D(0), D(1), D(2)]


def test_quarters_tomorrow_missing_and_gaps() -> None:
    today = [PriceSlot(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), D(1)) for h in range(2)]
    # A slot covering only half a quarter prices nothing; the highest of overlapping prices counts.
    odd = [PriceSlot(T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=7), D(5))]
    overlap = [PriceSlot(T0, T0 + QUARTER, D(3), peak=True)]
    grid = quarters(today + odd + overlap, T0, T0 + timedelta(hours=24))
    assert len(grid) == 8
    assert grid[0].price == D(3) and grid[0].peak
    assert grid[1].price == D(1) and not grid[1].peak
    assert quarters(today, T0 + timedelta(hours=1), T0 + timedelta(hours=1)) == []


def test_quarters_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        quarters([], datetime(2025, 1, 1), T0)


# ---------------------------------------------------------------- plan_charge edge cases
CHARGER = Charger(6, 16, phases=3)  # 0.69 kW per ampere
BELGIUM = CapacityTariff(D("53.26"), floor_kw=D("2.5"))


def _flat(hours: int, price: str = "0.2", start: datetime = T0) -> list[PriceSlot]:
    return [
        PriceSlot(start + timedelta(hours=h), start + timedelta(hours=h + 1), D(price)) for h in range(hours)
    ]


def test_deadline_not_after_start_is_an_error() -> None:
    for deadline in (T0, T0 - timedelta(minutes=1)):
        with pytest.raises(ValueError, match="deadline"):
            plan_charge(ChargeRequest(D(5), T0, deadline, CHARGER), _flat(4), Limits())


def test_bad_requests_are_errors() -> None:
    with pytest.raises(ValueError, match="energy"):
        plan_charge(ChargeRequest(D(-1), T0, T0 + QUARTER, CHARGER), _flat(1), Limits())
    with pytest.raises(ValueError, match="min_current"):
        plan_charge(ChargeRequest(D(1), T0, T0 + QUARTER, Charger(10, 6)), _flat(1), Limits())
    with pytest.raises(ValueError, match="efficiency"):
        plan_charge(ChargeRequest(D(1), T0, T0 + QUARTER, Charger(efficiency=D(0))), _flat(1), Limits())


def test_zero_energy_is_an_empty_complete_plan() -> None:
    plan = plan_charge(ChargeRequest(D(0), T0, T0 + timedelta(hours=4), CHARGER), _flat(4), Limits())
    assert plan.slots == ()
    assert plan.complete
    assert plan.total_cost == 0
    assert plan.energy_kwh == 0


def test_cheapest_quarters_and_energy_figures() -> None:
    prices = [
        PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(p))
        for i, p in enumerate(["0.30", "0.10", "0.20", "0.05"])
    ]
    plan = plan_charge(ChargeRequest(D("5.52"), T0, T0 + QUARTER * 4, CHARGER), prices, Limits())
    # 5.52 kWh = 32 A·quarters at 0.69 kW/A: 16 A in the two cheapest quarters.
    assert [(s.start, s.current) for s in plan.slots] == [(T0 + QUARTER, 16), (T0 + QUARTER * 3, 16)]
    assert plan.energy_kwh == D("5.52")
    assert plan.energy_cost == D("11.04") * D("0.25") * (D("0.10") + D("0.05"))
    assert plan.complete
    assert plan.capacity_cost == 0
    assert plan.slot_at(T0 + QUARTER + timedelta(minutes=3)) == plan.slots[0]


def test_ties_go_to_the_earlier_quarter() -> None:
    plan = plan_charge(ChargeRequest(D("2.76"), T0, T0 + timedelta(hours=2), CHARGER), _flat(2), Limits())
    assert [s.start for s in plan.slots] == [T0]
    assert plan.slots[0].current == 16


def test_efficiency_asks_more_from_the_grid() -> None:
    request = ChargeRequest(D("2.76"), T0, T0 + timedelta(hours=1), Charger(6, 16, 3, efficiency=D("0.9")))
    plan = plan_charge(request, _flat(1), Limits())
    assert plan.energy_kwh >= D("2.76")
    assert sum(s.current for s in plan.slots) == 18  # ceil(16 / 0.9)


def test_tomorrow_prices_missing_plans_within_the_known() -> None:
    """Prices until midnight only: the plan stays before it, and says when it falls short."""
    start = datetime(2025, 1, 6, 20, 0, tzinfo=UTC)
    prices = _flat(4, start=start)  # 20:00-24:00
    deadline = start + timedelta(hours=12)
    plan = plan_charge(ChargeRequest(D(10), start, deadline, CHARGER), prices, Limits())
    assert plan.complete
    assert all(s.end <= start + timedelta(hours=4) for s in plan.slots)
    short = plan_charge(ChargeRequest(D(60), start, deadline, CHARGER), prices, Limits())
    assert not short.complete
    assert len(short.slots) == 16
    assert short.energy_kwh == D("11.04") * 4  # every known quarter at 16 A
    empty = plan_charge(ChargeRequest(D(5), start + timedelta(hours=5), deadline, CHARGER), prices, Limits())
    assert empty.slots == () and not empty.complete


def test_price_cap_leaves_expensive_quarters_out() -> None:
    prices = [
        PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(p))
        for i, p in enumerate(["0.1", "0.5", "0.2", "0.6"])
    ]
    request = ChargeRequest(D(20), T0, T0 + QUARTER * 4, CHARGER, price_cap=D("0.2"))
    plan = plan_charge(request, prices, Limits())
    assert {s.price for s in plan.slots} == {D("0.1"), D("0.2")}
    assert not plan.complete


def test_fuse_with_high_base_load() -> None:
    """25 A x 3 phases = 17.25 kW; base 10 kW leaves 10 A, base 14 kW leaves nothing (< 6 A)."""
    limits = Limits(fuse_a=D(25), phases=3)
    loads = {T0: D(10), T0 + QUARTER: D(14), T0 + QUARTER * 2: D(0)}
    prices = [
        PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(p))
        for i, p in enumerate(["0.1", "0.05", "0.3"])
    ]
    plan = plan_charge(
        ChargeRequest(D(4), T0, T0 + QUARTER * 3, CHARGER), prices, limits, base_load_kw=loads.__getitem__
    )
    assert [(s.start, s.current) for s in plan.slots] == [(T0, 10), (T0 + QUARTER * 2, 14)]
    assert all(loads[s.start] + s.power_kw <= limits.fuse_kw for s in plan.slots if limits.fuse_kw)


def test_max_import_limit() -> None:
    limits = Limits(max_import_kw=D(6))
    plan = plan_charge(
        ChargeRequest(D(10), T0, T0 + timedelta(hours=4), CHARGER), _flat(4), limits, base_load_kw=D(1)
    )
    assert max(s.current for s in plan.slots) == 7  # 1 + 0.69 x 7 = 5.83 kW
    assert plan.complete
    # Under 5 kW only 5 A would fit: below the charger's 6 A minimum, nothing at all.
    none = plan_charge(
        ChargeRequest(D(10), T0, T0 + timedelta(hours=4), CHARGER),
        _flat(4),
        Limits(max_import_kw=D(5)),
        base_load_kw=D(1),
    )
    assert none.slots == () and not none.complete


def test_capacity_spreads_the_load_when_cheaper() -> None:
    """Flat prices: 11 kWh over 4 hours at 6 A (4.14 kW) instead of 16 A (11.04 kW) in one hour."""
    limits = Limits(capacity=BELGIUM)
    plan = plan_charge(
        ChargeRequest(D("11.04"), T0, T0 + timedelta(hours=4), CHARGER),
        _flat(4),
        limits,
        base_load_kw=D("0.5"),
        month_peak_kw=D("3.1"),
    )
    assert plan.complete
    assert max(s.current for s in plan.slots) <= 7
    assert plan.peak_kw == D("0.5") + max(s.power_kw for s in plan.slots)
    naive = plan_charge(
        ChargeRequest(D("11.04"), T0, T0 + timedelta(hours=4), CHARGER),
        _flat(4),
        Limits(),
        base_load_kw=D("0.5"),
    )
    assert max(s.current for s in naive.slots) == 16


def test_capacity_raises_the_peak_when_prices_pay_for_it() -> None:
    """One free hour among 5 EUR/kWh hours: charging hard in it pays.

    Each extra ampere in it saves 4 x 0.1725 kWh x 5 EUR = 3.45 EUR of energy and adds 0.69 kW x 53.26 / 12 = 3.06 EUR of capacity: charge hard.
    """
    limits = Limits(capacity=BELGIUM)
    prices = _flat(4, "5.00")
    prices[1] = PriceSlot(prices[1].start, prices[1].end, D("0.00"))
    request = ChargeRequest(D("11.04"), T0, T0 + timedelta(hours=4), CHARGER)
    plan = plan_charge(request, prices, limits, base_load_kw=D("0.5"), month_peak_kw=D("3.1"))
    assert [(s.current, s.price) for s in plan.slots] == [(16, D(0))] * 4
    assert plan.energy_cost == 0
    assert plan.peak_kw == D("11.54")
    assert plan.capacity_cost == BELGIUM.monthly_cost(D("11.54")) - BELGIUM.monthly_cost(D("3.1"))
    # At 4 EUR/kWh an ampere saves only 2.76 EUR: the peak stays near the minimum current
    # (7 A rather than 6 A: 64 A·quarters at 6 A would overshoot by 2).
    prices = [PriceSlot(p.start, p.end, D("4.00") if p.price else p.price) for p in prices]
    spread = plan_charge(request, prices, limits, base_load_kw=D("0.5"), month_peak_kw=D("3.1"))
    assert max(s.current for s in spread.slots) == 7
    assert spread.peak_kw == D("5.33")
    assert spread.total_cost < plan.total_cost


def test_negative_prices_count_as_free() -> None:
    """Below zero every quarter is free to the optimizer (no more energy than asked); the real price is billed."""
    prices = _flat(2, "0.10")
    prices[1] = PriceSlot(prices[1].start, prices[1].end, D("-0.20"))
    plan = plan_charge(ChargeRequest(D("2.76"), T0, T0 + timedelta(hours=2), CHARGER), prices, Limits())
    assert [s.current for s in plan.slots] == [16]
    assert plan.slots[0].price == D("-0.20")
    assert plan.energy_kwh == D("2.76")
    assert plan.energy_cost == D("-0.552")


def test_no_capacity_cost_under_the_month_peak() -> None:
    limits = Limits(capacity=BELGIUM)
    plan = plan_charge(
        ChargeRequest(D(5), T0, T0 + timedelta(hours=4), CHARGER), _flat(4), limits, month_peak_kw=D(12)
    )
    assert plan.capacity_cost == 0
    assert plan.peak_kw == D(12)
    assert max(s.current for s in plan.slots) == 16


def test_continuous_run() -> None:
    prices = [
        PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(p))
        for i, p in enumerate(["0.1", "0.9", "0.1", "0.2", "0.2", "0.1"])
    ]
    request = ChargeRequest(D("5.52"), T0, T0 + QUARTER * 6, CHARGER, continuous=True)
    plan = plan_charge(request, prices, Limits())
    starts = [s.start for s in plan.slots]
    assert all(b - a == QUARTER for a, b in pairwise(starts))
    assert plan.energy_kwh >= D("5.52")
    assert starts[0] >= T0 + QUARTER * 2  # the dear second quarter is avoided


def test_dst_days_plan_over_local_days() -> None:
    for day in (datetime(2025, 3, 30), datetime(2025, 10, 26)):
        start = day.replace(tzinfo=BRUSSELS).astimezone(UTC)
        end = (day + timedelta(days=1)).replace(tzinfo=BRUSSELS).astimezone(UTC)
        hours = int((end - start) / timedelta(hours=1))
        prices = [
            PriceSlot(start + timedelta(hours=h), start + timedelta(hours=h + 1), D(abs(12 - h)) / 100)
            for h in range(hours)
        ]
        plan = plan_charge(
            ChargeRequest(D(30), start, end, CHARGER),
            prices,
            Limits(capacity=BELGIUM),
            month_peak_kw=D("3.1"),
        )
        assert plan.complete and plan.energy_kwh >= 30
        assert all(start <= s.start < s.end <= end for s in plan.slots)
        assert all((s.end - s.start) == QUARTER for s in plan.slots)


def test_energy_needed() -> None:
    assert energy_needed(current_soc=D(20), target_soc=D(80), battery_kwh=D(60)) == D(36)
    assert energy_needed(current_soc=D(80), target_soc=D(20), battery_kwh=D(60)) == 0
    for bad in ({"current_soc": D(-1)}, {"target_soc": D(101)}, {"battery_kwh": D(0)}):
        args = {"current_soc": D(20), "target_soc": D(80), "battery_kwh": D(60)} | bad
        with pytest.raises(ValueError):
            energy_needed(**args)


# ---------------------------------------------------------------- medium instances: a DP oracle
def dp_optimum(inst: Instance) -> tuple[bool, Fraction]:
    """The exact optimum by dynamic programming over ampere-quarters, for every peak level.

    Full quarters only, efficiency 1. Each peak level caps every quarter's current; a DP over
    (quarter, ampere-quarters delivered, capped at the need) gives the cheapest energy cost.
    """
    charger, limits = inst.request.charger, inst.limits
    grid = inst.grid
    k = Fraction(charger.voltage) * charger.phases / 1000
    need = -(-Fraction(inst.request.energy_kwh) // (k / 4))
    need = int(need)
    baseline = max([Fraction(inst.month_peak), *(b for _, b in grid)])

    def fuse_cap(base: Fraction) -> int:
        top = charger.max_current
        for limit in (limits.fuse_kw, limits.max_import_kw):
            if limit is not None:
                top = min(top, int((Fraction(limit) - base) // k))
        return top

    caps = [fuse_cap(base) for _, base in grid]
    levels = sorted(
        {baseline}
        | {
            base + k * c
            for (_, base), top in zip(grid, caps, strict=True)
            for c in range(charger.min_current, top + 1)
        }
    )
    capacity = limits.capacity

    def monthly(p: Fraction) -> Fraction:
        assert capacity is not None
        return max(p, Fraction(capacity.floor_kw)) * Fraction(capacity.price_per_kw_year) / capacity.months

    best: Fraction | None = None
    for level in levels if capacity is not None else [None]:
        allowed = [
            min(top, int((level - base) // k)) if level is not None else top
            for (_, base), top in zip(grid, caps, strict=True)
        ]
        inf = None
        dp: list[Fraction | None] = [Fraction(0)] + [inf] * need
        for (slot, _), top in zip(grid, allowed, strict=True):
            price = max(Fraction(slot.price), Fraction(0)) * k / 4
            new = list(dp)
            for c in range(charger.min_current, top + 1):
                for got in range(need + 1):
                    if dp[got] is None:
                        continue
                    to = min(need, got + c)
                    value = dp[got] + price * c
                    if new[to] is None or value < new[to]:
                        new[to] = value
            dp = new
        if dp[need] is None:
            continue
        total = dp[need] + (monthly(max(level, baseline)) - monthly(baseline) if level is not None else 0)
        if best is None or total < best:
            best = total
    return best is not None, best or Fraction(0)


@st.composite
def medium(draw: st.DrawFn) -> Instance:
    n = draw(st.integers(6, 24))
    lo = draw(st.integers(1, 4))
    hi = lo + draw(st.integers(0, 5))
    prices = tuple(
        PriceSlot(T0 + QUARTER * i, T0 + QUARTER * (i + 1), D(draw(st.integers(0, 12))) / 100)
        for i in range(n)
    )
    base = tuple(D(draw(st.integers(0, 8))) / 10 for _ in range(n))
    tariff = (
        CapacityTariff(D(draw(st.integers(1, 30))), floor_kw=D("0.5"), months=draw(st.sampled_from([1, 12])))
        if draw(st.booleans())
        else None
    )
    limits = Limits(fuse_a=D(draw(st.integers(6, 14))), phases=1, voltage=D(100), capacity=tariff)
    request = ChargeRequest(
        D(draw(st.integers(1, n * hi))) / 40, T0, T0 + QUARTER * n, Charger(lo, hi, phases=1, voltage=D(100))
    )
    return Instance(request, prices, limits, base, D(draw(st.integers(0, 10))) / 10)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(medium())
def test_medium_instances_equal_the_dp_optimum(inst: Instance) -> None:
    plan = plan_charge(
        inst.request, inst.prices, inst.limits, base_load_kw=inst.base_at, month_peak_kw=inst.month_peak
    )
    currents = plan_currents(inst, plan)
    energy, clamped, _, ok = evaluate(inst, currents)
    assert ok
    complete, best = dp_optimum(inst)
    if not complete:
        assert not plan.complete
        return
    assert plan.complete
    assert energy >= Fraction(inst.request.energy_kwh)
    assert clamped == best, (currents, float(clamped), float(best))
