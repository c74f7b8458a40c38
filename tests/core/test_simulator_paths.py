"""The P1 simulator's corners: template variants, fault plans, output errors, slow outputs, ports and clients."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import struct
import termios
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core import simulator as sim_module
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.simulator import (
    DEFAULT_TEMPLATE,
    Fault,
    P1TelegramModel,
    PtySimulator,
    TcpSimulator,
    inject_fault,
    main,
)
from tests.conftest import corpus_dir

GUARD = 10
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


class _Recorder(sim_module._Simulator):
    """A simulator whose output is a list; ``fail`` output errors first, each emit taking ``slow`` seconds."""

    def __init__(self, *, fail: int = 0, slow: float = 0.0, **options: object) -> None:
        super().__init__(P1TelegramModel(seed=3), **options)  # type: ignore[arg-type]
        self.fail = fail
        self.slow = slow
        self.out: list[bytes] = []
        self.times: list[float] = []

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _emit(self, data: bytes) -> None:
        self.times.append(asyncio.get_running_loop().time())
        if self.slow:
            await asyncio.sleep(self.slow)
        if self.fail:
            self.fail -= 1
            raise OSError(5, "Input/output error")
        self.out.append(data)


# ---------------------------------------------------------------- the model


def test_timestamp_without_dst_letter_stays_without() -> None:
    """An older meter writes 12 digits (no S/W): the rendered stamp keeps that format."""
    template = DEFAULT_TEMPLATE.replace(b"0-0:1.0.0(", b"0-0:1.0.0(X", 1)
    start = template.index(b"0-0:1.0.0(X") + len(b"0-0:1.0.0(X")
    stamp = template[start : template.index(b")", start)]
    template = template.replace(b"0-0:1.0.0(X" + stamp + b")", b"0-0:1.0.0(" + stamp[:12] + b")", 1)
    model = P1TelegramModel(template, tz=AMSTERDAM, seed=1)
    telegram = model.render(datetime(2025, 7, 1, 10, 0, 0, tzinfo=UTC))
    assert b"0-0:1.0.0(250701120000)" in telegram
    main_meter = decode_telegram(telegram, tz=AMSTERDAM).main
    assert main_meter is not None and main_meter.register("timestamp") is not None


def test_solar_gives_nothing_at_night() -> None:
    model = P1TelegramModel(seed=5, solar_kwp=6.0, tz=AMSTERDAM)
    for hour in (22, 23, 0, 1, 2):  # UTC: night in Amsterdam in June
        model.render(datetime(2025, 6, 21 if hour > 12 else 22, hour, 0, tzinfo=UTC))
        assert model.last is not None and model.last.power_export_w == 0
    assert model.profile._solar(datetime(2025, 6, 21, 1, 0, tzinfo=AMSTERDAM)) == 0.0
    assert model.profile._solar(datetime(2025, 6, 21, 13, 30, tzinfo=AMSTERDAM)) > 1000


def test_a_tariff_the_template_does_not_have_falls_back_to_its_first() -> None:
    model = P1TelegramModel(seed=2, tariff=lambda local: 7, tz=AMSTERDAM)
    model.render(datetime(2025, 1, 1, tzinfo=UTC))
    reading = model.last
    assert reading is not None and reading.tariff == 1
    assert reading.values["0-0:96.14.0"] == 1


def test_bad_crc_fault_on_a_telegram_without_digits_changes_nothing() -> None:
    assert inject_fault(b"/XYZ\r\n\r\n!", Fault.BAD_CRC) == b"/XYZ\r\n\r\n!"
    no_digit_value = b"/XYZ5\r\n\r\n1-0:1.8.1(abc)\r\n!"
    assert inject_fault(no_digit_value, Fault.BAD_CRC) == no_digit_value


# ---------------------------------------------------------------- the run loop


@pytest.mark.parametrize(("interval", "speed"), [(0, 1.0), (-1, 1.0), (1.0, 0)])
def test_interval_and_speed_must_be_positive(interval: float, speed: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        PtySimulator(interval=interval, speed=speed)


async def test_fault_plan_as_a_function_and_output_errors_are_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger=sim_module.__name__)
    sim = _Recorder(fail=2, interval=0.01, faults=lambda seq: Fault.GARBAGE if seq % 3 == 0 else None)
    async with sim:
        await sim.start()  # already running: nothing changes
        await asyncio.wait_for(sim.wait_sent(6), GUARD)
    assert sim.sent >= 6
    assert len(sim.out) == sim.sent - 2  # the first two were lost to output errors, the run went on
    assert [s.fault for s in list(sim.history)[:6]] == [None, None, Fault.GARBAGE, None, None, Fault.GARBAGE]
    errors = [r for r in caplog.records if "simulator output error" in r.getMessage()]
    assert len(errors) == 2


async def test_a_slow_output_skips_ticks_instead_of_bursting() -> None:
    sim = _Recorder(slow=0.08, interval=0.02)
    async with sim:
        await asyncio.wait_for(sim.wait_sent(5), GUARD)
    gaps = [b - a for a, b in zip(sim.times, sim.times[1:], strict=False)]
    assert min(gaps[:4]) >= 0.075  # never back to back to catch up


# ---------------------------------------------------------------- pseudo-terminal


def _pending(fd: int) -> int:
    """Bytes waiting unread in the port."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


