"""Meters that speak only when asked, end to end in Home Assistant: IEC 62056-21 mode C and M-Bus.

The simulators (tests/simulators.py) sit on real pseudo-terminals: an IEC
62056-21 mode C meter that answers the sign-on with the Itron EM214's
identification and its data message (the corpus block with ETX and the
correct BCC added), and an M-Bus segment whose slaves answer SND_NKE, REQ_UD2
and secondary selects with real corpus frames. The config flow finds them only
when the user allows it to transmit; the entry then polls them, and the
sensors show the values of the frames.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest

from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir

from custom_components.smartmeter.config_flow import CONF_DEVICE
from custom_components.smartmeter.const import (
    CONF_ADDRESSES,
    CONF_LIVE,
    CONF_MAX_POWER,
    CONF_METER_ID,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_READOUT,
    CONF_TRANSMIT,
    CONF_URL,
    DOMAIN,
    OPTIONS_FLOW_RELOADS,
)
from custom_components.smartmeter.core import detect as detect_module
from custom_components.smartmeter.core.source import IecReadoutSource, MbusSource
from tests.common import state_of, unload, wait_for
from tests.simulators import (
    EM214_BODY,
    MbusBus,
    ModeCMeter,
    corpus,
    iec_data_message,
    mbus_replace,
    secondary,
)

EM214_ID = "53965555"  # C.1, the meter's printed serial number

# Three slaves of one M-Bus segment, real corpus frames (libmbus test frames):
# a warm-water meter, a heat meter and a gas meter.
WATER = corpus("mbus/engelmann_waterstar_water.hex")  # 0.332 m3, a warm-water meter
GAS = corpus("mbus/lgb_g350_gas.hex")  # 10834.092 m3
# The T230 heat meter as captured reads 0 kWh: here its energy register reads
# 12345 kWh (BCD 45 23 01 00, checksum recomputed) so a zero cannot pass unseen.
HEAT = mbus_replace(
    corpus("mbus/landisgyr_ultraheat_t230_heat.hex"),
    bytes.fromhex("0C0600000000"),
    bytes.fromhex("0C0645230100"),
)
# Primary addresses: the ones each frame carries in its A field.
SLAVES = {0: HEAT, 1: GAS, 11: WATER}
READINGS = {  # slave -> (register key, value, unit shown)
    0: ("heat", Decimal(12345), "kWh"),
    1: ("gas", Decimal("10834.092"), "m³"),
    11: ("hot_water", Decimal("0.332"), "m³"),
}


def _meter_id(raw: bytes) -> str:
    return secondary(raw)[:8]


@pytest.fixture(autouse=True)
def fast() -> Generator[None]:
    """Short listening and answer timeouts: the simulators answer within milliseconds."""
    with (
        patch("custom_components.smartmeter.const.PROBE_TIMEOUT", 0.1),
        patch.object(detect_module, "IEC_TIMEOUT", 0.5),
        patch.object(detect_module, "MBUS_SCAN_TIMEOUT", 0.01),
        patch.object(detect_module, "MBUS_READ_TIMEOUT", 0.3),
        patch("serialx.async_list_serial_ports", return_value=[]),
    ):
        yield


async def _start_serial_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "serial"})
    assert result["step_id"] == "serial"
    return str(result["flow_id"])


async def _submit_port(hass: HomeAssistant, flow_id: str, path: str, *, transmit: bool) -> Any:
    return await hass.config_entries.flow.async_configure(
        flow_id, {CONF_DEVICE: path, CONF_TRANSMIT: transmit}
    )


async def _confirm(hass: HomeAssistant, flow_id: str) -> ConfigEntry:
    result = await hass.config_entries.flow.async_configure(flow_id, {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry: ConfigEntry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def _set_options(hass: HomeAssistant, entry: ConfigEntry, **options: Any) -> None:
    """Change the entry's options and apply them as the options flow would (a reload).

    Before Home Assistant 2025.8 the entry's update listener reloads it; from
    then on the options flow does (OptionsFlowWithReload), so reload here.
    """
    hass.config_entries.async_update_entry(entry, options=dict(entry.options) | options)
    await hass.async_block_till_done()
    if OPTIONS_FLOW_RELOADS:
        assert await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def _entity(entity_registry: er.EntityRegistry, meter: str, key: str) -> str:
    entity_id = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{meter}_{key}")
    assert entity_id is not None, f"no sensor {key} of meter {meter}"
    return entity_id


def _value(hass: HomeAssistant, entity_id: str) -> Decimal | None:
    state = state_of(hass, entity_id).state
    return None if state in ("unavailable", "unknown") else Decimal(state)


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- IEC 62056-21 mode C


def _em214(**changes: str) -> bytes:
    """The EM214 data message with some values changed (``{"1.8.1": "022108.8*kWh"}``), BCC kept right."""
    body = EM214_BODY
    for code, value in changes.items():
        start = body.index(f"\n{code}(".encode()) + len(code) + 2
        body = body[:start] + value.encode() + body[body.index(b")", start) :]
    return iec_data_message(body)


async def test_iec_mode_c_meter_found_by_sign_on_and_polled(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Silent until asked: not found by listening, found with the sign-on, read every poll interval."""
    async with ModeCMeter() as meter:
        flow_id = await _start_serial_flow(hass)

        # Without consent the flow only listens: nothing found, not one byte sent.
        result = await _submit_port(hass, flow_id, meter.path, transmit=False)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "no_telegram"}
        meter.read()
        assert bytes(meter.received) == b""
        assert meter.requests == []

        result = await _submit_port(hass, flow_id, meter.path, transmit=True)
        assert result["type"] is FlowResultType.FORM, result
        assert result["step_id"] == "confirm"
        assert meter.requests == [b"/?!\r\n"]  # one sign-on, answered at 9600 baud
        assert meter.rates == [9600]
        placeholders = result["description_placeholders"]
        assert placeholders["title"] == f"Electricity meter {EM214_ID}"
        assert placeholders["protocol"] == "IEC 62056-21"
        assert placeholders["settings"] == "300 7E1"
        assert "energy import tariff 1: 22108.7 kWh" in placeholders["sample"]

        entry = await _confirm(hass, flow_id)
        assert entry.unique_id == EM214_ID
        assert entry.data[CONF_PROTOCOL] == "iec62056-21"
        assert entry.data[CONF_READOUT] is True
        assert entry.data[CONF_URL] == meter.path
        assert entry.data[CONF_METER_ID] == EM214_ID
        assert isinstance(entry.runtime_data.source, IecReadoutSource)

        imported = _entity(entity_registry, EM214_ID, "energy_import_tariff_1")
        exported = _entity(entity_registry, EM214_ID, "energy_export_tariff_1")
        power = _entity(entity_registry, EM214_ID, "power_import")
        assert _value(hass, imported) == Decimal("22108.7")
        assert state_of(hass, imported).attributes["unit_of_measurement"] == "kWh"
        assert _value(hass, exported) == Decimal("10452.0")
        assert _value(hass, power) == Decimal(490)  # 00.49 kW, shown in W
        assert len(meter.requests) == 2  # the flow's sign-on and the entry's first readout

        # Poll every second, write every reading; the reading below is 0.1 kWh
        # later (360 kW over one second): allow that much.
        await _set_options(hass, entry, **{CONF_POLL_INTERVAL: 1, CONF_LIVE: True, CONF_MAX_POWER: 1000})
        source = entry.runtime_data.source
        assert isinstance(source, IecReadoutSource)
        assert source.interval == 1
        polls = len(meter.requests)
        meter.message = _em214(**{"1.8.1": "022108.8*kWh", "1.7.0": "01.23*kW"})
        await wait_for(lambda: _value(hass, imported) == Decimal("22108.8"), timeout=10)
        assert _value(hass, power) == Decimal(1230)
        assert len(meter.requests) > polls
        after_reload = meter.times[polls - 1 :]
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(after_reload))
        assert meter.requests[-1] == b"/?!\r\n"
        assert set(meter.rates) == {9600}
        assert source.stats.frames_ok >= 2
        assert source.stats.frames_bad_checksum == 0

        await unload(hass, entry)
    assert _errors(caplog) == []


