"""Alert entities: water leak and burst, gas anomaly, power outage, link lost, base load, today vs typical.

Built from descriptions with ``value_fn``/``has_fn`` over a meter's
:class:`~.alerts.MeterAlerts`, on the meter's own device, unique IDs
``{meter id}_{key}``. They follow the entry's :class:`~.alerts.AlertHub` and
write their state only when it changes. They are available while the entry's
coordinator runs, not while its link is up: the link-lost and outage sensors
must speak exactly when the meter is silent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, UnitOfPower
from homeassistant.core import callback
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .alerts import AlertHub, MeterAlerts, iso
from .core.alerts.outage import OutageState

type Attributes = dict[str, Any]


def _minutes(value: Any) -> float | None:
    return None if value is None else round(value.total_seconds() / 60, 1)


def _leak_attributes(alerts: MeterAlerts, _now: datetime) -> Attributes:
    state = alerts.water_state
    water = alerts.water
    if state is None or water is None:
        return {}
    return {
        "quiet_period_minutes": _minutes(water.settings.quiet_period),
        "no_quiet_since": iso(state.no_quiet_since),
        "leak_since": iso(state.leak_since),
        "longest_quiet_minutes_24h": _minutes(state.longest_quiet_last_window),
        "evidence_complete": state.evidence_complete,
        "register_step_l": None if water.step_l is None else float(water.step_l),
    }


def _burst_attributes(alerts: MeterAlerts, _now: datetime) -> Attributes:
    state = alerts.water_state
    water = alerts.water
    if state is None or water is None:
        return {}
    flow = state.flow_l_min
    return {
        "threshold_l_min": float(water.settings.burst_flow_l_min),
        "duration_minutes": _minutes(water.settings.burst_duration),
        "flow_l_min": None if flow is None else float(flow.lower),
        "burst_since": iso(state.burst_since),
    }


def _anomaly_attributes(alerts: MeterAlerts, now: datetime) -> Attributes:
    alert = alerts.usage_alert
    if alert is None or not alerts.anomaly(now):
        return {"kind": None}
    return {
        "kind": alert.kind.value,
        "period_start": alert.period_start.isoformat(),
        "value": float(alert.value),
        "reference": float(alert.reference),
        "unit": alert.unit,
    }


def _outage_attributes(alerts: MeterAlerts, _now: datetime) -> Attributes:
    outage = alerts.outage
    if outage is None:
        return {}
    evidence = outage.evidence
    last = outage.last_outage
    logged = outage.last_logged_outage
    return {
        "power_failures": None if evidence is None else evidence.power_failures,
        "long_power_failures": None if evidence is None else evidence.long_power_failures,
        "last_outage_start": None if last is None else last.start.isoformat(),
        "last_outage_end": None if last is None else last.end.isoformat(),
        "last_outage_duration_s": None if last is None else float(last.duration),
        "last_outage_evidence": None if last is None else list(last.evidence),
        "meter_log_last_end": None if logged is None else iso(logged.end),
        "meter_log_last_duration_s": None
        if logged is None or logged.duration is None
        else float(logged.duration),
    }


def _link_attributes(alerts: MeterAlerts, _now: datetime) -> Attributes:
    return {"since": iso(alerts.link_lost_since)}


def _base_load(alerts: MeterAlerts, _now: datetime) -> Decimal | None:
    electricity = alerts.electricity
    value = None if electricity is None else electricity.base_load()
    return None if value is None else (value * 1000).quantize(Decimal(1))


def _base_load_attributes(alerts: MeterAlerts, _now: datetime) -> Attributes:
    electricity = alerts.electricity
    return {"source": None if electricity is None else electricity.base_load_detail()[0]}


def _vs_typical(alerts: MeterAlerts, _now: datetime) -> Decimal | None:
    return None if alerts.usage is None else alerts.usage.today_vs_typical()


def _vs_typical_attributes(alerts: MeterAlerts, _now: datetime) -> Attributes:
    usage = alerts.usage
    if usage is None:
        return {}
    typical = usage.typical_so_far()
    return {
        "use_so_far": float(usage.today_use),
        "typical_so_far": None if typical is None else float(typical),
        "unit": usage.unit,
    }


@dataclass(frozen=True, kw_only=True)
class AlertEntityDescription(EntityDescription):
    """What an alert entity shows of a meter's alerts."""

    has_fn: Callable[[MeterAlerts], bool]
    attributes_fn: Callable[[MeterAlerts, datetime], Attributes] = lambda _a, _n: {}
    # A figure that moves with every reading is written at most once per this much
    # reading time (``reading_time_fn``); None: whenever it changes.
    min_interval: timedelta | None = None
    reading_time_fn: Callable[[MeterAlerts], datetime | None] = lambda _a: None


