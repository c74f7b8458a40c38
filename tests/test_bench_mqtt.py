"""The MQTT benchmark runs end to end on a real broker (a short run) and prints its target line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import bench_mqtt
from benchmarks.__main__ import available

TARGET = re.compile(r"^target mqtt_200_meters_cpu_share (?P<value>\d+\.\d{4}) 0\.05$", re.MULTILINE)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """No Home Assistant in this process (the worker has its own): override the suite-wide fixture."""


def test_registered_as_scripts_bench_mqtt() -> None:
    assert "mqtt" in available()


def test_device_list_is_large_and_parses() -> None:
    """200 devices: over a state message's limit, read entry by entry into 200 meters."""
    from custom_components.smartmeter.core.zigbee2mqtt import MAX_PAYLOAD
    from custom_components.smartmeter.mqtt_source import parse_device_list

    payload = bench_mqtt.device_list(200)
    assert len(payload) > MAX_PAYLOAD
    devices = parse_device_list(payload)
    assert len(devices) == 200
    assert len({device.ieee for device in devices}) == 200


@pytest.mark.skipif(not Path("/usr/sbin/mosquitto").exists(), reason="/usr/sbin/mosquitto is missing")
def test_short_run(
    socket_enabled: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten meters, three rounds: every message handled, a well-formed target line."""
    monkeypatch.setenv("BENCH_MQTT_METERS", "10")
    monkeypatch.setenv("BENCH_MQTT_ROUNDS", "3")
    status = bench_mqtt.run()
    out = capsys.readouterr().out
    assert status == 0, out
    match = TARGET.search(out)
    assert match is not None, out
    assert 0 < float(match["value"]) < 1
