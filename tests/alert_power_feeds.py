"""Feeds and oracles for the electricity alert tests in a test Home Assistant (tests/test_alerts_power_ha.py).

* What a DSMR telegram says about power failures, read from its text with a
  regex of its own (not the project's decoder): the failure counters
  ``0-0:96.7.21`` / ``0-0:96.7.9`` and the newest real entry of the
  power-failure log ``1-0:99.97.0``.
* Telegram variants with a correct CRC: counters raised, a log entry added,
  the voltages at 0 V.
* Waiting for the meter's reader under a frozen clock: ``freezer`` stops the
  event loop's clock too, so no ``asyncio.sleep(x)`` or ``asyncio.timeout`` may
  be awaited; the helpers yield to the loop and, for the pty's open/close that
  run in executor threads, wait on a thread.
* A household series (tests/core/usage_series.py) replayed as the states of
  two followed sensors, an energy total and a power, on one device.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal

from freezegun.api import FrozenDateTimeFactory

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartmeter.const import CONF_ENTITIES, CONF_PROTOCOL, DOMAIN, PROTOCOL_ENTITY
from custom_components.smartmeter.core.alerts.usage import ElectricityMonitor, UsageAlert
from custom_components.smartmeter.core.source import StreamSource
from tests.common import PtyMeter, meter_id, mock_entry, unload
from tests.faults import recrc, set_line, set_register

# DSMR stamps are local time with S (summer) or W (winter); the corpus meters are Dutch or Luxembourgish.
_DSMR_OFFSETS = {"W": timezone(timedelta(hours=1)), "S": timezone(timedelta(hours=2))}
# An empty 99.97.0 slot: 2^31 - 1 seconds or more (DSMR P1 5.0.2 § 6.12 fills unused entries so).
_PLACEHOLDER_S = 2**31 - 1
_COUNT = r"\((\d+)\)"
_LOG_LINE = re.compile(rb"^1-0:99\.97\.0\((\d+)\)\(0-0:96\.7\.19\)((?:\(\d{12}[SW]\)\(\d+\*s\))*)", re.M)
_LOG_ENTRY = re.compile(rb"\((\d{12})([SW])\)\((\d+)\*s\)")


@dataclass(frozen=True)
class FailureRegisters:
    """The power-failure registers as a telegram's text states them."""

    power_failures: int | None
    long_power_failures: int | None
    log_last_end: datetime | None
    log_last_duration_s: int | None


def dsmr_stamp(text: bytes, season: bytes) -> datetime:
    """A DSMR ``YYMMDDhhmmss`` + ``S``/``W`` stamp as an aware datetime (CET/CEST)."""
    naive = datetime.strptime(text.decode(), "%y%m%d%H%M%S")
    return naive.replace(tzinfo=_DSMR_OFFSETS[season.decode()])


def failure_registers(telegram: bytes) -> FailureRegisters:
    """Read 0-0:96.7.21, 0-0:96.7.9 and the newest real 1-0:99.97.0 entry from the telegram's text."""

    def count(obis: str) -> int | None:
        found = re.search(rb"^" + re.escape(obis.encode()) + _COUNT.encode(), telegram, re.M)
        return None if found is None else int(found.group(1))

    last: tuple[datetime, int] | None = None
    if (line := _LOG_LINE.search(telegram)) is not None:
        for stamp, season, duration in _LOG_ENTRY.findall(line.group(2)):
            if int(duration) >= _PLACEHOLDER_S:
                continue
            end = dsmr_stamp(stamp, season)
            if last is None or end > last[0]:
                last = (end, int(duration))
    return FailureRegisters(
        power_failures=count("0-0:96.7.21"),
        long_power_failures=count("0-0:96.7.9"),
        log_last_end=None if last is None else last[0],
        log_last_duration_s=None if last is None else last[1],
    )


def dsmr_text(moment: datetime) -> bytes:
    """A moment as the meter writes it (winter time: the tests run in January)."""
    local = moment.astimezone(_DSMR_OFFSETS["W"])
    return local.strftime("%y%m%d%H%M%S").encode() + b"W"


