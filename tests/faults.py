"""Fault injection helpers: real telegrams with changed readings (CRC fixed), sent one at a time."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartmeter.core.crc import crc16_arc
from tests.common import PtyMeter, wait_for


def set_register(telegram: bytes, obis: str, value: Decimal | str) -> bytes:
    """The telegram with the last ``(value*unit)`` or ``(value)`` of the ``obis`` line replaced, its CRC recomputed.

    The new value keeps the meter's format: as many integer and decimal
    digits as the old one (``1-0:1.8.1(002130.115*kWh)``).
    """
    line = re.compile(
        rb"^(" + re.escape(obis.encode()) + rb"(?:\([^)]*\))*\()([0-9.]+)((?:\*[^)]*)?\))", re.M
    )
    match = line.search(telegram)
    assert match is not None, f"no {obis} reading in the telegram"
    old = match.group(2).decode()
    decimals = len(old.split(".")[1]) if "." in old else 0
    width = len(old)
    new = f"{Decimal(value):0{width}.{decimals}f}".encode()
    changed = telegram[: match.start(2)] + new + telegram[match.end(2) :]
    return recrc(changed)


def set_line(telegram: bytes, old: bytes, new: bytes) -> bytes:
    """The telegram with one line (or part of one) replaced, its CRC recomputed."""
    assert old in telegram, old
    return recrc(telegram.replace(old, new, 1))


def recrc(telegram: bytes) -> bytes:
    """A telegram ``/ ... !XXXX`` with its CRC16 recomputed (``crc16_arc`` over ``/`` to ``!``)."""
    bang = telegram.rindex(b"!")
    body = telegram[: bang + 1]
    return body + f"{crc16_arc(body):04X}\r\n".encode()


class FakeClock:
    """The time the coordinator stamps readings with, moved by the test.

    Install it with ``patch.object(SmartMeterCoordinator, "clock", staticmethod(fake))``:
    the guard and the write policy then see the test's time, while Home
    Assistant, the event loop and the recorder run on real time.
    """

    def __init__(self, start: str | datetime) -> None:
        """Start at ``start`` (ISO text or an aware datetime)."""
        self.now = start if isinstance(start, datetime) else datetime.fromisoformat(start)

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def tick(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.now += timedelta(seconds=seconds)

    def move_to(self, when: str | datetime) -> None:
        """Jump to ``when``."""
        self.now = when if isinstance(when, datetime) else datetime.fromisoformat(when)


class StepSender:
    """Writes telegrams one at a time to a meter's pty and waits until the entry's reader took each."""

    def __init__(self, pty: PtyMeter, entry: MockConfigEntry) -> None:
        """Take over the pty from its replay loop."""
        self.pty = pty
        self.entry = entry
        pty.set_telegrams([])

    def _handled(self) -> int:
        stats = self.entry.runtime_data.source.stats
        return stats.frames_ok + stats.frames_bad_checksum + stats.frames_undecodable

    async def send(self, telegram: bytes) -> None:
        """Write one telegram and wait until the reader decoded and handled it.

        The reader's raw history ends with it once it was framed (good or not);
        a good telegram was handed to the coordinator in the same step.
        """
        source = self.entry.runtime_data.source
        before = self._handled()
        os.write(self.pty._master, telegram)
        self.pty.sent += 1

        def _taken() -> bool:
            return self._handled() > before and source.raw_history[-1] == telegram

        for _ in range(200):  # usually a few loop turns: the pty delivers at once
            if _taken():
                return
            await asyncio.sleep(0)
        await wait_for(_taken)


def record_states(
    hass: HomeAssistant,
    entity_id: str,
    stamps: list[datetime] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> list[State]:
    """Every state the entity is written with from now on (changes only).

    With ``stamps`` and ``clock``, the clock's time of each write is appended to ``stamps``.
    """
    seen: list[State] = []

    @callback
    def _changed(event: Event[EventStateChangedData]) -> None:
        if (new := event.data["new_state"]) is not None:
            seen.append(new)
            if stamps is not None and clock is not None:
                stamps.append(clock())

    async_track_state_change_event(hass, [entity_id], _changed)
    return seen
