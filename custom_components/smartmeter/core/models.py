"""The meter model: frozen dataclasses shared by every protocol and source.

A :class:`Frame` is one decoded message from a meter link (a P1 telegram, an SML
file, an M-Bus response...). It holds one :class:`Meter` per physical meter it
describes: the main meter on channel 0 and, for P1, the gas, water or heat meters
on M-Bus channels 1-4 as sub-meters. Each meter carries its :class:`Register`
values, with the unit as the meter stated it and, where the meter stamped the
value, the meter's own timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

type RegisterValue = Decimal | int | str | datetime | None


class Medium(StrEnum):
    """What a meter measures."""

    ELECTRICITY = "electricity"
    GAS = "gas"
    WATER = "water"
    HOT_WATER = "hot_water"
    HEAT = "heat"
    COOLING = "cooling"
    HEAT_COST_ALLOCATOR = "heat_cost_allocator"
    UNKNOWN = "unknown"


class Integrity(StrEnum):
    """The verdict of a frame's own check (CRC, FCS, BCC)."""

    VALID = "valid"
    INVALID = "invalid"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of a register that carries a buffer (event log, monthly peaks)."""

    timestamp: datetime | None
    value: Decimal | None
    unit: str | None = None
    start: datetime | None = None


@dataclass(frozen=True, slots=True)
class Register:
    """One value read from a meter.

    ``obis`` is the normalised OBIS code (``1-0:1.8.1``), ``key`` the stable
    name the integration uses for entities (``energy_import_tariff_1``).
    """

    obis: str
    key: str
    value: RegisterValue
    unit: str | None = None
    timestamp: datetime | None = None
    history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Meter:
    """One physical meter and the registers one frame reported for it."""

    id: str
    medium: Medium
    channel: int = 0
    registers: tuple[Register, ...] = ()
    timestamp: datetime | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    parent_id: str | None = None
    # The name the meter goes by where it was configured (a Zigbee2MQTT friendly
    # name, a wmbusmeters meter name); None: named after its medium.
    name: str | None = None

    def register(self, key: str) -> Register | None:
        """Return the register with this key, if the frame carried it."""
        for reg in self.registers:
            if reg.key == key:
                return reg
        return None

    @property
    def values(self) -> dict[str, Register]:
        """Registers by key (the last one wins for repeated keys)."""
        return {reg.key: reg for reg in self.registers}


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame from a meter link."""

    protocol: str
    integrity: Integrity
    meters: tuple[Meter, ...]
    raw: bytes = field(default=b"", repr=False)
    header: str | None = None
    version: str | None = None
    encrypted: bool = False

    @property
    def main(self) -> Meter | None:
        """The channel-0 meter, if the frame has one."""
        for meter in self.meters:
            if meter.channel == 0:
                return meter
        return self.meters[0] if self.meters else None


@dataclass(slots=True)
class LinkStats:
    """Counters a source keeps about its link (mutable; read for diagnostics)."""

    frames_ok: int = 0
    frames_bad_checksum: int = 0
    frames_undecodable: int = 0
    frames_decrypt_failed: int = 0
    bytes_discarded: int = 0
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, int | str | None]:
        """Plain dict for diagnostics."""
        return {
            "frames_ok": self.frames_ok,
            "frames_bad_checksum": self.frames_bad_checksum,
            "frames_undecodable": self.frames_undecodable,
            "frames_decrypt_failed": self.frames_decrypt_failed,
            "bytes_discarded": self.bytes_discarded,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "last_error": self.last_error,
        }
