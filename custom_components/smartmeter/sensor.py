"""Sensors for every register a meter reports, from entity descriptions keyed by register."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntityDescription,
    SensorExtraStoredData,
    SensorStateClass,
)
from homeassistant.components.sensor.const import DEVICE_CLASS_UNITS
from homeassistant.const import (
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfPressure,
    UnitOfTemperature,
    UnitOfTime,
    UnitOfVolume,
    UnitOfVolumeFlowRate,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from . import cloud_sensor
from .alert_entity import async_setup_alert_entities
from .cloud import CloudConfigEntry
from .const import CLOUD_PROTOCOLS, CONF_PROTOCOL, PROTOCOL_PLANNER
from .coordinator import RESTORE_GUARD, SmartMeterConfigEntry, SmartMeterCoordinator, SmartMeterData
from .core.models import Meter, Register
from .core.policy import CounterWriter, MeasurementWriter
from .entity import SmartMeterEntity, async_register_meter

PARALLEL_UPDATES = 0

# Units as meters write them -> Home Assistant units.
UNITS: dict[str, str] = {
    "kwh": UnitOfEnergy.KILO_WATT_HOUR,
    "wh": UnitOfEnergy.WATT_HOUR,
    "mwh": UnitOfEnergy.MEGA_WATT_HOUR,
    "gj": UnitOfEnergy.GIGA_JOULE,
    "kw": UnitOfPower.KILO_WATT,
    "w": UnitOfPower.WATT,
    "v": UnitOfElectricPotential.VOLT,
    "a": UnitOfElectricCurrent.AMPERE,
    "m3": UnitOfVolume.CUBIC_METERS,
    "hz": UnitOfFrequency.HERTZ,
    "s": UnitOfTime.SECONDS,
    "kvar": "kvar",
    "var": "var",
    "kvarh": "kvarh",
    "varh": "varh",
    "°c": UnitOfTemperature.CELSIUS,
    "k": UnitOfTemperature.KELVIN,
    "m3/h": UnitOfVolumeFlowRate.CUBIC_METERS_PER_HOUR,
    "bar": UnitOfPressure.BAR,
}

# The device class a stated unit implies, for a register whose unit does not
# fit its description (an ACE4000 states its power threshold in A).
UNIT_DEVICE_CLASSES: dict[str, SensorDeviceClass] = {
    UnitOfElectricCurrent.AMPERE: SensorDeviceClass.CURRENT,
    UnitOfElectricPotential.VOLT: SensorDeviceClass.VOLTAGE,
    UnitOfPower.WATT: SensorDeviceClass.POWER,
    UnitOfPower.KILO_WATT: SensorDeviceClass.POWER,
    UnitOfEnergy.WATT_HOUR: SensorDeviceClass.ENERGY,
    UnitOfEnergy.KILO_WATT_HOUR: SensorDeviceClass.ENERGY,
    UnitOfEnergy.MEGA_WATT_HOUR: SensorDeviceClass.ENERGY,
    UnitOfEnergy.GIGA_JOULE: SensorDeviceClass.ENERGY,
    UnitOfFrequency.HERTZ: SensorDeviceClass.FREQUENCY,
    UnitOfTemperature.CELSIUS: SensorDeviceClass.TEMPERATURE,
    UnitOfVolumeFlowRate.CUBIC_METERS_PER_HOUR: SensorDeviceClass.VOLUME_FLOW_RATE,
    UnitOfPressure.BAR: SensorDeviceClass.PRESSURE,
}

# A meter-stamped reading older than this is a placeholder ("700101000000").
_EPOCH_YEAR = 2000


def _number(reg: Register | None) -> Decimal | None:
    if reg is None or not isinstance(reg.value, Decimal):
        return None
    return reg.value


def _reading(reg: Register | None) -> Decimal | None:
    """A gas, water or heat reading; one with a placeholder stamp is none.

    P1 relays its M-Bus meters' readings with the meter's stamp
    (``0-n:24.2.1``): one without a stamp is no reading. A meter read directly
    (wired M-Bus, IEC 62056-21) is read when asked, stamped or not.
    """
    if reg is None:
        return None
    if reg.timestamp is None:
        if ":24." in reg.obis:
            return None
    elif reg.timestamp.year < _EPOCH_YEAR:
        return None
    return _number(reg)


def _reading_time(reg: Register | None) -> datetime | None:
    """When the meter took the reading (only for a reading that counts)."""
    if reg is None or _reading(reg) is None:
        return None
    return reg.timestamp


def _mean_history(reg: Register | None) -> Decimal | None:
    if reg is None:
        return None
    values = [entry.value for entry in reg.history if entry.value is not None]
    if not values:
        return None
    return (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.001"))


def _integer(reg: Register | None) -> int | None:
    value = _number(reg)
    return int(value) if value is not None else None


def _text(reg: Register | None) -> str | None:
    if reg is None or not isinstance(reg.value, str):
        return None
    return reg.value[:255]


def _message(reg: Register | None) -> str | None:
    """A P1 text message: sent hex-encoded (``48656C6C6F``), shown as text."""
    if reg is None or not isinstance(reg.value, str):
        return None
    text = reg.value
    if len(text) % 2 == 0:
        try:
            decoded = bytes.fromhex(text).decode("latin-1")
        except ValueError:
            decoded = ""
        if decoded.isprintable() and decoded:
            text = decoded
    return text[:255]


def _timestamp(reg: Register | None) -> datetime | None:
    if reg is None or not isinstance(reg.value, datetime):
        return None
    return reg.value


type ValueFn = Callable[[Register | None], StateType | Decimal | datetime]


@dataclass(frozen=True, kw_only=True)
class SmartMeterSensorEntityDescription(SensorEntityDescription):
    """Describes a sensor for one register key."""

    value_fn: ValueFn = _number
    register_key: str | None = None

    @property
    def source_key(self) -> str:
        """The register the value comes from."""
        return self.register_key or self.key


def _energy(key: str, *, enabled: bool = True) -> SmartMeterSensorEntityDescription:
    return SmartMeterSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        entity_registry_enabled_default=enabled,
    )


def _power(key: str, *, enabled: bool = True) -> SmartMeterSensorEntityDescription:
    return SmartMeterSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        suggested_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        entity_registry_enabled_default=enabled,
    )


def _reactive(key: str, *, counter: bool) -> SmartMeterSensorEntityDescription:
    return SmartMeterSensorEntityDescription(
        key=key,
        translation_key=key,
        state_class=SensorStateClass.TOTAL_INCREASING if counter else SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="kvarh" if counter else "kvar",
        entity_registry_enabled_default=False,
    )


def _measure(
    key: str,
    device_class: SensorDeviceClass | None,
    unit: str | None,
    *,
    enabled: bool = True,
    precision: int | None = None,
) -> SmartMeterSensorEntityDescription:
    return SmartMeterSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=unit,
        suggested_display_precision=precision,
        entity_registry_enabled_default=enabled,
    )


def _diagnostic(
    key: str,
    *,
    value_fn: ValueFn = _integer,
    state_class: SensorStateClass | None = None,
    device_class: SensorDeviceClass | None = None,
    unit: str | None = None,
) -> SmartMeterSensorEntityDescription:
    return SmartMeterSensorEntityDescription(
        key=key,
        translation_key=key,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=value_fn,
        state_class=state_class,
        device_class=device_class,
        native_unit_of_measurement=unit,
    )


def _meter_reading(key: str, device_class: SensorDeviceClass, unit: str) -> SmartMeterSensorEntityDescription:
    return SmartMeterSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=unit,
        value_fn=_reading,
    )


def _descriptions() -> tuple[SmartMeterSensorEntityDescription, ...]:
    out: list[SmartMeterSensorEntityDescription] = []
    for direction in ("import", "export"):
        out.append(_energy(f"energy_{direction}_total"))
        out.extend(_energy(f"energy_{direction}_tariff_{tariff}") for tariff in range(1, 5))
        # Tempo/EJP contracts (LiXee ZLinky) have up to ten tiers.
        out.extend(_energy(f"energy_{direction}_tariff_{tariff}", enabled=False) for tariff in range(5, 11))
        out.append(_power(f"power_{direction}"))
        # Per-phase values: enabled by the user where wanted (as Home Assistant's dsmr does).
        out.extend(_power(f"power_{direction}_l{phase}", enabled=False) for phase in (1, 2, 3))
        out.append(_reactive(f"reactive_energy_{direction}_total", counter=True))
        out.extend(
            _reactive(f"reactive_energy_{direction}_tariff_{tariff}", counter=True) for tariff in (1, 2)
        )
        out.append(_reactive(f"reactive_power_{direction}", counter=False))
        out.extend(_reactive(f"reactive_power_{direction}_l{phase}", counter=False) for phase in (1, 2, 3))
    for quadrant in range(1, 5):
        out.append(_reactive(f"reactive_energy_q{quadrant}", counter=True))
        out.append(_reactive(f"reactive_power_q{quadrant}", counter=False))
    out.append(_energy("energy_absolute_total", enabled=False))
    out.append(_power("power_absolute"))
    for phase in (1, 2, 3):
        out.append(
            _measure(
                f"voltage_l{phase}",
                SensorDeviceClass.VOLTAGE,
                UnitOfElectricPotential.VOLT,
                precision=1,
                enabled=False,
            )
        )
        out.append(
            _measure(
                f"current_l{phase}", SensorDeviceClass.CURRENT, UnitOfElectricCurrent.AMPERE, enabled=False
            )
        )
        out.append(_measure(f"power_factor_l{phase}", SensorDeviceClass.POWER_FACTOR, None, enabled=False))
        out.append(_diagnostic(f"voltage_sags_l{phase}", state_class=SensorStateClass.TOTAL_INCREASING))
        out.append(_diagnostic(f"voltage_swells_l{phase}", state_class=SensorStateClass.TOTAL_INCREASING))
        out.append(
            _diagnostic(
                f"current_limit_l{phase}",
                value_fn=_number,
                device_class=SensorDeviceClass.CURRENT,
                unit=UnitOfElectricCurrent.AMPERE,
            )
        )
    out.append(_measure("power_factor", SensorDeviceClass.POWER_FACTOR, None, enabled=False))
    out.append(_measure("frequency", SensorDeviceClass.FREQUENCY, UnitOfFrequency.HERTZ, enabled=False))
    out.append(
        SmartMeterSensorEntityDescription(
            key="active_tariff", translation_key="active_tariff", value_fn=_integer
        )
    )
    # Belgian capacity tariff: average demand of the running quarter-hour, the
    # month's peak and the peaks of the last 13 months.
    out.append(_power("current_average_demand"))
    out.append(_power("maximum_demand_month"))
    out.append(
        SmartMeterSensorEntityDescription(
            key="maximum_demand_history",
            translation_key="maximum_demand_history",
            device_class=SensorDeviceClass.POWER,
            native_unit_of_measurement=UnitOfPower.KILO_WATT,
            value_fn=_mean_history,
        )
    )
    out.append(_diagnostic("power_failures", state_class=SensorStateClass.TOTAL_INCREASING))
    out.append(_diagnostic("long_power_failures", state_class=SensorStateClass.TOTAL_INCREASING))
    out.append(
        _diagnostic(
            "power_threshold",
            value_fn=_number,
            device_class=SensorDeviceClass.POWER,
            unit=UnitOfPower.KILO_WATT,
        )
    )
    out.append(_diagnostic("breaker_state"))
    out.append(_diagnostic("text_message", value_fn=_message))
    out.append(_diagnostic("p1_version", value_fn=_text))
    out.append(_diagnostic("timestamp", value_fn=_timestamp, device_class=SensorDeviceClass.TIMESTAMP))
    # Sub-meters on M-Bus channels: the reading, stamped by the meter.
    out.append(_meter_reading("gas", SensorDeviceClass.GAS, UnitOfVolume.CUBIC_METERS))
    out.append(_meter_reading("water", SensorDeviceClass.WATER, UnitOfVolume.CUBIC_METERS))
    out.append(_meter_reading("hot_water", SensorDeviceClass.WATER, UnitOfVolume.CUBIC_METERS))
    out.append(_meter_reading("heat", SensorDeviceClass.ENERGY, UnitOfEnergy.GIGA_JOULE))
    out.append(_meter_reading("cooling", SensorDeviceClass.ENERGY, UnitOfEnergy.GIGA_JOULE))
    out.extend(
        SmartMeterSensorEntityDescription(
            key=f"{medium}_reading_time",
            translation_key="reading_time",
            register_key=medium,
            device_class=SensorDeviceClass.TIMESTAMP,
            entity_category=EntityCategory.DIAGNOSTIC,
            entity_registry_enabled_default=False,
            value_fn=_reading_time,
        )
        for medium in ("gas", "water", "hot_water", "heat", "cooling")
    )
    out.append(_diagnostic("valve_position"))
    # Heat and water meters read directly (wired M-Bus, IEC 62056-21).
    out.append(
        SmartMeterSensorEntityDescription(
            key="volume",
            translation_key="volume",
            device_class=SensorDeviceClass.VOLUME,
            state_class=SensorStateClass.TOTAL_INCREASING,
            native_unit_of_measurement=UnitOfVolume.CUBIC_METERS,
        )
    )
    out.append(
        _measure(
            "volume_flow",
            SensorDeviceClass.VOLUME_FLOW_RATE,
            UnitOfVolumeFlowRate.CUBIC_METERS_PER_HOUR,
            precision=3,
        )
    )
    out.append(_power("power"))
    out.extend(
        _measure(key, SensorDeviceClass.TEMPERATURE, UnitOfTemperature.CELSIUS, precision=1)
        for key in ("flow_temperature", "return_temperature")
    )
    # A difference, not a temperature: no device class (that would convert K to -273 °C).
    out.append(_measure("temperature_difference", None, UnitOfTemperature.KELVIN, precision=1))
    # SML meters report the signed net power (import positive, export negative).
    out.append(_power("power_net"))
    out.extend(_power(f"power_net_l{phase}", enabled=False) for phase in (1, 2, 3))
    # Heat cost allocators count units, not energy: a reading with no unit.
    out.append(
        SmartMeterSensorEntityDescription(
            key="hca_units",
            translation_key="hca_units",
            state_class=SensorStateClass.TOTAL_INCREASING,
        )
    )
    out.append(_diagnostic("error_flags"))
    out.append(_diagnostic("meter_model", value_fn=_text))
    out.append(_diagnostic("list_version", value_fn=_text))
    out.append(_diagnostic("firmware_version", value_fn=_text))
    return tuple(out)


SENSORS: tuple[SmartMeterSensorEntityDescription, ...] = _descriptions()
# The registers of cumulative sensors: the coordinator guards them.
COUNTER_KEYS: frozenset[str] = frozenset(
    d.source_key for d in SENSORS if d.state_class is SensorStateClass.TOTAL_INCREASING
)
# A measurement's early-write deadband never narrows below this (the policy's
# default floor, 0.05, suits kW, kvar, V and A).
DEADBAND_FLOORS: dict[str, float] = {UnitOfPower.WATT: 50.0, "var": 50.0}


ORDER: dict[str, int] = {d.key: i for i, d in enumerate(SENSORS)}
# Descriptions by the register they read (a register can feed several sensors).
BY_REGISTER: dict[str, tuple[SmartMeterSensorEntityDescription, ...]] = {}
for _description in SENSORS:
    BY_REGISTER[_description.source_key] = (*BY_REGISTER.get(_description.source_key, ()), _description)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartMeterConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add sensors for the registers seen so far, and for new ones as they appear."""
    if entry.data.get(CONF_PROTOCOL) in CLOUD_PROTOCOLS:
        cloud_entry = cast(CloudConfigEntry, entry)
        await cloud_sensor.async_setup_entry(hass, cloud_entry, async_add_entities)
        hub = cloud_entry.runtime_data.alerts
        entry.async_on_unload(async_setup_alert_entities(hub, async_add_entities, binary=False))
        return
    if entry.data.get(CONF_PROTOCOL) == PROTOCOL_PLANNER:
        from . import planner_sensor  # noqa: PLC0415 - the planner loads on use

        await planner_sensor.async_setup_entry(hass, cast(Any, entry), async_add_entities)
        return
    coordinator = entry.runtime_data
    known: dict[str, set[str]] = {}  # meter ID -> description keys with an entity
    devices: dict[str, str] = {}  # meter ID -> device registry ID

    @callback
    def _add_new(meter_ids: Iterable[str] | None = None) -> None:
        # Checked on every frame for the meters it reported (one of hundreds on
        # an MQTT entry): a meter or register can appear, or get its first real
        # value (a gas reading stamped "no value" until the meter syncs).
        new: list[SmartMeterSensor] = []
        data = coordinator.data
        meters = [data.meters[meter_id] for meter_id in (data.changed if meter_ids is None else meter_ids)]
        # Main meters first: a sub-meter's device links to its main meter's.
        for meter in sorted(meters, key=lambda m: m.parent_id is not None):
            done = known.setdefault(meter.id, set())
            found = [
                description
                for reg in meter.registers
                for description in BY_REGISTER.get(reg.key, ())
                if description.key not in done and description.value_fn(reg) is not None
            ]
            if not found:
                continue
            if meter.id not in devices:  # its device, once it has an entity
                parent = devices.get(meter.parent_id) if meter.parent_id else None
                devices[meter.id] = async_register_meter(hass, entry, meter, parent)
            for description in sorted(found, key=lambda d: ORDER[d.key]):
                if description.key not in done:  # a register repeated in the frame
                    done.add(description.key)
                    new.append(SmartMeterSensor(coordinator, meter, description))
        if new:
            async_add_entities(new)

    _add_new(coordinator.data.meters)  # every meter seen before the platform was set up
    entry.async_on_unload(coordinator.async_add_listener(_add_new))
    entry.async_on_unload(async_setup_alert_entities(coordinator.alerts, async_add_entities, binary=False))


