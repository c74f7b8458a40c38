"""Hourly statistics booked at the meter's own time.

An M-Bus sub-meter (gas, water, heat...) stamps its reading: a DSMR 5 gas
meter every 5 minutes, a DSMR 4 one once an hour, the ACE4000 sends the last
24 hourly readings in every telegram. A sensor books a value in the hour it
arrives, so the DSMR 4 reading for 13:00-14:00, arriving at 14:07, lands in
the 14:00 hour. :class:`MeterTimeStatistics` keeps, next to the sensors, an
external long-term statistic per (meter, register) booked in the hour the
meter stamped, which the user can pick in the Energy dashboard.

Booking rules:

- one row per hour, starting at the top of the hour (UTC); its ``state`` is
  the last reading stamped within (H, H+1h]: a reading stamped exactly at
  14:00 closes the 13:00-14:00 hour;
- ``sum`` is the consumption since the first booked reading; after a restart
  it continues from the last row in the database, and hours before that row
  are never booked again;
- readings go through a :class:`~.core.guard.CounterGuard` on the meter's
  clock: a decrease, a zero or an impossible jump is ignored; a reset that
  persists (a replaced meter) starts a new baseline without adding to the sum;
- a row is written only for a newly stamped reading that opens an hour or
  changes its value, never once per telegram;
- stamps before 2000 (``700101000000``, "no value") are ignored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from homeassistant.components.recorder.models import StatisticData, StatisticMeanType, StatisticMetaData
from homeassistant.components.recorder.statistics import (
    STATISTIC_UNIT_TO_UNIT_CONVERTER,
    async_add_external_statistics,
    get_last_statistics,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import UnitOfEnergy, UnitOfVolume
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import slugify

from .const import DOMAIN, LOGGER
from .core.guard import REJECTED, CounterGuard, GuardLimits, Verdict
from .core.models import Medium, Meter, Register
from .core.obis import READING_KEY

# Cumulative units as meters write them -> Home Assistant units.
UNITS: dict[str, str] = {
    "m3": UnitOfVolume.CUBIC_METERS,
    "l": UnitOfVolume.LITERS,
    "gj": UnitOfEnergy.GIGA_JOULE,
    "mj": UnitOfEnergy.MEGA_JOULE,
    "wh": UnitOfEnergy.WATT_HOUR,
    "kwh": UnitOfEnergy.KILO_WATT_HOUR,
    "mwh": UnitOfEnergy.MEGA_WATT_HOUR,
}
# The unit of a reading the meter sent without one (as the sensors assume).
DEFAULT_UNITS: dict[Medium, str] = {
    Medium.GAS: "m3",
    Medium.WATER: "m3",
    Medium.HOT_WATER: "m3",
    Medium.HEAT: "GJ",
    Medium.COOLING: "GJ",
}
MEDIUM_NAMES: dict[Medium, str] = {
    Medium.ELECTRICITY: "Electricity meter",
    Medium.GAS: "Gas meter",
    Medium.WATER: "Water meter",
    Medium.HOT_WATER: "Hot water meter",
    Medium.HEAT: "Heat meter",
    Medium.COOLING: "Cooling meter",
    Medium.UNKNOWN: "Meter",
}
# Entry options (the shared options contract; const.py holds the same names)
# with the maximum plausible flow or power of a medium, per hour.
MAX_RATE_OPTIONS: dict[Medium, str] = {
    Medium.ELECTRICITY: "max_power_kw",
    Medium.GAS: "max_gas_flow_m3h",
    Medium.WATER: "max_water_flow_m3h",
    Medium.HOT_WATER: "max_water_flow_m3h",
}
# Meters write "never" as 1970 (or 2000-00-00); no real reading predates 2000.
MIN_YEAR = 2000
_HOUR = timedelta(hours=1)
_META_KEYS = StatisticMetaData.__required_keys__ | StatisticMetaData.__optional_keys__

type _Reading = tuple[datetime, Decimal]  # (stamp in UTC, value)


def statistic_id(meter_id: str, register_key: str) -> str:
    """``smartmeter:<meter>_<register>``: lowercase, only ``[a-z0-9_]``."""
    return f"{DOMAIN}:{slugify(f'{meter_id}_{register_key}')}"


def hour_of(stamp: datetime) -> datetime:
    """Start (UTC) of the hour a reading stamped at ``stamp`` closes or falls in.

    A stamp exactly on the hour ends the hour before: 14:00:00 -> 13:00.
    """
    stamp = stamp.astimezone(UTC)
    start = stamp.replace(minute=0, second=0, microsecond=0)
    return start - _HOUR if start == stamp else start


def _stamped(stamp: datetime | None, value: object) -> _Reading | None:
    """A usable reading: a number with a real, aware meter timestamp."""
    if (
        stamp is None
        or not isinstance(value, Decimal)
        or not value.is_finite()
        or stamp.tzinfo is None
        or stamp.year < MIN_YEAR
    ):
        return None
    return stamp.astimezone(UTC), value


def readings(register: Register) -> list[_Reading]:
    """The register's stamped readings (all of its history, if it has one), oldest first."""
    found: dict[datetime, Decimal] = {}
    sources: list[tuple[datetime | None, object]] = [(e.timestamp, e.value) for e in register.history]
    if not sources:
        sources = [(register.timestamp, register.value)]
    for stamp, value in sources:
        reading = _stamped(stamp, value)
        if reading is not None:
            found[reading[0]] = reading[1]
    return sorted(found.items())


