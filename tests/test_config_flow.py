"""Config flow: every step against real ports (pty, TCP on 127.0.0.1) carrying real telegrams."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
import serialx

from homeassistant.config_entries import SOURCE_REAUTH, SOURCE_USB, SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.service_info.usb import UsbServiceInfo
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.smartmeter.config_flow import CONF_DEVICE, CONF_TRANSPORT
from custom_components.smartmeter.const import (
    CONF_BAUDRATE,
    CONF_BYTESIZE,
    CONF_KEY,
    CONF_METER_ID,
    CONF_PARITY,
    CONF_PROTOCOL,
    CONF_STOPBITS,
    CONF_TIME_ZONE,
    CONF_TRANSMIT,
    CONF_URL,
    DOMAIN,
)
from custom_components.smartmeter.core.ports import serial_by_id
from tests.common import (
    AM550,
    BAD_CRC,
    FLUVIUS,
    OTHER_KEY,
    SMARTY,
    SMARTY_KEY,
    PtyMeter,
    TcpMeter,
    corpus_telegram,
    loaded_entry,
    meter_id,
    mock_entry,
    smarty_frame,
    state_is,
    state_of,
    wait_for,
)

MISSING_PORT = "/dev/ttyDOESNOTEXIST0"


@pytest.fixture(autouse=True)
def fast_probe() -> Generator[None]:
    """Listen only briefly per line setting (telegrams arrive every 50 ms here)."""
    with patch("custom_components.smartmeter.const.PROBE_TIMEOUT", 0.4):
        yield


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Do not open the port again once the flow created the entry."""
    with patch("custom_components.smartmeter.async_setup_entry", return_value=True) as mock:
        yield mock


def _port(device: str) -> serialx.SerialPortInfo:
    return serialx.SerialPortInfo(
        device=device,
        resolved_device=device,
        vid=0x0403,
        pid=0x6001,
        serial_number="A10KXYZ",
        manufacturer="FTDI",
        product="FT232R USB UART",
        bcd_device=None,
        interface_description=None,
        interface_num=None,
    )


def _list_ports(*devices: str) -> Any:
    return patch("serialx.async_list_serial_ports", return_value=[_port(device) for device in devices])


def _selector_options(result: Any) -> list[Any]:
    schema = result["data_schema"].schema
    selector = next(iter(schema.values()))
    return list(selector.config["options"])


def _usb(device: str, serial: str | None = "A10KXYZ") -> UsbServiceInfo:
    return UsbServiceInfo(
        device=device,
        vid="0403",
        pid="6001",
        serial_number=serial,
        manufacturer="FTDI",
        description="P1 cable",
    )


async def _start_serial(hass: HomeAssistant) -> Any:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == [
        "serial",
        "network",
        "zigbee2mqtt",
        "wmbusmeters",
        "zha",
        "entity",
        "octopus",
        "tibber",
        "planner",
    ]
    return await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "serial"})


@pytest.mark.usefixtures("mock_setup_entry")
async def test_serial_port_from_list(hass: HomeAssistant) -> None:
    """Pick a listed port: the meter is probed on it, shown, and added."""
    telegram = corpus_telegram(AM550)
    async with PtyMeter([telegram]) as pty:
        with _list_ports(pty.path):
            result = await _start_serial(hass)
            assert result["type"] is FlowResultType.FORM
            assert result["step_id"] == "serial"
            assert result["errors"] == {}
            assert _selector_options(result) == [
                {
                    "value": pty.path,
                    "label": f"{pty.path} - FT232R USB UART - FTDI (0403:6001), s/n A10KXYZ",
                }
            ]
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: pty.path}
            )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "confirm"
        placeholders = result["description_placeholders"]
        assert placeholders is not None
        assert placeholders["title"] == "Electricity meter E0044007382246019"
        assert placeholders["port"] == pty.path
        assert placeholders["settings"] == "115200 8N1"
        assert placeholders["meters"] == "3"
        assert placeholders["version"] == "50"
        assert "energy import tariff 1: 2130.115 kWh" in placeholders["sample"]
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Electricity meter E0044007382246019"
    assert result["result"].unique_id == meter_id(telegram) == "4530303434303037333832323436303139"
    assert result["data"] == {
        CONF_URL: pty.path,
        CONF_PROTOCOL: "dsmr",
        CONF_BAUDRATE: 115200,
        CONF_BYTESIZE: 8,
        CONF_PARITY: "N",
        CONF_STOPBITS: 1,
        CONF_KEY: None,
        CONF_METER_ID: "4530303434303037333832323436303139",
    }


