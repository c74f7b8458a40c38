"""Abnormal use of gas and electricity, from any meter's cumulative readings.

Both monitors are fed ``(time, cumulative total)`` readings of one meter, whatever
its protocol (P1, SML, M-Bus, a cloud API): ``add_reading(time, Decimal)``.
Each interval between two readings is booked into 15-minute slots of real time
(split in proportion to time when it spans several slots, the remainder going to
the last slot so the day's sum stays exactly the meter's difference); the slots
add up into the local hours of the current day. A complete day (at least
``min_coverage`` of it booked) is learned by a :class:`WeekdayProfile`.

Rules (all quiet until the profile has ``min_weeks`` days of the weekday):

* **High day** (gas and electricity): today's use so far exceeds
  ``high_day_factor`` x the median of the same weekday *and* exceeds it by at
  least ``high_day_min_excess``. The median, not the mean, so one past odd day
  does not move the bar; the absolute excess keeps a summer week (1 m³ typical)
  from alerting over a cool evening. It fires once per day, as soon as the bar
  is crossed, not at midnight.
* **Unusual hour** (gas): use of at least ``hour_min_use`` in an hour that is
  "normally none". An hour is normally none when it *and* its ``margin_hours``
  neighbours each used at most ``quiet_max`` on at least ``quiet_days`` of the
  last ``quiet_window`` same weekdays. "At most a little", not "exactly 0",
  because a meter's last digit flickers; "N of the last M", not "all", so one
  late shower a month does not spoil the night; the neighbours, because a
  routine that shifts by half an hour (an alarm clock, a weekend) would
  otherwise raise alerts at the edges of normal use. It fires once per hour.
* **Today vs typical** (a sensor, both): today's use so far divided by the
  median use of the same weekday up to the same time of day, in %. Up to the
  same time of day, so that the figure means something at 10 a.m. and not
  only at midnight; ``None`` while the typical use so far is below
  ``min_typical`` (at 1 a.m. a ratio of two tiny numbers says nothing).

:class:`ElectricityMonitor` adds the **base load**, the always-on power, see
:meth:`ElectricityMonitor.base_load`.

Readings are exact ``Decimal``; the percentages are rounded to 0.1 %, the base
load to 0.001 kW (1 W), both half-even. Learned state persists through
``as_dict`` / ``from_dict``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time as dtime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from .profile import HOURS, DayRecord, WeekdayProfile, quantile

FORMAT_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SLOT = timedelta(minutes=15)
_US = timedelta(microseconds=1)
_SLOT_US = SLOT // _US
_HOUR_US = 3_600_000_000
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_PERCENT_STEP = Decimal("0.1")
_KW_STEP = Decimal("0.001")
_PIECE_STEP = Decimal("1E-9")


class AlertKind(StrEnum):
    """What a usage alert is about."""

    UNUSUAL_HOUR = "unusual_hour"
    HIGH_DAY = "high_day"


@dataclass(frozen=True, slots=True)
class UsageAlert:
    """One abnormal-use finding.

    ``period_start`` is the local start of the hour (unusual hour) or day (high
    day); ``value`` the use in that hour / the day so far; ``reference`` what
    was expected: the most a quiet hour uses (``quiet_max``) or the median day.
    """

    kind: AlertKind
    period_start: datetime
    detected: datetime
    value: Decimal
    reference: Decimal
    unit: str | None


def _us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact)."""
    if moment.tzinfo is None:
        raise ValueError("readings need timezone-aware times")
    return (moment - EPOCH) // _US


