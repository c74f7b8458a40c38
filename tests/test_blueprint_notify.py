"""The alert notification blueprint as a real automation, up to the phone's push gateway.

A test Home Assistant runs the real mobile_app integration with one registered
phone (push token and push URL, as the companion app registers them), so the
blueprint's mobile_app device action resolves to the phone's real notify
service. What leaves Home Assistant is the HTTP POST to the push gateway:
that POST is intercepted (``aioclient_mock``) and is what the tests read. The
``smartmeter_alert`` events have the shape :mod:`custom_components.smartmeter.alerts`
fires, with its own message text.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry, MockUser
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.smartmeter.alerts import _message
from custom_components.smartmeter.const import DOMAIN, EVENT_ALERT

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = "smartmeter/notify_alerts.yaml"
PUSH_URL = "https://mobile-push.home-assistant.dev/push"
PUSH_TOKEN = "PUSH_TOKEN_PHONE"
WEBHOOK_ID = "phone_webhook"
WATER = "3-1:24.1.0-12345678"
ELECTRICITY = "E0043007012345678"
UNREGISTERED = "4-1:24.1.0-87654321"  # a meter whose device is not in the registry


class Setup:
    """The test Home Assistant: a phone, two meter devices, the blueprint's automation."""

    def __init__(self, hass: HomeAssistant, gateway: AiohttpClientMocker, user_id: str) -> None:
        """Remember the Home Assistant, the mocked push gateway and the phone's user."""
        self.hass = hass
        self.gateway = gateway
        self.user_id = user_id
        self.entry_id = ""
        self.devices: dict[str, str] = {}

    async def start(self, tmp_path: Path, **inputs: Any) -> None:
        """Register the phone, add the meters' devices, run the blueprint with ``inputs``."""
        hass = self.hass
        hass.config.config_dir = str(tmp_path)
        target = tmp_path / "blueprints" / "automation" / "smartmeter"
        target.mkdir(parents=True)
        shutil.copy(ROOT / "blueprints" / "automation" / BLUEPRINT, target / "notify_alerts.yaml")
        self.gateway.post(PUSH_URL, json={})
        phone = MockConfigEntry(
            domain="mobile_app",
            title="Phone",
            source="registration",
            version=1,
            data={
                "app_data": {"push_token": PUSH_TOKEN, "push_url": PUSH_URL},
                "app_id": "io.homeassistant.mobile_app",
                "app_name": "Home Assistant",
                "app_version": "2025.4",
                "device_id": "phone-device-id",
                "device_name": "Phone",
                "manufacturer": "Google",
                "model": "Pixel 8",
                "os_name": "Android",
                "os_version": "14",
                "secret": "0123456789abcdef",
                "supports_encryption": False,
                "user_id": self.user_id,
                "webhook_id": WEBHOOK_ID,
            },
        )
        phone.add_to_hass(hass)
        # mobile_app's Python requirements (and those of what it imports) are test requirements here.
        assert await async_setup_component(hass, "mobile_app", {"mobile_app": {}}), (
            "mobile_app did not set up: see its import error above (requirements_test.txt)"
        )
        await hass.async_block_till_done()
        registry = dr.async_get(hass)
        # The device mobile_app made for the phone (the one the user picks in the blueprint).
        [phone_device] = dr.async_entries_for_config_entry(registry, phone.entry_id)
        assert ("mobile_app", "phone-device-id") in phone_device.identifiers
        # The meters' devices as the integration registers them (the entry itself is not needed).
        meter_entry = MockConfigEntry(domain=DOMAIN, title="P1 meter")
        meter_entry.add_to_hass(hass)
        self.entry_id = meter_entry.entry_id
        for meter_id, name in ((WATER, "Water meter"), (ELECTRICITY, "Electricity meter")):
            device = registry.async_get_or_create(
                config_entry_id=meter_entry.entry_id, identifiers={(DOMAIN, meter_id)}, name=name
            )
            self.devices[meter_id] = device.id
        if isinstance(meters := inputs.get("meters"), list):
            inputs["meters"] = [self.devices[m] for m in meters]
        elif isinstance(meters, str):
            inputs["meters"] = self.devices[meters]
        assert await async_setup_component(
            hass,
            AUTOMATION_DOMAIN,
            {
                AUTOMATION_DOMAIN: {
                    "alias": "Meter alerts",
                    "use_blueprint": {
                        "path": BLUEPRINT,
                        "input": {"notify_device": phone_device.id} | inputs,
                    },
                }
            },
        )
        await hass.async_block_till_done()
        state = hass.states.get("automation.meter_alerts")
        assert state is not None
        assert state.state == "on"

    async def fire(self, meter_id: str, alert: str, active: bool, **details: Any) -> None:
        """Fire an alert event as ``AlertHub._fire`` does, and let the automation run.

        A meter without a device (not in ``devices``) has ``device_id`` None, as there.
        """
        name = {WATER: "Water meter", ELECTRICITY: "Electricity meter"}.get(meter_id, meter_id)
        data: dict[str, Any] = {
            "entry_id": self.entry_id,
            "meter_id": meter_id,
            "device_id": self.devices.get(meter_id),
            "meter_name": name,
            "alert": alert,
            "active": active,
        } | details
        data["message"] = _message(data)
        self.hass.bus.async_fire(EVENT_ALERT, data)
        await self.hass.async_block_till_done()

    def sent(self) -> list[dict[str, Any]]:
        """What the push gateway received, oldest first (without the registration details)."""
        out = []
        for method, url, body, _headers in self.gateway.mock_calls:
            assert (method.lower(), str(url)) == ("post", PUSH_URL)
            assert body["push_token"] == PUSH_TOKEN
            assert body["registration_info"]["webhook_id"] == WEBHOOK_ID
            out.append({key: value for key, value in body.items() if key in ("title", "message", "data")})
        return out