@pytest.mark.usefixtures("mock_setup_entry")
async def test_serial_typed_path_after_errors(hass: HomeAssistant) -> None:
    """A typed path that does not open, then a silent port, then the meter's port."""
    async with PtyMeter([]) as silent, PtyMeter([corpus_telegram(FLUVIUS)]) as pty:
        with _list_ports():
            result = await _start_serial(hass)
            assert _selector_options(result) == []
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: MISSING_PORT}
            )
            assert result["type"] is FlowResultType.FORM
            assert result["errors"] == {"base": "cannot_connect"}

            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: silent.path}
            )
            assert result["type"] is FlowResultType.FORM
            assert result["errors"] == {"base": "no_telegram"}

            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: pty.path}
            )
        assert result["step_id"] == "confirm"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Electricity meter 1SAG3101021605"
    assert result["data"][CONF_URL] == pty.path


@pytest.mark.usefixtures("mock_setup_entry")
async def test_serial_by_id_path_is_stored(hass: HomeAssistant, tmp_path: Path) -> None:
    """A /dev path with a /dev/serial/by-id link is listed and stored as the link (survives re-plugging)."""
    async with PtyMeter([corpus_telegram(AM550)]) as pty:
        (tmp_path / "usb-Other_Adapter-if00-port0").symlink_to("/dev/zero")
        link = tmp_path / "usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0"
        link.symlink_to(pty.path)
        with (
            _list_ports(pty.path, "/dev/null"),
            patch(
                "custom_components.smartmeter.config_flow.serial_by_id",
                lambda device: serial_by_id(device, str(tmp_path)),
            ),
        ):
            result = await _start_serial(hass)
            assert [o["value"] for o in _selector_options(result)] == [str(link), "/dev/null"]
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: pty.path}
            )
            result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_URL] == str(link)


@pytest.mark.usefixtures("mock_setup_entry", "socket_enabled")
async def test_network_bridge(hass: HomeAssistant) -> None:
    """A network P1 dongle: a raw TCP server on 127.0.0.1 replaying a real telegram."""
    telegram = corpus_telegram(AM550)
    async with TcpMeter([telegram]) as bridge:
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "network"}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "network"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: " 127.0.0.1 ", CONF_PORT: bridge.port, CONF_TRANSPORT: "socket"}
        )
        assert result["step_id"] == "confirm"
        assert (result["description_placeholders"] or {}).get("port") == bridge.url
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_URL] == f"socket://127.0.0.1:{bridge.port}"
    assert result["result"].unique_id == meter_id(telegram)