def _unit(meter: Meter, register: Register) -> str | None:
    """The register's unit as meters write it, if it is a cumulative one."""
    unit = register.unit
    if unit is None and register.key == READING_KEY.get(meter.medium):
        unit = DEFAULT_UNITS.get(meter.medium)
    if unit is None or unit.lower() not in UNITS:
        return None
    return unit


@dataclass(slots=True)
class _Series:
    """The booking state of one statistic."""

    metadata: StatisticMetaData
    guard: CounterGuard
    unit: str
    # The newest stamp seen (booked or not): older or equal stamps are done.
    stamp: datetime | None = None
    # The newest row: its hour, state and sum (hours before it are never rewritten).
    hour: datetime | None = None
    state: Decimal | None = None
    sum: Decimal = Decimal(0)
    rebase: bool = False
    rows: dict[datetime, StatisticData] = field(default_factory=dict)

    def start_over(self) -> None:
        """Take the next reading as a new baseline (a replaced meter), adding nothing to the sum."""
        self.rebase = True
        self.guard = CounterGuard(self.guard.limits)

    def add(self, stamp: datetime, value: Decimal) -> None:
        """Book one reading (stamps only ever increase)."""
        self.stamp = stamp
        hour = hour_of(stamp)
        if self.hour is not None and hour < self.hour:
            return  # that hour is booked already (before a restart)
        verdict = self.guard.check(value, stamp.timestamp())
        if verdict in REJECTED:
            LOGGER.debug(
                "%s: reading %s stamped %s ignored (%s)", self.metadata["statistic_id"], value, stamp, verdict
            )
            return
        if self.state is not None and not self.rebase and verdict is not Verdict.RESET:
            self.sum += value - self.state
        elif self.state is not None:
            LOGGER.debug("%s: new series from %s", self.metadata["statistic_id"], value)
        changed = hour != self.hour or value != self.state
        self.rebase = False
        self.hour = hour
        self.state = value
        if changed:
            self.rows[hour] = {"start": hour, "state": float(value), "sum": float(self.sum)}

    def take_rows(self) -> list[StatisticData]:
        """The rows to write, oldest first."""
        rows = [self.rows[hour] for hour in sorted(self.rows)]
        self.rows.clear()
        return rows


