"""Entities of a planner entry: one service device per grid connection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .planner import PlannerCoordinator, PlannerState


@dataclass(frozen=True, kw_only=True)
class PlannerEntityDescription(EntityDescription):
    """A planner value: ``value_fn`` reads it from the planner's state, ``has_fn`` says if the entry has it."""

    value_fn: Callable[[PlannerState], Any]
    has_fn: Callable[[PlannerCoordinator], bool] = lambda _c: True
    attributes_fn: Callable[[PlannerState], dict[str, Any] | None] | None = None


class PlannerEntity(CoordinatorEntity[PlannerCoordinator]):
    """One value of a planner."""

    _attr_has_entity_name = True
    entity_description: PlannerEntityDescription

    def __init__(self, coordinator: PlannerCoordinator, description: PlannerEntityDescription) -> None:
        """Attach the entity to the planner's device."""
        super().__init__(coordinator)
        entry = coordinator.config_entry
        self.entity_description = description
        self._attr_unique_id = f"planner_{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, f"planner_{entry.entry_id}")},
            name=entry.title,
            manufacturer="smartmeter",
            model="Peak-aware planner",
            entry_type=DeviceEntryType.SERVICE,
        )

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Extra attributes (the plan's slots, the peak's time)."""
        if self.entity_description.attributes_fn is None:
            return None
        return self.entity_description.attributes_fn(self.coordinator.data)