@dataclass(frozen=True, kw_only=True)
class AlertBinarySensorEntityDescription(BinarySensorEntityDescription, AlertEntityDescription):
    """An alert binary sensor."""

    value_fn: Callable[[MeterAlerts, datetime], bool | None]


@dataclass(frozen=True, kw_only=True)
class AlertSensorEntityDescription(SensorEntityDescription, AlertEntityDescription):
    """An alert figure."""

    value_fn: Callable[[MeterAlerts, datetime], Decimal | None]


BINARY_SENSORS: tuple[AlertBinarySensorEntityDescription, ...] = (
    AlertBinarySensorEntityDescription(
        key="water_leak",
        translation_key="water_leak",
        device_class=BinarySensorDeviceClass.MOISTURE,
        has_fn=lambda a: a.water is not None,
        value_fn=lambda a, _n: None if a.water_state is None else a.water_state.leak,
        attributes_fn=_leak_attributes,
    ),
    AlertBinarySensorEntityDescription(
        key="water_burst",
        translation_key="water_burst",
        device_class=BinarySensorDeviceClass.PROBLEM,
        has_fn=lambda a: a.water is not None,
        value_fn=lambda a, _n: None if a.water_state is None else a.water_state.burst,
        attributes_fn=_burst_attributes,
    ),
    AlertBinarySensorEntityDescription(
        key="gas_anomaly",
        translation_key="gas_anomaly",
        device_class=BinarySensorDeviceClass.PROBLEM,
        has_fn=lambda a: a.gas is not None,
        value_fn=lambda a, now: a.anomaly(now),
        attributes_fn=_anomaly_attributes,
    ),
    AlertBinarySensorEntityDescription(
        key="power_outage",
        translation_key="power_outage",
        device_class=BinarySensorDeviceClass.PROBLEM,
        has_fn=lambda a: a.outage is not None,
        value_fn=lambda a, _n: a.outage_state is OutageState.POWER_OUTAGE,
        attributes_fn=_outage_attributes,
    ),
    AlertBinarySensorEntityDescription(
        key="meter_link_lost",
        translation_key="meter_link_lost",
        device_class=BinarySensorDeviceClass.PROBLEM,
        has_fn=lambda a: a.outage is not None,
        value_fn=lambda a, _n: a.outage_state is OutageState.LINK_LOST,
        attributes_fn=_link_attributes,
    ),
)

SENSORS: tuple[AlertSensorEntityDescription, ...] = (
    AlertSensorEntityDescription(
        key="base_load",
        translation_key="base_load",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        has_fn=lambda a: a.electricity is not None,
        value_fn=_base_load,
        attributes_fn=_base_load_attributes,
    ),
    AlertSensorEntityDescription(
        key="today_vs_typical",
        translation_key="today_vs_typical",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        has_fn=lambda a: a.usage is not None,
        value_fn=_vs_typical,
        attributes_fn=_vs_typical_attributes,
        # A figure about the day: one database row per 15 minutes of readings, not per reading.
        min_interval=timedelta(minutes=15),
        reading_time_fn=lambda a: None if a.usage is None else a.usage.last_reading,
    ),
)