def with_failures(telegram: bytes, *, rise: int = 0, logged: tuple[datetime, int] | None = None) -> bytes:
    """The telegram with 0-0:96.7.21 raised by ``rise`` and, if ``logged`` (end, seconds), a new log entry first."""
    now = failure_registers(telegram).power_failures
    assert now is not None
    changed = set_register(telegram, "0-0:96.7.21", Decimal(now + rise)) if rise else telegram
    if logged is not None:
        line = _LOG_LINE.search(changed)
        assert line is not None
        end, seconds = logged
        entries = b"(%s)(%010d*s)" % (dsmr_text(end), seconds) + line.group(2)
        new = b"1-0:99.97.0(%d)(0-0:96.7.19)" % (int(line.group(1)) + 1) + entries
        changed = set_line(changed, line.group(0), new)
    return recrc(changed)


def with_voltages(telegram: bytes, volts: str, power_kw: str | None = None) -> bytes:
    """The telegram with every phase voltage at ``volts`` (and the import power at ``power_kw``)."""
    for obis in ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0"):
        telegram = set_register(telegram, obis, volts)
    if power_kw is not None:
        telegram = set_register(telegram, "1-0:1.7.0", power_kw)
    return telegram


# ---------------------------------------------------------------- waiting under a frozen clock


def _sleep_in_thread(seconds: float) -> None:
    time.sleep(seconds)


async def until(condition: Callable[[], bool], *, turns: int = 20_000) -> None:
    """Run the loop until ``condition()`` holds, without loop timers (the clock is frozen).

    Yields to the loop; every 50 turns waits 1 ms on a thread so the pty's
    open and close (executor jobs) can finish. ``turns`` bounds a hang.
    """
    loop = asyncio.get_running_loop()
    for turn in range(turns):
        if condition():
            return
        if turn % 50 == 49:
            await loop.run_in_executor(None, _sleep_in_thread, 0.001)
        else:
            await asyncio.sleep(0)
    raise AssertionError(f"condition not met after {turns} loop turns")


async def settle(turns: int = 20) -> None:
    """Let the loop run what is ready (handlers, scheduled callbacks)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def send(pty: PtyMeter, source: StreamSource, telegram: bytes) -> None:
    """Write one telegram to the pty and wait until the entry's reader handled it (frozen clock safe)."""
    stats = source.stats
    history = source.raw_history
    before = stats.frames_ok + stats.frames_bad_checksum + stats.frames_undecodable
    os.write(pty._master, telegram)
    pty.sent += 1

    def taken() -> bool:
        handled = stats.frames_ok + stats.frames_bad_checksum + stats.frames_undecodable
        return bool(handled > before and history[-1] == telegram)

    await until(taken)
    await settle()


@contextlib.asynccontextmanager
async def frozen_entry(
    hass: HomeAssistant, telegram: bytes, *, options: dict[str, object] | None = None
) -> AsyncIterator[tuple[MockConfigEntry, PtyMeter]]:
    """An entry on a pty meter set up under a frozen clock; unloaded on exit.

    The port flushes its input when opened, and the pty's own replay loop
    sleeps on the (frozen) loop clock: the telegram is written until the
    entry's first-frame wait is over. Needs serialx's open delay at 0.
    """
    async with PtyMeter([]) as pty:
        entry = mock_entry(pty.path, meter_id(telegram), options=dict(options or {}))
        entry.add_to_hass(hass)
        setup = hass.async_create_task(hass.config_entries.async_setup(entry.entry_id))
        for _ in range(100):
            os.write(pty._master, telegram)
            with contextlib.suppress(AssertionError):
                await until(setup.done, turns=200)
            if setup.done():
                break
        else:
            setup.cancel()
            raise AssertionError("the entry did not take a telegram (a wait on the frozen loop clock?)")
        assert await setup
        await settle()
        try:
            yield entry, pty
        finally:
            await unload(hass, entry)


# ---------------------------------------------------------------- a household behind followed sensors

ENERGY_ATTRS = {"device_class": "energy", "unit_of_measurement": "kWh", "state_class": "total_increasing"}
POWER_ATTRS = {"device_class": "power", "unit_of_measurement": "W", "state_class": "measurement"}


