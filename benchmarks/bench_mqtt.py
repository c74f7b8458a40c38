"""MQTT load: 200 simulated Zigbee meters reporting every 10 s through a real Mosquitto broker.

Issue 5. Debian's ``/usr/sbin/mosquitto`` runs on a free port of 127.0.0.1; a
real Home Assistant in its own process (:mod:`benchmarks.mqtt_worker`) sets up
the real MQTT integration on it and our Zigbee2MQTT entry for 200 devices,
half Frient ZHEMI101-like (``energy``, ``power``, ``interface_mode``,
``linkquality``...), half LiXee ZLinky-like (``current_summ_delivered``, two
tiers, ``rms_current``, ``rms_voltage``, ``apparent_power``...), listed in a
retained ``bench/bridge/devices`` message built from the test fixture's
entries (about 700 kB: the large-list path). This process publishes, with
paho-mqtt, one state message per device per round; a round stands for 10
seconds of the real rate. Rounds are published as fast as Home Assistant
handles them (the next one after the worker said the previous one was
handled), and the worker moves the coordinator's clock on 10 s per round, so
the counter guard and the write policy (defaults: one counter write per
5 minutes, measurements on a 10 % change or every 5 minutes) see the real rate.

Measured in the Home Assistant process over the measured rounds (after two
warm-up rounds that create the entities): CPU seconds (``time.process_time``,
MQTT client, decoding, guard, entities and state machine, every thread) and
the event loop thread's alone, per message, and the sensor state writes. The
target is the CPU share of one core at the real rate: CPU per message x 200
messages / 10 s, goal 5 %.

Environment: ``BENCH_MQTT_ROUNDS`` (default 30 = 5 simulated minutes, 6,000
messages), ``BENCH_MQTT_METERS`` (default 200).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from benchmarks.mqtt_worker import BASE, ROUND_SECONDS, ieee

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = Path("/usr/sbin/mosquitto")
FIXTURE = ROOT / "tests" / "fixtures" / "zigbee2mqtt" / "bridge_devices.json"
GOAL = 0.05
WARMUP_ROUNDS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def device_list(meters: int) -> bytes:
    """A ``bridge/devices`` payload with ``meters`` devices, alternately Frient- and ZLinky-like."""
    fixture = json.loads(FIXTURE.read_bytes())
    templates = [e for e in fixture if e["friendly_name"] in ("Frient - Energy Monitor", "linky")]
    templates.sort(key=lambda e: e["friendly_name"] != "Frient - Energy Monitor")
    devices = [next(e for e in fixture if e["type"] == "Coordinator")]
    for index in range(meters):
        device = json.loads(json.dumps(templates[index % 2]))
        device["ieee_address"] = ieee(index)
        device["friendly_name"] = f"meter_{index:03d}"
        device["network_address"] = 1000 + index
        devices.append(device)
    return json.dumps(devices).encode()


class Meters:
    """The simulated devices' state: a load per device, counters advancing with it."""

    def __init__(self, meters: int, seed: int = 5) -> None:
        """Start every device at its own counter and load."""
        self.rng = random.Random(seed)  # noqa: S311 - simulated loads, not secrets
        self.energy = [self.rng.uniform(1000, 20000) for _ in range(meters)]
        self.tier2 = [self.rng.uniform(1000, 9000) for _ in range(meters)]
        self.power = [self.rng.uniform(100, 3000) for _ in range(meters)]

    def payload(self, index: int) -> bytes:
        """The device's next state message (10 s after its previous one)."""
        rng = self.rng
        power = max(0.0, self.power[index] * rng.uniform(0.85, 1.15))
        self.power[index] = min(power, 9000.0) or 50.0
        self.energy[index] += self.power[index] * ROUND_SECONDS / 3_600_000
        if index % 2 == 0:  # Frient ZHEMI101 (energy 2 decimals, power W)
            state: dict[str, Any] = {
                "battery_low": False,
                "energy": round(self.energy[index], 2),
                "interface_mode": "electricity",
                "linkquality": rng.randint(40, 160),
                "power": round(self.power[index]),
                "pulse_configuration": 1000,
            }
        else:  # LiXee ZLinky (Linky standard mode: kWh with Wh resolution)
            total = self.energy[index] + self.tier2[index]
            state = {
                "apparent_power": round(self.power[index]),
                "available_power": 9,
                "current_index_tarif": 1,
                "current_summ_delivered": round(total, 3),
                "current_tarif": "HP",
                "current_tier1_summ_delivered": round(self.energy[index], 3),
                "current_tier2_summ_delivered": round(self.tier2[index], 3),
                "linkquality": rng.randint(40, 160),
                "rms_current": round(self.power[index] / 230),
                "rms_voltage": rng.randint(226, 238),
            }
        return json.dumps(state).encode()