async def test_iec_readout_with_bad_bcc_is_counted_and_ignored(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A readout that fails its BCC changes nothing; the next good one is shown."""
    async with ModeCMeter() as meter:
        flow_id = await _start_serial_flow(hass)
        result = await _submit_port(hass, flow_id, meter.path, transmit=True)
        assert result["step_id"] == "confirm"
        entry = await _confirm(hass, flow_id)
        await _set_options(hass, entry, **{CONF_POLL_INTERVAL: 1, CONF_LIVE: True, CONF_MAX_POWER: 1000})
        source = entry.runtime_data.source
        imported = _entity(entity_registry, EM214_ID, "energy_import_tariff_1")

        bad = bytearray(_em214(**{"1.8.1": "099999.9*kWh"}))
        bad[-1] ^= 0x55  # the BCC
        meter.message = bytes(bad)
        await wait_for(lambda: source.stats.frames_bad_checksum >= 1, timeout=10)
        assert _value(hass, imported) == Decimal("22108.7")
        assert entry.state is ConfigEntryState.LOADED
        assert source.connected  # the meter answers: the link is fine

        meter.message = _em214(**{"1.8.1": "022108.8*kWh"})
        await wait_for(lambda: _value(hass, imported) == Decimal("22108.8"), timeout=10)
        assert "BCC" in (source.stats.last_error or "")
        await unload(hass, entry)
    assert _errors(caplog) == []


# ---------------------------------------------------------------- M-Bus


def _shared_primary_0(bus: MbusBus) -> None:
    """As delivered: every slave on primary address 0 (the flow must use secondary addresses)."""
    bus.primary_of = dict.fromkeys(bus.slaves, 0)


ADDRESSING = {
    "primary": ({0: "p0", 1: "p1", 11: "p11"}, None),
    "secondary": ({key: secondary(raw) for key, raw in SLAVES.items()}, _shared_primary_0),
}


async def _wait_readings(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> dict[int, str]:
    """Wait until every slave's reading sensor shows its frame's value; their entity IDs by slave."""

    def shown() -> bool:
        for key, (register, value, _) in READINGS.items():
            entity_id = entity_registry.async_get_entity_id(
                "sensor", DOMAIN, f"{_meter_id(SLAVES[key])}_{register}"
            )
            if entity_id is None or _value(hass, entity_id) != value:
                return False
        return True

    await wait_for(shown)
    return {
        key: _entity(entity_registry, _meter_id(SLAVES[key]), register)
        for key, (register, _, _) in READINGS.items()
    }


async def _add_mbus(
    hass: HomeAssistant, bus: MbusBus, *, listen_first: bool = False
) -> tuple[ConfigEntry, dict[str, Any]]:
    """Through the flow: (without consent: nothing found, nothing sent), with consent, confirmed."""
    flow_id = await _start_serial_flow(hass)
    if listen_first:
        result = await _submit_port(hass, flow_id, bus.path, transmit=False)
        assert result["errors"] == {"base": "no_telegram"}
        bus.read()
        assert bus.requests == [] and bytes(bus.received) == b""  # listening only
    result = await _submit_port(hass, flow_id, bus.path, transmit=True)
    assert result["type"] is FlowResultType.FORM, result
    assert result["step_id"] == "confirm"
    placeholders = result["description_placeholders"]
    return await _confirm(hass, flow_id), placeholders


@pytest.mark.parametrize("addressing", list(ADDRESSING))
async def test_mbus_slaves_found_and_read(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    caplog: pytest.LogCaptureFixture,
    addressing: str,
) -> None:
    """Found by the scan (primary) or the search (secondary), each slave its own device and reading."""
    addresses, arrange = ADDRESSING[addressing]
    async with MbusBus(SLAVES) as bus:
        if arrange is not None:
            arrange(bus)
        entry, placeholders = await _add_mbus(hass, bus, listen_first=True)
        assert placeholders["protocol"] == "M-Bus"
        assert placeholders["settings"] == "2400 8E1"
        assert placeholders["meters"] == "3"
        assert entry.data[CONF_PROTOCOL] == "mbus"
        assert sorted(entry.data[CONF_ADDRESSES]) == sorted(addresses.values())
        assert entry.unique_id in {_meter_id(raw) for raw in SLAVES.values()}
        source = entry.runtime_data.source
        assert isinstance(source, MbusSource)

        # Every slave answers in the first round: each gets a device and its reading.
        await _wait_readings(hass, entity_registry)
        devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        assert {(DOMAIN, _meter_id(raw)) for raw in SLAVES.values()} == {
            identifier for device in devices for identifier in device.identifiers
        }
        names = {next(iter(d.identifiers))[1]: d.name for d in devices}
        assert names == {
            _meter_id(HEAT): "Heat meter",
            _meter_id(GAS): "Gas meter",
            _meter_id(WATER): "Hot water meter",
        }
        for key, (register, value, unit) in READINGS.items():
            entity_id = _entity(entity_registry, _meter_id(SLAVES[key]), register)
            state = state_of(hass, entity_id)
            assert Decimal(state.state) == value, register
            assert state.attributes["unit_of_measurement"] == unit
            registry_entry = entity_registry.async_get(entity_id)
            assert registry_entry is not None
            device = device_registry.async_get(registry_entry.device_id or "")
            assert device is not None and (DOMAIN, _meter_id(SLAVES[key])) in device.identifiers
        assert source.stats.frames_ok >= 3
        await unload(hass, entry)
    assert _errors(caplog) == []


async def test_mbus_silent_slave_does_not_take_the_others_down(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A slave that stops answering is counted; the others are read and updated as before."""
    async with MbusBus(SLAVES) as bus:
        entry, _ = await _add_mbus(hass, bus)
        await _set_options(hass, entry, **{CONF_POLL_INTERVAL: 1, CONF_LIVE: True})
        source = entry.runtime_data.source
        assert isinstance(source, MbusSource) and source.interval == 1
        entity_ids = await _wait_readings(hass, entity_registry)
        heat, gas, water = entity_ids[0], entity_ids[1], entity_ids[11]

        bus.silent.add(11)  # the water meter's M-Bus interface fails
        # The gas meter counts on: one litre more.
        bus.answer_with(1, mbus_replace(GAS, bytes.fromhex("4C1392408310"), bytes.fromhex("4C1393408310")))
        await wait_for(lambda: _value(hass, gas) == Decimal("10834.093"), timeout=15)
        await wait_for(lambda: source.no_answer["p11"] >= 1)
        assert source.connected
        assert entry.state is ConfigEntryState.LOADED
        assert state_of(hass, gas).state != "unavailable"
        assert _value(hass, heat) == Decimal(12345)
        # The silent slave's sensor keeps its last reading.
        assert _value(hass, water) == Decimal("0.332")
        polled_heat = bus.requests_to(0)
        await wait_for(lambda: bus.requests_to(0) > polled_heat, timeout=5)  # still polled

        bus.silent.discard(11)  # back: read again
        polled_water = bus.requests_to(11)
        await wait_for(lambda: bus.requests_to(11) > polled_water, timeout=5)
        await unload(hass, entry)
    assert _errors(caplog) == []


async def test_mbus_slave_silent_for_three_intervals_is_unavailable(
    hass: HomeAssistant, entity_registry: er.EntityRegistry
) -> None:
    """A slave that stays silent for three polling intervals shows unavailable; the others do not."""
    with patch("custom_components.smartmeter.IDLE_TIMEOUT", 0):
        async with MbusBus(SLAVES) as bus:
            entry, _ = await _add_mbus(hass, bus)
            await _set_options(hass, entry, **{CONF_POLL_INTERVAL: 1, CONF_LIVE: True})
            entity_ids = await _wait_readings(hass, entity_registry)
            gas, water = entity_ids[1], entity_ids[11]
            bus.silent.add(11)
            await wait_for(lambda: state_of(hass, water).state == "unavailable", timeout=10)
            assert state_of(hass, gas).state != "unavailable"
            bus.silent.discard(11)
            await wait_for(lambda: state_of(hass, water).state != "unavailable", timeout=10)
            await unload(hass, entry)


async def test_mbus_no_new_meter_issue_for_the_other_slaves(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry
) -> None:
    """Each slave's answer names its own meter: that is not a replaced main meter."""
    async with MbusBus(SLAVES) as bus:
        entry, _ = await _add_mbus(hass, bus)
        source = entry.runtime_data.source
        await wait_for(lambda: source.stats.frames_ok >= 3)
        await hass.async_block_till_done()
        issues = [issue_id for (domain, issue_id) in issue_registry.issues if domain == DOMAIN]
        await unload(hass, entry)
    assert issues == []


async def test_mbus_garbage_and_bad_checksums_are_counted_and_ignored(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A slave answering with a bad checksum or garbage: counted, dropped, no error logged."""
    async with MbusBus(SLAVES) as bus:
        entry, _ = await _add_mbus(hass, bus)
        await _set_options(hass, entry, **{CONF_POLL_INTERVAL: 1, CONF_LIVE: True})
        source = entry.runtime_data.source
        entity_ids = await _wait_readings(hass, entity_registry)
        heat, gas, water = entity_ids[0], entity_ids[1], entity_ids[11]

        # The heat meter's answer: a tripled reading with the old checksum.
        tripled = mbus_replace(HEAT, bytes.fromhex("0C0645230100"), bytes.fromhex("0C0635700300"))
        bus.answer_with(0, tripled[:-2] + bytes((HEAT[-2],)) + tripled[-1:])
        # The water meter's: line noise that starts like a long frame, then a frame cut short.
        bus.answer_with(11, b"\x68\x51\x51\x68\x08\x0b\x72" + bytes(range(0x80, 0xD0)))
        bus.answer_with(1, mbus_replace(GAS, bytes.fromhex("4C1392408310"), bytes.fromhex("4C1393408310")))
        await wait_for(lambda: _value(hass, gas) == Decimal("10834.093"), timeout=15)
        await wait_for(
            lambda: source.stats.frames_bad_checksum >= 1 and source.stats.frames_undecodable >= 1,
            timeout=10,
        )
        bus.answer_with(11, WATER[:40])
        undecodable = source.stats.frames_undecodable
        await wait_for(lambda: source.stats.frames_undecodable > undecodable, timeout=10)
        assert _value(hass, heat) == Decimal(12345)
        assert _value(hass, water) == Decimal("0.332")
        assert source.connected
        assert entry.state is ConfigEntryState.LOADED
        await unload(hass, entry)
    assert _errors(caplog) == []


async def test_mbus_first_slave_answering_garbage_during_the_scan(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The first slave found answers with a bad checksum: the flow still finds the segment, no key asked."""
    async with MbusBus(SLAVES) as bus:
        bus.answer_with(0, HEAT[:-2] + bytes((HEAT[-2] ^ 0xFF,)) + HEAT[-1:])
        flow_id = await _start_serial_flow(hass)
        result = await _submit_port(hass, flow_id, bus.path, transmit=True)
        assert result["type"] is FlowResultType.FORM, result
        assert result["step_id"] == "confirm", result
        assert result["description_placeholders"]["meters"] == "3"
        entry = await _confirm(hass, flow_id)
        assert sorted(entry.data[CONF_ADDRESSES]) == ["p0", "p1", "p11"]
        assert entry.unique_id in {_meter_id(GAS), _meter_id(WATER)}
        source = entry.runtime_data.source
        await wait_for(lambda: source.stats.frames_ok >= 2 and source.stats.frames_bad_checksum >= 1)
        gas = _entity(entity_registry, _meter_id(GAS), "gas")
        await wait_for(lambda: _value(hass, gas) == Decimal("10834.092"))
        await unload(hass, entry)
    assert _errors(caplog) == []


async def test_iec_meter_whose_readouts_fail_their_bcc_is_not_offered(hass: HomeAssistant) -> None:
    """The Siemens WR5 as in the corpus (its BCC is wrong): no meter to add, and no key to ask for."""
    wr5 = corpus("iec62056-21/de_siemens_wr5_heat_modeC.txt")
    ident = wr5[: wr5.index(b"\n") + 1]
    async with ModeCMeter(b"/SIE5WR5\r\n", wr5[len(ident) :]) as meter:
        flow_id = await _start_serial_flow(hass)
        result = await _submit_port(hass, flow_id, meter.path, transmit=True)
        assert len(meter.requests) == 2  # signed on, and again after the first bad BCC
    assert result["type"] is FlowResultType.FORM, result
    assert result["step_id"] == "serial", result
    assert result["errors"] == {"base": "no_telegram"}
