"""The planner entry in a test Home Assistant: flow, sensors, actions, events, and the blueprints.

A simulated meter (power, energy and per-phase current sensors, written as a
P1 meter would) and a price sensor (today's and tomorrow's hourly prices in
Nord Pool's attribute form) drive the planner through a full day; the three
shipped blueprints run as real automations against mocked charger services.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory

from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import Event, HomeAssistant, ServiceCall
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.smartmeter.const import (
    CONF_CAPACITY,
    CONF_CAPACITY_FLOOR,
    CONF_CAPACITY_PRICE,
    CONF_CURRENT_ENTITIES,
    CONF_ENERGY_ENTITIES,
    CONF_FUSE,
    CONF_PHASES,
    CONF_POWER_ENTITY,
    CONF_PRICE_ENTITY,
    CONF_PRICE_MODE,
    CONF_PROTOCOL,
    CONF_SCHEDULE,
    DOMAIN,
    EVENT_PEAK_PERIOD,
    EVENT_QUARTER_PEAK,
    PRICE_SCHEDULE,
    PRICE_SENSOR,
    PROTOCOL_PLANNER,
)

ROOT = Path(__file__).resolve().parents[1]
TZ = "Europe/Brussels"
POWER = "sensor.meter_power"
ENERGY = "sensor.meter_energy"
CURRENTS = ["sensor.meter_current_l1", "sensor.meter_current_l2", "sensor.meter_current_l3"]
PRICE = "sensor.nordpool_kwh_be_eur"


@pytest.fixture
async def brussels(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Home Assistant in Brussels, on a fixed winter day at 12:00 local."""
    await hass.config.async_set_time_zone(TZ)
    freezer.move_to(datetime(2026, 1, 14, 12, 0, 0, tzinfo=dt_util.get_time_zone(TZ)))


def _hourly_prices(day: datetime) -> list[dict[str, Any]]:
    """Nord Pool's raw list for a local day: expensive 17-21 h, cheap 1-5 h."""
    rows = []
    for hour in range(24):
        start = day.replace(hour=hour)
        price = 0.30 if 17 <= hour < 21 else 0.08 if 1 <= hour < 5 else 0.15
        rows.append(
            {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(), "value": price}
        )
    return rows


def _set_price(hass: HomeAssistant, *, tomorrow: bool) -> None:
    today = dt_util.start_of_local_day()
    raw_today = _hourly_prices(today)
    raw_tomorrow = _hourly_prices(today + timedelta(days=1)) if tomorrow else []
    now = dt_util.now()
    current = (
        next(r["value"] for r in raw_today if r["start"] <= now.isoformat() < r["end"]) if raw_today else 0
    )
    hass.states.async_set(
        PRICE,
        str(current),
        {
            "unit_of_measurement": "EUR/kWh",
            "currency": "EUR",
            "raw_today": raw_today,
            "raw_tomorrow": raw_tomorrow,
            "tomorrow_valid": tomorrow,
            "today": [r["value"] for r in raw_today],
            "tomorrow": [r["value"] for r in raw_tomorrow],
        },
    )


class Meter:
    """A simulated P1 meter: house load plus what the charger draws, integrated into the energy register."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start at 1000 kWh with 0.8 kW of house load."""
        self.hass = hass
        self.energy = Decimal("1000")
        self.house_kw = Decimal("0.8")
        self.charger_a = 0
        self.last = dt_util.utcnow()

    def write(self) -> None:
        """Write the meter's sensors for now (energy integrated since the last write)."""
        now = dt_util.utcnow()
        charger_kw = Decimal(self.charger_a) * 230 * 3 / 1000
        power = self.house_kw + charger_kw
        self.energy += power * Decimal((now - self.last).total_seconds()) / 3600
        self.last = now
        self.hass.states.async_set(POWER, str(power), {"unit_of_measurement": "kW", "device_class": "power"})
        self.hass.states.async_set(
            ENERGY,
            str(self.energy.quantize(Decimal("0.001"))),
            {"unit_of_measurement": "kWh", "device_class": "energy"},
        )
        per_phase = self.house_kw * 1000 / 230 / 3 + self.charger_a
        for entity_id in CURRENTS:
            self.hass.states.async_set(
                entity_id,
                str(per_phase.quantize(Decimal("0.01"))),
                {"unit_of_measurement": "A", "device_class": "current"},
            )


