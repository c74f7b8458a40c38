"""Water alerts from any cumulative water register: continuous flow (a possible leak) and bursts.

The input is the meter's total in litres at reading times (:func:`to_litres`
converts m³, gallons, ft³); nothing is assumed about the source but that the
register counts up in whole steps (1 L, 10 L, 0.001 m³ ...) and that a reading
shows the register as it was at its timestamp. The monitor keeps only what its
window needs, runs each reading in O(1) amortised time and persists as a small
JSON-able dict.

Continuous flow ("possible leak")
---------------------------------
The alert means: *the readings prove that the meter did not stand still for the
quiet period (Q, default 30 min) anywhere in the last window (W, 24 h).*

An increase between readings at ``t1 < t2`` proves that water flowed somewhere
in ``(t1, t2]`` and nothing more; readings with the same value prove nothing
(less than a step may have passed). Each increase interval is widened by the
timestamp tolerance (τ) on both sides. A stand-still over ``[a, a+Q]`` is
excluded exactly when an increase interval lies inside it. With the increase
intervals ``(s_k, e_k]`` in time order, a stand-still is possible anywhere in a
*stretch* ``(s_k, e_(k+1))`` between the start of one increase interval and the
end of the next, before the first increase seen (the observations start there)
and after the start of the last (up to now). So:

    leak  <=>  every stretch, clipped to the window, is shorter than Q.

Proof that the quantisation or sparse readings cannot raise it: take a true
zero-flow stretch ``[a, b]``, ``b - a >= Q``, inside the window. No increase
interval fits inside it (it would contain flow). Let ``k`` be the last increase
interval starting before ``a``: the next one starts at or after ``a`` and so
ends after ``b``; the stretch between them covers ``(a, b]`` and is at least Q
long, so no alert (if there is no next one, the stretch to "now" covers it).
This holds whatever the step, the cadence, missing readings or outages: they
can only hide flow, never invent it. The only assumptions: readings are exact
(a value that jitters upward without water flowing would be evidence; set
``step_l`` to round a noisy source onto its grid) and timestamps are within τ
of when the register held the value.

The state is O(1): the end of the latest stretch of length >= Q (``no_quiet_since``);
the alert is on while that end is within Q of the window start and the running
stretch since the last increase is shorter than Q. A decrease (a meter swap) or
an impossible jump is ignored; three consistent readings on the new level
restart the evidence, so a single glitch costs nothing.

Detectability. A constant flow ``r`` on a register of step ``s`` read at most
``c`` apart steps every ``T = s / r``; a stretch between two increases is then
longer than T and shorter than ``T + 2c + 2τ``. Hence:

* always detected (after at most ``W - Q + T + c + τ``) if ``s/r + 2c + 2τ <= Q``;
* never detected if ``s/r >= Q`` or ``2c >= Q`` (readings every Q/2 or more
  apart: each stretch spans two reading intervals);
* in between it depends on the phase of the readings against the steps.

Examples with Q = 30 min, τ = 1 s, readings every 10 s: on a 1 L register the
smallest flow always seen is 2.03 L/h, so a 2 L/h drip (a step every 30 min)
is *not* seen, while Q = 60 min sees it; a running toilet of 20 L/h is seen. On
a 10 L register the limit is 20.3 L/h: neither a dripping tap nor a 20 L/h
running toilet can be seen at Q = 30 min. Readings every 15 minutes (cloud APIs, most wM-Bus
meters) never prove continuous flow at Q = 30 min; Q = 60 min needs ``s/r``
below about 30 min. Use that lacks a 30-minute pause for 24 h (a busy household
that also runs a dishwasher at night) does raise the alert: it is what the rule
says, not a false alarm of the method.

Burst
-----
``burst_window`` (g, default 5 min) sets the resolution: at a reading ``t`` the
register proves an average flow above ``burst_flow_l_min`` (F) over the
preceding window when ``(v(t) - v(t') - step) / (t - t') > F`` for the latest
reading ``t' <= t - g`` (and ``t - t' <= 2g``; sparser readings prove nothing).
The burst alert is on when that held at every reading for at least
``burst_duration`` (D) and the last reading is at most 2g old; ``burst_since``
is the start of the first proving window. The register's own resolution is
never mistaken for flow: the step is subtracted. A constant flow f is proven
when ``f > F + 2s/g`` (1 L: 12.4 L/min, 10 L: 16 L/min at the defaults); a
burst is reported at most ``D + g + c`` after it starts and cleared at most
``g + c`` after it stops. A short pause inside the flow (under about g) does
not break it; a bath filling at 25 L/min for 8 minutes does not reach D = 10.
The step is ``step_l`` if set, else the greatest common divisor of the
increases seen (a multiple of the true step, so the bound stays a lower bound).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

FORMAT_VERSION: Final = 1

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_US_PER_MIN: Final = 60_000_000
_BEFORE: Final = -(2**62)  # the start of a stretch that began before the observations
_FOREVER: Final = 2**62
_REPLACEMENT_READINGS: Final = 3  # consistent readings on a new level that mean a new meter
_BURST_SAMPLES: Final = 64  # readings kept per burst window (thinned beyond that)
_QUIET_RESOLUTION: Final = 360  # short stretches are kept to Q/360 (bounds the stored history)
_FLOW_PLACES: Final = Decimal("0.001")

# Litres per unit, exact. Keys are lower case with "3" for "³".
_LITRES_PER: Final[dict[str, Decimal]] = {
    "l": Decimal(1),
    "liter": Decimal(1),
    "litre": Decimal(1),
    "liters": Decimal(1),
    "litres": Decimal(1),
    "dm3": Decimal(1),
    "m3": Decimal(1000),
    "gal": Decimal("3.785411784"),  # US gallon
    "ft3": Decimal("28.316846592"),
    "ccf": Decimal("2831.6846592"),  # 100 ft³
}


def to_litres(value: Decimal | int | str, unit: str) -> Decimal:
    """A register value in ``unit`` (L, m³, dm³, gal, ft³, CCF) as exact litres.

    Raises:
        ValueError: an unknown unit or a value that is not a finite number.
    """
    key = unit.strip().lower().replace("³", "3").replace("^3", "3").replace(" ", "")
    factor = _LITRES_PER.get(key)
    if factor is None:
        raise ValueError(f"unknown water unit {unit!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation as err:
        raise ValueError(f"not a number: {value!r}") from err
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number * factor


def _us(when: datetime) -> int:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: readings need an aware time")
    return (when - _EPOCH) // _US


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _dgcd(a: Decimal, b: Decimal) -> Decimal:
    """Greatest common divisor of two positive finite decimals."""
    exponent = min(int(a.as_tuple().exponent), int(b.as_tuple().exponent))
    common = math.gcd(int(a.scaleb(-exponent)), int(b.scaleb(-exponent)))
    return Decimal(common).scaleb(exponent)


@dataclass(frozen=True, slots=True)
class WaterAlertSettings:
    """What counts as continuous flow and as a burst.

    Attributes:
        quiet_period: the stand-still that clears a suspicion of a leak (Q).
        window: how far back the stand-still is looked for (W).
        burst_flow_l_min: the flow (L/min) a burst must exceed (F).
        burst_duration: how long it must be proven above F (D).
        burst_window: the averaging window that proves it (g); a larger one
            sees lower flows on a coarse register but reacts later.
        step_l: the register's step in litres when known; readings are then
            rounded onto that grid (which also removes float noise). ``None``:
            inferred from the increases.
        timestamp_tolerance: how far a reading's time may be off (τ).
        max_flow_l_min: more than this (proven) is not water but a glitch or a
            new meter: such a reading is set aside like a decrease.
    """

    quiet_period: timedelta = timedelta(minutes=30)
    window: timedelta = timedelta(hours=24)
    burst_flow_l_min: Decimal = Decimal(12)
    burst_duration: timedelta = timedelta(minutes=10)
    burst_window: timedelta = timedelta(minutes=5)
    step_l: Decimal | None = None
    timestamp_tolerance: timedelta = timedelta(seconds=1)
    max_flow_l_min: Decimal = Decimal(200)

    def __post_init__(self) -> None:
        if self.quiet_period <= timedelta(0):
            raise ValueError("quiet_period must be positive")
        if self.window <= self.quiet_period:
            raise ValueError("window must be longer than quiet_period")
        if self.burst_window <= timedelta(0) or self.burst_duration < timedelta(0):
            raise ValueError("burst_window must be positive and burst_duration not negative")
        if self.burst_flow_l_min <= 0 or self.max_flow_l_min <= self.burst_flow_l_min:
            raise ValueError("need 0 < burst_flow_l_min < max_flow_l_min")
        if self.step_l is not None and not (self.step_l.is_finite() and self.step_l > 0):
            raise ValueError("step_l must be a positive number")
        if self.timestamp_tolerance < timedelta(0):
            raise ValueError("timestamp_tolerance must not be negative")

    def fingerprint(self) -> dict[str, Any]:
        """The settings the stored evidence depends on (a change starts afresh)."""
        return {
            "quiet_s": self.quiet_period / timedelta(seconds=1),
            "window_s": self.window / timedelta(seconds=1),
            "burst_window_s": self.burst_window / timedelta(seconds=1),
            "tolerance_s": self.timestamp_tolerance / timedelta(seconds=1),
            "step_l": None if self.step_l is None else str(self.step_l),
        }


@dataclass(frozen=True, slots=True)
class FlowBounds:
    """The average flow over ``[start, end]`` as far as the register's step allows (L/min).

    ``upper`` is ``None`` while the step is unknown (no increase seen yet).
    """

    lower: Decimal
    upper: Decimal | None
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class WaterState:
    """What the readings prove at ``now``.

    Attributes:
        leak: no stand-still of the quiet period anywhere in the window (proven).
        leak_since: when the leak alert came on (``None`` without one).
        no_quiet_since: since this time the readings exclude any stand-still
            of the quiet period (``None`` while one may be going on now).
        longest_quiet_last_window: the longest stand-still the readings allow in
            the window (an upper bound; ``None`` when the evidence is incomplete).
        burst: flow proven above the burst threshold for the burst duration.
        burst_since: the start of that flow.
        flow_l_min: the latest flow estimate.
        evidence_complete: readings cover the whole window with no gap as long
            as the quiet period (including since the last reading).
        next_change: when the state changes next if no reading arrives (to
            schedule a re-evaluation); ``None`` if never.
        last_reading: the time of the last reading taken in.
        total_l: the register at that reading (litres).
    """

    leak: bool
    leak_since: datetime | None
    no_quiet_since: datetime | None
    longest_quiet_last_window: timedelta | None
    burst: bool
    burst_since: datetime | None
    flow_l_min: FlowBounds | None
    evidence_complete: bool
    next_change: datetime | None
    last_reading: datetime | None
    total_l: Decimal | None


class WaterMonitor:
    """Follows one water register and tells continuous flow and bursts (see the module docstring)."""

    def __init__(self, settings: WaterAlertSettings | None = None) -> None:
        self.settings = settings or WaterAlertSettings()
        s = self.settings
        self._q = s.quiet_period // _US
        self._w = s.window // _US
        self._g = s.burst_window // _US
        self._d = s.burst_duration // _US
        self._tol = s.timestamp_tolerance // _US
        self._resolution = max(1_000_000, self._q // _QUIET_RESOLUTION)
        self._spacing = max(1, self._g // _BURST_SAMPLES)
        self.ignored = 0  # out-of-order, duplicate, decreasing or implausible readings set aside
        self.restarts = 0  # new meters (or a reset register) recognised
        self._reset()

    # ------------------------------------------------------------------ readings

    def _reset(self) -> None:
        self._last_t: int | None = None
        self._last_v = Decimal(0)
        self._obs_gap_end = 0  # end of the latest reading interval >= Q (or the first reading)
        self._quiet_end: int | None = None  # end of the latest stretch >= Q
        self._inc_start: int | None = None  # start (widened) of the last increase interval
        # Stretches (start, end, length) kept as a sliding-window maximum: lengths
        # strictly decreasing front to back, short ones floored to the resolution.
        self._gaps: deque[tuple[int, int, int]] = deque()
        self._step: Decimal | None = self.settings.step_l
        self._recent: deque[tuple[int, Decimal]] = deque()
        self._run_from: int | None = None
        self._run_since: int | None = None
        self._pending: list[tuple[int, Decimal]] = []

    def add(self, when: datetime, total_l: Decimal | int) -> None:
        """Take in a reading of the register (litres, see :func:`to_litres`).

        Readings not after the last one are ignored; a decrease or an
        impossible jump is set aside until three consistent readings show a new
        meter, which restarts the evidence.

        Raises:
            ValueError: a naive time or a value that is not a finite number.
        """
        t = _us(when)
        value = total_l if isinstance(total_l, Decimal) else Decimal(total_l)
        if not value.is_finite():
            raise ValueError(f"not a finite register value: {total_l!r}")
        step = self.settings.step_l
        if step is not None:
            value = (value / step).to_integral_value() * step
        last_t = self._last_t
        if last_t is None:
            self._begin(t, value)
            return
        if t <= last_t:
            self.ignored += 1
            return
        dv = value - self._last_v
        if dv < 0 or (dv > 0 and self._implausible(dv, t - last_t)):
            self._set_aside(t, value)
            return
        self._pending.clear()
        self._take(last_t, t, dv, value)

    def _take(self, last_t: int, t: int, dv: Decimal, value: Decimal) -> None:
        if dv > 0:
            step = self._step
            if step is None:
                self._step = dv
            elif dv % step:
                self._step = _dgcd(dv, step)
            self._on_increase(last_t, t)
        if t - last_t >= self._q:
            self._obs_gap_end = t
        self._last_t = t
        self._last_v = value
        self._on_burst_reading(t, value)

    def _implausible(self, dv: Decimal, dt: int) -> bool:
        step = self._step
        return step is not None and (dv - step) * _US_PER_MIN > self.settings.max_flow_l_min * dt

    def _set_aside(self, t: int, value: Decimal) -> None:
        self.ignored += 1
        pending = self._pending
        if pending:
            pt, pv = pending[-1]
            if value < pv or (value > pv and self._implausible(value - pv, t - pt)):
                pending.clear()
        pending.append((t, value))
        if len(pending) >= _REPLACEMENT_READINGS:
            readings = list(pending)
            self.restarts += 1
            self.ignored -= len(readings)
            prev_t, prev_v = readings[0]
            self._begin(prev_t, prev_v)
            for rt, rv in readings[1:]:
                self._take(prev_t, rt, rv - prev_v, rv)
                prev_t, prev_v = rt, rv

    def _begin(self, t: int, value: Decimal) -> None:
        self._reset()
        self._last_t = t
        self._last_v = value
        self._obs_gap_end = t
        self._recent.append((t, value))

    def _on_increase(self, t_prev: int, t: int) -> None:
        start = t_prev - self._tol
        end = t + self._tol
        previous = self._inc_start
        if previous is None:
            self._push_gap(_BEFORE, end, _FOREVER)
            self._quiet_end = end
        else:
            length = end - previous
            if length >= self._q:
                self._quiet_end = end
            else:
                length -= length % self._resolution
            self._push_gap(previous, end, length)
        self._inc_start = start
        horizon = t - self._w
        gaps = self._gaps
        while gaps and gaps[0][1] <= horizon:
            gaps.popleft()

    def _push_gap(self, start: int, end: int, length: int) -> None:
        gaps = self._gaps
        while gaps and gaps[-1][2] <= length:
            gaps.pop()
        gaps.append((start, end, length))

    def _on_burst_reading(self, t: int, value: Decimal) -> None:
        recent = self._recent
        if len(recent) >= 2 and t - recent[-2][0] < self._spacing:
            recent[-1] = (t, value)
        else:
            recent.append((t, value))
        edge = t - self._g
        while len(recent) >= 2 and recent[1][0] <= edge:
            recent.popleft()
        t0, v0 = recent[0]
        step = self._step
        proven = (
            step is not None
            and t0 <= edge
            and t - t0 <= 2 * self._g
            and (value - v0 - step) * _US_PER_MIN > self.settings.burst_flow_l_min * (t - t0)
        )
        if not proven:
            self._run_from = self._run_since = None
        elif self._run_from is None:
            self._run_from = t
            self._run_since = t0

    # ------------------------------------------------------------------ state

    def state(self, now: datetime) -> WaterState:
        """What the readings prove at ``now`` (a time before the last reading counts as that reading)."""
        last_t = self._last_t
        if last_t is None:
            return WaterState(False, None, None, None, False, None, None, False, None, None, None)
        n = max(_us(now), last_t)
        q, w = self._q, self._w
        start = n - w
        complete = self._obs_gap_end - start < q and n - last_t < q
        quiet_end, inc_start = self._quiet_end, self._inc_start
        quiet_now = inc_start is None or n - inc_start >= q
        leak = not quiet_now and quiet_end is not None and quiet_end - start < q
        burst_on = (
            self._run_from is not None and last_t - self._run_from >= self._d and n - last_t <= 2 * self._g
        )
        changes = [last_t + q, self._obs_gap_end + w - q + 1]
        if burst_on:
            changes.append(last_t + 2 * self._g + 1)
        if inc_start is not None and quiet_end is not None:
            changes += [inc_start + q, quiet_end + w - q + 1]
        upcoming = [c for c in changes if c > n]
        return WaterState(
            leak=leak,
            leak_since=_dt(quiet_end + w - q) if leak and quiet_end is not None else None,
            no_quiet_since=None if quiet_now or quiet_end is None else _dt(quiet_end),
            longest_quiet_last_window=self._longest_quiet(n, start) if complete else None,
            burst=burst_on,
            burst_since=_dt(self._run_since) if burst_on and self._run_since is not None else None,
            flow_l_min=self._flow(),
            evidence_complete=complete,
            next_change=_dt(min(upcoming)) if upcoming else None,
            last_reading=_dt(last_t),
            total_l=self._last_v,
        )

    def _longest_quiet(self, n: int, start: int) -> timedelta:
        inc_start = self._inc_start
        best = n - start if inc_start is None else n - max(inc_start, start)
        for gap_start, gap_end, length in self._gaps:
            if gap_end <= start:
                continue
            if gap_start >= start:
                best = max(best, length)
                break
            best = max(best, min(length, gap_end - start))  # straddles the window start
        return timedelta(microseconds=min(best, self._w))

    def _flow(self) -> FlowBounds | None:
        recent = self._recent
        last_t = self._last_t
        if last_t is None or len(recent) < 2:
            return None
        t0, v0 = recent[0]
        span = last_t - t0
        dv = self._last_v - v0
        step = self._step
        per_min = Decimal(_US_PER_MIN) / span
        lower = max(Decimal(0), dv if step is None else dv - step) * per_min
        upper = None if step is None else (dv + step) * per_min
        return FlowBounds(
            lower=lower.quantize(_FLOW_PLACES),
            upper=None if upper is None else upper.quantize(_FLOW_PLACES),
            start=_dt(t0),
            end=_dt(last_t),
        )

    @property
    def step_l(self) -> Decimal | None:
        """The register step in use (set, or inferred from the increases: an upper bound)."""
        return self._step

    # ------------------------------------------------------------------ persistence

    def as_dict(self) -> dict[str, Any]:
        """The evidence as a JSON-able dict (times in µs since 1970 UTC; bounded by the window)."""
        return {
            "version": FORMAT_VERSION,
            "settings": self.settings.fingerprint(),
            "last": None if self._last_t is None else [self._last_t, str(self._last_v)],
            "obs_gap_end": self._obs_gap_end,
            "quiet_end": self._quiet_end,
            "inc_start": self._inc_start,
            "gaps": [
                [None if s == _BEFORE else s, e, None if n == _FOREVER else n] for s, e, n in self._gaps
            ],
            "step": None if self._step is None else str(self._step),
            "recent": [[t, str(v)] for t, v in self._recent],
            "run": None if self._run_from is None else [self._run_from, self._run_since],
            "pending": [[t, str(v)] for t, v in self._pending],
            "ignored": self.ignored,
            "restarts": self.restarts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], settings: WaterAlertSettings | None = None) -> WaterMonitor:
        """A monitor from :meth:`as_dict`; stored under other settings or versions: a fresh one.

        Raises:
            ValueError: the data is malformed.
        """
        monitor = cls(settings)
        if data.get("version") != FORMAT_VERSION or data.get("settings") != monitor.settings.fingerprint():
            return monitor
        try:
            last = data["last"]
            if last is None:
                return monitor
            monitor._last_t = int(last[0])
            monitor._last_v = Decimal(last[1])
            monitor._obs_gap_end = int(data["obs_gap_end"])
            monitor._quiet_end = _opt_int(data["quiet_end"])
            monitor._inc_start = _opt_int(data["inc_start"])
            monitor._gaps = deque(
                (
                    _BEFORE if s is None else int(s),
                    int(e),
                    _FOREVER if n is None else int(n),
                )
                for s, e, n in data["gaps"]
            )
            step = data["step"]
            monitor._step = None if step is None else Decimal(step)
            monitor._recent = deque((int(t), Decimal(v)) for t, v in data["recent"])
            run = data["run"]
            if run is not None:
                monitor._run_from, monitor._run_since = int(run[0]), int(run[1])
            monitor._pending = [(int(t), Decimal(v)) for t, v in data["pending"]]
            monitor.ignored = int(data.get("ignored", 0))
            monitor.restarts = int(data.get("restarts", 0))
        except (KeyError, TypeError, ValueError, IndexError, InvalidOperation) as err:
            raise ValueError(f"malformed water monitor data: {err}") from err
        if not monitor._recent or (monitor._step is not None and not monitor._step > 0):
            raise ValueError("malformed water monitor data: inconsistent values")
        return monitor


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
