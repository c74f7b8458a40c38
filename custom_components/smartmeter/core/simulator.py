"""A P1 meter simulator that models real telegrams.

:class:`P1TelegramModel` takes a real telegram as a template (the built-in
default is a DSMR 5.0 Iskra MT382 telegram) and renders a new telegram for every
tick, keeping the template's layout, field widths and units:

* ``0-0:1.0.0`` becomes "now" in the meter's time zone, with the S/W DST flag;
* the power (``1-0:1.7.0``/``2.7.0`` and per phase ``21/41/61.7.0``,
  ``22/42/62.7.0``) follows a household profile (base load, appliances, optional
  solar) with noise;
* the energy registers (``1-0:1.8.x``/``2.8.x``, the active tariff from
  ``0-0:96.14.0``) grow by exactly power x elapsed time, kept as integer
  watt-microseconds and shown floored to the register resolution, so they never
  decrease;
* voltages and currents are consistent with the power per phase;
* M-Bus readings (gas, water, heat) and their capture time advance every
  capture interval (5 minutes for DSMR 5, hourly for older versions);
* the CRC16 is recomputed when the template had one.

:class:`PtySimulator` writes the telegrams to a pseudo-terminal (the slave path
is a real serial device), :class:`TcpSimulator` serves them on TCP like a
ser2net / network P1 dongle. Both can encrypt (Luxembourg Smarty framing) and
inject faults. ``python -m custom_components.smartmeter.core.simulator --help``
runs one from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import math
import os
import random
import re
import signal
import struct
import sys
import termios
import tty
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self, TypedDict, Unpack
from zoneinfo import ZoneInfo

from .crc import crc16_arc
from .p1 import DEFAULT_TZ, parse_timestamp
from .smarty import encrypt_frame

_LOGGER = logging.getLogger(__name__)

# Provenance: ndokter/dsmr_parser (MIT licence), test/example_telegrams.py ::
# TELEGRAM_V5 at commit fa20ee45a3103b8262b153e7b0037047abfaa6c7, an Iskra
# MT382 DSMR 5.0 meter (also ../shared/corpus/dsmr/nl_dsmr50_iskra_mt382.txt).
DEFAULT_TEMPLATE = (
    b"/ISk5\\2MT382-1000\r\n"
    b"\r\n"
    b"1-3:0.2.8(50)\r\n"
    b"0-0:1.0.0(170102192002W)\r\n"
    b"0-0:96.1.1(4B384547303034303436333935353037)\r\n"
    b"1-0:1.8.1(000004.426*kWh)\r\n"
    b"1-0:1.8.2(000002.399*kWh)\r\n"
    b"1-0:2.8.1(000002.444*kWh)\r\n"
    b"1-0:2.8.2(000000.000*kWh)\r\n"
    b"0-0:96.14.0(0002)\r\n"
    b"1-0:1.7.0(00.244*kW)\r\n"
    b"1-0:2.7.0(00.000*kW)\r\n"
    b"0-0:96.7.21(00013)\r\n"
    b"0-0:96.7.9(00000)\r\n"
    b"1-0:99.97.0(0)(0-0:96.7.19)\r\n"
    b"1-0:32.32.0(00000)\r\n"
    b"1-0:52.32.0(00000)\r\n"
    b"1-0:72.32.0(00000)\r\n"
    b"1-0:32.36.0(00000)\r\n"
    b"1-0:52.36.0(00000)\r\n"
    b"1-0:72.36.0(00000)\r\n"
    b"0-0:96.13.0()\r\n"
    b"1-0:32.7.0(0230.0*V)\r\n"
    b"1-0:52.7.0(0230.0*V)\r\n"
    b"1-0:72.7.0(0229.0*V)\r\n"
    b"1-0:31.7.0(0.48*A)\r\n"
    b"1-0:51.7.0(0.44*A)\r\n"
    b"1-0:71.7.0(0.86*A)\r\n"
    b"1-0:21.7.0(00.070*kW)\r\n"
    b"1-0:41.7.0(00.032*kW)\r\n"
    b"1-0:61.7.0(00.142*kW)\r\n"
    b"1-0:22.7.0(00.000*kW)\r\n"
    b"1-0:42.7.0(00.000*kW)\r\n"
    b"1-0:62.7.0(00.000*kW)\r\n"
    b"0-1:24.1.0(003)\r\n"
    b"0-1:96.1.0(3232323241424344313233343536373839)\r\n"
    b"0-1:24.2.1(170102161005W)(00000.107*m3)\r\n"
    b"0-2:24.1.0(003)\r\n"
    b"0-2:96.1.0()\r\n"
    b"!6EEE\r\n"
)

# Watt-microseconds in one unit of an energy register, watts in one unit of power.
_ENERGY_UNITS = {"kWh": 3_600_000_000_000, "Wh": 3_600_000_000}
_POWER_UNITS = {"kW": 1000, "W": 1}
_NANO = 1_000_000_000  # M-Bus readings are kept in nano-units (1e-9 m3, GJ)
_PHASE_POWER = (("1-0:21.7.0", "1-0:22.7.0"), ("1-0:41.7.0", "1-0:42.7.0"), ("1-0:61.7.0", "1-0:62.7.0"))
_PHASE_VOLTAGE = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
_PHASE_CURRENT = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")
_L23_CODES = frozenset(
    {
        "1-0:41.7.0",
        "1-0:61.7.0",
        "1-0:42.7.0",
        "1-0:62.7.0",
        "1-0:52.7.0",
        "1-0:72.7.0",
        "1-0:51.7.0",
        "1-0:71.7.0",
    }
)
_OBIS_LINE = re.compile(r"^(\d+-\d+:\d+\.\d+\.\d+(?:\*\d+)?)\((.*)\)$")
_NUMBER = re.compile(r"^(\d+)(?:\.(\d+))?(\*?)([A-Za-z0-9]*)$")
_ENERGY = re.compile(r"^1-0:([12])\.8\.([0-4])$")
_MBUS_READING = re.compile(r"^0-([1-4]):24\.2\.[13]$")


# --------------------------------------------------------------------- formats


@dataclass(frozen=True, slots=True)
class _NumberFormat:
    """How a template writes one number: ``002130.115*kWh``."""

    int_digits: int
    decimals: int
    star: bool
    unit: str

    @classmethod
    def parse(cls, text: str) -> _NumberFormat | None:
        match = _NUMBER.match(text)
        if match is None:
            return None
        whole, frac, star, unit = match.groups()
        return cls(len(whole), len(frac or ""), bool(star), unit)

    @property
    def step(self) -> Decimal:
        """The resolution, e.g. ``0.001``."""
        return Decimal(1).scaleb(-self.decimals)

    def quantize(self, value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """``value`` at this format's resolution."""
        return value.quantize(self.step, rounding=rounding)

    def render(self, value: Decimal) -> str:
        """``value`` written like the template wrote its number."""
        width = self.int_digits + (self.decimals + 1 if self.decimals else 0)
        text = f"{self.quantize(value):0{width}.{self.decimals}f}"
        if self.unit:
            text += ("*" if self.star else "") + self.unit
        return text


