"""Config and options flow steps of the planner entry (mixed into the integration's flows).

Step 1 picks the meter: a smartmeter electricity meter (its power, energy,
per-phase current, tariff and capacity registers are found for you) or any
power and energy sensors. Step 2 the price source, step 3 the limits.
"""

from __future__ import annotations

from typing import Any, cast

import voluptuous as vol

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.selector import (
    BooleanSelector,
    DeviceSelector,
    DeviceSelectorConfig,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
    TextSelectorConfig,
)

from .const import (
    CONF_CAPACITY,
    CONF_CAPACITY_FLOOR,
    CONF_CAPACITY_PRICE,
    CONF_CURRENT_ENTITIES,
    CONF_DEMAND_ENTITY,
    CONF_ENERGY_ENTITIES,
    CONF_EXPORT_ENERGY_ENTITIES,
    CONF_EXPORT_POWER_ENTITY,
    CONF_FUSE,
    CONF_MAX_IMPORT,
    CONF_MONTH_PEAK_ENTITY,
    CONF_PEAK_CODES,
    CONF_PHASES,
    CONF_POWER_ENTITY,
    CONF_PRICE_ENTITY,
    CONF_PRICE_MODE,
    CONF_PROTOCOL,
    CONF_SCHEDULE,
    CONF_TARIFF_ENTITY,
    DEFAULT_CAPACITY_FLOOR,
    DEFAULT_CAPACITY_PRICE,
    DEFAULT_PHASES,
    DOMAIN,
    PRICE_NONE,
    PRICE_SCHEDULE,
    PRICE_SENSOR,
    PRICE_TARIFF,
    PROTOCOL_PLANNER,
)
from .core.planner.prices import TouSchedule, detect_format

CONF_NAME = "name"
CONF_METER_DEVICE = "meter_device"
PRICE_MODES = [PRICE_NONE, PRICE_SCHEDULE, PRICE_SENSOR, PRICE_TARIFF]
# A smartmeter meter's sensors by register key (unique ID "<meter>_<key>").
_DEVICE_KEYS: dict[str, tuple[str, ...]] = {
    CONF_POWER_ENTITY: ("power_import",),
    CONF_EXPORT_POWER_ENTITY: ("power_export",),
    CONF_DEMAND_ENTITY: ("current_average_demand",),
    CONF_MONTH_PEAK_ENTITY: ("maximum_demand_month",),
    CONF_TARIFF_ENTITY: ("active_tariff",),
}
_DEVICE_LISTS: dict[str, tuple[str, ...]] = {
    CONF_ENERGY_ENTITIES: ("energy_import_total", "energy_import_tariff_1", "energy_import_tariff_2"),
    CONF_EXPORT_ENERGY_ENTITIES: ("energy_export_total", "energy_export_tariff_1", "energy_export_tariff_2"),
    CONF_CURRENT_ENTITIES: ("current_l1", "current_l2", "current_l3"),
}


def _sensor(device_class: str | None = None, *, multiple: bool = False) -> EntitySelector:
    config = EntitySelectorConfig(domain="sensor", multiple=multiple)
    if device_class:
        config = EntitySelectorConfig(domain="sensor", device_class=device_class, multiple=multiple)
    return EntitySelector(config)


def _box(minimum: float, maximum: float, unit: str, step: float = 1) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=minimum, max=maximum, step=step, unit_of_measurement=unit, mode=NumberSelectorMode.BOX
        )
    )


def meter_schema() -> vol.Schema:
    """Step 1: the meter."""
    return vol.Schema(
        {
            vol.Required(CONF_NAME, default="Grid connection"): TextSelector(),
            vol.Optional(CONF_METER_DEVICE): DeviceSelector(DeviceSelectorConfig(integration=DOMAIN)),
            vol.Optional(CONF_POWER_ENTITY): _sensor("power"),
            vol.Optional(CONF_EXPORT_POWER_ENTITY): _sensor("power"),
            vol.Optional(CONF_ENERGY_ENTITIES): _sensor("energy", multiple=True),
            vol.Optional(CONF_EXPORT_ENERGY_ENTITIES): _sensor("energy", multiple=True),
            vol.Optional(CONF_CURRENT_ENTITIES): _sensor("current", multiple=True),
            vol.Optional(CONF_TARIFF_ENTITY): _sensor(),
        }
    )


