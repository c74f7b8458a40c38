"""Diagnostics: the last raw telegrams and link counters, with IDs and keys redacted."""

from __future__ import annotations

import json
import re
from typing import Any

import serialx

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .cloud import CloudCoordinator
from .const import (
    CONF_ACCOUNT,
    CONF_API_KEY,
    CONF_DEVICES,
    CONF_KEY,
    CONF_METER_ID,
    CONF_METERS,
    CONF_NAMES,
    CONF_PROTOCOL,
    CONF_TOKEN,
    CONF_URL,
    FAILED_SETUPS,
    PROTOCOL_PLANNER,
)
from .coordinator import SmartMeterConfigEntry, SmartMeterCoordinator
from .core.models import Meter

REDACTED = "**REDACTED**"
TO_REDACT = {
    CONF_KEY,
    CONF_METER_ID,
    "id",
    "serial_number",
    "parent_id",
    "unique_id",
    # Cloud entries: credentials, the account and what identifies a meter or home.
    CONF_API_KEY,
    CONF_TOKEN,
    CONF_ACCOUNT,
    "name",
    "mpan",
    "mprn",
    "serial",
    "home_id",
    "statistic_ids",
    # MQTT entries: the selected IEEE addresses / meter IDs and the devices' names.
    CONF_DEVICES,
    CONF_METERS,
    CONF_NAMES,
}
# Identifiers in MQTT JSON payloads (wmbusmeters' id and name, Zigbee2MQTT's addresses).
_JSON_IDS = frozenset({"id", "name", "ieee_address", "friendly_name", "address"})
# Registers that hold an equipment identifier (shown only redacted, as the meter's ID).
_ID_KEYS = frozenset({"equipment_id", "meter_serial", "logical_device_name", "meter_id"})
# P1 lines that carry equipment identifiers: 0-0:96.1.1, 0-n:96.1.0, 0-0:42.0.0, 1-0:0.0.0
_ID_LINE = re.compile(r"^(\d+-\d+:(?:96\.1\.[01]|42\.0\.0|0\.0\.0)(?:\*\d+)?)\([^)]*\)", re.MULTILINE)


# user:password@ in a URL (serialx redacts secret query parameters itself).
_USERINFO = re.compile(r"(?<=://)[^/@?#]*@")


def redact_url(url: str) -> str:
    """A port or bridge URL without secrets."""
    return _USERINFO.sub(f"{REDACTED}@", serialx.redact_uri(url))


def _redact_json(raw: bytes) -> str | None:
    """A JSON object payload (MQTT) with its identifiers replaced; ``None`` if it is none."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return json.dumps({key: REDACTED if key in _JSON_IDS else value for key, value in data.items()})


def redact_telegram(raw: bytes) -> str:
    """A telegram as text with its equipment identifiers replaced."""
    if raw[:1] == b"\xdb":
        return f"<encrypted frame, {len(raw)} bytes>"
    if raw[:1] == b"{" and (text := _redact_json(raw)) is not None:
        return text
    text = raw.decode("latin-1")
    return _ID_LINE.sub(lambda m: f"{m.group(1)}({REDACTED})", text)


def _meter(meter: Meter) -> dict[str, Any]:
    return {
        "id": meter.id,
        "serial_number": meter.serial_number,
        "parent_id": meter.parent_id,
        "medium": meter.medium.value,
        "channel": meter.channel,
        "manufacturer": meter.manufacturer,
        "model": meter.model,
        "registers": {
            reg.key: {"obis": reg.obis, "value": str(reg.value), "unit": reg.unit}
            for reg in meter.registers
            if reg.key not in _ID_KEYS
        },
    }


def _cloud(coordinator: CloudCoordinator) -> dict[str, Any]:
    """A cloud account's meters, import progress and request budget, identifiers redacted."""
    meters = []
    for state in coordinator.meters.values():
        meter = state.meter
        meters.append(
            {
                "id": meter.id,
                "name": meter.name,
                "serial_number": meter.serial_number,
                "medium": meter.medium.value,
                "registers": dict(zip(meter.registers, meter.units, strict=True)),
                "tariff": meter.tariff,
                "currency": meter.currency,
                "live": meter.live,
                "extra": async_redact_data(dict(meter.extra), TO_REDACT),
                "latest": {
                    register: {
                        "start": str(i.start),
                        "end": str(i.end),
                        "value": str(i.value),
                        "unit": i.unit,
                    }
                    for register, i in state.latest.items()
                },
                "prices": len(state.prices),
                "live_reading_at": str(state.live_at) if state.live_at else None,
            }
        )
    budget = coordinator.budget
    last_error = coordinator.last_error
    if last_error:  # an error names the URL, with the meter point and serial in its path
        for state in coordinator.meters.values():
            for ident in {state.meter.id, *(value for _, value in state.meter.extra)}:
                if len(ident) >= 4:
                    last_error = last_error.replace(ident, REDACTED)
    return {
        "last_update_success": coordinator.last_update_success,
        "last_error": last_error,
        "requests": getattr(coordinator.client, "requests", None),
        "budget": {"limit": budget.limit, "window_s": budget.window, "remaining": budget.remaining},
        "imported_rows": coordinator.imported_rows,
        "meters": async_redact_data(meters, TO_REDACT),
    }


