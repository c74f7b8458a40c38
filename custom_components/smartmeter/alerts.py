"""Alerts from meter data: leaks, bursts, abnormal use, outages (the Home Assistant side).

The analysis is in :mod:`.core.alerts`; this module feeds it and publishes it.
Every meter entry's coordinator owns one :class:`AlertHub`, fed with the
guarded meters of each good frame (serial, network, MQTT, followed entities)
or with a cloud account's intervals, so no wrong reading reaches a monitor.
Per meter (:class:`MeterAlerts`):

- a water meter gets a :class:`~.core.alerts.water.WaterMonitor` (possible
  leak: no stand-still of the quiet period within 24 h; burst: flow above a
  threshold for minutes);
- a gas meter a :class:`~.core.alerts.usage.GasMonitor` (use in an hour that
  normally has none, a day far above the typical same weekday);
- an electricity meter an :class:`~.core.alerts.usage.ElectricityMonitor`
  (base load, today vs typical, a high day) and, for the main meter of a link
  that pushes or is polled, an :class:`~.core.alerts.outage.OutageDetector`
  (power outage or lost link, from the meter's own failure counters, event log
  and voltages).

What comes on or clears is fired as a ``smartmeter_alert`` event (for the
notification blueprint); a leak that lasts becomes a repair issue. Learned
profiles and evidence persist in ``.storage/smartmeter.alerts.<entry id>``,
saved every few minutes and when the entry unloads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .const import (
    CONF_BURST_FLOW,
    CONF_BURST_MINUTES,
    CONF_HIGH_DAY_FACTOR,
    CONF_LEAK_REPAIR_HOURS,
    CONF_OUTAGE_TIMEOUT,
    CONF_WATER_QUIET,
    DEFAULT_BURST_FLOW,
    DEFAULT_BURST_MINUTES,
    DEFAULT_HIGH_DAY_FACTOR,
    DEFAULT_LEAK_REPAIR_HOURS,
    DEFAULT_OUTAGE_TIMEOUT,
    DEFAULT_WATER_QUIET,
    DOMAIN,
    EVENT_ALERT,
    LOGGER,
)
from .core.alerts.outage import OutageDetector, OutageEvent, OutageState
from .core.alerts.usage import AlertKind, ElectricityMonitor, GasMonitor, UsageAlert
from .core.alerts.water import WaterAlertSettings, WaterMonitor, WaterState, to_litres
from .core.cloud.base import ENERGY_IMPORT, GAS, Interval
from .core.models import Medium, Meter, Register
from .repairs import async_warning
from .statistics import MIN_YEAR

# The alerts an event can carry (``alert``).
ALERT_WATER_LEAK: Final = "water_leak"
ALERT_WATER_BURST: Final = "water_burst"
ALERT_GAS_UNUSUAL_HOUR: Final = "gas_unusual_hour"
ALERT_GAS_HIGH_DAY: Final = "gas_high_day"
ALERT_ELECTRICITY_HIGH_DAY: Final = "electricity_high_day"
ALERT_POWER_OUTAGE: Final = "power_outage"
ALERT_LINK_LOST: Final = "link_lost"
ISSUE_PERSISTENT_LEAK: Final = "persistent_leak"

STORAGE_VERSION: Final = 1
SAVE_INTERVAL: Final = timedelta(minutes=5)
TICK: Final = timedelta(seconds=15)
ANOMALY_MIN_ON: Final = timedelta(hours=1)
# Cloud history older than the profiles' window (8 weeks) is not fed to the monitors.
CLOUD_HISTORY: Final = timedelta(weeks=9)
# Abnormal use found in data this much older than now is not announced (a cloud backfill).
STALE_ALERT: Final = timedelta(hours=48)

WATER_MEDIA: Final = frozenset({Medium.WATER, Medium.HOT_WATER})
WATER_KEYS: Final = ("water", "hot_water", "volume")
GAS_KEYS: Final = ("gas", "volume")
# Stated unit (lower case) -> factor to the monitors' units (kWh, kW, m³).
_ENERGY: Final = {"kwh": Decimal(1), "wh": Decimal("0.001"), "mwh": Decimal(1000)}
_POWER: Final = {"kw": Decimal(1), "w": Decimal("0.001")}
_GAS: Final = {
    "m3": Decimal(1),
    "m³": Decimal(1),
    "ft3": Decimal("0.028316846592"),
    "ccf": Decimal("2.8316846592"),
}
# A gas meter counting kWh (a cloud account): the m³ thresholds x a typical 11 kWh/m³.
_GAS_KWH_PER_M3: Final = Decimal(11)
_IMPORT_TARIFFS: Final = tuple(f"energy_import_tariff_{n}" for n in range(1, 11))


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """The thresholds an entry's options set."""

    water: WaterAlertSettings
    leak_repair_after: timedelta
    high_day_factor: Decimal
    # A silence this long is a lost link; None: the source cannot tell (followed entities, cloud).
    silence_timeout: timedelta | None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], idle_timeout: float | None) -> AlertOptions:
        """Read the options (defaults for what is missing); ``idle_timeout`` is the link's own limit.

        Raises:
            ValueError: the thresholds contradict each other.
        """
        quiet = float(options.get(CONF_WATER_QUIET, DEFAULT_WATER_QUIET))
        silence: timedelta | None = None
        if idle_timeout is not None and idle_timeout != float("inf"):
            seconds = max(float(options.get(CONF_OUTAGE_TIMEOUT, DEFAULT_OUTAGE_TIMEOUT)), idle_timeout)
            silence = timedelta(seconds=seconds)
        return cls(
            water=WaterAlertSettings(
                quiet_period=timedelta(minutes=quiet),
                burst_flow_l_min=Decimal(str(options.get(CONF_BURST_FLOW, DEFAULT_BURST_FLOW))),
                burst_duration=timedelta(
                    minutes=float(options.get(CONF_BURST_MINUTES, DEFAULT_BURST_MINUTES))
                ),
            ),
            leak_repair_after=timedelta(
                hours=float(options.get(CONF_LEAK_REPAIR_HOURS, DEFAULT_LEAK_REPAIR_HOURS))
            ),
            high_day_factor=Decimal(str(options.get(CONF_HIGH_DAY_FACTOR, DEFAULT_HIGH_DAY_FACTOR))),
            silence_timeout=silence,
        )