def _number_value(text: str) -> Decimal:
    """The number of a ``002130.115*kWh`` group."""
    match = _NUMBER.match(text)
    assert match is not None  # the callers parsed the same text with _NumberFormat.parse
    return Decimal(match[1] + ("." + match[2] if match[2] else ""))


def _format_stamp(moment: datetime, tz: tzinfo, *, flag: bool = True) -> str:
    """``YYMMDDhhmmssX`` in ``tz`` (X = S in summer time, W in winter time)."""
    local = moment.astimezone(tz)
    text = local.strftime("%y%m%d%H%M%S")
    if flag:
        text += "S" if local.dst() else "W"
    return text


@dataclass(slots=True)
class _Line:
    """One template line: an OBIS code with its value groups, or raw text."""

    raw: str
    obis: str | None = None
    groups: list[str] = field(default_factory=list)

    def render(self) -> str:
        if self.obis is None:
            return self.raw
        return f"{self.obis}({')('.join(self.groups)})"


# --------------------------------------------------------------------- profile


@dataclass(frozen=True, slots=True)
class Appliance:
    """An appliance that switches on at random inside its hours."""

    name: str
    watts: int
    minutes: float
    phase: int
    per_day: float
    hours: tuple[int, int]


APPLIANCES: tuple[Appliance, ...] = (
    Appliance("kettle", 2000, 3, 0, 4.0, (6, 23)),
    Appliance("microwave", 900, 4, 1, 2.0, (7, 22)),
    Appliance("hair dryer", 1200, 8, 0, 0.6, (6, 9)),
    Appliance("washing machine", 2000, 25, 1, 0.4, (8, 21)),
    Appliance("induction hob", 2800, 20, 2, 0.9, (17, 20)),
    Appliance("oven", 2200, 40, 2, 0.3, (16, 20)),
    Appliance("dishwasher", 1800, 30, 2, 0.7, (19, 23)),
)


