"""Simulated, realistic household meter series for the usage-alert tests.

Deterministic by seed. Time runs in whole minutes of local time; the meters
report what a real one would: a cumulative total truncated to its last digit
(gas 0.001 m³, electricity 0.001 kWh = 1 Wh) and, for electricity, the power of
the moment in kW with 1 W resolution.

Gas (a Dutch-style house with a combi boiler, no pilot flame):

* heating from 06:30 (weekends 07:30) to 22:30 at 20 °C, nothing at night
  (setback thermostat); the gas rate follows the heat loss, 0.045 m³/h per K
  below 20 °C of the outside temperature, with a one-hour morning warm-up at
  1.8 x; the outside temperature is a seeded day-to-day random walk around
  5 °C with a ±3 °C afternoon-peaking daily swing;
* hot water: one or two morning showers at a random time (07:00-07:40 on
  weekdays, 08:30-09:30 at weekends), the dishes after dinner; the hob while
  cooking (17:45-18:45).

Electricity: an always-on load (``base_w``, default 120 W, ±3 W of noise), a
fridge compressor of 85 W cycling 14-18 min on / 22-28 min off, breakfast
(kettle, toaster, lights), a home-office desk on weekdays, the hob while
cooking, lights and TV in the evening, a dishwasher every night and a washing
machine on about 40 % of the days.

A holiday day has nobody at home: no gas at all (heating off), and only the
always-on load and the fridge.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

MINUTES = 24 * 60
GAS_PER_K_HOUR = 0.045  # m³/h per K below the indoor setpoint
SHOWER_RATE = 0.035  # m³/min, a 20 kW combi boiler
HOB_RATE = 0.004  # m³/min, one gas burner


@dataclass(frozen=True)
class Extra:
    """Use added on top of the household: ``amount`` m³ (gas) or W (electricity) from start to end."""

    start: datetime
    end: datetime
    amount: float


def _minute_of(start: datetime, moment: datetime) -> int:
    return int((moment - start) / timedelta(minutes=1))


def _add_extras(rates: list[float], start: datetime, extras: Iterable[Extra], spread: bool) -> None:
    for extra in extras:
        lo, hi = _minute_of(start, extra.start), _minute_of(start, extra.end)
        each = extra.amount / (hi - lo) if spread else extra.amount
        for minute in range(max(lo, 0), min(hi, len(rates))):
            rates[minute] += each


def outside_temperatures(days: int, seed: int) -> list[float]:
    """Daily mean outside temperature (°C): a random walk held near 5 °C."""
    rng = random.Random(seed * 7919 + 1)  # noqa: S311 (a simulation, not crypto)
    temps, temp = [], 5.0
    for _ in range(days):
        temp += rng.gauss(0, 1.5) + (5.0 - temp) * 0.3
        temps.append(temp)
    return temps


def gas_rates(
    start: datetime,
    days: int,
    *,
    seed: int,
    holidays: Collection[int] = (),
    scale: dict[int, float] | None = None,
    extras: Iterable[Extra] = (),
) -> list[float]:
    """Gas use per minute (m³) from local midnight ``start`` (a Monday or any day)."""
    rng = random.Random(seed)  # noqa: S311 (a simulation, not crypto)
    temps = outside_temperatures(days, seed)
    rates = [0.0] * (days * MINUTES)
    for day in range(days):
        weekday = (start + timedelta(days=day)).weekday()
        weekend = weekday >= 5
        # the random draws happen every day so a holiday does not shift later days
        shower_at = rng.randint(8 * 60 + 30, 9 * 60 + 30) if weekend else rng.randint(7 * 60, 7 * 60 + 40)
        showers = [(shower_at, rng.randint(8, 12))]
        if rng.random() < 0.5:
            showers.append((shower_at + rng.randint(15, 30), rng.randint(6, 10)))
        dishes_at = rng.randint(19 * 60, 20 * 60 + 30)
        cook_at = rng.randint(17 * 60 + 45, 18 * 60 + 15)
        if day in holidays:
            continue
        base = day * MINUTES
        heat_from = 7 * 60 + 30 if weekend else 6 * 60 + 30
        for minute in range(heat_from, 22 * 60 + 30):
            hour = minute / 60
            outside = temps[day] + 3.0 * math.sin(2 * math.pi * (hour - 9) / 24)
            rate = GAS_PER_K_HOUR * max(0.0, 20.0 - outside) / 60
            if minute < heat_from + 60:
                rate *= 1.8
            rates[base + minute] += rate
        for at, length in showers:
            for minute in range(at, at + length):
                rates[base + minute] += SHOWER_RATE
        for minute in range(dishes_at, dishes_at + 5):
            rates[base + minute] += SHOWER_RATE
        for minute in range(cook_at, cook_at + 30):
            rates[base + minute] += HOB_RATE
        factor = (scale or {}).get(day)
        if factor is not None:
            for minute in range(base, base + MINUTES):
                rates[minute] *= factor
    _add_extras(rates, start, extras, spread=True)
    return rates


def gas_readings(
    start: datetime,
    days: int,
    *,
    seed: int,
    step_minutes: int = 5,
    holidays: Collection[int] = (),
    scale: dict[int, float] | None = None,
    extras: Iterable[Extra] = (),
    initial: float = 1234.0,
) -> list[tuple[datetime, Decimal]]:
    """A gas meter's cumulative readings (m³, 3 decimals, truncated) every ``step_minutes``."""
    rates = gas_rates(start, days, seed=seed, holidays=holidays, scale=scale, extras=extras)
    readings = []
    total = initial
    for minute, rate in enumerate(rates):
        if minute % step_minutes == 0:
            readings.append((start + timedelta(minutes=minute), Decimal(math.floor(total * 1000)) / 1000))
        total += rate
    readings.append((start + timedelta(minutes=len(rates)), Decimal(math.floor(total * 1000)) / 1000))
    return readings


