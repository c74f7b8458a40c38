"""Setup, unload and the coordinator's reader over a real pseudo-terminal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from unittest.mock import patch

import pytest

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir

from custom_components.smartmeter import async_remove_config_entry_device
from custom_components.smartmeter.const import CONF_LIVE, CONF_TIME_ZONE, DOMAIN, FAILED_SETUPS
from custom_components.smartmeter.core.models import Frame
from custom_components.smartmeter.core.source import StreamSource
from tests.common import (
    AM550,
    FLUVIUS,
    PtyMeter,
    corpus_telegram,
    loaded_entry,
    meter_id,
    mock_entry,
    replace_value,
    state_is,
    state_of,
    unload,
    wait_for,
)

ENERGY = "sensor.electricity_meter_energy_import_tariff_1"


async def test_setup_and_unload(hass: HomeAssistant) -> None:
    """A real telegram on a pty becomes devices and sensors; unload closes the port."""
    telegram = corpus_telegram(AM550)
    async with PtyMeter([telegram]) as meter:
        entry = mock_entry(meter.path, meter_id(telegram))
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        state = hass.states.get(ENERGY)
        assert state is not None
        assert state.state == "2130.115"
        assert state.attributes["unit_of_measurement"] == "kWh"
        assert state.attributes["device_class"] == "energy"
        assert state.attributes["state_class"] == "total_increasing"
        gas = hass.states.get("sensor.gas_meter_m_bus_2_gas_consumption")
        assert gas is not None
        assert gas.state == "246.138"
        devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        assert len(devices) == 2  # channel 1 has no meter on it
        ents = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        assert {e.unique_id for e in ents} >= {"4530303434303037333832323436303139_energy_import_tariff_1"}
        source = entry.runtime_data.source
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        assert state_is(entry, ConfigEntryState.NOT_LOADED)
        assert source._link is None
        assert not source.connected


async def test_setup_retries_without_telegram(hass: HomeAssistant) -> None:
    """A port that stays silent puts the entry into retry, with the port closed."""
    async with PtyMeter([]) as meter:
        entry = mock_entry(meter.path, "4530303434303037333832323436303139")
        entry.add_to_hass(hass)
        with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.3):
            await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
        assert "no data" in (entry.reason or "")


async def test_watchdog_before_first_telegram(hass: HomeAssistant, caplog: pytest.LogCaptureFixture) -> None:
    """The watchdog may fire while setup still waits: it neither warns nor touches entities."""
    async with PtyMeter([]) as meter:
        entry = mock_entry(meter.path, "4530303434303037333832323436303139")
        entry.add_to_hass(hass)
        with (
            patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.3),
            patch("custom_components.smartmeter.coordinator.IDLE_TIMEOUT", 0.05),
        ):
            await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
        assert hass.data[FAILED_SETUPS][entry.entry_id].stale
    assert not [
        r for r in caplog.records if r.name.startswith("custom_components") and r.levelno >= logging.WARNING
    ]


async def test_setup_retries_when_port_missing(hass: HomeAssistant) -> None:
    """A port that does not exist (cable unplugged) puts the entry into retry with the reason."""
    entry = mock_entry("/dev/ttyDOESNOTEXIST0", "4530303434303037333832323436303139")
    entry.add_to_hass(hass)
    with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.3):
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "cannot open" in (entry.reason or "")


async def test_meter_turned_encrypted_asks_for_key(hass: HomeAssistant) -> None:
    """An entry without a key on a port that now carries encrypted frames: auth error, reauth flow."""
    from homeassistant.config_entries import SOURCE_REAUTH

    from custom_components.smartmeter.const import DOMAIN
    from tests.common import SMARTY, smarty_frame

    with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.3):
        async with loaded_entry(hass, [smarty_frame()], meter=meter_id(corpus_telegram(SMARTY))) as (
            entry,
            _pty,
        ):
            assert entry.state is ConfigEntryState.SETUP_ERROR
            assert "decryption key is required" in (entry.reason or "")
            (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            assert flow["context"]["source"] == SOURCE_REAUTH
            # Said as such in the Repairs dashboard, not as "no data".
            issue = ir.async_get(hass).async_get_issue(DOMAIN, f"wrong_key_{entry.entry_id}")
            assert issue is not None
            assert issue.severity is ir.IssueSeverity.ERROR
            assert "key is required" in (issue.translation_placeholders or {})["error"]


async def test_time_zone_option(hass: HomeAssistant) -> None:
    """Meter timestamps are read in the entry's time zone, else Home Assistant's."""
    telegram = corpus_telegram(AM550)
    async with loaded_entry(hass, [telegram], options={CONF_TIME_ZONE: "Europe/Amsterdam"}) as (entry, _pty):
        assert str(entry.runtime_data.source.tz) == "Europe/Amsterdam"
    await hass.config.async_set_time_zone("Europe/Brussels")
    async with PtyMeter([telegram]) as pty:
        other = mock_entry(pty.path, "other")
        other.add_to_hass(hass)
        await hass.config_entries.async_setup(other.entry_id)
        await hass.async_block_till_done()
        assert str(other.runtime_data.source.tz) == "Europe/Brussels"
        await unload(hass, other)


async def test_repeated_sub_meter_id_gets_own_device(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry
) -> None:
    """Two M-Bus meters reporting the same ID do not merge: the second is known by its channel."""
    telegram = corpus_telegram(FLUVIUS)
    gas_id = b"0-1:96.1.1(37464C4F32313139303333373333)"
    water_id = b"0-2:96.1.1(3853414731323334353637383930)"
    assert water_id in telegram
    same = replace_value(telegram, water_id, b"0-2:96.1.1(37464C4F32313139303333373333)", fix_crc=True)
    assert gas_id in same
    async with loaded_entry(hass, [same]) as (entry, _pty):
        main = meter_id(telegram)
        identifiers = {
            next(iter(d.identifiers))[1]
            for d in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        }
        assert identifiers == {main, "37464C4F32313139303333373333", f"{main}-mbus2"}
        water = hass.states.get("sensor.water_meter_m_bus_2_water_consumption")
        assert water is not None
        assert water.state == "872.234"


async def test_error_handling_a_frame_keeps_reading(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error while handling one telegram is logged; the next telegram is handled."""
    good = corpus_telegram(AM550)
    newer = replace_value(good, b"(002130.115*kWh)", b"(002130.116*kWh)", fix_crc=True)
    async with loaded_entry(hass, [good], options={CONF_LIVE: True}) as (entry, pty):
        coordinator = entry.runtime_data
        original = coordinator.async_handle_frame
        calls = 0

        def _flaky(frame: Frame) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            original(frame)

        with patch.object(coordinator, "async_handle_frame", _flaky):
            pty.set_telegrams([newer])
            await wait_for(lambda: state_of(hass, ENERGY).state == "2130.116")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "Error handling a telegram" in errors[0].getMessage()