@dataclass(frozen=True, slots=True)
class Load:
    """What the house draws and produces during one tick."""

    consumption_w: tuple[float, float, float]
    production_w: tuple[float, float, float]
    gas_m3h: float
    water_m3h: float
    heat_gjh: float


class HouseholdProfile:
    """A plausible household: base load, fridge, lights, appliances, solar, heating.

    Deterministic for a given seed and sequence of calls.
    """

    def __init__(self, rng: random.Random, *, solar_kwp: float = 0.0, phases: int = 3) -> None:
        self.rng = rng
        self.solar_kwp = solar_kwp
        self.phases = phases
        self._running: dict[str, datetime] = {}
        self._fridge_offset = rng.uniform(0, 2700)
        self._cloud = rng.uniform(0.5, 1.0)
        self._shower_until: datetime | None = None

    def _appliances(self, local: datetime, dt: float) -> list[Appliance]:
        running = []
        for app in APPLIANCES:
            until = self._running.get(app.name)
            if until is not None and until > local:
                running.append(app)
                continue
            self._running.pop(app.name, None)
            first, last = app.hours
            if not first <= local.hour < last or dt <= 0:
                continue
            chance = app.per_day / ((last - first) * 3600) * dt
            if self.rng.random() < min(chance, 1.0):
                self._running[app.name] = local + timedelta(minutes=app.minutes * self.rng.uniform(0.7, 1.3))
                running.append(app)
        return running

    def _solar(self, local: datetime) -> float:
        if self.solar_kwp <= 0:
            return 0.0
        doy = local.timetuple().tm_yday
        season = math.sin(2 * math.pi * (doy - 80) / 365)
        day_length = 12 + 4.5 * season
        noon = 12.5 + (1 if local.dst() else 0)
        hour = local.hour + local.minute / 60 + local.second / 3600
        position = (hour - (noon - day_length / 2)) / day_length
        if not 0 < position < 1:
            return 0.0
        self._cloud = min(1.0, max(0.2, self._cloud + self.rng.gauss(0, 0.01)))
        amplitude = 0.72 + 0.25 * season
        return self.solar_kwp * 1000 * amplitude * float(math.sin(math.pi * position) ** 1.4) * self._cloud

    def sample(self, local: datetime, dt: float) -> Load:
        """The load during the ``dt`` seconds that end at ``local``."""
        rng = self.rng
        hour = local.hour + local.minute / 60
        base = [55.0, 35.0, 45.0]  # standby: router, heat pump control, chargers
        if (local.timestamp() + self._fridge_offset) % 2700 < 900:
            base[1] += 85  # fridge compressor
        if hour >= 17 or hour < 0.5 or 6 <= hour < 8:
            base[0] += 140  # lights
        if 19 <= hour < 23.5:
            base[2] += 110  # television
        for app in self._appliances(local, dt):
            base[app.phase] += app.watts * rng.uniform(0.95, 1.05)
        consumption = [w * rng.uniform(0.97, 1.03) + rng.uniform(-5, 5) for w in base]
        solar = self._solar(local)
        if self.phases == 1:
            consumption = [sum(consumption), 0.0, 0.0]
            production = [solar, 0.0, 0.0]
        else:
            production = [solar / 3] * 3
        doy = local.timetuple().tm_yday
        heating = max(0.0, math.cos(2 * math.pi * (doy - 15) / 365))  # 1 in January, 0 in summer
        setback = 0.3 if hour < 6 or hour >= 23 else 1.0
        gas = 0.55 * heating * setback * rng.uniform(0.8, 1.2)
        if self._shower_until is not None and self._shower_until <= local:
            self._shower_until = None
        if self._shower_until is None and 6 <= hour < 9 and rng.random() < min(1.0, 2 / (3 * 3600) * dt):
            self._shower_until = local + timedelta(minutes=8)
        showering = self._shower_until is not None
        return Load(
            consumption_w=(consumption[0], consumption[1], consumption[2]),
            production_w=(production[0], production[1], production[2]),
            gas_m3h=gas + (0.9 if showering else 0.0),
            water_m3h=(0.48 if showering else 0.0) + (0.02 if 7 <= hour < 23 else 0.0) * rng.random(),
            heat_gjh=0.02 * heating * setback * rng.uniform(0.8, 1.2),
        )


# --------------------------------------------------------------------- model


def dutch_tariff(local: datetime) -> int:
    """DSMR tariff: 2 (normal) on weekdays 07:00-23:00, else 1 (low)."""
    return 2 if local.weekday() < 5 and 7 <= local.hour < 23 else 1


