"""Find out what meter is on a port: protocol, line settings and a sample frame.

:func:`detect` listens first and never transmits unless asked: it opens the
port at each framing real meters use, feeds what arrives to the framers of
every push protocol at once (P1/DSMR, SML, DLMS/HDLC, IEC 62056-21 mode D)
and returns the first frame that decodes. Each frame is credited to one
protocol only: the first one in :data:`.protocols.PROTOCOLS` order whose
sniffing test accepts it (an IEC mode D telegram is also a P1 telegram to the
P1 framer; the IEC test tells them apart).

With ``transmit=True``, when listening found nothing, it also asks: an IEC
62056-21 sign-on at 300 baud 7E1 (a mode A/B/C readout), then M-Bus at 2400
baud 8E1 (SND_NKE and REQ_UD2 to the broadcast address 254, a scan of the
primary addresses 0..250, and the secondary search when slaves share a
primary address), listing every slave found in ``addresses``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import tzinfo

import serialx

from . import mbus
from .dlms import UNIDENTIFIED
from .errors import (
    ChecksumError,
    ConnectionFailedError,
    DecryptionError,
    NoTelegramError,
    SmartMeterError,
)
from .iec62056 import read_mode_c
from .models import Frame, Integrity
from .p1 import DEFAULT_TZ
from .protocols import (
    IEC_READOUT_SETTINGS,
    MBUS_SETTINGS,
    PROTOCOLS,
    PUSH_PROTOCOLS,
    Framer,
    ProtocolInfo,
    SerialSettings,
)
from .source import READ_SIZE, _close_quietly, is_network_url, mbus_exchange, open_link

_LOGGER = logging.getLogger(__name__)

# The framings tried while listening, most common first.
LISTEN_SETTINGS: tuple[SerialSettings, ...] = (
    SerialSettings(115200, 8, "N", 1),  # DSMR 4/5, e-MUCS, Swedish HAN P1, Austrian HAN
    SerialSettings(9600, 8, "N", 1),  # SML (eHZ, EDL21)
    SerialSettings(9600, 7, "E", 1),  # DSMR 2.2/3, IEC 62056-21 mode D (EasyMeter, EMH)
    SerialSettings(2400, 8, "E", 1),  # DLMS HAN: Aidon, Kaifa (Norway)
    SerialSettings(2400, 8, "N", 1),  # DLMS HAN: Kamstrup (Norway)
)
# Seconds to wait for one slave's answer while scanning M-Bus (at 2400 baud a
# slave answers within 330 bit times + 50 ms: about 0.19 s).
MBUS_SCAN_TIMEOUT = 0.25
# Seconds to wait for the answer to a broadcast or a read (the sample frame).
MBUS_READ_TIMEOUT = 1.0
# How many slaves are asked for a sample frame until one answers with a good one.
MBUS_SAMPLE_SLAVES = 3
# Seconds an IEC meter may stay silent at each step of the readout.
IEC_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Detection:
    """What :func:`detect` found."""

    protocol: str
    settings: SerialSettings
    frame: Frame | None  # a decoded sample (None when encrypted without a usable key)
    encrypted: bool = False
    error: str | None = None  # e.g. the WrongKeyError text
    addresses: tuple[str, ...] = ()  # M-Bus: the slaves found, in MbusSource address form


class _Listener:
    """Every push framer fed at once; the first usable frame wins."""

    def __init__(self, key: bytes | None, tz: tzinfo) -> None:
        self.key = key
        self.tz = tz
        self.framers: list[tuple[ProtocolInfo, Framer]] = [
            (PROTOCOLS[name], PROTOCOLS[name].framer()) for name in PUSH_PROTOCOLS
        ]
        self.received = 0
        self.problems: list[str] = []
        # A DLMS list-1 frame (no meter ID): used only if no frame with an ID follows.
        self.fallback: tuple[ProtocolInfo, Frame | None, DecryptionError | None] | None = None

    def _owner(self, raw: bytes) -> str | None:
        for name, info in PROTOCOLS.items():
            if info.sniff(raw):
                return name
        return None

    def feed(self, data: bytes) -> tuple[ProtocolInfo, Frame | None, DecryptionError | None] | None:
        """Feed received bytes; return (protocol, frame, key error) for the first usable frame."""
        self.received += len(data)
        for info, framer in self.framers:
            for raw in framer.feed(data):
                if self._owner(raw) != info.name:
                    continue  # another protocol's frame that this framer also cuts out
                try:
                    frame = info.decode(raw, self.key, self.tz)
                except DecryptionError as err:
                    return info, None, err
                except ChecksumError as err:
                    self.problems.append(f"{info.name} frame with a bad checksum ({err})")
                    continue
                except SmartMeterError as err:
                    self.problems.append(f"{info.name} frame that does not decode ({err})")
                    continue
                except Exception as err:
                    self.problems.append(f"{info.name} decoder error {type(err).__name__}: {err}")
                    continue
                if frame.integrity is Integrity.INVALID:
                    self.problems.append(f"{info.name} frame with a bad checksum")
                    continue
                if frame.main is not None and frame.main.id == UNIDENTIFIED:
                    self.fallback = self.fallback or (info, frame, None)
                    continue
                return info, frame, None
        return None


async def _listen(
    url: str, settings: SerialSettings, listener: _Listener, seconds: float
) -> tuple[ProtocolInfo, Frame | None, DecryptionError | None] | None:
    link = await open_link(url, settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(link.read(READ_SIZE), remaining)
            except TimeoutError:
                break
            except (OSError, serialx.SerialException) as err:
                raise ConnectionFailedError(f"{serialx.redact_uri(url)}: {err}") from err
            if not data:
                raise ConnectionFailedError(f"{serialx.redact_uri(url)} closed the connection")
            found = listener.feed(data)
            if found is not None:
                return found
    finally:
        await _close_quietly(link)
    found, listener.fallback = listener.fallback, None
    return found


async def _try_iec(url: str, tz: tzinfo, problems: list[str]) -> Detection | None:
    """One IEC 62056-21 sign-on at 300 7E1; a retry when the BCC fails."""
    for attempt in range(2):
        link = await open_link(url, IEC_READOUT_SETTINGS)
        try:
            frame = await read_mode_c(link, timeout=IEC_TIMEOUT, total_timeout=60.0, tz=tz)
        except NoTelegramError as err:
            problems.append(f"IEC 62056-21 sign-on at {IEC_READOUT_SETTINGS.label}: {err}")
            return None
        except ChecksumError as err:
            if attempt:
                # Not a frame=None detection: that means "encrypted, ask for the key".
                problems.append(f"IEC 62056-21 readout with a bad checksum, twice ({err})")
                return None
            continue
        except ConnectionFailedError:
            raise
        except SmartMeterError as err:
            problems.append(f"IEC 62056-21 readout that does not decode ({err})")
            return None
        finally:
            await _close_quietly(link)
        return Detection("iec62056-21", IEC_READOUT_SETTINGS, frame)
    return None  # pragma: no cover - the loop returns


async def _try_mbus(url: str, tz: tzinfo, problems: list[str]) -> Detection | None:
    """Broadcast SND_NKE/REQ_UD2, then list the slaves (primary scan, secondary search)."""
    link = await open_link(url, MBUS_SETTINGS)
    try:

        async def transact(request: bytes) -> bytes | None:
            return await mbus_exchange(link, request, MBUS_SCAN_TIMEOUT)

        nke = await mbus_exchange(link, mbus.snd_nke(mbus.ADDRESS_BROADCAST_ANSWER), MBUS_READ_TIMEOUT)
        broadcast = await mbus_exchange(
            link, mbus.req_ud2(mbus.ADDRESS_BROADCAST_ANSWER, True), MBUS_READ_TIMEOUT
        )
        if nke is None and broadcast is None:
            problems.append(f"no M-Bus slave answered at {MBUS_SETTINGS.label}")
            return None
        scan = await mbus.scan_primary(transact, retries=0)
        addresses = [f"p{address}" for address in scan.found]
        if scan.collisions or not scan.found:
            # Slaves share a primary address (0, as delivered): tell them apart by secondary address.
            await mbus_exchange(link, mbus.snd_nke(mbus.ADDRESS_NETWORK), MBUS_SCAN_TIMEOUT)
            search = await mbus.search_secondary(transact)
            if search.found:
                addresses = list(search.found)
        if not addresses:
            problems.append("M-Bus answers, but no slave could be found by address")
            return None
        frame: Frame | None = None
        error = "no slave answered REQ_UD2"
        sample = broadcast if mbus.classify(broadcast) is mbus.Answer.FRAME else None
        # A sample that decodes: the broadcast answer (one slave), else the first slaves in turn.
        for address in (None, *addresses[:MBUS_SAMPLE_SLAVES]):
            answer = sample if address is None else await _read_one(link, address)
            if answer is None:
                continue
            try:
                frame = mbus.decode_mbus(answer, tz=tz)
                break
            except SmartMeterError as err:
                error = str(err)
        if frame is None:
            # Not a frame=None detection: that means "encrypted, ask for the key".
            problems.append(f"M-Bus slaves {', '.join(addresses[:MBUS_SAMPLE_SLAVES])}: {error}")
            return None
        return Detection("mbus", MBUS_SETTINGS, frame, addresses=tuple(addresses))
    finally:
        await _close_quietly(link)


async def _read_one(link: serialx.AsyncSerial, address: str) -> bytes | None:
    if address.startswith("p"):
        primary = int(address[1:])
    else:
        select = await mbus_exchange(link, mbus.select_secondary(address), MBUS_READ_TIMEOUT)
        if mbus.classify(select) is not mbus.Answer.ACK:
            return None
        primary = mbus.ADDRESS_NETWORK
    return await mbus_exchange(link, mbus.req_ud2(primary, True), MBUS_READ_TIMEOUT)


async def detect(
    url: str,
    *,
    key: bytes | None = None,
    tz: tzinfo = DEFAULT_TZ,
    transmit: bool = False,
    listen: float = 6.0,
) -> Detection:
    """Find the meter on ``url``: its protocol, line settings and a decoded frame.

    Listens ``listen`` seconds at each of :data:`LISTEN_SETTINGS` (a network
    bridge once: it sets the line itself) for a push meter. Only with
    ``transmit`` does it then ask an IEC 62056-21 meter and M-Bus slaves.
    An encrypted frame without a usable key comes back with
    ``encrypted=True``, ``frame=None`` and the reason in ``error``.

    Raises :class:`ConnectionFailedError` when the port cannot be opened and
    :class:`NoTelegramError` (saying what was tried) when nothing was found.
    """
    network = is_network_url(url)
    candidates = LISTEN_SETTINGS[:1] if network else LISTEN_SETTINGS
    listener = _Listener(key, tz)
    for settings in candidates:
        found = await _listen(url, settings, listener, listen)
        if found is None:
            continue
        info, frame, key_err = found
        used = info.settings[0] if network else settings
        if key_err is not None:
            return Detection(info.name, used, None, encrypted=True, error=str(key_err))
        assert frame is not None
        return Detection(info.name, used, frame, encrypted=frame.encrypted)
    tried = [f"listened {listen:g} s at " + ", ".join(s.label for s in candidates)]
    problems = listener.problems[:3]
    if transmit:
        iec = await _try_iec(url, tz, problems)
        if iec is not None:
            return iec
        found_mbus = await _try_mbus(url, tz, problems)
        if found_mbus is not None:
            return found_mbus
        tried.append(f"IEC 62056-21 sign-on at {IEC_READOUT_SETTINGS.label}")
        tried.append(f"M-Bus at {MBUS_SETTINGS.label}")
    received = f"{listener.received} bytes received" if listener.received else "nothing received"
    detail = "; ".join(problems)
    message = f"no meter found on {serialx.redact_uri(url)} ({'; '.join(tried)}): {received}"
    if detail:
        message += f"; {detail}"
    raise NoTelegramError(message)
