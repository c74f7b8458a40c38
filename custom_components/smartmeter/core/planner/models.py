"""The planner's shared models: prices, limits, the capacity tariff, a charge request and its plan.

All times are aware datetimes in UTC; powers in kW, energies in kWh, prices in
currency per kWh, all exact :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

QUARTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class PriceSlot:
    """The unit price over ``[start, end)`` (15 or 60 minutes, or a time-of-use window)."""

    start: datetime
    end: datetime
    price: Decimal
    # Whether the slot is in a peak period (a time-of-use schedule or the meter's tariff register).
    peak: bool = False


@dataclass(frozen=True, slots=True)
class CapacityTariff:
    """A capacity tariff such as Belgium's (Flanders, since 2023).

    The month's peak is the highest average net import over a fixed quarter-hour
    (``interval``); the bill uses the average of the last ``months`` monthly peaks,
    each at least ``floor_kw``, at ``price_per_kw_year``.
    """

    price_per_kw_year: Decimal
    floor_kw: Decimal = Decimal("2.5")
    months: int = 12
    interval: timedelta = QUARTER

    def monthly_cost(self, peak_kw: Decimal) -> Decimal:
        """What one month's peak adds to the yearly bill (its share of the 12-month average)."""
        return max(peak_kw, self.floor_kw) * self.price_per_kw_year / self.months


@dataclass(frozen=True, slots=True)
class Limits:
    """What the connection allows: the main fuse per phase, a fixed import cap, a capacity tariff."""

    fuse_a: Decimal | None = None
    phases: int = 1
    voltage: Decimal = Decimal(230)
    max_import_kw: Decimal | None = None
    capacity: CapacityTariff | None = None

    @property
    def fuse_kw(self) -> Decimal | None:
        """The fuse as a total power (all phases)."""
        if self.fuse_a is None:
            return None
        return self.fuse_a * self.voltage * self.phases / 1000


@dataclass(frozen=True, slots=True)
class Charger:
    """A charger (or any deferrable load) whose current can be set in whole amperes."""

    min_current: int = 6
    max_current: int = 16
    phases: int = 1
    voltage: Decimal = Decimal(230)
    efficiency: Decimal = Decimal(1)  # energy into the battery per kWh from the grid

    def power_kw(self, current: int) -> Decimal:
        """Grid power at ``current`` amperes."""
        return Decimal(current) * self.voltage * self.phases / 1000


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """Charge ``energy_kwh`` (into the battery) between ``start`` and ``deadline``."""

    energy_kwh: Decimal
    start: datetime
    deadline: datetime
    charger: Charger = Charger()
    continuous: bool = False
    price_cap: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlanSlot:
    """Charge at ``current`` A (``power_kw``) over ``[start, end)`` at ``price``."""

    start: datetime
    end: datetime
    current: int
    power_kw: Decimal
    energy_kwh: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class Plan:
    """A charge plan: its slots, the energy it delivers and what it costs.

    ``capacity_cost`` is the increase of the month's capacity charge the plan
    causes (0 when it stays under the month's peak). ``complete`` is False when
    the limits, the price cap or the deadline leave less energy than asked:
    the plan then delivers what it can, cheapest first.
    """

    slots: tuple[PlanSlot, ...]
    energy_kwh: Decimal
    energy_cost: Decimal
    capacity_cost: Decimal
    peak_kw: Decimal | None
    complete: bool

    @property
    def total_cost(self) -> Decimal:
        """Energy plus capacity cost."""
        return self.energy_cost + self.capacity_cost

    def slot_at(self, when: datetime) -> PlanSlot | None:
        """The slot running at ``when``, if any."""
        for slot in self.slots:
            if slot.start <= when < slot.end:
                return slot
        return None
