"""End to end against a real Mosquitto broker (Debian's /usr/sbin/mosquitto) on 127.0.0.1.

Home Assistant's real MQTT integration connects to the broker; paho-mqtt
publishes what Zigbee2MQTT would: the retained device list (which starts the
discovery flow through the manifest's topic), then the corpus state messages,
then a rename. `.ci/run` installs the mosquitto package on the host and in the
newest-Home-Assistant chroot.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Generator
from decimal import Decimal
from pathlib import Path

import pytest
from paho.mqtt import publish

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartmeter.const import CONF_DEVICES, DOMAIN
from tests.common import state_of, unload, wait_for
from tests.mqtt_common import FRIENT, FRIENT_NAME, bridge_devices, frient_states

MOSQUITTO = Path("/usr/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def broker(tmp_path: Path, socket_enabled: None) -> Generator[int]:
    """A Mosquitto broker on a free port of 127.0.0.1, anonymous, without persistence."""
    if not MOSQUITTO.exists() or shutil.which(str(MOSQUITTO)) is None:
        pytest.skip(f"{MOSQUITTO} is missing: install Debian's mosquitto package (.ci/run does)")
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    # "user root" keeps a broker started as root from switching to a "mosquitto" user.
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n")
    log = tmp_path / "mosquitto.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            if process.poll() is not None:
                pytest.fail(f"mosquitto exited: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        else:
            pytest.fail("mosquitto did not listen")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _publish(
    hass: HomeAssistant, port: int, topic: str, payload: bytes, *, retain: bool = False
) -> None:
    """Publish like Zigbee2MQTT does, through a separate paho client (connect, publish, disconnect)."""
    await hass.async_add_executor_job(
        lambda: publish.single(topic, payload, qos=1, retain=retain, hostname="127.0.0.1", port=port)
    )


async def test_zigbee2mqtt_on_a_real_broker(
    hass: HomeAssistant, mock_hass_config: None, broker: int, entity_registry: er.EntityRegistry
) -> None:
    """Retained device list -> discovery flow -> entry -> state messages -> entities; a rename keeps them."""
    await _publish(hass, broker, "zigbee2mqtt/bridge/devices", bridge_devices(), retain=True)
    mqtt_entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        data={mqtt.CONF_BROKER: "127.0.0.1", "port": broker},
        version=mqtt.CONFIG_ENTRY_VERSION,
        minor_version=mqtt.CONFIG_ENTRY_MINOR_VERSION,
    )
    mqtt_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mqtt_entry.entry_id)
    await wait_for(lambda: mqtt.is_connected(hass))
    # The retained list reaches the manifest's discovery topic: a flow offers the meters.
    await wait_for(lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)), timeout=20)
    flow = hass.config_entries.flow.async_progress_by_handler(DOMAIN)[0]
    assert flow["step_id"] == "z2m_select"
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_DEVICES: [FRIENT]})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    await hass.async_block_till_done()
    await wait_for(lambda: entry.state is ConfigEntryState.LOADED)
    first, second = frient_states()

    def _entity() -> str | None:
        return entity_registry.async_get_entity_id("sensor", DOMAIN, f"{FRIENT}_power_import")

    # Our subscription reaches the broker shortly after setup: publish until the meter shows.
    async with asyncio.timeout(20):
        while _entity() is None:
            await _publish(hass, broker, f"zigbee2mqtt/{FRIENT_NAME}", first)
            await asyncio.sleep(0.2)
    power = _entity()
    assert power is not None
    energy = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{FRIENT}_energy_import_total")
    assert energy is not None
    await wait_for(lambda: state_of(hass, energy).state == "1362.15")
    assert state_of(hass, power).state == "462"
    assert state_of(hass, power).attributes["unit_of_measurement"] == "W"
    # The second corpus message (463 W) is within the default write policy's 10 % deadband:
    # it is taken, not written. A change beyond it is written at once.
    await _publish(hass, broker, f"zigbee2mqtt/{FRIENT_NAME}", second)
    await _publish(hass, broker, f"zigbee2mqtt/{FRIENT_NAME}", b'{"energy": 1362.16, "power": 600}')
    await wait_for(lambda: state_of(hass, power).state == "600")
    assert entry.runtime_data.source.stats.frames_ok >= 3

    # Renamed in Zigbee2MQTT: the new retained list moves the subscription.
    await _publish(
        hass, broker, "zigbee2mqtt/bridge/devices", bridge_devices({FRIENT: "cellar/meter"}), retain=True
    )
    async with asyncio.timeout(20):
        while state_of(hass, power).state != "800":
            await _publish(hass, broker, "zigbee2mqtt/cellar/meter", b'{"energy": 1362.16, "power": 800}')
            await asyncio.sleep(0.2)
    # The counter's 0.01 kWh step is held back by the default write policy (one write per 5 min).
    assert Decimal(state_of(hass, energy).state) == Decimal("1362.15")
    assert entity_registry.async_get_entity_id("sensor", DOMAIN, f"{FRIENT}_power_import") == power
    source = entry.runtime_data.source
    assert source.connected
    assert source.stats.frames_undecodable == 0

    await unload(hass, entry)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()
