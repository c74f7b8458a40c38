"""Sensors from every real P1 telegram of the corpus, fed through a real pty."""

from __future__ import annotations

import logging
from collections.abc import Generator
from decimal import Decimal
from unittest.mock import PropertyMock, patch

import pytest
from syrupy.assertion import SnapshotAssertion

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension

from custom_components.smartmeter.const import CONF_LIVE, CONF_TIME_ZONE, DOMAIN, FAILED_SETUPS
from custom_components.smartmeter.core.models import Register
from custom_components.smartmeter.sensor import SENSORS
from tests.common import (
    AM550,
    AUSTRIA,
    BAD_CRC,
    FLUVIUS,
    FLUVIUS_BAD_GAS,
    KAIFA,
    MT382_V5,
    SMARTY_KEY,
    corpus_p1_samples,
    corpus_telegram,
    device_snapshot,
    entity_snapshot,
    loaded_entry,
    meter_id,
    replace_value,
    smarty_frame,
    state_of,
    state_snapshot,
    wait_for,
    with_crc,
)

# The meter clock's zone, by the country prefix of the corpus file.
ZONES = {
    "at": "Europe/Vienna",
    "be": "Europe/Brussels",
    "hu": "Europe/Budapest",
    "ie": "Europe/Dublin",
    "lu": "Europe/Luxembourg",
    "nl": "Europe/Amsterdam",
    "se": "Europe/Stockholm",
}
VALID_SAMPLES = [name for name in corpus_p1_samples() if name != BAD_CRC]


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots in Home Assistant's format, in tests/snapshots."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create every entity enabled, also those disabled by default (as Home Assistant core's fixture)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


def _sample_id(name: str) -> str:
    return name.removeprefix("dsmr/").removesuffix(".txt")


def _zone(name: str) -> dict[str, str]:
    return {CONF_TIME_ZONE: ZONES[name.rsplit("/", maxsplit=1)[-1][:2]]}


def _snapshot_entry(
    hass: HomeAssistant,
    entry_id: str,
    snapshot: SnapshotAssertion,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Like homewizard's test_sensors: every entity's registry entry, state and device."""
    entities = sorted(er.async_entries_for_config_entry(entity_registry, entry_id), key=lambda e: e.entity_id)
    assert entities
    devices = dr.async_entries_for_config_entry(device_registry, entry_id)
    for entity in entities:
        assert entity.disabled_by is None
        assert (state := hass.states.get(entity.entity_id))
        assert state.state != STATE_UNAVAILABLE
        assert snapshot(name=f"{entity.entity_id}:entity-registry") == entity_snapshot(entity)
        assert snapshot(name=f"{entity.entity_id}:state") == state_snapshot(state)
    for device in sorted(devices, key=lambda d: sorted(d.identifiers)):
        (identifier,) = device.identifiers
        assert snapshot(name=f"{identifier[1]}:device-registry") == device_snapshot(device, devices)


def _assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Home Assistant accepted every entity without a complaint (units, device classes, devices)."""
    complaints = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and r.name.startswith(("homeassistant", "custom_components"))  # not asyncio's slow-callback notes
        and "custom integration" not in r.getMessage()
    ]
    assert complaints == []


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
@pytest.mark.parametrize("sample", VALID_SAMPLES, ids=_sample_id)
async def test_sensors(
    hass: HomeAssistant,
    snapshot: SnapshotAssertion,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    sample: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every entity and device a real telegram produces, snapshotted."""
    async with loaded_entry(hass, [corpus_telegram(sample)], options=_zone(sample)) as (entry, _pty):
        _snapshot_entry(hass, entry.entry_id, snapshot, entity_registry, device_registry)
    _assert_quiet(caplog)


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_sensors_smarty_encrypted(
    hass: HomeAssistant,
    snapshot: SnapshotAssertion,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Luxembourg Smarty meter: encrypted frames on the wire, decrypted with the entry's key."""
    frame = smarty_frame()
    async with loaded_entry(hass, [frame], key=SMARTY_KEY, options={CONF_TIME_ZONE: "Europe/Luxembourg"}) as (
        entry,
        pty,
    ):
        assert frame[:1] == b"\xdb"
        _snapshot_entry(hass, entry.entry_id, snapshot, entity_registry, device_registry)
        assert entry.runtime_data.source.stats.frames_decrypt_failed == 0
        assert pty.sent
    _assert_quiet(caplog)


async def test_bad_crc_sample_gives_no_values(hass: HomeAssistant) -> None:
    """The corpus telegram with a wrong CRC never reaches an entity: setup waits, then retries."""
    telegram = corpus_telegram(BAD_CRC)
    with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.5):
        async with loaded_entry(hass, [telegram]) as (entry, _pty):
            assert entry.state is ConfigEntryState.SETUP_RETRY
            assert hass.states.async_all() == []
            assert er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id) == []
            assert dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id) == []
            stats = hass.data[FAILED_SETUPS][entry.entry_id].source.stats
            assert stats.frames_bad_checksum >= 1
            assert stats.frames_ok == 0