@pytest.fixture
async def setup(hass: HomeAssistant, aioclient_mock: AiohttpClientMocker, hass_admin_user: MockUser) -> Setup:
    """A test Home Assistant in Brussels, not yet started."""
    await hass.config.async_set_time_zone("Europe/Brussels")
    return Setup(hass, aioclient_mock, hass_admin_user.id)


LEAK_SINCE = "2026-03-02T06:40:00+00:00"
LEAK = {"since": LEAK_SINCE, "no_quiet_since": "2026-03-01T06:40:00+00:00"}
OUTAGE = {
    "start": "2026-03-02T01:10:00+00:00",
    "end": "2026-03-02T01:55:00+00:00",
    "duration_s": 2700.0,
    "evidence": ["power_failures"],
    "disturbances": [],
}
# The clearing of a power outage that was seen while it lasted (AlertHub._evaluate).
POWER_BACK = {k: v for k, v in OUTAGE.items() if k != "disturbances"}


async def test_leak_notified_with_title_message_and_tag(setup: Setup, tmp_path: Path) -> None:
    """A leak reaches the phone once: its title, the alert's message, a tag per meter and alert."""
    await setup.start(tmp_path)
    await setup.fire(WATER, "water_leak", True, **LEAK)
    assert setup.sent() == [
        {
            "title": "Possible water leak",
            "message": "Water meter: possible leak, water has not stood still for the quiet period in 24 h",
            "data": {"tag": f"smartmeter-{WATER}-water_leak"},
        }
    ]
    # With no meter chosen, every meter's alerts come, even one without a device.
    await setup.fire(UNREGISTERED, "water_leak", True, **LEAK)
    assert setup.sent()[1]["data"] == {"tag": f"smartmeter-{UNREGISTERED}-water_leak"}


async def test_cleared_not_notified_by_default(setup: Setup, tmp_path: Path) -> None:
    """Without notify_cleared, a leak that clears and power that returns stay silent."""
    await setup.start(tmp_path)
    await setup.fire(WATER, "water_leak", False, since=None, no_quiet_since=None)
    await setup.fire(ELECTRICITY, "power_outage", False, **POWER_BACK)
    await setup.fire(WATER, "water_burst", False, since=None, flow_l_min=None)
    assert setup.sent() == []
    await setup.fire(WATER, "water_burst", True, since=LEAK_SINCE, flow_l_min=18.5)
    assert [n["title"] for n in setup.sent()] == ["Water burst?"]