def _planner_entry(hass: HomeAssistant, **extra: Any) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={
            CONF_PROTOCOL: PROTOCOL_PLANNER,
            CONF_POWER_ENTITY: POWER,
            CONF_ENERGY_ENTITIES: [ENERGY],
            CONF_CURRENT_ENTITIES: CURRENTS,
            CONF_PRICE_MODE: PRICE_SENSOR,
            CONF_PRICE_ENTITY: PRICE,
            CONF_FUSE: 25,
            CONF_PHASES: 3,
            CONF_CAPACITY: True,
            CONF_CAPACITY_PRICE: 53.26,
            CONF_CAPACITY_FLOOR: 2.5,
        }
        | extra,
    )
    entry.add_to_hass(hass)
    return entry


def _entities(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, str]:
    return {
        e.unique_id.removeprefix(f"planner_{entry.entry_id}_"): e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }


async def _settle() -> None:
    """Let triggered automations run their next steps.

    Not ``async_block_till_done``: the capacity guard's run waits for the next
    quarter-hour, which only comes when the test moves the clock.
    """
    for _ in range(30):
        await asyncio.sleep(0)


async def _step(hass: HomeAssistant, freezer: FrozenDateTimeFactory, meter: Meter, seconds: float) -> None:
    freezer.tick(timedelta(seconds=seconds))
    meter.write()
    async_fire_time_changed(hass)
    await _settle()


@pytest.mark.usefixtures("brussels")
async def test_config_flow(hass: HomeAssistant) -> None:
    """The menu offers the planner; meter, prices and limits make an entry."""
    meter = Meter(hass)
    meter.write()
    _set_price(hass, tomorrow=False)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert "planner" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "planner"})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"name": "Home"})
    assert result["errors"] == {"base": "meter_required"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            "name": "Home",
            CONF_POWER_ENTITY: POWER,
            CONF_ENERGY_ENTITIES: [ENERGY],
            CONF_CURRENT_ENTITIES: CURRENTS,
        },
    )
    assert result["step_id"] == "planner_prices"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PRICE_MODE: PRICE_SCHEDULE, CONF_SCHEDULE: "mon-fri 25:00-26:00"}
    )
    assert result["errors"] == {CONF_SCHEDULE: "invalid_schedule"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PRICE_MODE: PRICE_SENSOR, CONF_PRICE_ENTITY: PRICE}
    )
    assert result["step_id"] == "planner_limits"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_FUSE: 25,
            CONF_PHASES: "3",
            CONF_CAPACITY: True,
            CONF_CAPACITY_PRICE: 53.26,
            CONF_CAPACITY_FLOOR: 2.5,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Home"
    assert result["data"][CONF_PHASES] == 3
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.state is ConfigEntryState.LOADED
    keys = set(_entities(hass, entry))
    assert {
        "peak_period",
        "charge_now",
        "recommended_current",
        "month_peak",
        "headroom",
        "available_current_l3",
    } <= keys
    # Options: prices and limits in one form.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "planner_options"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("brussels")
