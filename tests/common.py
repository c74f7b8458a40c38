"""Test helpers: meters on a real pseudo-terminal or TCP socket that replay real telegrams."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tty
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util.read_only_dict import ReadOnlyDict
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import (
    ANY,
    DeviceRegistryEntrySnapshot,
    EntityRegistryEntrySnapshot,
    StateSnapshot,
)

from custom_components.smartmeter.const import (
    CONF_BAUDRATE,
    CONF_BYTESIZE,
    CONF_KEY,
    CONF_METER_ID,
    CONF_PARITY,
    CONF_PROTOCOL,
    CONF_STOPBITS,
    CONF_URL,
    DOMAIN,
)
from custom_components.smartmeter.core.crc import crc16_arc
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import encrypt_frame, parse_key
from tests.conftest import corpus_dir

FIXTURES = Path(__file__).parent / "fixtures"

# The published openHAB Smarty test key (corpus smarty/lu_smarty_encrypted_frame).
SMARTY_KEY = "D491470F47126332B07D1923B3504188"
OTHER_KEY = "00112233445566778899AABBCCDDEEFF"

# The corpus telegrams every test module leans on.
AM550 = "dsmr/nl_dsmr50_iskra_am550_two_mbus.txt"
MT382_V5 = "dsmr/nl_dsmr50_iskra_mt382.txt"
KAIFA = "dsmr/nl_dsmr42_kaifa.txt"
SMARTY = "dsmr/lu_smarty_sagemcom_oh.txt"
AUSTRIA = "dsmr/at_sagemcom_t210dr_oh.txt"
FLUVIUS = "dsmr/be_fluvius_emucs171_sagemcom_t211.txt"
FLUVIUS_BAD_GAS = "dsmr/be_fluvius_invalid_gas_timestamp.txt"
BAD_CRC = "dsmr/lu_smarty_sagemcom_long_decrypted.txt"


def corpus_telegram(name: str) -> bytes:
    """Wire bytes of a corpus sample, e.g. ``dsmr/nl_dsmr50_iskra_mt382.txt``."""
    return (corpus_dir() / name).read_bytes()


def corpus_p1_samples() -> list[str]:
    """Every P1 telegram of the corpus, as corpus-relative names."""
    return sorted(f"dsmr/{path.name}" for path in (corpus_dir() / "dsmr").glob("*.txt"))


def smarty_frame(key: str = SMARTY_KEY, plaintext: bytes | None = None, counter: int = 1) -> bytes:
    """A real Smarty plaintext, encrypted the way the meter sends it."""
    return encrypt_frame(plaintext or corpus_telegram(SMARTY), parse_key(key), frame_counter=counter)


def meter_id(telegram: bytes, key: str | None = None) -> str:
    """The main meter's equipment identifier (the entry's unique id)."""
    main = decode_telegram(telegram, key=parse_key(key) if key else None).main
    assert main is not None
    return main.id


def with_crc(body: bytes) -> bytes:
    """A telegram ``/ ... !`` completed with its correct CRC16 and CRLF."""
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def replace_value(telegram: bytes, old: bytes, new: bytes, *, fix_crc: bool) -> bytes:
    """A variant of a CRC-carrying telegram with one value changed (CRC kept wrong, or fixed)."""
    assert old in telegram
    changed = telegram.replace(old, new, 1)
    if not fix_crc:
        return changed
    bang = changed.rindex(b"!")
    return with_crc(changed[: bang + 1])


def entry_data(url: str, meter: str, *, key: str | None = None) -> dict[str, Any]:
    """Config entry data as the config flow stores it."""
    return {
        CONF_URL: url,
        CONF_PROTOCOL: "dsmr",
        CONF_BAUDRATE: 115200,
        CONF_BYTESIZE: 8,
        CONF_PARITY: "N",
        CONF_STOPBITS: 1,
        CONF_KEY: key,
        CONF_METER_ID: meter,
    }


def mock_entry(
    url: str,
    meter: str,
    *,
    key: str | None = None,
    options: dict[str, Any] | None = None,
    title: str = "Electricity meter",
) -> MockConfigEntry:
    """A config entry for the meter ``meter`` on ``url``."""
    return MockConfigEntry(
        domain=DOMAIN,
        unique_id=meter,
        title=title,
        data=entry_data(url, meter, key=key),
        options=options or {},
    )


def state_is(entry: MockConfigEntry, state: ConfigEntryState) -> bool:
    """Whether the entry is in ``state`` now (a call, so type checkers do not pin an earlier state)."""
    return entry.state is state


def state_of(hass: HomeAssistant, entity_id: str) -> State:
    """The entity's state, which must exist."""
    state = hass.states.get(entity_id)
    assert state is not None, f"{entity_id} has no state"
    return state


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the event loop run until ``condition()`` holds (a bound on hangs, not a timed assertion)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling Home Assistant's state machine
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def loaded_entry(
    hass: HomeAssistant,
    telegrams: list[bytes],
    *,
    key: str | None = None,
    options: dict[str, Any] | None = None,
    interval: float = 0.05,
    meter: str | None = None,
) -> AsyncIterator[tuple[MockConfigEntry, PtyMeter]]:
    """A meter on a pty and an entry set up on it; unloaded (port closed) on exit."""
    async with PtyMeter(telegrams, interval) as pty:
        entry = mock_entry(pty.path, meter or meter_id(telegrams[0], key), key=key, options=options)
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        try:
            yield entry, pty
        finally:
            await unload(hass, entry)


