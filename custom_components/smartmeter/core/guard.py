"""Counter guard: keeps glitches out of cumulative registers.

A cumulative register (energy, gas, water, heat) only ever grows. The guard
accepts a reading when it is plausible and rejects:

- a decrease (a replayed old telegram, a glitch);
- a zero after a non-zero value (a meter or bridge that briefly reads 0);
- a jump that is physically impossible for the elapsed time, given a maximum
  power or flow (sensible defaults per medium, configurable).

A genuine discontinuity (the meter was replaced or its register reset) shows
up as readings that disagree with the last accepted value but agree with each
other. When ``confirmations`` such readings span at least ``confirm_seconds``,
the guard reports :attr:`Verdict.RESET` and starts the new series from them;
isolated faults never get that far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from .models import Medium

# Register units -> factor to the medium's base unit (kWh, m3, GJ, kvarh).
UNIT_FACTORS: dict[str, Decimal] = {
    "wh": Decimal("0.001"),
    "kwh": Decimal(1),
    "mwh": Decimal(1000),
    "gj": Decimal(1),
    "mj": Decimal("0.001"),
    "m3": Decimal(1),
    "l": Decimal("0.001"),
    "varh": Decimal("0.001"),
    "kvarh": Decimal(1),
}

# Maximum plausible rate per hour in base units: ~55 kW for a 3x80 A home
# connection, a G16 gas meter, a Q3=16 water meter, ~280 kW of district heat.
DEFAULT_MAX_RATE: dict[Medium, Decimal] = {
    Medium.ELECTRICITY: Decimal(55),
    Medium.GAS: Decimal(25),
    Medium.WATER: Decimal(16),
    Medium.HOT_WATER: Decimal(16),
    Medium.HEAT: Decimal(1),
    Medium.COOLING: Decimal(1),
    Medium.UNKNOWN: Decimal(100),
}


class Verdict(StrEnum):
    """What the guard decided about one reading."""

    ACCEPTED = "accepted"
    DECREASE = "decrease"
    ZERO = "zero"
    JUMP = "jump"
    RESET = "reset"


REJECTED = frozenset({Verdict.DECREASE, Verdict.ZERO, Verdict.JUMP})


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """Tunable limits of one register's guard."""

    max_rate_per_hour: Decimal
    unit_factor: Decimal = Decimal(1)
    confirmations: int = 3
    confirm_seconds: float = 60.0
    slack: Decimal = Decimal("0.001")  # in base units: one Wh / one litre

    @classmethod
    def for_register(cls, medium: Medium, unit: str | None, max_rate: Decimal | None = None) -> GuardLimits:
        """Defaults for a register of ``medium`` stated in ``unit``."""
        factor = UNIT_FACTORS.get((unit or "").lower(), Decimal(1))
        return cls(
            max_rate_per_hour=max_rate if max_rate is not None else DEFAULT_MAX_RATE[medium],
            unit_factor=factor,
        )


@dataclass(slots=True)
class CounterGuard:
    """The guard of one cumulative register (mutable state, one per register)."""

    limits: GuardLimits
    value: Decimal | None = None
    time: float | None = None
    rejected: dict[Verdict, int] = field(default_factory=dict)
    _candidates: list[tuple[Decimal, float]] = field(default_factory=list)

    def seed(self, value: Decimal, time: float) -> None:
        """Start from a known good value (restored after a restart)."""
        self.value = value
        self.time = time
        self._candidates.clear()

    def _plausible(self, old: Decimal, old_time: float, new: Decimal, new_time: float) -> Verdict:
        if new < old:
            return Verdict.ZERO if new == 0 else Verdict.DECREASE
        hours = Decimal(max(new_time - old_time, 0.0) / 3600)
        allowed = (self.limits.max_rate_per_hour * hours + self.limits.slack) / self.limits.unit_factor
        if new - old > allowed:
            return Verdict.JUMP
        return Verdict.ACCEPTED

    def check(self, value: Decimal, time: float) -> Verdict:
        """Judge a reading taken at ``time`` (seconds, any monotonic epoch)."""
        if self.value is None or self.time is None:
            self.seed(value, time)
            return Verdict.ACCEPTED
        if value == self.value:
            # unchanged (most telegrams): keep the time of the first sighting, so
            # a stale replay cannot shrink the allowance of the next real step
            self._candidates.clear()
            return Verdict.ACCEPTED
        verdict = self._plausible(self.value, self.time, value, time)
        if verdict is Verdict.ACCEPTED:
            self.value = value
            self.time = time
            self._candidates.clear()
            return verdict
        self.rejected[verdict] = self.rejected.get(verdict, 0) + 1
        if value != 0 and self._follows_candidates(value, time):
            self._candidates.append((value, time))
            first_time = self._candidates[0][1]
            if (
                len(self._candidates) >= self.limits.confirmations
                and time - first_time >= self.limits.confirm_seconds
            ):
                self.seed(value, time)
                return Verdict.RESET
        elif value != 0:
            self._candidates = [(value, time)]
        return verdict

    def _follows_candidates(self, value: Decimal, time: float) -> bool:
        if not self._candidates:
            return True
        last_value, last_time = self._candidates[-1]
        return self._plausible(last_value, last_time, value, time) is Verdict.ACCEPTED

    @property
    def rejected_total(self) -> int:
        """How many readings were rejected so far."""
        return sum(self.rejected.values())