async def test_actions_validation(hass: HomeAssistant) -> None:
    """Bad requests are translated validation errors."""
    Meter(hass).write()
    _set_price(hass, tomorrow=False)
    entry = _planner_entry(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    tomorrow = (dt_util.now() + timedelta(days=1)).isoformat()
    cases = [
        (
            {
                "config_entry_id": entry.entry_id,
                "energy_kwh": 10,
                "deadline": (dt_util.now() - timedelta(hours=1)).isoformat(),
            },
            "deadline_in_past",
        ),
        (
            {"config_entry_id": entry.entry_id, "energy_kwh": 90, "battery_kwh": 60, "deadline": tomorrow},
            "impossible_energy",
        ),
        (
            {
                "config_entry_id": entry.entry_id,
                "soc_entity": "sensor.nope",
                "target_soc": 80,
                "battery_kwh": 60,
                "deadline": tomorrow,
            },
            "unknown_entity",
        ),
        ({"config_entry_id": "not-an-entry", "energy_kwh": 10, "deadline": tomorrow}, "unknown_planner"),
        ({"config_entry_id": entry.entry_id, "deadline": tomorrow}, "energy_missing"),
        (
            {
                "config_entry_id": entry.entry_id,
                "energy_kwh": 10,
                "min_current": 10,
                "max_current": 8,
                "deadline": tomorrow,
            },
            "invalid_current",
        ),
    ]
    for data, key in cases:
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(DOMAIN, "plan_charge", data, blocking=True, return_response=True)
        assert err.value.translation_key == key
    assert await hass.config_entries.async_unload(entry.entry_id)


def _install_blueprints(hass: HomeAssistant, tmp_path: Path) -> None:
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints" / "automation" / "smartmeter"
    target.mkdir(parents=True)
    for path in (ROOT / "blueprints" / "automation" / "smartmeter").glob("*.yaml"):
        shutil.copy(path, target / path.name)


@pytest.mark.usefixtures("brussels")
async def test_full_day_with_blueprints(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, tmp_path: Path
) -> None:
    """Plan at noon for 07:00 tomorrow; tomorrow's prices arrive; the blueprints follow the plan all night."""
    _install_blueprints(hass, tmp_path)
    meter = Meter(hass)
    meter.write()
    _set_price(hass, tomorrow=False)
    entry = _planner_entry(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    ids = _entities(hass, entry)
    switch_on = async_mock_service(hass, "switch", "turn_on")
    switch_off = async_mock_service(hass, "switch", "turn_off")
    set_value = async_mock_service(hass, "number", "set_value")
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: [
                {
                    "alias": "EV from plan",
                    "use_blueprint": {
                        "path": "smartmeter/ev_charge_from_plan.yaml",
                        "input": {"charge_now": ids["charge_now"], "charger": "switch.ev_charger"},
                    },
                },
                {
                    "alias": "EV current",
                    "use_blueprint": {
                        "path": "smartmeter/dynamic_charging_current.yaml",
                        "input": {
                            "recommended_current": ids["recommended_current"],
                            "current_number": "number.ev_current",
                        },
                    },
                },
                {
                    "alias": "Capacity guard",
                    "use_blueprint": {
                        "path": "smartmeter/capacity_guard.yaml",
                        "input": {"planner": entry.entry_id, "load": "switch.boiler"},
                    },
                },
            ]
        },
    )
    await hass.async_block_till_done()
    hass.states.async_set("switch.boiler", "on")
    warnings = async_capture_events(hass, EVENT_QUARTER_PEAK)
    peaks = async_capture_events(hass, EVENT_PEAK_PERIOD)
    deadline = dt_util.start_of_local_day() + timedelta(days=1, hours=12)  # a full day from now
    response = await hass.services.async_call(
        DOMAIN,
        "plan_charge",
        {
            "config_entry_id": entry.entry_id,
            "energy_kwh": 15,
            "efficiency": 1,
            "deadline": deadline.isoformat(),
            "phases": 3,
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None
    # Only today's prices are known: the plan fits what is known (before midnight).
    first_plan = response
    assert all(
        dt_util.parse_datetime(s["end"]) <= dt_util.start_of_local_day() + timedelta(days=1)
        for s in first_plan["slots"]
    )
    assert sum(s["energy_kwh"] for s in first_plan["slots"]) == pytest.approx(first_plan["energy_kwh"])
    # Tomorrow's prices arrive a minute later: the plan is redone and moves to the cheap night hours.
    freezer.tick(timedelta(minutes=1))
    _set_price(hass, tomorrow=True)
    await _settle()
    plan = hass.states.get(ids["recommended_current"]).attributes
    slots = plan["plan_slots"]
    assert slots, plan
    night = [dt_util.parse_datetime(s["start"]) for s in slots]
    assert all(1 <= dt_util.as_local(t).hour < 5 for t in night), night
    # At least what was asked (less the minute already charged), at most one 6 A quarter more:
    # whole amperes, and a low peak (many quarters at 6 A) beats a few at 16 A with the capacity tariff.
    assert (
        Decimal(15) - Decimal("0.2") <= Decimal(str(plan["plan_energy_kwh"])) <= Decimal(15) + Decimal("1.05")
    )
    # Run the night in 5-minute steps: the charger follows the plan through the blueprints.
    charged = Decimal(0)
    saw_lowered = False
    step = timedelta(minutes=5)
    while dt_util.now() < deadline:
        local = dt_util.as_local(dt_util.now())
        if local.hour == 3 and 5 <= local.minute < 30:
            meter.house_kw = Decimal("12")  # the oven, the heat pump and the dryer at once
        else:
            meter.house_kw = Decimal("0.8")
        planned = [
            s["current"]
            for s in hass.states.get(ids["recommended_current"]).attributes.get("plan_slots") or []
            if dt_util.parse_datetime(s["start"]) <= dt_util.now() + step < dt_util.parse_datetime(s["end"])
        ]
        await _step(hass, freezer, meter, step.total_seconds())
        charge_now = hass.states.get(ids["charge_now"]).state
        recommended = int(hass.states.get(ids["recommended_current"]).state)
        if charge_now == "on":
            assert 6 <= recommended <= 16
            available = [Decimal(hass.states.get(ids[f"available_current_l{p}"]).state) for p in (1, 2, 3)]
            assert all(a >= 0 for a in available)
        if meter.house_kw > 5 and planned:
            saw_lowered |= recommended < max(planned)
        meter.charger_a = recommended
        charged += Decimal(recommended) * 230 * 3 / 1000 * Decimal(step.total_seconds()) / 3600
    assert saw_lowered, "the current was not lowered under the house load"
    # Paused quarters were planned again: everything asked was delivered by the deadline.
    assert charged >= Decimal("14.8")
    assert any("switch.ev_charger" in _targets(c) for c in switch_on)
    assert any("switch.ev_charger" in _targets(c) for c in switch_off)
    assert set_value and all(6 <= c.data["value"] <= 16 for c in set_value)
    # The 12 kW quarter was projected over the month peak: the guard paused the boiler.
    assert warnings
    assert any("switch.boiler" in _targets(c) for c in switch_off)
    # Peak periods (top quarter of the day's prices) started and ended.
    assert {e.data["peak"] for e in peaks} == {True, False}
    # The deadline passed: no plan, nothing to charge.
    assert hass.states.get(ids["charge_now"]).state == "off"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("brussels")
async def test_cancel_and_restart_keeps_plan(hass: HomeAssistant) -> None:
    """A plan survives a restart of the entry; cancel_plan drops it."""
    Meter(hass).write()
    _set_price(hass, tomorrow=True)
    entry = _planner_entry(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    deadline = (dt_util.start_of_local_day() + timedelta(days=1, hours=7)).isoformat()
    await hass.services.async_call(
        DOMAIN,
        "plan_charge",
        {"config_entry_id": entry.entry_id, "energy_kwh": 5, "deadline": deadline},
        blocking=True,
    )
    ids = _entities(hass, entry)
    assert hass.states.get(ids["recommended_current"]).attributes.get("plan_slots")
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(ids["recommended_current"]).attributes.get("plan_slots")
    await hass.services.async_call(DOMAIN, "cancel_plan", {"config_entry_id": entry.entry_id}, blocking=True)
    await hass.async_block_till_done()
    assert not hass.states.get(ids["recommended_current"]).attributes.get("plan_slots")
    assert hass.states.get(ids["charge_now"]).state == "off"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("brussels")
async def test_schedule_peak_events(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """A time-of-use schedule drives the peak binary sensor, next peak/off-peak and the events."""
    meter = Meter(hass)
    meter.write()
    entry = _planner_entry(
        hass, **{CONF_PRICE_MODE: PRICE_SCHEDULE, CONF_SCHEDULE: "mon-fri 07:00-22:00 0.35; offpeak 0.22"}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    ids = _entities(hass, entry)
    events: list[Event] = async_capture_events(hass, EVENT_PEAK_PERIOD)
    assert hass.states.get(ids["peak_period"]).state == "on"
    assert Decimal(hass.states.get(ids["current_price"]).state) == Decimal("0.35")
    next_offpeak = dt_util.parse_datetime(hass.states.get(ids["next_offpeak"]).state)
    assert dt_util.as_local(next_offpeak).hour == 22
    freezer.move_to(dt_util.now().replace(hour=22, minute=0, second=5))
    meter.write()
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass.states.get(ids["peak_period"]).state == "off"
    assert [e.data["peak"] for e in events] == [False]
    assert await hass.config_entries.async_unload(entry.entry_id)


def _targets(call: ServiceCall) -> list[str]:
    """The entity IDs a service call targets."""
    found = call.data.get("entity_id", [])
    return [found] if isinstance(found, str) else list(found)


@pytest.mark.usefixtures("brussels")
async def test_from_smartmeter_device_and_diagnostics(hass: HomeAssistant) -> None:
    """Picking a smartmeter meter device finds its sensors (per-phase currents enabled); diagnostics work."""
    from homeassistant.helpers import device_registry as dr

    from custom_components.smartmeter.diagnostics import async_get_config_entry_diagnostics

    # The meter's entry, as if loaded (its port is not the point here).
    meter_entry = MockConfigEntry(
        domain=DOMAIN, data={CONF_PROTOCOL: "dsmr", "url": "/dev/null"}, state=ConfigEntryState.LOADED
    )
    meter_entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=meter_entry.entry_id, identifiers={(DOMAIN, "E0043007")}, name="Electricity meter"
    )
    registry = er.async_get(hass)
    created = {}
    for key in (
        "power_import",
        "energy_import_tariff_1",
        "energy_import_tariff_2",
        "current_l1",
        "current_l2",
        "current_l3",
        "active_tariff",
    ):
        disabled = er.RegistryEntryDisabler.INTEGRATION if key.startswith("current") else None
        created[key] = registry.async_get_or_create(
            "sensor",
            DOMAIN,
            f"E0043007_{key}",
            device_id=device.id,
            config_entry=meter_entry,
            disabled_by=disabled,
        ).entity_id
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "planner"})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"name": "Home", "meter_device": device.id}
    )
    assert result["step_id"] == "planner_prices"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PRICE_MODE: "tariff"})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_PHASES: "3",
            CONF_FUSE: 25,
            CONF_CAPACITY: False,
            CONF_CAPACITY_PRICE: 0,
            CONF_CAPACITY_FLOOR: 2.5,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    data = result["data"]
    assert data[CONF_POWER_ENTITY] == created["power_import"]
    assert data[CONF_ENERGY_ENTITIES] == [
        created["energy_import_tariff_1"],
        created["energy_import_tariff_2"],
    ]
    assert data[CONF_CURRENT_ENTITIES] == [created[f"current_l{p}"] for p in (1, 2, 3)]
    assert data["tariff_entity"] == created["active_tariff"]
    assert all(registry.async_get(created[f"current_l{p}"]).disabled_by is None for p in (1, 2, 3))
    await hass.async_block_till_done()
    planner = result["result"]
    # The tariff register drives the peak period (NL: 2 = normal/day tariff).
    hass.states.async_set(created["active_tariff"], "0002")
    await hass.async_block_till_done()
    diagnostics = await async_get_config_entry_diagnostics(hass, planner)
    assert diagnostics["peak"] is True
    assert "tracker" in diagnostics
    assert await hass.config_entries.async_unload(planner.entry_id)


