"""Alerts on cloud meters: Octopus gas intervals through the real cloud coordinator feed the gas monitor.

A local fake of the Octopus REST API (tests/cloud_servers/octopus.py) serves five
weeks of half-hourly gas use shaped like a household's (heating mornings and
evenings, nothing at night). Use at 03:00 yesterday is announced; the same kind
of use five days ago is history from the first import: learned, not announced.
Re-imports (the restatement window) and a reload announce nothing twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory

from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done
from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

from custom_components.smartmeter import cloud
from custom_components.smartmeter.const import (
    CONF_ACCOUNT,
    CONF_API_KEY,
    CONF_BACKFILL_DAYS,
    CONF_PROTOCOL,
    DOMAIN,
    EVENT_ALERT,
    PROTOCOL_OCTOPUS,
)
from tests.cloud_servers.octopus import FakeOctopus

KEY = "sk_live_fake0123456789"
ACCOUNT = "A-AAAA1111"
MPAN, SERIAL = "2700003645222", "19L2761452"
MPRN, GAS_SERIAL = "3456789012", "E6S12345678901"
HALF = timedelta(minutes=30)
NIGHT_USE = Decimal("0.050")


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """The recorder is set up before ``hass``."""


def _gas(moment: datetime, tz: object) -> Decimal:
    """A household's half-hourly gas use in m³: heating mornings and evenings, nothing at night."""
    hour = moment.astimezone(tz).hour  # type: ignore[arg-type]
    if 6 <= hour < 9:
        return Decimal("0.150")
    if 17 <= hour < 22:
        return Decimal("0.200")
    if 9 <= hour < 17:
        return Decimal("0.040")
    return Decimal(0)


def _three_am(day: datetime, tz: object) -> datetime:
    local = datetime.combine(day.astimezone(tz).date(), time(3), tzinfo=tz)  # type: ignore[arg-type]
    return local.astimezone(dt_util.UTC)


@pytest.fixture
async def octopus(
    hass: HomeAssistant, socket_enabled: None, freezer: FrozenDateTimeFactory
) -> AsyncIterator[tuple[FakeOctopus, datetime, datetime]]:
    """Five weeks of gas; 0.05 m³ at 03:00 yesterday (news) and five days ago (history)."""
    freezer.move_to("2026-11-18T15:10:00+00:00")  # a Wednesday afternoon (data until 13:00)
    server = FakeOctopus(page_size_cap=25000)
    server.add_electricity(MPAN, SERIAL)
    server.add_gas(MPRN, GAS_SERIAL)
    now = dt_util.utcnow()
    end = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    recent = _three_am(end - timedelta(days=1), server.tz)
    old = _three_am(end - timedelta(days=5), server.tz)
    intervals = []
    cursor = end - timedelta(days=35)
    while cursor < end:
        value = _gas(cursor, server.tz)
        if cursor in (recent, old):
            value = NIGHT_USE
        intervals.append((cursor, value))
        cursor += HALF
    server.set_consumption(MPRN, GAS_SERIAL, intervals)
    server.generate(MPAN, SERIAL, end - timedelta(days=35), end, seed=1)
    server.set_rates("E-1R-AGILE-18-02-21-H", [(now - timedelta(days=400), None, Decimal("24.5"))])
    server.set_rates("G-1R-VAR-22-11-01-H", [(now - timedelta(days=400), None, Decimal("6.89"))])
    base = await server.start()
    with patch.dict(cloud.BASE_URLS, {PROTOCOL_OCTOPUS: base}):
        yield server, recent, old
    await server.close()


def _entity(hass: HomeAssistant, unique_id: str, domain: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(domain, DOMAIN, unique_id)
    assert entity_id is not None, unique_id
    return entity_id


async def test_gas_at_night_from_cloud_data(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: tuple[FakeOctopus, datetime, datetime]
) -> None:
    """Yesterday's 03:00 use is announced once; the older one is learned only; a reload repeats nothing."""
    _server, recent, old = octopus
    await hass.config.async_set_time_zone("Europe/London")  # the household's local hours
    events = async_capture_events(hass, EVENT_ALERT)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"Octopus Energy {ACCOUNT}",
        unique_id=f"octopus_{ACCOUNT}",
        data={CONF_PROTOCOL: PROTOCOL_OCTOPUS, CONF_API_KEY: KEY, CONF_ACCOUNT: ACCOUNT},
        options={CONF_BACKFILL_DAYS: 60},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)

    gas_events = [e.data for e in events if e.data["alert"].startswith("gas_")]
    assert [(e["alert"], e["active"]) for e in gas_events] == [("gas_unusual_hour", True)]
    (event,) = gas_events
    assert datetime.fromisoformat(event["period_start"]) == recent.astimezone(octopus[0].tz).replace(minute=0)
    assert event["value"] == pytest.approx(float(NIGHT_USE))
    assert event["unit"] == "m³"
    assert event["meter_id"] == f"octopus_{MPRN}_{GAS_SERIAL}"
    assert event["message"] == f"Gas {MPRN}: gas used at 03:00, an hour that normally has none (0.05 m³)"
    assert datetime.fromisoformat(event["period_start"]) > old  # the older one was not announced

    anomaly = hass.states.get(_entity(hass, f"octopus_{MPRN}_{GAS_SERIAL}_gas_anomaly", "binary_sensor"))
    assert anomaly is not None
    assert anomaly.state == "on"  # found late: shown for at least an hour
    assert anomaly.attributes["kind"] == "unusual_hour"
    typical = hass.states.get(_entity(hass, f"octopus_{MPRN}_{GAS_SERIAL}_today_vs_typical", "sensor"))
    assert typical is not None
    assert typical.state not in ("unknown", "unavailable")
    # Every day has the same shape, and today (to 13:00) had no night use: exactly typical.
    assert float(typical.state) == 100.0
    electricity = hass.states.get(_entity(hass, f"octopus_{MPAN}_{SERIAL}_base_load", "sensor"))
    assert electricity is not None
    assert electricity.state not in ("unknown", "unavailable")  # half-hours give 15-minute slots

    # A reload re-imports the restatement window: nothing is announced again.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    assert [e.data["alert"] for e in events if e.data["alert"].startswith("gas_")] == ["gas_unusual_hour"]