async def test_pty_path_link_replacing_a_stale_one_and_unread_telegrams_dropped(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "ttyP1"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "gone")  # a stale link from an earlier run
    sim = PtySimulator(P1TelegramModel(seed=4), link=link, interval=0.005)
    async with sim:
        assert sim.path == str(link)
        assert str(link.readlink()) == sim.device_path
        await asyncio.wait_for(sim.wait_sent(30), GUARD)
        size = len(sim.history[-1].data)
        # nobody reads: the port holds at most a couple of telegrams, not thirty
        assert sim._slave is not None and _pending(sim._slave) <= max(2 * size, 3000) + size
    assert not link.exists() and not link.is_symlink()
    plain = PtySimulator(interval=0.05)
    async with plain:
        assert plain.link is None
        assert plain.path == plain.device_path and plain.path.startswith("/dev/")
    await plain._emit(b"after close")  # nowhere to write: nothing happens


# ---------------------------------------------------------------- TCP


@pytest.mark.usefixtures("socket_enabled")
async def test_tcp_client_that_resets_is_forgotten_and_others_keep_receiving() -> None:
    async with TcpSimulator(P1TelegramModel(seed=8), interval=0.01) as sim:
        good_reader, good_writer = await asyncio.open_connection(sim.host, sim.port)
        rude = socket.create_connection((sim.host, sim.port))
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        async with asyncio.timeout(GUARD):
            while sim.clients < 2:  # noqa: ASYNC110 - waiting for the server to accept both
                await asyncio.sleep(0.01)
        rude.send(b"hello meter")  # a P1 port ignores it
        rude.close()  # RST
        async with asyncio.timeout(GUARD):
            while sim.clients > 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            data = await good_reader.readuntil(b"!")
        assert data.count(b"/") >= 1
        good_writer.close()
        await good_writer.wait_closed()
    await sim.stop()  # stopped twice: nothing left to close


@pytest.mark.usefixtures("socket_enabled")
async def test_tcp_client_that_does_not_read_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TcpSimulator, "MAX_BUFFER", 1024)
    big = (corpus_dir() / "dsmr" / "nl_dsmr50_iskra_am550_two_mbus.txt").read_bytes()
    async with TcpSimulator(P1TelegramModel(big, seed=8), interval=0.001) as sim:
        lazy = socket.socket()
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        lazy.connect((sim.host, sim.port))
        try:
            async with asyncio.timeout(GUARD):
                while sim.clients < 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                # a small kernel send buffer on the dongle's side, so the backlog builds up quickly
                (writer,) = sim._clients
                writer.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
                )
                while sim.clients:  # noqa: ASYNC110 - until its backlog passes MAX_BUFFER
                    await asyncio.sleep(0.005)
        finally:
            lazy.close()
        assert sim.running


# ---------------------------------------------------------------- command line


@pytest.mark.usefixtures("socket_enabled")
def test_command_line_runs_pty_and_tcp_until_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "ttyMETER"
    stop = threading.Event()

    def terminate_once_up() -> None:
        # the link appears after the signal handlers are installed; SIGTERM then stops main()
        for _ in range(1000):
            if link.is_symlink() or stop.wait(0.01):
                break
        if not stop.wait(0.2):  # a few telegrams; main() may not have returned on its own
            os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Thread(target=terminate_once_up)
    timer.start()
    try:
        code = main(
            [
                "--pty-link",
                str(link),
                "--tcp",
                "127.0.0.1:0",
                "--interval",
                "0.05",
                "--key",
                "D491470F47126332B07D1923B3504188",
                "--seed",
                "1",
                "--tz",
                "Europe/Brussels",
            ]
        )
    finally:
        stop.set()
        timer.join()
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert (
        out[0].startswith("simulating ISk5\\2MT382-1000 every 0.05 s on /dev/") and f"(link {link})" in out[0]
    )
    assert "on socket://127.0.0.1:" in out[1] and not out[1].endswith(":0")
    assert not link.is_symlink()  # cleaned up on exit
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)