def belgian_tariff(local: datetime) -> int:
    """e-MUCS tariff: 1 (day) on weekdays 07:00-22:00, else 2 (night)."""
    return 1 if local.weekday() < 5 and 7 <= local.hour < 22 else 2


@dataclass(frozen=True, slots=True)
class Reading:
    """What the model put in one telegram, as a decoder must read it back."""

    timestamp: datetime
    elapsed: timedelta
    tariff: int | None
    power_import_w: int
    power_export_w: int
    values: Mapping[str, Decimal]
    captures: Mapping[str, tuple[datetime, Decimal]]


@dataclass(slots=True)
class _MbusChannel:
    obis: str
    line: _Line
    fmt: _NumberFormat
    device_type: int
    acc: int  # nano-units
    captured_at: datetime
    shown: Decimal
    rate_key: str


class P1TelegramModel:
    """Renders telegrams modelled on a real one; ``render(now)`` for each tick.

    Args:
        template: a plain P1 telegram (wire bytes, ``/`` ... ``!CRC``).
        tz: the meter's time zone (stamps and the S/W flag).
        seed: seed of the random household profile (``None``: random).
        solar_kwp: size of a simulated solar installation (0: none).
        tariff: active tariff as a function of local time (default: Dutch
            schedule, Belgian for Fluvius headers).
        capture_interval: seconds between M-Bus captures (default: 300 for
            DSMR 5, 3600 otherwise).
    """

    def __init__(
        self,
        template: bytes = DEFAULT_TEMPLATE,
        *,
        tz: tzinfo = DEFAULT_TZ,
        seed: int | None = None,
        solar_kwp: float = 0.0,
        tariff: Callable[[datetime], int] | None = None,
        capture_interval: float | None = None,
    ) -> None:
        start = template.find(b"/")
        bang = template.rfind(b"!")
        if start < 0 or bang < start:
            raise ValueError("the template is not a plain P1 telegram ('/' ... '!')")
        self.tz = tz
        self.has_crc = bool(re.match(rb"[0-9A-Fa-f]{3,4}", template[bang + 1 : bang + 5]))
        text = template[start:bang].decode("latin-1")
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.header = lines[0][1:] if lines else ""
        self._lines: list[_Line] = [_Line(raw=lines[0])]
        self._by_obis: dict[str, _Line] = {}
        for raw in lines[1:]:
            match = _OBIS_LINE.match(raw)
            line = _Line(raw) if match is None else _Line(raw, match[1], match[2].split(")("))
            self._lines.append(line)
            if line.obis is not None:
                self._by_obis.setdefault(line.obis, line)
        version = self._by_obis.get("1-3:0.2.8")
        self.version = version.groups[0] if version is not None else None
        self.default_interval = 1.0 if (self.version or "").startswith("5") else 10.0
        self.capture_interval = capture_interval or (
            300.0 if (self.version or "").startswith("5") else 3600.0
        )
        self.phases = 3 if _L23_CODES & self._by_obis.keys() else 1
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not crypto
        self.profile = HouseholdProfile(self.rng, solar_kwp=solar_kwp, phases=self.phases)
        self.tariff_schedule = tariff or (belgian_tariff if self.header.startswith("FLU") else dutch_tariff)
        self._formats: dict[str, _NumberFormat] = {}
        for obis, line in self._by_obis.items():
            fmt = _NumberFormat.parse(line.groups[-1]) if line.groups else None
            if fmt is not None:
                self._formats[obis] = fmt
        # Energy registers as exact integers (watt-microseconds).
        self._energy: dict[str, int] = {}
        for obis, fmt in self._formats.items():
            if (_ENERGY.match(obis) or obis == "1-0:15.8.0") and fmt.unit in _ENERGY_UNITS:
                value = _number_value(self._by_obis[obis].groups[-1])
                self._energy[obis] = int(value * _ENERGY_UNITS[fmt.unit])
        self._tariffs = sorted({int(m[2]) for o in self._energy if (m := _ENERGY.match(o)) and m[2] != "0"})
        power_steps = [
            fmt.step * _POWER_UNITS[fmt.unit]
            for obis, fmt in self._formats.items()
            if obis in {"1-0:1.7.0", "1-0:2.7.0", *(c for pair in _PHASE_POWER for c in pair)}
            and fmt.unit in _POWER_UNITS
        ]
        self._power_step = max([*power_steps, Decimal(1)])
        self._voltage = [self.rng.uniform(228.0, 234.0) for _ in range(3)]
        self._mbus = self._find_mbus()
        self._last: datetime | None = None
        self.last: Reading | None = None

    def _find_mbus(self) -> list[_MbusChannel]:
        channels = []
        for obis, line in self._by_obis.items():
            match = _MBUS_READING.match(obis)
            if match is None or len(line.groups) < 2:
                continue
            fmt = _NumberFormat.parse(line.groups[1])
            stamp = parse_timestamp(line.groups[0], self.tz)
            if fmt is None or not fmt.unit or stamp is None or stamp.year < 2000:
                continue  # no meter on this channel ("700101010000W", no unit)
            type_line = self._by_obis.get(f"0-{match[1]}:24.1.0")
            device_type = int(type_line.groups[0]) if type_line and type_line.groups[0].isdigit() else 3
            rate_key = {
                4: "heat_gjh",
                12: "heat_gjh",
                13: "heat_gjh",
                7: "water_m3h",
                22: "water_m3h",
                6: "water_m3h",
                21: "water_m3h",
            }.get(device_type, "gas_m3h")
            if fmt.unit in {"GJ", "MWh", "kWh"}:
                rate_key = "heat_gjh"
            value = _number_value(line.groups[1])
            channels.append(
                _MbusChannel(obis, line, fmt, device_type, int(value * _NANO), stamp, value, rate_key)
            )
        return channels

    def _set(self, obis: str, value: Decimal, values: dict[str, Decimal]) -> None:
        line = self._by_obis.get(obis)
        fmt = self._formats.get(obis)
        if line is None or fmt is None:
            return
        shown = fmt.quantize(value)
        line.groups[-1] = fmt.render(shown)
        values[obis] = shown

    def _capture_time(self, moment: datetime) -> datetime:
        interval = self.capture_interval
        seconds = math.floor(moment.timestamp() / interval) * interval
        return datetime.fromtimestamp(seconds, UTC)

    def render(self, now: datetime) -> bytes:
        """The telegram the meter sends at ``now`` (an aware datetime)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        now = now.replace(microsecond=0)
        elapsed = timedelta(0) if self._last is None or now <= self._last else now - self._last
        if self._last is None or now > self._last:
            self._last = now
        dt_us = elapsed // timedelta(microseconds=1)
        local = now.astimezone(self.tz)
        values: dict[str, Decimal] = {}
        load = self.profile.sample(local, dt_us / 1e6)

        stamp_line = self._by_obis.get("0-0:1.0.0")
        if stamp_line is not None and stamp_line.groups:
            stamp_line.groups[0] = _format_stamp(now, self.tz, flag=len(stamp_line.groups[0]) == 13)

        tariff = None
        if self._tariffs:
            tariff = self.tariff_schedule(local)
            if tariff not in self._tariffs:
                tariff = self._tariffs[0]
        if tariff is not None and "0-0:96.14.0" in self._formats:
            self._set("0-0:96.14.0", Decimal(tariff), values)

        # Power per phase, at the display resolution, so energy = shown power x time.
        step = self._power_step
        nets = []
        for phase in range(3):
            net = Decimal(round(load.consumption_w[phase] - load.production_w[phase]))
            nets.append((net / step).quantize(Decimal(1)) * step)
        total = sum(nets, Decimal(0))
        import_w = max(total, Decimal(0))
        export_w = max(-total, Decimal(0))
        self._set_power("1-0:1.7.0", import_w, values)
        self._set_power("1-0:2.7.0", export_w, values)
        for phase, (imp, exp) in enumerate(_PHASE_POWER):
            self._set_power(imp, max(nets[phase], Decimal(0)), values)
            self._set_power(exp, max(-nets[phase], Decimal(0)), values)
            self._voltage[phase] = min(238.0, max(224.0, self._voltage[phase] + self.rng.gauss(0, 0.15)))
            volts = Decimal(str(round(self._voltage[phase] - 0.0012 * float(nets[phase]), 2)))
            self._set(_PHASE_VOLTAGE[phase], volts, values)
            shown_volts = values.get(_PHASE_VOLTAGE[phase], volts) or Decimal(230)
            self._set(_PHASE_CURRENT[phase], abs(nets[phase]) / shown_volts, values)
        if "1-0:14.7.0" in self._formats:
            self._set("1-0:14.7.0", Decimal(str(round(50 + self.rng.gauss(0, 0.015), 3))), values)

        # Energy: exact integer accumulation, shown floored (never decreasing).
        for obis in self._energy:
            match = _ENERGY.match(obis)
            if match is None:  # 15.8.0: absolute energy
                power = import_w + export_w
            else:
                power = import_w if match[1] == "1" else export_w
                if match[2] != "0" and int(match[2]) != tariff:
                    power = Decimal(0)
            self._energy[obis] += int(power) * dt_us
            fmt = self._formats[obis]
            shown = (Decimal(self._energy[obis]) / _ENERGY_UNITS[fmt.unit]).quantize(
                fmt.step, rounding=ROUND_FLOOR
            )
            self._set(obis, shown, values)

        captures: dict[str, tuple[datetime, Decimal]] = {}
        for channel in self._mbus:
            rate: float = getattr(load, channel.rate_key)
            per_us = rate * _NANO / 3_600_000_000
            capture = self._capture_time(now)
            if capture > channel.captured_at:
                before = max(0, (capture - (now - elapsed)) // timedelta(microseconds=1))
                channel.acc += int(per_us * min(before, dt_us))
                channel.captured_at = capture
                channel.shown = (Decimal(channel.acc) / _NANO).quantize(
                    channel.fmt.step, rounding=ROUND_FLOOR
                )
                channel.line.groups[0] = _format_stamp(
                    capture, self.tz, flag=len(channel.line.groups[0]) == 13
                )
                channel.line.groups[1] = channel.fmt.render(channel.shown)
                channel.acc += int(per_us * (dt_us - min(before, dt_us)))
            else:
                channel.acc += int(per_us * dt_us)
            captures[channel.obis] = (channel.captured_at.astimezone(self.tz), channel.shown)

        body = "\r\n".join(line.render() for line in self._lines) + "\r\n!"
        data = body.encode("latin-1")
        data += f"{crc16_arc(data):04X}".encode() if self.has_crc else b""
        self.last = Reading(
            timestamp=now,
            elapsed=elapsed,
            tariff=tariff,
            power_import_w=int(import_w),
            power_export_w=int(export_w),
            values=values,
            captures=captures,
        )
        return data + b"\r\n"

    def _set_power(self, obis: str, watts: Decimal, values: dict[str, Decimal]) -> None:
        fmt = self._formats.get(obis)
        if fmt is None or fmt.unit not in _POWER_UNITS:
            return
        self._set(obis, watts / _POWER_UNITS[fmt.unit], values)

    def energy_wh(self, obis: str) -> Decimal:
        """The exact (unrounded) energy register in Wh."""
        return Decimal(self._energy[obis]) / 3_600_000_000


# --------------------------------------------------------------------- faults


class Fault(StrEnum):
    """A transmission fault the simulator can inject into one telegram."""

    GARBAGE = "garbage"  # line noise before the telegram (the telegram stays good)
    TRUNCATE = "truncate"  # the telegram stops half-way (a line boundary)
    BAD_CRC = "bad_crc"  # one value changed after the CRC was computed


type FaultPlan = Mapping[int, Fault] | Callable[[int], Fault | None]

GARBAGE = b"\x00\xfe\x13\x7f~~noise~~\xff\x00"


def inject_fault(telegram: bytes, fault: Fault) -> bytes:
    """Return ``telegram`` (plain or encrypted) damaged by ``fault``."""
    if fault is Fault.GARBAGE:
        return GARBAGE + telegram
    if fault is Fault.TRUNCATE:
        if telegram[:1] == b"\xdb":
            return telegram[: len(telegram) // 2]
        cut = telegram.find(b"\r\n", len(telegram) // 2)
        return telegram[: cut + 2] if cut > 0 else telegram[: len(telegram) // 2]
    # BAD_CRC: change one digit of the body, keep the stated CRC.
    if telegram[:1] == b"\xdb":
        damaged = bytearray(telegram)
        damaged[len(damaged) // 2] ^= 0x01
        return bytes(damaged)
    paren = telegram.find(b"(", telegram.find(b"1-0:1.8.") if b"1-0:1.8." in telegram else 0)
    for index in range(paren + 1, len(telegram)):
        if telegram[index : index + 1].isdigit():
            digit = b"1" if telegram[index : index + 1] != b"1" else b"2"
            return telegram[:index] + digit + telegram[index + 1 :]
    return telegram


# --------------------------------------------------------------------- simulators


@dataclass(frozen=True, slots=True)
class SentTelegram:
    """One telegram a simulator sent."""

    seq: int
    reading: Reading
    plaintext: bytes
    data: bytes
    fault: Fault | None


class SimulatorOptions(TypedDict, total=False):
    """Options every simulator takes.

    ``interval``: seconds between telegrams (default: the model's, 1 s for
    DSMR 5, 10 s before). ``speed``: meter-time compression (60: a minute of
    meter time per second). ``start``: the meter clock at start (default: now).
    ``key``: encrypt like a Smarty meter. ``faults``: telegram number (from 1)
    -> :class:`Fault`, or a function of it. ``history``: sent telegrams kept.
    """

    interval: float | None
    speed: float
    start: datetime | None
    key: bytes | None
    faults: FaultPlan | None
    history: int


class _Simulator:
    """Renders a telegram every ``interval`` and hands it to :meth:`_emit`."""

    def __init__(self, model: P1TelegramModel | None = None, **options: Unpack[SimulatorOptions]) -> None:
        self.model = model or P1TelegramModel()
        interval = options.get("interval")
        self.interval = interval if interval is not None else self.model.default_interval
        self.speed = options.get("speed", 1.0)
        if self.interval <= 0 or self.speed <= 0:
            raise ValueError("interval and speed must be positive")
        self.start_time = options.get("start")
        self.key = options.get("key")
        self.faults = options.get("faults")
        self.sent = 0
        self.history: deque[SentTelegram] = deque(maxlen=options.get("history", 100))
        self._task: asyncio.Task[None] | None = None
        self._sent_event = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _emit(self, data: bytes) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Open the output and start sending."""
        if self._task is not None:
            return
        await self._open()
        self._task = asyncio.create_task(self._run(), name=f"{type(self).__name__}")

    async def stop(self) -> None:
        """Stop sending and close everything this simulator opened (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    @property
    def running(self) -> bool:
        """Whether the simulator is sending."""
        return self._task is not None and not self._task.done()

    def _fault_for(self, seq: int) -> Fault | None:
        plan = self.faults
        if plan is None:
            return None
        if isinstance(plan, Mapping):
            return plan.get(seq)
        return plan(seq)

    def next_telegram(self, now: datetime) -> bytes:
        """Render, fault and encrypt the next telegram (what goes on the wire)."""
        seq = self.sent + 1
        plaintext = self.model.render(now)
        reading = self.model.last
        assert reading is not None  # render() always sets it
        fault = self._fault_for(seq)
        data = plaintext
        if fault is Fault.BAD_CRC:
            data = inject_fault(data, fault)
        if self.key is not None:
            data = encrypt_frame(data, self.key, frame_counter=seq)
        if fault is not None and fault is not Fault.BAD_CRC:
            data = inject_fault(data, fault)
        self.sent = seq
        self.history.append(SentTelegram(seq, reading, plaintext, data, fault))
        self._sent_event.set()
        return data

    async def wait_sent(self, count: int) -> None:
        """Wait until at least ``count`` telegrams were sent in total."""
        while self.sent < count:
            self._sent_event.clear()
            await self._sent_event.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        wall0 = self.start_time or datetime.now(UTC)
        tick = 0
        while True:
            now = wall0 + timedelta(seconds=(loop.time() - t0) * self.speed)
            try:
                await self._emit(self.next_telegram(now))
            except OSError as err:
                _LOGGER.debug("simulator output error: %s", err)
            tick += 1
            delay = t0 + tick * self.interval - loop.time()
            if delay < 0:  # fell behind: skip ticks rather than burst
                tick = math.ceil((loop.time() - t0) / self.interval)
                delay = t0 + tick * self.interval - loop.time()
            await asyncio.sleep(max(delay, 0))


def _input_pending(fd: int) -> int:
    """Bytes waiting in a terminal's input queue."""
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