async def test_reader_crash_makes_entities_unavailable(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """If the reader itself dies, the entities say so instead of freezing on old values."""
    real_frames = StreamSource.frames

    async def _frames_then_crash(self: StreamSource) -> AsyncIterator[Frame]:
        count = 0
        async for frame in real_frames(self):
            yield frame
            count += 1
            if count == 3:
                raise RuntimeError("reader bug")

    with patch.object(StreamSource, "frames", _frames_then_crash):
        async with loaded_entry(hass, [corpus_telegram(AM550)]) as (entry, _pty):
            await wait_for(lambda: state_of(hass, ENERGY).state == STATE_UNAVAILABLE)
            assert entry.runtime_data.source.connected  # the link is fine, the reader is not
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "Reading Electricity meter stopped" in errors[0].getMessage()


async def test_reader_that_ends_goes_stale(hass: HomeAssistant) -> None:
    """A source that stops yielding frames: the entities go unavailable instead of freezing."""
    real_frames = StreamSource.frames

    async def _two_frames(self: StreamSource) -> AsyncIterator[Frame]:
        count = 0
        async for frame in real_frames(self):
            yield frame
            count += 1
            if count == 2:
                return

    with (
        patch.object(StreamSource, "frames", _two_frames),
        patch("custom_components.smartmeter.coordinator.IDLE_TIMEOUT", 0.2),
    ):
        async with loaded_entry(hass, [corpus_telegram(AM550)]) as (_entry, _pty):
            await wait_for(lambda: state_of(hass, ENERGY).state == STATE_UNAVAILABLE)


async def test_unload_twice_is_harmless(hass: HomeAssistant) -> None:
    """Stopping a stopped coordinator does nothing."""
    async with loaded_entry(hass, [corpus_telegram(AM550)]) as (entry, _pty):
        coordinator = entry.runtime_data
        await coordinator.async_stop()
        await coordinator.async_stop()
        assert not coordinator.connected


async def test_no_update_listener_when_options_flow_reloads(hass: HomeAssistant) -> None:
    """Where Home Assistant reloads on changed options itself, the entry keeps no update listener."""
    with patch("custom_components.smartmeter.OPTIONS_FLOW_RELOADS", True):
        async with loaded_entry(hass, [corpus_telegram(AM550)]) as (entry, _pty):
            assert entry.update_listeners == []


async def test_remove_stale_device(hass: HomeAssistant, device_registry: dr.DeviceRegistry) -> None:
    """A meter still in the telegrams cannot be deleted; one that stopped reporting can."""
    gas_id = "4730303339303031393336393930363139"
    async with loaded_entry(hass, [corpus_telegram(AM550)]) as (entry, _pty):
        devices = {
            identifier: device
            for device in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
            for domain, identifier in device.identifiers
            if domain == DOMAIN
        }
        main = devices[meter_id(corpus_telegram(AM550))]
        gas = devices[gas_id]
        old = device_registry.async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(DOMAIN, "old-gas-meter")}, name="Old gas meter"
        )
        assert not await async_remove_config_entry_device(hass, entry, main)
        assert not await async_remove_config_entry_device(hass, entry, gas)
        assert await async_remove_config_entry_device(hass, entry, old)
