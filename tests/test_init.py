"""Setup and unload of a meter entry over a real pseudo-terminal."""

from __future__ import annotations

from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartmeter.const import CONF_URL, DOMAIN
from tests.common import PtyMeter, corpus_telegram


def _entry(url: str, meter_id: str = "4530303434303037333832323436303139") -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        unique_id=meter_id,
        title="Electricity meter",
        data={
            CONF_URL: url,
            "baudrate": 115200,
            "bytesize": 8,
            "parity": "N",
            "stopbits": 1,
            "key": None,
            "protocol": "dsmr",
            "meter_id": meter_id,
        },
    )


async def test_setup_and_unload(hass: HomeAssistant) -> None:
    """A real telegram on a pty becomes devices and sensors; unload closes the port."""
    telegram = corpus_telegram("dsmr/nl_dsmr50_iskra_am550_two_mbus.txt")
    async with PtyMeter([telegram]) as meter:
        entry = _entry(meter.path)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        state = hass.states.get("sensor.electricity_meter_energy_import_tariff_1")
        assert state is not None
        assert state.state == "2130.115"
        assert state.attributes["unit_of_measurement"] == "kWh"
        assert state.attributes["device_class"] == "energy"
        assert state.attributes["state_class"] == "total_increasing"
        gas = hass.states.get("sensor.gas_meter_m_bus_2_gas_consumption")
        assert gas is not None and gas.state == "246.138"
        devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        assert len(devices) == 2  # channel 1 has no meter on it
        ents = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        assert {e.unique_id for e in ents} >= {"4530303434303037333832323436303139_energy_import_tariff_1"}
        source = entry.runtime_data.source
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.NOT_LOADED
        assert source._link is None  # noqa: SLF001


async def test_setup_retries_without_telegram(hass: HomeAssistant) -> None:
    """A port that stays silent puts the entry into retry, with the port closed."""
    async with PtyMeter([]) as meter:
        entry = _entry(meter.path)
        entry.add_to_hass(hass)
        with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.3):
            await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
