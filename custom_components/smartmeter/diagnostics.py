"""Diagnostics: the last raw telegrams and link counters, with IDs and keys redacted."""

from __future__ import annotations

import re
from typing import Any

import serialx

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_KEY, CONF_METER_ID, CONF_URL
from .coordinator import SmartMeterConfigEntry

REDACTED = "**REDACTED**"
TO_REDACT = {CONF_KEY, CONF_METER_ID, "id", "serial_number", "parent_id", "unique_id"}
# P1 lines that carry equipment identifiers: 0-0:96.1.1, 0-n:96.1.0, 0-0:42.0.0, 1-0:0.0.0
_ID_LINE = re.compile(r"^(\d+-\d+:(?:96\.1\.[01]|42\.0\.0|0\.0\.0)(?:\*\d+)?)\([^)]*\)", re.MULTILINE)


def redact_telegram(raw: bytes) -> str:
    """A telegram as text with its equipment identifiers replaced."""
    if raw[:1] == b"\xdb":
        return f"<encrypted frame, {len(raw)} bytes>"
    text = raw.decode("latin-1")
    return _ID_LINE.sub(lambda m: f"{m.group(1)}({REDACTED})", text)


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: SmartMeterConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for a config entry."""
    coordinator = entry.runtime_data
    source = coordinator.source
    meters: list[dict[str, Any]] = []
    if coordinator.data is not None:
        for meter in coordinator.data.meters.values():
            meters.append(
                {
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
                        if reg.key not in ("equipment_id", "meter_serial", "logical_device_name", "meter_id")
                    },
                }
            )
    data = dict(entry.data)
    data[CONF_URL] = serialx.redact_uri(data[CONF_URL])
    return {
        "entry": async_redact_data(data, TO_REDACT),
        "options": dict(entry.options),
        "connected": coordinator.connected,
        "link": source.stats.as_dict(),
        "meters": async_redact_data(meters, TO_REDACT),
        "telegrams": [redact_telegram(raw) for raw in coordinator.frames],
        "received_frames": [redact_telegram(raw) for raw in getattr(source, "raw_history", ())],
    }
