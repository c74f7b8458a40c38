"""detect(): what it reports when frames are damaged, links fail, meters answer badly; over real ptys and sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

import pytest

from custom_components.smartmeter.core import detect as detect_module, mbus
from custom_components.smartmeter.core.detect import detect
from custom_components.smartmeter.core.errors import ConnectionFailedError, NoTelegramError
from custom_components.smartmeter.core.protocols import PROTOCOLS
from tests.simulators import (
    MBUS_SAMPLES,
    MbusBus,
    ModeCMeter,
    Pty,
    PushMeter,
    corpus,
    iec_data_message,
    secondary,
)

from .test_detect import quick  # noqa: F401 - the fixture
from .test_source import _bad_sml
from .test_source_paths import NOT_A_TELEGRAM, responder, tcp_peer

SML = corpus("sml/de_holley_frame2.bin")
EM214 = corpus("iec62056-21/de_itron_em214_modeC_noetx.txt")
EM214_IDENT = EM214[: EM214.index(b"\n") + 1]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


@pytest.fixture
def short_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan primary addresses 0-15 only (the simulated slaves are on 5, 7, 9 or 0): 16 exchanges, not 251."""
    monkeypatch.setattr(mbus, "scan_primary", functools.partial(mbus.scan_primary, addresses=range(16)))


def _corrupt(raw: bytes) -> bytes:
    """An M-Bus long frame with its checksum byte wrong."""
    return raw[:-2] + bytes((raw[-2] ^ 0xFF,)) + raw[-1:]


# ---------------------------------------------------------------- listening


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (_bad_sml(SML), "sml frame with a bad checksum (SML frame CRC mismatch"),
        (NOT_A_TELEGRAM, "dsmr frame that does not decode (no data line and no CRC"),
    ],
    ids=["bad-hcs", "undecodable"],
)
async def test_what_was_wrong_with_the_frames_is_said(sent: bytes, problem: str) -> None:
    async with PushMeter([sent], interval=0.01) as meter:
        with pytest.raises(NoTelegramError) as err:
            await detect(meter.path, listen=0.1)
    message = str(err.value)
    assert "bytes received" in message
    assert problem in message
    assert meter.received == b""  # listening only


async def test_a_decoder_bug_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    info = PROTOCOLS["sml"]

    def broken(raw: bytes, key: bytes | None, tz: object) -> object:
        raise KeyError("obis")

    monkeypatch.setitem(PROTOCOLS, "sml", dataclasses.replace(info, decode=broken))
    async with PushMeter([SML], interval=0.01) as meter:
        with pytest.raises(NoTelegramError, match="sml decoder error KeyError: 'obis'"):
            await detect(meter.path, listen=0.1)


async def test_port_that_dies_while_listening() -> None:
    port = Pty()

    async def unplug() -> None:
        await asyncio.sleep(0.1)
        port.close()

    unplugging = asyncio.create_task(unplug())
    try:
        with pytest.raises(ConnectionFailedError, match=port.path):
            await detect(port.path, listen=2)
    finally:
        await unplugging
        port.close()


@pytest.mark.usefixtures("socket_enabled")
async def test_bridge_that_hangs_up_while_listening() -> None:
    async with tcp_peer(b"", hang_up=True) as url:
        with pytest.raises(ConnectionFailedError, match="closed the connection"):
            await detect(url, listen=2)


@pytest.mark.usefixtures("socket_enabled")
async def test_bridge_is_listened_to_once_and_reported_with_the_protocol_settings() -> None:
    async with tcp_peer(SML * 3, hang_up=False) as url:
        found = await detect(url, listen=2)
    assert found.protocol == "sml"
    assert found.settings == PROTOCOLS["sml"].settings[0]


# ---------------------------------------------------------------- IEC 62056-21


@pytest.mark.usefixtures("quick")
async def test_iec_readout_with_a_bad_bcc_twice() -> None:
    message = bytearray(iec_data_message(EM214[len(EM214_IDENT) :].removeprefix(b"\x02")))
    message[-1] ^= 0x01
    async with ModeCMeter(message=bytes(message)) as meter:
        with pytest.raises(
            NoTelegramError, match=r"IEC 62056-21 readout with a bad checksum, twice \(data message BCC"
        ):
            await detect(meter.path, listen=0.05, transmit=True)
    assert meter.requests == [b"/?!\r\n"] * 2  # retried once


