"""Binary sensors: a meter's alerts (leak, burst, anomaly, outage, link lost); a planner's peak period and ``charge now``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from homeassistant.components.binary_sensor import BinarySensorEntity, BinarySensorEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .alert_entity import async_setup_alert_entities
from .const import CONF_PRICE_MODE, CONF_PROTOCOL, PRICE_NONE, PROTOCOL_PLANNER
from .coordinator import SmartMeterConfigEntry
from .planner import PlannerConfigEntry, PlannerCoordinator
from .planner_entity import PlannerEntity, PlannerEntityDescription
from .planner_sensor import _plan_attributes

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PlannerBinarySensorEntityDescription(BinarySensorEntityDescription, PlannerEntityDescription):
    """A planner binary sensor."""


BINARY_SENSORS: tuple[PlannerBinarySensorEntityDescription, ...] = (
    PlannerBinarySensorEntityDescription(
        key="peak_period",
        translation_key="peak_period",
        value_fn=lambda s: s.peak,
        has_fn=lambda c: c.options.get(CONF_PRICE_MODE, PRICE_NONE) != PRICE_NONE,
    ),
    PlannerBinarySensorEntityDescription(
        key="charge_now",
        translation_key="charge_now",
        value_fn=lambda s: s.charge_now,
        attributes_fn=_plan_attributes,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartMeterConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """A meter entry's alert sensors, or a planner's binary sensors."""
    if entry.data.get(CONF_PROTOCOL) != PROTOCOL_PLANNER:
        hub = cast(Any, entry).runtime_data.alerts
        entry.async_on_unload(async_setup_alert_entities(hub, async_add_entities, binary=True))
        return
    coordinator = cast(PlannerConfigEntry, entry).runtime_data
    async_add_entities(PlannerBinarySensor(coordinator, d) for d in BINARY_SENSORS if d.has_fn(coordinator))


class PlannerBinarySensor(PlannerEntity, BinarySensorEntity):
    """A planner binary sensor."""

    entity_description: PlannerBinarySensorEntityDescription
    _unrecorded_attributes = frozenset({"plan_slots"})

    def __init__(
        self, coordinator: PlannerCoordinator, description: PlannerBinarySensorEntityDescription
    ) -> None:
        """Create it."""
        super().__init__(coordinator, description)

    @property
    def is_on(self) -> bool | None:
        """On now?"""
        value = self.entity_description.value_fn(self.coordinator.data)
        return None if value is None else bool(value)