class AlertEntity(Entity):
    """An entity of one meter's alerts."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    entity_description: AlertEntityDescription

    def __init__(self, hub: AlertHub, alerts: MeterAlerts, description: AlertEntityDescription) -> None:
        """Attach the entity to the meter's device."""
        self.hub = hub
        self.alerts = alerts
        self.meter_id = alerts.meter_id  # the MQTT coordinator notifies entities by meter
        self.entity_description = description
        self._attr_unique_id = f"{alerts.meter_id}_{description.key}"
        self._attr_device_info = alerts.device_info
        self._written: tuple[Any, ...] | None = None
        self._written_reading: datetime | None = None  # the reading time of the last write

    def _value(self, now: datetime) -> Any:
        raise NotImplementedError

    def _compute(self, now: datetime) -> tuple[Any, ...]:
        value = self._value(now)
        attributes = self.entity_description.attributes_fn(self.alerts, now)
        return (value, attributes, self.available)

    def _apply(self, computed: tuple[Any, ...]) -> None:
        self._attr_extra_state_attributes = computed[1]

    @property
    def available(self) -> bool:
        """Available while the entry's coordinator runs (not tied to the link)."""
        coordinator = self.hub.coordinator
        return coordinator is None or coordinator.last_update_success

    async def async_added_to_hass(self) -> None:
        """Follow the hub (and the coordinator, for availability)."""
        await super().async_added_to_hass()
        self._apply(computed := self._compute(dt_util.utcnow()))
        self._written = computed
        self._written_reading = self.entity_description.reading_time_fn(self.alerts)
        self.async_on_remove(self.hub.async_add_listener(self.meter_id, self._async_changed))
        if self.hub.coordinator is not None:
            self.async_on_remove(self.hub.coordinator.async_add_listener(self._async_availability))

    @callback
    def _async_availability(self) -> None:
        """The coordinator updated: only its availability matters here (the hub tells the rest)."""
        if self._written is not None and self.available != self._written[2]:
            self._async_changed()

    @callback
    def _async_changed(self) -> None:
        """Write the state when it changed (a figure with a minimum interval: not sooner)."""
        description = self.entity_description
        reading = description.reading_time_fn(self.alerts)
        if (
            description.min_interval is not None
            and self._written is not None
            and self._written_reading is not None
            and reading is not None
            and reading - self._written_reading < description.min_interval
            and self.available == self._written[2]
        ):
            return
        computed = self._compute(dt_util.utcnow())
        if computed == self._written:
            return
        self._written = computed
        self._written_reading = reading
        self._apply(computed)
        self.async_write_ha_state()


class AlertBinarySensor(AlertEntity, BinarySensorEntity):
    """Water leak, water burst, gas anomaly, power outage or link lost."""

    entity_description: AlertBinarySensorEntityDescription

    def _value(self, now: datetime) -> bool | None:
        return self.entity_description.value_fn(self.alerts, now)

    def _apply(self, computed: tuple[Any, ...]) -> None:
        super()._apply(computed)
        self._attr_is_on = computed[0]


class AlertSensor(AlertEntity, SensorEntity):
    """Base load or today vs typical."""

    entity_description: AlertSensorEntityDescription

    def _value(self, now: datetime) -> Decimal | None:
        return self.entity_description.value_fn(self.alerts, now)

    def _apply(self, computed: tuple[Any, ...]) -> None:
        super()._apply(computed)
        self._attr_native_value = computed[0]


@callback
def async_setup_alert_entities(
    hub: AlertHub, async_add_entities: AddConfigEntryEntitiesCallback, *, binary: bool
) -> Callable[[], None]:
    """Add the alert entities of every followed meter, now and as meters appear; returns the remover."""

    @callback
    def _add(alerts: MeterAlerts) -> None:
        entities: list[AlertEntity]
        if binary:
            entities = [AlertBinarySensor(hub, alerts, d) for d in BINARY_SENSORS if d.has_fn(alerts)]
        else:
            entities = [AlertSensor(hub, alerts, d) for d in SENSORS if d.has_fn(alerts)]
        if entities:
            async_add_entities(entities)

    return hub.async_add_meter_listener(_add)
