"""The planner entry: peak periods, prices, capacity limits and charge plans for one grid connection.

It follows the meter's entities (a smartmeter electricity meter, or any power
and energy sensors) and a price source, keeps the capacity tariff's quarter
demand and month peak (:class:`~.core.planner.capacity.CapacityTracker`,
persisted across restarts) and holds the active charge plan
(:func:`~.core.planner.optimizer.plan_charge`), which drives the ``charge now``
binary sensor and the recommended charging current.

No polling: state changes of the followed entities update the tracker at once;
the entities are refreshed every 10 seconds and at every quarter-hour, which
also fires the events (a peak period starts or ends; the quarter will set a new
month peak). A plan is redone when the price list changes (tomorrow's prices
arriving at midday).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers.event import async_track_state_change_event, async_track_time_interval
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .const import (
    CONF_CAPACITY,
    CONF_CAPACITY_FLOOR,
    CONF_CAPACITY_PRICE,
    CONF_CURRENT_ENTITIES,
    CONF_DEMAND_ENTITY,
    CONF_ENERGY_ENTITIES,
    CONF_EXPORT_ENERGY_ENTITIES,
    CONF_EXPORT_POWER_ENTITY,
    CONF_FUSE,
    CONF_MAX_IMPORT,
    CONF_MONTH_PEAK_ENTITY,
    CONF_PEAK_CODES,
    CONF_PHASES,
    CONF_POWER_ENTITY,
    CONF_PRICE_ENTITY,
    CONF_PRICE_MODE,
    CONF_SCHEDULE,
    CONF_TARIFF_ENTITY,
    DEFAULT_CAPACITY_FLOOR,
    DEFAULT_CAPACITY_PRICE,
    DEFAULT_PHASES,
    DOMAIN,
    EVENT_PEAK_PERIOD,
    EVENT_QUARTER_PEAK,
    LOGGER,
    PRICE_SCHEDULE,
    PRICE_SENSOR,
    PRICE_TARIFF,
)
from .core.planner.capacity import CapacityTracker, QuarterState, available_current
from .core.planner.models import QUARTER, CapacityTariff, Charger, ChargeRequest, Limits, Plan, PriceSlot
from .core.planner.optimizer import plan_charge
from .core.planner.prices import TouSchedule, next_peak_change, prices_from_attributes, tariff_peak

type PlannerConfigEntry = ConfigEntry[PlannerCoordinator]

REFRESH = timedelta(seconds=10)
# Measurement noise the live current control tolerates over the allowed peak (50 W).
PEAK_MARGIN_KW = Decimal("0.05")
# Dynamic prices: a quarter is "peak" when its price is in the top quarter of its local day.
PEAK_QUANTILE = Decimal("0.75")
# How far ahead a schedule or a flat price is laid out for planning.
HORIZON = timedelta(days=8)
_POWER_UNITS = {"w": Decimal("0.001"), "kw": Decimal(1), "mw": Decimal(1000)}
_ENERGY_UNITS = {"wh": Decimal("0.001"), "kwh": Decimal(1), "mwh": Decimal(1000)}


def _number(state: State | None) -> Decimal | None:
    """A state's number, or None when unknown, unavailable or not a number."""
    if state is None or state.state in (STATE_UNKNOWN, STATE_UNAVAILABLE, ""):
        return None
    try:
        value = Decimal(state.state)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _scaled(state: State | None, units: Mapping[str, Decimal], default: str) -> Decimal | None:
    """A power (kW) or energy (kWh) from a state in any of ``units``; None for an unknown unit."""
    value = _number(state)
    if value is None or state is None:
        return None
    unit = str(state.attributes.get("unit_of_measurement") or default).lower()
    factor = units.get(unit)
    return None if factor is None else value * factor


def mark_peaks(slots: list[PriceSlot], tz: Any) -> list[PriceSlot]:
    """Dynamic prices: flag the slots in the top quarter of their local day's prices as peak."""
    by_day: dict[Any, list[Decimal]] = {}
    for slot in slots:
        by_day.setdefault(slot.start.astimezone(tz).date(), []).append(slot.price)
    limits: dict[Any, Decimal] = {}
    for day, prices in by_day.items():
        ordered = sorted(prices)
        limits[day] = ordered[min(len(ordered) - 1, int(PEAK_QUANTILE * len(ordered)))]
    marked: list[PriceSlot] = []
    for slot in slots:
        day = slot.start.astimezone(tz).date()
        # A flat day has no peak.
        marked.append(replace(slot, peak=slot.price >= limits[day] and slot.price > min(by_day[day])))
    return marked