@pytest.mark.usefixtures("mock_setup_entry", "socket_enabled")
async def test_network_bridge_errors(hass: HomeAssistant, unused_tcp_port: int) -> None:
    """A closed port cannot connect; an IPv6 literal is bracketed; a silent bridge sends nothing."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": "network"})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: unused_tcp_port, CONF_TRANSPORT: "socket"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    with patch("custom_components.smartmeter.config_flow.detect", side_effect=_refuse) as probe:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: "::1", CONF_PORT: 2323, CONF_TRANSPORT: "rfc2217"}
        )
    assert probe.call_args.args[0] == "rfc2217://[::1]:2323"
    assert result["errors"] == {"base": "cannot_connect"}

    async with TcpMeter([]) as bridge:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.port, CONF_TRANSPORT: "socket"}
        )
    assert result["errors"] == {"base": "no_telegram"}

    async with TcpMeter([corpus_telegram(AM550)]) as bridge:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.port, CONF_TRANSPORT: "socket"}
        )
        assert result["step_id"] == "confirm"


async def _refuse(url: str, **_kwargs: Any) -> Any:
    from custom_components.smartmeter.core.errors import ConnectionFailedError

    raise ConnectionFailedError(f"cannot open {url}")


@pytest.mark.usefixtures("mock_setup_entry")
async def test_encrypted_meter_asks_for_key(hass: HomeAssistant) -> None:
    """A Smarty meter: the flow asks for the key and checks it against a live frame."""
    async with PtyMeter([smarty_frame()]) as pty:
        with _list_ports():
            result = await _start_serial(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: pty.path}
            )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "key"
        assert result["errors"] == {}

        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_KEY: "not a key"})
        assert result["step_id"] == "key"
        assert result["errors"] == {CONF_KEY: "invalid_key_format"}

        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_KEY: OTHER_KEY})
        assert result["step_id"] == "key"
        assert result["errors"] == {CONF_KEY: "invalid_key"}

        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_KEY: f" {SMARTY_KEY} "}
        )
        assert result["step_id"] == "confirm"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_KEY] == SMARTY_KEY
    assert result["result"].unique_id == meter_id(corpus_telegram(SMARTY))
    assert result["title"] == "Electricity meter SAG1030700114004"


async def test_already_configured_updates_port(hass: HomeAssistant) -> None:
    """The same meter found on another port: abort, and the existing entry follows the meter."""
    telegram = corpus_telegram(AM550)
    entry = mock_entry("/dev/ttyUSB7", meter_id(telegram))
    entry.add_to_hass(hass)
    async with PtyMeter([telegram]) as pty:
        with _list_ports():
            result = await _start_serial(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: pty.path}
            )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_URL] == pty.path


# ---- USB discovery ----


@pytest.mark.usefixtures("mock_setup_entry")
async def test_usb_discovery(hass: HomeAssistant) -> None:
    """A plugged-in P1 cable that carries telegrams: confirm, then added."""
    telegram = corpus_telegram(AM550)
    async with PtyMeter([telegram]) as pty:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=_usb(pty.path)
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "confirm"
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert flows[0]["context"]["title_placeholders"] == {"name": "P1 cable"}
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_URL] == pty.path
    assert result["result"].unique_id == meter_id(telegram)


@pytest.mark.usefixtures("mock_setup_entry")
async def test_usb_discovery_encrypted(hass: HomeAssistant) -> None:
    """A discovered cable with an encrypted meter asks for the key."""
    async with PtyMeter([smarty_frame()]) as pty:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=_usb(pty.path, serial=None)
        )
        assert result["step_id"] == "key"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_KEY: SMARTY_KEY})
        assert result["step_id"] == "confirm"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_KEY] == SMARTY_KEY


async def test_usb_discovery_silent_port(hass: HomeAssistant) -> None:
    """A quiet USB adapter: the user is asked before anything is sent; no meter answers either: not offered."""
    async with PtyMeter([]) as pty:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=_usb(pty.path)
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "usb_transmit"
        assert pty.written == b""  # nothing sent without consent
        with (
            patch("custom_components.smartmeter.core.detect.IEC_TIMEOUT", 0.3),
            patch("custom_components.smartmeter.core.detect.MBUS_SCAN_TIMEOUT", 0.01),
        ):
            result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        assert pty.written.startswith(b"/?!\r\n")  # asked, with consent
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_p1_meter"


async def test_usb_discovery_cannot_connect(hass: HomeAssistant) -> None:
    """A discovered port that does not open."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=_usb(MISSING_PORT)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_usb_discovery_port_already_configured(hass: HomeAssistant) -> None:
    """A discovered port an entry already uses is not probed (the entry has it open)."""
    mock_entry(MISSING_PORT, "4530303434303037333832323436303139").add_to_hass(hass)
    with patch("custom_components.smartmeter.config_flow.detect") as probe:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=_usb(MISSING_PORT)
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    probe.assert_not_called()