def _planner(coordinator: Any) -> dict[str, Any]:
    """A planner's capacity tracker, prices and active plan (no identifiers in them)."""
    data = coordinator.data
    plan = coordinator.plan
    return {
        "tracker": coordinator.tracker.as_dict(),
        "prices": len(coordinator.prices_for_planning(data.now, data.now)),
        "peak": data.peak,
        "charge_now": data.charge_now,
        "recommended_current": data.recommended_current,
        "delivered_kwh": str(coordinator.delivered_kwh),
        "plan": None
        if plan is None
        else {
            "complete": plan.complete,
            "energy_kwh": str(plan.energy_kwh),
            "total_cost": str(plan.total_cost),
            "peak_kw": None if plan.peak_kw is None else str(plan.peak_kw),
            "slots": [[s.start.isoformat(), s.current] for s in plan.slots],
        },
    }


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: SmartMeterConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for a config entry, also while its setup waits for the meter."""
    data = dict(entry.data)
    if CONF_URL in data:
        data[CONF_URL] = redact_url(data[CONF_URL])
    coordinator: SmartMeterCoordinator | CloudCoordinator | None = getattr(entry, "runtime_data", None)
    if coordinator is None:
        # Not loaded: what the last failed setup attempt received, if any.
        coordinator = hass.data.get(FAILED_SETUPS, {}).get(entry.entry_id)
    diagnostics: dict[str, Any] = {
        "entry": async_redact_data(data, TO_REDACT),
        "options": dict(entry.options),
        "state": entry.state.value,
    }
    if coordinator is None:
        return diagnostics
    if isinstance(coordinator, CloudCoordinator):
        return diagnostics | _cloud(coordinator) | {"alerts": coordinator.alerts.diagnostics()}
    if entry.data.get(CONF_PROTOCOL) == PROTOCOL_PLANNER:
        return diagnostics | _planner(coordinator)
    source = coordinator.source
    meters = [_meter(meter) for meter in coordinator.data.meters.values()] if coordinator.data else []
    mqtt = getattr(source, "diagnostics", None)
    if mqtt is not None:  # MQTT sources: ignored messages by reason, topics followed
        diagnostics["mqtt"] = mqtt()
    return diagnostics | {
        "connected": coordinator.connected,
        "link": source.stats.as_dict(),
        "guard": async_redact_data(coordinator.guards.as_dict(), TO_REDACT),
        "meters": async_redact_data(meters, TO_REDACT),
        "telegrams": [redact_telegram(raw) for raw in coordinator.frames],
        "received_frames": [redact_telegram(raw) for raw in getattr(source, "raw_history", ())],
        "alerts": coordinator.alerts.diagnostics(),
    }
