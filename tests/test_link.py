"""Real links: a pty and a TCP socket on 127.0.0.1, drops, reconnects and damaged telegrams.

Whatever the link delivers, no value from a damaged telegram may reach an
entity, and the log stays quiet: one warning when the link goes down, one
info line when it comes back, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Generator
from unittest.mock import patch

import pytest

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartmeter.const import CONF_LIVE
from custom_components.smartmeter.core.source import Backoff
from tests.common import (
    AM550,
    PtyMeter,
    TcpMeter,
    corpus_telegram,
    loaded_entry,
    meter_id,
    mock_entry,
    replace_value,
    state_of,
    unload,
    wait_for,
)

ENERGY = "sensor.electricity_meter_energy_import_tariff_1"
GAS = "sensor.gas_meter_m_bus_2_gas_consumption"
GOOD = b"(002130.115*kWh)"
# Every telegram written: these tests follow each value the link delivers.
LIVE = {CONF_LIVE: True}


@pytest.fixture(autouse=True)
def fast_backoff() -> Generator[None]:
    """Reconnect after 20 ms instead of seconds."""
    with patch.object(Backoff, "next_delay", lambda self: 0.02):
        yield


def _record(hass: HomeAssistant, entity_ids: list[str]) -> list[str | None]:
    """Every state the entities take from now on."""
    seen: list[str | None] = []

    @callback
    def _changed(event: Event[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        seen.append(new.state if new is not None else None)

    async_track_state_change_event(hass, entity_ids, _changed)
    return seen


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records of ours or Home Assistant's at WARNING or above (the custom-integration notice aside)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and r.name.startswith(("homeassistant", "custom_components"))  # not asyncio's slow-callback notes
        and "custom integration" not in r.getMessage()
    ]


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


@contextlib.asynccontextmanager
async def _meter_on(
    hass: HomeAssistant, link: str, telegrams: list[bytes]
) -> AsyncIterator[tuple[MockConfigEntry, PtyMeter | TcpMeter]]:
    """An entry on a meter behind a pty or a TCP bridge on 127.0.0.1, writing every telegram (live)."""
    if link == "pty":
        async with loaded_entry(hass, telegrams, options=LIVE) as (entry, pty):
            yield entry, pty
        return
    async with TcpMeter(telegrams) as bridge:
        entry = mock_entry(bridge.url, meter_id(telegrams[0]), options=LIVE)
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        try:
            yield entry, bridge
        finally:
            await unload(hass, entry)


@pytest.mark.usefixtures("socket_enabled")
@pytest.mark.parametrize("link", ["pty", "tcp"])
async def test_stream_with_damaged_telegrams(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture, link: str
) -> None:
    """Garbage, truncated and bad-CRC telegrams between good ones: counted, never shown."""
    good = corpus_telegram(AM550)
    newer = replace_value(good, GOOD, b"(002130.116*kWh)", fix_crc=True)
    forged = replace_value(good, GOOD, b"(009999.999*kWh)", fix_crc=False)  # CRC no longer matches
    forged_gas = replace_value(good, b"(00246.138*m3)", b"(99999.999*m3)", fix_crc=False)
    garbage = bytes(range(0x80, 0x100)) + b"\x00\xff garbage \r\n"
    truncated = good[: len(good) // 2]  # the cable was pulled mid-telegram
    stream = [good, garbage, forged, truncated, forged_gas, newer, truncated + forged, good]

    async with _meter_on(hass, link, [good]) as (entry, meter):
        assert entry.state is ConfigEntryState.LOADED
        energy = _record(hass, [ENERGY])
        gas = _record(hass, [GAS])
        caplog.clear()
        stats = entry.runtime_data.source.stats
        meter.telegrams = stream
        await wait_for(lambda: stats.frames_bad_checksum >= 6 and "2130.116" in energy)
        await hass.async_block_till_done()

        assert stats.bytes_discarded > 0
        assert stats.frames_undecodable + stats.frames_bad_checksum >= 6
        assert "9999.999" not in energy
        assert "99999.999" not in gas
        assert set(energy) <= {"2130.115", "2130.116"}
        assert set(gas) <= {"246.138"}
        assert STATE_UNAVAILABLE not in energy
        assert _problems(caplog) == []
        _assert_no_traceback(caplog)


@pytest.mark.usefixtures("socket_enabled")
async def test_tcp_bridge_stream_and_reconnect(hass: HomeAssistant, caplog: pytest.LogCaptureFixture) -> None:
    """A network bridge that drops the connection and refuses for a while: unavailable, then back."""
    good = corpus_telegram(AM550)
    async with TcpMeter([good]) as bridge:
        # The watchdog fires during the outage too, but the source already told: no second warning.
        watchdog = patch("custom_components.smartmeter.coordinator.IDLE_TIMEOUT", 0.5)
        watchdog.start()
        entry = mock_entry(bridge.url, meter_id(good))
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert state_of(hass, ENERGY).state == "2130.115"
        source = entry.runtime_data.source
        states = _record(hass, [ENERGY])
        caplog.clear()

        # The bridge restarts: the connection drops and nothing listens for a while.
        await bridge.stop()
        await wait_for(lambda: state_of(hass, ENERGY).state == STATE_UNAVAILABLE)
        await wait_for(lambda: source.stats.disconnects >= 3)  # it keeps retrying, quietly
        await wait_for(lambda: entry.runtime_data.stale)  # the watchdog notices too, quietly

        bridge.telegrams = [replace_value(good, GOOD, b"(002130.116*kWh)", fix_crc=True)]
        await bridge.start()
        # The first reading after the outage is written at once (write policy or not);
        # the state listener may run a loop turn after the state machine changed.
        await wait_for(lambda: state_of(hass, ENERGY).state == "2130.116" and states[-1] == "2130.116")
        assert source.connected
        assert bridge.connections >= 2
        assert states[0] == STATE_UNAVAILABLE
        assert states[-1] == "2130.116"

        # A dropped connection while the server keeps listening reconnects at once.
        await bridge.drop_clients()
        await wait_for(lambda: source.stats.connects >= 3 and source.connected)

        warnings = [r for r in _problems(caplog) if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # down twice, once per outage
        assert all("Lost connection" in r.getMessage() for r in warnings)
        restored = [r for r in caplog.records if r.levelno == logging.INFO and "restored" in r.getMessage()]
        assert len(restored) == 2
        _assert_no_traceback(caplog)
        await unload(hass, entry)
        watchdog.stop()
    assert not source.connected


async def test_pty_meter_goes_quiet(hass: HomeAssistant, caplog: pytest.LogCaptureFixture) -> None:
    """A meter that stops sending: after the idle timeout the link counts as down, then recovers."""
    good = corpus_telegram(AM550)
    with patch("custom_components.smartmeter.IDLE_TIMEOUT", 0.3):
        async with loaded_entry(hass, [good]) as (entry, pty):
            caplog.clear()
            pty.set_telegrams([])
            await wait_for(lambda: state_of(hass, ENERGY).state == STATE_UNAVAILABLE)
            pty.set_telegrams([good])
            await wait_for(lambda: state_of(hass, ENERGY).state == "2130.115")
            assert entry.runtime_data.source.stats.disconnects >= 1
    warnings = [r for r in _problems(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no data" in warnings[0].getMessage()
    _assert_no_traceback(caplog)


async def test_only_bad_telegrams_make_entities_unavailable(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """A link that stays up but carries only bad-CRC telegrams: old values are not shown as current."""
    good = corpus_telegram(AM550)
    forged = replace_value(good, GOOD, b"(009999.999*kWh)", fix_crc=False)
    with patch("custom_components.smartmeter.coordinator.IDLE_TIMEOUT", 0.6):
        async with loaded_entry(hass, [good]) as (entry, pty):
            states = _record(hass, [ENERGY])
            caplog.clear()
            pty.set_telegrams([forged])
            await wait_for(lambda: state_of(hass, ENERGY).state == STATE_UNAVAILABLE)
            assert entry.runtime_data.source.connected  # the link itself is fine
            assert not hass.config_entries.flow.async_progress_by_handler("smartmeter")  # no key involved
            pty.set_telegrams([good])
            await wait_for(lambda: state_of(hass, ENERGY).state == "2130.115")
            assert states == [STATE_UNAVAILABLE, "2130.115"]
    warnings = [r for r in _problems(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "No valid telegram" in warnings[0].getMessage()
    assert "CRC mismatch" in warnings[0].getMessage()
    assert any(r.levelno == logging.INFO and "Valid telegrams" in r.getMessage() for r in caplog.records)
    _assert_no_traceback(caplog)


async def test_meter_rekeyed_starts_reauth(hass: HomeAssistant, caplog: pytest.LogCaptureFixture) -> None:
    """A Smarty meter given a new key while running: unavailable, then a reauth flow; the new key fixes it."""
    from homeassistant.config_entries import SOURCE_REAUTH
    from homeassistant.data_entry_flow import FlowResultType

    from custom_components.smartmeter.const import CONF_KEY
    from tests.common import OTHER_KEY, SMARTY, SMARTY_KEY, smarty_frame

    energy = "sensor.electricity_meter_energy_import_total"
    with (
        patch("custom_components.smartmeter.coordinator.IDLE_TIMEOUT", 0.6),
        patch("custom_components.smartmeter.const.PROBE_TIMEOUT", 0.5),
    ):
        async with loaded_entry(
            hass, [smarty_frame()], key=SMARTY_KEY, meter=meter_id(corpus_telegram(SMARTY))
        ) as (entry, pty):
            assert state_of(hass, energy).state == "6.695"
            pty.set_telegrams([smarty_frame(OTHER_KEY)])
            await wait_for(lambda: bool(hass.config_entries.flow.async_progress_by_handler("smartmeter")))
            assert state_of(hass, energy).state == STATE_UNAVAILABLE
            (flow,) = hass.config_entries.flow.async_progress_by_handler("smartmeter")
            assert flow["context"]["source"] == SOURCE_REAUTH
            result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_KEY: OTHER_KEY})
            assert result["type"] is FlowResultType.ABORT
            assert result["reason"] == "reauth_successful"
            await hass.async_block_till_done()
            assert entry.data[CONF_KEY] == OTHER_KEY
            await wait_for(lambda: state_of(hass, energy).state == "6.695")
    _assert_no_traceback(caplog)