async def test_usb_discovery_meter_already_configured(hass: HomeAssistant) -> None:
    """A configured meter moved to a new cable: the entry follows it."""
    telegram = corpus_telegram(AM550)
    entry = mock_entry("/dev/ttyUSB7", meter_id(telegram))
    entry.add_to_hass(hass)
    async with PtyMeter([telegram]) as pty:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=_usb(pty.path)
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_URL] == pty.path


# ---- reconfigure ----


async def test_reconfigure(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> None:
    """Move a loaded meter to another port: entities and unique IDs stay, the entry reloads on it."""
    telegram = corpus_telegram(AM550)
    async with loaded_entry(hass, [telegram]) as (entry, old), PtyMeter([telegram]) as new:
        assert entry.state is ConfigEntryState.LOADED
        before = {
            e.entity_id: e.unique_id
            for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        }
        assert before
        with _list_ports(old.path, new.path):
            result = await entry.start_reconfigure_flow(hass)
            assert result["type"] is FlowResultType.FORM
            assert result["step_id"] == "reconfigure"
            assert [o["value"] for o in _selector_options(result)] == [old.path, new.path]
            with patch.object(
                hass.config_entries, "async_reload", wraps=hass.config_entries.async_reload
            ) as reload:
                result = await hass.config_entries.flow.async_configure(
                    result["flow_id"], {CONF_DEVICE: new.path}
                )
                assert result["type"] is FlowResultType.ABORT
                assert result["reason"] == "reconfigure_successful"
                await hass.async_block_till_done()
        reload.assert_called_once_with(entry.entry_id)
        assert entry.data[CONF_URL] == new.path
        assert entry.state is ConfigEntryState.LOADED
        assert entry.runtime_data.source.url == new.path
        after = {
            e.entity_id: e.unique_id
            for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        }
        assert after == before
        state = hass.states.get("sensor.electricity_meter_energy_import_tariff_1")
        assert state is not None
        assert state.state == "2130.115"


async def test_reconfigure_errors(hass: HomeAssistant) -> None:
    """Reconfigure shows the port errors and refuses a port carrying another meter."""
    telegram = corpus_telegram(AM550)
    entry = mock_entry("/dev/ttyUSB7", meter_id(telegram))
    entry.add_to_hass(hass)
    async with (
        PtyMeter([]) as silent,
        PtyMeter([smarty_frame()]) as encrypted,
        PtyMeter([corpus_telegram(FLUVIUS)]) as other,
    ):
        with _list_ports():
            result = await entry.start_reconfigure_flow(hass)
            for device, error in (
                (MISSING_PORT, "cannot_connect"),
                (silent.path, "no_telegram"),
                (encrypted.path, "invalid_key"),
            ):
                result = await hass.config_entries.flow.async_configure(
                    result["flow_id"], {CONF_DEVICE: device}
                )
                assert result["type"] is FlowResultType.FORM
                assert result["errors"] == {"base": error}
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: other.path}
            )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_meter"
    assert entry.data[CONF_URL] == "/dev/ttyUSB7"


async def test_reconfigure_encrypted_meter_wrong_key(hass: HomeAssistant) -> None:
    """An encrypted meter moved to a port whose frames the stored key does not open."""
    entry = mock_entry("/dev/ttyUSB7", meter_id(corpus_telegram(SMARTY)), key=SMARTY_KEY)
    entry.add_to_hass(hass)
    async with PtyMeter([smarty_frame(OTHER_KEY)]) as other, PtyMeter([smarty_frame()]) as right:
        with _list_ports():
            result = await entry.start_reconfigure_flow(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: other.path}
            )
            assert result["type"] is FlowResultType.FORM
            assert result["errors"] == {"base": "invalid_key"}
            with patch("custom_components.smartmeter.async_setup_entry", return_value=True):
                result = await hass.config_entries.flow.async_configure(
                    result["flow_id"], {CONF_DEVICE: right.path}
                )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_URL] == right.path
    assert entry.data[CONF_KEY] == SMARTY_KEY


# ---- reauth ----


