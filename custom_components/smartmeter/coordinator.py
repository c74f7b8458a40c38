"""One coordinator per config entry: it runs the entry's meter source.

The source is push: the coordinator consumes its frames in a config-entry
background task and hands each one to the entities with
``async_set_updated_data``. There is no polling and no ``util.Throttle``.

A watchdog marks the meters stale when the link stays up but no good telegram
arrives (a re-keyed Smarty meter, a noisy line that breaks every CRC): the
entities go unavailable instead of showing old values as current, and a key
that stopped working starts a reauthentication flow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .const import DOMAIN, IDLE_TIMEOUT, LOGGER, RAW_HISTORY
from .core.models import Frame, Meter
from .core.source import MeterSource

type SmartMeterConfigEntry = ConfigEntry[SmartMeterCoordinator]


@dataclass(frozen=True, slots=True)
class SmartMeterData:
    """What the entities read: the latest state of every meter on the link."""

    meters: dict[str, Meter]
    frame: Frame
    received: datetime = field(default_factory=dt_util.utcnow)


class SmartMeterCoordinator(DataUpdateCoordinator[SmartMeterData]):
    """Runs one meter source and publishes its frames."""

    config_entry: SmartMeterConfigEntry

    def __init__(self, hass: HomeAssistant, entry: SmartMeterConfigEntry, source: MeterSource) -> None:
        """Set up the coordinator for one config entry's source."""
        super().__init__(hass, LOGGER, config_entry=entry, name=DOMAIN)
        self.source = source
        self.frames: deque[bytes] = deque(maxlen=RAW_HISTORY)
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsub_watchdog: CALLBACK_TYPE | None = None
        self._last_frame = 0.0
        self.stale = False

    @property
    def connected(self) -> bool:
        """Whether the link delivers good telegrams now."""
        return self.source.connected and not self.stale

    @callback
    def async_start(self) -> None:
        """Start reading in a background task owned by the config entry."""
        self._last_frame = self.hass.loop.time()
        self._task = self.config_entry.async_create_background_task(
            self.hass, self._run(), f"{DOMAIN} reader {self.config_entry.title}"
        )
        self._unsub_watchdog = async_track_time_interval(
            self.hass, self._async_watchdog, timedelta(seconds=IDLE_TIMEOUT / 4)
        )

    @callback
    def _async_watchdog(self, _now: datetime) -> None:
        """Mark the meters stale when no good telegram came for a while."""
        if self.stale or self.hass.loop.time() - self._last_frame <= IDLE_TIMEOUT:
            return
        self.stale = True
        if self.source.connected:  # a dropped link was reported by the source already
            LOGGER.warning(
                "No valid telegram from %s for %.0f s: %s",
                self.config_entry.title,
                IDLE_TIMEOUT,
                self.source.stats.last_error,
            )
        if getattr(self.source, "key_error", None) is not None:
            self.config_entry.async_start_reauth(self.hass)
        if self.data is not None:
            self.async_update_listeners()

    async def async_wait_first(self, timeout: float) -> bool:
        """Wait for the first good frame; ``False`` on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._first.wait()
        except TimeoutError:
            return False
        return True

    async def async_stop(self) -> None:
        """Stop reading and release the link."""
        if self._unsub_watchdog is not None:
            self._unsub_watchdog()
            self._unsub_watchdog = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.source.close()

    async def _run(self) -> None:
        """Hand every frame to the entities; a bug on one frame must not stop the reader."""
        try:
            async for frame in self.source.frames():
                try:
                    self.async_handle_frame(frame)
                except Exception:
                    LOGGER.exception("Error handling a telegram from %s", self.config_entry.title)
        except Exception:
            LOGGER.exception("Reading %s stopped", self.config_entry.title)
            self.last_update_success = False
            self.async_update_listeners()

    @callback
    def async_link_status(self, connected: bool) -> None:
        """The source reports the link going up or down: refresh availability."""
        if self.data is not None:
            self.async_update_listeners()

    @callback
    def async_handle_frame(self, frame: Frame) -> None:
        """Merge one good frame into the meters' state and notify entities."""
        self._last_frame = self.hass.loop.time()
        if self.stale:
            self.stale = False
            LOGGER.info("Valid telegrams from %s again", self.config_entry.title)
        meters = dict(self.data.meters) if self.data is not None else {}
        for meter in _unique_meters(frame):
            meters[meter.id] = meter
        self.frames.append(frame.raw)
        self.async_set_updated_data(SmartMeterData(meters=meters, frame=frame))
        self._first.set()


def _unique_meters(frame: Frame) -> list[Meter]:
    """The frame's meters, a sub-meter that repeats an earlier meter's ID renamed by its channel.

    Meters are keyed by ID (devices, unique IDs); a gas meter reporting the
    electricity meter's ID (seen in anonymised telegrams) must not replace it.
    """
    seen: set[str] = set()
    out: list[Meter] = []
    for meter in frame.meters:
        unique = meter
        if meter.id in seen and meter.parent_id is not None:
            unique = replace(meter, id=f"{meter.parent_id}-mbus{meter.channel}")
        seen.add(unique.id)
        out.append(unique)
    return out
