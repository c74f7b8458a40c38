"""Meter simulators on real pseudo-terminals, shared by the core and Home Assistant tests.

A simulated meter sits on the master side of a pty and speaks with real corpus
frames; the code under test opens the slave path (``path``) through serialx
like a USB adapter. A pty keeps the baud rate its user sets but not the parity
or byte size, so the simulators go by the rate:

* :class:`PushMeter` sends frames on its own (P1, SML, DLMS, IEC mode D);
* :class:`ModeCMeter` is an IEC 62056-21 mode C meter: it answers the sign-on
  ``/?!`` at 300 baud with its identification and, after the acknowledgement,
  sends its data message at the agreed rate;
* :class:`MbusBus` is an M-Bus segment: slaves answering SND_NKE, REQ_UD2 and
  secondary selects at 2400 baud, colliding as real slaves do when several
  are addressed at once.

Every byte the port's user wrote is kept in ``received`` (tests assert that a
listening step sent nothing). No Home Assistant imports: the core tests use
these too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import termios
import tty
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

from custom_components.smartmeter.core import mbus
from custom_components.smartmeter.core.protocols import SerialSettings
from tests.conftest import corpus_dir

CORPUS = corpus_dir()


def corpus(name: str) -> bytes:
    """A corpus sample's wire bytes (``.hex`` files as bytes)."""
    path = CORPUS / name
    return bytes.fromhex(path.read_text()) if path.suffix == ".hex" else path.read_bytes()


def termios_settings(fd: int) -> SerialSettings:
    """The line settings the port's user set (read on the master side of the pty)."""
    attrs = termios.tcgetattr(fd)
    cflag, speed = attrs[2], attrs[5]
    baud = next(
        int(name[1:])
        for name in dir(termios)
        if name[1:].isdigit() and name[0] == "B" and getattr(termios, name) == speed
    )
    size = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}[cflag & termios.CSIZE]
    parity = "N" if not cflag & termios.PARENB else ("O" if cflag & termios.PARODD else "E")
    return SerialSettings(baud, size, parity, 2 if cflag & termios.CSTOPB else 1)


class Pty:
    """A pseudo-terminal: the test plays the meter on the master side; ``path`` is the port."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self.slave)
        self.received = bytearray()  # everything the port's user wrote

    @property
    def settings(self) -> SerialSettings:
        """What the port is set to now."""
        return termios_settings(self.master)

    def write(self, data: bytes) -> None:
        """Send bytes to the port's user."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)

    def read(self) -> bytes:
        """What the port's user wrote since the last call."""
        data = bytearray()
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            data += chunk
        self.received += data
        return bytes(data)

    def close(self) -> None:
        """Close both ends."""
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Running(Pty):
    """A pty whose meter runs in a task while the context is entered."""

    def __init__(self) -> None:
        super().__init__()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.read()
        self.close()


# ---------------------------------------------------------------- push meters


class PushMeter(_Running):
    """Sends ``frames`` in a loop every ``interval`` seconds.

    With ``only_at`` it sends them only while the port is set to those line
    settings (a pty ignores them) and garbage otherwise, as a UART at the
    wrong rate would receive.
    """

    def __init__(
        self, frames: list[bytes], interval: float = 0.03, only_at: SerialSettings | None = None
    ) -> None:
        super().__init__()
        self.frames = frames
        self.interval = interval
        self.only_at = only_at
        self.sent = 0
        self.on_tick: Callable[[], None] | None = None  # called before each send (may change frames)

    async def _run(self) -> None:
        i = 0
        while True:
            if self.on_tick is not None:
                self.on_tick()
            if self.only_at is not None and self.settings != self.only_at:
                self.write(b"\xfe\x80\x00\xf8" * 8)
            elif self.frames:
                self.write(self.frames[i % len(self.frames)])
                i += 1
                self.sent += 1
            self.read()  # keep what the port's user sent (tests assert it sent nothing)
            await asyncio.sleep(self.interval)


# ---------------------------------------------------------------- IEC 62056-21 mode C


def iec_data_message(body: bytes) -> bytes:
    """STX ``body`` ETX BCC: a mode C data message (BCC: XOR of everything after STX up to ETX)."""
    block = body + b"\x03"
    check = 0
    for byte in block:
        check ^= byte
    return b"\x02" + block + bytes((check,))


# The Itron EM214 readout of the corpus: its identification line and its data
# block, which the corpus has without ETX/BCC (a test shortcut of the source);
# the meter here sends it with ETX and the correct BCC added.
EM214 = corpus("iec62056-21/de_itron_em214_modeC_noetx.txt")
EM214_IDENT = EM214[: EM214.index(b"\n") + 1]
EM214_BODY = EM214[len(EM214_IDENT) :].removeprefix(b"\x02")
EM214_MESSAGE = iec_data_message(EM214_BODY)

_ACK_RATES = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600}


