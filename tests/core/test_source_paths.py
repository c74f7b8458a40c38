"""Sources: the error paths of opening links, push streams, IEC readouts, M-Bus exchanges and the P1 probe.

Over real pseudo-terminals and sockets wherever the failure can be produced
for real (a closed pty gives EIO, a peer that hangs up gives EOF, a pty
refuses parity-only changes with EINVAL); a stand-in link only where no real
port fails that way on demand (a close that raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import serialx

from custom_components.smartmeter.core import mbus, source as source_module
from custom_components.smartmeter.core.errors import ConnectionFailedError, NoTelegramError
from custom_components.smartmeter.core.protocols import SerialSettings
from custom_components.smartmeter.core.smarty import encrypt_frame
from custom_components.smartmeter.core.source import (
    P1_SETTINGS,
    Backoff,
    IecReadoutSource,
    MbusSource,
    StreamSource,
    mbus_exchange,
    open_link,
    probe,
)
from tests.simulators import MBUS_SAMPLES, MbusBus, ModeCMeter, Pty, PushMeter, corpus, secondary

from .test_source import FAST, _bad_p1, running, wait_until

P1 = corpus("dsmr/nl_dsmr50_iskra_mt382.txt")
SMARTY_PLAIN = corpus("dsmr/lu_smarty_sagemcom_oh.txt")
SMARTY_KEY = bytes.fromhex("D491470F47126332B07D1923B3504188")  # published test key (corpus MANIFEST.md)
# Framed like a telegram (header, "!", CRLF) but with no data line and no CRC: DecodeError.
NOT_A_TELEGRAM = b"/ABC5\r\n\r\n!\r\n"
LOGGER = "custom_components.smartmeter.core.source"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


@contextlib.asynccontextmanager
async def responder(pty: Pty, answer: Callable[[bytes], bytes | None]) -> AsyncIterator[None]:
    """Play an M-Bus slave on ``pty``: whatever the port's user writes is answered with ``answer(request)``."""

    async def run() -> None:
        while True:
            data = pty.read()
            if data:
                reply = answer(data)
                if reply is not None:
                    pty.write(reply)
            await asyncio.sleep(0.002)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def tcp_peer(send: bytes, *, hang_up: bool) -> AsyncIterator[str]:
    """A TCP bridge on 127.0.0.1 that sends ``send`` to each client, then hangs up or stays."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if send:
            writer.write(send)
            await writer.drain()
        if not hang_up:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"socket://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------- open_link


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("socket://127.0.0.1", "expected both host and port"),  # ValueError from serialx
        ("nosuchscheme://meter", "No handler registered"),  # serialx.SerialException
    ],
)
async def test_open_link_reports_unusable_urls(url: str, reason: str) -> None:
    with pytest.raises(ConnectionFailedError, match=reason) as err:
        await open_link(url, P1_SETTINGS[0])
    assert str(err.value).startswith(f"cannot open {url}")


async def test_open_link_on_a_pty_that_refuses_parity_only_changes() -> None:
    """The pty is at 9600 8N1; 9600 7E1 changes only the parity: EINVAL, so it goes via 19200."""
    port = Pty()
    try:
        first = await open_link(port.path, SerialSettings(9600, 8, "N", 1))
        await first.close()
        link = await open_link(port.path, SerialSettings(9600, 7, "E", 1))
        try:
            assert port.settings.baudrate == 9600  # switched back to the rate asked for
            await link.write(b"/?!\r\n")
            await asyncio.sleep(0.05)
            assert port.read() == b"/?!\r\n"
        finally:
            await link.close()
    finally:
        port.close()


async def test_open_link_reports_the_first_error_when_the_retry_fails_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """EINVAL from a real pty, then the port is gone (unplugged) when opened at the other rate."""
    port = Pty()
    real = source_module._serial_for
    urls: list[tuple[str, int | None]] = []

    def serial_for(url: str, settings: SerialSettings, baudrate: int | None = None) -> serialx.AsyncSerial:
        urls.append((url, baudrate))
        return real(url if baudrate is None else str(tmp_path / "ttyGONE"), settings, baudrate)

    monkeypatch.setattr(source_module, "_serial_for", serial_for)
    try:
        await (await open_link(port.path, SerialSettings(2400, 8, "N", 1))).close()  # the pty is at 2400 8N1
        with pytest.raises(ConnectionFailedError, match="Invalid argument") as err:
            await open_link(port.path, SerialSettings(2400, 8, "E", 1))
    finally:
        port.close()
    assert urls[-2:] == [(port.path, None), (port.path, 9600)]
    assert isinstance(err.value.__cause__, OSError)
    assert err.value.__cause__.errno == errno.ENOENT


class _FailingClose:
    """A link whose close fails (the one failure no real port produces on demand)."""

    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1
        raise OSError(errno.EIO, "Input/output error")


async def test_close_errors_are_swallowed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    source = StreamSource("/dev/null", protocol="dsmr")
    link = _FailingClose()
    source._link = link  # type: ignore[assignment]
    statuses: list[bool] = []
    source.on_status = statuses.append
    await source.close()
    await source.close()  # idempotent: the link is closed once
    assert link.closed == 1
    assert source._link is None
    assert any("Error closing link" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)
    assert statuses == []  # it was never connected


# ---------------------------------------------------------------- push streams


async def test_undecodable_frames_are_counted_and_dropped() -> None:
    async with PushMeter([NOT_A_TELEGRAM, P1]) as meter:
        source = StreamSource(meter.path, protocol="dsmr", backoff=FAST)
        async with running(source) as frames:
            await wait_until(lambda: len(frames) >= 2 and source.stats.frames_undecodable >= 2)
            assert source.connected
    assert source.stats.frames_bad_checksum == 0
    assert source.stats.disconnects == 0
    assert "not a telegram" in (source.stats.last_error or "")
    assert all(frame.main is not None and frame.main.id for frame in frames)


async def test_a_decoder_bug_does_not_end_the_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception from a decoder is counted like an undecodable frame; the link stays."""
    real = source_module.decode_telegram
    calls = 0

    def flaky(raw: bytes, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise IndexError("index out of range")
        return real(raw, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(source_module, "decode_telegram", flaky)
    async with PushMeter([P1]) as meter:
        source = StreamSource(meter.path, protocol="dsmr", backoff=FAST)
        async with running(source) as frames:
            await wait_until(lambda: len(frames) >= 1)
    assert source.stats.frames_undecodable == 1
    assert source.stats.last_error == "decoder error IndexError: index out of range"
    assert (source.stats.connects, source.stats.disconnects) == (1, 0)
    assert source.raw_history[0] == P1  # the frame that tripped the decoder is kept for diagnostics


async def test_dlms_frames_without_meter_id_are_held_back_until_one_has_it() -> None:
    list1 = corpus("han_dlms/no_kaifa_ma304h4_list1.bin")
    async with PushMeter([list1], interval=0.01) as meter:
        source = StreamSource(meter.path, protocol="dlms", backoff=FAST)
        async with running(source) as frames:
            await wait_until(lambda: len(source.raw_history) >= 3)
            assert frames == []
            assert not source.connected
    # dropped, but not as errors: the meter is fine, it just has not said who it is yet
    assert source.stats.frames_ok == 0
    assert source.stats.frames_undecodable == source.stats.frames_bad_checksum == 0
    assert source.stats.last_error is None


async def test_silent_link_times_out_and_reopens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port = Pty()
    statuses: list[bool] = []
    source = StreamSource(
        port.path, protocol="sml", idle_timeout=0.05, backoff=FAST, on_status=statuses.append
    )
    try:
        async with running(source):
            await wait_until(lambda: source.stats.disconnects >= 3)
    finally:
        port.close()
    assert source.stats.connects >= 3  # reopened after each timeout
    assert source.stats.last_error == f"no data from {port.path} for 0 s"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "Lost connection" in warnings[0].getMessage()
    assert statuses == []  # never delivered, so never reported up or down


async def test_close_during_backoff_ends_the_frames_iterator() -> None:
    port = Pty()
    source = StreamSource(port.path, protocol="sml", idle_timeout=0.05, backoff=Backoff(first=0.5, cap=0.5))

    async def consume() -> list[object]:
        return [frame async for frame in source.frames()]

    reader = asyncio.create_task(consume())
    try:
        await wait_until(lambda: source.stats.disconnects == 1)
        await source.close()  # while frames() sleeps before the next attempt
        assert await asyncio.wait_for(reader, 2) == []  # ends by itself, not cancelled
    finally:
        reader.cancel()
        port.close()
    assert source.stats.connects == 1  # no attempt after close


async def test_close_while_reading_is_not_a_lost_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Regression: close() during a read counted a disconnect and warned "Lost connection ... retrying"."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with PushMeter([P1], interval=0.02) as meter:
        statuses: list[bool] = []
        source = StreamSource(meter.path, protocol="dsmr", backoff=FAST, on_status=statuses.append)
        frames: list[object] = []

        async def consume() -> None:
            async for frame in source.frames():
                frames.append(frame)  # noqa: PERF401 - looked at while this runs

        reader = asyncio.create_task(consume())
        try:
            await wait_until(lambda: len(frames) >= 2)
            await source.close()
            await asyncio.wait_for(reader, 2)  # frames() ends by itself
        finally:
            reader.cancel()
    assert source.stats.disconnects == 0
    assert source.stats.last_error is None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert statuses == [True, False]
    assert not source.connected


# ---------------------------------------------------------------- IEC 62056-21 readout


async def test_iec_link_that_fails_when_switching_back_to_300_baud() -> None:
    """After a readout at 9600 the meter's port goes away: switching to 300 baud fails (EIO)."""
    meter = ModeCMeter()
    await meter.__aenter__()
    source = IecReadoutSource(meter.path, interval=0.3, timeout=0.5, backoff=Backoff(first=5, cap=5))
    try:
        async with running(source) as frames:
            await wait_until(lambda: len(frames) == 1)
            assert meter.rates[0] != 300
            await meter.__aexit__(None, None, None)
            await wait_until(lambda: source.stats.disconnects == 1)
            assert not source.connected
    finally:
        await meter.__aexit__(None, None, None)
    assert source.stats.last_error is not None
    # EIO from the hung-up pty, or EBADF once the transport has seen the hang-up and let go of it
    assert re.fullmatch(rf"{meter.path}: \[Errno (5|9)\] .+", source.stats.last_error)


# ---------------------------------------------------------------- M-Bus exchanges


def _short(c: int, a: int) -> bytes:
    return bytes((mbus.START_SHORT, c, a, (c + a) & 0xFF, mbus.STOP))


async def test_mbus_exchange_removes_an_echo_and_ends_after_a_short_frame() -> None:
    """A level converter echoes the request; the slave answers with a short frame."""
    port = Pty()
    reply = _short(0x08, 5)
    request = mbus.snd_nke(5)
    try:
        async with responder(port, lambda data: data + reply):
            loop = asyncio.get_running_loop()
            started = loop.time()
            link = await open_link(port.path, SerialSettings(2400, 8, "E", 1))
            try:
                answer = await mbus_exchange(link, request, timeout=3.0)
            finally:
                await link.close()
            elapsed = loop.time() - started
    finally:
        port.close()
    assert answer == reply
    assert elapsed < 1.5  # complete frame + settle time, not the 3 s timeout


async def test_mbus_exchange_drains_a_late_answer_before_the_next_request() -> None:
    port = Pty()
    answers = iter([b"\xe5", b"\xe5"])
    try:
        async with responder(port, lambda data: next(answers)):
            link = await open_link(port.path, SerialSettings(2400, 8, "E", 1))
            try:
                # no time at all to wait: the first ACK comes too late for this exchange ...
                assert await mbus_exchange(link, mbus.snd_nke(1), timeout=0) is None
                await asyncio.sleep(0.05)
                # ... and is thrown away before the next one, so it cannot pass for two answers
                assert await mbus_exchange(link, mbus.snd_nke(2), timeout=1.0) == b"\xe5"
            finally:
                await link.close()
    finally:
        port.close()
    assert port.received == mbus.snd_nke(1) + mbus.snd_nke(2)


async def test_mbus_exchange_on_a_dead_pty() -> None:
    port = Pty()
    link = await open_link(port.path, SerialSettings(2400, 8, "E", 1))
    port.close()
    await asyncio.sleep(0.05)  # the transport has seen the hang-up: the drain before the request fails
    try:
        with pytest.raises(ConnectionFailedError, match="M-Bus link failed"):
            await mbus_exchange(link, mbus.snd_nke(1), timeout=0.2)
    finally:
        await link.close()


async def test_mbus_exchange_when_the_port_dies_while_waiting() -> None:
    port = Pty()

    def die(data: bytes) -> None:
        port.close()

    try:
        async with responder(port, die):
            link = await open_link(port.path, SerialSettings(2400, 8, "E", 1))
            try:
                with pytest.raises(ConnectionFailedError, match="M-Bus link failed"):
                    await mbus_exchange(link, mbus.req_ud2(5, True), timeout=2.0)
            finally:
                await link.close()
    finally:
        port.close()


@pytest.mark.usefixtures("socket_enabled")
async def test_mbus_exchange_on_a_bridge_that_hung_up() -> None:
    async with tcp_peer(b"", hang_up=True) as url:
        link = await open_link(url, SerialSettings(2400, 8, "E", 1))
        try:
            await asyncio.sleep(0.05)  # the bridge has closed the connection
            with pytest.raises(ConnectionFailedError, match="the M-Bus link closed"):
                await mbus_exchange(link, mbus.snd_nke(1), timeout=0.2)
        finally:
            await link.close()


# ---------------------------------------------------------------- M-Bus source


async def test_mbus_source_absent_secondary_and_a_slave_that_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    absent = "12345678FFFFFFFF"
    assert not any(mbus.mask_matches(absent, secondary(raw)) for raw in MBUS_SAMPLES.values())
    async with MbusBus(MBUS_SAMPLES, silent={7}) as bus:
        source = MbusSource(
            bus.path, addresses=["p5", "p7", absent], interval=0.02, timeout=0.05, backoff=FAST
        )
        async with running(source) as frames:
            await wait_until(lambda: source.no_answer["p7"] >= 2 and source.no_answer[absent] >= 2)
            bus.silent.clear()
            await wait_until(
                lambda: any(f.meters[0].serial_number == secondary(MBUS_SAMPLES[7]) for f in frames)
            )
    # the absent slave was selected, never asked for data
    assert mbus.select_secondary(absent) in bus.requests
    assert source.stats.disconnects == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "slave p7" in m and "does not answer" in m]) == 1
    assert len([m for m in messages if "slave p7" in m and "answers again" in m]) == 1
    assert len([m for m in messages if absent in m and "does not answer" in m]) == 1