def split_interval(start_us: int, end_us: int, delta: Decimal) -> Iterator[tuple[int, Decimal, int, int]]:
    """Book ``delta`` over [start, end) into 15-minute slots, in proportion to time.

    Yields ``(slot index, share, microseconds in the slot, first microsecond)``.
    The shares are rounded to 1e-9 and the last slot takes the remainder, so
    they add up exactly to ``delta``.
    """
    first = start_us // _SLOT_US
    last = (end_us - 1) // _SLOT_US
    if first == last:
        yield first, delta, end_us - start_us, start_us
        return
    span = end_us - start_us
    booked = _ZERO
    for slot in range(first, last + 1):
        lo = max(start_us, slot * _SLOT_US)
        hi = min(end_us, (slot + 1) * _SLOT_US)
        if slot == last:
            share = delta - booked
        else:
            share = (delta * (hi - lo) / span).quantize(_PIECE_STEP)
            booked += share
        yield slot, share, hi - lo, lo


class _UsageMonitor:
    """Booking of readings into hours and days, the profile and the day rules."""

    def __init__(
        self,
        *,
        tz: tzinfo,
        unit: str | None,
        weeks: int,
        min_weeks: int,
        typical_min_weeks: int,
        high_day_factor: Decimal,
        high_day_min_excess: Decimal,
        min_typical: Decimal,
        max_gap: timedelta,
        min_coverage: timedelta,
    ) -> None:
        self.tz = tz
        self.unit = unit
        self.min_weeks = min_weeks
        self.typical_min_weeks = typical_min_weeks
        self.high_day_factor = high_day_factor
        self.high_day_min_excess = high_day_min_excess
        self.min_typical = min_typical
        self._max_gap_us = max_gap // _US
        self._min_coverage_us = min_coverage // _US
        self.profile = WeekdayProfile(weeks)
        self._last_us: int | None = None
        self._last_total: Decimal | None = None
        self._day: date | None = None
        self._hours = [_ZERO] * HOURS
        self._covered_us = 0
        self._day_start: tuple[int, Decimal] = (0, _ZERO)
        self._slot: int | None = None
        self._slot_hour = 0
        self._slot_use = _ZERO
        self._slot_covered_us = 0
        self._fired_hours: set[int] = set()
        self._fired_day = False

    # ------------------------------------------------------------ feeding

    def add_reading(self, moment: datetime, total: Decimal) -> list[UsageAlert]:
        """Feed one cumulative reading; return the alerts it raised (usually none).

        Readings not newer than the last one are ignored; a total lower than the
        last (a replaced or reset meter) starts over from it without booking; an
        interval longer than ``max_gap`` is not spread (the days it spans are
        then incomplete and not learned).
        """
        now_us = _us(moment)
        last_us, last_total = self._last_us, self._last_total
        if last_us is not None and now_us <= last_us:
            return []
        self._last_us, self._last_total = now_us, total
        if last_us is None or last_total is None:
            self._enter_slot(now_us // _SLOT_US)
            return []
        delta = total - last_total
        if delta < 0 or now_us - last_us > self._max_gap_us:
            self._enter_slot((now_us - 1) // _SLOT_US)
            return []
        touched: set[int] = set()
        for slot, share, covered, lo in split_interval(last_us, now_us, delta):
            if slot != self._slot:
                self._enter_slot(slot)
            if not self._covered_us:
                self._day_start = self._position(lo)
            self._hours[self._slot_hour] += share
            self._slot_use += share
            self._slot_covered_us += covered
            self._covered_us += covered
            touched.add(self._slot_hour)
        return self._check(moment, touched)

    def _enter_slot(self, slot: int) -> None:
        """Close the current slot (and day, when the new slot is on another date)."""
        if slot == self._slot:
            return
        if self._slot is not None:
            self._slot_closed(self._slot, self._slot_use, self._slot_covered_us)
        local = (EPOCH + slot * SLOT).astimezone(self.tz)
        if local.date() != self._day:
            self._close_day()
            self._day = local.date()
            self._hours = [_ZERO] * HOURS
            self._covered_us = 0
            self._day_start = (0, _ZERO)
            self._fired_hours = set()
            self._fired_day = False
        self._slot = slot
        self._slot_hour = local.hour
        self._slot_use = _ZERO
        self._slot_covered_us = 0

    def _slot_closed(self, slot: int, use: Decimal, covered_us: int) -> None:
        """Hook: a 15-minute slot is complete."""

    def _close_day(self) -> None:
        if self._day is not None and self._covered_us >= self._min_coverage_us:
            self.profile.add_day(DayRecord(self._day, tuple(self._hours)))

    def _position(self, moment_us: int) -> tuple[int, Decimal]:
        """The local (hour, fraction of the hour) of a moment, within the current day."""
        local = (EPOCH + moment_us * _US).astimezone(self.tz)
        if self._day is not None and local.date() > self._day:
            return HOURS, _ZERO
        into = (local.minute * 60 + local.second) * 1_000_000 + local.microsecond
        return local.hour, Decimal(into) / _HOUR_US

    # ------------------------------------------------------------ rules

    def _check(self, moment: datetime, touched: set[int]) -> list[UsageAlert]:
        alerts: list[UsageAlert] = []
        if self._fired_day or self._day is None:
            return alerts
        weekday = self._day.weekday()
        if self.profile.learned(weekday) < self.min_weeks:
            return alerts
        typical = self.profile.typical_day(weekday)
        today = self.today_use
        if (
            typical is not None
            and today > typical * self.high_day_factor
            and today - typical >= self.high_day_min_excess
        ):
            self._fired_day = True
            alerts.append(
                UsageAlert(
                    AlertKind.HIGH_DAY,
                    datetime.combine(self._day, dtime(0), tzinfo=self.tz),
                    moment,
                    today,
                    typical,
                    self.unit,
                )
            )
        return alerts

    # ------------------------------------------------------------ figures

    @property
    def last_reading(self) -> datetime | None:
        """The time of the last reading taken in."""
        return None if self._last_us is None else EPOCH + self._last_us * _US

    @property
    def today(self) -> date | None:
        """The local date being booked."""
        return self._day

    @property
    def today_use(self) -> Decimal:
        """Use booked today so far (exact)."""
        return sum(self._hours, _ZERO)

    @property
    def today_hours(self) -> tuple[Decimal, ...]:
        """Use booked today per local hour."""
        return tuple(self._hours)

    def typical_so_far(self) -> Decimal | None:
        """The median use of this weekday over the part of the day booked today."""
        if self._day is None or self._last_us is None:
            return None
        weekday = self._day.weekday()
        if self.profile.learned(weekday) < self.typical_min_weeks:
            return None
        hour, fraction = self._position(self._last_us)
        until = self.profile.typical_until(weekday, hour, fraction)
        if until is None:
            return None
        start_hour, start_fraction = self._day_start
        if start_hour or start_fraction:  # booking began after midnight (first run, long gap)
            before = self.profile.typical_until(weekday, start_hour, start_fraction)
            until -= before if before is not None else _ZERO
        return until

    def today_vs_typical(self) -> Decimal | None:
        """Today's use so far as % of the typical use of this weekday up to the same time.

        ``None`` before ``typical_min_weeks`` days of the weekday are learned or
        while the typical use so far is below ``min_typical``.
        """
        typical = self.typical_so_far()
        if typical is None or typical < self.min_typical or typical <= 0:
            return None
        return (self.today_use * _HUNDRED / typical).quantize(_PERCENT_STEP)

    # ------------------------------------------------------------ persistence

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict of everything learned and booked."""
        return {
            "version": FORMAT_VERSION,
            "profile": self.profile.as_dict(),
            "last_us": self._last_us,
            "last_total": None if self._last_total is None else str(self._last_total),
            "day": None if self._day is None else self._day.isoformat(),
            "hours": [str(value) for value in self._hours],
            "covered_us": self._covered_us,
            "day_start": [self._day_start[0], str(self._day_start[1])],
            "slot": self._slot,
            "slot_use": str(self._slot_use),
            "slot_covered_us": self._slot_covered_us,
            "fired_hours": sorted(self._fired_hours),
            "fired_day": self._fired_day,
        }

    def _restore(self, data: dict[str, Any]) -> None:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown monitor format {data.get('version')!r}")
        try:
            self.profile = WeekdayProfile.from_dict(data["profile"], self.profile.weeks)
            self._last_us = None if data["last_us"] is None else int(data["last_us"])
            self._last_total = None if data["last_total"] is None else Decimal(data["last_total"])
            self._day = None if data["day"] is None else date.fromisoformat(data["day"])
            self._hours = [Decimal(value) for value in data["hours"]]
            self._covered_us = int(data["covered_us"])
            self._day_start = (int(data["day_start"][0]), Decimal(data["day_start"][1]))
            self._slot = None if data["slot"] is None else int(data["slot"])
            if self._slot is not None:
                self._slot_hour = (EPOCH + self._slot * SLOT).astimezone(self.tz).hour
            self._slot_use = Decimal(data["slot_use"])
            self._slot_covered_us = int(data["slot_covered_us"])
            self._fired_hours = {int(hour) for hour in data["fired_hours"]}
            self._fired_day = bool(data["fired_day"])
        except (KeyError, TypeError, ValueError, ArithmeticError, IndexError) as err:
            raise ValueError(f"not a stored monitor: {err!r}") from err
        if len(self._hours) != HOURS:
            raise ValueError(f"not a stored monitor: {len(self._hours)} hourly values")


class GasMonitor(_UsageMonitor):
    """Gas (or any heating fuel) use: unusual hours, high days, today vs typical.

    Defaults are for m³ of natural gas: ``quiet_max`` 0.005 m³ (the meter's
    last digit flickering), ``hour_min_use`` 0.02 m³ (≈ 0.2 kWh, a boiler
    burning for a minute: less is not worth waking anyone), a high day 2.5 x
    the typical weekday and at least 2 m³ more (a cold snap that makes the
    heating work 1.8 x harder is weather, not a fault).
    """

    def __init__(
        self,
        *,
        tz: tzinfo,
        unit: str | None = "m³",
        weeks: int = 8,
        min_weeks: int = 3,
        typical_min_weeks: int = 2,
        quiet_max: Decimal = Decimal("0.005"),
        hour_min_use: Decimal = Decimal("0.02"),
        quiet_window: int = 4,
        quiet_days: int = 3,
        margin_hours: int = 1,
        high_day_factor: Decimal = Decimal("2.5"),
        high_day_min_excess: Decimal = Decimal(2),
        min_typical: Decimal = Decimal("0.2"),
        max_gap: timedelta = timedelta(hours=6),
        min_coverage: timedelta = timedelta(hours=20),
    ) -> None:
        """Set the rules' thresholds (see the module docstring)."""
        super().__init__(
            tz=tz,
            unit=unit,
            weeks=weeks,
            min_weeks=min_weeks,
            typical_min_weeks=typical_min_weeks,
            high_day_factor=high_day_factor,
            high_day_min_excess=high_day_min_excess,
            min_typical=min_typical,
            max_gap=max_gap,
            min_coverage=min_coverage,
        )
        if not 0 < quiet_days <= quiet_window:
            raise ValueError("quiet_days must be within 1..quiet_window")
        self.quiet_max = quiet_max
        self.hour_min_use = hour_min_use
        self.quiet_window = quiet_window
        self.quiet_days = quiet_days
        self.margin_hours = margin_hours

    @classmethod
    def from_dict(cls, data: dict[str, Any], **options: Any) -> Self:
        """Rebuild a monitor from :meth:`as_dict` output, with the same options as the constructor.

        Raises:
            ValueError: the data is not a monitor state this version wrote.
        """
        monitor = cls(**options)
        monitor._restore(data)
        return monitor

    def normally_none(self, weekday: int, hour: int) -> bool:
        """Whether ``hour`` of ``weekday`` and its neighbours are learned as without use."""
        for offset in range(-self.margin_hours, self.margin_hours + 1):
            day, h = divmod(hour + offset, HOURS)
            wd = (weekday + day) % 7
            if self.profile.learned(wd) < self.min_weeks:
                return False
            if self.profile.quiet_count(wd, h, self.quiet_max, self.quiet_window) < self.quiet_days:
                return False
        return True

    def _check(self, moment: datetime, touched: set[int]) -> list[UsageAlert]:
        alerts = super()._check(moment, touched)
        if self._day is None:
            return alerts
        weekday = self._day.weekday()
        for hour in sorted(touched - self._fired_hours):
            if self._hours[hour] >= self.hour_min_use and self.normally_none(weekday, hour):
                self._fired_hours.add(hour)
                alerts.append(
                    UsageAlert(
                        AlertKind.UNUSUAL_HOUR,
                        datetime.combine(self._day, dtime(hour), tzinfo=self.tz),
                        moment,
                        self._hours[hour],
                        self.quiet_max,
                        self.unit,
                    )
                )
        return alerts


class ElectricityMonitor(_UsageMonitor):
    """Electricity use: base load, high days, today vs typical.

    Feed the import energy total (kWh) with :meth:`add_reading` and, when the
    meter states it, the import power (kW) with :meth:`add_power`.

    **Base load** is the always-on power: the 10th percentile of the average
    power over 5-minute windows (from power readings) or, without power
    readings, over 15-minute slots (from the energy total), over the last 24 h.
    Why this estimator:

    * any average over any window is at least the always-on power (nothing in a
      house uses less than what is always on), so averaging only biases upward,
      and a low quantile looks for the windows where nothing else ran;
    * a fridge or freezer compressor cycles with off-periods of 10-30 minutes,
      so a night holds many 5-minute windows (and some 15-minute ones) with
      only the always-on load: they are more than 10 % of a day's windows;
    * the 10th percentile rather than the minimum rejects the odd window that
      is too low: a missed reading, a meter clock step, a brief solar export;
    * 15 minutes for energy because the total's last digit is 1 Wh: a 15-minute
      difference is then within 4 W, a 5-minute one only within 12 W.

    Windows in which the meter exported (``add_power(..., export=...) > 0``)
    are left out: the import then says nothing about consumption. At least 6 h
    of windows are needed before the figure is given.
    """

    POWER_WINDOW = timedelta(minutes=5)
    BASE_QUANTILE = Decimal("0.1")

    def __init__(
        self,
        *,
        tz: tzinfo,
        unit: str | None = "kWh",
        weeks: int = 8,
        min_weeks: int = 3,
        typical_min_weeks: int = 2,
        high_day_factor: Decimal = Decimal("2.5"),
        high_day_min_excess: Decimal = Decimal(5),
        min_typical: Decimal = Decimal("0.5"),
        max_gap: timedelta = timedelta(hours=6),
        min_coverage: timedelta = timedelta(hours=20),
        base_span: timedelta = timedelta(hours=24),
        base_min_span: timedelta = timedelta(hours=6),
        min_power_samples: int = 3,
    ) -> None:
        """Set the rules' thresholds (see the class and module docstrings)."""
        super().__init__(
            tz=tz,
            unit=unit,
            weeks=weeks,
            min_weeks=min_weeks,
            typical_min_weeks=typical_min_weeks,
            high_day_factor=high_day_factor,
            high_day_min_excess=high_day_min_excess,
            min_typical=min_typical,
            max_gap=max_gap,
            min_coverage=min_coverage,
        )
        self._base_span_us = base_span // _US
        self._min_power_windows = base_min_span // self.POWER_WINDOW
        self._min_energy_windows = base_min_span // SLOT
        self.min_power_samples = min_power_samples
        self._window_us = self.POWER_WINDOW // _US
        # (window start µs, mean kW): closed windows of the last base_span
        self._power_windows: deque[tuple[int, Decimal]] = deque()
        self._energy_windows: deque[tuple[int, Decimal]] = deque()
        self._window: int | None = None
        self._window_sum = _ZERO
        self._window_count = 0
        self._window_export = False
        # base_load_detail() until a window closes (it is asked for on every reading)
        self._base: tuple[str | None, Decimal | None] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], **options: Any) -> Self:
        """Rebuild a monitor from :meth:`as_dict` output, with the same options as the constructor.

        Raises:
            ValueError: the data is not a monitor state this version wrote.
        """
        monitor = cls(**options)
        monitor._restore(data)
        try:
            monitor._power_windows = deque((int(s), Decimal(v)) for s, v in data["power_windows"])
            monitor._energy_windows = deque((int(s), Decimal(v)) for s, v in data["energy_windows"])
            window = data["window"]
            monitor._window = None if window is None else int(window)
            monitor._window_sum = Decimal(data["window_sum"])
            monitor._window_count = int(data["window_count"])
            monitor._window_export = bool(data["window_export"])
        except (KeyError, TypeError, ValueError, ArithmeticError) as err:
            raise ValueError(f"not a stored electricity monitor: {err!r}") from err
        return monitor

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict of everything learned and booked."""
        data = super().as_dict()
        data.update(
            power_windows=[[start, str(mean)] for start, mean in self._power_windows],
            energy_windows=[[start, str(mean)] for start, mean in self._energy_windows],
            window=self._window,
            window_sum=str(self._window_sum),
            window_count=self._window_count,
            window_export=self._window_export,
        )
        return data

    def add_power(self, moment: datetime, power: Decimal, export: Decimal | None = None) -> None:
        """Feed one instantaneous import power reading (kW) and, if known, the export power."""
        window = _us(moment) // self._window_us
        if window != self._window:
            if self._window is not None and window < self._window:
                return  # out of order
            self._close_window()
            self._window = window
        self._window_sum += power
        self._window_count += 1
        if export is not None and export > 0:
            self._window_export = True

    def _close_window(self) -> None:
        if self._window is None:
            return
        if self._window_count >= self.min_power_samples and not self._window_export:
            mean = (self._window_sum / self._window_count).quantize(_PIECE_STEP)
            self._keep(self._power_windows, self._window * self._window_us, mean)
        self._window = None
        self._window_sum = _ZERO
        self._window_count = 0
        self._window_export = False

    def _slot_closed(self, slot: int, use: Decimal, covered_us: int) -> None:
        if covered_us == _SLOT_US:  # whole slot booked: kWh in 15 min x 4 = mean kW, exact
            self._keep(self._energy_windows, slot * _SLOT_US, use * 4)

    def _keep(self, windows: deque[tuple[int, Decimal]], start_us: int, mean: Decimal) -> None:
        self._base = None
        windows.append((start_us, mean))
        while windows and windows[0][0] <= start_us - self._base_span_us:
            windows.popleft()

    def base_load(self) -> Decimal | None:
        """The always-on power in kW, rounded to 1 W (``None`` with under 6 h of windows)."""
        _, value = self.base_load_detail()
        return value

    def base_load_detail(self) -> tuple[str | None, Decimal | None]:
        """``(source, kW)``: source is ``"power"`` or ``"energy"``, the readings the figure comes from."""
        if self._base is None:
            self._base = self._base_load_detail()
        return self._base

    def _base_load_detail(self) -> tuple[str | None, Decimal | None]:
        latest = max(
            (windows[-1][0] for windows in (self._power_windows, self._energy_windows) if windows),
            default=None,
        )
        if latest is None:
            return None, None
        cutoff = latest - self._base_span_us
        for source, windows, needed in (
            ("power", self._power_windows, self._min_power_windows),
            ("energy", self._energy_windows, self._min_energy_windows),
        ):
            means = [mean for start, mean in windows if start > cutoff]
            if len(means) >= needed:
                value = quantile(means, self.BASE_QUANTILE)
                if value is not None:
                    return source, value.quantize(_KW_STEP)
        return None, None
