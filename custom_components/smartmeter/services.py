"""The planner's actions: ``smartmeter.plan_charge`` and ``smartmeter.cancel_plan``.

Registered once in ``async_setup`` (the quality scale's action-setup rule), so
automations that call them validate even while no planner entry is loaded;
a call for an entry that is not a loaded planner is a translated
:class:`ServiceValidationError`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import voluptuous as vol

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util

from .const import CONF_PROTOCOL, DOMAIN, PROTOCOL_PLANNER, SERVICE_CANCEL_PLAN, SERVICE_PLAN_CHARGE
from .core.planner.models import Charger, ChargeRequest, Plan
from .core.planner.optimizer import energy_needed
from .planner import PlannerCoordinator

ATTR_ENTRY = "config_entry_id"
ATTR_ENERGY = "energy_kwh"
ATTR_CURRENT_SOC = "current_soc"
ATTR_SOC_ENTITY = "soc_entity"
ATTR_TARGET_SOC = "target_soc"
ATTR_BATTERY = "battery_kwh"
ATTR_EFFICIENCY = "efficiency"
ATTR_DEADLINE = "deadline"
ATTR_MIN_CURRENT = "min_current"
ATTR_MAX_CURRENT = "max_current"
ATTR_PHASES = "phases"
ATTR_CONTINUOUS = "continuous"
ATTR_PRICE_CAP = "price_cap"

_number = vol.All(vol.Coerce(float), vol.Range(min=0))
PLAN_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_ENTRY): cv.string,
        vol.Optional(ATTR_ENERGY): _number,
        vol.Optional(ATTR_CURRENT_SOC): vol.All(vol.Coerce(float), vol.Range(min=0, max=100)),
        vol.Optional(ATTR_SOC_ENTITY): cv.entity_id,
        vol.Optional(ATTR_TARGET_SOC): vol.All(vol.Coerce(float), vol.Range(min=0, max=100)),
        vol.Optional(ATTR_BATTERY): vol.All(vol.Coerce(float), vol.Range(min=0, min_included=False)),
        vol.Optional(ATTR_EFFICIENCY, default=0.9): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=1)),
        vol.Required(ATTR_DEADLINE): cv.datetime,
        vol.Optional(ATTR_MIN_CURRENT, default=6): vol.All(vol.Coerce(int), vol.Range(min=1, max=80)),
        vol.Optional(ATTR_MAX_CURRENT, default=16): vol.All(vol.Coerce(int), vol.Range(min=1, max=80)),
        vol.Optional(ATTR_PHASES, default=1): vol.All(vol.Coerce(int), vol.In([1, 3])),
        vol.Optional(ATTR_CONTINUOUS, default=False): cv.boolean,
        vol.Optional(ATTR_PRICE_CAP): vol.Coerce(float),
    }
)
CANCEL_SCHEMA = vol.Schema({vol.Required(ATTR_ENTRY): cv.string})


def _invalid(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders or None
    )


def _planner(hass: HomeAssistant, entry_id: str) -> PlannerCoordinator:
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN or entry.data.get(CONF_PROTOCOL) != PROTOCOL_PLANNER:
        raise _invalid("unknown_planner", entry_id=entry_id)
    if entry.state is not ConfigEntryState.LOADED:
        raise _invalid("planner_not_loaded", title=entry.title)
    coordinator: PlannerCoordinator = entry.runtime_data
    return coordinator


def _dec(value: float) -> Decimal:
    return Decimal(str(value))


def _energy(hass: HomeAssistant, data: dict[str, Any]) -> Decimal:
    """The energy to charge: given, or from the state of charge, the target and the battery size."""
    if ATTR_ENERGY in data:
        energy = _dec(data[ATTR_ENERGY])
        if ATTR_BATTERY in data and energy > _dec(data[ATTR_BATTERY]):
            raise _invalid("impossible_energy", energy=str(energy))
        return energy
    soc = data.get(ATTR_CURRENT_SOC)
    if ATTR_SOC_ENTITY in data:
        state = hass.states.get(data[ATTR_SOC_ENTITY])
        if state is None:
            raise _invalid("unknown_entity", entity_id=data[ATTR_SOC_ENTITY])
        try:
            soc = float(state.state)
        except ValueError:
            raise _invalid("soc_unknown", entity_id=data[ATTR_SOC_ENTITY]) from None
    if soc is None or ATTR_TARGET_SOC not in data or ATTR_BATTERY not in data:
        raise _invalid("energy_missing")
    try:
        return energy_needed(
            current_soc=_dec(soc),
            target_soc=_dec(data[ATTR_TARGET_SOC]),
            battery_kwh=_dec(data[ATTR_BATTERY]),
        )
    except ValueError:
        raise _invalid("impossible_energy", energy=f"{soc} %") from None


def request_from_call(hass: HomeAssistant, data: dict[str, Any], now: datetime) -> ChargeRequest:
    """A charge request from the action's data, validated."""
    deadline: datetime = data[ATTR_DEADLINE]
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=dt_util.get_default_time_zone())
    deadline = dt_util.as_utc(deadline)
    if deadline <= now:
        raise _invalid("deadline_in_past", deadline=dt_util.as_local(deadline).isoformat())
    if data[ATTR_MIN_CURRENT] > data[ATTR_MAX_CURRENT]:
        raise _invalid("invalid_current", min=str(data[ATTR_MIN_CURRENT]), max=str(data[ATTR_MAX_CURRENT]))
    energy = _energy(hass, data)
    return ChargeRequest(
        energy_kwh=energy,
        start=now,
        deadline=deadline,
        charger=Charger(
            min_current=data[ATTR_MIN_CURRENT],
            max_current=data[ATTR_MAX_CURRENT],
            phases=data[ATTR_PHASES],
            efficiency=_dec(data[ATTR_EFFICIENCY]),
        ),
        continuous=data[ATTR_CONTINUOUS],
        price_cap=_dec(data[ATTR_PRICE_CAP]) if ATTR_PRICE_CAP in data else None,
    )


def plan_response(plan: Plan) -> dict[str, Any]:
    """The plan as the action's response data (JSON types)."""
    return {
        "complete": plan.complete,
        "energy_kwh": float(plan.energy_kwh),
        "energy_cost": float(plan.energy_cost),
        "capacity_cost": float(plan.capacity_cost),
        "total_cost": float(plan.total_cost),
        "peak_kw": None if plan.peak_kw is None else float(plan.peak_kw),
        "slots": [
            {
                "start": dt_util.as_local(slot.start).isoformat(),
                "end": dt_util.as_local(slot.end).isoformat(),
                "current": slot.current,
                "power_kw": float(slot.power_kw),
                "energy_kwh": float(slot.energy_kwh),
                "price": float(slot.price),
            }
            for slot in plan.slots
        ],
    }


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the planner's actions."""

    async def _plan(call: ServiceCall) -> ServiceResponse:
        planner = _planner(hass, call.data[ATTR_ENTRY])
        request = request_from_call(hass, dict(call.data), planner.clock())
        plan = planner.async_set_plan(request)
        return plan_response(plan)

    async def _cancel(call: ServiceCall) -> None:
        _planner(hass, call.data[ATTR_ENTRY]).async_cancel_plan()

    hass.services.async_register(
        DOMAIN, SERVICE_PLAN_CHARGE, _plan, schema=PLAN_SCHEMA, supports_response=SupportsResponse.OPTIONAL
    )
    hass.services.async_register(DOMAIN, SERVICE_CANCEL_PLAN, _cancel, schema=CANCEL_SCHEMA)