@dataclass(slots=True)
class PlannerState:
    """What the planner's entities show."""

    now: datetime
    quarter: QuarterState | None = None
    prices: list[PriceSlot] = field(default_factory=list)
    price: PriceSlot | None = None
    peak: bool | None = None
    next_peak: datetime | None = None
    next_offpeak: datetime | None = None
    currents: list[Decimal | None] = field(default_factory=list)
    available: list[Decimal | None] = field(default_factory=list)
    plan: Plan | None = None
    charge_now: bool = False
    recommended_current: int = 0


class PlannerCoordinator(DataUpdateCoordinator[PlannerState]):
    """Follows one grid connection's meter and prices; holds its charge plan."""

    config_entry: PlannerConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: PlannerConfigEntry,
        *,
        clock: Callable[[], datetime] = dt_util.utcnow,
    ) -> None:
        """Read the entry's inputs and limits."""
        super().__init__(hass, LOGGER, config_entry=entry, name=f"{DOMAIN} planner {entry.title}")
        self.clock = clock
        options = entry.data | entry.options
        self.options = options
        self.tz = dt_util.get_time_zone(hass.config.time_zone) or dt_util.UTC
        capacity = None
        if options.get(CONF_CAPACITY):
            capacity = CapacityTariff(
                price_per_kw_year=Decimal(str(options.get(CONF_CAPACITY_PRICE, DEFAULT_CAPACITY_PRICE))),
                floor_kw=Decimal(str(options.get(CONF_CAPACITY_FLOOR, DEFAULT_CAPACITY_FLOOR))),
            )
        fuse = options.get(CONF_FUSE)
        max_import = options.get(CONF_MAX_IMPORT)
        self.limits = Limits(
            fuse_a=Decimal(str(fuse)) if fuse else None,
            phases=int(options.get(CONF_PHASES, DEFAULT_PHASES)),
            max_import_kw=Decimal(str(max_import)) if max_import else None,
            capacity=capacity,
        )
        self.tracker_tariff = capacity or CapacityTariff(price_per_kw_year=Decimal(0))
        self.tracker = CapacityTracker(self.tracker_tariff, hass.config.time_zone)
        self.schedule: TouSchedule | None = None
        if options.get(CONF_PRICE_MODE) == PRICE_SCHEDULE and options.get(CONF_SCHEDULE):
            self.schedule = TouSchedule.parse(options[CONF_SCHEDULE], hass.config.time_zone)
        self.request: ChargeRequest | None = None
        self.plan: Plan | None = None
        # Energy the active plan has delivered so far (as the planner told the charger).
        self.delivered_kwh = Decimal(0)
        self._delivered_at: datetime | None = None
        self._quarter_start: datetime | None = None
        # Per phase, the measured current less what the charger drew when it was measured, and
        # the charger's draw when the power was last measured: recomputing the recommendation
        # between measurements must not count the charger's new current as house load.
        self._house_currents: list[Decimal | None] = []
        self._power_kw: Decimal | None = None
        self._power_drawing = 0
        self.plan_error: str | None = None
        self._prices: list[PriceSlot] = []
        self._price_key: tuple[Any, ...] | None = None
        self._peak: bool | None = None
        self._warned_quarter: datetime | None = None
        self._store: Store[dict[str, Any]] = Store(hass, 1, f"{DOMAIN}.planner_{entry.entry_id}")
        self._unsubs: list[Callable[[], None]] = []
        self.data = PlannerState(now=clock())

    @property
    def price_unit(self) -> str:
        """Prices are read as currency per kWh (cents, pence, /MWh converted)."""
        return f"{self.hass.config.currency}/kWh"

    # ---- inputs ----

    def _entities(self) -> list[str]:
        options = self.options
        found = [
            options.get(CONF_POWER_ENTITY),
            options.get(CONF_EXPORT_POWER_ENTITY),
            options.get(CONF_DEMAND_ENTITY),
            options.get(CONF_MONTH_PEAK_ENTITY),
            options.get(CONF_TARIFF_ENTITY),
            options.get(CONF_PRICE_ENTITY) if options.get(CONF_PRICE_MODE) == PRICE_SENSOR else None,
            *options.get(CONF_ENERGY_ENTITIES, []),
            *options.get(CONF_EXPORT_ENERGY_ENTITIES, []),
            *options.get(CONF_CURRENT_ENTITIES, []),
        ]
        return sorted({entity for entity in found if entity})

    def _sum(self, key: str) -> Decimal | None:
        values = [_scaled(self.hass.states.get(e), _ENERGY_UNITS, "kWh") for e in self.options.get(key, [])]
        if not values or any(v is None for v in values):
            return None
        return sum((v for v in values if v is not None), Decimal(0))

    def _read_meter(self, now: datetime) -> None:
        """Feed the tracker what the followed entities say now."""
        options = self.options
        power = _scaled(self.hass.states.get(options.get(CONF_POWER_ENTITY, "")), _POWER_UNITS, "kW")
        export_power = _scaled(
            self.hass.states.get(options.get(CONF_EXPORT_POWER_ENTITY, "")), _POWER_UNITS, "kW"
        )
        energy = self._sum(CONF_ENERGY_ENTITIES)
        if energy is not None:
            self.tracker.update_energy(now, energy, self._sum(CONF_EXPORT_ENERGY_ENTITIES))
        if power is not None:
            self.tracker.update_power(now, power, export_power or Decimal(0))
        demand = _scaled(self.hass.states.get(options.get(CONF_DEMAND_ENTITY, "")), _POWER_UNITS, "kW")
        peak_state = self.hass.states.get(options.get(CONF_MONTH_PEAK_ENTITY, ""))
        month_peak = _scaled(peak_state, _POWER_UNITS, "kW")
        if demand is not None or month_peak is not None:
            peak_at = None
            if peak_state is not None and (stamp := peak_state.attributes.get("timestamp")):
                peak_at = dt_util.parse_datetime(str(stamp))
            self.tracker.update_meter_registers(now, demand, month_peak, peak_at)

    def _drawing(self) -> int:
        """The current the charger was last told to draw (0 when it is not charging)."""
        data = self.data
        return data.recommended_current if data.charge_now else 0

    def _read_currents(self, only: str | None = None, state: State | None = None) -> None:
        """The house's own current per phase: the measurement, less the charger's draw then.

        Each phase is updated when its own measurement arrives (``only``), with the
        draw in effect at that moment. A three-phase charger draws on every phase; a
        one-phase charger's draw is taken off the most loaded phase (which phase it
        is on is not known).
        """
        entities = list(self.options.get(CONF_CURRENT_ENTITIES, []))
        # The measurement as the event carried it (later ones may be queued behind it).
        measured = [_number(state if e == only else self.hass.states.get(e)) for e in entities]
        if len(self._house_currents) != len(entities):
            self._house_currents = [None] * len(entities)
        drawing = Decimal(self._drawing())
        request = self.request
        carrying: set[int] = set()
        if drawing and request is not None:
            known = [(value, i) for i, value in enumerate(measured) if value is not None]
            if request.charger.phases > 1:
                carrying = {i for _, i in known}
            elif known:
                carrying = {max(known)[1]}
        for i, (entity_id, value) in enumerate(zip(entities, measured, strict=True)):
            if only is not None and entity_id != only:
                continue
            if value is None:
                self._house_currents[i] = None
            else:
                self._house_currents[i] = max(Decimal(0), value - drawing) if i in carrying else value

    def _read_prices(self, now: datetime) -> list[PriceSlot]:
        """The price list from the entry's price source (schedule, sensor or none)."""
        mode = self.options.get(CONF_PRICE_MODE)
        if self.schedule is not None:
            return self.schedule.slots(now - timedelta(days=1), now + HORIZON)
        if mode == PRICE_SENSOR:
            state = self.hass.states.get(self.options.get(CONF_PRICE_ENTITY, ""))
            if state is None:
                return []
            key = (state.state, state.last_updated)
            if key == self._price_key:
                return self._prices
            self._price_key = key
            slots = prices_from_attributes(
                state.attributes, unit=state.attributes.get("unit_of_measurement"), tz=self.tz, now=now
            )
            if not slots and (value := _number(state)) is not None:
                start = now - timedelta(
                    minutes=now.minute % 15, seconds=now.second, microseconds=now.microsecond
                )
                slots = [PriceSlot(start, start + QUARTER, value)]
            return mark_peaks(slots, self.tz)
        return []

    def _peak_now(self, now: datetime, price: PriceSlot | None) -> bool | None:
        mode = self.options.get(CONF_PRICE_MODE)
        if mode == PRICE_TARIFF:
            state = self.hass.states.get(self.options.get(CONF_TARIFF_ENTITY, ""))
            codes = self.options.get(CONF_PEAK_CODES)
            value = state.state if state is not None else None
            if codes:
                return tariff_peak(value, peak_codes=frozenset(int(c) for c in codes))
            return tariff_peak(value)
        if self.schedule is not None:
            return self.schedule.is_peak(now)
        return price.peak if price is not None else None

    # ---- lifecycle ----

    async def async_start(self) -> None:
        """Restore the tracker and the active plan, follow the inputs, refresh on a timer."""
        stored = await self._store.async_load() or {}
        if isinstance(stored.get("tracker"), dict):
            try:
                self.tracker = CapacityTracker.from_dict(
                    stored["tracker"], self.tracker_tariff, self.hass.config.time_zone
                )
            except (KeyError, TypeError, ValueError, ArithmeticError) as err:
                LOGGER.warning("%s: saved capacity data not usable (%s): starting afresh", self.name, err)
        if isinstance(stored.get("request"), dict):
            self.request = _request_from_dict(stored["request"])
            try:
                self.delivered_kwh = Decimal(str(stored.get("delivered_kwh", "0")))
            except ArithmeticError:
                self.delivered_kwh = Decimal(0)
        entities = self._entities()
        if entities:
            self._unsubs.append(
                async_track_state_change_event(self.hass, entities, self._async_input_changed)
            )
        self._unsubs.append(async_track_time_interval(self.hass, self._async_tick, REFRESH))
        now = self.clock()
        self._read_meter(now)
        self._read_currents()
        self._power_kw = _scaled(
            self.hass.states.get(self.options.get(CONF_POWER_ENTITY, "")), _POWER_UNITS, "kW"
        )
        self._prices = self._read_prices(now)
        if self.request is not None and self.request.deadline > now:
            self._replan(now)
        self._refresh(now)

    async def async_stop(self) -> None:
        """Stop following, save the tracker and the plan."""
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        await self._store.async_save(self._stored())

    def _stored(self) -> dict[str, Any]:
        return {
            "tracker": self.tracker.as_dict(),
            "request": _request_to_dict(self.request) if self.request is not None else None,
            "delivered_kwh": str(self.delivered_kwh),
        }

    @callback
    def _async_input_changed(self, event: Event[EventStateChangedData]) -> None:
        now = self.clock()
        entity_id = event.data["entity_id"]
        if entity_id == self.options.get(CONF_PRICE_ENTITY):
            prices = self._read_prices(now)
            if [(p.start, p.price) for p in prices] != [(p.start, p.price) for p in self._prices]:
                self._prices = prices
                if self.request is not None:
                    self._replan(now)  # new prices: a better plan may exist
                self._refresh(now)
            return
        if entity_id == self.options.get(CONF_TARIFF_ENTITY):
            self._refresh(now)  # a tariff switch starts or ends a peak period now
            return
        if entity_id in self.options.get(CONF_CURRENT_ENTITIES, []):
            self._read_currents(entity_id, event.data["new_state"])
            if self.request is not None:
                self._refresh(now)  # the fuse cannot wait for the timer
                return
        if entity_id == self.options.get(CONF_POWER_ENTITY):
            self._power_kw = _scaled(event.data["new_state"], _POWER_UNITS, "kW")
            self._power_drawing = self._drawing()
            if self.request is not None and self.limits.max_import_kw is not None:
                self._read_meter(now)
                self._refresh(now)  # the import cap cannot wait for the timer
                return
        self._read_meter(now)
        # A rising quarter projection must reach automations without waiting for the timer.
        if self.limits.capacity is not None:
            state = self.tracker.state(now)
            if state.will_exceed and self._warned_quarter != state.start:
                self._refresh(now)

    @callback
    def _async_tick(self, _now: datetime) -> None:
        now = self.clock()
        if self.schedule is not None:
            self._prices = self._read_prices(now)
        self._refresh(now)
        self._store.async_delay_save(self._stored, 60)

    # ---- plans ----

    def _replan(self, now: datetime) -> None:
        """Plan (again) from now: what is left of the request, on the prices known now."""
        request = self.request
        if request is None:
            return
        if request.deadline <= now:
            self.request, self.plan = None, None
            return
        remaining = max(Decimal(0), request.energy_kwh - self.delivered_kwh)
        self.plan = self.make_plan(replace(request, energy_kwh=remaining, start=now))

    def _count_delivery(self, now: datetime) -> None:
        """Add what the charger took since the last refresh at the current it was told (into the battery)."""
        data, request = self.data, self.request
        since, self._delivered_at = self._delivered_at, now
        if request is None or not data.charge_now or since is None or now <= since:
            return
        hours = Decimal((now - since).total_seconds()) / 3600
        self.delivered_kwh += (
            request.charger.power_kw(data.recommended_current) * hours * request.charger.efficiency
        )

    def prices_for_planning(self, start: datetime, deadline: datetime) -> list[PriceSlot]:
        """The known prices, or a flat zero price (no price source): plans then only mind the limits."""
        if self.options.get(CONF_PRICE_MODE) in (PRICE_SENSOR, PRICE_SCHEDULE):
            return self._prices
        return [PriceSlot(start, deadline, Decimal(0))]

    def typical_load_kw(self, now: datetime) -> Decimal | None:
        """The house's usual quarter demand: the median of the last day's closed quarters."""
        recent = [kw for start, kw in self.tracker.closed_quarters() if now - start <= timedelta(days=1)]
        if not recent:
            return None
        recent.sort()
        return recent[len(recent) // 2]

    def make_plan(self, request: ChargeRequest) -> Plan:
        """The cheapest plan for ``request`` within the limits and the month's peak so far.

        The house load is this quarter's projection (without the charger) for the
        quarter running now and the usual load (the last day's median quarter)
        after it: a spike now must not make every future quarter look full.
        """
        now = request.start
        quarter = self.tracker.state(now)
        current = (
            max(Decimal(0), quarter.projected_kw - self._charger_kw()) if quarter is not None else Decimal(0)
        )
        typical = self.typical_load_kw(now)
        usual = current if typical is None else typical
        ends = quarter.end if quarter is not None else now

        def base_load(at: datetime) -> Decimal:
            return current if at < ends else usual

        return plan_charge(
            request,
            self.prices_for_planning(request.start, request.deadline),
            self.limits,
            base_load_kw=base_load,
            month_peak_kw=quarter.month_peak_kw if quarter is not None else Decimal(0),
        )

    @callback
    def async_set_plan(self, request: ChargeRequest) -> Plan:
        """Make ``request`` the active plan (replacing any) and return the plan."""
        self.request = request
        self.delivered_kwh = Decimal(0)
        self._delivered_at = request.start
        self.plan = self.make_plan(request)
        self._refresh(request.start)
        self._store.async_delay_save(self._stored, 1)
        return self.plan

    @callback
    def async_cancel_plan(self) -> bool:
        """Drop the active plan; True when there was one."""
        had = self.request is not None
        self.request, self.plan = None, None
        self._refresh(self.clock())
        self._store.async_delay_save(self._stored, 1)
        return had

    def _charger_kw(self) -> Decimal:
        """The power the charger draws now, as far as the planner told it to."""
        data = self.data
        if self.request is None or not data.charge_now:
            return Decimal(0)
        return self.request.charger.power_kw(data.recommended_current)

    # ---- state ----

    def _refresh(self, now: datetime) -> None:
        self._count_delivery(now)
        quarter = self.tracker.state(now)
        if quarter is not None and quarter.start != self._quarter_start:
            # Each quarter: plan what is left (a paused quarter, a changed house load).
            self._quarter_start = quarter.start
            if self.request is not None and self.plan is not None:
                self._replan(now)
        prices = self._prices
        price = next((p for p in prices if p.start <= now < p.end), None)
        peak = self._peak_now(now, price)
        state = PlannerState(now=now, quarter=quarter, prices=prices, price=price, peak=peak)
        if self.schedule is not None:
            state.next_peak = self.schedule.next_change(now, True)
            state.next_offpeak = self.schedule.next_change(now, False)
        elif prices:
            state.next_peak = next_peak_change(prices, now, True)
            state.next_offpeak = next_peak_change(prices, now, False)
        currents = [_number(self.hass.states.get(e)) for e in self.options.get(CONF_CURRENT_ENTITIES, [])]
        state.currents = currents
        if self.limits.fuse_a is not None and currents:
            state.available = available_current(self.limits.fuse_a, currents)
        if self.request is not None and self.request.deadline <= now:
            self.request, self.plan = None, None
        state.plan = self.plan
        state.recommended_current = self._recommended(now, quarter, state)
        state.charge_now = state.recommended_current > 0
        self._events(now, quarter, peak)
        self.async_set_updated_data(state)

    def _recommended(self, now: datetime, quarter: QuarterState | None, state: PlannerState) -> int:
        """The plan's current for now, lowered live so the house load plus the charger stays in the limits."""
        plan, request = self.plan, self.request
        slot = plan.slot_at(now) if plan is not None else None
        if slot is None or request is None:
            return 0
        charger = request.charger
        current = slot.current
        # Fuse: on every phase, what the house leaves of it.
        if self.limits.fuse_a is not None:
            for house in self._house_currents:
                if house is not None:
                    current = min(current, int(self.limits.fuse_a - house))
        # Capacity: the quarter must not exceed the month's peak (unless the plan accepted a new one).
        if quarter is not None and self.limits.capacity is not None:
            allowed_peak = max(quarter.month_peak_kw, self.limits.capacity.floor_kw)
            if plan is not None and plan.peak_kw is not None:
                allowed_peak = max(allowed_peak, plan.peak_kw)
            allowed_peak += PEAK_MARGIN_KW
            # The tracker's headroom is the extra power, over what is left of the quarter, that
            # brings it to max(month peak, floor); a higher allowed peak adds its share of that.
            left = Decimal(max((quarter.end - now).total_seconds(), 1.0))
            raise_by = allowed_peak - max(quarter.month_peak_kw, self.limits.capacity.floor_kw)
            headroom = (
                quarter.headroom_kw + raise_by * Decimal((quarter.end - quarter.start).total_seconds()) / left
            )
            allowed_kw = headroom + charger.power_kw(self._power_drawing)
            per_amp = charger.power_kw(1)
            current = min(current, int(allowed_kw / per_amp) if per_amp > 0 else current)
        # A fixed import cap: the power now, less the charger's share, leaves the rest.
        if self.limits.max_import_kw is not None:
            power = self._power_kw
            if power is not None:
                house_kw = power - charger.power_kw(self._power_drawing)
                per_amp = charger.power_kw(1)
                if per_amp > 0:
                    current = min(current, int((self.limits.max_import_kw - house_kw) / per_amp))
        return current if current >= charger.min_current else 0

    def _events(self, now: datetime, quarter: QuarterState | None, peak: bool | None) -> None:
        entry_id = self.config_entry.entry_id
        if peak is not None and self._peak is not None and peak != self._peak:
            self.hass.bus.async_fire(EVENT_PEAK_PERIOD, {"entry_id": entry_id, "peak": peak})
        if peak is not None:
            self._peak = peak
        if (
            quarter is not None
            and self.limits.capacity is not None
            and quarter.will_exceed
            and self._warned_quarter != quarter.start
        ):
            self._warned_quarter = quarter.start
            self.hass.bus.async_fire(
                EVENT_QUARTER_PEAK,
                {
                    "entry_id": entry_id,
                    "quarter_start": quarter.start.isoformat(),
                    "projected_kw": float(quarter.projected_kw),
                    "month_peak_kw": float(quarter.month_peak_kw),
                },
            )


def _request_to_dict(request: ChargeRequest) -> dict[str, Any]:
    charger = request.charger
    return {
        "energy_kwh": str(request.energy_kwh),
        "start": request.start.isoformat(),
        "deadline": request.deadline.isoformat(),
        "min_current": charger.min_current,
        "max_current": charger.max_current,
        "phases": charger.phases,
        "voltage": str(charger.voltage),
        "efficiency": str(charger.efficiency),
        "continuous": request.continuous,
        "price_cap": None if request.price_cap is None else str(request.price_cap),
    }


def _request_from_dict(data: Mapping[str, Any]) -> ChargeRequest | None:
    try:
        start = dt_util.parse_datetime(data["start"])
        deadline = dt_util.parse_datetime(data["deadline"])
        if start is None or deadline is None:
            return None
        return ChargeRequest(
            energy_kwh=Decimal(data["energy_kwh"]),
            start=start,
            deadline=deadline,
            charger=Charger(
                min_current=int(data["min_current"]),
                max_current=int(data["max_current"]),
                phases=int(data["phases"]),
                voltage=Decimal(data["voltage"]),
                efficiency=Decimal(data["efficiency"]),
            ),
            continuous=bool(data["continuous"]),
            price_cap=None if data.get("price_cap") is None else Decimal(data["price_cap"]),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
