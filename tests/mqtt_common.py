"""Shared pieces of the MQTT tests: the Zigbee2MQTT device list, corpus payloads, entries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from custom_components.smartmeter.const import (
    CONF_BASE_TOPIC,
    CONF_DEVICES,
    CONF_METERS,
    CONF_NAMES,
    CONF_PROTOCOL,
    CONF_TOPIC,
    DOMAIN,
)
from tests.conftest import corpus_dir

FIXTURES = Path(__file__).parent / "fixtures"
BRIDGE_DEVICES = FIXTURES / "zigbee2mqtt" / "bridge_devices.json"
# The devices of the fixture's list.
FRIENT = "0x0015bc001b02a5c4"
FRIENT_NAME = "Frient - Energy Monitor"
PLUG = "0xa4c138d2e5f6a701"
PLUG_NAME = "washing_machine_plug"
LINKY = "0x00158d0007a1b2c3"
WEATHER = "0x00158d0001a2b3c4"  # battery voltage only: no meter
GAS_DETECTOR = "0x000d6f000e5a1b2c"  # a binary "gas": no meter

# wmbusmeters corpus telegrams (their expected JSON is what wmbusmeters publishes).
AMIPLUS = "amiplus_86064864_electricity"
GWFGAS = "gwfgas_23115250_gas"
IWMTX5 = "iwmtx5_22917370_water"


def bridge_devices(renames: dict[str, str] | None = None) -> bytes:
    """The fixture's ``bridge/devices`` payload, with devices renamed by IEEE address."""
    devices = json.loads(BRIDGE_DEVICES.read_bytes())
    for device in devices:
        new = (renames or {}).get(device["ieee_address"])
        if new is not None:
            device["friendly_name"] = new
    return json.dumps(devices).encode()


def frient_states() -> list[bytes]:
    """The two real consecutive ZHEMI101 state publishes of the corpus."""
    sample = json.loads((corpus_dir() / "zigbee2mqtt" / "frient_zhemi101_electricity.json").read_bytes())
    assert sample["topic"] == f"zigbee2mqtt/{FRIENT_NAME}"
    return [json.dumps(payload).encode() for payload in sample["payloads"]]


def plug_state() -> bytes:
    """The corpus Tuya plug's state (energy 380.8 kWh, power 44 W)."""
    sample = json.loads((corpus_dir() / "zigbee2mqtt" / "tuya_plug_with_metering.json").read_bytes())
    return json.dumps(sample["payload"]).encode()


def wmbus_json(name: str) -> dict[str, Any]:
    """The JSON wmbusmeters publishes for a corpus telegram (its test's expected JSON)."""
    expected = json.loads((corpus_dir() / "wmbus" / f"{name}.expected.json").read_bytes())
    result: dict[str, Any] = expected["expected_json"]
    return result


def wmbus_payload(name: str, **changes: Any) -> bytes:
    """The payload wmbusmeters publishes for a corpus telegram, optionally changed."""
    return json.dumps(wmbus_json(name) | changes).encode()


def z2m_entry(
    devices: list[str], base: str = "zigbee2mqtt", options: dict[str, Any] | None = None
) -> MockConfigEntry:
    """A Zigbee2MQTT entry as the flow creates it."""
    return MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"zigbee2mqtt:{base}",
        title=f"Zigbee2MQTT ({base})",
        data={CONF_PROTOCOL: "zigbee2mqtt", CONF_BASE_TOPIC: base, CONF_DEVICES: devices, CONF_NAMES: {}},
        options=options or {},
    )


def wmbus_entry(
    meters: list[str], topic: str = "wmbusmeters/#", options: dict[str, Any] | None = None
) -> MockConfigEntry:
    """A wmbusmeters entry as the flow creates it."""
    return MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"wmbusmeters:{topic}",
        title=f"wmbusmeters ({topic})",
        data={CONF_PROTOCOL: "wmbusmeters", CONF_TOPIC: topic, CONF_METERS: meters},
        options=options or {},
    )


async def while_publishing(
    hass: HomeAssistant, action: Awaitable[Any], messages: list[tuple[str, bytes]], interval: float = 0.02
) -> Any:
    """Run ``action`` (a flow step that listens) while the messages are published again and again.

    The mocked broker keeps no retained message: repeating them is what a
    subscriber sees of a retained list and of meters sending periodically.
    """
    task: asyncio.Task[Any] = asyncio.ensure_future(action)
    while not task.done():
        for topic, payload in messages:
            async_fire_mqtt_message(hass, topic, payload)
        await asyncio.sleep(interval)
    return task.result()


async def fire(hass: HomeAssistant, topic: str, payload: bytes | str) -> None:
    """Publish one message on the mocked broker and let Home Assistant handle it."""
    async_fire_mqtt_message(hass, topic, payload)
    await hass.async_block_till_done()