async def test_mbus_source_counts_a_corrupt_answer_and_reads_the_others() -> None:
    good = MBUS_SAMPLES[9]
    corrupt = good[:-2] + bytes((good[-2] ^ 0xFF,)) + good[-1:]
    async with MbusBus(MBUS_SAMPLES) as bus:
        bus.answer_with(9, corrupt)
        source = MbusSource(bus.path, addresses=["p9", "p5"], interval=0.02, timeout=0.1, backoff=FAST)
        async with running(source) as frames:
            await wait_until(lambda: len(frames) >= 2)
            assert source.connected
    assert source.stats.frames_bad_checksum >= 2
    assert {f.meters[0].serial_number for f in frames} == {secondary(MBUS_SAMPLES[5])}
    assert "checksum" in (source.stats.last_error or "")
    assert corrupt in source.raw_history


# ---------------------------------------------------------------- probe


async def test_probe_finds_a_p1_telegram_without_transmitting() -> None:
    async with PushMeter([P1], only_at=P1_SETTINGS[0]) as meter:
        result = await probe(meter.path, timeout=2)
    assert result.settings == P1_SETTINGS[0]
    assert result.frame is not None and result.frame.protocol == "dsmr"
    assert (result.encrypted, result.error) == (False, None)
    assert meter.received == b""


