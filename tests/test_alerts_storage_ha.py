"""Alerts keep what they learned: profiles survive a reload and a restart; damaged storage starts afresh.

The gas series is the core tests' simulator (tests/core/usage_series.py), fed
through a followed sensor entity (the real entity source) under a frozen clock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun.api import FrozenDateTimeFactory

from homeassistant.core import HomeAssistant

from custom_components.smartmeter.alerts import MeterAlerts
from tests.alert_feeds import GAS_ENTITY, GAS_M3, AlertRun, EntityFeed, between, entity_entry, entity_meter_id
from tests.core.usage_series import gas_readings

TZ = ZoneInfo("Europe/Amsterdam")
GAS_START = datetime(2025, 1, 6, tzinfo=TZ)  # a Monday in winter
METER = entity_meter_id(GAS_ENTITY)


@pytest.fixture(autouse=True)
async def household_time(hass: HomeAssistant) -> None:
    """The household's time zone; no loop debug mode (a traceback per callback slows the weeks down)."""
    hass.loop.set_debug(False)
    await hass.config.async_set_time_zone("Europe/Amsterdam")


def _at(day: int, hour: int = 0) -> datetime:
    return GAS_START + timedelta(days=day, hours=hour)


def _gas(run: AlertRun) -> MeterAlerts:
    return run.entry.runtime_data.alerts.meters[METER]


def _learned(run: AlertRun) -> list[int]:
    usage = _gas(run).usage
    assert usage is not None
    return [usage.profile.learned(day) for day in range(7)]


async def _learn_two_weeks(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> AlertRun:
    readings = gas_readings(GAS_START, 17, seed=3, step_minutes=60)
    feed = EntityFeed(GAS_ENTITY, GAS_M3)
    feed.write(hass, readings[0][0], readings[0][1])
    freezer.move_to(readings[0][0])
    run = AlertRun(hass, freezer, entity_entry(GAS_ENTITY), METER, feed)
    await run.setup()
    await run.play(between(readings, readings[1][0], _at(15, 20)))
    return run


async def test_gas_profile_survives_a_reload(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Two learned weeks are still learned after the entry reloads; today-vs-typical carries on."""
    run = await _learn_two_weeks(hass, freezer)
    learned = _learned(run)
    assert sum(learned) >= 14, learned
    before = run.state("today_vs_typical", "sensor").state
    assert before not in ("unknown", "unavailable")
    hub = run.entry.runtime_data.alerts
    await run.reload()
    assert run.entry.runtime_data.alerts is not hub
    assert _learned(run) == learned
    assert run.state("today_vs_typical", "sensor").state == before


async def test_damaged_storage_starts_afresh(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stored state that does not parse is dropped with one warning; the entry loads and learns anew."""
    run = await _learn_two_weeks(hass, freezer)
    assert sum(_learned(run)) >= 14
    assert await hass.config_entries.async_unload(run.entry.entry_id)
    await hass.async_block_till_done()
    key = f"smartmeter.alerts.{run.entry.entry_id}"
    stored = hass_storage[key]["data"][METER]
    assert stored["usage"]["profile"]["days"]  # what was saved at unload
    stored["usage"]["hours"] = ["not a number"] * 24
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await run.setup()
    assert _learned(run) == [0] * 7
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "Alerts of meter" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "starting afresh" in warnings[0]
    assert run.state("today_vs_typical", "sensor").state == "unknown"
