"""Sensors of cloud meters: the newest interval, its time, the data delay, the price, live values.

The Energy dashboard reads a cloud meter's consumption from the external
statistics at the hours of use (:mod:`.cloud_statistics`), never from these
sensors: a sensor would book late data in the hour it arrived. So none of the
interval sensors has a state class. The live readings of a Tibber Pulse are
ordinary meter sensors (a total-increasing meter reading, power, voltage,
current), written by the same write policy as a local meter's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfPower,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_track_time_change
from homeassistant.helpers.typing import StateType
from homeassistant.helpers.update_coordinator import CoordinatorEntity
from homeassistant.util import dt as dt_util

from .cloud import CloudConfigEntry, CloudCoordinator, CloudMeterState, device_id, device_info
from .cloud_statistics import ha_unit
from .core.policy import CounterWriter, MeasurementWriter, WritePolicy

# Live values: one write per 5 minutes (a mean for measurements, the last
# reading for counters), early on a move beyond 10 %.
LIVE_POLICY = WritePolicy(counter_interval=300, measurement_interval=300, deadband=0.1, deadband_floor=50)


@dataclass(frozen=True, kw_only=True)
class CloudSensorEntityDescription(SensorEntityDescription):
    """A cloud meter sensor: ``value_fn`` reads the meter's state at ``now``."""

    value_fn: Callable[[CloudMeterState, datetime], StateType | Decimal | datetime]
    has_fn: Callable[[CloudMeterState], bool]
    unit_fn: Callable[[CloudMeterState], str | None] | None = None
    attributes_fn: Callable[[CloudMeterState], dict[str, Any]] | None = None
    live: bool = False


def _latest(register: str) -> CloudSensorEntityDescription:
    """The value of a register's newest interval."""
    return CloudSensorEntityDescription(
        key=f"latest_{register}",
        translation_key=f"latest_{register}",
        device_class=SensorDeviceClass.ENERGY if register != "gas" else None,
        value_fn=lambda s, _now: s.latest[register].value if register in s.latest else None,
        has_fn=lambda s: register in s.meter.registers,
        unit_fn=lambda s: ha_unit(s.meter.unit(register)),
        suggested_display_precision=3,
    )


def _newest_time(state: CloudMeterState, _now: datetime) -> datetime | None:
    return state.newest


def _delay(state: CloudMeterState, now: datetime) -> Decimal | None:
    newest = state.newest
    if newest is None:
        return None
    return Decimal(int((now - newest).total_seconds()) // 60) / 60


def _price(state: CloudMeterState, now: datetime) -> Decimal | None:
    price = state.price(now)
    return price.value if price is not None else None


def _price_unit(state: CloudMeterState) -> str | None:
    for price in state.prices:
        return price.unit
    return f"{state.meter.currency}/kWh" if state.meter.currency else None


def _price_list(state: CloudMeterState) -> dict[str, Any]:
    """Today's and tomorrow's prices as the planner (and other price consumers) read them."""
    return {
        "prices": [
            {"start": p.start.isoformat(), "end": p.end.isoformat(), "price": float(p.value)}
            for p in state.prices
        ]
    }


def _live(key: str) -> Callable[[CloudMeterState, datetime], Decimal | None]:
    def value(state: CloudMeterState, _now: datetime) -> Decimal | None:
        register = state.live.register(key) if state.live is not None else None
        return register.value if register is not None and isinstance(register.value, Decimal) else None

    return value


def _live_unit(key: str, default: str) -> Callable[[CloudMeterState], str | None]:
    def unit(state: CloudMeterState) -> str | None:
        register = state.live.register(key) if state.live is not None else None
        return register.unit if register is not None and register.unit else default

    return unit


def _live_sensor(
    key: str,
    device_class: SensorDeviceClass,
    state_class: SensorStateClass,
    unit: str,
    *,
    enabled: bool = True,
) -> CloudSensorEntityDescription:
    return CloudSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        state_class=state_class,
        value_fn=_live(key),
        has_fn=lambda s: _live(key)(s, dt_util.utcnow()) is not None,
        unit_fn=_live_unit(key, unit),
        entity_registry_enabled_default=enabled,
        live=True,
    )