@callback
def find_device(hass: HomeAssistant, entry_id: str, identifier: tuple[str, str]) -> dr.DeviceEntry | None:
    """The entry's device with this identifier (Home Assistant 2026.8+ looks it up per entry)."""
    registry = dr.async_get(hass)
    by_identifier = getattr(registry, "async_get_device_by_identifier", None)
    if by_identifier is not None:
        found: dr.DeviceEntry | None = by_identifier(identifier, entry_id)
        return found
    return registry.async_get_device(identifiers={identifier})


def _number(reg: Register | None) -> Decimal | None:
    """A register's finite number; ``None`` for none or a placeholder ("no reading" stamped 1970)."""
    if reg is None or not isinstance(reg.value, Decimal) or not reg.value.is_finite():
        return None
    if reg.timestamp is not None and reg.timestamp.year < MIN_YEAR:
        return None
    return reg.value


def _scaled(reg: Register | None, factors: Mapping[str, Decimal], default: str) -> Decimal | None:
    value = _number(reg)
    if value is None or reg is None:
        return None
    factor = factors.get((reg.unit or default).strip().lower())
    return None if factor is None else value * factor


def _stamp(reg: Register, received: datetime) -> datetime:
    """When a reading (one :func:`_number` took) held: the meter's own stamp (sub-meters), else when it arrived."""
    stamp = reg.timestamp
    return stamp if stamp is not None and stamp.tzinfo is not None else received


def import_kwh(values: Mapping[str, Register]) -> Decimal | None:
    """The import energy total of a meter's registers in kWh: the total, else the sum of the tariffs."""
    total = values.get("energy_import_total")
    if total is not None:
        return _scaled(total, _ENERGY, "kWh")
    kwh: Decimal | None = None
    for key in _IMPORT_TARIFFS:
        if (reg := values.get(key)) is not None:
            if (value := _scaled(reg, _ENERGY, "kWh")) is None:
                return None  # one tariff unreadable: no total
            kwh = value if kwh is None else kwh + value
    return kwh


def _water_register(meter: Meter) -> Register | None:
    if meter.medium not in WATER_MEDIA:
        return None
    values = meter.values
    return next((reg for key in WATER_KEYS if _number(reg := values.get(key)) is not None), None)


