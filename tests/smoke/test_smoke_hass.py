"""End to end: a real Home Assistant process reads the simulated meter on a pty.

Starts the simulator (``python -m custom_components.smartmeter.core.simulator``)
and ``python -m homeassistant`` with a minimal offline configuration on a free
127.0.0.1 port, onboards over REST, adds the entry through the REST config
flow and checks ``/api/states``. The test itself is synchronous: Home Assistant
runs in its own process, so the harness's ``hass`` fixture is not used (see
``conftest.py``). Both processes are stopped whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from develop.bootstrap import BootstrapError, HassClient

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 55  # seconds for the whole test: a guard, the test takes ~10-20 s

pytestmark = pytest.mark.timeout(90)

CONFIGURATION = """\
homeassistant:
  name: Smoke test
  time_zone: Europe/Amsterdam
  country: NL
  currency: EUR
  unit_system: metric
  latitude: 52.37
  longitude: 4.89
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
# Newer Home Assistant always loads the frontend and falls back to recovery mode
# (without custom integrations) when it cannot: point it at an empty development
# build instead of installing the 50 MB home-assistant-frontend package.
frontend:
  development_repo: {frontend}
api:
config:
onboarding:
logger:
  default: warning
  logs:
    custom_components.smartmeter: debug
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Processes:
    """Child processes that are stopped (one SIGTERM, then SIGKILL) at teardown."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], *, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        """Start ``args`` in ``cwd`` with its output in ``log``."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.children.append(proc)
        return proc

    def stop_all(self) -> None:
        """SIGTERM every child still running, wait, SIGKILL what does not stop."""
        for proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # one signal: a second aborts HA's shutdown
        for proc in reversed(self.children):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def processes() -> Generator[Processes]:
    """Children of the test, always stopped."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def _wait_for(what: str, check: Callable[[], Any], deadline: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail at ``deadline``."""
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _number(state: dict[str, Any]) -> float:
    return float(state["state"])


def test_home_assistant_reads_the_simulated_meter(
    socket_enabled: None, tmp_path: Path, processes: Processes
) -> None:
    deadline = time.monotonic() + DEADLINE
    port = _free_port()
    config = tmp_path / "config"
    (config / "custom_components").mkdir(parents=True)
    (config / "custom_components" / "smartmeter").symlink_to(ROOT / "custom_components" / "smartmeter")
    frontend = tmp_path / "frontend-stub"
    (frontend / "hass_frontend").mkdir(parents=True)
    (config / "configuration.yaml").write_text(CONFIGURATION.format(port=port, frontend=frontend))
    tty = tmp_path / "ttyP1"
    env_python = sys.executable

    simulator = processes.start(
        [
            env_python,
            "-m",
            "custom_components.smartmeter.core.simulator",
            "--pty-link",
            str(tty),
            "--seed",
            "1",
        ],
        cwd=ROOT,
        log=tmp_path / "simulator.log",
    )
    hass = processes.start(
        [env_python, "-m", "homeassistant", "-c", str(config), "--skip-pip"],
        cwd=config,  # so ``custom_components`` resolves to the config dir's, as in production
        log=tmp_path / "hass.out",
    )

    def logs() -> str:
        return (
            f"\n--- simulator ---\n{_tail(tmp_path / 'simulator.log', 10)}"
            f"\n--- home assistant ---\n{_tail(tmp_path / 'hass.out')}"
        )

    try:
        _wait_for("the simulator's pty", tty.is_symlink, deadline, 0.1)
        assert os.readlink(tty).startswith("/dev/")  # noqa: PTH115
        client = HassClient(f"http://127.0.0.1:{port}", timeout=20)
        client.wait_until_up(max(1.0, deadline - time.monotonic()), alive=lambda: hass.poll() is None)
        assert client.onboard("Smoke", "smoke", "smoke-password") is True
        assert client.entries() == []

        result = client.add_serial_entry(str(tty))
        assert result["type"] == "create_entry"
        assert result["result"]["state"] == "loaded"
        assert result["title"].endswith("K8EG004046395507")  # the simulated meter's serial

        # Live mode through the options flow (applied by a reload, no restart):
        # every telegram is written, so the power sensor follows the simulator.
        entry_id = result["result"]["entry_id"]
        form = client.call("POST", "/api/config/config_entries/options/flow", {"handler": entry_id})
        done = client.call(
            "POST",
            f"/api/config/config_entries/options/flow/{form['flow_id']}",
            {"time_zone": "Europe/Amsterdam", "live": True},
        )
        assert done["type"] == "create_entry", done

        def energy_sensors() -> list[dict[str, Any]]:
            found = [
                s
                for s in client.states()
                if s["entity_id"].startswith("sensor.") and s["attributes"].get("device_class") == "energy"
            ]
            # Not while the entry reloads with its new options.
            return [] if any(s["state"] in ("unknown", "unavailable") for s in found) else found

        energy = _wait_for("energy sensors", energy_sensors, deadline)
        names = {s["entity_id"] for s in energy}
        assert any("import" in name for name in names), names
        assert any("export" in name for name in names), names
        for state in energy:
            assert state["attributes"]["state_class"] == "total_increasing", state
            assert state["attributes"]["unit_of_measurement"] == "kWh", state
            assert _number(state) > 0 or "export" in state["entity_id"], state

        def power_import() -> dict[str, Any] | None:
            for state in client.states():
                attrs = state["attributes"]
                entity_id = state["entity_id"]
                if (
                    attrs.get("device_class") == "power"
                    and "export" not in entity_id
                    and "phase" not in entity_id  # the total, not L1/L2/L3
                    and state["state"] not in ("unknown", "unavailable")
                ):
                    return state
            return None

        first = _wait_for("the power sensor", power_import, deadline)
        assert first["attributes"]["state_class"] == "measurement"
        assert first["attributes"]["unit_of_measurement"] in ("W", "kW")
        assert _number(first) > 0

        def power_changed() -> dict[str, Any] | None:
            now = power_import()
            if now is not None and (
                now["state"] != first["state"] or now["last_updated"] != first["last_updated"]
            ):
                return now
            return None

        later = _wait_for("the power sensor to update", power_changed, deadline)
        assert _number(later) > 0
        assert simulator.poll() is None and hass.poll() is None
    except (AssertionError, BootstrapError, OSError) as err:
        pytest.fail(f"{err}{logs()}")
