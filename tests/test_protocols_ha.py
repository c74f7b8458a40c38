"""SML, DLMS (HAN) and IEC 62056-21 push meters end to end in Home Assistant.

Real corpus frames replayed on a pseudo-terminal: the config flow recognises
the protocol by listening (it sends nothing), shows the meter, creates the
entry; the entry reads the port and the sensors show the decoded values.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er

from custom_components.smartmeter.const import CONF_PROTOCOL, CONF_TRANSMIT, CONF_URL, DOMAIN
from custom_components.smartmeter.core.dlms import decode_dlms
from custom_components.smartmeter.core.iec62056 import decode_iec
from custom_components.smartmeter.core.models import Frame
from custom_components.smartmeter.core.sml import decode_sml
from tests.common import PtyMeter, state_of, unload
from tests.conftest import corpus_dir

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def fast_probe() -> Generator[None]:
    """Listen only briefly per line setting (frames arrive every 50 ms here)."""
    with patch("custom_components.smartmeter.const.PROBE_TIMEOUT", 0.4):
        yield


def _sml() -> tuple[bytes, Frame]:
    raw = (FIXTURES / "sml" / "de_emh_ehz_smartmeter_obis.bin").read_bytes()
    return raw, decode_sml(raw)


def _dlms() -> tuple[bytes, Frame]:
    raw = (corpus_dir() / "han_dlms" / "no_kaifa_ma304h3e_list2.bin").read_bytes()
    return raw, decode_dlms(raw)


def _iec() -> tuple[bytes, Frame]:
    raw = (corpus_dir() / "iec62056-21" / "de_emh_ehz_modeD_push.txt").read_bytes()
    return raw, decode_iec(raw)


CASES = {"sml": _sml, "dlms": _dlms, "iec62056-21": _iec}


async def _add_through_flow(hass: HomeAssistant, path: str) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "serial"})
    with patch("serialx.async_list_serial_ports", return_value=[]):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"device": path, CONF_TRANSMIT: False}
        )
    assert result["type"] is FlowResultType.FORM, result
    assert result["step_id"] == "confirm"
    placeholders = result["description_placeholders"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    return {"placeholders": placeholders, "data": result["data"], "entry": result["result"]}


@pytest.mark.parametrize("protocol", list(CASES))
async def test_push_meter_end_to_end(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, protocol: str
) -> None:
    """Recognised by listening, added, read: the sensors show the frame's values in the frame's units."""
    raw, frame = CASES[protocol]()
    main = frame.main
    assert main is not None
    async with PtyMeter([raw]) as pty:
        added = await _add_through_flow(hass, pty.path)
        assert added["data"][CONF_PROTOCOL] == protocol
        assert added["data"][CONF_URL] == pty.path
        assert main.id in added["placeholders"]["title"]
        assert pty.written == b""  # listening only: nothing was sent to the meter
        entry = added["entry"]
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        checked = 0
        for reg in main.registers:
            if reg.key not in ("energy_import_total", "energy_import_tariff_1", "power_import", "voltage_l1"):
                continue
            if not isinstance(reg.value, Decimal):
                continue
            entity_id = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{main.id}_{reg.key}")
            assert entity_id is not None, reg.key
            entry_reg = entity_registry.async_get(entity_id)
            assert entry_reg is not None
            if entry_reg.disabled_by is not None:
                continue
            state = state_of(hass, entity_id)
            if reg.key == "power_import":  # shown in W
                assert Decimal(state.state) == reg.value * 1000 if reg.unit == "kW" else reg.value
            else:
                assert Decimal(state.state) == reg.value, reg.key
            checked += 1
        assert checked >= 1
        await unload(hass, entry)


async def test_pty_meter_records_what_is_written() -> None:
    """The "nothing was sent" check above can fail: bytes written to the port are seen."""
    async with PtyMeter([]) as pty:
        port = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(port, b"/?!\r\n")
            await asyncio.sleep(0.05)
            assert pty.written == b"/?!\r\n"
        finally:
            os.close(port)
