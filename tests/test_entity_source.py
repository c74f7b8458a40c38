"""The entity source: existing meter entities (ZHA, Shelly, ESPHome, ...) followed as a smartmeter meter."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smartmeter.core.models import Medium
from custom_components.smartmeter.entity_source import EntitySource, FollowedEntity, describe, meter_id_for

ENERGY_ATTRS = {"device_class": "energy", "unit_of_measurement": "kWh", "state_class": "total_increasing"}
POWER_ATTRS = {"device_class": "power", "unit_of_measurement": "W", "state_class": "measurement"}
GAS_ATTRS = {"device_class": "gas", "unit_of_measurement": "m³", "state_class": "total_increasing"}


def _zha_meter(hass: HomeAssistant) -> tuple[str, str, str]:
    """A ZHA smart energy metering device with its summation and demand sensors (as ZHA registers them)."""
    entry = MockConfigEntry(domain="zha")
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={("zha", "00:0d:6f:00:0a:bc:de:f0")},
        manufacturer="Develco Products A/S",
        model="ZHEMI101",
    )
    registry = er.async_get(hass)
    summation = registry.async_get_or_create(
        "sensor",
        "zha",
        "00:0d:6f:00:0a:bc:de:f0-2-1794",
        suggested_object_id="frient_summation_delivered",
        device_id=device.id,
        config_entry=entry,
    ).entity_id
    demand = registry.async_get_or_create(
        "sensor",
        "zha",
        "00:0d:6f:00:0a:bc:de:f0-2-1794-instantaneous_demand",
        suggested_object_id="frient_instantaneous_demand",
        device_id=device.id,
        config_entry=entry,
    ).entity_id
    return summation, demand, device.id


async def _next(frames, timeout: float = 2.0):  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(anext(frames), timeout)


async def test_describe() -> None:
    """Which states are meter values, and where they land."""
    from homeassistant.core import State

    assert describe(State("sensor.a", "1", ENERGY_ATTRS)) == ("energy_import_total", Medium.ELECTRICITY)
    assert describe(State("sensor.a", "1", {**ENERGY_ATTRS, "unit_of_measurement": "Wh"})) == (
        "energy_import_total",
        Medium.ELECTRICITY,
    )
    assert describe(State("sensor.a", "1", GAS_ATTRS)) == ("gas", Medium.GAS)
    assert describe(State("sensor.a", "1", {"device_class": "water", "unit_of_measurement": "L"})) == (
        "water",
        Medium.WATER,
    )
    assert describe(State("sensor.a", "1", POWER_ATTRS)) == ("power_import", Medium.ELECTRICITY)
    assert (
        describe(State("sensor.a", "1", {"device_class": "temperature", "unit_of_measurement": "°C"})) is None
    )
    assert describe(State("sensor.a", "1", {"unit_of_measurement": "kWh"})) is None


async def test_follows_a_zha_meter(hass: HomeAssistant) -> None:
    """One meter per device: the summation and the demand of a ZHA meter arrive in one frame, exact."""
    summation, demand, device_id = _zha_meter(hass)
    hass.states.async_set(summation, "1234.567", ENERGY_ATTRS)
    hass.states.async_set(demand, "312", POWER_ATTRS)
    meter = meter_id_for(hass, summation)
    assert meter == meter_id_for(hass, demand) == f"device_{device_id}"
    source = EntitySource(
        hass,
        [
            FollowedEntity(summation, meter, "energy_import_total", Medium.ELECTRICITY),
            FollowedEntity(demand, meter, "power_import", Medium.ELECTRICITY),
        ],
    )
    frames = source.frames()
    first = await _next(frames)
    (main,) = first.meters
    assert main.id == meter
    assert main.medium is Medium.ELECTRICITY
    assert main.values["energy_import_total"].value == Decimal("1234.567")
    assert main.values["energy_import_total"].unit == "kWh"
    assert main.values["power_import"].value == Decimal(312)
    assert main.values["power_import"].unit == "W"
    assert source.connected

    hass.states.async_set(summation, "1234.600", ENERGY_ATTRS)
    changed = await _next(frames)
    assert changed.meters[0].values["energy_import_total"].value == Decimal("1234.600")

    # Not a number: no frame, counted.
    hass.states.async_set(summation, "unavailable", ENERGY_ATTRS)
    hass.states.async_set(summation, "nan", ENERGY_ATTRS)
    hass.states.async_set(summation, "garbage", ENERGY_ATTRS)
    hass.states.async_set(demand, "400", POWER_ATTRS)
    after = await _next(frames)
    assert "energy_import_total" not in after.meters[0].values  # the summation has no number now
    assert after.meters[0].values["power_import"].value == Decimal(400)
    assert source.not_numeric == {summation: 3}
    assert source.stats.frames_undecodable == 3
    await source.close()
    await source.close()  # idempotent


async def test_entity_without_device_is_its_own_meter(hass: HomeAssistant) -> None:
    """A template or utility-meter sensor without a device: a meter keyed by the entity."""
    hass.states.async_set(
        "sensor.garden_water", "12.5", {"device_class": "water", "unit_of_measurement": "m³"}
    )
    meter = meter_id_for(hass, "sensor.garden_water")
    assert meter == "entity_sensor.garden_water"
    source = EntitySource(hass, [FollowedEntity("sensor.garden_water", meter, "water", Medium.WATER)])
    frames = source.frames()
    frame = await _next(frames)
    assert frame.meters[0].medium is Medium.WATER
    assert frame.meters[0].values["water"].value == Decimal("12.5")
    hass.states.async_remove("sensor.garden_water")
    await hass.async_block_till_done()
    assert not source.connected
    assert source.stats.last_error == "sensor.garden_water is removed"
    await source.close()