@pytest.mark.usefixtures("quick")
async def test_iec_readout_that_does_not_decode() -> None:
    """A mode C meter whose data message has no data set and no checksum (no ETX, no BCC)."""
    async with ModeCMeter(message=b"\x02!\r\n") as meter:
        with pytest.raises(NoTelegramError, match="IEC 62056-21 readout that does not decode"):
            await detect(meter.path, listen=0.05, transmit=True)
    assert meter.requests == [b"/?!\r\n"]  # not retried: only a bad BCC is


@pytest.mark.usefixtures("quick")
async def test_port_that_dies_during_the_iec_sign_on() -> None:
    port = Pty()

    def die(request: bytes) -> None:
        port.close()

    try:
        async with responder(port, die):
            with pytest.raises(ConnectionFailedError):
                await detect(port.path, listen=0.05, transmit=True)
    finally:
        port.close()


# ---------------------------------------------------------------- M-Bus


@pytest.mark.usefixtures("quick", "short_scan")
async def test_mbus_slaves_whose_answers_all_fail_their_checksum() -> None:
    async with MbusBus(MBUS_SAMPLES) as bus:
        for address, raw in MBUS_SAMPLES.items():
            bus.answer_with(address, _corrupt(raw))
        with pytest.raises(NoTelegramError) as err:
            await detect(bus.path, listen=0.05, transmit=True)
    assert "M-Bus slaves p5, p7, p9: long frame checksum" in str(err.value)
    # each of the first slaves was asked for its sample (the scan uses SND_NKE)
    assert all(bus.requests_to(address) >= 1 for address in MBUS_SAMPLES)


@pytest.mark.usefixtures("quick", "short_scan")
async def test_mbus_sample_comes_from_the_next_slave_when_one_fails() -> None:
    async with MbusBus(MBUS_SAMPLES) as bus:
        bus.answer_with(5, _corrupt(MBUS_SAMPLES[5]))
        found = await detect(bus.path, listen=0.05, transmit=True)
    assert found.addresses == ("p5", "p7", "p9")
    assert found.frame is not None
    assert found.frame.meters[0].serial_number == secondary(MBUS_SAMPLES[7])


class _FlakyBus(MbusBus):
    """Slaves all on primary address 0; the first select of a full secondary address goes unanswered."""

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__({0: frames[0]})
        self.slaves = {index: (secondary(raw), raw) for index, raw in enumerate(frames)}
        self.primary_of = dict.fromkeys(self.slaves, 0)
        self.full = {mbus.select_secondary(address) for address, _ in self.slaves.values()}
        self.missed: list[bytes] = []

    def _answer(self, request: bytes) -> bytes | None:
        if request in self.full and not self.missed:
            self.missed.append(request)
            return None
        return super()._answer(request)


@pytest.mark.usefixtures("quick", "short_scan")
async def test_mbus_secondary_slave_that_misses_its_sample_select() -> None:
    frames = list(MBUS_SAMPLES.values())
    async with _FlakyBus(frames) as bus:
        order: list[str] = []
        original = detect_module._read_one

        async def read_one(link: object, address: str) -> bytes | None:
            order.append(address)
            return await original(link, address)  # type: ignore[arg-type]

        detect_module._read_one = read_one  # type: ignore[assignment]
        try:
            found = await detect(bus.path, listen=0.05, transmit=True)
        finally:
            detect_module._read_one = original
    assert bus.missed == [mbus.select_secondary(order[0])]
    assert sorted(found.addresses) == sorted(secondary(raw) for raw in frames)
    assert found.frame is not None
    # the flaky slave was asked first and skipped; the sample is the next slave's
    assert found.frame.meters[0].serial_number == order[1] != order[0]


@pytest.mark.usefixtures("quick", "short_scan")
async def test_mbus_acknowledged_broadcast_but_no_slave_to_be_found() -> None:
    """Something acknowledges the broadcast SND_NKE, but no slave answers by address."""
    port = Pty()

    def acknowledge_broadcast(request: bytes) -> bytes | None:
        if request == mbus.snd_nke(mbus.ADDRESS_BROADCAST_ANSWER) and port.settings.baudrate == 2400:
            return b"\xe5"
        return None

    try:
        async with responder(port, acknowledge_broadcast):
            with pytest.raises(
                NoTelegramError, match="M-Bus answers, but no slave could be found by address"
            ):
                await detect(port.path, listen=0.05, transmit=True)
    finally:
        port.close()
