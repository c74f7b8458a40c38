"""Capacity-tariff demand: the quarter-hour in progress, the month's peak and the 12-month average.

The rules followed are Flanders' capacity tariff (VREG/Fluvius, since 2023):

* demand is the average import power over fixed quarter-hours (00-15, 15-30...
  on the clock, never a sliding window); a quarter's demand is its energy x 4;
* the month's peak (maandpiek) is the highest quarter of the local calendar
  month;
* the bill uses the rolling average of the last 12 monthly peaks, each counted
  as at least 2.5 kW (the floor applies per month); while fewer than 12 months
  are known, the average runs over the months available;
* the price is per kW per year (:class:`~.models.CapacityTariff`).

Belgian e-MUCS meters state these themselves and their values win over what is
computed here: ``1-0:1.4.0`` (current average demand: the energy of the quarter
so far over the full quarter, so it climbs from 0 and resets each quarter),
``1-0:1.6.0`` (the month's peak, stamped) and ``0-0:98.1.0`` (the peaks of the
last 13 months). Without them the tracker computes the same from the cumulative
energy registers (or, without those, by integrating the power).

All three meter registers are OBIS quantity 1, active energy *import* (A+); the
meter does not net export against import within a quarter. The tracker does
the same by default; ``net_export=True`` nets each quarter's export against its
import (floored at 0) for a grid operator that bills net offtake per quarter.

Everything is exact :class:`~decimal.Decimal` (divisions are exact whenever the
result has a finite decimal expansion within the context's precision).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ..models import HistoryEntry, Meter, Register
from .models import CapacityTariff

__all__ = [
    "CapacityTracker",
    "QuarterState",
    "available_current",
    "monthly_peaks_from_history",
]

_ZERO = Decimal(0)
_US_PER_HOUR = 3_600_000_000
_HOUR = Decimal(_US_PER_HOUR)
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORMAT_VERSION = 1

type _Month = tuple[int, int]


def _us(delta: timedelta) -> int:
    """A duration in whole microseconds."""
    return delta // _ONE_US


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: the capacity tracker needs aware datetimes")
    return when.astimezone(UTC)


def _dec(value: Decimal | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


@dataclass(frozen=True, slots=True)
class QuarterState:
    """The quarter-hour in progress at ``now`` and the month's capacity figures.

    ``energy_kwh``: import (net of export with ``net_export``) known so far in
    the quarter. ``demand_so_far_kw``: that energy over the time it covers (the
    quarter's average so far). ``accrued_kw``: that energy over the full
    quarter, which is what the meter's 1.4.0 register shows. ``projected_kw``:
    the quarter's demand if the current power holds to its end (the same power
    fills any span the energy does not cover). ``target_kw`` is
    ``max(month_peak_kw, floor)``; ``headroom_kw`` is the constant power to add,
    from ``now`` to the quarter's end, on top of the projection to land exactly
    on the target (negative: that much must be shed). ``will_exceed``:
    ``projected_kw > target_kw``. ``rolling_average_kw``: the average of the
    current month (its peak so far) and the up to ``months - 1`` months before
    it that have a known peak, each floored.
    """

    start: datetime
    end: datetime
    energy_kwh: Decimal
    demand_so_far_kw: Decimal
    projected_kw: Decimal
    month_peak_kw: Decimal
    month_peak_at: datetime | None
    rolling_average_kw: Decimal
    headroom_kw: Decimal
    will_exceed: bool
    accrued_kw: Decimal = _ZERO
    target_kw: Decimal = _ZERO
    months_in_average: int = 1


@dataclass(frozen=True, slots=True)
class _Peak:
    kw: Decimal
    at: datetime | None
    meter: bool  # stated by the meter (1.6.0 / 98.1.0), not computed here
    as_of: datetime | None  # for meter values: when the meter stated it


class _Quarter:
    """What is known of one quarter: register energy, integrated power, the meter's 1.4.0."""

    __slots__ = (
        "end",
        "meter_at",
        "meter_kwh",
        "pow_exp",
        "pow_from",
        "pow_imp",
        "pow_to",
        "reg_exp",
        "reg_from",
        "reg_hole",
        "reg_imp",
        "reg_to",
        "start",
    )

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.end = end
        self.reg_imp = _ZERO
        self.reg_exp = _ZERO
        self.reg_from: datetime | None = None
        self.reg_to: datetime | None = None
        self.reg_hole = False
        self.pow_imp = _ZERO  # integrated power, kW x microseconds (exact)
        self.pow_exp = _ZERO
        self.pow_from: datetime | None = None
        self.pow_to: datetime | None = None
        self.meter_kwh: Decimal | None = None
        self.meter_at: datetime | None = None

    def add_reg(self, imp: Decimal, exp: Decimal, frm: datetime, to: datetime) -> None:
        if self.reg_from is None:
            self.reg_from = frm
        elif self.reg_to is not None and frm > self.reg_to:
            self.reg_hole = True
        self.reg_to = to
        self.reg_imp += imp
        self.reg_exp += exp

    def add_pow(self, imp: Decimal, exp: Decimal, frm: datetime, to: datetime) -> None:
        if self.pow_from is None:
            self.pow_from = frm
        self.pow_to = to
        self.pow_imp += imp
        self.pow_exp += exp

    def full_register(self) -> bool:
        return (
            not self.reg_hole
            and self.reg_from == self.start
            and self.reg_to is not None
            and self.reg_to >= self.end
        )