async def unload(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Unload an entry if it is loaded (closes its port)."""
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


# Registry attributes that mean the same on every supported Home Assistant
# version (newer versions add bookkeeping fields; those stay out of snapshots).
_ENTITY_FIELDS = (
    "area_id",
    "capabilities",
    "device_class",
    "disabled_by",
    "entity_category",
    "entity_id",
    "has_entity_name",
    "hidden_by",
    "icon",
    "name",
    "options",
    "original_device_class",
    "original_icon",
    "original_name",
    "platform",
    "supported_features",
    "translation_key",
    "unique_id",
    "unit_of_measurement",
)
_DEVICE_FIELDS = (
    "area_id",
    "configuration_url",
    "connections",
    "disabled_by",
    "entry_type",
    "hw_version",
    "identifiers",
    "labels",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "name_by_user",
    "serial_number",
    "sw_version",
)


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or type(value).__name__ == "ReadOnlyDict":
        # str() of a StrEnum key is its value (newer versions key capabilities by enum).
        return {str(k) if isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    return value


def entity_snapshot(entry: er.RegistryEntry) -> EntityRegistryEntrySnapshot:
    """An entity registry entry, reduced to what every supported version has."""
    data = {name: _plain(getattr(entry, name)) for name in _ENTITY_FIELDS}
    # Newer versions also store the display precision in the registry options.
    options = data["options"]
    options.get("sensor", {}).pop("suggested_display_precision", None)
    data["options"] = {domain: values for domain, values in options.items() if values}
    data["config_entry_id"] = ANY
    data["device_id"] = ANY
    data["id"] = ANY
    return EntityRegistryEntrySnapshot(data)


def state_snapshot(state: State) -> StateSnapshot:
    """A state as Home Assistant's snapshot extension shows it, attribute keys as plain strings."""
    return StateSnapshot(
        state.as_dict()
        | {
            "attributes": ReadOnlyDict(_plain(state.attributes)),
            "context": ANY,
            "last_changed": ANY,
            "last_reported": ANY,
            "last_updated": ANY,
        }
    )


def device_snapshot(
    device: dr.DeviceEntry, devices: Iterable[dr.DeviceEntry] = ()
) -> DeviceRegistryEntrySnapshot:
    """A device registry entry, reduced to what every supported version has.

    ``via_device_id`` is shown as the identifiers of the parent device, so the
    snapshot shows which meter a sub-meter hangs off.
    """
    data = {name: _plain(getattr(device, name)) for name in _DEVICE_FIELDS}
    data["id"] = ANY
    via = None
    if device.via_device_id is not None:
        parent = next((d for d in devices if d.id == device.via_device_id), None)
        via = _plain(parent.identifiers) if parent is not None else ANY
    data["via_device"] = via
    return DeviceRegistryEntrySnapshot(data)


class PtyMeter:
    """Writes telegrams to the master side of a pty; the slave path is the 'port'."""

    def __init__(self, telegrams: list[bytes], interval: float = 0.05) -> None:
        """Replay ``telegrams`` in a loop every ``interval`` seconds."""
        self.telegrams = telegrams
        self.interval = interval
        self.path = ""
        self._master = -1
        self._slave = -1
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self._written = b""

    async def __aenter__(self) -> Self:
        """Open the pty and start writing."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self._slave)
        self._task = asyncio.create_task(self._run())
        return self

    def set_telegrams(self, telegrams: list[bytes]) -> None:
        """Replace what the meter sends."""
        self.telegrams = telegrams

    @property
    def written(self) -> bytes:
        """Everything the port's user wrote to the meter so far."""
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # BlockingIOError: nothing (more) to read
                break
            if not data:
                break
            self._written += data
        return self._written

    async def _run(self) -> None:
        i = 0
        while True:
            data = self.telegrams[i % len(self.telegrams)] if self.telegrams else b""
            i += 1
            with contextlib.suppress(BlockingIOError, OSError):
                if data:
                    os.write(self._master, data)
                    self.sent += 1
            await asyncio.sleep(self.interval)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop writing and close both ends."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpMeter:
    """A network P1 bridge on 127.0.0.1: sends telegrams to every client in a loop.

    ``drop_clients`` closes the open connections (the bridge restarting),
    ``stop``/``start`` close and reopen the listening socket on the same port.
    Needs the ``socket_enabled`` fixture.
    """

    def __init__(self, telegrams: list[bytes], interval: float = 0.05) -> None:
        """Replay ``telegrams`` in a loop every ``interval`` seconds to each client."""
        self.telegrams = telegrams
        self.interval = interval
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The serialx URL of the bridge."""
        return f"socket://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        """Start listening on a free port."""
        await self.start()
        return self

    async def start(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        i = 0
        try:
            while not writer.is_closing():
                if self.telegrams:
                    writer.write(self.telegrams[i % len(self.telegrams)])
                    i += 1
                    await writer.drain()
                await asyncio.sleep(self.interval)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def drop_clients(self) -> None:
        """Close every open connection."""
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """Stop listening and drop the clients."""
        if self._server is not None:
            self._server.close()
        await self.drop_clients()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop listening and drop the clients."""
        await self.stop()
