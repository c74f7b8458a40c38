"""Zigbee2MQTT and wmbusmeters entries at work, on Home Assistant's mocked MQTT client.

Entities and values after state messages, a rename in Zigbee2MQTT, bad input
counted and ignored (never an error log, never a value), diagnostics, no
staleness between slow reports, unsubscribing on unload.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from decimal import Decimal
from unittest.mock import patch

import pytest

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, MqttMockHAClient

from custom_components.smartmeter.const import CONF_LIVE, DOMAIN
from custom_components.smartmeter.core.zigbee2mqtt import MAX_PAYLOAD
from custom_components.smartmeter.mqtt_source import (
    MQTT_IDLE_TIMEOUT,
    MqttCoordinator,
    WmbusmetersSource,
    Zigbee2MqttSource,
)
from tests.common import state_of, unload
from tests.mqtt_common import (
    AMIPLUS,
    FRIENT,
    FRIENT_NAME,
    GWFGAS,
    IWMTX5,
    LINKY,
    PLUG,
    PLUG_NAME,
    bridge_devices,
    fire,
    frient_states,
    plug_state,
    wmbus_entry,
    wmbus_payload,
    z2m_entry,
)


@pytest.fixture
def expected_lingering_timers() -> bool:
    """The MQTT integration's periodic timers outlive a test (as in Home Assistant's own MQTT tests)."""
    return True


# Every reading written at once (the default write policy holds small changes back).
LIVE = {CONF_LIVE: True}


def _entity(entity_registry: er.EntityRegistry, meter_id: str, key: str) -> str:
    entity_id = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{meter_id}_{key}")
    assert entity_id is not None, f"no entity for {meter_id} {key}"
    return entity_id


def _value(hass: HomeAssistant, entity_registry: er.EntityRegistry, meter_id: str, key: str) -> Decimal:
    return Decimal(state_of(hass, _entity(entity_registry, meter_id, key)).state)


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def _source[T](entry: MockConfigEntry, kind: type[T]) -> T:
    source = entry.runtime_data.source
    assert isinstance(source, kind)
    return source


async def test_zigbee2mqtt_entities_and_values(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Ready once subscribed; each device its own meter device; the corpus states' values in their units."""
    entry = z2m_entry([FRIENT, PLUG], options=LIVE)
    await _setup(hass, entry)  # no message yet: setup did not wait for one
    assert isinstance(entry.runtime_data, MqttCoordinator)
    assert not er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices())
    # Only the selected devices are followed (not the LiXee in the list).
    assert set(_source(entry, Zigbee2MqttSource).diagnostics()["topics"]) == {
        "zigbee2mqtt/bridge/devices",
        f"zigbee2mqtt/{FRIENT_NAME}",
        f"zigbee2mqtt/{PLUG_NAME}",
    }
    first, second = frient_states()
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", first)
    await fire(hass, f"zigbee2mqtt/{PLUG_NAME}", plug_state())
    await fire(hass, "zigbee2mqtt/linky", json.dumps({"current_summ_delivered": 12345}))
    assert _value(hass, entity_registry, FRIENT, "energy_import_total") == Decimal("1362.15")
    assert _value(hass, entity_registry, FRIENT, "power_import") == 462
    power = state_of(hass, _entity(entity_registry, FRIENT, "power_import"))
    assert power.attributes["unit_of_measurement"] == "W"
    energy = state_of(hass, _entity(entity_registry, FRIENT, "energy_import_total"))
    assert energy.attributes["unit_of_measurement"] == "kWh"
    assert energy.attributes["device_class"] == "energy"
    assert _value(hass, entity_registry, PLUG, "energy_import_total") == Decimal("380.8")
    assert _value(hass, entity_registry, PLUG, "power_import") == 44
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", second)
    assert _value(hass, entity_registry, FRIENT, "power_import") == 463
    # One device per physical meter, by IEEE address; the LiXee was not selected.
    devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
    assert {identifier for device in devices for identifier in device.identifiers} == {
        (DOMAIN, FRIENT),
        (DOMAIN, PLUG),
    }
    assert entity_registry.async_get_entity_id("sensor", DOMAIN, f"{LINKY}_energy_import_total") is None
    frient = next(device for device in devices if (DOMAIN, FRIENT) in device.identifiers)
    assert frient.model == "ZHEMI101"
    await unload(hass, entry)