class PtySimulator(_Simulator):
    """A meter on a pseudo-terminal: open :attr:`device_path` like a serial port.

    Like a real P1 port it keeps sending when nobody listens: telegrams that
    pile up unread are thrown away, so a reader that opens the port gets fresh
    ones. ``link`` makes a stable symlink to the device.
    """

    def __init__(
        self,
        model: P1TelegramModel | None = None,
        *,
        link: str | Path | None = None,
        **options: Unpack[SimulatorOptions],
    ) -> None:
        super().__init__(model, **options)
        self.link = Path(link) if link is not None else None
        self._master: int | None = None
        self._slave: int | None = None
        self.device_path = ""

    async def _open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.device_path = os.ttyname(slave)
        if self.link is not None:
            if self.link.is_symlink():
                self.link.unlink()
            self.link.parent.mkdir(parents=True, exist_ok=True)
            self.link.symlink_to(self.device_path)

    @property
    def path(self) -> str:
        """What a reader opens: the symlink if there is one, else the device."""
        return str(self.link) if self.link is not None else self.device_path

    async def _emit(self, data: bytes) -> None:
        master, slave = self._master, self._slave
        if master is None or slave is None:
            return
        if _input_pending(slave) > min(2 * len(data), 3000):
            termios.tcflush(slave, termios.TCIFLUSH)  # nobody is reading: drop the stale ones
        view = memoryview(data)
        for _ in range(50):
            try:
                written = os.write(master, view)
            except BlockingIOError:
                termios.tcflush(slave, termios.TCIFLUSH)
                continue
            view = view[written:]
            if not view:
                return
            await asyncio.sleep(0.001)

    async def _close(self) -> None:
        master, slave, self._master, self._slave = self._master, self._slave, None, None
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.link is not None and self.link.is_symlink():
            with contextlib.suppress(OSError):
                self.link.unlink()


