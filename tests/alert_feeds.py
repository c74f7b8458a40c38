"""Simulated meter series played through the integration's real sources, for the alert tests.

A test Home Assistant on a frozen clock; each reading moves the clock to its
time (so the 15 s alert tick, the delayed saves and the counter guard see the
same time as the reading) and is delivered the way a real meter delivers it:

* :class:`EntityFeed`: the state of a water or gas sensor that an "entity"
  entry follows (``hass.states.async_set``; ``force_update`` like a meter
  integration that writes every reading, without it only changes reach the
  source, as with an integration that writes only changes);
* :class:`WmbusFeed`: a wmbusmeters telegram on the mocked MQTT broker, in the
  JSON shape of the corpus' iwmtx5 water meter, stamped like wmbusmeters
  stamps it (``timestamp``, when it received the telegram).

:class:`AlertRun` plays a series and records every state the alert entities
take and every ``smartmeter_alert`` event, with the simulated time it
happened at.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from freezegun.api import FrozenDateTimeFactory

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, HomeAssistant, State, callback
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
)

from custom_components.smartmeter.const import (
    CONF_ENTITIES,
    CONF_PROTOCOL,
    DOMAIN,
    EVENT_ALERT,
    PROTOCOL_ENTITY,
)
from tests.core import water_series
from tests.mqtt_common import IWMTX5, wmbus_json

WATER_ENTITY = "sensor.water_meter"
GAS_ENTITY = "sensor.gas_meter"
WATER_L = {"device_class": "water", "unit_of_measurement": "L", "state_class": "total_increasing"}
WATER_M3 = {"device_class": "water", "unit_of_measurement": "m³", "state_class": "total_increasing"}
GAS_M3 = {"device_class": "gas", "unit_of_measurement": "m³", "state_class": "total_increasing"}
WMBUS_ID = "22917370"  # the corpus iwmtx5 water meter
WMBUS_TOPIC = "wmbusmeters/WaterWater"


def entity_entry(entity_id: str, options: dict[str, Any] | None = None) -> MockConfigEntry:
    """An "entity" entry following one sensor, as the config flow creates it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Meters from entities",
        unique_id=f"entity:{entity_id}",
        data={CONF_PROTOCOL: PROTOCOL_ENTITY, CONF_ENTITIES: [entity_id]},
        options=options or {},
    )


def entity_meter_id(entity_id: str) -> str:
    """The meter ID of a followed entity without a device."""
    return f"entity_{entity_id}"