async def test_zigbee2mqtt_rename_keeps_entities(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entity_registry: er.EntityRegistry
) -> None:
    """Renamed in Zigbee2MQTT: the new topic is followed, the old one dropped, the entities stay."""
    entry = z2m_entry([FRIENT], options=LIVE)
    await _setup(hass, entry)
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices())
    first, second = frient_states()
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", first)
    entity_id = _entity(entity_registry, FRIENT, "power_import")
    entities = {e.entity_id for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)}
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices({FRIENT: "cellar/meter"}))
    source = _source(entry, Zigbee2MqttSource)
    assert "zigbee2mqtt/cellar/meter" in source.diagnostics()["topics"]
    assert f"zigbee2mqtt/{FRIENT_NAME}" not in source.diagnostics()["topics"]
    # The old topic is no longer followed; the new one feeds the same entities.
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", second)
    assert state_of(hass, entity_id).state == "462"
    await fire(hass, "zigbee2mqtt/cellar/meter", second)
    assert state_of(hass, entity_id).state == "463"
    assert _entity(entity_registry, FRIENT, "power_import") == entity_id
    after = {e.entity_id for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)}
    assert after == entities
    await unload(hass, entry)


BAD_STATES = [
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    b'"energy"',
    b'{"energy": "1362.20"}',
    b'{"energy": NaN, "power": 1}',
    b'{"energy": Infinity}',
    b'{"energy": -5, "power": 1}',
    b'{"energy": true}',
    b'{"linkquality": 10}',
    b'{"energy": 1' + b"0" * 400 + b"}",
    b'{"energy": 1, "pad": "' + b"x" * MAX_PAYLOAD + b'"}',
]


