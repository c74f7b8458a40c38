"""Octopus Energy through Home Assistant: config flow, statistics import, errors, repairs.

Everything runs against a local fake of the Octopus REST API on 127.0.0.1
(tests/cloud_servers/octopus.py) with a real recorder.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest

from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.statistics import get_metadata
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done
from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

from custom_components.smartmeter import cloud
from custom_components.smartmeter.cloud_statistics import cloud_statistic_id
from custom_components.smartmeter.const import (
    CONF_ACCOUNT,
    CONF_API_KEY,
    CONF_BACKFILL_DAYS,
    CONF_PROTOCOL,
    CONF_STALE_HOURS,
    DOMAIN,
    PROTOCOL_OCTOPUS,
)
from custom_components.smartmeter.core.cloud.base import CloudTemporaryError, RetryPolicy
from custom_components.smartmeter.diagnostics import async_get_config_entry_diagnostics
from tests.cloud_servers.octopus import FakeOctopus
from tests.cloud_servers.statistics import assert_hourly_exact, floor_hour, hourly_rows
from tests.conftest import corpus_dir

KEY = "sk_live_fake0123456789"
ACCOUNT = "A-AAAA1111"
MPAN, SERIAL = "2700003645222", "19L2761452"
MPRN, GAS_SERIAL = "3456789012", "E6S12345678901"
LONDON = ZoneInfo("Europe/London")
HALF = timedelta(minutes=30)
ELEC_ID = cloud_statistic_id("octopus", f"{MPAN}_{SERIAL}", "energy_import_total")
GAS_ID = cloud_statistic_id("octopus", f"{MPRN}_{GAS_SERIAL}", "gas")


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """The recorder is set up before ``hass``."""


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    """Retries without the real backoff waits (the core tests check the delays themselves)."""
    with patch.object(RetryPolicy, "delay", lambda self, attempt: 0.01):
        yield


@pytest.fixture
async def octopus(socket_enabled: None) -> AsyncIterator[FakeOctopus]:
    """A fake Octopus account with an electricity and a gas meter, data up to the last half-hour."""
    server = FakeOctopus(page_size_cap=25000)
    server.add_electricity(MPAN, SERIAL)
    server.add_gas(MPRN, GAS_SERIAL)
    now = dt_util.utcnow()
    end = floor_hour(now) - timedelta(hours=2)
    server.generate(MPAN, SERIAL, end - timedelta(days=40), end, seed=1)
    server.generate(MPRN, GAS_SERIAL, end - timedelta(days=40), end, seed=2)
    rates = []
    cursor = floor_hour(now) - timedelta(days=41)
    while cursor < floor_hour(now) + timedelta(days=2):
        rates.append((cursor, cursor + HALF, Decimal(10 + (cursor.hour % 7)) + Decimal("0.5")))
        cursor += HALF
    server.set_rates("E-1R-AGILE-18-02-21-H", rates)
    server.set_rates("G-1R-VAR-22-11-01-H", [(now - timedelta(days=400), None, Decimal("6.89"))])
    base = await server.start()
    with patch.dict(cloud.BASE_URLS, {PROTOCOL_OCTOPUS: base}):
        yield server
    await server.close()


def _entry(hass: HomeAssistant, **options: Any) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"Octopus Energy {ACCOUNT}",
        unique_id=f"octopus_{ACCOUNT}",
        data={CONF_PROTOCOL: PROTOCOL_OCTOPUS, CONF_API_KEY: KEY, CONF_ACCOUNT: ACCOUNT},
        options={CONF_BACKFILL_DAYS: 60} | options,
    )
    entry.add_to_hass(hass)
    return entry


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)


def _expected(intervals: list[tuple[datetime, Decimal]]) -> dict[datetime, Decimal]:
    hours: dict[datetime, Decimal] = {}
    for start, value in intervals:
        hour = floor_hour(start)
        hours[hour] = hours.get(hour, Decimal(0)) + value
    return hours


def _assert_exact(rows: list[dict[str, Any]], raw: list[tuple[datetime, Decimal]]) -> None:
    """One row per hour with data, each equal to the raw half-hours, sums continuous from 0."""
    assert_hourly_exact(rows, _expected(raw))


async def test_flow_creates_entry_and_imports(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """The config flow validates the key, shows the meters, and the entry imports exact statistics."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert "octopus" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "octopus"})
    assert result["step_id"] == "octopus"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: "sk_live_wrong", CONF_ACCOUNT: ACCOUNT}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: f" {KEY} ", CONF_ACCOUNT: "a-aaaa1111"}
    )
    assert result["step_id"] == "cloud_confirm"
    assert ELEC_ID in result["description_placeholders"]["meters"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_PROTOCOL: PROTOCOL_OCTOPUS, CONF_API_KEY: KEY, CONF_ACCOUNT: ACCOUNT}
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.state is ConfigEntryState.LOADED
    # The default backfill (one year) covers the server's 40 days.
    _assert_exact(await hourly_rows(hass, ELEC_ID), octopus.consumption(MPAN, SERIAL))
    _assert_exact(await hourly_rows(hass, GAS_ID), octopus.consumption(MPRN, GAS_SERIAL))
    meta = await get_instance(hass).async_add_executor_job(get_metadata, hass)
    assert meta[ELEC_ID][1]["unit_of_measurement"] == "kWh"
    assert meta[GAS_ID][1]["unit_of_measurement"] == "m³"
    assert meta[f"{ELEC_ID}_cost"][1]["unit_of_measurement"] == "GBP"
    # Devices, one per meter, and their sensors.
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert {d.serial_number for d in devices} == {SERIAL, GAS_SERIAL}
    entities = {
        e.unique_id: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    latest = hass.states.get(entities[f"octopus_{MPAN}_{SERIAL}_latest_energy_import_total"])
    last_start, last_value = octopus.consumption(MPAN, SERIAL)[-1]
    assert latest is not None and Decimal(latest.state) == last_value
    end = hass.states.get(entities[f"octopus_{MPAN}_{SERIAL}_latest_interval_end"])
    assert end is not None and dt_util.parse_datetime(end.state) == last_start + HALF
    price = hass.states.get(entities[f"octopus_{MPAN}_{SERIAL}_current_price"])
    assert price is not None and price.attributes["unit_of_measurement"] == "GBP/kWh"
    slot = floor_hour(dt_util.utcnow()) + (HALF if dt_util.utcnow().minute >= 30 else timedelta(0))
    assert Decimal(price.state) == (Decimal(10 + (slot.hour % 7)) + Decimal("0.5")) / 100
    delay = hass.states.get(entities[f"octopus_{MPAN}_{SERIAL}_data_delay"])
    assert delay is not None and 1.5 < float(delay.state) < 4


async def test_cost_series_exact(recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus) -> None:
    """Each hour's cost is its half-hours times the Agile price of each half-hour, in GBP."""
    await _setup(hass, _entry(hass))
    rows = await hourly_rows(hass, f"{ELEC_ID}_cost")
    price = {
        start: (Decimal(10 + (start.hour % 7)) + Decimal("0.5")) / 100
        for start, _ in octopus.consumption(MPAN, SERIAL)
    }
    expected: dict[datetime, Decimal] = {}
    for start, value in octopus.consumption(MPAN, SERIAL):
        expected[floor_hour(start)] = expected.get(floor_hour(start), Decimal(0)) + value * price[start]
    assert len(rows) == len(expected)
    for row in rows:
        start = datetime.fromtimestamp(row["start"], UTC)
        assert row["state"] == pytest.approx(float(expected[start]), abs=1e-12)


async def test_backfill_option_limits_history(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """The first run imports only the configured history."""
    await _setup(hass, _entry(hass, **{CONF_BACKFILL_DAYS: 10}))
    rows = await hourly_rows(hass, ELEC_ID)
    first = datetime.fromtimestamp(rows[0]["start"], UTC)
    assert (
        floor_hour(dt_util.utcnow() - timedelta(days=10))
        <= first
        <= floor_hour(dt_util.utcnow() - timedelta(days=10)) + timedelta(hours=1)
    )


async def test_restart_in_the_middle_of_a_backfill(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """A backfill that stops after a chunk resumes where it stopped: no duplicate, no gap, exact sums."""
    entry = _entry(hass)
    calls = 0
    real = cloud.OctopusClient.async_intervals

    async def flaky(self: Any, meter: Any, register: str, start: datetime, end: datetime) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second month of the electricity backfill
            raise CloudTemporaryError("octopus: server error HTTP 500")
        return await real(self, meter, register, start, end)

    with patch.object(cloud.OctopusClient, "async_intervals", flaky):
        assert not await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    await async_wait_recording_done(hass)
    partial = await hourly_rows(hass, ELEC_ID)
    assert 0 < len(partial) < len(_expected(octopus.consumption(MPAN, SERIAL)))
    # "Restart": set up again (the retry), with everything working.
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    assert entry.state is ConfigEntryState.LOADED
    _assert_exact(await hourly_rows(hass, ELEC_ID), octopus.consumption(MPAN, SERIAL))
    _assert_exact(await hourly_rows(hass, GAS_ID), octopus.consumption(MPRN, GAS_SERIAL))


async def test_restatement_and_continuity(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """A corrected value inside the window is re-imported, new data appended; sums stay continuous."""
    entry = _entry(hass)
    await _setup(hass, entry)
    data = octopus.consumption(MPAN, SERIAL)
    # The provider corrects a half-hour two days ago and delivers two more hours.
    index = len(data) - 96
    data[index] = (data[index][0], data[index][1] + Decimal("1.234"))
    last = data[-1][0]
    data += [(last + HALF * (n + 1), Decimal("0.5")) for n in range(4)]
    octopus.set_consumption(MPAN, SERIAL, data)
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    _assert_exact(await hourly_rows(hass, ELEC_ID), data)
    # A restart (reload) re-imports the window again: still exact, nothing doubled.
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    _assert_exact(await hourly_rows(hass, ELEC_ID), data)


async def test_dst_days(recorder_mock: Recorder, hass: HomeAssistant, socket_enabled: None) -> None:
    """The 23- and 25-hour days of Europe/London give 23 and 25 hourly rows with the day's exact total."""
    server = FakeOctopus(page_size_cap=25000)
    server.add_electricity(MPAN, SERIAL)
    spring = datetime(2025, 3, 30, tzinfo=LONDON)
    autumn = datetime(2025, 10, 26, tzinfo=LONDON)
    intervals: list[tuple[datetime, Decimal]] = []
    for day in (spring, autumn):
        cursor = day.astimezone(UTC)
        stop = (day + timedelta(days=1)).replace(tzinfo=LONDON).astimezone(UTC)
        n = 0
        while cursor < stop:
            n += 1
            intervals.append((cursor, Decimal(n).scaleb(-3)))
            cursor += HALF
    server.set_consumption(MPAN, SERIAL, intervals)
    base = await server.start()
    try:
        with (
            patch.dict(cloud.BASE_URLS, {PROTOCOL_OCTOPUS: base}),
            patch.object(cloud.CloudCoordinator, "_check_stale"),
        ):
            await _setup(hass, _entry(hass, **{CONF_BACKFILL_DAYS: 1095}))
    finally:
        await server.close()
    rows = await hourly_rows(hass, ELEC_ID)
    _assert_exact(rows, intervals)
    for day, hours in ((spring, 23), (autumn, 25)):
        start = day.astimezone(UTC)
        stop = datetime(day.year, day.month, day.day + 1, tzinfo=LONDON).astimezone(UTC)
        in_day = [r for r in rows if start.timestamp() <= r["start"] < stop.timestamp()]
        assert len(in_day) == hours
        total = sum((Decimal(repr(r["state"])) for r in in_day), Decimal(0))
        assert total == sum((v for s, v in intervals if start <= s < stop), Decimal(0))


async def test_errors_fail_the_update_without_losing_data(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus, caplog: pytest.LogCaptureFixture
) -> None:
    """500s, an HTML page, truncated JSON and the polluted sample each fail one update, cleanly.

    One clear log line and no traceback; the next update imports everything.
    """
    entry = _entry(hass)
    await _setup(hass, entry)
    coordinator = entry.runtime_data
    rows_before = await hourly_rows(hass, ELEC_ID)
    polluted = (corpus_dir() / "cloud" / "octopus_consumption_curl_polluted.txt").read_bytes()
    bodies: list[tuple[int, bytes | str | None]] = [
        (500, None),
        (200, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        (200, '{"count":240,"next":null,"results":[{"consumption":1.8'),
        (200, polluted),
    ]
    for status, body in bodies:
        octopus.fail_next(status, body=body, times=4)  # outlasts the client's retries
        caplog.clear()
        await coordinator.async_refresh()
        assert not coordinator.last_update_success
        errors = [r for r in caplog.records if r.levelname == "ERROR" and "smartmeter" in r.name]
        assert len(errors) <= 1
        # No traceback at the levels a user sees (Home Assistant 2026 adds one at debug level).
        assert all(r.exc_info is None for r in caplog.records if "smartmeter" in r.name and r.levelno > 10)
        assert [r["sum"] for r in await hourly_rows(hass, ELEC_ID)][: len(rows_before)] == [
            r["sum"] for r in rows_before
        ]
        octopus._failures.clear()
    await coordinator.async_refresh()
    await async_wait_recording_done(hass)
    assert coordinator.last_update_success
    _assert_exact(await hourly_rows(hass, ELEC_ID), octopus.consumption(MPAN, SERIAL))


async def test_rate_limit_fails_update(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """A 429 with a long Retry-After fails the update at once (no waiting inside it)."""
    entry = _entry(hass)
    await _setup(hass, entry)
    octopus.fail_next(429, headers={"Retry-After": "3600"})
    await entry.runtime_data.async_refresh()
    assert not entry.runtime_data.last_update_success
    assert "429" in (entry.runtime_data.last_error or "")


async def test_auth_failure_starts_reauth(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """A revoked key starts the reauth flow; a new key for the same account fixes the entry."""
    entry = _entry(hass)
    await _setup(hass, entry)
    octopus.api_key = "sk_live_new0123456789"
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == ["reauth"]
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {CONF_API_KEY: KEY})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_API_KEY: "sk_live_new0123456789"}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_API_KEY] == "sk_live_new0123456789"
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_other_account_refused(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """Reconfigure takes new credentials for the same account only."""
    entry = _entry(hass)
    await _setup(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure_cloud"
    octopus.account = "A-BBBB2222"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: KEY, CONF_ACCOUNT: "A-BBBB2222"}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "wrong_account"


async def test_stale_data_repair(recorder_mock: Recorder, hass: HomeAssistant, socket_enabled: None) -> None:
    """Data that stopped three days ago raises a repair issue; new data clears it."""
    server = FakeOctopus(page_size_cap=25000)
    server.add_electricity(MPAN, SERIAL)
    end = floor_hour(dt_util.utcnow()) - timedelta(days=4)
    server.generate(MPAN, SERIAL, end - timedelta(days=2), end)
    base = await server.start()
    try:
        with patch.dict(cloud.BASE_URLS, {PROTOCOL_OCTOPUS: base}):
            entry = _entry(hass, **{CONF_STALE_HOURS: 72})
            await _setup(hass, entry)
            issues = [i for (d, i) in ir.async_get(hass).issues if d == DOMAIN]
            assert len(issues) == 1 and issues[0].startswith("cloud_data_stopped")
            server.generate(
                MPAN, SERIAL, end - timedelta(days=2), floor_hour(dt_util.utcnow()) - timedelta(hours=3)
            )
            await entry.runtime_data.async_refresh()
            assert not [i for (d, i) in ir.async_get(hass).issues if d == DOMAIN]
            await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_credentials_never_logged_or_in_diagnostics(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus, caplog: pytest.LogCaptureFixture
) -> None:
    """The API key (and the meter identifiers) appear in no log line and nowhere in diagnostics."""
    caplog.set_level("DEBUG")
    entry = _entry(hass)
    await _setup(hass, entry)
    for status, body in ((500, f"error for key {KEY}"), (401, None), (200, f"<html>{KEY}</html>")):
        octopus.fail_next(status, body=body, times=4)
        await entry.runtime_data.async_refresh()
        octopus._failures.clear()
    octopus.fail_next(403, times=1)
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done()
    diagnostics = json.dumps(await async_get_config_entry_diagnostics(hass, entry), default=str)
    assert KEY not in caplog.text
    assert KEY not in diagnostics
    for ident in (MPAN, SERIAL, MPRN, GAS_SERIAL):
        assert ident not in diagnostics
    assert "**REDACTED**" in diagnostics


async def test_unload_and_options(recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus) -> None:
    """The options flow has the cloud options; unloading leaves nothing running."""
    entry = _entry(hass)
    await _setup(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "cloud"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_BACKFILL_DAYS: 30,
            "restatement_days": 3,
            CONF_STALE_HOURS: 48,
            "gas_unit": "kWh",
            "calorific_value": 39.2,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options["gas_unit"] == "kWh"
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_request_budget_survives_restart(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus
) -> None:
    """Requests are counted in .storage, so a restart keeps them.

    A spent budget then fails the setup without a request.
    """
    entry = _entry(hass)
    await _setup(hass, entry)
    budget = entry.runtime_data.budget
    spent = budget.limit - budget.remaining
    assert spent == len(octopus.requests) > 0
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    # A restart: a new budget object, loaded from storage.
    hass.data.pop(cloud.BUDGETS)
    fresh = cloud.provider_budget(hass, PROTOCOL_OCTOPUS)
    await fresh.async_load()
    assert fresh.limit - fresh.remaining == spent
    for _ in range(fresh.remaining):
        fresh.take()
    before = len(octopus.requests)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert len(octopus.requests) == before


async def test_bulk_import_falls_back_to_home_assistants_import(
    recorder_mock: Recorder, hass: HomeAssistant, octopus: FakeOctopus, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the bulk write fail in the recorder thread, the same rows go through Home Assistant's import."""
    from custom_components.smartmeter import cloud_statistics

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("schema changed")

    with patch.object(cloud_statistics, "select", broken):
        await _setup(hass, _entry(hass))
    await async_wait_recording_done(hass)
    _assert_exact(await hourly_rows(hass, ELEC_ID), octopus.consumption(MPAN, SERIAL))
    assert "importing row by row" in caplog.text
    assert "Traceback" not in caplog.text