class CapacityTracker:
    """Follow quarter-hour demand and monthly peaks from a meter's registers.

    Feed it cumulative energy (:meth:`update_energy`), power
    (:meth:`update_power`) and, where the meter has them, its own demand
    registers (:meth:`update_meter_registers`), or a decoded :class:`Meter` at
    once (:meth:`update_from_meter`); read :meth:`state`.

    Quarters are fixed, aligned on the local clock (for Belgium, on the UTC
    quarter-hours too: its offsets are whole hours, so a 25-hour day has 100
    quarters). A quarter belongs to the local calendar month it starts in.

    Energy between two readings belongs to the quarter(s) it spans; a reading
    exactly on a boundary closes the quarter before it. Readings up to
    ``max_gap`` apart that straddle a boundary are split in proportion to time
    (constant power over the gap); after a longer gap, or a register that went
    backwards (a reset or a meter swap: the decrease is ignored), the quarter
    closes with what is known, the quarters in the gap stay missing and
    counting restarts at the new reading.
    """

    def __init__(
        self,
        tariff: CapacityTariff,
        tz: str = "Europe/Brussels",
        *,
        net_export: bool = False,
        max_gap: timedelta | None = None,
        keep_quarters: int | None = None,
    ) -> None:
        """Track ``tariff``'s demand with months in local time ``tz``."""
        self.tariff = tariff
        self.tz_name = tz
        self._tz = ZoneInfo(tz)
        self.net_export = net_export
        self._interval_us = _us(tariff.interval)
        if self._interval_us <= 0:
            raise ValueError("the capacity tariff's interval must be positive")
        self._interval = Decimal(self._interval_us)
        self.max_gap = tariff.interval if max_gap is None else max_gap
        if keep_quarters is None:
            keep_quarters = 3 * _US_PER_HOUR * 24 // self._interval_us  # three days
        self._closed: deque[tuple[datetime, Decimal]] = deque(maxlen=max(keep_quarters, 1))
        self._peaks: dict[_Month, _Peak] = {}
        self._cur: _Quarter | None = None
        self._prev: _Quarter | None = None
        # The last cumulative register reading.
        self._e_when: datetime | None = None
        self._e_imp = _ZERO
        self._e_exp = _ZERO
        # The last power reading.
        self._p_when: datetime | None = None
        self._p_imp = _ZERO
        self._p_exp = _ZERO

    # ------------------------------------------------------------ time helpers

    def _align(self, when: datetime) -> datetime:
        """The start of the interval holding ``when`` (UTC), aligned on the local clock."""
        offset = when.astimezone(self._tz).utcoffset()
        off_us = _us(offset) if offset is not None else 0
        t_us = _us(when - _EPOCH) + off_us
        return _EPOCH + timedelta(microseconds=(t_us // self._interval_us) * self._interval_us - off_us)

    def _month(self, when: datetime) -> _Month:
        local = when.astimezone(self._tz)
        return local.year, local.month

    def _month_start(self, month: _Month) -> datetime:
        return datetime(month[0], month[1], 1, tzinfo=self._tz).astimezone(UTC)

    @staticmethod
    def _shift(month: _Month, months: int) -> _Month:
        index = month[0] * 12 + month[1] - 1 + months
        return index // 12, index % 12 + 1

    def _kw(self, kwh: Decimal, span_us: int) -> Decimal:
        """Average power of ``kwh`` over ``span_us`` microseconds."""
        return kwh * _HOUR / Decimal(span_us)

    # ------------------------------------------------------------ quarters

    def _quarter_value(self, q: _Quarter) -> Decimal | None:
        """A closed quarter's demand in kW, or None when nothing is known of it."""
        energy: Decimal | None = None
        reg = None if q.reg_from is None else self._net(q.reg_imp, q.reg_exp)
        if reg is not None and q.full_register():
            energy = reg
        else:
            known = [e for e in (reg, q.meter_kwh) if e is not None]
            if known:
                energy = max(known)
            elif q.pow_from is not None:
                energy = self._net(q.pow_imp, q.pow_exp) / _HOUR
        if energy is None:
            return None
        return self._kw(energy, self._interval_us)

    def _net(self, imp: Decimal, exp: Decimal) -> Decimal:
        if self.net_export:
            return max(imp - exp, _ZERO)
        return imp

    def _close(self, q: _Quarter) -> None:
        value = self._quarter_value(q)
        if value is None:
            return
        if self._closed and self._closed[-1][0] == q.start:
            self._closed[-1] = (q.start, value)
        else:
            self._closed.append((q.start, value))
        self._offer(self._month(q.start), value, q.start, q.end)

    def _offer(self, month: _Month, kw: Decimal, at: datetime, end: datetime) -> None:
        """A computed quarter's demand for ``month``'s peak."""
        peak = self._peaks.get(month)
        if peak is not None and peak.meter and peak.as_of is not None and end <= peak.as_of:
            return  # the meter stated the month's peak after this quarter ended: it knows
        if peak is None or kw > peak.kw:
            self._peaks[month] = _Peak(kw, at, meter=False, as_of=None)

    def _advance(self, when: datetime) -> None:
        """Close the current quarter once ``when`` is past its end."""
        cur = self._cur
        if cur is not None and when > cur.end:
            self._close(cur)
            self._prev, self._cur = cur, None

    def _get(self, start: datetime) -> _Quarter | None:
        """The quarter starting at ``start`` to add to (the current, a new one or the one just closed)."""
        cur = self._cur
        if cur is not None and start == cur.start:
            return cur
        if cur is not None and start < cur.start:
            prev = self._prev
            return prev if prev is not None and prev.start == start else None
        if cur is None and self._prev is not None and start <= self._prev.start:
            prev = self._prev
            return prev if start == prev.start else None
        if cur is not None:
            self._close(cur)
            self._prev = cur
        self._cur = _Quarter(start, start + timedelta(microseconds=self._interval_us))
        return self._cur

    def _spread(self, t0: datetime, t1: datetime, imp: Decimal, exp: Decimal, *, register: bool) -> None:
        """Share ``imp``/``exp`` over ``(t0, t1]`` among the quarters it spans, in proportion to time."""
        total = _us(t1 - t0)
        start = self._align(t0)
        cursor = t0
        rest_imp, rest_exp = imp, exp
        while True:
            end = start + timedelta(microseconds=self._interval_us)
            if t1 <= end:
                piece_imp, piece_exp, piece_end = rest_imp, rest_exp, t1
            else:
                share = Decimal(_us(end - cursor))
                piece_imp = imp * share / total
                piece_exp = exp * share / total
                piece_end = end
            q = self._get(start)
            if q is not None:
                if register:
                    q.add_reg(piece_imp, piece_exp, cursor, piece_end)
                else:
                    q.add_pow(piece_imp, piece_exp, cursor, piece_end)
                if q is self._prev:
                    self._close(q)  # a late share of a quarter already closed
            if piece_end == t1:
                return
            rest_imp -= piece_imp
            rest_exp -= piece_exp
            cursor = start = end

    # ------------------------------------------------------------ inputs

    def update_energy(self, when: datetime, import_kwh: Decimal, export_kwh: Decimal | None = None) -> None:
        """A reading of the cumulative import (and export) registers, in kWh (sum of the tariffs)."""
        when = _utc(when)
        imp = _dec(import_kwh)
        exp = self._e_exp if export_kwh is None else _dec(export_kwh)
        last = self._e_when
        if last is not None and when <= last:
            return  # a repeat or out of order
        self._advance(when)
        d_imp = imp - self._e_imp
        d_exp = exp - self._e_exp
        if last is None or d_imp < 0 or d_exp < 0 or when - last > self.max_gap:
            # First reading, a register that went backwards, or a gap too long to share out:
            # what came before closes with what is known, counting restarts here.
            q = self._get(self._align(when))
            if q is not None and q.reg_from is None:
                q.reg_from = q.reg_to = when
            elif q is not None:
                q.reg_hole = True
                q.reg_to = when
        else:
            self._spread(last, when, d_imp, d_exp, register=True)
        self._e_when, self._e_imp, self._e_exp = when, imp, exp

    def update_power(self, when: datetime, import_kw: Decimal, export_kw: Decimal = _ZERO) -> None:
        """The instantaneous import (and export) power, in kW: the projection's power.

        The previous power, held until ``when``, is integrated too: a quarter
        with no energy register reading falls back on it.
        """
        when = _utc(when)
        last = self._p_when
        if last is not None and when <= last:
            return
        self._advance(when)
        if last is not None and when - last <= self.max_gap:
            span = Decimal(_us(when - last))
            self._spread(last, when, self._p_imp * span, self._p_exp * span, register=False)
        else:
            q = self._get(self._align(when))
            if q is not None and q.pow_from is None:
                q.pow_from = q.pow_to = when
        self._p_when, self._p_imp, self._p_exp = when, _dec(import_kw), _dec(export_kw)

    def update_meter_registers(
        self,
        when: datetime,
        current_average_demand_kw: Decimal | None,
        month_peak_kw: Decimal | None,
        month_peak_at: datetime | None,
        history: Sequence[tuple[datetime, Decimal]] = (),
    ) -> None:
        """The meter's own 1-0:1.4.0, 1-0:1.6.0 and 0-0:98.1.0 as of ``when``.

        They take precedence over computed values: 1.4.0 x the interval is the
        quarter's energy so far, 1.6.0 is this month's peak (ignored while its
        stamp is still in an earlier month, before the meter resets it),
        ``history`` holds ``(a moment in the month, peak kW)`` for earlier
        months (see :func:`monthly_peaks_from_history`).
        """
        when = _utc(when)
        self._advance(when)
        month = self._month(when)
        if current_average_demand_kw is not None:
            self._meter_demand(when, _dec(current_average_demand_kw))
        if month_peak_kw is not None:
            at = None if month_peak_at is None else _utc(month_peak_at)
            if at is None or self._month(at) == month:
                self._peaks[month] = _Peak(_dec(month_peak_kw), at, meter=True, as_of=when)
        stated: dict[_Month, tuple[Decimal, datetime]] = {}
        for at_any, kw in history:
            at_utc = _utc(at_any)
            m = self._month(at_utc)
            if m >= month:
                continue
            if m not in stated or _dec(kw) > stated[m][0]:
                stated[m] = (_dec(kw), at_utc)
        for m, (kw, at_utc) in stated.items():
            self._peaks[m] = _Peak(kw, at_utc, meter=True, as_of=when)
        self._prune(month)

    def _meter_demand(self, when: datetime, kw: Decimal) -> None:
        kwh = kw * self._interval / _HOUR
        start = self._align(when)
        q: _Quarter | None
        if start == when:
            # Exactly on a boundary: the ending quarter's last value if it did not drop
            # (1.4.0 only climbs within a quarter), else the new quarter's first.
            ending = self._cur if self._cur is not None and self._cur.end == when else None
            if ending is not None and ending.meter_kwh is not None and kwh >= ending.meter_kwh:
                ending.meter_kwh, ending.meter_at = kwh, when
                return
        q = self._get(start)
        if q is not None:
            q.meter_kwh, q.meter_at = kwh, when
            if q is self._prev:
                self._close(q)

    def update_from_meter(self, meter: Meter, when: datetime | None = None) -> None:
        """Feed a decoded meter's registers (energy, power, 1.4.0/1.6.0/98.1.0) as of ``when``.

        ``when`` defaults to the meter's own timestamp; a meter without one
        needs it.
        """
        stamp = when if when is not None else meter.timestamp
        if stamp is None:
            raise ValueError("the meter reading has no timestamp: pass `when`")
        values: dict[str, tuple[Decimal, str | None]] = {}
        by_key: dict[str, Register] = {}
        for reg in meter.registers:
            by_key[reg.key] = reg
            if isinstance(reg.value, Decimal):
                values[reg.key] = (reg.value * _scale(reg.unit), reg.unit)
        imp = _register_sum(values, "energy_import")
        exp = _register_sum(values, "energy_export")
        if imp is not None:
            self.update_energy(stamp, imp, exp)
        if "power_import" in values:
            export_kw = values["power_export"][0] if "power_export" in values else _ZERO
            self.update_power(stamp, values["power_import"][0], export_kw)
        demand = values.get("current_average_demand")
        peak_reg = by_key.get("maximum_demand_month")
        peak = values.get("maximum_demand_month")
        hist_reg = by_key.get("maximum_demand_history")
        if demand is None and peak is None and hist_reg is None:
            return
        history = monthly_peaks_from_history(hist_reg.history, self.tz_name) if hist_reg else []
        self.update_meter_registers(
            stamp,
            None if demand is None else demand[0],
            None if peak is None else peak[0],
            None if peak_reg is None else peak_reg.timestamp,
            history,
        )

    def _prune(self, month: _Month) -> None:
        oldest = self._shift(month, -(max(self.tariff.months, 13) + 1))
        for m in [m for m in self._peaks if m < oldest]:
            del self._peaks[m]

    # ------------------------------------------------------------ outputs

    def _energy_known(self, q: _Quarter) -> tuple[Decimal, datetime, datetime] | None:
        """(energy, covered from, covered to) of the freshest source; the meter wins ties."""
        best: tuple[Decimal, datetime, datetime] | None = None
        if q.meter_kwh is not None and q.meter_at is not None:
            best = (q.meter_kwh, q.start, q.meter_at)
        if q.reg_from is not None and q.reg_to is not None:
            reg = (self._net(q.reg_imp, q.reg_exp), q.reg_from, q.reg_to)
            if best is None or reg[2] > best[2]:
                best = reg
        elif q.pow_from is not None and q.pow_to is not None:
            pw = (self._net(q.pow_imp, q.pow_exp) / _HOUR, q.pow_from, q.pow_to)
            if best is None or pw[2] > best[2]:
                best = pw
        return best

    def _peak_view(self, month: _Month, qs: datetime) -> _Peak | None:
        """``month``'s peak, counting the current quarter as closed once ``qs`` is past it."""
        peak = self._peaks.get(month)
        cur = self._cur
        if cur is not None and cur.start < qs and self._month(cur.start) == month:
            value = self._quarter_value(cur)
            meter_knew = peak is not None and peak.meter and peak.as_of is not None and cur.end <= peak.as_of
            if value is not None and not meter_knew and (peak is None or value > peak.kw):
                peak = _Peak(value, cur.start, meter=False, as_of=None)
        return peak

    def state(self, now: datetime) -> QuarterState:
        """The quarter holding ``now`` and the month's figures (a view: nothing is closed)."""
        now = _utc(now)
        qs = self._align(now)
        qe = qs + timedelta(microseconds=self._interval_us)
        month = self._month(qs)
        floor = self.tariff.floor_kw

        q = self._cur if self._cur is not None and self._cur.start == qs else None
        known = self._energy_known(q) if q is not None else None
        energy, frm, upto = known if known is not None else (_ZERO, qs, qs)
        span = _us(upto - frm)
        average = self._kw(energy, span) if span > 0 else None

        power: Decimal | None = None
        if self._p_when is not None and now - self._p_when <= self.max_gap:
            power = self._p_imp - self._p_exp if self.net_export else max(self._p_imp, _ZERO)
        if power is None:
            power = average if average is not None else _ZERO
        so_far = average if average is not None else power

        # kW x microseconds: the energy so far, plus the power over what it does not cover.
        filled = energy * _HOUR + power * Decimal(_us(qe - upto) + _us(frm - qs))
        projected = max(filled / self._interval, _ZERO)

        peak = self._peak_view(month, qs)
        peak_kw = peak.kw if peak is not None else _ZERO
        target = max(peak_kw, floor)
        headroom = (target * self._interval - filled) / Decimal(_us(qe - now))

        floored = [max(peak_kw, floor)]
        for back in range(1, self.tariff.months):
            earlier = self._peaks.get(self._shift(month, -back))
            if earlier is not None:
                floored.append(max(earlier.kw, floor))
        rolling = sum(floored, _ZERO) / len(floored)

        return QuarterState(
            start=qs,
            end=qe,
            energy_kwh=energy,
            demand_so_far_kw=so_far,
            projected_kw=projected,
            month_peak_kw=peak_kw,
            month_peak_at=peak.at if peak is not None else None,
            rolling_average_kw=rolling,
            headroom_kw=headroom,
            will_exceed=projected > target,
            accrued_kw=self._kw(energy, self._interval_us),
            target_kw=target,
            months_in_average=len(floored),
        )

    def closed_quarters(self) -> list[tuple[datetime, Decimal]]:
        """The recent closed quarters: (start, average kW), oldest first."""
        return list(self._closed)

    def monthly_peaks(self) -> list[tuple[datetime, Decimal, datetime | None]]:
        """Known monthly peaks: (local month start as UTC, peak kW, when it occurred), oldest first."""
        return [(self._month_start(m), p.kw, p.at) for m, p in sorted(self._peaks.items())]

    # ------------------------------------------------------------ persistence

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe snapshot: monthly peaks, recent quarters, the last readings and the open quarter."""
        data: dict[str, Any] = {
            "version": _FORMAT_VERSION,
            "tz": self.tz_name,
            "net_export": self.net_export,
            "months": [
                {
                    "month": f"{m[0]:04d}-{m[1]:02d}",
                    "kw": str(p.kw),
                    "at": _iso(p.at),
                    "meter": p.meter,
                    "as_of": _iso(p.as_of),
                }
                for m, p in sorted(self._peaks.items())
            ],
            "closed": [[_iso(start), str(kw)] for start, kw in self._closed],
        }
        if self._e_when is not None:
            data["energy"] = {
                "when": _iso(self._e_when),
                "import": str(self._e_imp),
                "export": str(self._e_exp),
            }
        if self._p_when is not None:
            data["power"] = {
                "when": _iso(self._p_when),
                "import": str(self._p_imp),
                "export": str(self._p_exp),
            }
        q = self._cur
        if q is not None:
            data["quarter"] = {
                "start": _iso(q.start),
                "import": str(q.reg_imp),
                "export": str(q.reg_exp),
                "from": _iso(q.reg_from),
                "to": _iso(q.reg_to),
                "hole": q.reg_hole,
                "power_import": str(q.pow_imp),
                "power_export": str(q.pow_exp),
                "power_from": _iso(q.pow_from),
                "power_to": _iso(q.pow_to),
                "meter_kwh": None if q.meter_kwh is None else str(q.meter_kwh),
                "meter_at": _iso(q.meter_at),
            }
        return data

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        tariff: CapacityTariff,
        tz: str | None = None,
        **options: Any,
    ) -> CapacityTracker:
        """Rebuild a tracker from :meth:`as_dict` (the tariff is configuration, not state).

        A snapshot of an unknown version or shape restores nothing but never raises.
        """
        tracker = cls(
            tariff,
            tz or str(data.get("tz") or "Europe/Brussels"),
            net_export=bool(options.pop("net_export", data.get("net_export", False))),
            **options,
        )
        if data.get("version") != _FORMAT_VERSION:
            return tracker
        try:
            tracker._restore(data)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return cls(tariff, tracker.tz_name, net_export=tracker.net_export, **options)
        return tracker

    def _restore(self, data: Mapping[str, Any]) -> None:
        for item in data.get("months", ()):
            year, month = (int(part) for part in str(item["month"]).split("-"))
            self._peaks[(year, month)] = _Peak(
                Decimal(str(item["kw"])),
                _from_iso(item.get("at")),
                meter=bool(item.get("meter")),
                as_of=_from_iso(item.get("as_of")),
            )
        for start, kw in data.get("closed", ()):
            when = _from_iso(start)
            if when is not None:
                self._closed.append((when, Decimal(str(kw))))
        energy = data.get("energy")
        if energy:
            self._e_when = _from_iso(energy["when"])
            self._e_imp = Decimal(str(energy["import"]))
            self._e_exp = Decimal(str(energy["export"]))
        power = data.get("power")
        if power:
            self._p_when = _from_iso(power["when"])
            self._p_imp = Decimal(str(power["import"]))
            self._p_exp = Decimal(str(power["export"]))
        quarter = data.get("quarter")
        if quarter:
            start = _from_iso(quarter["start"])
            if start is not None:
                q = _Quarter(start, start + timedelta(microseconds=self._interval_us))
                q.reg_imp = Decimal(str(quarter["import"]))
                q.reg_exp = Decimal(str(quarter["export"]))
                q.reg_from = _from_iso(quarter["from"])
                q.reg_to = _from_iso(quarter["to"])
                q.reg_hole = bool(quarter.get("hole"))
                q.pow_imp = Decimal(str(quarter.get("power_import", "0")))
                q.pow_exp = Decimal(str(quarter.get("power_export", "0")))
                q.pow_from = _from_iso(quarter.get("power_from"))
                q.pow_to = _from_iso(quarter.get("power_to"))
                meter_kwh = quarter.get("meter_kwh")
                q.meter_kwh = None if meter_kwh is None else Decimal(str(meter_kwh))
                q.meter_at = _from_iso(quarter.get("meter_at"))
                self._cur = q


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _from_iso(text: Any) -> datetime | None:
    if text is None:
        return None
    return _utc(datetime.fromisoformat(str(text)))


_UNIT_SCALE = {"w": Decimal("0.001"), "wh": Decimal("0.001"), "mw": Decimal(1000), "mwh": Decimal(1000)}


def _scale(unit: str | None) -> Decimal:
    """Factor to kW / kWh for the unit a meter stated (kW/kWh or none: 1)."""
    if unit is None:
        return Decimal(1)
    return _UNIT_SCALE.get(unit.lower(), Decimal(1))


def _register_sum(values: Mapping[str, tuple[Decimal, str | None]], prefix: str) -> Decimal | None:
    """The sum of the tariff registers ``{prefix}_tariff_N``, else ``{prefix}_total``."""
    tariffs = [values[f"{prefix}_tariff_{n}"][0] for n in range(1, 5) if f"{prefix}_tariff_{n}" in values]
    if tariffs:
        return sum(tariffs, _ZERO)
    total = values.get(f"{prefix}_total")
    return None if total is None else total[0]


def monthly_peaks_from_history(
    entries: Sequence[HistoryEntry], tz: str = "Europe/Brussels"
) -> list[tuple[datetime, Decimal]]:
    """Belgian 0-0:98.1.0 entries as ``(when the peak occurred, peak kW)``.

    Each entry is (end of the month: the capture stamp, peak time, peak kW). An
    entry without a peak time and 0 kW is the meter's placeholder for a month
    it has no peak for (it writes the "no value" stamp 632525252525W) and is
    left out; with a value but no peak time, the month is the one before the
    capture stamp.
    """
    zone = ZoneInfo(tz)
    out: list[tuple[datetime, Decimal]] = []
    for entry in entries:
        if entry.value is None:
            continue
        value = entry.value * _scale(entry.unit)
        if entry.timestamp is not None:
            out.append((entry.timestamp, value))
        elif value != 0 and entry.start is not None:
            local = entry.start.astimezone(zone)
            # The capture is at the start of the next month: step back into the peak's month.
            out.append((local - timedelta(days=1), value))
    return out


def available_current(fuse_a: Decimal, phase_currents: Sequence[Decimal | None]) -> list[Decimal | None]:
    """Per phase, the current left under the fuse (fuse minus measured, never negative)."""
    return [None if current is None else max(fuse_a - current, _ZERO) for current in phase_currents]
