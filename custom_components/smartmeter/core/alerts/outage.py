"""Power outage or lost link: why a meter went quiet, from the meter's own evidence.

When telegrams stop, either the mains failed (the meter, and often the P1
dongle it powers, went dark) or only the link did (a loose cable, a dongle or
Wi-Fi fault). While the meter is silent nothing tells them apart, so the
detector says "link lost" then; the meter's own registers decide afterwards:

* **voltage 0 on every phase** the meter reports (``voltage_l1..l3``): a meter
  on a supercapacitor or a battery-backed module can still say so; the state is
  "power outage" at once, and stays so if the meter then goes silent;
* after the link is back, the **power-failure counters** rose: DSMR
  ``0-0:96.7.21`` (failures in any phase, short ones included) or
  ``0-0:96.7.9`` (long failures, over 3 minutes);
* or the **power-failure event log** ``1-0:99.97.0`` has a new entry (end time,
  duration) that overlaps the silent time (with ``clock_tolerance`` for the
  meter's clock): the event then takes the meter's start, end and duration,
  which are exact, instead of the silence, which is only an upper bound.

With none of that evidence (counters unchanged, or a meter that has no such
registers, as SML and most M-Bus meters) the silence stays "link lost": the
detector never claims an outage it cannot show. Voltage sag and swell counters
(``voltage_sags_l1..``, ``voltage_swells_l1..``) that rose are reported with the
event as disturbances; a sag alone is not an outage.

Counters that rise between two frames with no silence (a failure shorter than
the telegram interval) are a power outage too. After a restart
(:meth:`OutageDetector.from_dict`) the first frame is compared with the
counters stored before it: an outage that also took Home Assistant down is
found; a silence without evidence is then the restart itself, not reported.

Durations are exact ``Decimal`` seconds (the log states whole seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ..models import Meter, Register

FORMAT_VERSION = 1
PHASES = (1, 2, 3)
KEY_POWER_FAILURES = "power_failures"  # 0-0:96.7.21
KEY_LONG_POWER_FAILURES = "long_power_failures"  # 0-0:96.7.9
KEY_POWER_FAILURE_LOG = "power_failure_log"  # 1-0:99.97.0
# An empty 99.97.0 slot: meters fill unused entries with 2^31 - 1 seconds (and
# a 2000-01-01 time); anything that long is not an outage that happened.
PLACEHOLDER_DURATION = Decimal(2**31 - 1)
_SECOND = timedelta(seconds=1)
_US = timedelta(microseconds=1)


class OutageState(StrEnum):
    """The link's state as the detector classifies it."""

    OK = "ok"
    POWER_OUTAGE = "power_outage"
    LINK_LOST = "link_lost"


