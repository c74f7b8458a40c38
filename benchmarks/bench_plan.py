"""Charge planning: plan_charge over 7 days of 15-minute prices with a capacity tariff.

Issue 7. The instance: 672 quarter-hour prices (2025-01-06 00:00 UTC on; a daily
shape with a night trough and morning/evening peaks plus seeded noise), a
Belgian capacity tariff (53.26 EUR/kW/year, floor 2.5 kW, month peak so far
3.1 kW), a 25 A three-phase main fuse, a household base load that follows the
time of day (seeded noise), a 6-16 A three-phase charger and 40 kWh to charge.

``plan_charge`` is timed after a warm-up, ``RUNS`` times, and the median is
reported. Beside it, measured in the same run: a naive planner (cheapest
quarters first at the highest current the fuse allows, blind to the capacity
tariff) and the total cost of its plan under the same model, which shows what
capacity awareness is worth. Both plans are checked (fuse, charger range,
energy, slots on the price grid, the reported costs recomputed exactly); a
wrong plan fails the benchmark (exit status 1). The optimizer must also not
cost more than the naive plan.

Environment: ``BENCH_PLAN_DAYS`` (default 7), ``BENCH_PLAN_RUNS`` (default 25).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from custom_components.smartmeter.core.planner.models import (
    QUARTER,
    CapacityTariff,
    Charger,
    ChargeRequest,
    Limits,
    Plan,
    PriceSlot,
)
from custom_components.smartmeter.core.planner.optimizer import plan_charge, quarters

GOAL_MS = 50
START = datetime(2025, 1, 6, tzinfo=UTC)
TARIFF = CapacityTariff(Decimal("53.26"), floor_kw=Decimal("2.5"))
LIMITS = Limits(fuse_a=Decimal(25), phases=3, capacity=TARIFF)
CHARGER = Charger(6, 16, phases=3)
MONTH_PEAK = Decimal("3.1")
ENERGY = Decimal(40)


def price_list(days: int, seed: int = 7) -> list[PriceSlot]:
    """15-minute prices (EUR/kWh, 5 decimals): night trough, morning and evening peaks, noise."""
    rng = random.Random(seed)  # noqa: S311 - synthetic prices, not secrets
    slots = []
    for index in range(days * 96):
        hour = (index % 96) / 4
        shape = 0.10 + 0.08 * math.exp(-((hour - 8) ** 2) / 3) + 0.12 * math.exp(-((hour - 19) ** 2) / 4)
        shape -= 0.05 * math.exp(-((hour - 3) ** 2) / 5)
        shape += 0.02 * math.sin(index / 96 * 2.1)  # day to day
        price = Decimal(f"{shape + rng.gauss(0, 0.015):.5f}")
        start = START + QUARTER * index
        slots.append(PriceSlot(start, start + QUARTER, price))
    return slots


def base_loads(days: int, seed: int = 11) -> dict[datetime, Decimal]:
    """Household load per quarter (kW): low at night, a morning bump, a high evening."""
    rng = random.Random(seed)  # noqa: S311 - synthetic loads
    loads = {}
    for index in range(days * 96):
        hour = (index % 96) / 4
        level = 0.35 if hour < 6 else 1.2 if hour < 9 else 0.6 if hour < 17 else 2.2 if hour < 22 else 0.8
        loads[START + QUARTER * index] = Decimal(f"{max(0.1, level + rng.gauss(0, 0.25)):.3f}")
    return loads


def naive_plan(
    request: ChargeRequest, prices: list[PriceSlot], loads: dict[datetime, Decimal]
) -> dict[datetime, int]:
    """Cheapest quarters first at the highest current the fuse allows (no capacity awareness)."""
    charger, fuse = request.charger, LIMITS.fuse_kw
    assert fuse is not None
    k = charger.power_kw(1)
    remaining = request.energy_kwh
    plan: dict[datetime, int] = {}
    for slot in sorted(quarters(prices, request.start, request.deadline), key=lambda s: (s.price, s.start)):
        if remaining <= 0:
            break
        top = min(charger.max_current, int((fuse - loads[slot.start]) / k))
        if top < charger.min_current:
            continue
        hours = Decimal((slot.end - slot.start) / timedelta(hours=1))
        wanted = math.ceil(remaining / (k * hours * charger.efficiency))
        current = min(top, max(charger.min_current, wanted))
        plan[slot.start] = current
        remaining -= k * current * hours * charger.efficiency
    return plan


def exact_costs(
    currents: dict[datetime, int], prices: list[PriceSlot], loads: dict[datetime, Decimal]
) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """(energy kWh, energy cost, capacity cost, peak kW) of a plan, in fractions, from the model."""
    by_start = {slot.start: slot for slot in prices}
    k = Fraction(CHARGER.power_kw(1))
    baseline = max([Fraction(MONTH_PEAK), *(Fraction(v) for v in loads.values())])
    energy = cost = Fraction(0)
    peak = baseline
    for start, current in currents.items():
        power = k * current
        energy += power / 4 * Fraction(CHARGER.efficiency)
        cost += Fraction(by_start[start].price) * power / 4
        peak = max(peak, Fraction(loads[start]) + power)

    def monthly(p: Fraction) -> Fraction:
        return max(p, Fraction(TARIFF.floor_kw)) * Fraction(TARIFF.price_per_kw_year) / TARIFF.months

    return energy, cost, monthly(peak) - monthly(baseline), peak


def check_plan(
    plan: Plan, request: ChargeRequest, prices: list[PriceSlot], loads: dict[datetime, Decimal]
) -> list[str]:
    """What is wrong with ``plan`` (empty when every constraint holds and its figures are right)."""
    problems = []
    fuse = LIMITS.fuse_kw
    assert fuse is not None
    grid = {slot.start: slot for slot in prices}
    for slot in plan.slots:
        quarter = grid.get(slot.start)
        if quarter is None or quarter.end != slot.end or quarter.price != slot.price:
            problems.append(f"slot {slot.start} not on the price grid")
        if not CHARGER.min_current <= slot.current <= CHARGER.max_current:
            problems.append(f"slot {slot.start}: {slot.current} A outside the charger's range")
        if loads[slot.start] + slot.power_kw > fuse:
            problems.append(f"slot {slot.start}: {loads[slot.start] + slot.power_kw} kW over the fuse")
        if not request.start <= slot.start < slot.end <= request.deadline:
            problems.append(f"slot {slot.start} outside the window")
    energy, cost, capacity, peak = exact_costs({s.start: s.current for s in plan.slots}, prices, loads)
    tolerance = Fraction(1, 10**15)
    if not plan.complete or energy < Fraction(request.energy_kwh):
        problems.append(f"delivers {float(energy)} kWh of {request.energy_kwh}")
    for name, reported, exact in (
        ("energy", plan.energy_kwh, energy),
        ("energy cost", plan.energy_cost, cost),
        ("capacity cost", plan.capacity_cost, capacity),
        ("peak", plan.peak_kw, peak),
    ):
        if reported is None or abs(Fraction(reported) - exact) > tolerance:
            problems.append(f"{name} reported {reported}, model says {float(exact)}")
    return problems


def _median_ms(func: Callable[[], object], runs: int) -> float:
    func()  # warm-up
    func()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        func()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def run() -> int:
    """Benchmark entry point (see :mod:`benchmarks`)."""
    days = int(os.environ.get("BENCH_PLAN_DAYS", "7"))
    runs = int(os.environ.get("BENCH_PLAN_RUNS", "25"))
    prices, loads = price_list(days), base_loads(days)
    request = ChargeRequest(ENERGY, START, START + timedelta(days=days), CHARGER)

    def ours() -> Plan:
        return plan_charge(request, prices, LIMITS, base_load_kw=loads.__getitem__, month_peak_kw=MONTH_PEAK)

    plan = ours()
    problems = check_plan(plan, request, prices, loads)
    naive = naive_plan(request, prices, loads)
    naive_energy, naive_cost, naive_capacity, naive_peak = exact_costs(naive, prices, loads)
    if naive_energy < Fraction(request.energy_kwh):
        problems.append("the naive plan falls short (benchmark bug)")
    if plan.total_cost > naive_cost + naive_capacity:
        problems.append(
            f"costs {plan.total_cost} EUR, more than the naive {float(naive_cost + naive_capacity)}"
        )
    for problem in problems:
        print(f"WRONG PLAN: {problem}")
    if problems:
        return 1
    ours_ms = _median_ms(ours, runs)
    naive_ms = _median_ms(lambda: naive_plan(request, prices, loads), runs)
    slots = len(prices)
    print(
        f"{'planner':<32} {'quarters':>8} {'median ms':>10} {'total EUR':>10} {'energy EUR':>10} {'capacity EUR':>12} {'peak kW':>8} {'charging q':>10}"
    )
    print(
        f"{'plan_charge (capacity-aware)':<32} {slots:>8} {ours_ms:>10.2f} {plan.total_cost:>10.2f} "
        f"{plan.energy_cost:>10.2f} {plan.capacity_cost:>12.2f} {plan.peak_kw:>8.2f} {len(plan.slots):>10}"
    )
    print(
        f"{'naive cheapest-first, max current':<32} {slots:>8} {naive_ms:>10.2f} {float(naive_cost + naive_capacity):>10.2f} "
        f"{float(naive_cost):>10.2f} {float(naive_capacity):>12.2f} {float(naive_peak):>8.2f} {len(naive):>10}"
    )
    saving = float(naive_cost + naive_capacity) - float(plan.total_cost)
    print(
        f"capacity awareness saves {saving:.2f} EUR on {request.energy_kwh} kWh (median of {runs} runs, after a warm-up)"
    )
    print(f"target plan_{slots}_slots_ms {ours_ms:.2f} {GOAL_MS}")
    return 0
