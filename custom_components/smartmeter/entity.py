"""Base entity: one device per physical meter, sub-meters linked via_device."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, VIA_DEVICE_ID
from .coordinator import SmartMeterCoordinator
from .core.models import Medium, Meter

# Manufacturer flags (first three letters of the P1 identification line).
MANUFACTURERS: dict[str, str] = {
    "ACE": "Itron (Actaris)",
    "EST": "Sagemcom",
    "ELL": "Elster",
    "FLU": "Fluvius",
    "ISK": "Iskra",
    "ISk": "Iskra",
    "KFM": "Kaifa",
    "KMP": "Kamstrup",
    "LGF": "Landis+Gyr",
    "Lux": "Sagemcom",
    "NWA": "NWA",
    "SAG": "Sagemcom",
    "XMX": "Landis+Gyr",
}

MEDIUM_NAMES: dict[Medium, str] = {
    Medium.ELECTRICITY: "Electricity meter",
    Medium.GAS: "Gas meter",
    Medium.WATER: "Water meter",
    Medium.HOT_WATER: "Hot water meter",
    Medium.HEAT: "Heat meter",
    Medium.COOLING: "Cooling meter",
    Medium.HEAT_COST_ALLOCATOR: "Heat cost allocator",
    Medium.UNKNOWN: "P1 meter",
}


def device_info(meter: Meter) -> dict[str, Any]:
    """Device registry fields of a meter (its parent link aside)."""
    name = meter.name or MEDIUM_NAMES[meter.medium]
    if meter.channel:
        name = f"{name} (M-Bus {meter.channel})"
    info: dict[str, Any] = {
        "identifiers": {(DOMAIN, meter.id)},
        "name": name,
        "serial_number": meter.serial_number,
    }
    if meter.manufacturer:
        info["manufacturer"] = MANUFACTURERS.get(meter.manufacturer, meter.manufacturer)
    if meter.model:
        info["model"] = meter.model
    return info


@callback
def async_register_meter(
    hass: HomeAssistant, entry: ConfigEntry, meter: Meter, parent_device_id: str | None = None
) -> str:
    """Put a meter in the device registry, a sub-meter linked to its main meter's device.

    Returns the device's registry ID (the ``parent_device_id`` of its sub-meters).
    """
    info = device_info(meter)
    if meter.parent_id and parent_device_id:
        info |= (
            {"via_device_id": parent_device_id}
            if VIA_DEVICE_ID
            else {"via_device": (DOMAIN, meter.parent_id)}
        )
    return dr.async_get(hass).async_get_or_create(config_entry_id=entry.entry_id, **info).id


class SmartMeterEntity(CoordinatorEntity[SmartMeterCoordinator]):
    """An entity of one meter on the entry's link."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: SmartMeterCoordinator, meter: Meter) -> None:
        """Attach the entity to its meter's device."""
        super().__init__(coordinator)
        self.meter_id = meter.id
        # The device itself is registered by async_register_meter.
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, meter.id)})

    @property
    def meter(self) -> Meter:
        """The meter's latest state (meters stay known once seen)."""
        return self.coordinator.data.meters[self.meter_id]

    @property
    def available(self) -> bool:
        """Available while the link delivers telegrams, and (on a polled bus) while this meter answers."""
        return (
            super().available
            and self.coordinator.connected
            and self.coordinator.meter_reporting(self.meter_id)
        )
