"""Base entity: one device per physical meter, sub-meters linked via_device."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
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
    Medium.UNKNOWN: "P1 meter",
}


def device_info(meter: Meter) -> DeviceInfo:
    """Device registry entry of a meter."""
    name = MEDIUM_NAMES[meter.medium]
    if meter.channel:
        name = f"{name} (M-Bus {meter.channel})"
    info = DeviceInfo(
        identifiers={(DOMAIN, meter.id)},
        name=name,
        serial_number=meter.serial_number,
    )
    if meter.manufacturer:
        info["manufacturer"] = MANUFACTURERS.get(meter.manufacturer, meter.manufacturer)
    if meter.model:
        info["model"] = meter.model
    if meter.parent_id:
        info["via_device"] = (DOMAIN, meter.parent_id)
    return info


class SmartMeterEntity(CoordinatorEntity[SmartMeterCoordinator]):
    """An entity of one meter on the entry's link."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: SmartMeterCoordinator, meter: Meter) -> None:
        """Attach the entity to its meter's device."""
        super().__init__(coordinator)
        self.meter_id = meter.id
        self._attr_device_info = device_info(meter)

    @property
    def meter(self) -> Meter:
        """The meter's latest state (meters stay known once seen)."""
        return self.coordinator.data.meters[self.meter_id]

    @property
    def available(self) -> bool:
        """Available while the link delivers telegrams."""
        return super().available and self.coordinator.connected