class MeterTimeStatistics:
    """External hourly statistics of an entry's stamped sub-meter readings."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        """Book the sub-meters of ``entry``'s link."""
        self.hass = hass
        self.entry = entry
        self._series: dict[tuple[str, str], _Series] = {}
        # Rebases asked for series not loaded yet: (meter, register or None for all).
        self._rebase: set[tuple[str, str | None]] = set()
        self._lock = asyncio.Lock()

    def _max_rate(self, medium: Medium) -> Decimal | None:
        option = MAX_RATE_OPTIONS.get(medium)
        value = self.entry.options.get(option) if option else None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return None
        return Decimal(str(value))

    async def async_book(self, meter: Meter) -> None:
        """Book a sub-meter's newly stamped readings (call it for every good frame)."""
        if not meter.channel or "recorder" not in self.hass.config.components:
            return
        for register in meter.registers:
            found = readings(register)
            if not found:
                continue
            series = self._series.get((meter.id, register.key))
            if series is not None and series.stamp is not None and found[-1][0] <= series.stamp:
                continue  # nothing newer than what was booked (the common case)
            unit = _unit(meter, register)
            if unit is None:
                continue
            async with self._lock:
                await self._async_book(meter, register, unit, found)

    async def _async_book(self, meter: Meter, register: Register, unit: str, found: list[_Reading]) -> None:
        series = self._series.get((meter.id, register.key))
        if series is None:
            series = await self._async_load(meter, register, unit)
            if series is None:
                return
            if {(meter.id, register.key), (meter.id, None)} & self._rebase:
                self._rebase.discard((meter.id, register.key))
                series.start_over()
        if unit != series.unit:
            LOGGER.debug(
                "%s: reading in %s, not %s: ignored", series.metadata["statistic_id"], unit, series.unit
            )
            return
        for stamp, value in found:
            if series.stamp is None or stamp > series.stamp:
                series.add(stamp, value)
        rows = series.take_rows()
        if rows:
            async_add_external_statistics(self.hass, series.metadata, rows)

    async def _async_load(self, meter: Meter, register: Register, unit: str) -> _Series | None:
        """Set up a series, continuing from its last row in the database."""
        stat_id = statistic_id(meter.id, register.key)
        instance = get_instance(self.hass)
        try:
            if not await instance.async_db_ready:
                return None
            last = await instance.async_add_executor_job(
                get_last_statistics, self.hass, 1, stat_id, True, {"sum", "state"}
            )
        except Exception as err:  # a database error must not stop the reader
            LOGGER.warning("Could not read the last statistics of %s (%s): retrying later", stat_id, err)
            return None
        ha_unit = UNITS[unit.lower()]
        converter = STATISTIC_UNIT_TO_UNIT_CONVERTER.get(ha_unit)
        fields: dict[str, Any] = {
            "has_sum": True,
            "mean_type": StatisticMeanType.NONE,
            "name": f"{MEDIUM_NAMES[meter.medium]} {meter.serial_number or meter.id} {register.key} (meter time)",
            "source": DOMAIN,
            "statistic_id": stat_id,
            "unit_of_measurement": ha_unit,
        }
        if "unit_class" in _META_KEYS:  # Home Assistant 2025.11+
            fields["unit_class"] = converter.UNIT_CLASS if converter is not None else None
        limits = GuardLimits.for_register(meter.medium, unit, self._max_rate(meter.medium))
        series = _Series(cast(StatisticMetaData, fields), CounterGuard(limits), unit)
        rows = last.get(stat_id)
        if rows:
            row = rows[0]
            series.hour = datetime.fromtimestamp(row["start"], UTC)
            if row.get("sum") is not None:
                series.sum = Decimal(repr(row["sum"]))
            if row.get("state") is not None:
                series.state = Decimal(repr(row["state"]))
                # The row's reading was stamped within its hour: from its start
                # the guard allows at least as much as it should.
                series.guard.seed(series.state, series.hour.timestamp())
        self._series[(meter.id, register.key)] = series
        return series

    @callback
    def async_rebase(self, meter_id: str, register_key: str | None = None) -> None:
        """Start a new series at the next reading (a confirmed replacement), adding nothing to the sum.

        ``register_key`` ``None`` means every register of the meter.
        """
        for (series_meter, key), series in self._series.items():
            if series_meter == meter_id and register_key in {None, key}:
                series.start_over()
        self._rebase.add((meter_id, register_key))