class ModeCMeter(_Running):
    """A mode C meter: answers each sign-on at 300 baud, sends its data at the agreed rate.

    ``message`` (the data message sent after the acknowledgement) can be
    changed between readouts; ``requests`` are the sign-ons it answered,
    ``times`` when (event-loop time) and ``rates`` the rates it sent its data at.
    While ``silent`` it answers nothing.
    """

    def __init__(self, ident: bytes = EM214_IDENT, message: bytes = EM214_MESSAGE) -> None:
        super().__init__()
        self.ident = ident
        self.message = message
        self.silent = False
        self.requests: list[bytes] = []
        self.rates: list[int] = []
        self.times: list[float] = []

    async def _line(self) -> bytes:
        data = b""
        while not data.endswith(b"\n"):
            data += self.read()
            await asyncio.sleep(0.002)
        return data

    async def _run(self) -> None:
        while True:
            request = await self._line()
            if self.settings.baudrate != 300 or self.silent:
                continue  # not a sign-on at the sign-on rate
            self.requests.append(request)
            self.times.append(asyncio.get_running_loop().time())
            self.write(self.ident)
            ack = await self._line()
            rate = _ACK_RATES[chr(ack[2])]
            for _ in range(400):
                if self.settings.baudrate == rate:
                    break
                await asyncio.sleep(0.005)
            self.rates.append(self.settings.baudrate)
            self.write(self.message)


# ---------------------------------------------------------------- M-Bus

MBUS_SAMPLES = {
    5: corpus("mbus/kamstrup_382_electricity.hex"),
    7: corpus("mbus/engelmann_waterstar_water.hex"),
    9: corpus("mbus/lgb_g350_gas.hex"),
}


def secondary(raw: bytes) -> str:
    """The slave's 16-hex-digit secondary address."""
    return mbus.decode_mbus(raw).meters[0].serial_number or ""


def mbus_replace(raw: bytes, old: bytes, new: bytes) -> bytes:
    """A long frame with the one occurrence of ``old`` in its data replaced, checksum recomputed."""
    assert raw[0] == mbus.START_LONG and len(old) == len(new)
    body = raw[4:-2]
    assert body.count(old) == 1, f"{old.hex()} occurs {body.count(old)} times"
    body = body.replace(old, new)
    return raw[:4] + body + bytes((sum(body) & 0xFF,)) + raw[-1:]


# What two or more slaves answering at once look like on the line.
COLLISION = b"\x00" + b"\xff" * 40


class MbusBus(_Running):
    """Slaves on a pty, answering at 2400 8E1 like an M-Bus segment (answers only when the line is set so).

    ``frames`` maps a slave key (its primary address unless ``primary_of``
    says otherwise) to the RSP_UD it answers REQ_UD2 with. ``silent`` keys are
    slaves that never answer (the set can be changed while the bus runs);
    :meth:`answer_with` makes a slave answer REQ_UD2 with other bytes (a bad
    checksum, garbage) under its address.
    """

    def __init__(self, frames: dict[int, bytes], silent: Iterable[int] = ()) -> None:
        super().__init__()
        self.slaves = {primary: (secondary(raw), raw) for primary, raw in frames.items()}
        self.silent = set(silent)
        self.primary_of: dict[int, int] = {}  # slave key -> primary address, when not the key itself
        self.selected: set[int] = set()
        self.requests: list[bytes] = []
        self.framer = mbus.MbusFramer()

    def answer_with(self, key: int, answer: bytes) -> None:
        """Slave ``key`` (same addresses) now answers REQ_UD2 with ``answer``."""
        address, _ = self.slaves[key]
        self.slaves[key] = (address, answer)

    def requests_to(self, primary: int, control: int = mbus.C_REQ_UD2) -> int:
        """How many short frames with ``control`` (FCB aside) were sent to ``primary``."""
        return sum(
            1
            for request in self.requests
            if len(request) == 5 and request[2] == primary and request[1] & ~mbus.FCB == control
        )

    def _answer(self, request: bytes) -> bytes | None:
        link = mbus.parse_link_frame(request)
        if link.kind is mbus.FrameKind.SHORT:
            c, a = link.c & ~mbus.FCB, link.a
            if a == mbus.ADDRESS_NETWORK:
                targets = [p for p in self.slaves if p in self.selected]
            elif a == mbus.ADDRESS_BROADCAST_ANSWER:
                targets = list(self.slaves)
            else:
                targets = [p for p in self.slaves if self.primary_of.get(p, p) == a]
            targets = [p for p in targets if p not in self.silent]
            if c == mbus.C_SND_NKE:
                if a == mbus.ADDRESS_NETWORK:
                    self.selected.clear()
                return b"\xe5" * len(targets) if targets else None
            if c == mbus.C_REQ_UD2:
                if len(targets) > 1:
                    return COLLISION
                return self.slaves[targets[0]][1] if targets else None
            return None
        if link.ci == mbus.CI_SELECT:
            mask = (
                link.data[3::-1].hex().upper()
                + link.data[5:3:-1].hex().upper()
                + link.data[6:8].hex().upper()
            )
            self.selected = {
                p
                for p, (address, _) in self.slaves.items()
                if mbus.mask_matches(mask, address) and p not in self.silent
            }
            if not self.selected:
                return None
            return b"\xe5" if len(self.selected) == 1 else b"\xe5\xff\x03"
        return None

    async def _run(self) -> None:
        while True:
            data = self.read()
            if data and self.settings.baudrate == 2400:  # a pty keeps the rate, not the parity
                for request in self.framer.feed(data):
                    self.requests.append(request)
                    answer = self._answer(request)
                    if answer is not None:
                        self.write(answer)
            await asyncio.sleep(0.001)