def wmbus_water_payload(when: datetime, total_m3: Decimal) -> bytes:
    """What wmbusmeters publishes for the iwmtx5 water meter reading ``total_m3`` at ``when``."""
    data = wmbus_json(IWMTX5) | {
        "status": "OK",
        "total_m3": float(total_m3),
        "timestamp": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(data).encode()


class Feed(Protocol):
    """Delivers one reading; ``True`` when the source makes a frame of it."""

    def write(self, hass: HomeAssistant, when: datetime, value: Decimal) -> bool:
        """Deliver the register's ``value`` (litres or m³) read at ``when``."""


@dataclass
class EntityFeed:
    """A sensor entity written with each reading (``unit`` "L" or "m3" for water, "m3" for gas)."""

    entity_id: str
    attributes: dict[str, str]
    force_update: bool = True
    m3: bool = False  # the series is in litres, the sensor states m³ (three decimals)
    # An unchanged write (no force_update) is a frame too: for a source that follows state_reported.
    every_write: bool = False
    last: str | None = None

    def write(self, hass: HomeAssistant, when: datetime, value: Decimal) -> bool:
        """Write the sensor's state."""
        text = str(value / 1000 if self.m3 else value)
        changed = text != self.last
        self.last = text
        hass.states.async_set(self.entity_id, text, self.attributes, force_update=self.force_update)
        return changed or self.force_update or self.every_write


@dataclass
class WmbusFeed:
    """wmbusmeters telegrams of the iwmtx5 water meter (the series in litres on a 1 L register)."""

    def write(self, hass: HomeAssistant, when: datetime, value: Decimal) -> bool:
        """Publish the telegram."""
        async_fire_mqtt_message(hass, WMBUS_TOPIC, wmbus_water_payload(when, value / 1000))
        return True


def water_readings(
    house: water_series.Household,
    start: datetime,
    *,
    cadence: float,
    seed: int = 0,
    initial: int = 123_456,
) -> list[tuple[datetime, Decimal]]:
    """The household's 1 L register (litres, from ``initial``) read every ``cadence`` s (± 20 %), on whole seconds."""
    flow = water_series.Flow(water_series.usage(house))
    readings = water_series.sample(flow, end=house.end, cadence=cadence, seed=seed, start=start)
    out: list[tuple[datetime, Decimal]] = []
    for reading in readings:
        when = reading.when.replace(microsecond=0)
        if out and when <= out[-1][0]:
            continue
        out.append((when, reading.value + initial))
    return out


def running_toilet(l_h: float, from_h: float, to_h: float) -> tuple[water_series.Segment, ...]:
    """A cistern refilling 1.5 L at 6 L/min as often as ``l_h`` needs, from ``from_h`` to ``to_h``."""
    period = 1.5 / l_h * water_series.HOUR
    rate = 6.0 / water_series.MINUTE
    segments = []
    t = from_h * water_series.HOUR
    while t < to_h * water_series.HOUR:
        segments.append(water_series.Segment(t, t + 1.5 / rate, rate))
        t += period
    return tuple(segments)


@dataclass
class AlertRun:
    """An entry's alerts followed through a simulated series."""

    hass: HomeAssistant
    freezer: FrozenDateTimeFactory
    entry: MockConfigEntry
    meter_id: str
    feed: Feed
    states: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    now: datetime | None = None

    def __post_init__(self) -> None:
        self.hass.bus.async_listen(EVENT_ALERT, self._event)

    @callback
    def _event(self, event: Event[dict[str, Any]]) -> None:
        self.events.append(dict(event.data) | {"at": self.now})

    async def setup(self) -> None:
        """Load the entry (its source delivers the current state at once)."""
        if self.entry.state is ConfigEntryState.NOT_LOADED and self.entry.entry_id not in (
            e.entry_id for e in self.hass.config_entries.async_entries(DOMAIN)
        ):
            self.entry.add_to_hass(self.hass)
        assert await self.hass.config_entries.async_setup(self.entry.entry_id)
        await self.hass.async_block_till_done()
        assert self.entry.state is ConfigEntryState.LOADED

    async def reload(self) -> None:
        """Unload and load the entry again (the alert hub saves and restores)."""
        assert await self.hass.config_entries.async_reload(self.entry.entry_id)
        await self.hass.async_block_till_done()
        assert self.entry.state is ConfigEntryState.LOADED

    def entity_id(self, key: str, domain: str = "binary_sensor") -> str:
        """The entity of one of the meter's alerts (from the registry, by unique ID)."""
        entity_id = er.async_get(self.hass).async_get_entity_id(domain, DOMAIN, f"{self.meter_id}_{key}")
        assert entity_id is not None, f"no {domain} {key} for {self.meter_id}"
        return entity_id

    def state(self, key: str, domain: str = "binary_sensor") -> State:
        """The current state of one of the meter's alert entities."""
        state = self.hass.states.get(self.entity_id(key, domain))
        assert state is not None
        return state

    def watch(self, *keys: str) -> None:
        """Record every state these alert binary sensors take from now on (once they exist)."""
        for key in keys:
            self.states.setdefault(key, [])

    def _record(self, when: datetime) -> None:
        registry = er.async_get(self.hass)
        for key, seen in self.states.items():
            entity_id = registry.async_get_entity_id("binary_sensor", DOMAIN, f"{self.meter_id}_{key}")
            state = None if entity_id is None else self.hass.states.get(entity_id)
            value = "missing" if state is None else state.state
            if not seen or seen[-1][1] != value:
                seen.append((when, value))

    def seen(self, key: str) -> list[tuple[datetime, str]]:
        """The states one watched alert binary sensor took, with when (simulated time)."""
        return self.states[key]

    def first(self, key: str, value: str = "on") -> datetime | None:
        """When a watched alert binary sensor first took ``value``."""
        return next((when for when, seen in self.states[key] if seen == value), None)

    async def advance(self, when: datetime) -> None:
        """Move the clock to ``when`` and run what was due (the alert tick among it).

        The test loop's clock follows the frozen time: the timers that are due
        run in the next loop iteration, as they would have run in real time.
        """
        self.now = when
        self.freezer.move_to(when)
        await asyncio.sleep(0)

    async def _delivered(self, when: datetime) -> None:
        """Wait until the coordinator handled the frame of the reading at ``when``."""
        coordinator = self.entry.runtime_data
        for _ in range(50):
            data = coordinator.data
            if data is not None and data.received >= when and self.meter_id in data.changed:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"the reading at {when} did not reach the coordinator")

    async def play(
        self,
        readings: Iterable[tuple[datetime, Decimal]],
        *,
        until: datetime | None = None,
        check: Callable[[datetime], None] | None = None,
    ) -> None:
        """Deliver the readings (up to ``until``), each at its time."""
        for when, value in readings:
            if until is not None and when > until:
                return
            await self.advance(when)
            if self.feed.write(self.hass, when, value):
                await self._delivered(when)
            self._record(when)
            if check is not None:
                check(when)

    async def idle(self, until: datetime, step: timedelta = timedelta(minutes=5)) -> None:
        """Let time pass without readings (the alert tick still runs)."""
        assert self.now is not None
        when = self.now
        while when < until:
            when = min(when + step, until)
            await self.advance(when)
            self._record(when)

    def alerts(self, *kinds: str) -> list[tuple[str, bool]]:
        """The alert events so far as ``(alert, active)`` (only ``kinds`` when given)."""
        return [(e["alert"], e["active"]) for e in self.events if not kinds or e["alert"] in kinds]


def between(
    readings: Sequence[tuple[datetime, Decimal]], start: datetime, end: datetime
) -> list[tuple[datetime, Decimal]]:
    """The readings in ``[start, end)``."""
    return [(when, value) for when, value in readings if start <= when < end]


def after(start: datetime, hours: float) -> datetime:
    """``hours`` after ``start``."""
    return start + timedelta(hours=hours)