@pytest.mark.usefixtures("brussels")
async def test_fuse_lowers_current_live(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """The recommended current follows the plan and drops when the house would trip the fuse."""
    meter = Meter(hass)
    meter.write()
    entry = _planner_entry(hass, **{CONF_CAPACITY: False, CONF_PRICE_MODE: "none"})
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    ids = _entities(hass, entry)
    deadline = (dt_util.now() + timedelta(hours=4)).isoformat()
    response = await hass.services.async_call(
        DOMAIN,
        "plan_charge",
        {
            "config_entry_id": entry.entry_id,
            "energy_kwh": 10,
            "deadline": deadline,
            "phases": 3,
            "efficiency": 1,
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None and response["complete"]
    # No prices: as soon as possible, at full current.
    assert response["slots"][0]["current"] == 16
    assert hass.states.get(ids["recommended_current"]).state == "16"
    assert hass.states.get(ids["charge_now"]).state == "on"
    # The charger draws 16 A; the oven adds 14 A on L2: 30 A measured on a 25 A fuse.
    meter.charger_a = 16
    meter.write()
    hass.states.async_set(CURRENTS[1], "30.0", {"unit_of_measurement": "A", "device_class": "current"})
    freezer.tick(timedelta(seconds=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass.states.get(ids["recommended_current"]).state == "11"  # 25 - (30 - 16)
    assert Decimal(hass.states.get(ids["available_current_l2"]).state) == Decimal(0)
    # Only 4 A left for the charger: below its 6 A minimum, it pauses.
    hass.states.async_set(CURRENTS[1], "37.0", {"unit_of_measurement": "A", "device_class": "current"})
    freezer.tick(timedelta(seconds=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass.states.get(ids["recommended_current"]).state == "0"
    assert hass.states.get(ids["charge_now"]).state == "off"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("brussels")
async def test_import_cap_lowers_current_live(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """With a fixed import cap, the charger gets what the house leaves under it."""
    meter = Meter(hass)
    meter.write()
    entry = _planner_entry(hass, **{CONF_CAPACITY: False, CONF_PRICE_MODE: "none", "max_import_kw": 9.0})
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    ids = _entities(hass, entry)
    deadline = (dt_util.now() + timedelta(hours=6)).isoformat()
    await hass.services.async_call(
        DOMAIN,
        "plan_charge",
        {"config_entry_id": entry.entry_id, "energy_kwh": 10, "deadline": deadline, "phases": 3},
        blocking=True,
    )
    # The plan keeps 0.8 kW house + charger under 9 kW: 11 A (7.59 kW).
    assert hass.states.get(ids["recommended_current"]).state == "11"
    # The house jumps to 4 kW while the charger draws 11 A: 5 kW left, 7 A.
    meter.charger_a = 11
    meter.house_kw = Decimal(4)
    meter.write()
    freezer.tick(timedelta(seconds=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass.states.get(ids["recommended_current"]).state == "7"
    assert await hass.config_entries.async_unload(entry.entry_id)
