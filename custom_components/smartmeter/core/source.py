"""Meter sources: async iterators of decoded frames.

A source owns its link, opened through ``serialx`` (local ports, ``socket://``,
``rfc2217://``, ``esphome://``), and reconnects with capped exponential
backoff: it logs once when the link goes down and once when it comes back,
never a traceback per retry. Frames that fail their check, do not decode or
cannot be decrypted are counted in :class:`~.models.LinkStats` and dropped.

* :class:`StreamSource` reads a meter that sends on its own (P1/DSMR, SML,
  DLMS/COSEM HAN push, IEC 62056-21 mode D): it cuts the stream with the
  protocol's framer and decodes each frame. :class:`P1Source` is the P1 one.
* :class:`IecReadoutSource` polls an IEC 62056-21 mode A/B/C meter: a sign-on
  at 300 baud 7E1 every ``interval`` seconds, one frame per readout.
* :class:`MbusSource` is an M-Bus master: it asks each slave for its data
  (REQ_UD2) every ``interval`` seconds, one frame per answer.

Later sources (MQTT, entity, cloud) implement the same :class:`MeterSource`
protocol, so the Home Assistant layer only ever sees frames.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Protocol

import serialx

from . import mbus
from .dlms import UNIDENTIFIED, decode_dlms
from .errors import (
    ChecksumError,
    ConnectionFailedError,
    DecodeError,
    DecryptionError,
    KeyRequiredError,
    NoTelegramError,
    SmartMeterError,
    WrongKeyError,
)
from .framer import P1Framer
from .iec62056 import read_mode_c
from .models import Frame, Integrity, LinkStats
from .p1 import DEFAULT_TZ, decode_telegram
from .protocols import IEC_READOUT_SETTINGS, MBUS_SETTINGS, PROTOCOLS, Framer, SerialSettings

__all__ = [
    "P1_SETTINGS",
    "Backoff",
    "IecReadoutSource",
    "MbusSource",
    "MeterSource",
    "P1Source",
    "ProbeResult",
    "SerialSettings",
    "StreamSource",
    "is_network_url",
    "mbus_exchange",
    "open_link",
    "parse_mbus_address",
    "probe",
]

_LOGGER = logging.getLogger(__name__)

READ_SIZE = 4096
RAW_HISTORY = 5

# What P1 ports use: DSMR 4/5 and most others at 115200 8N1, DSMR 2.2/3 at 9600 7E1.
P1_SETTINGS = PROTOCOLS["dsmr"].settings


def is_network_url(url: str) -> bool:
    """Whether ``url`` is a network bridge rather than a local port."""
    return "://" in url and not url.startswith(("linux://", "windows://", "darwin://"))


class MeterSource(Protocol):
    """What the Home Assistant layer needs from any source of meter frames."""

    stats: LinkStats

    @property
    def connected(self) -> bool:
        """Whether the link is up now."""

    def frames(self) -> AsyncIterator[Frame]:
        """Yield good frames until cancelled."""

    async def close(self) -> None:
        """Release the link (idempotent)."""


class Backoff:
    """Capped exponential backoff with jitter: 1 s, 2 s, 4 s ... up to ``cap``."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        """Delay before the next attempt."""
        delay = min(self.cap, self.first * 2.0**self.attempt)
        self.attempt += 1
        return delay * (0.8 + 0.4 * random.random())  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        """The link works again."""
        self.attempt = 0


def _serial_for(url: str, settings: SerialSettings, baudrate: int | None = None) -> serialx.AsyncSerial:
    return serialx.async_serial_for_url(
        url,
        baudrate=baudrate or settings.baudrate,
        byte_size=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        exclusive=False,
    )


async def open_link(url: str, settings: SerialSettings) -> serialx.AsyncSerial:
    """Open a serial port or bridge; raise :class:`ConnectionFailedError`.

    A pseudo-terminal (socat, a virtual port) keeps no parity or byte size and
    refuses, with EINVAL, line settings that change only those: such a port
    is opened at another rate first, then switched to the one asked for.
    """
    link = _serial_for(url, settings)
    try:
        await link.open()
    except OSError as err:
        if err.errno != errno.EINVAL or is_network_url(url):
            raise ConnectionFailedError(f"cannot open {serialx.redact_uri(url)}: {err}") from err
        link = await _open_via_other_rate(url, settings, err)
    except (serialx.SerialException, ValueError, TimeoutError) as err:
        raise ConnectionFailedError(f"cannot open {serialx.redact_uri(url)}: {err}") from err
    return link


async def _open_via_other_rate(url: str, settings: SerialSettings, first: OSError) -> serialx.AsyncSerial:
    other = 19200 if settings.baudrate == 9600 else 9600
    link = _serial_for(url, settings, other)
    try:
        await link.open()
        await link.reconfigure_port(baudrate=settings.baudrate)
    except (OSError, serialx.SerialException, ValueError, TimeoutError) as err:
        await _close_quietly(link)
        raise ConnectionFailedError(f"cannot open {serialx.redact_uri(url)}: {first}") from err
    _LOGGER.debug("Opened %s via %d baud (it refused %s directly)", url, other, settings.label)
    return link


async def _close_quietly(link: serialx.AsyncSerial) -> None:
    try:
        await asyncio.wait_for(link.close(), 5)
    except (OSError, serialx.SerialException, TimeoutError) as err:
        _LOGGER.debug("Error closing link: %s", err)


_LINK_ERRORS = (OSError, serialx.SerialException)


class _LinkSource:
    """What every link-owning source shares: state, counters, the reconnect loop."""

    def __init__(
        self,
        url: str,
        settings: SerialSettings,
        *,
        tz: tzinfo,
        backoff: Backoff | None,
        on_status: Callable[[bool], None] | None,
    ) -> None:
        self.url = url
        self.settings = settings
        self.tz = tz
        self.stats = LinkStats()
        self.raw_history: deque[bytes] = deque(maxlen=RAW_HISTORY)
        self.key_error: DecryptionError | None = None
        self.on_status = on_status
        self._backoff = backoff or Backoff()
        self._link: serialx.AsyncSerial | None = None
        self._connected = False
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the link is open and delivering."""
        return self._connected

    def _set_connected(self, value: bool) -> None:
        if value == self._connected:
            return
        self._connected = value
        if self.on_status is not None:
            self.on_status(value)

    @property
    def _label(self) -> str:
        return serialx.redact_uri(self.url)

    def _good(self, frame: Frame) -> Frame:
        self.stats.frames_ok += 1
        self._backoff.reset()
        self._set_connected(True)
        return frame

    def _count_error(self, err: SmartMeterError) -> None:
        """Count a frame that came but is not usable."""
        self.stats.last_error = str(err)
        if isinstance(err, (KeyRequiredError, WrongKeyError)):
            self.stats.frames_decrypt_failed += 1
            self.key_error = err
        elif isinstance(err, ChecksumError):
            self.stats.frames_bad_checksum += 1
            _LOGGER.debug("Dropped frame with a bad checksum from %s: %s", self._label, err)
        else:
            self.stats.frames_undecodable += 1
            _LOGGER.debug("Dropped undecodable frame from %s: %s", self._label, err)

    def _session(self) -> AsyncIterator[Frame]:
        """One connected session: yields frames until the link fails."""
        raise NotImplementedError

    async def _open(self) -> serialx.AsyncSerial:
        link = await open_link(self.url, self.settings)
        self._link = link
        self.stats.connects += 1
        return link

    async def _release(self, link: serialx.AsyncSerial) -> None:
        self._link = None
        await _close_quietly(link)

    async def frames(self) -> AsyncIterator[Frame]:
        """Yield good frames forever, reconnecting as needed, until cancelled."""
        was_down = False
        while not self._closed:
            try:
                async for frame in self._session():
                    if was_down:
                        _LOGGER.info("Connection to %s restored", self._label)
                        was_down = False
                    yield frame
            except SmartMeterError as err:
                if self._closed:
                    break  # close() ended the session: not a lost connection
                self.stats.last_error = str(err)
                self.stats.disconnects += 1
                self._set_connected(False)
                if not was_down:
                    _LOGGER.warning("Lost connection to %s: %s; retrying with backoff", self._label, err)
                    was_down = True
                else:
                    _LOGGER.debug("Still cannot reach %s: %s", self._label, err)
            await asyncio.sleep(self._backoff.next_delay())

    async def close(self) -> None:
        """Stop reading and close the port."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await _close_quietly(link)
        self._set_connected(False)


# ---------------------------------------------------------------- push meters


class StreamSource(_LinkSource):
    """Frames a push meter sends (P1, SML, DLMS, IEC mode D), decoded, with reconnects.

    ``key`` decrypts Smarty and DLMS frames. A wrong or missing key sets
    ``key_error`` (cleared by the next good frame). DLMS list-1 frames carry no
    meter ID: they get the ID of the last frame that had one, and are dropped
    (not counted as errors) until one came.
    """

    def __init__(
        self,
        url: str,
        settings: SerialSettings | None = None,
        *,
        protocol: str = "dsmr",
        key: bytes | None = None,
        tz: tzinfo = DEFAULT_TZ,
        backoff: Backoff | None = None,
        idle_timeout: float = 60.0,
        on_status: Callable[[bool], None] | None = None,
    ) -> None:
        info = PROTOCOLS.get(protocol)
        if info is None or not info.push:
            raise ValueError(f"{protocol!r} is not a push protocol")
        super().__init__(url, settings or info.settings[0], tz=tz, backoff=backoff, on_status=on_status)
        self.protocol = protocol
        self.key = key
        self._info = info
        self._idle_timeout = idle_timeout
        self._framer: Framer = info.framer()
        self._meter_id: str | None = None  # DLMS: the last main meter ID seen

    def _decode_raw(self, raw: bytes) -> Frame:
        if self.protocol == "dsmr":
            return decode_telegram(raw, key=self.key, tz=self.tz)
        if self.protocol == "dlms":
            return decode_dlms(raw, key=self.key, tz=self.tz, default_id=self._meter_id)
        return self._info.decode(raw, self.key, self.tz)

    def decode(self, raw: bytes) -> Frame | None:
        """Decode one framed message; count and drop what is not good."""
        self.raw_history.append(raw)
        try:
            frame = self._decode_raw(raw)
        except SmartMeterError as err:
            self._count_error(err)
            return None
        except Exception as err:  # a decoder bug must not end the link
            self.stats.frames_undecodable += 1
            self.stats.last_error = f"decoder error {type(err).__name__}: {err}"
            _LOGGER.debug("Decoder error on a frame from %s: %r", self._label, err)
            return None
        if frame.integrity is Integrity.INVALID:
            self.stats.frames_bad_checksum += 1
            self.stats.last_error = "CRC mismatch"
            _LOGGER.debug("Dropped frame with a bad checksum from %s", self._label)
            return None
        if self.protocol == "dlms":
            main = frame.main
            if main is not None and main.id != UNIDENTIFIED:
                self._meter_id = main.id
            elif self._meter_id is None:
                _LOGGER.debug("Dropped a DLMS frame without meter ID from %s (none seen yet)", self._label)
                return None
        self.key_error = None
        self.stats.frames_ok += 1
        return frame

    async def _session(self) -> AsyncIterator[Frame]:
        link = await self._open()
        framer = self._framer
        framer.reset()
        discarded = framer.discarded
        try:
            while True:
                try:
                    data = await asyncio.wait_for(link.read(READ_SIZE), self._idle_timeout)
                except TimeoutError as err:
                    raise ConnectionFailedError(
                        f"no data from {self._label} for {self._idle_timeout:.0f} s"
                    ) from err
                except _LINK_ERRORS as err:
                    raise ConnectionFailedError(f"{self._label}: {err}") from err
                if not data:
                    raise ConnectionFailedError(f"{self._label} closed the connection")
                for raw in framer.feed(data):
                    frame = self.decode(raw)
                    if frame is not None:
                        self._backoff.reset()
                        self._set_connected(True)
                        yield frame
                self.stats.bytes_discarded += framer.discarded - discarded
                discarded = framer.discarded
        finally:
            # what the framer held when the link went is not counted as discarded
            await self._release(link)


class P1Source(StreamSource):
    """Telegrams from a P1 port, decoded, checked, with automatic reconnects."""

    def __init__(
        self,
        url: str,
        settings: SerialSettings = P1_SETTINGS[0],
        *,
        key: bytes | None = None,
        tz: tzinfo = DEFAULT_TZ,
        backoff: Backoff | None = None,
        idle_timeout: float = 60.0,
        on_status: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(
            url,
            settings,
            protocol="dsmr",
            key=key,
            tz=tz,
            backoff=backoff,
            idle_timeout=idle_timeout,
            on_status=on_status,
        )


# ---------------------------------------------------------------- polled meters


class _PolledSource(_LinkSource):
    """A source that asks the meter every ``interval`` seconds."""

    def __init__(
        self,
        url: str,
        settings: SerialSettings,
        *,
        interval: float,
        tz: tzinfo,
        backoff: Backoff | None,
        on_status: Callable[[bool], None] | None,
        timeout: float,
    ) -> None:
        super().__init__(url, settings, tz=tz, backoff=backoff, on_status=on_status)
        self.interval = interval
        self.timeout = timeout

    async def _pause(self, started: float) -> None:
        """Sleep until ``interval`` seconds after ``started``."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, started + self.interval - loop.time()))