def electricity_watts(
    start: datetime,
    days: int,
    *,
    seed: int,
    base_w: int = 120,
    holidays: Collection[int] = (),
    extras: Iterable[Extra] = (),
) -> list[int]:
    """Household power per minute (W, constant within the minute)."""
    rng = random.Random(seed)  # noqa: S311 (a simulation, not crypto)
    watts = [base_w + rng.randint(-3, 3) for _ in range(days * MINUTES)]
    # the fridge runs whatever the day
    minute = rng.randint(0, 30)
    while minute < len(watts):
        on = rng.randint(14, 18)
        for m in range(minute, min(minute + on, len(watts))):
            watts[m] += 85
        minute += on + rng.randint(22, 28)
    for day in range(days):
        weekday = (start + timedelta(days=day)).weekday()
        weekend = weekday >= 5
        breakfast = (
            rng.randint(8 * 60 + 30, 9 * 60 + 30) if weekend else rng.randint(6 * 60 + 45, 7 * 60 + 15)
        )
        cook_at = rng.randint(17 * 60 + 30, 18 * 60 + 15)
        dishwasher = rng.randint(21 * 60, 21 * 60 + 45)
        washing = rng.randint(10 * 60, 19 * 60) if rng.random() < 0.4 else None
        tv_until = rng.randint(22 * 60 + 30, 23 * 60 + 15)
        if day in holidays:
            continue
        base = day * MINUTES

        def add(lo: int, hi: int, power: int, base: int = base) -> None:
            for m in range(lo, hi):
                watts[base + m] += power

        add(breakfast, breakfast + 3, 2000)  # kettle
        add(breakfast + 4, breakfast + 7, 900)  # toaster
        add(breakfast, breakfast + 60, 60)  # lights
        if not weekend:
            add(9 * 60, 17 * 60, 80)  # home-office desk
        for m in range(cook_at, cook_at + 45, 4):  # the hob's thermostat cycling
            add(m, m + 2, 1800)
        add(17 * 60 + 30, 23 * 60, 150)  # lights
        add(19 * 60, tv_until, 100)  # TV
        add(dishwasher, dishwasher + 20, 1800)
        add(dishwasher + 20, dishwasher + 80, 100)
        if washing is not None:
            add(washing, washing + 15, 2000)
            add(washing + 15, washing + 120, 200)
    rates = [float(w) for w in watts]
    _add_extras(rates, start, extras, spread=False)
    return [round(w) for w in rates]


def electricity_readings(
    start: datetime,
    days: int,
    *,
    seed: int,
    step_minutes: int = 1,
    base_w: int = 120,
    holidays: Collection[int] = (),
    extras: Iterable[Extra] = (),
    initial_wh: int = 12_345_678,
) -> list[tuple[datetime, Decimal, Decimal]]:
    """``(time, import total kWh truncated to 1 Wh, power kW of the coming minute)`` every step."""
    watts = electricity_watts(start, days, seed=seed, base_w=base_w, holidays=holidays, extras=extras)
    readings = []
    watt_minutes = initial_wh * 60  # energy in W·min, exact
    for minute, power in enumerate(watts):
        if minute % step_minutes == 0:
            readings.append(
                (
                    start + timedelta(minutes=minute),
                    Decimal(watt_minutes // 60) / 1000,
                    Decimal(power) / 1000,
                )
            )
        watt_minutes += power
    readings.append(
        (start + timedelta(minutes=len(watts)), Decimal(watt_minutes // 60) / 1000, Decimal(watts[-1]) / 1000)
    )
    return readings