async def test_sub_meters_linked_via_main_meter(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry
) -> None:
    """Gas and water meters on M-Bus channels are devices linked to the electricity meter."""
    telegram = corpus_telegram(FLUVIUS)
    async with loaded_entry(hass, [telegram]) as (entry, _pty):
        devices = {
            next(iter(d.identifiers))[1]: d
            for d in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        }
        main = devices.pop(meter_id(telegram))
        assert main.via_device_id is None
        assert main.manufacturer == "Fluvius"
        assert len(devices) == 2
        assert {d.name for d in devices.values()} == {"Gas meter (M-Bus 1)", "Water meter (M-Bus 2)"}
        for device in devices.values():
            assert device.via_device_id == main.id


async def test_mbus_channel_without_meter_has_no_device(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry
) -> None:
    """The AM550 telegram has an empty channel 1 (no id, reading without unit): no gas meter 1 device."""
    async with loaded_entry(hass, [corpus_telegram(AM550)]) as (entry, _pty):
        devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        assert sorted(str(d.name) for d in devices) == ["Electricity meter", "Gas meter (M-Bus 2)"]
        assert hass.states.get("sensor.gas_meter_m_bus_1_gas_consumption") is None


async def test_values_update_on_next_telegram(hass: HomeAssistant) -> None:
    """In live mode, a new telegram with new readings updates the states at once."""
    telegram = corpus_telegram(AM550)
    async with loaded_entry(hass, [telegram], options={CONF_LIVE: True}) as (_entry, pty):
        entity_id = "sensor.electricity_meter_energy_import_tariff_1"
        assert state_of(hass, entity_id).state == "2130.115"
        pty.set_telegrams([replace_value(telegram, b"(002130.115*kWh)", b"(002130.116*kWh)", fix_crc=True)])
        await wait_for(lambda: state_of(hass, entity_id).state == "2130.116")
        power = state_of(hass, "sensor.electricity_meter_power_import")
        assert power.attributes["unit_of_measurement"] == "W"


async def test_new_meter_adds_entities(hass: HomeAssistant, device_registry: dr.DeviceRegistry) -> None:
    """A gas meter that shows up on an M-Bus channel later gets its device and sensors then."""
    full = corpus_telegram(KAIFA)
    lines = [line for line in full.split(b"\r\n") if not line.startswith(b"0-1:")]
    bang = next(i for i, line in enumerate(lines) if line.startswith(b"!"))
    without_gas = with_crc(b"\r\n".join(lines[:bang]) + b"\r\n!")
    async with loaded_entry(hass, [without_gas]) as (entry, pty):
        assert len(dr.async_entries_for_config_entry(device_registry, entry.entry_id)) == 1
        assert hass.states.get("sensor.gas_meter_m_bus_1_gas_consumption") is None
        pty.set_telegrams([full])
        await wait_for(lambda: hass.states.get("sensor.gas_meter_m_bus_1_gas_consumption") is not None)
        await hass.async_block_till_done()
        assert state_of(hass, "sensor.gas_meter_m_bus_1_gas_consumption").state == "981.443"
        devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        assert len(devices) == 2
        main = next(d for d in devices if d.via_device_id is None)
        gas = next(d for d in devices if d.via_device_id is not None)
        assert gas.via_device_id == main.id
        assert gas.name == "Gas meter (M-Bus 1)"


async def test_register_getting_a_value_later_adds_entity(hass: HomeAssistant) -> None:
    """A gas reading first sent with a placeholder timestamp gets its sensor once it is real."""
    telegram = corpus_telegram(MT382_V5)
    placeholder = replace_value(
        telegram, b"0-1:24.2.1(170102161005W)", b"0-1:24.2.1(632525252525W)", fix_crc=True
    )
    gas = "sensor.gas_meter_m_bus_1_gas_consumption"
    async with loaded_entry(hass, [placeholder]) as (_entry, pty):
        assert hass.states.get(gas) is None
        pty.set_telegrams([telegram])
        await wait_for(lambda: hass.states.get(gas) is not None)
        await hass.async_block_till_done()
        assert state_of(hass, gas).state == "0.107"


