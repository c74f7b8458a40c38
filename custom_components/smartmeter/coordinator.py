"""One coordinator per config entry: it runs the entry's meter source.

The source is push: the coordinator consumes its frames in a config-entry
background task and hands each one to the entities with
``async_set_updated_data``. There is no polling and no ``util.Throttle``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .const import DOMAIN, LOGGER, RAW_HISTORY
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

    @property
    def connected(self) -> bool:
        """Whether the link delivers telegrams now."""
        return self.source.connected

    @callback
    def async_start(self) -> None:
        """Start reading in a background task owned by the config entry."""
        self._task = self.config_entry.async_create_background_task(
            self.hass, self._run(), f"{DOMAIN} reader {self.config_entry.title}"
        )

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
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.source.close()

    async def _run(self) -> None:
        async for frame in self.source.frames():
            self.async_handle_frame(frame)

    @callback
    def async_link_status(self, connected: bool) -> None:
        """The source reports the link going up or down: refresh availability."""
        if self.data is not None:
            self.async_update_listeners()

    @callback
    def async_handle_frame(self, frame: Frame) -> None:
        """Merge one good frame into the meters' state and notify entities."""
        meters = dict(self.data.meters) if self.data is not None else {}
        for meter in frame.meters:
            meters[meter.id] = meter
        self.frames.append(frame.raw)
        self.async_set_updated_data(SmartMeterData(meters=meters, frame=frame))
        self._first.set()
