"""Faults injected through the real pseudo-terminal path never reach the compiled statistics.

A real recorder, real telegrams (corpus AM550, readings changed and CRC
recomputed), the entry in live mode so that every accepted reading becomes a
state row. After the faults, the recorder compiles its 5-minute and hourly
statistics over the periods the test ran in, and the hourly ``sum`` of the
energy sensor must equal the true consumption: no spike from a zero, a drop, a
replayed telegram, an impossible jump, a restart in the middle of the hour or a
swapped meter.

A control test writes the same faults straight into the state machine (no
guard) and shows that the recorder then books a spike: the check can fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest

from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_mock_restore_state_shutdown_restart
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)
from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

from custom_components.smartmeter.const import CONF_LIVE, DOMAIN
from custom_components.smartmeter.coordinator import SmartMeterCoordinator
from tests.common import AM550, corpus_telegram, loaded_entry, meter_id, state_of, unload
from tests.faults import FakeClock, StepSender, set_line, set_register

ENERGY = "sensor.electricity_meter_energy_import_tariff_1"
BASE = corpus_telegram(AM550)  # import tariff 1 at 2130.115 kWh
METER = meter_id(BASE)
NEW_METER = "4530303434303037333832323436309999"


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """Prepare the recorder before ``hass`` (the autouse custom-integrations fixture sets ``hass`` up first)."""


@pytest.fixture
def meter_clock() -> Iterator[FakeClock]:
    """Readings stamped one simulated second apart as the test ticks (the recorder runs on real time)."""
    fake = FakeClock(dt_util.utcnow())
    with patch.object(SmartMeterCoordinator, "clock", staticmethod(fake)):
        yield fake


def energy(value: str, telegram: bytes = BASE) -> bytes:
    """The AM550 telegram with import tariff 1 at ``value`` kWh."""
    return set_register(telegram, "1-0:1.8.1", value)


def _periods(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every 5-minute period from the one holding ``start`` to the last of the hour holding ``end``."""
    period = start.replace(minute=start.minute - start.minute % 5, second=0, microsecond=0)
    last = end.replace(minute=55, second=0, microsecond=0)
    while period <= last:
        yield period
        period += timedelta(minutes=5)


async def _hourly_changes(
    hass: HomeAssistant, start: datetime, entity_ids: set[str]
) -> dict[str, list[float]]:
    """Compile the statistics of every period since ``start``; each entity's hourly ``sum`` changes."""
    await async_wait_recording_done(hass)
    for period in _periods(start, dt_util.utcnow()):
        do_adhoc_statistics(hass, start=period)
        await async_wait_recording_done(hass)
    found: dict[str, list[dict[str, Any]]] = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        start - timedelta(hours=1),
        None,
        entity_ids,
        "hour",
        None,
        {"sum"},
    )
    changes: dict[str, list[float]] = {}
    for entity_id, rows in found.items():
        sums = [0.0] + [float(row["sum"]) for row in rows]
        changes[entity_id] = [after - before for before, after in itertools.pairwise(sums)]
    return changes


async def test_faults_leave_no_spike(
    recorder_mock: Recorder, hass: HomeAssistant, entity_registry: er.EntityRegistry, meter_clock: FakeClock
) -> None:
    """Zero, drop, replay, jump, restart mid-hour, meter swap: the hourly sums are the true consumption."""
    start = dt_util.utcnow()
    async with loaded_entry(hass, [BASE], options={CONF_LIVE: True}) as (entry, pty):
        sender = StepSender(pty, entry)
        for after, telegram in (
            (1, energy("2130.116")),
            (1, energy("2130.117")),
            (1, energy("0")),  # a meter or bridge that reads zero for a moment
            (1, energy("2130.118")),
            (10, energy("2130.121")),  # telegrams lost on the line for 10 s
            (1, BASE),  # an old telegram replayed by a reconnecting bridge (2130.115)
            (1, energy("2130.122")),
            (1, energy("2140.122")),  # 10 kWh within a second: impossible at 55 kW
            (1, energy("2130.123")),
        ):
            meter_clock.tick(after)
            await sender.send(telegram)
        await hass.async_block_till_done()
        assert state_of(hass, ENERGY).state == "2130.123"

        # A restart in the middle of the hour; the first telegram after it reads zero.
        await async_mock_restore_state_shutdown_restart(hass)
        await unload(hass, entry)
        pty.set_telegrams([energy("0")])
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert state_of(hass, ENERGY).state == "2130.123"
        sender = StepSender(pty, entry)
        meter_clock.tick(30)
        await sender.send(energy("2130.124"))

        # The meter is swapped: a new equipment identifier and a register near zero.
        swapped = set_line(
            energy("0.500"), f"0-0:96.1.1({METER})".encode(), f"0-0:96.1.1({NEW_METER})".encode()
        )
        meter_clock.tick(1)
        await sender.send(swapped)
        meter_clock.tick(1)
        await sender.send(set_register(swapped, "1-0:1.8.1", "0.501"))
        await hass.async_block_till_done()
        new_energy = entity_registry.async_get_entity_id(
            "sensor", DOMAIN, f"{NEW_METER}_energy_import_tariff_1"
        )
        assert new_energy is not None
        assert state_of(hass, ENERGY).state == "2130.124"  # the old meter keeps its last reading
        assert state_of(hass, new_energy).state == "0.501"

    changes = await _hourly_changes(hass, start, {ENERGY, new_energy})
    # From the first reading (2130.115) to the last (2130.124): 9 Wh, however the hours fall.
    assert sum(changes[ENERGY]) == pytest.approx(0.009, abs=1e-9)
    assert all(0 <= change <= 0.009 + 1e-9 for change in changes[ENERGY])
    # The new meter's series starts at its own first reading, not at the old meter's.
    assert sum(changes[new_energy]) == pytest.approx(0.001, abs=1e-9)
    assert all(0 <= change <= 0.001 + 1e-9 for change in changes[new_energy])


async def test_control_unguarded_faults_spike(recorder_mock: Recorder, hass: HomeAssistant) -> None:
    """The same readings written without the guard: the recorder books a spike (the check above can fail)."""
    assert await async_setup_component(hass, "sensor", {})
    start = dt_util.utcnow()
    entity_id = "sensor.unguarded_energy"
    attributes = {
        "state_class": SensorStateClass.TOTAL_INCREASING,
        "device_class": SensorDeviceClass.ENERGY,
        "unit_of_measurement": "kWh",
    }
    for value in ("2130.115", "2130.116", "0", "2130.118", "2130.115", "2130.122", "2140.122", "2130.123"):
        hass.states.async_set(entity_id, value, attributes)
        await hass.async_block_till_done()
    changes = await _hourly_changes(hass, start, {entity_id})
    assert sum(changes[entity_id]) > 1000  # a zero and a drop are new meter cycles: years of kWh in an hour