async def test_probe_walks_the_line_settings_until_one_works() -> None:
    wanted = P1_SETTINGS[1]
    assert wanted.baudrate != P1_SETTINGS[0].baudrate
    async with PushMeter([], interval=0.02) as meter:

        def at_rate() -> None:  # a pty keeps the rate, not the parity: go by the rate
            meter.frames = [P1] if meter.settings.baudrate == wanted.baudrate else [b"\xfe\x80\x00\xf8" * 8]

        meter.on_tick = at_rate
        result = await probe(meter.path, timeout=0.3)
    assert result.settings == wanted
    assert result.frame is not None


async def test_probe_reports_an_encrypted_meter_without_key() -> None:
    frame = encrypt_frame(SMARTY_PLAIN, SMARTY_KEY, frame_counter=7)
    async with PushMeter([frame]) as meter:
        without = await probe(meter.path, timeout=2)
        wrong = await probe(meter.path, key=bytes(16), timeout=2)
        right = await probe(meter.path, key=SMARTY_KEY, timeout=2)
    assert (without.frame, without.encrypted) == (None, True)
    assert without.error is not None and "key" in without.error.lower()
    assert (wrong.frame, wrong.encrypted) == (None, True)
    assert right.frame is not None and right.encrypted


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ([_bad_p1(P1)], "telegrams arrive with a bad CRC"),
        ([NOT_A_TELEGRAM], "not a telegram"),
        ([], "no telegram received"),
    ],
    ids=["bad-crc", "undecodable", "silent"],
)
async def test_probe_without_a_good_telegram(sent: list[bytes], reason: str) -> None:
    async with PushMeter(sent, interval=0.02) as meter:
        with pytest.raises(NoTelegramError, match=reason):
            await probe(meter.path, timeout=0.15, candidates=P1_SETTINGS[:2])
    assert meter.received == b""


async def test_probe_when_the_port_dies() -> None:
    port = Pty()

    async def unplug() -> None:
        await asyncio.sleep(0.1)
        port.close()

    unplugging = asyncio.create_task(unplug())
    try:
        with pytest.raises(ConnectionFailedError, match=r"device disconnected|Input/output"):
            await probe(port.path, timeout=2)
    finally:
        await unplugging
        port.close()


@pytest.mark.usefixtures("socket_enabled")
async def test_probe_on_a_network_bridge_tries_its_settings_once() -> None:
    async with tcp_peer(P1, hang_up=False) as url:
        result = await probe(url, timeout=2, candidates=(P1_SETTINGS[1], P1_SETTINGS[0]))
    assert result.settings == P1_SETTINGS[1]  # the bridge sets the line; only the first is used
    assert result.frame is not None


@pytest.mark.usefixtures("socket_enabled")
async def test_probe_on_a_bridge_that_hangs_up() -> None:
    async with tcp_peer(b"", hang_up=True) as url:
        with pytest.raises(ConnectionFailedError, match="closed the connection"):
            await probe(url, timeout=2)


async def test_probe_on_a_missing_port(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailedError, match="cannot open"):
        await probe(str(tmp_path / "ttyNOPE"), timeout=0.1)