def _expect(stream: IO[str], prefix: str) -> str:
    line = stream.readline()
    if not line.startswith(prefix):
        raise RuntimeError(f"worker said {line!r}, expected {prefix!r}")
    return line


def measure(meters: int, rounds: int) -> dict[str, Any]:
    """Run broker, worker and publisher; the worker's JSON result."""
    from paho.mqtt.client import Client  # noqa: PLC0415 - a test dependency
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    if not MOSQUITTO.exists():
        raise RuntimeError(f"{MOSQUITTO} is missing: apt-get install mosquitto")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n")
        with (Path(tmp) / "mosquitto.log").open("wb") as log:
            broker = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        client = Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
        worker: subprocess.Popen[str] | None = None
        try:
            for _ in range(100):
                try:
                    client.connect("127.0.0.1", port)
                    break
                except OSError:
                    time.sleep(0.05)
            client.loop_start()
            client.publish(
                f"{BASE}/bridge/devices", device_list(meters), qos=1, retain=True
            ).wait_for_publish(10)
            worker = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.mqtt_worker", str(port), str(meters), tmp],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert worker.stdin is not None and worker.stdout is not None
            _expect(worker.stdout, "ready")
            states = Meters(meters)
            for number in range(1, WARMUP_ROUNDS + rounds + 1):
                if number == WARMUP_ROUNDS + 1:
                    worker.stdin.write("measure\n")
                    worker.stdin.flush()
                    _expect(worker.stdout, "measuring")
                for index in range(meters):
                    client.publish(f"{BASE}/meter_{index:03d}", states.payload(index))
                worker.stdin.write(f"round {number}\n")
                worker.stdin.flush()
                _expect(worker.stdout, f"done {number}")
            worker.stdin.write("stop\n")
            worker.stdin.flush()
            result: dict[str, Any] = json.loads(_expect(worker.stdout, "{"))
            worker.wait(timeout=60)
            return result
        finally:
            client.loop_stop()
            client.disconnect()
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
            broker.terminate()
            broker.wait(timeout=10)


def run() -> int:
    """Print the table and the target line; non-zero when the benchmark could not run."""
    meters = int(os.environ.get("BENCH_MQTT_METERS", "200"))
    rounds = int(os.environ.get("BENCH_MQTT_ROUNDS", "30"))
    try:
        result = measure(meters, rounds)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as err:
        print(f"mqtt benchmark failed: {err}")
        return 1
    messages = result["messages"]
    if messages != meters * rounds or result["undecodable"]:
        print(
            f"mqtt benchmark: {messages} of {meters * rounds} messages handled, {result['undecodable']} bad"
        )
        return 1
    per_message = result["cpu_s"] / messages
    loop_per_message = result["loop_cpu_s"] / messages
    rate = meters / ROUND_SECONDS  # messages per real second
    share = per_message * rate
    simulated_hours = rounds * ROUND_SECONDS / 3600
    print(
        f"{'meters':>6} {'messages':>8} {'CPU s':>7} {'µs/msg':>7} {'loop µs/msg':>11} {'writes':>7} {'wall s':>7}"
    )
    print(
        f"{meters:>6} {messages:>8} {result['cpu_s']:>7.2f} {per_message * 1e6:>7.0f} "
        f"{loop_per_message * 1e6:>11.0f} {result['state_writes']:>7} {result['wall_s']:>7.2f}"
    )
    print(
        f"state writes: {result['state_writes']} for {messages} messages "
        f"({result['state_writes'] / meters / simulated_hours:.0f} per meter per hour, "
        f"{result['entities']} sensor entities)"
    )
    print(
        f"CPU share of one core at {rate:g} msgs/s: {share:.4f} "
        f"(event loop alone {loop_per_message * rate:.4f}); messages handled at "
        f"{messages / result['wall_s']:.0f} msgs/s ({messages / result['wall_s'] / rate:.0f} x real rate)"
    )
    print(f"target mqtt_200_meters_cpu_share {share:.4f} {GOAL:g}")
    return 0