async def test_zigbee2mqtt_bad_input_counted_and_ignored(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    entity_registry: er.EntityRegistry,
    hass_client: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Garbage state payloads and device lists change nothing and show up as counters in diagnostics."""
    caplog.set_level(logging.DEBUG, logger="custom_components.smartmeter")
    entry = z2m_entry([FRIENT], options=LIVE)
    await _setup(hass, entry)
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices())
    first, _second = frient_states()
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", first)
    for payload in BAD_STATES:
        await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", payload)
    # Device lists that changed shape: the devices stay followed as last listed.
    for payload in (b"{}", b'{"devices": []}', b"garbage", b"[" * 5000, b'[{"ieee_address": 5}]'):
        await fire(hass, "zigbee2mqtt/bridge/devices", payload)
    assert _value(hass, entity_registry, FRIENT, "energy_import_total") == Decimal("1362.15")
    assert _value(hass, entity_registry, FRIENT, "power_import") == 462
    source = _source(entry, Zigbee2MqttSource)
    ignored = source.diagnostics()["ignored"]
    assert ignored["bad_state"] == len(BAD_STATES) - 1
    assert ignored["too_large"] == 1
    assert ignored["bad_device_list"] == 4  # the list of one broken entry is an empty list: no meter
    assert source.stats.frames_ok == 1
    assert source.stats.frames_undecodable == len(BAD_STATES) + 4
    assert f"zigbee2mqtt/{FRIENT_NAME}" in source.diagnostics()["topics"]
    # Still followed after all that.
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", json.dumps({"energy": 1362.3, "power": 500}))
    assert _value(hass, entity_registry, FRIENT, "power_import") == 500
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["mqtt"]["ignored"]["bad_state"] == len(BAD_STATES) - 1
    assert diagnostics["link"]["frames_undecodable"] == len(BAD_STATES) + 4
    assert diagnostics["link"]["last_error"]
    assert diagnostics["entry"]["devices"] == "**REDACTED**"
    assert FRIENT not in json.dumps(diagnostics)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "smartmeter" in r.name]
    await unload(hass, entry)


async def test_wmbusmeters_entities_and_values(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    entity_registry: er.EntityRegistry,
    hass_client: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The selected meters' readings by meter ID; another meter and bad telegrams are ignored."""
    caplog.set_level(logging.DEBUG, logger="custom_components.smartmeter")
    entry = wmbus_entry(["86064864", "23115250"], options=LIVE)
    await _setup(hass, entry)
    await fire(hass, "wmbusmeters/MyElectricity3", wmbus_payload(AMIPLUS))
    await fire(hass, "wmbusmeters/mygas1", wmbus_payload(GWFGAS))
    await fire(hass, "wmbusmeters/WaterWater", wmbus_payload(IWMTX5))  # a neighbour's meter
    assert _value(hass, entity_registry, "23115250", "gas") == Decimal("101.886")
    gas = state_of(hass, _entity(entity_registry, "23115250", "gas"))
    assert gas.attributes["device_class"] == "gas"
    assert _value(hass, entity_registry, "86064864", "energy_import_tariff_1") == Decimal("25011.061")
    assert _value(hass, entity_registry, "86064864", "energy_export_tariff_1") == Decimal("4.999")
    assert entity_registry.async_get_entity_id("sensor", DOMAIN, "22917370_water") is None
    for payload in (
        b"{",
        wmbus_payload(GWFGAS, total_m3=-1),
        wmbus_payload(GWFGAS, total_m3="101.9"),
        b'{"_": "telegram", "media": "gas", "id": "23115250", "total_m3": NaN}',
        wmbus_payload(GWFGAS, id=None),
        b"x" * (MAX_PAYLOAD + 1),
    ):
        await fire(hass, "wmbusmeters/mygas1", payload)
    assert _value(hass, entity_registry, "23115250", "gas") == Decimal("101.886")
    # A good telegram after all that is taken (the counter guard judges its value as always).
    await fire(hass, "wmbusmeters/mygas1", wmbus_payload(GWFGAS))
    source = _source(entry, WmbusmetersSource)
    assert source.stats.frames_ok == 3
    assert source.diagnostics()["ignored"] == {"bad_telegram": 5, "other_meter": 1, "too_large": 1}
    assert source.stats.frames_undecodable == 6
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["mqtt"]["ignored"]["bad_telegram"] == 5
    text = json.dumps(diagnostics)
    assert "23115250" not in text and "86064864" not in text  # meter IDs redacted, also in the payloads
    assert "101.886" in text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "smartmeter" in r.name]
    await unload(hass, entry)


async def test_slow_meter_is_not_stale(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entity_registry: er.EntityRegistry
) -> None:
    """A meter reporting every 10 minutes stays available between reports; silent for hours it is not."""
    entry = wmbus_entry(["23115250"])
    await _setup(hass, entry)
    await fire(hass, "wmbusmeters/mygas1", wmbus_payload(GWFGAS))
    entity_id = _entity(entity_registry, "23115250", "gas")
    now = dt_util.utcnow()
    for minutes in (2, 5, 9):
        async_fire_time_changed(hass, now + timedelta(minutes=minutes))
        await hass.async_block_till_done()
        assert state_of(hass, entity_id).state == "101.886"
    assert entry.runtime_data.idle_timeout == MQTT_IDLE_TIMEOUT >= 3 * 600
    await unload(hass, entry)