def prices_schema() -> vol.Schema:
    """Step 2 (and options): where prices and peak periods come from."""
    return vol.Schema(
        {
            vol.Required(CONF_PRICE_MODE, default=PRICE_NONE): SelectSelector(
                SelectSelectorConfig(options=PRICE_MODES, translation_key=CONF_PRICE_MODE)
            ),
            vol.Optional(CONF_PRICE_ENTITY): EntitySelector(EntitySelectorConfig(domain=["sensor", "event"])),
            vol.Optional(CONF_SCHEDULE): TextSelector(TextSelectorConfig(multiline=True)),
            vol.Optional(CONF_PEAK_CODES): TextSelector(),
        }
    )


def limits_schema() -> vol.Schema:
    """Step 3 (and options): the connection's limits."""
    return vol.Schema(
        {
            vol.Optional(CONF_FUSE): _box(6, 250, "A"),
            vol.Required(CONF_PHASES, default=DEFAULT_PHASES): SelectSelector(
                SelectSelectorConfig(options=["1", "3"])
            ),
            vol.Optional(CONF_MAX_IMPORT): _box(0.5, 500, "kW", 0.1),
            vol.Required(CONF_CAPACITY, default=False): BooleanSelector(),
            vol.Required(CONF_CAPACITY_PRICE, default=DEFAULT_CAPACITY_PRICE): _box(
                0, 1000, "/kW/year", 0.01
            ),
            vol.Required(CONF_CAPACITY_FLOOR, default=DEFAULT_CAPACITY_FLOOR): _box(0, 50, "kW", 0.1),
        }
    )


def from_device(hass: Any, device_id: str) -> dict[str, Any]:
    """The followed entities of a smartmeter meter device; its per-phase currents are enabled."""
    registry = er.async_get(hass)
    by_key: dict[str, str] = {}
    for entry in er.async_entries_for_device(registry, device_id, include_disabled_entities=True):
        if entry.platform == DOMAIN and entry.domain == "sensor" and entry.unique_id:
            by_key[entry.unique_id.rsplit("_", 1)[-1]] = entry.entity_id
            for keys in (*_DEVICE_KEYS.values(), *_DEVICE_LISTS.values()):
                for key in keys:
                    if entry.unique_id.endswith(f"_{key}"):
                        by_key[key] = entry.entity_id
    found: dict[str, Any] = {}
    for option, keys in _DEVICE_KEYS.items():
        for key in keys:
            if key in by_key:
                found[option] = by_key[key]
    for option, keys in _DEVICE_LISTS.items():
        entities = [by_key[key] for key in keys if key in by_key]
        if option in (CONF_ENERGY_ENTITIES, CONF_EXPORT_ENERGY_ENTITIES):
            total = by_key.get(keys[0])
            entities = [total] if total else entities
        if entities:
            found[option] = entities
    for entity_id in found.get(CONF_CURRENT_ENTITIES, []):
        current = registry.async_get(entity_id)
        if current is not None and current.disabled_by is er.RegistryEntryDisabler.INTEGRATION:
            registry.async_update_entity(entity_id, disabled_by=None)
    return found


def check_prices(hass: Any, data: dict[str, Any], errors: dict[str, str]) -> None:
    """Validate the price step."""
    mode = data.get(CONF_PRICE_MODE, PRICE_NONE)
    if mode == PRICE_SENSOR:
        state = hass.states.get(data.get(CONF_PRICE_ENTITY) or "")
        if state is None:
            errors[CONF_PRICE_ENTITY] = "price_entity_required"
        elif detect_format(state.attributes) is None:
            try:
                float(state.state)
            except ValueError:
                errors[CONF_PRICE_ENTITY] = "price_entity_unusable"
    elif mode == PRICE_SCHEDULE:
        try:
            TouSchedule.parse(data.get(CONF_SCHEDULE) or "", hass.config.time_zone)
        except ValueError:
            errors[CONF_SCHEDULE] = "invalid_schedule"
    elif mode == PRICE_TARIFF and not data.get(CONF_TARIFF_ENTITY):
        errors[CONF_PRICE_MODE] = "tariff_entity_required"
    codes = data.get(CONF_PEAK_CODES)
    if codes:
        try:
            data[CONF_PEAK_CODES] = [int(c) for c in str(codes).replace(",", " ").split()]
        except ValueError:
            errors[CONF_PEAK_CODES] = "invalid_peak_codes"


