"""Tibber through Home Assistant: config flow, statistics with Tibber's costs, prices, Pulse live data.

Everything runs against a local fake of Tibber's GraphQL API and subscription
websocket on 127.0.0.1 (tests/cloud_servers/tibber.py) with a real recorder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest

from homeassistant.components.recorder.core import Recorder
from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done
from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

from custom_components.smartmeter import cloud
from custom_components.smartmeter.cloud_statistics import cloud_statistic_id
from custom_components.smartmeter.const import (
    CONF_BACKFILL_DAYS,
    CONF_PROTOCOL,
    CONF_TOKEN,
    DOMAIN,
    PROTOCOL_TIBBER,
)
from custom_components.smartmeter.core.cloud.base import RetryPolicy
from custom_components.smartmeter.diagnostics import async_get_config_entry_diagnostics
from tests.cloud_servers.statistics import assert_hourly_exact, floor_hour, hourly_rows
from tests.cloud_servers.tibber import FakeTibber

TOKEN = "fake-tibber-token-0123456789"
HOME = "96a14971-525a-4420-aae9-e5aedaa129ff"
SOLAR = "68e6938b-91a6-4199-a0d4-f24c22be87bb"
OSLO = ZoneInfo("Europe/Oslo")
HOUR = timedelta(hours=1)
IMPORT_ID = cloud_statistic_id("tibber", HOME, "energy_import_total")
EXPORT_ID = cloud_statistic_id("tibber", SOLAR, "energy_export_total")


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """The recorder is set up before ``hass``."""


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    """Retries without the real backoff waits (the core tests check the delays themselves)."""
    with patch.object(RetryPolicy, "delay", lambda self, attempt: 0.01):
        yield


@pytest.fixture
async def tibber(socket_enabled: None) -> AsyncIterator[FakeTibber]:
    """A fake Tibber account: one home with a Pulse, one with solar production."""
    server = FakeTibber()
    server.add_home(HOME, nickname="Cabin", live=True)
    server.add_home(SOLAR, nickname="Villa", production=True, currency="SEK", time_zone="Europe/Stockholm")
    end = floor_hour(dt_util.utcnow()) - 2 * HOUR
    server.generate(HOME, end - timedelta(days=45), end, seed=1)
    server.generate(SOLAR, end - timedelta(days=45), end, seed=2)
    today = datetime.now(OSLO).replace(hour=0, minute=0, second=0, microsecond=0)
    quarters = [(today + timedelta(minutes=15 * n), Decimal(100 + n).scaleb(-3)) for n in range(4 * 48)]
    server.set_prices(HOME, quarters)
    server.set_prices(SOLAR, quarters)
    base = await server.start()
    with patch.dict(cloud.BASE_URLS, {PROTOCOL_TIBBER: base}):
        yield server
    await server.close()


def _entry(hass: HomeAssistant, **options: Any) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Tibber Arya Stark",
        unique_id="tibber_user-1",
        data={CONF_PROTOCOL: PROTOCOL_TIBBER, CONF_TOKEN: TOKEN},
        options={CONF_BACKFILL_DAYS: 60} | options,
    )
    entry.add_to_hass(hass)
    return entry


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)


def _series(
    server: FakeTibber, home: str, *, production: bool = False, money: bool = False
) -> dict[datetime, Decimal]:
    rows = server._homes[home].hourly["production" if production else "consumption"]
    index = 1 if money else 0
    return {start: values[index] for start, values in sorted(rows.items()) if values[index] is not None}


async def test_flow_and_statistics(recorder_mock: Recorder, hass: HomeAssistant, tibber: FakeTibber) -> None:
    """The flow checks the token and lists both homes; consumption, production and Tibber's costs import exactly."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "tibber"})
    assert result["step_id"] == "tibber"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: "wrong-token"})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["step_id"] == "cloud_confirm"
    assert IMPORT_ID in result["description_placeholders"]["meters"]
    assert EXPORT_ID in result["description_placeholders"]["meters"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == "tibber_user-1"
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    assert_hourly_exact(await hourly_rows(hass, IMPORT_ID), _series(tibber, HOME))
    assert_hourly_exact(await hourly_rows(hass, f"{IMPORT_ID}_cost"), _series(tibber, HOME, money=True))
    assert_hourly_exact(await hourly_rows(hass, EXPORT_ID), _series(tibber, SOLAR, production=True))
    # The same account again is refused.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "tibber"})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
    for entry in hass.config_entries.async_entries(DOMAIN):
        await hass.config_entries.async_unload(entry.entry_id)


async def test_prices_and_sensors(recorder_mock: Recorder, hass: HomeAssistant, tibber: FakeTibber) -> None:
    """The current quarter-hour's price, the newest hour and its end, in the home's currency."""
    entry = _entry(hass)
    await _setup(hass, entry)
    entities = {
        e.unique_id: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    price = hass.states.get(entities[f"tibber_{HOME}_current_price"])
    assert price is not None and price.attributes["unit_of_measurement"] == "NOK/kWh"
    now = datetime.now(OSLO)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    quarter = int((now - today).total_seconds() // 900)
    assert Decimal(price.state) in {Decimal(100 + quarter).scaleb(-3), Decimal(101 + quarter).scaleb(-3)}
    # The price list, for the planner and automations (not recorded).
    listed = price.attributes["prices"]
    assert len(listed) >= 4 * 24
    assert {"start", "end", "price"} <= set(listed[0])
    latest = hass.states.get(entities[f"tibber_{HOME}_latest_energy_import_total"])
    newest_start, newest = list(_series(tibber, HOME).items())[-1]
    assert latest is not None and Decimal(latest.state) == newest
    end = hass.states.get(entities[f"tibber_{HOME}_latest_interval_end"])
    assert end is not None and dt_util.parse_datetime(end.state) == newest_start + HOUR
    await hass.config_entries.async_unload(entry.entry_id)


async def test_dst_days(recorder_mock: Recorder, hass: HomeAssistant, socket_enabled: None) -> None:
    """Oslo's 23- and 25-hour days give 23 and 25 hourly rows."""
    server = FakeTibber()
    server.add_home(HOME)
    rows: list[tuple[datetime, Decimal | None, Decimal | None]] = []
    days = (datetime(2025, 3, 30, tzinfo=OSLO), datetime(2025, 10, 26, tzinfo=OSLO))
    for day in days:
        stamp = day.astimezone(UTC)
        stop = datetime(day.year, day.month, day.day + 1, tzinfo=OSLO).astimezone(UTC)
        n = 0
        while stamp < stop:
            n += 1
            rows.append((stamp, Decimal(n).scaleb(-2), Decimal(n).scaleb(-3)))
            stamp += HOUR
    server.set_hourly(HOME, rows)
    base = await server.start()
    try:
        with (
            patch.dict(cloud.BASE_URLS, {PROTOCOL_TIBBER: base}),
            patch.object(cloud.CloudCoordinator, "_check_stale"),
        ):
            entry = _entry(hass, **{CONF_BACKFILL_DAYS: 1095})
            await _setup(hass, entry)
            await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()
    found = await hourly_rows(hass, IMPORT_ID)
    assert_hourly_exact(found, {start: value for start, value, _ in rows if value is not None})
    for day, hours in zip(days, (23, 25), strict=True):
        start = day.astimezone(UTC).timestamp()
        stop = datetime(day.year, day.month, day.day + 1, tzinfo=OSLO).timestamp()
        assert len([r for r in found if start <= r["start"] < stop]) == hours


async def test_pulse_live_data(recorder_mock: Recorder, hass: HomeAssistant, tibber: FakeTibber) -> None:
    """A Pulse's live readings become sensors; a dropped websocket reconnects; unload closes it."""
    with patch.dict(cloud.LIVE_URLS, {PROTOCOL_TIBBER: None}):
        entry = _entry(hass)
        await _setup(hass, entry)
        for _ in range(100):
            if tibber.subscribers(HOME):
                break
            await asyncio.sleep(0.05)
        assert tibber.subscribers(HOME) == 1
        assert tibber.subscribers(SOLAR) == 0
        tibber.push_live(
            HOME,
            {
                "timestamp": dt_util.now().isoformat(),
                "power": 1532.5,
                "powerProduction": 0,
                "lastMeterConsumption": 12345.678,
                "voltagePhase1": 231.2,
            },
        )
        entities: dict[str | None, str] = {}
        for _ in range(100):
            await hass.async_block_till_done()
            entities = {
                e.unique_id: e.entity_id
                for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
            }
            if f"tibber_{HOME}_power_import" in entities:
                break
            await asyncio.sleep(0.05)
        power = hass.states.get(entities[f"tibber_{HOME}_power_import"])
        assert power is not None and float(power.state) == 1532.5
        assert power.attributes["unit_of_measurement"] == "W"
        reading = hass.states.get(entities[f"tibber_{HOME}_energy_import_total"])
        assert reading is not None and Decimal(reading.state) == Decimal("12345.678")
        assert reading.attributes["state_class"] == "total_increasing"
        # The server drops the connection: the stream comes back by itself.
        connects = tibber.ws_connects
        with patch("custom_components.smartmeter.core.cloud.tibber.TibberLive.backoff_base", 0.01):
            tibber.drop_ws()
            for _ in range(200):
                if tibber.ws_connects > connects and tibber.subscribers(HOME):
                    break
                await asyncio.sleep(0.05)
        assert tibber.ws_connects > connects
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        for _ in range(100):
            if not tibber.open_ws:
                break
            await asyncio.sleep(0.05)
        assert tibber.open_ws == 0


async def test_auth_error_starts_reauth(
    recorder_mock: Recorder, hass: HomeAssistant, tibber: FakeTibber
) -> None:
    """Tibber's UNAUTHENTICATED error starts reauth; a token of the same account fixes the entry."""
    entry = _entry(hass)
    await _setup(hass, entry)
    tibber.fail_next(400, graphql_error="Context creation failed: invalid token", code="UNAUTHENTICATED")
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == ["reauth"]
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(entry.entry_id)


async def test_errors_and_secrets(
    recorder_mock: Recorder, hass: HomeAssistant, tibber: FakeTibber, caplog: pytest.LogCaptureFixture
) -> None:
    """GraphQL errors, 500s, HTML and truncated JSON fail an update cleanly; the token is never logged."""
    caplog.set_level("DEBUG")
    entry = _entry(hass)
    await _setup(hass, entry)
    coordinator = entry.runtime_data
    before = await hourly_rows(hass, IMPORT_ID)
    for kwargs in (
        {"status": 200, "graphql_error": f"internal error {TOKEN}", "code": "INTERNAL_SERVER_ERROR"},
        {"status": 500, "body": f"oops {TOKEN}"},
        {"status": 200, "body": "<html><h1>502 Bad Gateway</h1></html>"},
        {"status": 200, "body": '{"data": {"viewer": {"homes": ['},
        {"status": 429, "headers": {"Retry-After": "3600"}},
    ):
        tibber.fail_next(times=4, **kwargs)
        await coordinator.async_refresh()
        assert not coordinator.last_update_success
        tibber._failures.clear()
    after = await hourly_rows(hass, IMPORT_ID)
    assert [r["sum"] for r in after] == [r["sum"] for r in before]
    diagnostics = json.dumps(await async_get_config_entry_diagnostics(hass, entry), default=str)
    assert TOKEN not in caplog.text
    assert TOKEN not in diagnostics
    assert HOME not in diagnostics
    await coordinator.async_refresh()
    assert coordinator.last_update_success
    await hass.config_entries.async_unload(entry.entry_id)