class TcpSimulator(_Simulator):
    """A network P1 dongle (ser2net style): every client gets the telegrams.

    ``port=0`` picks a free port (see :attr:`port` and :attr:`url` after start).
    """

    MAX_BUFFER = 64 * 1024

    def __init__(
        self,
        model: P1TelegramModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Unpack[SimulatorOptions],
    ) -> None:
        super().__init__(model, **options)
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}

    @property
    def url(self) -> str:
        """The serialx URL of this dongle."""
        return f"socket://{self.host}:{self.port}"

    @property
    def clients(self) -> int:
        """Number of connected clients."""
        return len(self._clients)

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients[writer] = asyncio.current_task()
        try:
            while await reader.read(1024):  # a P1 port ignores what it receives
                pass
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.pop(writer, None)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _emit(self, data: bytes) -> None:
        for writer in list(self._clients):
            if writer.is_closing() or writer.transport.get_write_buffer_size() > self.MAX_BUFFER:
                writer.close()  # gone, or not reading: a dongle drops it
                self._clients.pop(writer, None)
                continue
            writer.write(data)

    async def disconnect_clients(self) -> None:
        """Drop every client connection (the server keeps listening)."""
        writers = list(self._clients)
        tasks = [task for task in self._clients.values() if task is not None]
        for writer in writers:
            writer.close()
        self._clients.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.disconnect_clients()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)