def seconds(span: timedelta) -> Decimal:
    """A timedelta as exact Decimal seconds."""
    return Decimal(span // _US).scaleb(-6).normalize() if span % _SECOND else Decimal(span // _SECOND)


@dataclass(frozen=True, slots=True)
class LoggedOutage:
    """One entry of the meter's power-failure log: when it ended, how long it lasted."""

    end: datetime | None
    duration: Decimal | None

    @property
    def valid(self) -> bool:
        """Whether this is a real outage, not an empty slot or a broken entry."""
        return (
            self.end is not None and self.duration is not None and 0 <= self.duration < PLACEHOLDER_DURATION
        )

    @property
    def start(self) -> datetime | None:
        """When the outage began (end - duration)."""
        if self.end is None or self.duration is None or not self.valid:
            return None
        return self.end - timedelta(seconds=int(self.duration))


def _count(reg: Register | None) -> int | None:
    """A counter register as an int (``None``: absent, text, a time or not a whole number)."""
    if reg is None:
        return None
    value = reg.value
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class MeterEvidence:
    """What one frame says about the mains: counters, log, voltages."""

    power_failures: int | None = None
    long_power_failures: int | None = None
    log_count: int | None = None
    log: tuple[LoggedOutage, ...] = ()
    voltages: tuple[Decimal | None, ...] = (None, None, None)
    sags: tuple[int | None, ...] = (None, None, None)
    swells: tuple[int | None, ...] = (None, None, None)

    @classmethod
    def from_meter(cls, meter: Meter) -> MeterEvidence:
        """Read the evidence registers of a meter (absent ones stay None)."""
        return cls.from_registers(_evidence_registers(meter))

    @classmethod
    def from_registers(cls, found: dict[str, Register]) -> MeterEvidence:
        """The evidence of a meter's evidence registers by key (see :func:`_evidence_registers`)."""
        if not found:
            return _NO_EVIDENCE
        log_reg = found.get(KEY_POWER_FAILURE_LOG)
        return cls(
            power_failures=_count(found.get(KEY_POWER_FAILURES)),
            long_power_failures=_count(found.get(KEY_LONG_POWER_FAILURES)),
            log_count=_count(log_reg),
            log=tuple(LoggedOutage(e.timestamp, e.value) for e in log_reg.history) if log_reg else (),
            voltages=_voltages(found),
            sags=tuple(_count(found.get(key)) for key in _SAG_KEYS),
            swells=tuple(_count(found.get(key)) for key in _SWELL_KEYS),
        )

    @property
    def has_evidence_registers(self) -> bool:
        """Whether the meter reports anything that can prove a power failure."""
        return (
            self.power_failures is not None
            or self.long_power_failures is not None
            or self.log_count is not None
            or any(v is not None for v in self.voltages)
        )

    @property
    def all_voltage_zero(self) -> bool:
        """Every phase the meter reports a voltage for is at 0 V (and it reports one)."""
        present = [v for v in self.voltages if v is not None]
        return bool(present) and all(v == 0 for v in present)

    @property
    def dead_phases(self) -> tuple[int, ...]:
        """Phases at 0 V while another one has voltage (a lost phase, not a full outage)."""
        if self.all_voltage_zero:
            return ()
        return tuple(p for p, v in zip(PHASES, self.voltages, strict=True) if v is not None and v == 0)

    @property
    def last_logged(self) -> LoggedOutage | None:
        """The most recent real entry of the power-failure log."""
        valid = [entry for entry in self.log if entry.valid]
        return max(valid, key=lambda e: e.end or datetime.min) if valid else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "power_failures": self.power_failures,
            "long_power_failures": self.long_power_failures,
            "log_count": self.log_count,
            "log": [
                [
                    None if e.end is None else e.end.isoformat(),
                    None if e.duration is None else str(e.duration),
                ]
                for e in self.log
            ],
            "voltages": [None if v is None else str(v) for v in self.voltages],
            "sags": list(self.sags),
            "swells": list(self.swells),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeterEvidence:
        """Inverse of :meth:`as_dict`."""
        return cls(
            power_failures=_opt_int(data["power_failures"]),
            long_power_failures=_opt_int(data["long_power_failures"]),
            log_count=_opt_int(data["log_count"]),
            log=tuple(
                LoggedOutage(
                    None if end is None else datetime.fromisoformat(end),
                    None if dur is None else Decimal(dur),
                )
                for end, dur in data["log"]
            ),
            voltages=tuple(None if v is None else Decimal(v) for v in data["voltages"]),
            sags=tuple(_opt_int(v) for v in data["sags"]),
            swells=tuple(_opt_int(v) for v in data["swells"]),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


_VOLTAGE_KEYS = tuple(f"voltage_l{phase}" for phase in PHASES)
_SAG_KEYS = tuple(f"voltage_sags_l{phase}" for phase in PHASES)
_SWELL_KEYS = tuple(f"voltage_swells_l{phase}" for phase in PHASES)
_EVIDENCE_KEYS = frozenset(
    {
        KEY_POWER_FAILURES,
        KEY_LONG_POWER_FAILURES,
        KEY_POWER_FAILURE_LOG,
        *_VOLTAGE_KEYS,
        *_SAG_KEYS,
        *_SWELL_KEYS,
    }
)
_NO_EVIDENCE = MeterEvidence()


def _evidence_registers(meter: Meter) -> dict[str, Register]:
    """A meter's evidence registers by key, in one pass (this runs on every telegram)."""
    return {reg.key: reg for reg in meter.registers if reg.key in _EVIDENCE_KEYS}


def _voltages(found: dict[str, Register]) -> tuple[Decimal | None, ...]:
    return tuple(
        reg.value if (reg := found.get(key)) is not None and isinstance(reg.value, Decimal) else None
        for key in _VOLTAGE_KEYS
    )


def _counter_signature(found: dict[str, Register]) -> tuple[Any, ...]:
    """What the evidence says besides the voltages (which change with every telegram)."""
    return tuple((key, reg.value, reg.history) for key, reg in found.items() if key not in _VOLTAGE_KEYS)


@dataclass(frozen=True, slots=True)
class OutageEvent:
    """One classified silence or failure.

    ``evidence`` names what proved a power outage (``voltage_zero``,
    ``power_failures+1``, ``long_power_failures+1``, ``power_failure_log``);
    ``disturbances`` the sag/swell counters that rose meanwhile
    (``voltage_sags_l1+1``). ``logged`` is the meter's log entry the times come
    from, if one overlapped.
    """

    kind: OutageState
    start: datetime
    end: datetime
    duration: Decimal
    evidence: tuple[str, ...] = ()
    disturbances: tuple[str, ...] = ()
    logged: LoggedOutage | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "kind": self.kind.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "duration": str(self.duration),
            "evidence": list(self.evidence),
            "disturbances": list(self.disturbances),
            "logged": None
            if self.logged is None or self.logged.end is None
            else [self.logged.end.isoformat(), str(self.logged.duration)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutageEvent:
        """Inverse of :meth:`as_dict`."""
        logged = data["logged"]
        return cls(
            kind=OutageState(data["kind"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            duration=Decimal(data["duration"]),
            evidence=tuple(data["evidence"]),
            disturbances=tuple(data["disturbances"]),
            logged=None
            if logged is None
            else LoggedOutage(datetime.fromisoformat(logged[0]), Decimal(logged[1])),
        )


def _rises(name: str, before: int | None, after: int | None) -> str | None:
    if before is None or after is None or after <= before:
        return None  # absent, unchanged, or reset (a replaced meter)
    return f"{name}+{after - before}"


class OutageDetector:
    """Classifies a meter's silences as power outage or lost link (one detector per meter).

    Feed it every good frame (:meth:`on_frame`, with the time it was received),
    the link's own events if the source has them (:meth:`on_link_down`,
    :meth:`on_link_up`), and call :meth:`check` periodically so a silence is
    noticed while it lasts.
    """

    def __init__(
        self,
        *,
        silence_timeout: timedelta = timedelta(seconds=60),
        clock_tolerance: timedelta = timedelta(minutes=5),
    ) -> None:
        """``silence_timeout``: a gap between frames longer than this is a silence.

        The default (60 s) is six DSMR 4 intervals, sixty DSMR 5 ones; polled
        meters need more than their polling interval.
        """
        self.silence_timeout = silence_timeout
        self.clock_tolerance = clock_tolerance
        self._evidence: MeterEvidence | None = None
        self._signature: tuple[Any, ...] | None = None  # of the counters behind _evidence
        self._last_frame: datetime | None = None
        self._zero_since: datetime | None = None
        self._link_down_at: datetime | None = None
        self._restored = False
        self._restored_seen: datetime | None = None
        self._state = OutageState.OK
        self._last_event: OutageEvent | None = None
        self._last_outage: OutageEvent | None = None

    # ------------------------------------------------------------ inputs

    def on_frame(self, meter: Meter, moment: datetime) -> OutageEvent | None:
        """Feed one good frame's meter; return the event it concludes, if any."""
        found = _evidence_registers(meter)
        signature = _counter_signature(found)
        if self._evidence is not None and signature == self._signature:
            # Counters and log as before (the usual telegram): only the voltages are new.
            evidence = replace(self._evidence, voltages=_voltages(found))
        else:
            evidence = MeterEvidence.from_registers(found)
        previous, previous_at = self._evidence, self._last_frame
        if previous_at is not None and moment <= previous_at:
            return None  # out of order
        self._evidence, self._last_frame, self._signature = evidence, moment, signature
        if evidence.all_voltage_zero:
            if self._zero_since is None:
                self._zero_since = moment
            self._state = OutageState.POWER_OUTAGE
            return None
        event = None
        if previous is not None and previous_at is not None:
            event = self._classify(previous, previous_at, evidence, moment)
        self._zero_since = None
        self._link_down_at = None
        self._restored = False
        self._state = OutageState.OK
        if event is not None:
            self._last_event = event
            if event.kind is OutageState.POWER_OUTAGE:
                self._last_outage = event
        return event

    def on_link_down(self, moment: datetime) -> None:
        """The source lost its connection (serial port closed, socket dropped...)."""
        if self._link_down_at is None:
            self._link_down_at = moment
        if self._zero_since is None:
            self._state = OutageState.LINK_LOST

    def on_link_up(self, moment: datetime) -> None:
        """The source reconnected; the first good frame decides what the silence was."""
        del moment  # nothing is known until a frame arrives

    def check(self, now: datetime) -> OutageState:
        """The state at ``now``: a silence longer than ``silence_timeout`` is noticed here."""
        if self._zero_since is not None:
            self._state = OutageState.POWER_OUTAGE
            return self._state
        if self._restored and self._restored_seen is None:
            self._restored_seen = now  # after a restart the silence counts from now, not the stored frame
        since = self._restored_seen if self._restored else self._last_frame
        if self._link_down_at is not None or (since is not None and now - since > self.silence_timeout):
            self._state = OutageState.LINK_LOST
        return self._state

    # ------------------------------------------------------------ classification

    def _classify(
        self, before: MeterEvidence, before_at: datetime, after: MeterEvidence, now: datetime
    ) -> OutageEvent | None:
        proof = [
            rise
            for rise in (
                _rises("power_failures", before.power_failures, after.power_failures),
                _rises("long_power_failures", before.long_power_failures, after.long_power_failures),
            )
            if rise is not None
        ]
        disturbances = [
            rise
            for kind, olds, news in (
                ("voltage_sags", before.sags, after.sags),
                ("voltage_swells", before.swells, after.swells),
            )
            for phase, old, new in zip(PHASES, olds, news, strict=True)
            if (rise := _rises(f"{kind}_l{phase}", old, new)) is not None
        ]
        window_start = self._zero_since or before_at
        known = set(before.log)
        overlapping = [
            entry
            for entry in after.log
            if entry.valid
            and entry not in known
            and (start := entry.start) is not None
            and entry.end is not None
            and start <= now + self.clock_tolerance
            and entry.end >= window_start - self.clock_tolerance
        ]
        if overlapping:
            proof.append("power_failure_log")
        if self._zero_since is not None:
            proof.insert(0, "voltage_zero")
        silent = self._link_down_at is not None or now - before_at > self.silence_timeout
        if proof:
            logged = max(overlapping, key=lambda e: e.end or now) if overlapping else None
            if logged is not None and logged.start and logged.end and logged.duration is not None:
                return OutageEvent(
                    OutageState.POWER_OUTAGE,
                    logged.start,
                    logged.end,
                    logged.duration,
                    tuple(proof),
                    tuple(disturbances),
                    logged,
                )
            return OutageEvent(
                OutageState.POWER_OUTAGE,
                window_start,
                now,
                seconds(now - window_start),
                tuple(proof),
                tuple(disturbances),
            )
        if silent and not self._restored:
            start = min(before_at, self._link_down_at) if self._link_down_at else before_at
        elif self._restored and self._restored_seen and now - self._restored_seen > self.silence_timeout:
            start = self._restored_seen  # silent well beyond the restart: lost since at least then
        else:
            return None
        return OutageEvent(OutageState.LINK_LOST, start, now, seconds(now - start), (), tuple(disturbances))

    # ------------------------------------------------------------ outputs

    @property
    def state(self) -> OutageState:
        """The state as of the last input or :meth:`check`."""
        return self._state

    @property
    def evidence(self) -> MeterEvidence | None:
        """What the last frame said (counters, log, voltages)."""
        return self._evidence

    @property
    def last_event(self) -> OutageEvent | None:
        """The last classified silence or failure (outage or link lost)."""
        return self._last_event

    @property
    def last_outage(self) -> OutageEvent | None:
        """The last power outage this detector saw."""
        return self._last_outage

    @property
    def last_logged_outage(self) -> LoggedOutage | None:
        """The most recent outage in the meter's own log (99.97.0), whenever it was."""
        return self._evidence.last_logged if self._evidence is not None else None

    # ------------------------------------------------------------ persistence

    def as_dict(self) -> dict[str, Any]:
        """JSON-able state: the last counters, the last frame time and events."""
        return {
            "version": FORMAT_VERSION,
            "evidence": None if self._evidence is None else self._evidence.as_dict(),
            "last_frame": None if self._last_frame is None else self._last_frame.isoformat(),
            "zero_since": None if self._zero_since is None else self._zero_since.isoformat(),
            "last_event": None if self._last_event is None else self._last_event.as_dict(),
            "last_outage": None if self._last_outage is None else self._last_outage.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **options: Any) -> OutageDetector:
        """Rebuild a detector after a restart (options as for the constructor).

        Raises:
            ValueError: the data is not a detector state this version wrote.
        """
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown outage detector format {data.get('version')!r}")
        detector = cls(**options)
        try:
            evidence = data["evidence"]
            detector._evidence = None if evidence is None else MeterEvidence.from_dict(evidence)
            last = data["last_frame"]
            detector._last_frame = None if last is None else datetime.fromisoformat(last)
            zero = data["zero_since"]
            detector._zero_since = None if zero is None else datetime.fromisoformat(zero)
            event, outage = data["last_event"], data["last_outage"]
            detector._last_event = None if event is None else OutageEvent.from_dict(event)
            detector._last_outage = None if outage is None else OutageEvent.from_dict(outage)
        except (KeyError, TypeError, ValueError, ArithmeticError) as err:
            raise ValueError(f"not a stored outage detector: {err!r}") from err
        detector._restored = True
        return detector
