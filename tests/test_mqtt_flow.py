"""Config flow for Zigbee2MQTT and wmbusmeters meters, with Home Assistant's MQTT test fixtures.

The mocked broker delivers what the test publishes (async_fire_mqtt_message):
the Zigbee2MQTT device list (tests/fixtures, built from the documented
schema) and the corpus payloads (zigbee2mqtt/, wmbus/*.expected.json).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any
from unittest.mock import patch

import pytest

from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartmeter.const import (
    CONF_BASE_TOPIC,
    CONF_DEVICES,
    CONF_METERS,
    CONF_NAMES,
    CONF_PROTOCOL,
    CONF_TOPIC,
    DOMAIN,
)
from tests.common import wait_for
from tests.mqtt_common import (
    AMIPLUS,
    FRIENT,
    FRIENT_NAME,
    GAS_DETECTOR,
    GWFGAS,
    IWMTX5,
    LINKY,
    PLUG,
    WEATHER,
    bridge_devices,
    fire,
    while_publishing,
    wmbus_entry,
    wmbus_payload,
    z2m_entry,
)


@pytest.fixture
def expected_lingering_timers() -> bool:
    """The MQTT integration's periodic timers outlive a test (as in Home Assistant's own MQTT tests)."""
    return True


@pytest.fixture(autouse=True)
def short_listen() -> Generator[None]:
    """Listen briefly (the tests publish every 20 ms)."""
    with (
        patch("custom_components.smartmeter.const.Z2M_LISTEN_TIMEOUT", 1.0),
        patch("custom_components.smartmeter.const.WMBUS_LISTEN_TIMEOUT", 0.3),
    ):
        yield


def _options(result: Any, key: str) -> dict[str, str]:
    """The multi-select's offered values and labels."""
    for field, selector in result["data_schema"].schema.items():
        if field == key:
            return {option["value"]: option["label"] for option in selector.config["options"]}
    raise AssertionError(f"no field {key}")


def _service_info(topic: str, payload: bytes, subscribed: str) -> MqttServiceInfo:
    return MqttServiceInfo(
        topic=topic, payload=payload, qos=0, retain=True, subscribed_topic=subscribed, timestamp=time.time()
    )


async def _menu(hass: HomeAssistant, step: str) -> Any:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert step in result["menu_options"]
    return await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": step})


async def test_zigbee2mqtt_user_flow(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The retained device list is read; only metering devices are offered; the picked ones are stored."""
    result = await _menu(hass, "zigbee2mqtt")
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zigbee2mqtt"
    result = await while_publishing(
        hass,
        hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "zigbee2mqtt"}),
        [("zigbee2mqtt/bridge/devices", bridge_devices())],
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "z2m_select"
    offered = _options(result, CONF_DEVICES)
    assert set(offered) == {FRIENT, PLUG, LINKY}  # not the coordinator, weather sensor or gas detector
    assert WEATHER not in offered and GAS_DETECTOR not in offered
    assert FRIENT_NAME in offered[FRIENT] and "ZHEMI101" in offered[FRIENT]
    assert result["description_placeholders"]["count"] == "3"
    # Nothing picked: asked again.
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_DEVICES: []})
    assert result["errors"] == {"base": "nothing_selected"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICES: [FRIENT, LINKY]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_PROTOCOL: "zigbee2mqtt",
        CONF_BASE_TOPIC: "zigbee2mqtt",
        CONF_DEVICES: [FRIENT, LINKY],
        CONF_NAMES: {FRIENT: FRIENT_NAME, LINKY: "linky"},
    }
    entry = result["result"]
    assert entry.unique_id == "zigbee2mqtt:zigbee2mqtt"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def test_zigbee2mqtt_errors(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A bad topic, no device list, a list without meters; an already added base topic aborts."""
    result = await _menu(hass, "zigbee2mqtt")
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "z2m/#"})
    assert result["errors"] == {CONF_BASE_TOPIC: "invalid_topic"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "silent"})
    assert result["errors"] == {"base": "no_device_list"}
    result = await while_publishing(
        hass,
        hass.config_entries.flow.async_configure(result["flow_id"], {CONF_BASE_TOPIC: "other"}),
        [("other/bridge/devices", b"[]"), ("other/bridge/devices", b"not json")],
    )
    assert result["errors"] == {"base": "no_devices"}
    z2m_entry([FRIENT]).add_to_hass(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BASE_TOPIC: "zigbee2mqtt"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_flow_aborts_without_mqtt(hass: HomeAssistant) -> None:
    """No MQTT integration set up: both MQTT sources abort with a clear reason."""
    for step in ("zigbee2mqtt", "wmbusmeters"):
        result = await _menu(hass, step)
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "mqtt_not_configured"
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=_service_info("zigbee2mqtt/bridge/devices", bridge_devices(), "zigbee2mqtt/bridge/devices"),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "mqtt_not_configured"


async def test_zigbee2mqtt_discovery(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The manifest's topic starts a discovery flow that lists the metering devices found."""
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices())
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert len(flows) == 1
    flow = flows[0]
    assert flow["context"]["source"] == SOURCE_MQTT
    assert flow["step_id"] == "z2m_select"
    assert flow["context"]["title_placeholders"] == {"name": "Zigbee2MQTT (zigbee2mqtt)"}
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_DEVICES: [PLUG]})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_DEVICES] == [PLUG]
    await hass.async_block_till_done()
    # Configured: the list seen again starts nothing.
    await fire(hass, "zigbee2mqtt/bridge/devices", bridge_devices({PLUG: "renamed"}))
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("zigbee2mqtt/bridge/devices", b"{not json", "invalid_discovery_info"),
        ("zigbee2mqtt/bridge/devices", b'{"devices": []}', "invalid_discovery_info"),
        ("zigbee2mqtt/bridge/devices", b"", "invalid_discovery_info"),
        ("zigbee2mqtt/bridge/devices", b"[]", "no_devices"),
        ("wmbusmeters/x", b"[1, 2]", "invalid_discovery_info"),
        ("wmbusmeters/x", b"", "invalid_discovery_info"),
        (
            "wmbusmeters/x",
            b'{"_": "telegram", "media": "water", "id": "1", "total_m3": NaN}',
            "invalid_discovery_info",
        ),
    ],
)
async def test_discovery_of_bad_messages_aborts(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, topic: str, payload: bytes, reason: str
) -> None:
    """A discovery message that is no usable device list or telegram aborts quietly."""
    subscribed = "zigbee2mqtt/bridge/devices" if topic.startswith("zigbee2mqtt") else "wmbusmeters/#"
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_service_info(topic, payload, subscribed)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason


async def test_wmbusmeters_user_flow(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """Telegrams heard during the listen are offered by meter ID; the picked ones are stored."""
    result = await _menu(hass, "wmbusmeters")
    assert result["step_id"] == "wmbusmeters"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC: "wmbusmeters/#"})
    assert result["errors"] == {"base": "no_meters"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC: "a/#/b"})
    assert result["errors"] == {CONF_TOPIC: "invalid_topic"}
    result = await while_publishing(
        hass,
        hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC: "wmbusmeters/#"}),
        [
            ("wmbusmeters/MyElectricity3", wmbus_payload(AMIPLUS)),
            ("wmbusmeters/mygas1", wmbus_payload(GWFGAS)),
            ("wmbusmeters/WaterWater", wmbus_payload(IWMTX5)),
            ("wmbusmeters/garbage", b"\xff\xfe not json"),
        ],
    )
    assert result["step_id"] == "wmbus_select"
    offered = _options(result, CONF_METERS)
    assert set(offered) == {"86064864", "23115250", "22917370"}
    assert "Gas meter" in offered["23115250"] and "101.886" in offered["23115250"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_METERS: []})
    assert result["errors"] == {"base": "nothing_selected"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_METERS: ["23115250", "22917370"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_PROTOCOL: "wmbusmeters",
        CONF_TOPIC: "wmbusmeters/#",
        CONF_METERS: ["23115250", "22917370"],
    }
    assert result["result"].unique_id == "wmbusmeters:wmbusmeters/#"


async def test_wmbusmeters_discovery(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A telegram on the manifest's topic starts a flow that lists it and the meters heard after it."""
    result = await while_publishing(
        hass,
        hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": SOURCE_MQTT},
            data=_service_info("wmbus/mygas1", wmbus_payload(GWFGAS), "wmbus/#"),
        ),
        # Not the manifest's topic: no discovery flow of its own.
        [("wmbus/WaterWater", wmbus_payload(IWMTX5))],
    )
    assert result["step_id"] == "wmbus_select"
    assert set(_options(result, CONF_METERS)) == {"23115250", "22917370"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_METERS: ["22917370"]})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert result["result"].unique_id == "wmbusmeters:wmbus/#"
    # Configured: further telegrams start no flow.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=_service_info("wmbus/mygas1", wmbus_payload(GWFGAS), "wmbus/#"),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_wmbusmeters_discovery_through_the_broker(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """The manifest's wmbusmeters/# topic reaches the flow through the MQTT integration."""
    await fire(hass, "wmbusmeters/mygas1", wmbus_payload(GWFGAS))
    # The discovery flow listens for more meters first (a background task).
    await wait_for(lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["step_id"] for flow in flows] == ["wmbus_select"]


async def test_reconfigure_zigbee2mqtt_selection(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The selection changes; the current one is preselected, a device missing from the list stays offered."""
    entry = z2m_entry([FRIENT, "0x0000000000000001"])
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await while_publishing(
        hass, entry.start_reconfigure_flow(hass), [("zigbee2mqtt/bridge/devices", bridge_devices())]
    )
    assert result["step_id"] == "reconfigure_mqtt"
    offered = _options(result, CONF_DEVICES)
    assert set(offered) == {FRIENT, PLUG, LINKY, "0x0000000000000001"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_DEVICES: []})
    assert result["errors"] == {"base": "nothing_selected"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_DEVICES: [FRIENT, PLUG]})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_DEVICES] == [FRIENT, PLUG]
    assert entry.data[CONF_NAMES] == {FRIENT: FRIENT_NAME, PLUG: "washing_machine_plug"}
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.source.selected == {FRIENT, PLUG}


async def test_reconfigure_wmbusmeters_selection(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A wmbusmeters entry's meters change; a selected meter not heard now stays offered."""
    entry = wmbus_entry(["23115250"])
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await while_publishing(
        hass, entry.start_reconfigure_flow(hass), [("wmbusmeters/WaterWater", wmbus_payload(IWMTX5))]
    )
    assert result["step_id"] == "reconfigure_mqtt"
    assert set(_options(result, CONF_METERS)) == {"23115250", "22917370"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_METERS: ["23115250", "22917370"]}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_METERS] == ["23115250", "22917370"]