# --------------------------------------------------------------------- command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="simulate", description="Simulate a P1 smart meter on a pseudo-terminal and/or TCP."
    )
    parser.add_argument("--template", type=Path, help="telegram file to model (default: Iskra MT382 DSMR 5)")
    parser.add_argument(
        "--pty", action="store_true", help="write to a pseudo-terminal (default without --tcp)"
    )
    parser.add_argument("--pty-link", type=Path, help="symlink the pseudo-terminal here (implies --pty)")
    parser.add_argument("--tcp", metavar="[HOST:]PORT", help="serve on TCP like a network P1 dongle")
    parser.add_argument(
        "--interval", type=float, help="seconds between telegrams (default 1 s DSMR 5, 10 s older)"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="meter-time compression factor (default 1)")
    parser.add_argument("--key", help="encrypt like a Luxembourg Smarty meter with this 32-hex-digit key")
    parser.add_argument("--solar-kwp", type=float, default=0.0, help="size of a simulated solar installation")
    parser.add_argument("--seed", type=int, help="random seed of the household profile")
    parser.add_argument("--tz", default="Europe/Amsterdam", help="the meter's time zone")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every telegram")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    from .smarty import parse_key  # noqa: PLC0415

    template = args.template.read_bytes() if args.template else DEFAULT_TEMPLATE
    model = P1TelegramModel(template, tz=ZoneInfo(args.tz), seed=args.seed, solar_kwp=args.solar_kwp)
    options: SimulatorOptions = {
        "interval": args.interval,
        "speed": args.speed,
        "key": parse_key(args.key) if args.key else None,
    }
    sims: list[_Simulator] = []
    if args.pty or args.pty_link or not args.tcp:
        sims.append(PtySimulator(model, link=args.pty_link, **options))
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        sims.append(TcpSimulator(model, host=host or "127.0.0.1", port=int(port), **options))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for sim in sims:
            await sim.start()
            if isinstance(sim, PtySimulator):
                where = sim.device_path + (f" (link {sim.link})" if sim.link else "")
            else:
                where = sim.url if isinstance(sim, TcpSimulator) else ""
            print(f"simulating {model.header} every {sim.interval:g} s on {where}", flush=True)  # noqa: T201
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5 if args.verbose else 3600)
            if args.verbose and model.last is not None:
                last = model.last
                print(  # noqa: T201
                    f"{last.timestamp.astimezone(model.tz):%H:%M:%S} import {last.power_import_w} W "
                    f"export {last.power_export_w} W tariff {last.tariff}",
                    flush=True,
                )
    finally:
        for sim in sims:
            await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Run simulators until SIGINT / SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