def _gas_register(meter: Meter) -> Register | None:
    if meter.medium is not Medium.GAS:
        return None
    values = meter.values
    return next((reg for key in GAS_KEYS if _number(reg := values.get(key)) is not None), None)


def _gas_options(tz: tzinfo, unit: str, factor: Decimal) -> dict[str, Any]:
    """A gas monitor's options, its thresholds in the meter's unit (m³, or kWh for cloud accounts)."""
    scale = _GAS_KWH_PER_M3 if unit == "kWh" else Decimal(1)
    return {
        "tz": tz,
        "unit": unit,
        "quiet_max": Decimal("0.005") * scale,
        "hour_min_use": Decimal("0.02") * scale,
        "high_day_factor": factor,
        "high_day_min_excess": Decimal(2) * scale,
        "min_typical": Decimal("0.2") * scale,
    }


def _period_end(alert: UsageAlert) -> datetime:
    """When an abnormal-use alert stops being current: the end of its hour or day."""
    start = alert.period_start
    if alert.kind is AlertKind.UNUSUAL_HOUR:
        return start + timedelta(hours=1)
    tz = start.tzinfo
    return datetime.combine(start.date() + timedelta(days=1), dtime(0), tzinfo=tz)


def _event_details(event: OutageEvent) -> dict[str, Any]:
    """What an outage or link event tells of a classified silence."""
    return {
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
        "duration_s": float(event.duration),
        "evidence": list(event.evidence),
        "disturbances": list(event.disturbances),
    }


def iso(moment: datetime | None) -> str | None:
    """A time as ISO 8601 text (``None`` stays ``None``)."""
    return None if moment is None else moment.isoformat()