async def test_reauth(hass: HomeAssistant) -> None:
    """A wrong stored key fails setup with an auth error; the new key reloads the entry."""
    with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.5):
        async with loaded_entry(
            hass, [smarty_frame()], key=OTHER_KEY, meter=meter_id(corpus_telegram(SMARTY))
        ) as (
            entry,
            pty,
        ):
            assert entry.state is ConfigEntryState.SETUP_ERROR
            flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            assert len(flows) == 1
            assert flows[0]["context"]["source"] == SOURCE_REAUTH
            result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"])
            assert result["type"] is FlowResultType.FORM
            assert result["step_id"] == "reauth_confirm"
            assert (result["description_placeholders"] or {}).get("port") == pty.path

            result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_KEY: "12"})
            assert result["errors"] == {CONF_KEY: "invalid_key_format"}
            result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_KEY: OTHER_KEY})
            assert result["errors"] == {CONF_KEY: "invalid_key"}
            result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_KEY: SMARTY_KEY})
            assert result["type"] is FlowResultType.ABORT
            assert result["reason"] == "reauth_successful"
            await hass.async_block_till_done()
            assert entry.data[CONF_KEY] == SMARTY_KEY
            assert state_is(entry, ConfigEntryState.LOADED)
            assert state_of(hass, "sensor.electricity_meter_energy_import_total").state == "6.695"


# ---- options ----


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_options_time_zone(hass: HomeAssistant) -> None:
    """The meter's time zone: validated, and applied by a reload, no restart."""
    telegram_time = "sensor.electricity_meter_telegram_time"
    async with loaded_entry(hass, [corpus_telegram(AM550)], options={CONF_TIME_ZONE: "Europe/Amsterdam"}) as (
        entry,
        _pty,
    ):
        assert state_of(hass, telegram_time).state == "2020-04-26T20:33:25+00:00"
        coordinator = entry.runtime_data
        result = await hass.config_entries.options.async_init(entry.entry_id)
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "init"
        zones = _selector_options(result)
        assert "Europe/Amsterdam" in zones
        assert hass.config.time_zone in zones

        for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", ""):
            result = await hass.config_entries.options.async_configure(
                result["flow_id"], {CONF_TIME_ZONE: bad}
            )
            assert result["type"] is FlowResultType.FORM
            assert result["errors"] == {CONF_TIME_ZONE: "invalid_time_zone"}

        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {CONF_TIME_ZONE: " UTC "}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert entry.options[CONF_TIME_ZONE] == "UTC"
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert entry.runtime_data is not coordinator
        await wait_for(lambda: state_of(hass, telegram_time).state == "2020-04-26T22:33:25+00:00")


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create every entity enabled, also those disabled by default."""
    from unittest.mock import PropertyMock

    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.mark.usefixtures("mock_setup_entry", "socket_enabled")
async def test_serial_step_accepts_url(hass: HomeAssistant) -> None:
    """The serial step also takes a serialx URL typed by hand (a bridge, an ESPHome proxy)."""
    telegram = corpus_telegram(AM550)
    async with TcpMeter([telegram]) as bridge:
        with _list_ports():
            result = await _start_serial(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: bridge.url}
            )
        assert result["step_id"] == "confirm"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_URL] == bridge.url


@pytest.mark.usefixtures("socket_enabled")
async def test_reconfigure_to_network_bridge(hass: HomeAssistant) -> None:
    """A meter moved from a USB cable to a network bridge keeps its entry."""
    telegram = corpus_telegram(AM550)
    entry = mock_entry("/dev/ttyUSB7", meter_id(telegram))
    entry.add_to_hass(hass)
    async with TcpMeter([telegram]) as bridge:
        with _list_ports(), patch("custom_components.smartmeter.async_setup_entry", return_value=True):
            result = await entry.start_reconfigure_flow(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: f" {bridge.url} "}
            )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_URL] == bridge.url


async def test_forms_render_for_the_frontend(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    """Every form's schema serialises through the HTTP API the frontend uses."""
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    steps: dict[str, Any] = {}
    with _list_ports("/dev/ttyUSB0"):
        response = await client.post("/api/config/config_entries/flow", json={"handler": DOMAIN})
        flow = await response.json()
        for step in ("serial", "network"):
            response = await client.post(
                f"/api/config/config_entries/flow/{flow['flow_id']}", json={"next_step_id": step}
            )
            assert response.status == 200
            steps[step] = await response.json()
            response = await client.post("/api/config/config_entries/flow", json={"handler": DOMAIN})
            flow = await response.json()
        entry = mock_entry("/dev/ttyUSB0", "4530303434303037333832323436303139")
        entry.add_to_hass(hass)
        response = await client.post(
            "/api/config/config_entries/options/flow", json={"handler": entry.entry_id}
        )
        assert response.status == 200
        steps["options"] = await response.json()
    assert [f["name"] for f in steps["serial"]["data_schema"]] == [CONF_DEVICE, CONF_TRANSMIT]
    assert steps["serial"]["data_schema"][0]["selector"]["select"]["options"][0]["value"] == "/dev/ttyUSB0"
    assert [f["name"] for f in steps["network"]["data_schema"]] == [
        CONF_HOST,
        CONF_PORT,
        CONF_TRANSPORT,
        CONF_TRANSMIT,
    ]
    assert steps["options"]["data_schema"][0]["description"] == {"suggested_value": hass.config.time_zone}