@dataclass
class SmartMeterSensorExtraStoredData(SensorExtraStoredData):
    """A sensor's restore data, with its counter guard's last accepted reading."""

    guard: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The stored form; the guard under its own key."""
        data = super().as_dict()
        if self.guard is not None:
            data[RESTORE_GUARD] = self.guard
        return data


def _mean(mean: float, like: Decimal) -> Decimal:
    """A time-weighted mean at the precision the meter states its readings."""
    if mean == float(like):
        return like
    exponent = like.as_tuple().exponent
    quantum = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
    return Decimal(repr(mean)).quantize(quantum)


class SmartMeterSensor(SmartMeterEntity, RestoreSensor):
    """One register of one meter.

    It writes its state when the entry's write policy says so, not on every
    telegram: a counter when it changed (at most every ``counter_interval``,
    and with the last reading before each 5-minute boundary), a measurement as
    the mean over ``measurement_interval`` (early beyond the deadband), any
    other value when it changed; in live mode, every telegram.
    """

    entity_description: SmartMeterSensorEntityDescription

    def __init__(
        self,
        coordinator: SmartMeterCoordinator,
        meter: Meter,
        description: SmartMeterSensorEntityDescription,
    ) -> None:
        """Create the sensor; its unit is the one the meter states."""
        super().__init__(coordinator, meter)
        self.entity_description = description
        self._attr_unique_id = f"{meter.id}_{description.key}"
        register = meter.register(description.source_key)
        if (
            description.native_unit_of_measurement is not None
            and register is not None
            and register.unit
            and (unit := UNITS.get(register.unit.lower())) is not None
        ):
            self._attr_native_unit_of_measurement = unit
            device_class = description.device_class
            if device_class is not None and unit not in DEVICE_CLASS_UNITS.get(device_class, {unit}):
                # The meter measures something else than the description assumes.
                self._attr_device_class = UNIT_DEVICE_CLASSES.get(unit)
                self._attr_suggested_unit_of_measurement = None
        policy = coordinator.policy
        self._live = policy.live
        self._counter: CounterWriter | None = None
        self._measurement: MeasurementWriter | None = None
        if description.state_class is SensorStateClass.TOTAL_INCREASING:
            self._counter = CounterWriter(policy)
        elif description.state_class is SensorStateClass.MEASUREMENT:
            floor = DEADBAND_FLOORS.get(self.native_unit_of_measurement or "")
            self._measurement = MeasurementWriter(
                policy if floor is None else replace(policy, deadband_floor=floor)
            )
        self._seen: SmartMeterData | None = None
        self._written_available: bool | None = None

    def _restart_writers(self) -> None:
        """Forget what was written: the next reading is written at once."""
        if self._counter is not None:
            self._counter = CounterWriter(self._counter.policy)
        if self._measurement is not None:
            self._measurement = MeasurementWriter(self._measurement.policy)

    def _value(self) -> StateType | Decimal | datetime:
        """The register's latest (guarded) value."""
        return self.entity_description.value_fn(self.meter.register(self.entity_description.source_key))

    async def async_added_to_hass(self) -> None:
        """Take the current reading as the first state; counters also write at each boundary."""
        await super().async_added_to_hass()
        self._update(self.coordinator.data)
        self._written_available = self.available  # Home Assistant writes the first state now
        if self._counter is not None and not self._live:
            self.async_on_remove(self.coordinator.async_add_boundary_listener(self._async_boundary))

    def _update(self, data: SmartMeterData) -> bool:
        """Offer a new telegram's value to the write policy; ``True`` when it is to be written."""
        self._seen = data
        value = self._value()
        if value is None and self._counter is not None:
            return False  # a counter keeps its last reading (no dip to unknown)
        time = data.received.timestamp()
        if self._live:
            if value == self._attr_native_value:
                return False  # unchanged: Home Assistant would store no row either
            self._attr_native_value = value
            return True
        if self._counter is not None and isinstance(value, Decimal | int):
            if not self._counter.offer(Decimal(value), time):
                return False
            self._attr_native_value = value
            return True
        if self._measurement is not None and isinstance(value, Decimal):
            mean = self._measurement.offer(float(value), time)
            if mean is None:
                return False
            self._attr_native_value = _mean(mean, value)
            return True
        if value == self._attr_native_value:
            return False
        self._attr_native_value = value
        return True

    @callback
    def _handle_coordinator_update(self) -> None:
        """A telegram or an availability change: write only what the policy lets through."""
        write = False
        if self.coordinator.data is not self._seen:
            write = self._update(self.coordinator.data)
        available = self.available
        if available != self._written_available:
            write = True
            if not available:
                # No mean across an outage, no value held back over it: the first
                # reading after it is written at once.
                self._restart_writers()
        if write:
            self._written_available = available
            self.async_write_ha_state()

    @callback
    def _async_boundary(self, time: float) -> None:
        """Just before a 5-minute boundary: write the counter reading held back, if any."""
        if self._counter is None or not self.available:
            return
        value = self._counter.flush(time)
        if value is not None:
            self._attr_native_value = value
            self.async_write_ha_state()

    @property
    def extra_restore_state_data(self) -> SmartMeterSensorExtraStoredData:
        """The value and unit, and for a counter its guard's last accepted reading."""
        saved = (
            self.coordinator.guards.saved(self.meter_id, self.entity_description.source_key)
            if self._counter is not None
            else None
        )
        return SmartMeterSensorExtraStoredData(self.native_value, self.native_unit_of_measurement, saved)