class MeterAlerts:
    """The monitors of one meter and what they concluded, as the entities show it."""

    def __init__(
        self,
        meter_id: str,
        medium: Medium,
        device_info: DeviceInfo,
        *,
        water: WaterMonitor | None = None,
        usage: GasMonitor | ElectricityMonitor | None = None,
        outage: OutageDetector | None = None,
    ) -> None:
        """Follow one meter with the monitors that suit it."""
        self.meter_id = meter_id
        self.medium = medium
        self.device_info = device_info
        self.water = water
        self.usage = usage
        self.outage = outage
        self.water_state: WaterState | None = None
        self.usage_alert: UsageAlert | None = None
        self.usage_until: datetime | None = None
        self.outage_state = OutageState.OK
        self.link_lost_since: datetime | None = None
        self.last_stamp: datetime | None = None  # the time of the last water or gas reading taken in
        self.cloud_end: datetime | None = None  # the end of the last cloud interval taken in
        self.cloud_total = Decimal(0)

    @property
    def gas(self) -> GasMonitor | None:
        """The gas monitor, if this is a gas meter."""
        return self.usage if isinstance(self.usage, GasMonitor) else None

    @property
    def electricity(self) -> ElectricityMonitor | None:
        """The electricity monitor, if this is an electricity meter."""
        return self.usage if isinstance(self.usage, ElectricityMonitor) else None

    def anomaly(self, now: datetime) -> bool:
        """An abnormal-use alert whose hour or day is not over."""
        return self.usage_until is not None and now < self.usage_until

    def as_dict(self) -> dict[str, Any]:
        """What persists across restarts."""
        return {
            "water": None if self.water is None else self.water.as_dict(),
            "usage": None if self.usage is None else self.usage.as_dict(),
            "outage": None if self.outage is None else self.outage.as_dict(),
            "cloud": None if self.cloud_end is None else [self.cloud_end.isoformat(), str(self.cloud_total)],
        }

    def diagnostics(self, now: datetime) -> dict[str, Any]:
        """A readable summary (no secrets in it: the meter's own figures)."""
        out: dict[str, Any] = {"medium": self.medium.value}
        if self.water is not None and self.water_state is not None:
            state = self.water_state
            out["water"] = {
                "leak": state.leak,
                "burst": state.burst,
                "evidence_complete": state.evidence_complete,
                "no_quiet_since": iso(state.no_quiet_since),
                "step_l": None if self.water.step_l is None else str(self.water.step_l),
                "restarts": self.water.restarts,
            }
        if self.usage is not None:
            out["usage"] = {
                "days_learned": [self.usage.profile.learned(day) for day in range(7)],
                "today_vs_typical": _str(self.usage.today_vs_typical()),
                "anomaly": self.anomaly(now),
            }
            if (electricity := self.electricity) is not None:
                out["usage"]["base_load"] = list(map(_str, electricity.base_load_detail()))
        if self.outage is not None:
            out["outage"] = {
                "state": self.outage_state.value,
                "evidence": None if self.outage.evidence is None else self.outage.evidence.as_dict(),
                "last_event": None if self.outage.last_event is None else self.outage.last_event.as_dict(),
            }
        return out


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class AlertHub:
    """The alerts of one config entry's meters."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[Any],
        options: AlertOptions,
        *,
        tz: tzinfo | None = None,
        coordinator: DataUpdateCoordinator[Any] | None = None,
    ) -> None:
        """Set up the hub; :meth:`async_load` restores what was learned."""
        self.hass = hass
        self.entry = entry
        self.options = options
        self.tz = tz or ZoneInfo(hass.config.time_zone)
        # The entities are available while the entry's coordinator is (not while its link is).
        self.coordinator = coordinator
        self.meters: dict[str, MeterAlerts] = {}
        self._store: Store[dict[str, Any]] = Store(hass, STORAGE_VERSION, f"{DOMAIN}.alerts.{entry.entry_id}")
        self._stored: dict[str, Any] = {}
        self._new_meter_listeners: list[Callable[[MeterAlerts], None]] = []
        self._listeners: dict[str, list[CALLBACK_TYPE]] = {}
        self._unsub: CALLBACK_TYPE | None = None
        self._save_pending = False
        self._stopped = False

    # ------------------------------------------------------------ lifecycle

    async def async_load(self) -> None:
        """Read what the entry's monitors learned before (a damaged file starts afresh)."""
        data = await self._store.async_load()
        self._stored = data if isinstance(data, dict) else {}

    @callback
    def async_start(self) -> None:
        """Check the silent meters and the time-based alerts regularly."""
        self._unsub = async_track_time_interval(self.hass, self._async_tick, TICK)

    async def async_stop(self) -> None:
        """Stop checking and save what was learned (the link closing after this is no alert)."""
        self._stopped = True
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        if self.meters:
            await self._store.async_save(self._data())

    def _data(self) -> dict[str, Any]:
        data = dict(self._stored)
        data.update({meter_id: alerts.as_dict() for meter_id, alerts in self.meters.items()})
        return data

    @callback
    def _changed(self) -> None:
        """Save within ``SAVE_INTERVAL`` (Home Assistant flushes a pending save when it stops)."""
        if not self._save_pending:
            self._save_pending = True
            self._store.async_delay_save(self._data_to_save, SAVE_INTERVAL.total_seconds())

    def _data_to_save(self) -> dict[str, Any]:
        self._save_pending = False
        return self._data()

    # ------------------------------------------------------------ listeners

    @callback
    def async_add_meter_listener(self, listener: Callable[[MeterAlerts], None]) -> CALLBACK_TYPE:
        """Call ``listener`` for every followed meter, now and as they appear."""
        self._new_meter_listeners.append(listener)
        for alerts in list(self.meters.values()):
            listener(alerts)

        @callback
        def _remove() -> None:
            self._new_meter_listeners.remove(listener)

        return _remove

    @callback
    def async_add_listener(self, meter_id: str, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call ``listener`` when the meter's alerts may have changed."""
        listeners = self._listeners.setdefault(meter_id, [])
        listeners.append(listener)

        @callback
        def _remove() -> None:
            listeners.remove(listener)

        return _remove

    @callback
    def _notify(self, meter_id: str) -> None:
        for listener in list(self._listeners.get(meter_id, ())):
            listener()

    @callback
    def _add(self, alerts: MeterAlerts) -> None:
        self.meters[alerts.meter_id] = alerts
        for listener in list(self._new_meter_listeners):
            listener(alerts)

    # ------------------------------------------------------------ meters

    def _restore[T](self, meter_id: str, part: str, build: Callable[[dict[str, Any]], T]) -> T | None:
        stored = self._stored.get(meter_id)
        data = stored.get(part) if isinstance(stored, dict) else None
        if not isinstance(data, dict):
            return None
        try:
            return build(data)
        except (ValueError, TypeError, KeyError) as err:
            LOGGER.warning(
                "Alerts of meter %s: stored %s state unreadable, starting afresh (%s)", meter_id, part, err
            )
            return None

    @callback
    def _follow(self, meter: Meter, *, main: bool) -> MeterAlerts | None:
        """Create the monitors of a meter that has something to watch (``None``: nothing)."""
        meter_id = meter.id
        device = DeviceInfo(identifiers={(DOMAIN, meter_id)})
        if meter.medium in WATER_MEDIA and _water_register(meter) is not None:
            settings = self.options.water
            water = self._restore(meter_id, "water", lambda d: WaterMonitor.from_dict(d, settings))
            alerts = MeterAlerts(meter_id, meter.medium, device, water=water or WaterMonitor(settings))
        elif meter.medium is Medium.GAS and _gas_register(meter) is not None:
            gas = self._gas(meter_id, "m³")
            alerts = MeterAlerts(meter_id, meter.medium, device, usage=gas)
        elif meter.medium is Medium.ELECTRICITY and import_kwh(meter.values) is not None:
            outage = None
            if main and (timeout := self.options.silence_timeout) is not None:
                outage = self._restore(
                    meter_id, "outage", lambda d: OutageDetector.from_dict(d, silence_timeout=timeout)
                ) or OutageDetector(silence_timeout=timeout)
            alerts = MeterAlerts(
                meter_id, meter.medium, device, usage=self._electric(meter_id), outage=outage
            )
        else:
            return None
        self._register_device(meter)
        self._add(alerts)
        return alerts

    @callback
    def _register_device(self, meter: Meter) -> None:
        """Make sure the meter's device exists (the sensor platform may not have created it yet)."""
        from .entity import async_register_meter  # noqa: PLC0415 - entity imports the coordinator

        entry_id = self.entry.entry_id
        parent = None
        if meter.parent_id is not None:
            device = find_device(self.hass, entry_id, (DOMAIN, meter.parent_id))
            parent = None if device is None else device.id
        if find_device(self.hass, entry_id, (DOMAIN, meter.id)) is None:
            async_register_meter(self.hass, self.entry, meter, parent)

    def _gas(self, meter_id: str, unit: str) -> GasMonitor:
        """The meter's gas monitor as stored, else a fresh one."""
        options = _gas_options(self.tz, unit, self.options.high_day_factor)
        restored = self._restore(meter_id, "usage", lambda d: GasMonitor.from_dict(d, **options))
        return restored or GasMonitor(**options)

    def _electric(self, meter_id: str) -> ElectricityMonitor:
        """The meter's electricity monitor as stored, else a fresh one."""
        options: dict[str, Any] = {"tz": self.tz, "high_day_factor": self.options.high_day_factor}
        restored = self._restore(meter_id, "usage", lambda d: ElectricityMonitor.from_dict(d, **options))
        return restored or ElectricityMonitor(**options)

    def _restore_cloud(self, alerts: MeterAlerts) -> None:
        stored = self._stored.get(alerts.meter_id)
        cloud = stored.get("cloud") if isinstance(stored, dict) else None
        if isinstance(cloud, list) and len(cloud) == 2:
            try:
                alerts.cloud_end = datetime.fromisoformat(cloud[0])
                alerts.cloud_total = Decimal(cloud[1])
            except (TypeError, ValueError, InvalidOperation):
                alerts.cloud_end = None

    # ------------------------------------------------------------ inputs

    @callback
    def async_feed(self, meters: Iterable[Meter], received: datetime) -> None:
        """Take in the guarded meters of one good frame (received at ``received``)."""
        for meter in meters:
            try:
                self._feed(meter, received)
            except (ValueError, ArithmeticError) as err:
                # A reading the monitors cannot take (a unit they do not know): skipped, at debug level.
                LOGGER.debug("Alerts of meter %s skipped a reading: %s", meter.id, err)

    @callback
    def _feed(self, meter: Meter, received: datetime) -> None:
        alerts = self.meters.get(meter.id)
        if alerts is None:
            alerts = self._follow(meter, main=meter.channel == 0 and meter.parent_id is None)
            if alerts is None:
                return
        events: list[tuple[str, bool, dict[str, Any]]] = []
        if alerts.water is not None and (reg := _water_register(meter)) is not None:
            if (stamp := _stamp(reg, received)) == alerts.last_stamp:
                return  # a stamped reading the telegram repeats: nothing new (the tick keeps time)
            alerts.last_stamp = stamp
            alerts.water.add(stamp, to_litres(reg.value, reg.unit or "m3"))  # type: ignore[arg-type]
        elif (gas := alerts.gas) is not None and (reg := _gas_register(meter)) is not None:
            if (stamp := _stamp(reg, received)) == alerts.last_stamp:
                return
            alerts.last_stamp = stamp
            if (total := _scaled(reg, _GAS, "m3")) is not None:
                self._usage_alerts(alerts, gas.add_reading(stamp, total), events, received)
        elif (electricity := alerts.electricity) is not None:
            values = meter.values
            if (total := import_kwh(values)) is not None:  # energy registers carry no stamp
                self._usage_alerts(alerts, electricity.add_reading(received, total), events, received)
            power = _scaled(values.get("power_import"), _POWER, "kW")
            if power is not None:
                electricity.add_power(received, power, _scaled(values.get("power_export"), _POWER, "kW"))
            if alerts.outage is not None:
                event = alerts.outage.on_frame(meter, received)
                self._outage(alerts, event, received, events)
        self._evaluate(alerts, received, events)
        self._changed()

    @callback
    def async_feed_intervals(
        self, device: DeviceInfo, meter_id: str, register: str, unit: str, intervals: Iterable[Interval]
    ) -> None:
        """Take in a cloud meter's consumption intervals (import energy or gas), oldest first."""
        medium = {ENERGY_IMPORT: Medium.ELECTRICITY, GAS: Medium.GAS}.get(register)
        if medium is None:
            return
        alerts = self.meters.get(meter_id)
        if alerts is None:
            if medium is Medium.GAS:
                usage: GasMonitor | ElectricityMonitor = self._gas(meter_id, "kWh" if unit == "kWh" else "m³")
            else:
                usage = self._electric(meter_id)
            alerts = MeterAlerts(meter_id, medium, device, usage=usage)
            self._restore_cloud(alerts)
            self._add(alerts)
        if alerts.usage is None or alerts.medium is not medium:
            return
        factor = _GAS.get(unit.lower(), Decimal(1)) if medium is Medium.GAS and unit != "kWh" else Decimal(1)
        events: list[tuple[str, bool, dict[str, Any]]] = []
        now = dt_util.utcnow()
        horizon = now - CLOUD_HISTORY
        for interval in sorted(intervals, key=lambda i: i.start):
            if alerts.cloud_end is not None and interval.end <= alerts.cloud_end:
                continue  # re-imported (restatement window): already taken in
            if interval.start < horizon:
                continue  # older than anything the profiles keep (a long backfill)
            if alerts.cloud_end != interval.start:
                alerts.usage.add_reading(interval.start, alerts.cloud_total)  # a new start (or after a gap)
            alerts.cloud_total += interval.value * factor
            alerts.cloud_end = interval.end
            self._usage_alerts(
                alerts, alerts.usage.add_reading(interval.end, alerts.cloud_total), events, now
            )
        self._evaluate(alerts, now, events)
        self._changed()

    @callback
    def async_link_status(self, connected: bool) -> None:
        """The entry's link went up or down (one link carries every meter of the entry).

        A drop alone is no alert: a network bridge that reconnects within
        seconds lost no telegram worth a notification. The silence decides
        (``outage_silence_seconds`` after the last telegram, found by the tick),
        and the first telegram after it tells a power outage from a link fault.
        """
        if self._stopped:
            return
        now = dt_util.utcnow()
        for alerts in self.meters.values():
            if alerts.outage is not None and connected:
                alerts.outage.on_link_up(now)

    @callback
    def _async_tick(self, now: datetime) -> None:
        """Notice silences, leaks that need no new reading, alerts whose period ended."""
        if self._stopped:
            return
        for alerts in list(self.meters.values()):
            self._evaluate(alerts, now, [])

    # ------------------------------------------------------------ conclusions

    def _usage_alerts(
        self,
        alerts: MeterAlerts,
        found: list[UsageAlert],
        events: list[tuple[str, bool, dict[str, Any]]],
        now: datetime,
    ) -> None:
        for alert in found:
            if _period_end(alert) < now - STALE_ALERT:
                continue  # history being imported (a cloud backfill): learned, not news
            alerts.usage_alert = alert
            # On for the rest of its hour or day, and for at least an hour (cloud data arrives late).
            alerts.usage_until = max(_period_end(alert), now + ANOMALY_MIN_ON)
            if alerts.medium is Medium.GAS:
                kind = ALERT_GAS_UNUSUAL_HOUR if alert.kind is AlertKind.UNUSUAL_HOUR else ALERT_GAS_HIGH_DAY
            else:
                kind = ALERT_ELECTRICITY_HIGH_DAY
            events.append(
                (
                    kind,
                    True,
                    {
                        "period_start": alert.period_start.isoformat(),
                        "period_end": _period_end(alert).isoformat(),
                        "value": float(alert.value),
                        "reference": float(alert.reference),
                        "unit": alert.unit,
                    },
                )
            )

    def _outage(
        self,
        alerts: MeterAlerts,
        event: OutageEvent | None,
        now: datetime,
        events: list[tuple[str, bool, dict[str, Any]]],
    ) -> None:
        if event is None:
            return
        details = _event_details(event)
        if event.kind is OutageState.POWER_OUTAGE and alerts.outage_state is not OutageState.POWER_OUTAGE:
            # Found afterwards (the counters rose, the log has it): it is over already.
            events.append((ALERT_POWER_OUTAGE, False, details | {"found_after": True}))
        if alerts.outage_state is OutageState.LINK_LOST:
            events.append((ALERT_LINK_LOST, False, details | {"cause": event.kind.value}))

    @callback
    def _evaluate(
        self, alerts: MeterAlerts, now: datetime, events: list[tuple[str, bool, dict[str, Any]]]
    ) -> None:
        """Bring the meter's published state up to ``now``; fire what came on or cleared."""
        if alerts.water is not None:
            old = alerts.water_state
            state = alerts.water.state(now)
            alerts.water_state = state
            was_leak = old is not None and old.leak
            was_burst = old is not None and old.burst
            if state.leak != was_leak:
                events.append(
                    (
                        ALERT_WATER_LEAK,
                        state.leak,
                        {"since": iso(state.leak_since), "no_quiet_since": iso(state.no_quiet_since)},
                    )
                )
            if state.burst != was_burst:
                flow = state.flow_l_min
                events.append(
                    (
                        ALERT_WATER_BURST,
                        state.burst,
                        {
                            "since": iso(state.burst_since),
                            "flow_l_min": None if flow is None else float(flow.lower),
                        },
                    )
                )
            self._leak_issue(alerts, state, now)
        if alerts.usage_until is not None and now >= alerts.usage_until and alerts.usage_alert is not None:
            alerts.usage_alert = None  # the anomaly's hour or day is over
            alerts.usage_until = None
        if alerts.outage is not None:
            state_now = alerts.outage.check(now)
            old_state = alerts.outage_state
            if state_now is not old_state:
                if state_now is OutageState.LINK_LOST:
                    alerts.link_lost_since = now
                    events.append((ALERT_LINK_LOST, True, {"since": now.isoformat()}))
                elif old_state is OutageState.LINK_LOST:
                    since = alerts.link_lost_since
                    if since is not None and not any(kind == ALERT_LINK_LOST for kind, _, _ in events):
                        # Back with no event that closes the silence (the meter reports 0 V): cleared here.
                        events.append(
                            (
                                ALERT_LINK_LOST,
                                False,
                                {
                                    "since": since.isoformat(),
                                    "duration_s": (now - since).total_seconds(),
                                    "cause": state_now.value,
                                },
                            )
                        )
                    alerts.link_lost_since = None
                if state_now is OutageState.POWER_OUTAGE:
                    events.append(
                        (ALERT_POWER_OUTAGE, True, {"since": now.isoformat(), "evidence": ["voltage_zero"]})
                    )
                elif old_state is OutageState.POWER_OUTAGE:
                    last = alerts.outage.last_event
                    events.append((ALERT_POWER_OUTAGE, False, {} if last is None else _event_details(last)))
                alerts.outage_state = state_now
        for kind, active, details in events:
            self._fire(alerts, kind, active, details)
        self._notify(alerts.meter_id)

    @callback
    def _fire(self, alerts: MeterAlerts, kind: str, active: bool, details: dict[str, Any]) -> None:
        device, name = self._meter_name(alerts)
        data = {
            "entry_id": self.entry.entry_id,
            "meter_id": alerts.meter_id,
            "device_id": None if device is None else device.id,
            "meter_name": name,
            "alert": kind,
            "active": active,
        } | details
        data["message"] = _message(data)
        LOGGER.info("%s", data["message"])
        self.hass.bus.async_fire(EVENT_ALERT, data)

    @callback
    def _leak_issue(self, alerts: MeterAlerts, state: WaterState, now: datetime) -> None:
        issue_id = f"{ISSUE_PERSISTENT_LEAK}_{self.entry.entry_id}_{alerts.meter_id}"
        since = state.leak_since
        if state.leak and since is not None and now - since >= self.options.leak_repair_after:
            async_warning(
                self.hass,
                issue_id,
                ISSUE_PERSISTENT_LEAK,
                {
                    "meter": self._meter_name(alerts)[1],
                    "since": dt_util.as_local(since).strftime("%Y-%m-%d %H:%M"),
                    "quiet": str(int(self.options.water.quiet_period.total_seconds() // 60)),
                },
            )
        elif not state.leak:
            async_warning(self.hass, issue_id, ISSUE_PERSISTENT_LEAK, None)

    @callback
    def _meter_name(self, alerts: MeterAlerts) -> tuple[dr.DeviceEntry | None, str]:
        """The meter's device and the name it goes by (the user's, else the device's)."""
        identifier = next(iter(alerts.device_info.get("identifiers", set())), (DOMAIN, alerts.meter_id))
        device = find_device(self.hass, self.entry.entry_id, identifier)
        name = (device.name_by_user or device.name) if device is not None else None
        return device, name or alerts.device_info.get("name") or alerts.meter_id

    def diagnostics(self) -> list[dict[str, Any]]:
        """The alert state of every meter (identified by medium only: meter IDs are personal)."""
        now = dt_util.utcnow()
        return [alerts.diagnostics(now) for alerts in self.meters.values()]


def _minutes(seconds: Any) -> str:
    try:
        return f"{float(seconds) / 60:.0f} min"
    except (TypeError, ValueError):
        return "?"


def _local(value: Any) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        return dt_util.as_local(datetime.fromisoformat(value)).strftime("%H:%M")
    except ValueError:
        return value


_MESSAGES: Final[dict[tuple[str, bool], str]] = {
    (
        ALERT_WATER_LEAK,
        True,
    ): "{meter_name}: possible leak, water has not stood still for the quiet period in 24 h",
    (ALERT_WATER_LEAK, False): "{meter_name}: water stood still again, no leak suspected",
    (ALERT_WATER_BURST, True): "{meter_name}: burst? water flowing at {flow} L/min since {since}",
    (ALERT_WATER_BURST, False): "{meter_name}: the high water flow stopped",
    (
        ALERT_GAS_UNUSUAL_HOUR,
        True,
    ): "{meter_name}: gas used at {start}, an hour that normally has none ({value} {unit})",
    (ALERT_GAS_HIGH_DAY, True): "{meter_name}: gas use today {value} {unit}, typical {reference} {unit}",
    (
        ALERT_ELECTRICITY_HIGH_DAY,
        True,
    ): "{meter_name}: electricity use today {value} {unit}, typical {reference} {unit}",
    (ALERT_POWER_OUTAGE, True): "{meter_name}: power outage, the meter reports 0 V",
    (ALERT_POWER_OUTAGE, False): "{meter_name}: power was out from {start} to {end} ({duration})",
    (
        ALERT_LINK_LOST,
        True,
    ): "{meter_name}: no data from the meter (power outage or link fault; known when it reports again)",
    (ALERT_LINK_LOST, False): "{meter_name}: the meter reports again after {duration} ({cause})",
}


def _message(data: dict[str, Any]) -> str:
    """A one-line English text for notifications."""
    template = _MESSAGES.get((data["alert"], data["active"]), "{meter_name}: {alert}")
    cause = data.get("cause")
    return template.format(
        meter_name=data["meter_name"],
        alert=data["alert"],
        flow=data.get("flow_l_min"),
        since=_local(data.get("since")),
        start=_local(data.get("start") or data.get("period_start")),
        end=_local(data.get("end")),
        duration=_minutes(data.get("duration_s")),
        value=data.get("value"),
        reference=data.get("reference"),
        unit=data.get("unit") or "",
        cause="it was a power outage"
        if cause == OutageState.POWER_OUTAGE
        else "a link fault, power stayed on",
    )