def clean_limits(data: dict[str, Any]) -> dict[str, Any]:
    """Limits as stored (phases as an int)."""
    return data | {CONF_PHASES: int(data.get(CONF_PHASES, DEFAULT_PHASES))}


class PlannerFlowMixin:
    """The planner's config flow steps (mixed into the integration's ConfigFlow)."""

    _planner: dict[str, Any]

    async def async_step_planner(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Which meter: a smartmeter meter device or any power and energy sensors."""
        flow = cast(ConfigFlow, self)
        errors: dict[str, str] = {}
        if user_input is not None:
            data = dict(user_input)
            device = data.pop(CONF_METER_DEVICE, None)
            if device:
                data = from_device(flow.hass, device) | {k: v for k, v in data.items() if v}
            if not data.get(CONF_POWER_ENTITY) and not data.get(CONF_ENERGY_ENTITIES):
                errors["base"] = "meter_required"
            else:
                self._planner = {CONF_PROTOCOL: PROTOCOL_PLANNER} | data
                return await self.async_step_planner_prices()
        return flow.async_show_form(
            step_id="planner",
            data_schema=flow.add_suggested_values_to_schema(meter_schema(), user_input or {}),
            errors=errors,
        )

    async def async_step_planner_prices(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Where prices and peak periods come from."""
        flow = cast(ConfigFlow, self)
        errors: dict[str, str] = {}
        if user_input is not None:
            data = self._planner | dict(user_input)
            check_prices(flow.hass, data, errors)
            if not errors:
                self._planner = data
                return await self.async_step_planner_limits()
        return flow.async_show_form(
            step_id="planner_prices",
            data_schema=flow.add_suggested_values_to_schema(prices_schema(), user_input or {}),
            errors=errors,
        )

    async def async_step_planner_limits(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The main fuse, an import cap, the capacity tariff."""
        flow = cast(ConfigFlow, self)
        if user_input is not None:
            data = self._planner | clean_limits(dict(user_input))
            name = data.pop(CONF_NAME, "Grid connection")
            return flow.async_create_entry(title=name, data=data)
        return flow.async_show_form(step_id="planner_limits", data_schema=limits_schema())


async def async_planner_options(flow: OptionsFlow, user_input: dict[str, Any] | None) -> ConfigFlowResult:
    """Options of a planner: the price source and the limits, in one form."""
    errors: dict[str, str] = {}
    entry = flow.config_entry
    current = entry.data | entry.options
    if user_input is not None:
        data = dict(user_input)
        check_prices(flow.hass, current | data, errors)
        if CONF_PEAK_CODES in data and not errors:
            codes = str(data[CONF_PEAK_CODES]).replace(",", " ").split()
            data[CONF_PEAK_CODES] = [int(c) for c in codes]
        if not errors:
            return flow.async_create_entry(data=clean_limits(data))
    schema = vol.Schema({**prices_schema().schema, **limits_schema().schema})
    suggested = {k: v for k, v in current.items() if k in schema.schema or vol.Optional(k) in schema.schema}
    if isinstance(suggested.get(CONF_PEAK_CODES), list):
        suggested[CONF_PEAK_CODES] = " ".join(str(c) for c in suggested[CONF_PEAK_CODES])
    if CONF_PHASES in current:
        suggested[CONF_PHASES] = str(current[CONF_PHASES])
    return flow.async_show_form(
        step_id="planner_options",
        data_schema=flow.add_suggested_values_to_schema(schema, suggested | (user_input or {})),
        errors=errors,
    )
