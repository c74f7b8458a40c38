"""A meter source that follows existing Home Assistant entities (ZHA, Shelly, ESPHome, ...).

The user picks cumulative energy, gas or water sensors (and optionally power
sensors) that another integration already provides. This source follows their
states and turns them into frames of the meter model, one meter per device
(or per entity without a device), so the counter guard, the write policy and
the planning features work for those meters as for a serial one.

A state that is not a finite number (``unavailable``, ``unknown``, text, NaN)
produces no register and is counted; the guard then rejects zeros, decreases
and impossible jumps like for any other meter.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.const import ATTR_DEVICE_CLASS, ATTR_UNIT_OF_MEASUREMENT, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    EventStateReportedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event, async_track_state_report_event

from .const import PROTOCOL_ENTITY
from .core.models import Frame, Integrity, LinkStats, Medium, Meter, Register

# Unit (lower case) -> (register key, medium) for a cumulative sensor.
_COUNTERS: dict[tuple[str, str], tuple[str, Medium]] = {
    (SensorDeviceClass.ENERGY, "kwh"): ("energy_import_total", Medium.ELECTRICITY),
    (SensorDeviceClass.ENERGY, "wh"): ("energy_import_total", Medium.ELECTRICITY),
    (SensorDeviceClass.ENERGY, "mwh"): ("energy_import_total", Medium.ELECTRICITY),
    (SensorDeviceClass.GAS, "m³"): ("gas", Medium.GAS),
    (SensorDeviceClass.GAS, "ft³"): ("gas", Medium.GAS),
    (SensorDeviceClass.WATER, "m³"): ("water", Medium.WATER),
    (SensorDeviceClass.WATER, "l"): ("water", Medium.WATER),
    (SensorDeviceClass.WATER, "gal"): ("water", Medium.WATER),
}
_POWER_UNITS = {"w", "kw"}
# The stated units as the meter model writes them.
_UNITS = {
    "kwh": "kWh",
    "wh": "Wh",
    "mwh": "MWh",
    "m³": "m3",
    "ft³": "ft3",
    "l": "L",
    "gal": "gal",
    "w": "W",
    "kw": "kW",
}


@dataclass(frozen=True, slots=True)
class FollowedEntity:
    """An entity the source follows and where its value lands."""

    entity_id: str
    meter_id: str
    key: str
    medium: Medium


def describe(state: State) -> tuple[str, Medium] | None:
    """The register key and medium an entity's state would feed, or ``None`` if it is no meter value."""
    device_class = state.attributes.get(ATTR_DEVICE_CLASS)
    unit = str(state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) or "").lower()
    if device_class == SensorDeviceClass.POWER and unit in _POWER_UNITS:
        return "power_import", Medium.ELECTRICITY
    if device_class is None:
        return None
    return _COUNTERS.get((str(device_class), unit))


def meter_id_for(hass: HomeAssistant, entity_id: str) -> str:
    """One meter per device; an entity without a device is a meter of its own."""
    entry = er.async_get(hass).async_get(entity_id)
    if entry is not None and entry.device_id:
        return f"device_{entry.device_id}"
    return f"entity_{entity_id}"


def _number(state: State | None) -> Decimal | None:
    if state is None or state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
        return None
    try:
        value = Decimal(state.state)
    except InvalidOperation:
        return None
    if not value.is_finite() or math.isnan(float(value)):
        return None
    return value


class EntitySource:
    """Frames from the states of existing entities; implements core.source.MeterSource."""

    def __init__(self, hass: HomeAssistant, followed: Iterable[FollowedEntity]) -> None:
        """Follow ``followed`` (see :func:`describe` and :func:`meter_id_for`)."""
        self.hass = hass
        self.followed = {item.entity_id: item for item in followed}
        self.stats = LinkStats()
        self.not_numeric: dict[str, int] = {}  # entity_id -> states that were not a number
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=1000)
        self._unsub: CALLBACK_TYPE | None = None
        self._unsub_reported: CALLBACK_TYPE | None = None
        self._closed = False
        self.on_status: Callable[[bool], None] | None = None
        self._was_connected: bool | None = None

    @property
    def connected(self) -> bool:
        """Whether at least one followed entity has a number now."""
        return any(_number(self.hass.states.get(entity_id)) is not None for entity_id in self.followed)

    def _frame(self, meter_id: str, changed: State | None = None) -> Frame | None:
        """The meter's frame from its entities' states (``changed``: the state an event carried).

        Events are handled after the state machine moved on: a value that was
        replaced at once (a zero, then the right reading) must still be judged.
        """
        registers: list[Register] = []
        medium = Medium.UNKNOWN
        for item in self.followed.values():
            if item.meter_id != meter_id:
                continue
            if changed is not None and changed.entity_id == item.entity_id:
                state: State | None = changed
            else:
                state = self.hass.states.get(item.entity_id)
            value = _number(state)
            if value is None or state is None:
                continue
            unit = str(state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) or "").lower()
            registers.append(
                Register(
                    obis=f"entity:{item.entity_id}", key=item.key, value=value, unit=_UNITS.get(unit, unit)
                )
            )
            if medium is Medium.UNKNOWN or item.key != "power_import":
                medium = item.medium
        if not registers:
            return None
        return Frame(
            protocol=PROTOCOL_ENTITY,
            integrity=Integrity.ABSENT,
            meters=(Meter(id=meter_id, medium=medium, registers=tuple(registers)),),
        )

    @callback
    def _changed(self, event: Event[EventStateChangedData]) -> None:
        item = self.followed.get(event.data["entity_id"])
        if item is None or self._closed:
            return
        connected = self.connected
        if connected != self._was_connected:
            self._was_connected = connected
            if self.on_status is not None:
                self.on_status(connected)
        if _number(event.data["new_state"]) is None:
            self.not_numeric[item.entity_id] = self.not_numeric.get(item.entity_id, 0) + 1
            self.stats.frames_undecodable += 1
            new = event.data["new_state"]
            self.stats.last_error = f"{item.entity_id} is {new.state if new is not None else 'removed'}"
            return
        self._put(self._frame(item.meter_id, event.data["new_state"]))

    @callback
    def _reported(self, event: Event[EventStateReportedData]) -> None:
        """The same value written again: a reading of a total that stood still (a night without gas).

        Home Assistant reports an unchanged write as ``state_reported``, not as
        a change; the alerts need it (a meter that stood still is evidence too).
        """
        item = self.followed.get(event.data["entity_id"])
        state = event.data["new_state"]
        if item is None or self._closed or _number(state) is None:
            return
        self._put(self._frame(item.meter_id, state))

    @callback
    def _put(self, frame: Frame | None) -> None:
        if frame is None:
            return
        self.stats.frames_ok += 1
        if self._queue.full():  # a consumer that stopped: keep the newest
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def frames(self) -> AsyncIterator[Frame]:
        """The current values first, then a frame per state change, until closed."""
        if self._unsub is None:
            self._unsub = async_track_state_change_event(self.hass, list(self.followed), self._changed)
            self._unsub_reported = async_track_state_report_event(
                self.hass, list(self.followed), self._reported
            )
            for meter_id in dict.fromkeys(item.meter_id for item in self.followed.values()):
                if (frame := self._frame(meter_id)) is not None:
                    self.stats.frames_ok += 1
                    yield frame
        while not self._closed:
            yield await self._queue.get()

    async def close(self) -> None:
        """Stop following (idempotent)."""
        self._closed = True
        for unsub in (self._unsub, self._unsub_reported):
            if unsub is not None:
                unsub()
        self._unsub = self._unsub_reported = None