class IecReadoutSource(_PolledSource):
    """An IEC 62056-21 mode A/B/C meter, read out every ``interval`` seconds.

    The link is opened at 300 baud 7E1 (the sign-on rate) and switched back to
    it before every readout. A meter that does not answer counts as a lost
    link (logged once; the port is reopened with backoff); a readout with a
    bad BCC is counted as a bad checksum and the next one is tried at the
    next interval.
    """

    def __init__(
        self,
        url: str,
        *,
        address: str = "",
        interval: float = 60.0,
        max_baud: int = 9600,
        tz: tzinfo = DEFAULT_TZ,
        backoff: Backoff | None = None,
        on_status: Callable[[bool], None] | None = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(
            url,
            IEC_READOUT_SETTINGS,
            interval=interval,
            tz=tz,
            backoff=backoff,
            on_status=on_status,
            timeout=timeout,
        )
        self.protocol = "iec62056-21"
        self.address = address
        self.max_baud = max_baud

    async def _session(self) -> AsyncIterator[Frame]:
        link = await self._open()
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                if link.baudrate != IEC_READOUT_SETTINGS.baudrate:
                    try:
                        await link.reconfigure_port(baudrate=IEC_READOUT_SETTINGS.baudrate)
                    except _LINK_ERRORS as err:
                        raise ConnectionFailedError(f"{self._label}: {err}") from err
                    await asyncio.sleep(0.2)  # let the meter fall back to 300 baud too
                try:
                    frame = await read_mode_c(
                        link, address=self.address, max_baud=self.max_baud, timeout=self.timeout, tz=self.tz
                    )
                except (ConnectionFailedError, NoTelegramError):
                    raise
                except SmartMeterError as err:
                    self._count_error(err)
                else:
                    self.raw_history.append(frame.raw)
                    yield self._good(frame)
                await self._pause(started)
        finally:
            await self._release(link)


# ---------------------------------------------------------------- M-Bus master

_PRIMARY = re.compile(r"[pP](\d{1,3})")
_SECONDARY = re.compile(r"[0-9A-Fa-f]{16}")
_ID = re.compile(r"\d{8}")
# After a complete answer, how long to wait for more bytes (a collision).
MBUS_SETTLE = 0.03


def parse_mbus_address(text: str) -> str:
    """Normalise an M-Bus address: ``p<0..250>``, 16 hex digits, or an 8-digit ID.

    Raises ``ValueError`` for anything else.
    """
    text = text.strip()
    if (match := _PRIMARY.fullmatch(text)) is not None:
        number = int(match.group(1))
        if number > mbus.MAX_PRIMARY:
            raise ValueError(f"primary M-Bus address {number} outside 0..{mbus.MAX_PRIMARY}")
        return f"p{number}"
    if _SECONDARY.fullmatch(text) is not None or _ID.fullmatch(text) is not None:
        return text.upper()
    raise ValueError(
        f"M-Bus address {text!r}: expected p<0..250>, a 16-hex-digit secondary address or an 8-digit ID"
    )


def _complete(buf: bytearray) -> bool:
    """Whether ``buf`` is exactly one whole M-Bus frame (as far as its structure says)."""
    size = len(buf)
    first = buf[0]
    if first == mbus.ACK:
        return size == 1
    if first == mbus.START_SHORT:
        return size == 5 and buf[4] == mbus.STOP
    if first == mbus.START_LONG and size >= 4:
        return size == buf[1] + 6 and buf[-1] == mbus.STOP
    return False


async def _drain(link: serialx.AsyncSerial) -> None:
    """Throw away bytes already received (a late answer to an earlier request)."""
    while True:
        try:
            data = await asyncio.wait_for(link.read(READ_SIZE), 0.001)
        except TimeoutError:
            return
        except _LINK_ERRORS as err:
            raise ConnectionFailedError(f"M-Bus link failed: {err}") from err
        if not data:
            raise ConnectionFailedError("the M-Bus link closed")


async def mbus_exchange(
    link: serialx.AsyncSerial, request: bytes, timeout: float, settle: float = MBUS_SETTLE
) -> bytes | None:
    """Send one master frame; return the answer's bytes, or ``None`` when none came.

    The answer is complete when it forms one whole frame and nothing follows
    within ``settle`` seconds; anything else (several slaves answering at
    once) is returned as it came, for :func:`~.mbus.classify` to call a
    collision. An echo of the request (some level converters) is removed.
    Raises :class:`ConnectionFailedError` when the link fails.
    """
    await _drain(link)
    try:
        await link.write(request)
    except _LINK_ERRORS as err:
        raise ConnectionFailedError(f"cannot write to the M-Bus link: {err}") from err
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = bytearray()
    while True:
        if buf.startswith(request):
            del buf[: len(request)]
        wait = deadline - loop.time()
        if buf and _complete(buf):
            wait = settle
        if wait <= 0:
            break
        try:
            data = await asyncio.wait_for(link.read(READ_SIZE), wait)
        except TimeoutError:
            break
        except _LINK_ERRORS as err:
            raise ConnectionFailedError(f"M-Bus link failed: {err}") from err
        if not data:
            raise ConnectionFailedError("the M-Bus link closed")
        buf += data
    return bytes(buf) or None


class MbusSource(_PolledSource):
    """An M-Bus master polling its slaves every ``interval`` seconds.

    ``addresses`` name the slaves: ``p<n>`` for primary address ``n``, a
    16-hex-digit secondary address or an 8-digit ID (selected with SND_UD to
    253, then read with REQ_UD2 to 253). Each answer becomes one frame. A
    slave that does not answer is counted in ``no_answer`` (and
    ``stats.last_error``) and logged once at debug level; the others are read
    as usual. When no slave answers a whole round the source reports itself
    disconnected but keeps polling; a failing link is reopened with backoff.
    """

    def __init__(
        self,
        url: str,
        settings: SerialSettings | None = None,
        *,
        addresses: Sequence[str],
        interval: float = 60.0,
        tz: tzinfo = DEFAULT_TZ,
        backoff: Backoff | None = None,
        on_status: Callable[[bool], None] | None = None,
        timeout: float = 1.0,
    ) -> None:
        super().__init__(
            url,
            settings or MBUS_SETTINGS,
            interval=interval,
            tz=tz,
            backoff=backoff,
            on_status=on_status,
            timeout=timeout,
        )
        if not addresses:
            raise ValueError("no M-Bus slave address given")
        self.protocol = "mbus"
        self.addresses = tuple(parse_mbus_address(address) for address in addresses)
        self.no_answer: Counter[str] = Counter()
        self._silent: set[str] = set()
        self._fcb = mbus.FcbTracker()

    async def _request(self, link: serialx.AsyncSerial, address: str) -> bytes | None:
        """REQ_UD2 to one slave; its answer's bytes, or None."""
        if address.startswith("p"):
            primary = int(address[1:])
        else:
            mask = address if len(address) == 16 else address + "FFFFFFFF"
            answer = await mbus_exchange(link, mbus.select_secondary(mask), self.timeout)
            if mbus.classify(answer) is not mbus.Answer.ACK:
                return None
            primary = mbus.ADDRESS_NETWORK
            self._fcb.reset(primary)
        answer = await mbus_exchange(link, self._fcb.req_ud2(primary), self.timeout)
        if answer is not None:
            self._fcb.answered(primary)
        return answer

    async def _session(self) -> AsyncIterator[Frame]:
        link = await self._open()
        loop = asyncio.get_running_loop()
        try:
            # Reset the link layer of the primary slaves (FCB starts over).
            for address in self.addresses:
                if address.startswith("p"):
                    await mbus_exchange(link, mbus.snd_nke(int(address[1:])), self.timeout)
                    self._fcb.reset(int(address[1:]))
            while True:
                started = loop.time()
                answered = 0
                for address in self.addresses:
                    answer = await self._request(link, address)
                    if answer is None:
                        self._missed(address)
                        continue
                    answered += 1
                    if address in self._silent:
                        self._silent.discard(address)
                        _LOGGER.debug("M-Bus slave %s on %s answers again", address, self._label)
                    self.raw_history.append(answer)
                    try:
                        frame = mbus.decode_mbus(answer, tz=self.tz)
                    except SmartMeterError as err:
                        self._count_error(err)
                        continue
                    yield self._good(frame)
                if not answered:
                    self._set_connected(False)
                await self._pause(started)
        finally:
            await self._release(link)

    def _missed(self, address: str) -> None:
        self.no_answer[address] += 1
        self.stats.last_error = f"M-Bus slave {address} did not answer"
        if address not in self._silent:
            self._silent.add(address)
            _LOGGER.debug("M-Bus slave %s on %s does not answer", address, self._label)


# ---------------------------------------------------------------- P1 probe (config flow)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What probing a port found."""

    settings: SerialSettings
    frame: Frame | None
    encrypted: bool = False
    error: str | None = None


async def probe(
    url: str,
    *,
    key: bytes | None = None,
    tz: tzinfo = DEFAULT_TZ,
    timeout: float = 12.0,
    candidates: tuple[SerialSettings, ...] = P1_SETTINGS,
) -> ProbeResult:
    """Listen (never transmit) for a P1 telegram, trying each line setting in turn.

    Returns the first good frame. An encrypted frame without a usable key is
    reported with ``encrypted=True`` so the caller can ask for the key. Raises
    :class:`ConnectionFailedError` when the port cannot be opened and
    :class:`NoTelegramError` when nothing decodable arrived. (For every
    protocol: :func:`.detect.detect`.)
    """
    if is_network_url(url):
        candidates = candidates[:1]  # a bridge sets its own line settings
    last_error = "no telegram received"
    for settings in candidates:
        link = await open_link(url, settings)
        framer = P1Framer()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(link.read(READ_SIZE), remaining)
                except TimeoutError:
                    break
                except _LINK_ERRORS as err:
                    raise ConnectionFailedError(str(err)) from err
                if not data:
                    raise ConnectionFailedError(f"{serialx.redact_uri(url)} closed the connection")
                for raw in framer.feed(data):
                    try:
                        frame = decode_telegram(raw, key=key, tz=tz)
                    except (KeyRequiredError, WrongKeyError) as err:
                        return ProbeResult(settings, None, encrypted=True, error=str(err))
                    except DecodeError as err:
                        last_error = str(err)
                        continue
                    if frame.integrity is Integrity.INVALID:
                        last_error = "telegrams arrive with a bad CRC"
                        continue
                    return ProbeResult(settings, frame, encrypted=frame.encrypted)
        finally:
            await _close_quietly(link)
    raise NoTelegramError(last_error)