@pytest.mark.usefixtures("socket_enabled")
async def test_network_bridge_hangs_up(hass: HomeAssistant) -> None:
    """A bridge that accepts the connection and closes it at once cannot connect."""

    async def _hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "network"}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: port, CONF_TRANSPORT: "socket"}
        )
    finally:
        server.close()
        await server.wait_closed()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}


async def test_serial_port_with_bad_crc_only(hass: HomeAssistant) -> None:
    """A port whose telegrams all fail their CRC (the corpus' damaged sample) is not accepted."""
    async with PtyMeter([corpus_telegram(BAD_CRC)]) as pty:
        with _list_ports():
            result = await _start_serial(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: pty.path}
            )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "no_telegram"}


async def test_already_configured_loaded_entry_moves_once(hass: HomeAssistant) -> None:
    """The loaded meter found on a new port: the entry moves there with a single reload."""
    telegram = corpus_telegram(AM550)
    async with loaded_entry(hass, [telegram]) as (entry, _old), PtyMeter([telegram]) as new:
        with (
            _list_ports(),
            patch.object(
                hass.config_entries, "async_reload", wraps=hass.config_entries.async_reload
            ) as reload,
        ):
            result = await _start_serial(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_DEVICE: new.path}
            )
            assert result["type"] is FlowResultType.ABORT
            assert result["reason"] == "already_configured"
            await hass.async_block_till_done()
        reload.assert_called_once_with(entry.entry_id)
        assert entry.runtime_data.source.url == new.path
        assert state_of(hass, "sensor.electricity_meter_energy_import_tariff_1").state == "2130.115"


def test_translations() -> None:
    """strings.json and translations/en.json agree, and every error, abort and step of the flows has text."""
    import json
    import re

    root = Path(__file__).parents[1] / "custom_components" / DOMAIN
    strings = json.loads((root / "strings.json").read_text(encoding="utf-8"))
    assert json.loads((root / "translations" / "en.json").read_text(encoding="utf-8")) == strings
    flow = (root / "config_flow.py").read_text(encoding="utf-8")
    config, options = strings["config"], strings["options"]
    for error in re.findall(r'errors\[[^]]+\] = "([a-z_]+)"', flow):
        assert error in config["error"] or error in options["error"], error
    for reason in re.findall(r'reason="([a-z_]+)"', flow):
        assert reason in config["abort"], reason
    for reason in ("not_p1_meter", "reconfigure_successful", "reauth_successful"):
        assert reason in config["abort"]
    for step in re.findall(r'step_id="([a-z_]+)"', flow):
        assert step in config["step"] or step in options["step"], step
    setup = (root / "__init__.py").read_text(encoding="utf-8")
    for key in re.findall(r'translation_key="([a-z_]+)"', setup):
        assert key in strings["exceptions"], key