async def test_unload_unsubscribes(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entity_registry: er.EntityRegistry
) -> None:
    """After unload nothing is followed: messages change nothing."""
    entry = z2m_entry([FRIENT])
    await _setup(hass, entry)
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices())
    first, second = frient_states()
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", first)
    source = _source(entry, Zigbee2MqttSource)
    entity_id = _entity(entity_registry, FRIENT, "power_import")
    await unload(hass, entry)
    assert source.diagnostics()["topics"] == []
    assert not source.connected
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", second)
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices())
    assert source.stats.frames_ok == 1
    assert state_of(hass, entity_id).state == STATE_UNAVAILABLE


async def test_mqtt_entry_not_ready_without_mqtt(hass: HomeAssistant) -> None:
    """Without the MQTT integration an MQTT entry retries later instead of failing for good."""
    entry = z2m_entry([FRIENT])
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_connection_state_follows_the_broker(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entity_registry: er.EntityRegistry
) -> None:
    """The broker connection lost: the meters show unavailable; back: available again."""
    entry = wmbus_entry(["23115250"])
    await _setup(hass, entry)
    await fire(hass, "wmbusmeters/mygas1", wmbus_payload(GWFGAS))
    entity_id = _entity(entity_registry, "23115250", "gas")
    source = _source(entry, WmbusmetersSource)
    assert source.connected
    mqtt_mock.connected = False
    from homeassistant.components.mqtt import MQTT_CONNECTION_STATE
    from homeassistant.helpers.dispatcher import async_dispatcher_send

    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, False)
    await hass.async_block_till_done()
    assert state_of(hass, entity_id).state == STATE_UNAVAILABLE
    assert source.stats.disconnects == 1
    mqtt_mock.connected = True
    async_dispatcher_send(hass, MQTT_CONNECTION_STATE, True)
    await hass.async_block_till_done()
    assert state_of(hass, entity_id).state == "101.886"
    await unload(hass, entry)


def test_large_device_lists() -> None:
    """Lists larger than the core parser reads at once are read entry by entry; garbage is a DecodeError."""
    from custom_components.smartmeter.core.errors import DecodeError
    from custom_components.smartmeter.mqtt_source import MAX_DEVICE_LIST, parse_device_list

    devices = json.loads(bridge_devices())
    # A device listed twice, a broken entry and an entry too large to read even alone.
    oversized = {"ieee_address": "0x0000000000000009", "friendly_name": "big", "notes": "x" * (5 << 20)}
    big = json.dumps([*devices, *devices, {"ieee_address": 5}, oversized]).encode()
    assert {d.ieee for d in parse_device_list(big)} == {FRIENT, PLUG, LINKY}
    assert len(parse_device_list(big)) == 3
    for bad in (b"[" * (6 << 20), b'{"a": "' + b"x" * (6 << 20) + b'"}', b"x" * (MAX_DEVICE_LIST + 1)):
        with pytest.raises(DecodeError):
            parse_device_list(bad)


async def test_unusable_friendly_name_and_a_stalled_coordinator(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entity_registry: er.EntityRegistry
) -> None:
    """A name with a wildcard cannot be subscribed (counted); a full queue drops and counts."""
    entry = z2m_entry([FRIENT, PLUG])
    await _setup(hass, entry)
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices({PLUG: "plug+1"}))
    source = _source(entry, Zigbee2MqttSource)
    assert source.diagnostics()["ignored"] == {"bad_friendly_name": 1}
    assert "zigbee2mqtt/plug+1" not in source.diagnostics()["topics"]
    first, _second = frient_states()
    with patch.object(source._queue, "put_nowait", side_effect=asyncio.QueueFull):
        await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", first)
    assert source.diagnostics()["ignored"]["queue_full"] == 1
    assert entity_registry.async_get_entity_id("sensor", DOMAIN, f"{FRIENT}_power_import") is None
    await fire(hass, f"zigbee2mqtt/{FRIENT_NAME}", first)
    assert _value(hass, entity_registry, FRIENT, "power_import") == 462
    await unload(hass, entry)