def household_sensors(hass: HomeAssistant) -> tuple[str, str]:
    """An energy total and a power sensor of one (foreign) device, as a Shelly or ZHA meter registers them."""
    owner = MockConfigEntry(domain="shelly")
    owner.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=owner.entry_id,
        identifiers={("shelly", "shellyem3-c45bbe6a1b2c")},
        manufacturer="Shelly",
        model="Shelly 3EM",
        name="House meter",
    )
    registry = er.async_get(hass)
    energy, power = (
        registry.async_get_or_create(
            "sensor",
            "shelly",
            f"shellyem3-c45bbe6a1b2c-{kind}",
            suggested_object_id=f"house_{kind}",
            device_id=device.id,
            config_entry=owner,
        ).entity_id
        for kind in ("energy", "power")
    )
    return energy, power


def power_steps(
    readings: list[tuple[datetime, Decimal, Decimal]], step: timedelta
) -> Iterator[tuple[datetime, Decimal, Decimal]]:
    """``(time, kWh, kW)`` every ``step`` from per-minute readings: the total the meter last stated and the power now."""
    start, end = readings[0][0], readings[-1][0]
    moment = start
    while moment <= end:
        minute = int((moment - start) // timedelta(minutes=1))
        _, kwh, kw = readings[minute]
        yield moment, kwh, kw
        moment += step


def household_entry(energy: str, power: str) -> MockConfigEntry:
    """An "entity" entry following the two sensors, as the config flow creates it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="House meter",
        unique_id=f"entity:{energy}",
        data={CONF_PROTOCOL: PROTOCOL_ENTITY, CONF_ENTITIES: sorted([energy, power])},
    )


class Household:
    """Plays a household's readings as the states of its energy and power sensors, at their times.

    Each step writes the energy total at ``t`` and the power one second later
    (two integrations' updates rarely coincide); each write is a frame of the
    meter (both registers, the other one as it stands). ``reference`` is an
    :class:`ElectricityMonitor` fed exactly what the hub is fed, to compare.
    """

    def __init__(
        self, hass: HomeAssistant, freezer: FrozenDateTimeFactory, energy: str, power: str, tz: tzinfo
    ) -> None:
        self.hass = hass
        self.freezer = freezer
        self.energy = energy
        self.power = power
        self.reference = ElectricityMonitor(tz=tz)  # the default thresholds, as the entry's
        self.reference_alerts: list[UsageAlert] = []
        self.typical_at_energy: Decimal | None = None
        self.entry: MockConfigEntry | None = None
        self._kw: Decimal | None = None

    def _write(self, entity_id: str, value: str, attributes: dict[str, str]) -> None:
        self.hass.states.async_set(entity_id, value, attributes)

    async def start(self, moment: datetime, kwh: Decimal, kw: Decimal) -> MockConfigEntry:
        """The sensors' first states, then the entry (its source reads them at once)."""
        self.freezer.move_to(moment)
        self._write(self.energy, str(kwh), ENERGY_ATTRS)
        self._write(self.power, str(int(kw * 1000)), POWER_ATTRS)
        self._kw = kw
        self.reference.add_reading(moment, kwh)
        self.reference.add_power(moment, kw)
        entry = self.entry = household_entry(self.energy, self.power)
        entry.add_to_hass(self.hass)
        assert await self.hass.config_entries.async_setup(entry.entry_id)
        await self.hass.async_block_till_done()
        return entry

    async def _delivered(self, moment: datetime) -> None:
        assert self.entry is not None
        coordinator = self.entry.runtime_data
        for _ in range(50):
            data = coordinator.data
            if data is not None and data.received >= moment and data.changed:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"the reading at {moment} did not reach the coordinator")

    async def step(self, moment: datetime, kwh: Decimal, kw: Decimal) -> None:
        """The energy total at ``moment``, the power a second later."""
        assert self._kw is not None
        self.freezer.move_to(moment)
        await asyncio.sleep(0)  # the timers due by now run (the alert tick among them)
        self._write(self.energy, str(kwh), ENERGY_ATTRS)
        self.reference_alerts += self.reference.add_reading(moment, kwh)
        self.reference.add_power(moment, self._kw)
        # Today-vs-typical as of this reading: the power write a second later is held back
        # (the figure is written at most once per 15 minutes of readings).
        self.typical_at_energy = self.reference.today_vs_typical()
        await self._delivered(moment)
        later = moment + timedelta(seconds=1)
        self.freezer.move_to(later)
        self._write(self.power, str(int(kw * 1000)), POWER_ATTRS)
        self.reference_alerts += self.reference.add_reading(later, kwh)
        self.reference.add_power(later, kw)
        self._kw = kw
        await self._delivered(later)