async def test_austrian_units_as_stated(hass: HomeAssistant) -> None:
    """The Austrian Sagemcom states Wh and W: the sensors keep the meter's units."""
    async with loaded_entry(hass, [corpus_telegram(AUSTRIA)]) as (_entry, _pty):
        states = [
            s
            for s in hass.states.async_all("sensor")
            if s.attributes.get("device_class") in ("energy", "power")
        ]
        assert states
        units = {s.attributes["unit_of_measurement"] for s in states}
        assert units == {"Wh", "W"}
        energy = state_of(hass, "sensor.electricity_meter_energy_import_total")
        assert energy.attributes["unit_of_measurement"] == "Wh"
        assert Decimal(energy.state) > 1000


async def test_invalid_gas_timestamp_gives_no_gas_value(hass: HomeAssistant) -> None:
    """A Belgian gas reading stamped 632525252525W (no value) creates no gas sensor and no value."""
    telegram = corpus_telegram(FLUVIUS_BAD_GAS)
    async with loaded_entry(hass, [telegram]) as (entry, _pty):
        entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        assert not [e for e in entities if e.unique_id.endswith(("_gas", "_gas_reading_time"))]
        assert state_of(hass, "sensor.electricity_meter_energy_import_tariff_1").state == "123.456"
        assert not [s for s in hass.states.async_all("sensor") if s.attributes.get("device_class") == "gas"]


async def test_entities_unavailable_when_link_drops(hass: HomeAssistant) -> None:
    """Entities go unavailable when the source reports the link down, and come back."""
    async with loaded_entry(hass, [corpus_telegram(AM550)]) as (entry, _pty):
        entity_id = "sensor.electricity_meter_energy_import_tariff_1"
        coordinator = entry.runtime_data
        coordinator.source._set_connected(False)
        await hass.async_block_till_done()
        assert state_of(hass, entity_id).state == STATE_UNAVAILABLE
        await wait_for(lambda: state_of(hass, entity_id).state != STATE_UNAVAILABLE)


def test_descriptions_are_unique_and_translated() -> None:
    """Every description key is unique and has a name in strings.json."""
    import json
    from pathlib import Path

    keys = [d.key for d in SENSORS]
    assert len(keys) == len(set(keys))
    strings = json.loads(
        (Path(__file__).parents[1] / "custom_components" / DOMAIN / "strings.json").read_text(
            encoding="utf-8"
        )
    )
    names = strings["entity"]["sensor"]
    assert {d.translation_key for d in SENSORS} <= set(names)


def test_value_functions_on_odd_registers() -> None:
    """Value functions show nothing for registers of the wrong kind, and text messages as text."""
    by_key = {d.key: d for d in SENSORS}
    number = Register("0-0:96.13.0", "text_message", Decimal(3))
    assert by_key["text_message"].value_fn(number) is None
    assert by_key["timestamp"].value_fn(number) is None
    assert by_key["energy_import_total"].value_fn(Register("1-0:1.8.0", "energy_import_total", "x")) is None
    assert by_key["maximum_demand_history"].value_fn(None) is None
    empty_log = Register("0-0:98.1.0", "maximum_demand_history", 0)
    assert by_key["maximum_demand_history"].value_fn(empty_log) is None
    unstamped = Register("0-1:24.2.1", "gas", Decimal(1))
    assert by_key["gas"].value_fn(unstamped) is None
    assert by_key["gas_reading_time"].value_fn(unstamped) is None

    message = by_key["text_message"].value_fn
    assert message(Register("0-0:96.13.0", "text_message", "48656C6C6F206D65746572")) == "Hello meter"
    assert message(Register("0-0:96.13.0", "text_message", "0102")) == "0102"  # not text once decoded
    assert message(Register("0-0:96.13.0", "text_message", "Plain words!")) == "Plain words!"
    assert message(Register("0-0:96.13.0", "text_message", "ABC")) == "ABC"
    assert message(Register("0-0:96.13.0", "text_message", "41" * 300)) == "A" * 255  # state length limit
    assert message(Register("0-0:96.13.0", "text_message", "")) == ""
