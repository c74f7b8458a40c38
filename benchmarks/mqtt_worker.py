"""The Home Assistant side of the MQTT benchmark, in its own process.

``python -m benchmarks.mqtt_worker PORT METERS WORKDIR`` starts a real Home
Assistant (registries, no recorder) in ``WORKDIR``, sets up the real MQTT
integration on the broker at ``127.0.0.1:PORT`` and our Zigbee2MQTT entry for
``METERS`` simulated devices (base topic ``bench``), then talks to the
benchmark over its standard streams, one line each:

* it prints ``ready`` once both entries are loaded;
* for each ``round N`` line it reads, it waits until N rounds of METERS state
  messages were handled (decoded, guarded, written by the entities), moves the
  simulated clock on by :data:`ROUND_SECONDS` and prints ``done N``;
* ``measure`` starts the CPU measurement (answered by ``measuring``), ``stop`` ends it and prints the
  result as one JSON line, then Home Assistant stops.

Time compression: Zigbee meters report every 10 s; here a round is published
as fast as Home Assistant handles it, and the coordinator's clock (the time
the counter guard and the write policy see) moves on 10 s per round, so the
write policy writes what it would at the real rate.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from homeassistant import bootstrap, config_entries, loader
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_system import METRIC_SYSTEM

ROUND_SECONDS = 10.0
BASE = "bench"
SETUP_TIMEOUT = 60.0
ROUND_TIMEOUT = 60.0


def ieee(index: int) -> str:
    """The simulated device's IEEE address."""
    return f"0x00be{index:012x}"


async def _start(config_dir: Path) -> HomeAssistant:
    hass = HomeAssistant(str(config_dir))
    loader.async_setup(hass)
    hass.config.skip_pip = True
    hass.config.units = METRIC_SYSTEM
    hass.config_entries = config_entries.ConfigEntries(hass, {})
    await bootstrap.async_load_base_functionality(hass)
    # The MQTT integration's dependencies for its config flow UI (uploads over HTTP): not
    # needed here, and the HTTP server would bind a port. Marked as set up.
    hass.config.components.update({"http", "file_upload"})
    await hass.async_start()
    return hass


def _entry(domain: str, data: dict[str, Any], options: dict[str, Any] | None = None) -> ConfigEntry:
    return ConfigEntry(
        data=data,
        discovery_keys=MappingProxyType({}),
        domain=domain,
        minor_version=2 if domain == "mqtt" else 1,
        options=options or {},
        source=config_entries.SOURCE_USER,
        subentries_data=None,
        title=domain,
        unique_id=None if domain == "mqtt" else f"zigbee2mqtt:{BASE}",
        version=1,
    )


async def _wait(condition: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling setup state, outside the measurement
            await asyncio.sleep(0.05)


async def main(port: int, meters: int, workdir: Path) -> None:
    """Run the Home Assistant side until ``stop``."""
    from homeassistant.components import mqtt  # noqa: PLC0415 - after Home Assistant is set up

    from custom_components.smartmeter.coordinator import SmartMeterCoordinator  # noqa: PLC0415
    from custom_components.smartmeter.mqtt_source import Zigbee2MqttSource  # noqa: PLC0415

    hass = await _start(workdir / "config")
    # The simulated clock the coordinator stamps readings with.
    now: list[datetime] = [dt_util.utcnow()]
    SmartMeterCoordinator.clock = staticmethod(lambda: now[0])  # type: ignore[method-assign]
    handled = [0]
    target: list[tuple[int, asyncio.Future[None]] | None] = [None]
    # Count the frames the source hands on (a wrapper around its one hand-over point).
    original_push = Zigbee2MqttSource._push  # noqa: SLF001

    def _push(self: Zigbee2MqttSource, frame: Any) -> None:
        original_push(self, frame)
        handled[0] += 1
        waiting = target[0]
        if waiting is not None and handled[0] >= waiting[0] and not waiting[1].done():
            waiting[1].set_result(None)

    Zigbee2MqttSource._push = _push  # type: ignore[method-assign,assignment]  # noqa: SLF001
    writes = [0]

    @callback
    def _count(event: Event[Any]) -> None:
        if event.data["entity_id"].startswith("sensor."):
            writes[0] += 1

    hass.bus.async_listen(EVENT_STATE_CHANGED, _count)
    try:
        mqtt_entry = _entry("mqtt", {mqtt.CONF_BROKER: "127.0.0.1", "port": port})
        await hass.config_entries.async_add(mqtt_entry)
        await _wait(
            lambda: mqtt_entry.state is ConfigEntryState.LOADED and mqtt.is_connected(hass), SETUP_TIMEOUT
        )
        ours = _entry(
            "smartmeter",
            {
                "protocol": "zigbee2mqtt",
                "base_topic": BASE,
                "devices": [ieee(i) for i in range(meters)],
                "names": {},
            },
        )
        await hass.config_entries.async_add(ours)
        await _wait(lambda: ours.state is ConfigEntryState.LOADED, SETUP_TIMEOUT)
        source = ours.runtime_data.source
        await _wait(lambda: len(source.devices) == meters, SETUP_TIMEOUT)  # the retained list was read
        await _wait(lambda: len(source.diagnostics()["topics"]) == meters + 1, SETUP_TIMEOUT)
        # Subscriptions reach the broker after a short cooldown: let them settle.
        await asyncio.sleep(2.0)
        print("ready", flush=True)
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        started: tuple[float, float, float, int, int] | None = None
        while line := (await reader.readline()).decode().strip():
            command, _, arg = line.partition(" ")
            if command == "round":
                number = int(arg)
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                target[0] = (number * meters, future)
                if handled[0] < number * meters:
                    async with asyncio.timeout(ROUND_TIMEOUT):
                        await future
                await hass.async_block_till_done()
                target[0] = None
                now[0] += timedelta(seconds=ROUND_SECONDS)
                print(f"done {number}", flush=True)
            elif command == "measure":
                started = (
                    time.process_time(),
                    time.thread_time(),
                    time.perf_counter(),
                    handled[0],
                    writes[0],
                )
                print("measuring", flush=True)
            elif command == "stop":
                assert started is not None
                cpu, loop_cpu, wall, messages, state_writes = started
                print(
                    json.dumps(
                        {
                            "messages": handled[0] - messages,
                            "cpu_s": time.process_time() - cpu,
                            "loop_cpu_s": time.thread_time() - loop_cpu,
                            "wall_s": time.perf_counter() - wall,
                            "state_writes": writes[0] - state_writes,
                            "undecodable": source.stats.frames_undecodable,
                            "entities": len(hass.states.async_entity_ids("sensor")),
                        }
                    ),
                    flush=True,
                )
                break
    finally:
        await hass.async_stop(force=True)


if __name__ == "__main__":
    # The MQTT integration reads configuration.yaml: an empty one.
    (Path(sys.argv[3]) / "config").mkdir(parents=True, exist_ok=True)
    (Path(sys.argv[3]) / "config" / "configuration.yaml").write_text("", encoding="utf-8")
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
