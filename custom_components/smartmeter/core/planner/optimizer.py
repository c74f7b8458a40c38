"""The charge-plan optimizer: the cheapest plan for a charge request, capacity tariff included.

The model (exact; the tests compare it with a brute force over every current assignment):

* **Time** is cut into the capacity tariff's quarter-hours, aligned to :00/:15/:30/:45 UTC
  (a local quarter in every real time zone, whose offsets are whole quarters, so daylight
  saving changes nothing: all arithmetic is in UTC). :func:`quarters` cuts ``[start,
  deadline)`` into them; the first and the last may be partial and count for their length.
  A quarter is planned only when price slots cover all of it (with several, the highest
  price); quarters without a price (tomorrow's prices not published yet) are left out.
* **Current**: in each quarter the charger runs at one whole-ampere current ``c`` in
  ``{0} U [min_current, max_current]`` for the whole slot. Grid power ``p = c·V·phases/1000``
  kW; energy into the battery ``p·hours·efficiency``.
* **Limits** per quarter, with ``b`` the base load at the quarter's (aligned) start:
  ``b + p <= limits.fuse_kw`` and ``b + p <= limits.max_import_kw`` when set (a quarter where
  the base load alone leaves less than ``min_current`` gets nothing); a quarter whose price is
  above ``request.price_cap`` is not used.
* **Peak**: a quarter's demand is its average net import over the full quarter,
  ``b + p·(slot length / 15 min)`` (the base load runs the whole quarter; a partial slot's
  charging energy is spread over the quarter). The baseline peak is ``max(month_peak_kw, b of
  every priced quarter)`` (what the month's peak becomes without the plan); the plan's peak
  ``peak_kw`` is the maximum of the baseline and the demand of its charging quarters, reported
  with or without a capacity tariff.
* **Cost**: ``energy_cost = Σ price·p·hours`` (grid energy at the real prices) and, with a
  capacity tariff, ``capacity_cost = monthly_cost(peak) - monthly_cost(baseline)`` (the
  increase, so nothing until the peak passes ``max(baseline, floor_kw)``). The plan
  minimises ``energy_cost + capacity_cost`` subject to delivering at least
  ``request.energy_kwh`` (overshoot is allowed but costs). Prices below zero count as zero
  when choosing (a car takes no more than it asks, so a negative price cannot be exploited by
  charging more): every zero-or-negative quarter is free to the optimizer, ties going to the
  lower real price, then to the earlier quarter. The window is treated as one billing month.
* **Continuous** requests use one contiguous run of quarters (consecutive in time, every one
  at ``min_current`` or more); split requests any quarters.
* **Incomplete**: when the limits, the price cap, the deadline or missing prices leave less
  than asked, the plan delivers the maximum possible (every usable quarter at its highest
  current; for a continuous request, the run that holds the most, the cheapest of equals)
  and ``complete`` is False.

The algorithm. All quantities are integers: currents; slot lengths in µs; powers scaled by a
power of ten and by the quarter length (so a quarter's demand ``B·D + K·c·d`` is an int);
prices scaled by a power of ten (clamped at zero); costs compared as ``a·energy + b·peak
increase`` with integer ``a, b``.

1. *Peak levels.* The optimum's peak is the baseline (no increase) or the demand of some
   quarter at some current. For a level ``P`` each quarter's current is capped at
   ``cap_q(P) = min(fuse cap, ⌊(P - B_q·D)/(K·d_q)⌋)``, and ``G(P)`` is the cheapest energy
   cost with those caps; the optimum is ``min_P b·(P - L)⁺ + a·G(P)``. ``G`` does not
   increase with ``P``, so over an interval of levels ``[P_a, P_b]`` no level does better
   than ``b·(P_a - L)⁺ + a·G(P_b)``: the levels are searched by divide and conquer from the
   lowest feasible one (binary search), dropping every interval that bound rules out.
2. *G for split requests* (a semi-continuous knapsack). The partial first/last quarters'
   currents are enumerated; the full quarters are solved in units of ampere-quarters over
   the quarters sorted by (price, time). Exchange arguments (moving a unit of current to a
   cheaper quarter never costs more, prices being >= 0) show an optimum of one of two forms:
   (S1) the shortest price-ordered prefix that can hold the need, every quarter at
   ``min_current`` and the rest filled cheapest first; or (S2) a prefix at full caps, the next
   usable quarter ``u`` unused, and the remainder ``R <= min_current² - 1`` delivered by
   later quarters each above ``cap_u`` — the same problem on the rest of the list with
   ``min_current = cap_u + 1``, solved recursively (memoised). The minimum over these
   candidates is the exact optimum.
3. *G for continuous requests*: every window of consecutive usable quarters that could be
   optimal (extending a window past the point where all-at-minimum meets the need never
   helps), each solved exactly (every quarter at ``min_current`` or more, extras cheapest
   first, the partial quarters enumerated).
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import product

from .models import QUARTER, ChargeRequest, Limits, Plan, PlanSlot, PriceSlot

__all__ = ["energy_needed", "plan_charge", "quarters"]

_US = timedelta(microseconds=1)
_D = 900_000_000  # µs in a quarter
_US_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def energy_needed(*, current_soc: Decimal, target_soc: Decimal, battery_kwh: Decimal) -> Decimal:
    """The energy (kWh into the battery) from ``current_soc`` to ``target_soc`` (in %).

    0 when the target is not above the current state of charge.

    Raises:
        ValueError: a state of charge outside 0..100 or a battery size not above 0.
    """
    for name, soc in (("current_soc", current_soc), ("target_soc", target_soc)):
        if not Decimal(soc).is_finite() or not 0 <= soc <= 100:
            raise ValueError(f"{name} must be within 0..100 %, not {soc}")
    if not Decimal(battery_kwh).is_finite() or battery_kwh <= 0:
        raise ValueError(f"battery_kwh must be above 0, not {battery_kwh}")
    if target_soc <= current_soc:
        return Decimal(0)
    return (Decimal(target_soc) - Decimal(current_soc)) * Decimal(battery_kwh) / 100


def _utc(when: datetime, name: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return when.astimezone(UTC)


def _quarter_floor(when: datetime) -> datetime:
    micros = (when - _EPOCH) // _US
    return _EPOCH + timedelta(microseconds=micros - micros % _D)


def quarters(prices: Sequence[PriceSlot], start: datetime, deadline: datetime) -> list[PriceSlot]:
    """The quarter-hours of ``[start, deadline)`` that have a price, each with its price.

    Quarters are aligned to :00/:15/:30/:45 UTC; the first and the last are cut at
    ``start`` and ``deadline``. A quarter is kept only when ``prices`` cover all of it
    (hourly, 15-minute or mixed lists); when several slots cover it, the highest price
    counts (``peak`` when any of them is a peak slot).
    """
    start, deadline = _utc(start, "start"), _utc(deadline, "deadline")
    if deadline <= start:
        return []
    spans = sorted(
        (
            (_utc(slot.start, "price start"), _utc(slot.end, "price end"), slot)
            for slot in prices
            if slot.end > start and slot.start < deadline and slot.end > slot.start
        ),
        key=lambda span: (span[0], span[1]),
    )
    result: list[PriceSlot] = []
    first = 0
    quarter = _quarter_floor(start)
    while quarter < deadline:
        begin, end = max(quarter, start), min(quarter + QUARTER, deadline)
        while first < len(spans) and spans[first][1] <= begin:
            first += 1
        covered = begin
        price: Decimal | None = None
        peak = False
        index = first
        while index < len(spans) and spans[index][0] < end:
            slot_start, slot_end, slot = spans[index]
            index += 1
            if slot_end <= begin:
                continue
            if slot_start > covered:
                break
            covered = max(covered, slot_end)
            price = slot.price if price is None else max(price, slot.price)
            peak = peak or slot.peak
        if price is not None and covered >= end:
            result.append(PriceSlot(begin, end, price, peak))
        quarter += QUARTER
    return result


def _scale(values: Sequence[Decimal]) -> int:
    """The number of decimals that makes every value an integer."""
    digits = 0
    for value in values:
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        digits = max(digits, -exponent)
    return digits


def _to_int(value: Decimal, digits: int) -> int:
    return int(value.scaleb(digits))


@dataclass(slots=True)
class _Quarter:
    """One priced quarter of the grid, as integers."""

    slot: PriceSlot
    micros: int  # slot length
    base_kw: Decimal
    base: int  # base load, power scale
    pi: int  # price (clamped at 0), price scale
    capf: int  # highest current the fuse/import limit and the price cap allow (< lo: unusable)


class _Optimizer:
    """One planning problem in integers; ``G`` evaluations and the search over peak levels."""

    def __init__(
        self,
        request: ChargeRequest,
        grid: list[PriceSlot],
        limits: Limits,
        base_load_kw: Decimal | Callable[[datetime], Decimal],
        month_peak_kw: Decimal,
    ) -> None:
        charger = request.charger
        self.request, self.limits = request, limits
        self.lo, self.hi = charger.min_current, charger.max_current
        self.k_kw = charger.power_kw(1)
        bases = [
            Decimal(base_load_kw(_quarter_floor(slot.start)))
            if callable(base_load_kw)
            else Decimal(base_load_kw)
            for slot in grid
        ]
        line_limits = [v for v in (limits.fuse_kw, limits.max_import_kw) if v is not None]
        capacity = limits.capacity
        floor_kw = capacity.floor_kw if capacity is not None else Decimal(0)
        powers = [*bases, self.k_kw, *line_limits, Decimal(month_peak_kw), floor_kw]
        self.e = _scale(powers)
        self.K = _to_int(self.k_kw, self.e)
        if self.K <= 0:
            raise ValueError("the charger's voltage and phases must give a power above 0")
        prices = [slot.price for slot in grid]
        self.s = _scale(prices)
        limit = min((_to_int(v, self.e) for v in line_limits), default=None)
        cap_price = request.price_cap
        self.quarters: list[_Quarter] = []
        for slot, base_kw in zip(grid, bases, strict=True):
            base = _to_int(base_kw, self.e)
            capf = self.hi
            if limit is not None:
                capf = min(capf, (limit - base) // self.K)
            if cap_price is not None and slot.price > cap_price:
                capf = -1
            micros = (slot.end - slot.start) // _US
            pi = max(0, _to_int(slot.price, self.s))
            self.quarters.append(_Quarter(slot, micros, base_kw, base, pi, capf))
        self.n = len(self.quarters)
        # Need in ampere-µs.
        need = (
            Fraction(request.energy_kwh) * _US_PER_HOUR / (Fraction(self.k_kw) * Fraction(charger.efficiency))
        )
        self.need = math.ceil(need)
        # Peaks in power scale x quarter length.
        baseline_kw = max([Decimal(month_peak_kw), *bases])
        self.baseline_kw = baseline_kw
        self.L = max(_to_int(baseline_kw, self.e), _to_int(floor_kw, self.e)) * _D
        # total = a·energy units + b·peak units above L, both integers.
        kappa = Fraction(self.k_kw) / (10**self.s * _US_PER_HOUR)
        if capacity is not None:
            rho = Fraction(capacity.price_per_kw_year) / capacity.months / (10**self.e * _D)
        else:
            rho = Fraction(0)
        common = math.lcm(kappa.denominator, rho.denominator)
        self.alpha: int = kappa.numerator * (common // kappa.denominator)
        self.beta: int = rho.numerator * (common // rho.denominator)
        usable = [i for i, q in enumerate(self.quarters) if q.capf >= self.lo]
        self.usable = usable
        self.partial = [i for i in usable if self.quarters[i].micros != _D]
        full = [i for i in usable if self.quarters[i].micros == _D]
        full.sort(key=lambda i: (self.quarters[i].pi, self.quarters[i].slot.price, i))
        self.full_order = full
        self.full_pi = [self.quarters[i].pi for i in full]

    # ---- caps ----
    def cap(self, index: int, level: int | None) -> int:
        """The highest current of quarter ``index`` under peak level ``level`` (None: no level)."""
        q = self.quarters[index]
        if level is None:
            return q.capf
        return min(q.capf, (level - q.base * _D) // (self.K * q.micros))

    def demand(self, index: int, current: int) -> int:
        """Quarter ``index``'s demand at ``current``, in peak units."""
        q = self.quarters[index]
        return q.base * _D + self.K * current * q.micros

    def max_energy(self, level: int | None) -> int:
        """The most ampere-µs the quarters hold under ``level``."""
        if not self.request.continuous:
            return sum(
                max(0, c) * self.quarters[i].micros
                for i in self.usable
                if (c := self.cap(i, level)) >= self.lo
            )
        best = run = 0
        previous_end: datetime | None = None
        for i, q in enumerate(self.quarters):
            c = self.cap(i, level)
            if c < self.lo:
                run, previous_end = 0, None
                continue
            if previous_end is None or q.slot.start != previous_end:
                run = 0
            run += c * q.micros
            previous_end = q.slot.end
            best = max(best, run)
        return best

    # ---- G for split requests ----
    def _solve(
        self,
        caps: list[int],
        pos0: int,
        need: int,
        lo: int,
        memo: dict[tuple[int, int, int], tuple[int, int] | None],
    ) -> tuple[int, int] | None:
        """Cheapest (cost, decision) for ``need`` ampere-quarters from full quarters at positions >= pos0.

        Currents in ``{0} U [lo, cap]``; cost in price units x amperes. The decision is -1
        for the S1 form or the position of the unused quarter ``u`` of the S2 form.
        """
        if need <= 0:
            return 0, -1
        key = (pos0, need, lo)
        if key in memo:
            return memo[key]
        pis = self.full_pi
        square = lo * lo - 1
        best: tuple[int, int] | None = None
        walked: list[int] = []
        held = cost_full = 0
        found = False
        for j in range(pos0, len(caps)):
            c = caps[j]
            if c < lo:
                continue
            rest = need - held
            if rest <= square:
                sub = self._solve(caps, j + 1, rest, c + 1, memo)
                if sub is not None and (best is None or cost_full + sub[0] < best[0]):
                    best = (cost_full + sub[0], j)
            walked.append(j)
            if held + c >= need:
                found = True
                break
            held += c
            cost_full += pis[j] * c
        if found:
            extra = need - lo * len(walked)
            cost = lo * sum(pis[w] for w in walked)
            for w in walked:
                if extra <= 0:
                    break
                take = min(caps[w] - lo, extra)
                cost += pis[w] * take
                extra -= take
            if best is None or cost <= best[0]:
                best = (cost, -1)
        memo[key] = best
        return best

    def _assign(
        self,
        caps: list[int],
        pos0: int,
        need: int,
        lo: int,
        memo: dict[tuple[int, int, int], tuple[int, int] | None],
        out: dict[int, int],
    ) -> None:
        """Write the currents of :meth:`_solve`'s choice into ``out`` (quarter index -> A)."""
        if need <= 0:
            return
        result = self._solve(caps, pos0, need, lo, memo)
        assert result is not None
        decision = result[1]
        held = 0
        walked: list[int] = []
        for j in range(pos0, len(caps)):
            c = caps[j]
            if c < lo:
                continue
            if j == decision:
                for w in walked:
                    out[self.full_order[w]] = caps[w]
                self._assign(caps, j + 1, need - held, c + 1, memo, out)
                return
            walked.append(j)
            if held + c >= need:
                break
            held += c
        extra = need - lo * len(walked)
        for w in walked:
            take = min(caps[w] - lo, max(extra, 0))
            out[self.full_order[w]] = lo + take
            extra -= take

    def _options(self, index: int, cap: int) -> list[int]:
        return [0, *range(self.lo, cap + 1)] if cap >= self.lo else [0]

    def split(self, level: int | None, record: bool = False) -> tuple[int, dict[int, int]] | None:
        """G(level) for a split request: (cost units, currents if ``record``), None if infeasible."""
        caps = [self.cap(i, level) for i in self.full_order]
        memo: dict[tuple[int, int, int], tuple[int, int] | None] = {}
        partial = self.partial
        choices = [self._options(i, self.cap(i, level)) for i in partial]
        best: tuple[int, tuple[int, ...], int] | None = None
        for combo in product(*choices):
            rest = self.need
            cost = 0
            for i, c in zip(partial, combo, strict=True):
                rest -= c * self.quarters[i].micros
                cost += self.quarters[i].pi * c * self.quarters[i].micros
            units = -(-rest // _D) if rest > 0 else 0
            sub = self._solve(caps, 0, units, self.lo, memo)
            if sub is None:
                continue
            cost += sub[0] * _D
            if best is None or cost < best[0]:
                best = (cost, combo, units)
        if best is None:
            return None
        currents: dict[int, int] = {}
        if record:
            currents = {i: c for i, c in zip(partial, best[1], strict=True) if c}
            self._assign(caps, 0, best[2], self.lo, memo, currents)
        return best[0], currents

    # ---- G for continuous requests ----
    def continuous(self, level: int | None, record: bool = False) -> tuple[int, dict[int, int]] | None:
        """G(level) for a continuous request: the cheapest window, exactly."""
        lo, quarters = self.lo, self.quarters
        caps = [self.cap(i, level) for i in range(self.n)]
        best: tuple[int, int, int, tuple[int, ...], int] | None = None  # cost, start, end, partial, units
        for first in range(self.n):
            if caps[first] < lo:
                continue
            extras: list[tuple[int, int, int]] = []  # (pi, index, room) of full quarters
            partial: list[int] = []
            full_pi = full_count = 0
            held_at_lo = held_at_cap = 0
            for last in range(first, self.n):
                q = quarters[last]
                if caps[last] < lo or (last > first and q.slot.start != quarters[last - 1].slot.end):
                    break
                if q.micros == _D:
                    insort(extras, (q.pi, last, caps[last] - lo))
                    full_pi += q.pi
                    full_count += 1
                else:
                    partial.append(last)
                held_at_lo += lo * q.micros
                held_at_cap += caps[last] * q.micros
                if held_at_cap >= self.need:
                    for combo in product(*(range(lo, caps[i] + 1) for i in partial)):
                        rest = self.need - lo * full_count * _D
                        cost = lo * full_pi * _D
                        for i, c in zip(partial, combo, strict=True):
                            rest -= c * quarters[i].micros
                            cost += quarters[i].pi * c * quarters[i].micros
                        units = -(-rest // _D) if rest > 0 else 0
                        for pi, _, room in extras:
                            if units <= 0:
                                break
                            take = min(room, units)
                            cost += pi * take * _D
                            units -= take
                        if units > 0:
                            continue
                        if best is None or cost < best[0]:
                            best = (cost, first, last, combo, -(-rest // _D) if rest > 0 else 0)
                if held_at_lo >= self.need:
                    break
        if best is None:
            return None
        currents: dict[int, int] = {}
        if record:
            cost, first, last, combo, units = best
            partial_set = dict(
                zip([i for i in range(first, last + 1) if quarters[i].micros != _D], combo, strict=True)
            )
            window = sorted((quarters[i].pi, i) for i in range(first, last + 1) if quarters[i].micros == _D)
            currents.update(partial_set)
            for _, i in window:
                take = min(caps[i] - lo, max(units, 0))
                currents[i] = lo + take
                units -= take
        return best[0], currents

    # ---- the search ----
    def g(self, level: int | None, record: bool = False) -> tuple[int, dict[int, int]] | None:
        """The cheapest energy cost under ``level``."""
        if self.request.continuous:
            return self.continuous(level, record)
        return self.split(level, record)

    def total(self, level: int, energy: int) -> int:
        """a·energy + b·(level - L)⁺: the objective, in integer units."""
        return self.alpha * energy + self.beta * max(0, level - self.L)

    def incomplete(self) -> dict[int, int]:
        """Every usable quarter at its highest current (continuous: the best run)."""
        if not self.request.continuous:
            return {i: self.quarters[i].capf for i in self.usable}
        best: tuple[int, int, list[int]] | None = None  # -energy, total, run
        run: list[int] = []
        runs: list[list[int]] = []
        for i, q in enumerate(self.quarters):
            if q.capf < self.lo or (run and q.slot.start != self.quarters[run[-1]].slot.end):
                if run:
                    runs.append(run)
                run = []
            if q.capf >= self.lo:
                run.append(i)
        if run:
            runs.append(run)
        for candidate in runs:
            energy = sum(self.quarters[i].capf * self.quarters[i].micros for i in candidate)
            cost = sum(
                self.quarters[i].pi * self.quarters[i].capf * self.quarters[i].micros for i in candidate
            )
            peak = max(self.demand(i, self.quarters[i].capf) for i in candidate)
            key = (-energy, self.total(peak, cost), candidate)
            if best is None or key[:2] < best[:2]:
                best = key
        if best is None:
            return {}
        return {i: self.quarters[i].capf for i in best[2]}

    def solve(self) -> tuple[dict[int, int], bool]:
        """The optimal currents (quarter index -> A) and whether they meet the need."""
        if self.need <= 0:
            return {}, True
        if self.max_energy(None) < self.need:
            return self.incomplete(), False
        if self.limits.capacity is None or self.beta == 0:
            result = self.g(None, record=True)
            assert result is not None
            return result[1], True
        levels = sorted(
            {
                d
                for i in self.usable
                for c in range(self.lo, self.quarters[i].capf + 1)
                if (d := self.demand(i, c)) > self.L
            }
        )
        levels.insert(0, self.L)
        # The lowest feasible level (feasibility grows with the level).
        low, high = 0, len(levels) - 1
        while low < high:
            mid = (low + high) // 2
            if self.max_energy(levels[mid]) >= self.need:
                high = mid
            else:
                low = mid + 1
        known: dict[int, int] = {}

        def evaluate(index: int) -> int:
            result = self.g(levels[index])
            assert result is not None
            known[index] = result[0]
            return self.total(levels[index], result[0])

        best_total, best_index = min((evaluate(low), low), (evaluate(len(levels) - 1), len(levels) - 1))
        stack = [(low, len(levels) - 1)]
        while stack:
            a, b = stack.pop()
            if b - a <= 1:
                continue
            if self.total(levels[a + 1], known[b]) >= best_total:
                continue
            mid = (a + b) // 2
            value = evaluate(mid)
            best_total, best_index = min((best_total, best_index), (value, mid))
            stack.append((mid, b))
            stack.append((a, mid))
        result = self.g(levels[best_index], record=True)
        assert result is not None
        return result[1], True


def plan_charge(
    request: ChargeRequest,
    prices: Sequence[PriceSlot],
    limits: Limits,
    *,
    base_load_kw: Decimal | Callable[[datetime], Decimal] = Decimal(0),
    month_peak_kw: Decimal = Decimal(0),
) -> Plan:
    """The cheapest plan for ``request`` (see the module docstring for the exact model).

    ``base_load_kw`` is the household's expected load (a constant, or a function of a
    quarter's UTC start); ``month_peak_kw`` the month's highest quarter-hour demand so far.

    Raises:
        ValueError: a deadline not after the start, a negative energy, naive datetimes, or
            an impossible charger (minimum current below 1 A or above the maximum,
            efficiency not in (0, 1]).
    """
    start, deadline = _utc(request.start, "start"), _utc(request.deadline, "deadline")
    if deadline <= start:
        raise ValueError("the deadline must be after the start")
    if not request.energy_kwh.is_finite() or request.energy_kwh < 0:
        raise ValueError(f"energy_kwh must be 0 or more, not {request.energy_kwh}")
    charger = request.charger
    if not 1 <= charger.min_current <= charger.max_current:
        raise ValueError("the charger needs 1 <= min_current <= max_current")
    if not 0 < charger.efficiency <= 1:
        raise ValueError("the charger's efficiency must be within (0, 1]")
    if charger.phases < 1 or charger.voltage <= 0:
        raise ValueError("the charger needs a phase and a voltage")
    if limits.capacity is not None and limits.capacity.months < 1:
        raise ValueError("the capacity tariff needs months >= 1")
    grid = quarters(prices, start, deadline)
    optimizer = _Optimizer(request, grid, limits, base_load_kw, month_peak_kw)
    currents, complete = optimizer.solve()
    return _plan(optimizer, currents, complete)


def _plan(optimizer: _Optimizer, currents: dict[int, int], complete: bool) -> Plan:
    charger = optimizer.request.charger
    slots: list[PlanSlot] = []
    energy = energy_cost = Decimal(0)
    peak = optimizer.baseline_kw
    for index in sorted(currents):
        current = currents[index]
        if current <= 0:
            continue
        q = optimizer.quarters[index]
        hours = Decimal(q.micros) / _US_PER_HOUR
        power = charger.power_kw(current)
        slot_energy = power * hours * charger.efficiency
        slots.append(PlanSlot(q.slot.start, q.slot.end, current, power, slot_energy, q.slot.price))
        energy += slot_energy
        energy_cost += q.slot.price * power * hours
        peak = max(peak, q.base_kw + power * Decimal(q.micros) / _D)
    capacity = optimizer.limits.capacity
    capacity_cost = Decimal(0)
    if capacity is not None and slots:
        capacity_cost = capacity.monthly_cost(peak) - capacity.monthly_cost(optimizer.baseline_kw)
    return Plan(tuple(slots), energy, energy_cost, capacity_cost, peak, complete)
