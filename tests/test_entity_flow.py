"""ZHA meters and any existing meter sensor, added through the flow and followed as smartmeter meters."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from unittest.mock import patch

import pytest

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from custom_components.smartmeter.const import (
    CONF_ENTITIES,
    CONF_LIVE,
    CONF_PROTOCOL,
    DOMAIN,
    PROTOCOL_ENTITY,
)
from custom_components.smartmeter.coordinator import SmartMeterCoordinator
from tests.common import state_of, wait_for
from tests.faults import FakeClock
from tests.test_entity_source import ENERGY_ATTRS, POWER_ATTRS, _zha_meter


async def _start(hass: HomeAssistant, step: str) -> dict:  # type: ignore[type-arg]
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert {"zha", "entity"} <= set(result["menu_options"])
    return await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": step})


def _ours(entity_registry: er.EntityRegistry, meter: str, key: str) -> str:
    entity_id = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{meter}_{key}")
    assert entity_id is not None, key
    return entity_id


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Readings stamped as the test ticks (state changes here come milliseconds apart)."""
    fake = FakeClock(dt_util.utcnow())
    with patch.object(SmartMeterCoordinator, "clock", staticmethod(fake)):
        yield fake


async def test_zha_meter_through_the_flow(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, clock: FakeClock
) -> None:
    """A ZHA summation sensor is offered, picked with its demand sensor, and followed behind the guard."""
    summation, demand, device_id = _zha_meter(hass)
    hass.states.async_set(summation, "1234.567", ENERGY_ATTRS)
    hass.states.async_set(demand, "312", POWER_ATTRS)
    result = await _start(hass, "zha")
    assert result["type"] is FlowResultType.FORM
    options = result["data_schema"].schema[CONF_ENTITIES].config["options"]
    assert [option["value"] for option in options] == [summation]  # the demand is no meter by itself
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_ENTITIES: [summation]})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_PROTOCOL: PROTOCOL_ENTITY, CONF_ENTITIES: sorted([summation, demand])}
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    hass.config_entries.async_update_entry(entry, options={CONF_LIVE: True})
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    meter = f"device_{device_id}"
    energy = _ours(entity_registry, meter, "energy_import_total")
    power = _ours(entity_registry, meter, "power_import")
    assert state_of(hass, energy).state == "1234.567"
    assert state_of(hass, power).state == "312"
    clock.tick(60)  # a ZHA meter reports its summation every minute or so
    hass.states.async_set(summation, "1234.600", ENERGY_ATTRS)
    await wait_for(lambda: state_of(hass, energy).state == "1234.600")
    # A zero from a rejoining Zigbee device is no new meter cycle: the guard rejects it.
    clock.tick(60)
    hass.states.async_set(summation, "0", ENERGY_ATTRS)
    clock.tick(60)
    hass.states.async_set(summation, "1234.601", ENERGY_ATTRS)
    await wait_for(lambda: state_of(hass, energy).state == "1234.601")
    assert entry.runtime_data.guards.rejected
    # The followed sensor goes unavailable: so does ours, without a wrong value.
    hass.states.async_set(summation, "unavailable", ENERGY_ATTRS)
    hass.states.async_set(demand, "unavailable", POWER_ATTRS)
    await wait_for(lambda: state_of(hass, energy).state == "unavailable")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_no_zha_meter(hass: HomeAssistant) -> None:
    """Without ZHA metering devices the step says so."""
    result = await _start(hass, "zha")
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_zha_meters"


async def test_any_sensor_through_the_flow(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> None:
    """A water counter without a device (template, utility meter) becomes a water meter; a non-meter is refused."""
    hass.states.async_set(
        "sensor.garden_water",
        "12.5",
        {"device_class": "water", "unit_of_measurement": "m³", "state_class": "total_increasing"},
    )
    hass.states.async_set(
        "sensor.outside", "3.5", {"device_class": "temperature", "unit_of_measurement": "°C"}
    )
    result = await _start(hass, "entity")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ENTITIES: ["sensor.garden_water", "sensor.outside"]}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_ENTITIES: "not_a_meter_entity"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ENTITIES: ["sensor.garden_water"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    water = _ours(entity_registry, "entity_sensor.garden_water", "water")
    state = state_of(hass, water)
    assert Decimal(state.state) == Decimal("12.5")
    assert state.attributes["unit_of_measurement"] == "m³"
    # The same selection cannot be added twice.
    result = await _start(hass, "entity")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ENTITIES: ["sensor.garden_water"]}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.usefixtures("entity_registry")
async def test_entity_gone_at_setup(hass: HomeAssistant) -> None:
    """A chosen entity that no longer exists is skipped with a warning; the entry still loads."""
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Meters from entities",
        unique_id="entity:sensor.gone",
        data={CONF_PROTOCOL: PROTOCOL_ENTITY, CONF_ENTITIES: ["sensor.gone"]},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
