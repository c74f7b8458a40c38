"""The meter protocols the core speaks, in one registry.

Each :class:`ProtocolInfo` bundles what the rest of the core needs to handle a
protocol without knowing it: a fresh stream framer (bytes in, whole frames
out), a decoder for one frame, a cheap sniffing test for a capture, the line
settings real meters use, and whether the meter sends on its own (push) or
must be polled.

:data:`PROTOCOLS` is ordered for sniffing: the strict tests first (an SML
start sequence, an M-Bus frame, an HDLC header with a valid HCS), then IEC
62056-21, whose test tells its push telegrams from DSMR ones, and DSMR last,
because any ``/`` ... ``!`` passes its test.

``iec62056-21`` is listed as push: mode D meters (EasyMeter, EMH eHZ) send on
their own and are read like P1. Mode A/B/C meters answer a sign-on request at
300 baud 7E1 (:data:`IEC_READOUT_SETTINGS`); :class:`~.source.IecReadoutSource`
polls them. ``mbus`` is never push: :class:`~.source.MbusSource` polls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Protocol

from .dlms import decode_dlms, sniff_dlms
from .framer import P1Framer
from .hdlc import HdlcFramer
from .iec62056 import IecFramer, decode_iec, sniff_iec
from .mbus import MbusFramer, decode_mbus, sniff_mbus
from .models import Frame
from .p1 import decode_telegram
from .smarty import GLO_CIPHER_TAG
from .sml import SmlFramer, decode_sml, sniff_sml


class Framer(Protocol):
    """A stream framer: bytes in, whole raw frames out; never raises."""

    discarded: int

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the frames they completed."""
        ...  # pragma: no cover

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        ...  # pragma: no cover


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


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    """One protocol: how to frame, decode and recognise it, and its line settings."""

    name: str
    description: str
    framer: Callable[[], Framer]
    decode: Callable[[bytes, bytes | None, tzinfo], Frame]
    sniff: Callable[[bytes], bool]
    settings: tuple[SerialSettings, ...]
    push: bool


def _decode_dsmr(raw: bytes, key: bytes | None, tz: tzinfo) -> Frame:
    return decode_telegram(raw, key=key, tz=tz)


def _sniff_dsmr(data: bytes) -> bool:
    return (b"/" in data and b"!" in data) or data[:2] == bytes((GLO_CIPHER_TAG, 8))


def _decode_sml(raw: bytes, key: bytes | None, tz: tzinfo) -> Frame:
    return decode_sml(raw, tz=tz)


def _decode_dlms(raw: bytes, key: bytes | None, tz: tzinfo) -> Frame:
    return decode_dlms(raw, key=key, tz=tz)


def _decode_iec(raw: bytes, key: bytes | None, tz: tzinfo) -> Frame:
    return decode_iec(raw, tz=tz)


def _decode_mbus(raw: bytes, key: bytes | None, tz: tzinfo) -> Frame:
    return decode_mbus(raw, tz=tz)


# Line settings.
S115200_8N1 = SerialSettings(115200, 8, "N", 1)
S9600_8N1 = SerialSettings(9600, 8, "N", 1)
S9600_7E1 = SerialSettings(9600, 7, "E", 1)
S2400_8E1 = SerialSettings(2400, 8, "E", 1)
S2400_8N1 = SerialSettings(2400, 8, "N", 1)
S2400_7E1 = SerialSettings(2400, 7, "E", 1)
# IEC 62056-21 mode A/B/C: the sign-on runs at 300 baud 7E1.
IEC_READOUT_SETTINGS = SerialSettings(300, 7, "E", 1)
# M-Bus masters: 2400 baud 8E1 is what nearly every slave is set to.
MBUS_SETTINGS = S2400_8E1

PROTOCOLS: dict[str, ProtocolInfo] = {
    info.name: info
    for info in (
        ProtocolInfo(
            name="sml",
            description="SML 1.04 files of German eHZ/EDL21 meters",
            framer=SmlFramer,
            decode=_decode_sml,
            sniff=sniff_sml,
            settings=(S9600_8N1,),
            push=True,
        ),
        ProtocolInfo(
            name="mbus",
            description="wired M-Bus (EN 13757) RSP_UD frames",
            framer=MbusFramer,
            decode=_decode_mbus,
            sniff=sniff_mbus,
            settings=(S2400_8E1, SerialSettings(9600, 8, "E", 1), SerialSettings(300, 8, "E", 1)),
            push=False,
        ),
        ProtocolInfo(
            name="dlms",
            description="DLMS/COSEM HAN push (HDLC), plain or AES-GCM encrypted",
            framer=HdlcFramer,
            decode=_decode_dlms,
            sniff=sniff_dlms,
            # Norway (Aidon, Kaifa) 2400 8E1, Kamstrup 2400 8N1; Austria 115200 8N1.
            settings=(S2400_8E1, S2400_8N1, S115200_8N1),
            push=True,
        ),
        ProtocolInfo(
            name="iec62056-21",
            description="IEC 62056-21 (D0) mode D push telegrams and mode A/B/C readouts",
            framer=IecFramer,
            decode=_decode_iec,
            sniff=sniff_iec,
            # Mode D push: EasyMeter and EMH at 9600 7E1, the standard's 2400 7E1;
            # readouts start at 300 7E1.
            settings=(S9600_7E1, S2400_7E1, IEC_READOUT_SETTINGS),
            push=True,
        ),
        ProtocolInfo(
            name="dsmr",
            description="P1 / DSMR telegrams, every variant, plain or Smarty-encrypted",
            framer=P1Framer,
            decode=_decode_dsmr,
            sniff=_sniff_dsmr,
            # DSMR 4/5 and most others at 115200 8N1, DSMR 2.2/3 at 9600 7E1.
            settings=(S115200_8N1, S9600_7E1),
            push=True,
        ),
    )
}

PUSH_PROTOCOLS: tuple[str, ...] = tuple(name for name, info in PROTOCOLS.items() if info.push)


def sniff(data: bytes) -> ProtocolInfo | None:
    """The first protocol (in :data:`PROTOCOLS` order) whose sniffing test accepts ``data``."""
    for info in PROTOCOLS.values():
        if info.sniff(data):
            return info
    return None
