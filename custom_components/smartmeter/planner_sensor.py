"""Planner sensors: price, next peak and off-peak, quarter demand, month peak, headroom, currents."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import UnitOfElectricCurrent, UnitOfPower
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .const import CONF_CURRENT_ENTITIES, CONF_FUSE, CONF_PRICE_MODE, PRICE_SCHEDULE, PRICE_SENSOR
from .planner import PlannerConfigEntry, PlannerCoordinator, PlannerState
from .planner_entity import PlannerEntity, PlannerEntityDescription


@dataclass(frozen=True, kw_only=True)
class PlannerSensorEntityDescription(SensorEntityDescription, PlannerEntityDescription):
    """A planner sensor."""


def _has_prices(c: PlannerCoordinator) -> bool:
    return c.options.get(CONF_PRICE_MODE) in (PRICE_SENSOR, PRICE_SCHEDULE)


def _has_capacity(c: PlannerCoordinator) -> bool:
    return c.limits.capacity is not None


def _quarter(attr: str) -> Any:
    def value(s: PlannerState) -> Decimal | None:
        return getattr(s.quarter, attr) if s.quarter is not None else None

    return value


def _demand(key: str, attr: str, **extra: Any) -> PlannerSensorEntityDescription:
    """A power (kW) from the capacity tracker's quarter state."""
    return PlannerSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        suggested_display_precision=3,
        value_fn=_quarter(attr),
        **extra,
    )


def _available(phase: int) -> PlannerSensorEntityDescription:
    return PlannerSensorEntityDescription(
        key=f"available_current_l{phase}",
        translation_key=f"available_current_l{phase}",
        device_class=SensorDeviceClass.CURRENT,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        suggested_display_precision=1,
        value_fn=lambda s: s.available[phase - 1] if len(s.available) >= phase else None,
        has_fn=lambda c: (
            bool(c.options.get(CONF_FUSE)) and len(c.options.get(CONF_CURRENT_ENTITIES, [])) >= phase
        ),
    )


def _plan_attributes(s: PlannerState) -> dict[str, Any] | None:
    plan = s.plan
    if plan is None:
        return None
    return {
        "plan_energy_kwh": float(plan.energy_kwh),
        "plan_cost": float(plan.total_cost),
        "plan_complete": plan.complete,
        "plan_slots": [
            {
                "start": dt_util.as_local(x.start).isoformat(),
                "end": dt_util.as_local(x.end).isoformat(),
                "current": x.current,
            }
            for x in plan.slots
        ],
    }


SENSORS: tuple[PlannerSensorEntityDescription, ...] = (
    PlannerSensorEntityDescription(
        key="current_price",
        translation_key="planner_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        value_fn=lambda s: s.price.price if s.price is not None else None,
        has_fn=_has_prices,
    ),
    PlannerSensorEntityDescription(
        key="next_peak",
        translation_key="next_peak",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda s: s.next_peak,
    ),
    PlannerSensorEntityDescription(
        key="next_offpeak",
        translation_key="next_offpeak",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda s: s.next_offpeak,
    ),
    _demand("quarter_demand", "demand_so_far_kw"),
    _demand("quarter_demand_projected", "projected_kw"),
    _demand(
        "month_peak",
        "month_peak_kw",
        attributes_fn=lambda s: (
            {"peak_at": s.quarter.month_peak_at.isoformat()}
            if s.quarter is not None and s.quarter.month_peak_at is not None
            else None
        ),
        has_fn=_has_capacity,
    ),
    _demand("rolling_average_peak", "rolling_average_kw", has_fn=_has_capacity),
    _demand("headroom", "headroom_kw", has_fn=_has_capacity),
    _available(1),
    _available(2),
    _available(3),
    PlannerSensorEntityDescription(
        key="recommended_current",
        translation_key="recommended_current",
        device_class=SensorDeviceClass.CURRENT,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        value_fn=lambda s: s.recommended_current,
        attributes_fn=_plan_attributes,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: PlannerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add the planner's sensors the entry's inputs support."""
    coordinator = entry.runtime_data
    async_add_entities(PlannerSensor(coordinator, d) for d in SENSORS if d.has_fn(coordinator))


class PlannerSensor(PlannerEntity, SensorEntity):
    """A planner sensor."""

    entity_description: PlannerSensorEntityDescription
    _unrecorded_attributes = frozenset({"plan_slots"})

    def __init__(self, coordinator: PlannerCoordinator, description: PlannerSensorEntityDescription) -> None:
        """Create it; the price's unit is the price source's."""
        super().__init__(coordinator, description)
        if description.key == "current_price":
            self._attr_native_unit_of_measurement = coordinator.price_unit

    @property
    def native_value(self) -> Any:
        """The value now."""
        return self.entity_description.value_fn(self.coordinator.data)
