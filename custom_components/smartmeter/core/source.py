"""Meter sources: async iterators of decoded frames.

A source owns its link. :class:`P1Source` reads a serial port or network bridge
through ``serialx`` (local ports, ``socket://``, ``rfc2217://``, ``esphome://``),
cuts the stream into telegrams, decodes them, drops and counts the bad ones and
reconnects with capped exponential backoff: it logs once when the link goes
down and once when it comes back, never a traceback per retry.

Later sources (MQTT, entity, cloud) implement the same :class:`MeterSource`
protocol, so the Home Assistant layer only ever sees frames.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Protocol

import serialx

from .errors import (
    ConnectionFailedError,
    DecodeError,
    DecryptionError,
    KeyRequiredError,
    NoTelegramError,
    SmartMeterError,
    WrongKeyError,
)
from .framer import P1Framer
from .models import Frame, Integrity, LinkStats
from .p1 import DEFAULT_TZ, decode_telegram

_LOGGER = logging.getLogger(__name__)

READ_SIZE = 4096
RAW_HISTORY = 5


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings of a serial link (ignored by socket:// bridges)."""

    baudrate: int = 115200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def label(self) -> str:
        """Human form, e.g. ``115200 8N1``."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


# What P1 ports use: DSMR 4/5 and most others at 115200 8N1, DSMR 2.2/3 at 9600 7E1.
P1_SETTINGS = (SerialSettings(115200, 8, "N", 1), SerialSettings(9600, 7, "E", 1))


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


async def open_link(url: str, settings: SerialSettings) -> serialx.AsyncSerial:
    """Open a serial port or bridge; raise :class:`ConnectionFailedError`."""
    link = serialx.async_serial_for_url(
        url,
        baudrate=settings.baudrate,
        byte_size=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        exclusive=False,
    )
    try:
        await link.open()
    except (OSError, serialx.SerialException, ValueError, TimeoutError) as err:
        raise ConnectionFailedError(f"cannot open {serialx.redact_uri(url)}: {err}") from err
    return link


class P1Source:
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
        self.url = url
        self.settings = settings
        self.key = key
        self.tz = tz
        self.stats = LinkStats()
        self.raw_history: deque[bytes] = deque(maxlen=RAW_HISTORY)
        self._backoff = backoff or Backoff()
        self._idle_timeout = idle_timeout
        self.on_status = on_status
        self._framer = P1Framer()
        self._link: serialx.AsyncSerial | None = None
        self._connected = False
        self._closed = False
        self.key_error: DecryptionError | None = None

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

    def decode(self, raw: bytes) -> Frame | None:
        """Decode one framed telegram; count and drop what is not good."""
        self.raw_history.append(raw)
        try:
            frame = decode_telegram(raw, key=self.key, tz=self.tz)
        except KeyRequiredError as err:
            self.stats.frames_decrypt_failed += 1
            self.key_error = err
            self.stats.last_error = str(err)
            return None
        except WrongKeyError as err:
            self.stats.frames_decrypt_failed += 1
            self.key_error = err
            self.stats.last_error = str(err)
            return None
        except DecodeError as err:
            self.stats.frames_undecodable += 1
            self.stats.last_error = str(err)
            _LOGGER.debug("Dropped undecodable frame from %s: %s", self._label, err)
            return None
        if frame.integrity is Integrity.INVALID:
            self.stats.frames_bad_checksum += 1
            self.stats.last_error = "CRC mismatch"
            _LOGGER.debug("Dropped telegram with bad CRC from %s", self._label)
            return None
        self.key_error = None
        self.stats.frames_ok += 1
        return frame

    @property
    def _label(self) -> str:
        return serialx.redact_uri(self.url)

    async def _read_session(self) -> AsyncIterator[Frame]:
        """One connected session: yields frames until the link fails."""
        link = await open_link(self.url, self.settings)
        self._link = link
        self._framer.reset()
        self.stats.connects += 1
        try:
            while True:
                try:
                    data = await asyncio.wait_for(link.read(READ_SIZE), self._idle_timeout)
                except TimeoutError as err:
                    raise ConnectionFailedError(
                        f"no data from {self._label} for {self._idle_timeout:.0f} s"
                    ) from err
                except (OSError, serialx.SerialException) as err:
                    raise ConnectionFailedError(f"{self._label}: {err}") from err
                if not data:
                    raise ConnectionFailedError(f"{self._label} closed the connection")
                before = self._framer.discarded
                for raw in self._framer.feed(data):
                    frame = self.decode(raw)
                    if frame is not None:
                        self._backoff.reset()
                        self._set_connected(True)
                        yield frame
                self.stats.bytes_discarded += self._framer.discarded - before
        finally:
            self._link = None
            await _close_quietly(link)

    async def frames(self) -> AsyncIterator[Frame]:
        """Yield good frames forever, reconnecting as needed, until cancelled."""
        was_down = False
        while not self._closed:
            try:
                async for frame in self._read_session():
                    if was_down:
                        _LOGGER.info("Connection to %s restored", self._label)
                        was_down = False
                    yield frame
            except SmartMeterError as err:
                self.stats.last_error = str(err)
                self.stats.disconnects += 1
                self._set_connected(False)
                if not was_down:
                    _LOGGER.warning("Lost connection to %s: %s; retrying with backoff", self._label, err)
                    was_down = True
                else:
                    _LOGGER.debug("Still cannot reach %s: %s", self._label, err)
            if self._closed:
                break
            await asyncio.sleep(self._backoff.next_delay())

    async def close(self) -> None:
        """Stop reading and close the port."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await _close_quietly(link)
        self._set_connected(False)


async def _close_quietly(link: serialx.AsyncSerial) -> None:
    try:
        await asyncio.wait_for(link.close(), 5)
    except (OSError, serialx.SerialException, TimeoutError) as err:
        _LOGGER.debug("Error closing link: %s", err)


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
    """Listen (never transmit) for a telegram, trying each line setting in turn.

    Returns the first good frame. An encrypted frame without a usable key is
    reported with ``encrypted=True`` so the caller can ask for the key. Raises
    :class:`ConnectionFailedError` when the port cannot be opened and
    :class:`NoTelegramError` when nothing decodable arrived.
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
                except (OSError, serialx.SerialException) as err:
                    raise ConnectionFailedError(str(err)) from err
                if not data:
                    raise ConnectionFailedError(f"{serialx.redact_uri(url)} closed the connection")
                for raw in framer.feed(data):
                    try:
                        frame = decode_telegram(raw, key=key, tz=tz)
                    except KeyRequiredError as err:
                        return ProbeResult(settings, None, encrypted=True, error=str(err))
                    except WrongKeyError as err:
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