SENSORS: tuple[CloudSensorEntityDescription, ...] = (
    _latest("energy_import_total"),
    _latest("energy_export_total"),
    _latest("gas"),
    CloudSensorEntityDescription(
        key="latest_interval_end",
        translation_key="latest_interval_end",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=_newest_time,
        has_fn=lambda s: bool(s.meter.registers),
    ),
    CloudSensorEntityDescription(
        key="data_delay",
        translation_key="data_delay",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.HOURS,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_delay,
        has_fn=lambda s: bool(s.meter.registers),
    ),
    CloudSensorEntityDescription(
        key="current_price",
        translation_key="current_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        value_fn=_price,
        has_fn=lambda s: bool(s.prices),
        unit_fn=_price_unit,
        attributes_fn=_price_list,
    ),
    _live_sensor("power_import", SensorDeviceClass.POWER, SensorStateClass.MEASUREMENT, UnitOfPower.WATT),
    _live_sensor("power_export", SensorDeviceClass.POWER, SensorStateClass.MEASUREMENT, UnitOfPower.WATT),
    _live_sensor(
        "energy_import_total",
        SensorDeviceClass.ENERGY,
        SensorStateClass.TOTAL_INCREASING,
        UnitOfEnergy.KILO_WATT_HOUR,
    ),
    _live_sensor(
        "energy_export_total",
        SensorDeviceClass.ENERGY,
        SensorStateClass.TOTAL_INCREASING,
        UnitOfEnergy.KILO_WATT_HOUR,
    ),
    *(
        _live_sensor(
            f"voltage_l{p}",
            SensorDeviceClass.VOLTAGE,
            SensorStateClass.MEASUREMENT,
            UnitOfElectricPotential.VOLT,
            enabled=False,
        )
        for p in (1, 2, 3)
    ),
    *(
        _live_sensor(
            f"current_l{p}",
            SensorDeviceClass.CURRENT,
            SensorStateClass.MEASUREMENT,
            UnitOfElectricCurrent.AMPERE,
            enabled=False,
        )
        for p in (1, 2, 3)
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: CloudConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add the sensors each meter has data for, and new ones (a live reading) as they appear."""
    coordinator = entry.runtime_data
    known: set[tuple[str, str]] = set()

    @callback
    def _add_new() -> None:
        new: list[CloudSensor] = []
        for state in coordinator.meters.values():
            for description in SENSORS:
                if (state.meter.id, description.key) not in known and description.has_fn(state):
                    known.add((state.meter.id, description.key))
                    new.append(CloudSensor(coordinator, state, description))
        if new:
            async_add_entities(new)

    _add_new()
    entry.async_on_unload(coordinator.async_add_listener(_add_new))

    @callback
    def _tick(_now: datetime) -> None:
        # The price changes every quarter hour and the delay grows between polls.
        coordinator.async_update_listeners()

    entry.async_on_unload(async_track_time_change(hass, _tick, minute=[0, 15, 30, 45], second=1))


class CloudSensor(CoordinatorEntity[CloudCoordinator], SensorEntity):
    """One value of one cloud meter."""

    _attr_has_entity_name = True
    # The price list is for automations and the planner, not the database.
    _unrecorded_attributes = frozenset({"prices"})
    entity_description: CloudSensorEntityDescription

    def __init__(
        self, coordinator: CloudCoordinator, state: CloudMeterState, description: CloudSensorEntityDescription
    ) -> None:
        """Attach the sensor to its meter's device."""
        super().__init__(coordinator)
        meter = state.meter
        self.meter_id = meter.id
        self.entity_description = description
        self._attr_unique_id = f"{device_id(meter)}_{description.key}"
        self._attr_device_info = device_info(meter)
        if description.unit_fn is not None:
            self._attr_native_unit_of_measurement = description.unit_fn(state)
        self._counter: CounterWriter | None = None
        self._measurement: MeasurementWriter | None = None
        if description.live and description.state_class is SensorStateClass.TOTAL_INCREASING:
            self._counter = CounterWriter(LIVE_POLICY)
        elif description.live:
            self._measurement = MeasurementWriter(LIVE_POLICY)
        self._live_seen: datetime | None = None
        self._update()

    @property
    def state_data(self) -> CloudMeterState:
        """The meter's latest state."""
        return self.coordinator.meters[self.meter_id]

    @property
    def available(self) -> bool:
        """Interval sensors follow the polls; live ones their stream."""
        if self.entity_description.live:
            return self.state_data.live is not None
        return super().available

    def _update(self) -> bool:
        """Take the current value; ``False`` when a live value is held back by the write policy."""
        state = self.state_data
        value = self.entity_description.value_fn(state, dt_util.utcnow())
        if not self.entity_description.live:
            changed = value != self._attr_native_value
            self._attr_native_value = value
            if self.entity_description.attributes_fn is not None:
                attributes = self.entity_description.attributes_fn(state)
                changed |= attributes != getattr(self, "_attr_extra_state_attributes", None)
                self._attr_extra_state_attributes = attributes
            return changed
        if state.live_at is None or state.live_at == self._live_seen or not isinstance(value, Decimal):
            return False
        self._live_seen = state.live_at
        now = state.live_at.timestamp()
        if self._counter is not None:
            if not self._counter.offer(value, now):
                return False
            self._attr_native_value = value
            return True
        assert self._measurement is not None
        mean = self._measurement.offer(float(value), now)
        if mean is None:
            return False
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        self._attr_native_value = round(Decimal(repr(mean)), places)
        return True

    @callback
    def _handle_coordinator_update(self) -> None:
        if self._update() or not self.entity_description.live:
            self.async_write_ha_state()