async def test_cleared_notified_when_asked(setup: Setup, tmp_path: Path) -> None:
    """With notify_cleared, the cleared leak comes with the same tag, so it replaces the alert."""
    await setup.start(tmp_path, notify_cleared=True)
    await setup.fire(WATER, "water_leak", True, **LEAK)
    await setup.fire(WATER, "water_leak", False, since=None, no_quiet_since=None)
    sent = setup.sent()
    assert [n["title"] for n in sent] == ["Possible water leak", "No water leak suspected"]
    assert sent[1]["message"] == "Water meter: water stood still again, no leak suspected"
    assert sent[0]["data"] == sent[1]["data"] == {"tag": f"smartmeter-{WATER}-water_leak"}


async def test_outage_found_afterwards_always_notified(setup: Setup, tmp_path: Path) -> None:
    """An outage found only when the meter reports again (active False, found_after) is news."""
    await setup.start(tmp_path)
    await setup.fire(ELECTRICITY, "power_outage", False, **OUTAGE, found_after=True)
    # The link-lost clearing that comes with it is not (notify_cleared is off).
    await setup.fire(ELECTRICITY, "link_lost", False, **OUTAGE, cause="power_outage")
    assert setup.sent() == [
        {
            "title": "Power outage",
            # 01:10-01:55 UTC is 02:10-02:55 in Brussels.
            "message": "Electricity meter: power was out from 02:10 to 02:55 (45 min)",
            "data": {"tag": f"smartmeter-{ELECTRICITY}-power_outage"},
        }
    ]


async def test_alert_choice(setup: Setup, tmp_path: Path) -> None:
    """A high electricity day is left out by default; the chosen alerts alone are sent."""
    high_day = {
        "period_start": "2026-03-01T23:00:00+00:00",
        "period_end": "2026-03-02T23:00:00+00:00",
        "value": 31.2,
        "reference": 11.0,
        "unit": "kWh",
    }
    await setup.start(tmp_path)
    await setup.fire(ELECTRICITY, "electricity_high_day", True, **high_day)
    assert setup.sent() == []
    await setup.fire(ELECTRICITY, "link_lost", True, since="2026-03-02T01:10:30+00:00")
    assert [(n["title"], n["data"]["tag"]) for n in setup.sent()] == [
        ("Meter link lost", f"smartmeter-{ELECTRICITY}-link_lost")
    ]


async def test_electricity_high_day_when_chosen(setup: Setup, tmp_path: Path) -> None:
    """Chosen, a high electricity day is sent; a leak, not chosen, is not."""
    await setup.start(tmp_path, alerts=["electricity_high_day"])
    await setup.fire(WATER, "water_leak", True, **LEAK)
    await setup.fire(
        ELECTRICITY,
        "electricity_high_day",
        True,
        period_start="2026-03-01T23:00:00+00:00",
        period_end="2026-03-02T23:00:00+00:00",
        value=31.2,
        reference=11.0,
        unit="kWh",
    )
    assert setup.sent() == [
        {
            "title": "High electricity use today",
            "message": "Electricity meter: electricity use today 31.2 kWh, typical 11.0 kWh",
            "data": {"tag": f"smartmeter-{ELECTRICITY}-electricity_high_day"},
        }
    ]


@pytest.mark.parametrize("meters", [[WATER], WATER], ids=["list", "one device as a string"])
async def test_meter_filter(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture, meters: list[str] | str
) -> None:
    """Restricted to the water meter, the electricity meter's outage is not sent; the leak is."""
    await setup.start(tmp_path, meters=meters)
    caplog.clear()
    await setup.fire(ELECTRICITY, "power_outage", True, since=LEAK_SINCE, evidence=["voltage_zero"])
    await setup.fire(UNREGISTERED, "water_leak", True, **LEAK)  # no device: device_id None
    assert setup.sent() == []
    # A device-less meter's alert is left out without a template error in the run.
    automation = [r for r in caplog.records if r.name.startswith("homeassistant.components.automation")]
    assert not [r for r in automation if r.levelno >= logging.WARNING], caplog.text
    await setup.fire(WATER, "water_leak", True, **LEAK)
    assert [n["data"]["tag"] for n in setup.sent()] == [f"smartmeter-{WATER}-water_leak"]
