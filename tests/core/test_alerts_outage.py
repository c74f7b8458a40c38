"""Power outage vs lost link: the detector on real DSMR telegrams and simulated failures.

The corpus telegrams' 0-0:96.7.21 / 0-0:96.7.9 / 1-0:99.97.0 registers feed the
detector through the P1 decoder and come out as the sources assert them
(``*.expected.json`` and the manifest's notes) and, where no source asserts
them, as the raw telegram line states them (read here with a regex,
independently of the decoder).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core.alerts.outage import (
    LoggedOutage,
    MeterEvidence,
    OutageDetector,
    OutageEvent,
    OutageState,
    seconds,
)
from custom_components.smartmeter.core.crc import crc16_arc
from custom_components.smartmeter.core.models import HistoryEntry, Medium, Meter, Register
from custom_components.smartmeter.core.p1 import decode_telegram
from tests.conftest import corpus_dir

TZ = ZoneInfo("Europe/Amsterdam")
DSMR = corpus_dir() / "dsmr"
T0 = datetime(2025, 1, 6, 12, 0, tzinfo=TZ)
S = timedelta(seconds=1)
WITH_FAILURE_REGISTERS = sorted(p for p in DSMR.glob("*.txt") if b"96.7.21" in p.read_bytes())
LOG_LINE = re.compile(rb"1-0:99\.97\.0\((\d+)\)\(0-0:96\.7\.19\)((?:\(\d{12}[SW]\)\(\d+\*s\))*)")
LOG_ENTRY = re.compile(rb"\((\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})[SW]\)\((\d+)\*s\)")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _count_in_line(raw: bytes, obis: str) -> int | None:
    match = re.search(re.escape(obis.encode()) + rb"\((\d+)\)", raw)
    return int(match.group(1)) if match else None


def _expected(path: Path) -> dict[str, dict[str, object]]:
    sidecar = path.with_suffix(".expected.json")
    if not sidecar.exists():
        return {}
    data = json.loads(sidecar.read_text())
    assertions = data.get("source_assertions", {})
    return assertions if isinstance(assertions, dict) else {}


# ---------------------------------------------------------------- the corpus


def test_corpus_has_failure_registers() -> None:
    """The samples below exist (the corpus moving must not make the tests pass vacuously)."""
    assert len(WITH_FAILURE_REGISTERS) >= 7


@pytest.mark.parametrize("path", WITH_FAILURE_REGISTERS, ids=lambda p: p.stem)
def test_corpus_registers_feed_the_detector(path: Path) -> None:
    raw = path.read_bytes()
    detector = OutageDetector()
    assert detector.on_frame(decode_telegram(raw).main, T0) is None  # type: ignore[arg-type]
    evidence = detector.evidence
    assert evidence is not None
    assert detector.state is OutageState.OK

    # what the raw lines say, read without the decoder
    assert evidence.power_failures == _count_in_line(raw, "0-0:96.7.21")
    assert evidence.long_power_failures == _count_in_line(raw, "0-0:96.7.9")
    for phase, code in zip((1, 2, 3), (32, 52, 72), strict=True):
        assert evidence.sags[phase - 1] == _count_in_line(raw, f"1-0:{code}.32.0")
        assert evidence.swells[phase - 1] == _count_in_line(raw, f"1-0:{code}.36.0")
    match = LOG_LINE.search(raw)
    if match is None:
        assert evidence.log_count is None
        assert evidence.log == ()
    else:
        assert evidence.log_count == int(match.group(1))
        entries = LOG_ENTRY.findall(match.group(2))
        assert len(evidence.log) == len(entries)
        for entry, (yy, mo, dd, hh, mi, ss, dur) in zip(evidence.log, entries, strict=True):
            assert entry.duration == Decimal(int(dur))
            assert entry.end is not None
            wall = datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss))
            assert entry.end.replace(tzinfo=None) == wall

    # what the source projects assert
    expected = _expected(path)
    for name, attr in (
        ("SHORT_POWER_FAILURE_COUNT", "power_failures"),
        ("LONG_POWER_FAILURE_COUNT", "long_power_failures"),
    ):
        if name in expected:
            assert getattr(evidence, attr) == expected[name]["value"]
    for phase in (1, 2, 3):
        if f"VOLTAGE_SAG_L{phase}_COUNT" in expected:
            assert evidence.sags[phase - 1] == expected[f"VOLTAGE_SAG_L{phase}_COUNT"]["value"]
            assert evidence.swells[phase - 1] == expected[f"VOLTAGE_SWELL_L{phase}_COUNT"]["value"]
        if f"INSTANTANEOUS_VOLTAGE_L{phase}" in expected:
            value = expected[f"INSTANTANEOUS_VOLTAGE_L{phase}"]["value"]
            assert evidence.voltages[phase - 1] == Decimal(str(value))


def test_corpus_asserted_values() -> None:
    """The figures the sources assert, spelled out (dsmr_parser's tests, the manifest's notes)."""
    kaifa = MeterEvidence.from_meter(decode_telegram((DSMR / "nl_dsmr42_kaifa.txt").read_bytes()).main)  # type: ignore[arg-type]
    assert (kaifa.power_failures, kaifa.long_power_failures, kaifa.log_count) == (15, 7, 3)
    assert [e.duration for e in kaifa.log] == [Decimal(237126), Decimal(2147583646), Decimal(2317482647)]
    # the two over 2^31-1 s are empty slots; the real one is the last outage
    assert [e.valid for e in kaifa.log] == [True, False, False]
    last = kaifa.last_logged
    assert last is not None
    assert last.end is not None
    assert last.end.replace(tzinfo=None) == datetime(2000, 1, 4, 18, 3, 20)
    assert last.duration == Decimal(237126)

    mt382 = MeterEvidence.from_meter(decode_telegram((DSMR / "nl_dsmr50_iskra_mt382.txt").read_bytes()).main)  # type: ignore[arg-type]
    assert (mt382.power_failures, mt382.long_power_failures, mt382.log_count, mt382.log) == (13, 0, 0, ())
    assert mt382.voltages == (Decimal("230.0"), Decimal("230.0"), Decimal("229.0"))
    assert mt382.last_logged is None

    xs210 = MeterEvidence.from_meter(
        decode_telegram((DSMR / "nl_dsmr42_kaifa_oh_sagemcom_xs210.txt").read_bytes()).main  # type: ignore[arg-type]
    )
    assert (xs210.power_failures, xs210.long_power_failures, xs210.log_count) == (12, 5, 5)
    assert [e.valid for e in xs210.log] == [True, True, True, True, False]  # 000101000001W / 2^31-1: empty
    last = xs210.last_logged
    assert last is not None
    assert last.end == datetime(2017, 6, 15, 12, 40, 4, tzinfo=TZ)
    assert last.duration == Decimal(15270)
    assert last.start == datetime(2017, 6, 15, 8, 25, 34, tzinfo=TZ)


def _edit_telegram(raw: bytes, **lines: bytes) -> bytes:
    """Replace whole lines by OBIS prefix (``obis=new line``) and recompute the CRC."""
    text = raw
    for old, new in lines.items():
        prefix = old.replace("_", ":", 1).replace("_", ".").encode()
        text = re.sub(
            rb"(?m)^" + re.escape(prefix) + rb"\(.*$", lambda _m, n=new: n.rstrip(b"\r") + b"\r", text
        )
    bang = text.rindex(b"\n!") + 1
    return text[: bang + 1] + f"{crc16_arc(text[: bang + 1]):04X}".encode() + b"\r\n"


AM550 = DSMR / "nl_dsmr50_iskra_am550_two_mbus.txt"


def test_edit_telegram_keeps_the_crc_valid() -> None:
    raw = AM550.read_bytes()
    assert _edit_telegram(raw) == raw  # no edit: the same bytes, CRC included


def test_corpus_power_failure_through_the_decoder() -> None:
    """The AM550 telegram, then 40 minutes of silence, then the meter back with one more failure logged."""
    raw = AM550.read_bytes()
    before = decode_telegram(raw).main
    after = decode_telegram(
        _edit_telegram(
            raw,
            **{
                "0-0_1_0_0": b"0-0:1.0.0(200426231330S)",
                "0-0_96_7_21": b"0-0:96.7.21(00006)",
                "0-0_96_7_9": b"0-0:96.7.9(00004)",
                "1-0_99_97_0": b"1-0:99.97.0(2)(0-0:96.7.19)(200426231015S)(0000001800*s)(190326095015W)(0000002014*s)",
            },
        )
    )
    assert after.integrity.value == "valid"
    received = datetime(2020, 4, 26, 22, 33, 25, tzinfo=TZ)
    detector = OutageDetector()
    assert detector.on_frame(before, received) is None  # type: ignore[arg-type]
    assert detector.check(received + 30 * S) is OutageState.OK
    assert detector.check(received + 5 * 60 * S) is OutageState.LINK_LOST  # silent: nothing proven yet
    event = detector.on_frame(after.main, received + 40 * 60 * S)  # type: ignore[arg-type]
    assert event is not None
    assert event.kind is OutageState.POWER_OUTAGE
    assert event.evidence == ("power_failures+1", "long_power_failures+1", "power_failure_log")
    assert event.start == datetime(2020, 4, 26, 22, 40, 15, tzinfo=TZ)
    assert event.end == datetime(2020, 4, 26, 23, 10, 15, tzinfo=TZ)
    assert event.duration == Decimal(1800)
    assert detector.state is OutageState.OK
    assert detector.last_outage == event
    last = detector.last_logged_outage
    assert last is not None
    assert last.duration == Decimal(1800)


def test_corpus_link_loss_through_the_decoder() -> None:
    raw = AM550.read_bytes()
    frame = decode_telegram(raw).main
    later = decode_telegram(_edit_telegram(raw, **{"0-0_1_0_0": b"0-0:1.0.0(200426231330S)"})).main
    received = datetime(2020, 4, 26, 22, 33, 25, tzinfo=TZ)
    detector = OutageDetector()
    detector.on_frame(frame, received)  # type: ignore[arg-type]
    event = detector.on_frame(later, received + 40 * 60 * S)  # type: ignore[arg-type]
    assert event is not None
    assert event.kind is OutageState.LINK_LOST
    assert (event.start, event.end, event.duration) == (received, received + 40 * 60 * S, Decimal(2400))
    assert detector.last_outage is None


# ---------------------------------------------------------------- simulated meters


def _meter(
    failures: int | None = 5,
    long_failures: int | None = 2,
    log: tuple[tuple[datetime, int], ...] | None = (),
    volts: tuple[str, ...] = ("230.1", "229.8", "231.0"),
    sags: tuple[int, ...] = (0, 0, 0),
) -> Meter:
    regs = []
    if failures is not None:
        regs.append(Register("0-0:96.7.21", "power_failures", Decimal(failures)))
    if long_failures is not None:
        regs.append(Register("0-0:96.7.9", "long_power_failures", Decimal(long_failures)))
    if log is not None:
        history = tuple(HistoryEntry(end, Decimal(duration), "s") for end, duration in log)
        regs.append(Register("1-0:99.97.0", "power_failure_log", len(log), history=history))
    for phase, (code, volt) in enumerate(zip((32, 52, 72), volts, strict=False), start=1):
        regs.append(Register(f"1-0:{code}.7.0", f"voltage_l{phase}", Decimal(volt), "V"))
        regs.append(Register(f"1-0:{code}.32.0", f"voltage_sags_l{phase}", Decimal(sags[phase - 1])))
    return Meter("E0001", Medium.ELECTRICITY, registers=tuple(regs))


def _feed(detector: OutageDetector, meter: Meter, start: datetime, count: int, step: timedelta) -> datetime:
    moment = start
    for _ in range(count):
        assert detector.on_frame(meter, moment) is None
        moment += step
    return moment - step


OLD_LOG = ((datetime(2024, 3, 1, 4, 0, tzinfo=TZ), 600),)


def test_power_failure_voltage_zero_then_silence_then_recovery() -> None:
    detector = OutageDetector()
    last = _feed(detector, _meter(log=OLD_LOG), T0, 30, 10 * S)  # DSMR 4: every 10 s
    # the mains drop: the meter still sends two telegrams at 0 V, then goes dark
    zero = _meter(log=OLD_LOG, volts=("0", "0", "0"))
    assert detector.on_frame(zero, last + 10 * S) is None
    assert detector.state is OutageState.POWER_OUTAGE
    assert detector.on_frame(zero, last + 20 * S) is None
    assert detector.check(last + 10 * 60 * S) is OutageState.POWER_OUTAGE  # silent, but it said 0 V
    # back after ~12 minutes: the meter logged the failure (end, 715 s) and counted it
    failure_end = last + 12 * 60 * S + 5 * S
    back = _meter(failures=6, long_failures=3, log=((failure_end, 715), *OLD_LOG))
    event = detector.on_frame(back, failure_end + 25 * S)
    assert event is not None
    assert event.kind is OutageState.POWER_OUTAGE
    assert event.evidence == (
        "voltage_zero",
        "power_failures+1",
        "long_power_failures+1",
        "power_failure_log",
    )
    assert event.duration == Decimal(715)
    assert event.end == failure_end
    assert event.start == failure_end - 715 * S
    assert event.logged == LoggedOutage(failure_end, Decimal(715))
    assert detector.state is OutageState.OK
    assert detector.last_outage == event


def test_power_failure_without_log_takes_the_silence() -> None:
    """A short failure counts in 96.7.21 only: the duration is the silence (an upper bound)."""
    detector = OutageDetector()
    last = _feed(detector, _meter(log=OLD_LOG), T0, 5, 10 * S)
    event = detector.on_frame(_meter(failures=6, log=OLD_LOG), last + 95 * S)
    assert event is not None
    assert event.kind is OutageState.POWER_OUTAGE
    assert event.evidence == ("power_failures+1",)
    assert (event.start, event.end, event.duration) == (last, last + 95 * S, Decimal(95))
    assert event.logged is None


def test_failure_between_two_frames_without_silence() -> None:
    detector = OutageDetector()
    last = _feed(detector, _meter(), T0, 5, S)
    event = detector.on_frame(_meter(failures=7), last + 4 * S)
    assert event is not None
    assert event.kind is OutageState.POWER_OUTAGE
    assert event.evidence == ("power_failures+2",)
    assert event.duration == Decimal(4)


def test_plain_link_loss() -> None:
    detector = OutageDetector()
    last = _feed(detector, _meter(log=OLD_LOG), T0, 30, 10 * S)
    assert detector.check(last + 50 * S) is OutageState.OK
    assert detector.check(last + 61 * S) is OutageState.LINK_LOST
    event = detector.on_frame(_meter(log=OLD_LOG), last + 17 * 60 * S)
    assert event is not None
    assert event.kind is OutageState.LINK_LOST
    assert (event.start, event.duration, event.evidence) == (last, Decimal(1020), ())
    assert detector.state is OutageState.OK
    assert detector.last_outage is None
    assert detector.last_event == event


def test_link_events_and_sag_as_disturbance() -> None:
    """A dropped connection is link lost at once; a sag counted meanwhile is reported, not taken as an outage."""
    detector = OutageDetector(silence_timeout=timedelta(minutes=10))
    last = _feed(detector, _meter(), T0, 3, S)
    detector.on_link_down(last + 2 * S)
    assert detector.state is OutageState.LINK_LOST
    detector.on_link_up(last + 40 * S)
    event = detector.on_frame(_meter(sags=(1, 0, 0)), last + 41 * S)
    assert event is not None
    assert event.kind is OutageState.LINK_LOST
    assert event.disturbances == ("voltage_sags_l1+1",)
    assert event.duration == Decimal(41)


def test_a_new_log_entry_outside_the_silence_is_no_proof() -> None:
    """The log changed, but its new entry is days before the silence (a meter clock reset): link lost."""
    detector = OutageDetector()
    last = _feed(detector, _meter(log=OLD_LOG), T0, 3, 10 * S)
    stale = ((T0 - timedelta(days=3), 300), *OLD_LOG)
    event = detector.on_frame(_meter(log=stale), last + 10 * 60 * S)
    assert event is not None
    assert event.kind is OutageState.LINK_LOST


def test_meter_without_failure_registers_reports_link_lost() -> None:
    """An SML-like meter: energy only. Its silence can never be shown to be an outage."""
    sml = Meter(
        "1EBZ0100000000",
        Medium.ELECTRICITY,
        registers=(Register("1-0:1.8.0", "energy_import_total", Decimal("1234.5678"), "kWh"),),
    )
    detector = OutageDetector()
    last = _feed(detector, sml, T0, 5, 2 * S)
    evidence = detector.evidence
    assert evidence is not None
    assert not evidence.has_evidence_registers
    assert not evidence.all_voltage_zero
    assert detector.check(last + 5 * 60 * S) is OutageState.LINK_LOST
    event = detector.on_frame(sml, last + 3 * 3600 * S)
    assert event is not None
    assert event.kind is OutageState.LINK_LOST
    assert event.duration == Decimal(3 * 3600)


def test_lost_phase_is_not_an_outage() -> None:
    detector = OutageDetector()
    detector.on_frame(_meter(volts=("230", "0", "231")), T0)
    evidence = detector.evidence
    assert evidence is not None
    assert evidence.dead_phases == (2,)
    assert detector.state is OutageState.OK


def test_replaced_meter_counters_going_down_are_no_outage() -> None:
    detector = OutageDetector()
    last = _feed(detector, _meter(failures=40), T0, 3, S)
    assert detector.on_frame(_meter(failures=0, long_failures=0), last + S) is None


def test_persistence_round_trip_and_outage_across_a_restart() -> None:
    """Home Assistant went down with the mains: the stored counters prove the outage on the first frame."""
    detector = OutageDetector()
    last = _feed(detector, _meter(log=OLD_LOG), T0, 3, 10 * S)
    detector.on_frame(_meter(log=OLD_LOG), last + 20 * 60 * S)  # a link loss, kept as last_event
    stored = json.loads(json.dumps(detector.as_dict()))
    restored = OutageDetector.from_dict(stored)
    assert restored.as_dict() == detector.as_dict()
    assert restored.last_event == detector.last_event
    assert restored.evidence == detector.evidence

    end = last + 3 * 3600 * S
    event = restored.on_frame(_meter(failures=6, long_failures=3, log=((end, 7000), *OLD_LOG)), end + 90 * S)
    assert event is not None
    assert event.kind is OutageState.POWER_OUTAGE
    assert event.duration == Decimal(7000)


def test_restart_without_evidence_is_not_reported() -> None:
    """The silence of Home Assistant's own restart is neither an outage nor a lost link."""
    detector = OutageDetector()
    last = _feed(detector, _meter(), T0, 3, 10 * S)
    restored = OutageDetector.from_dict(json.loads(json.dumps(detector.as_dict())))
    assert restored.on_frame(_meter(), last + 600 * S) is None
    assert restored.last_event is None
    # ...but the next silence is
    event = restored.on_frame(_meter(), last + 1200 * S)
    assert event is not None
    assert event.kind is OutageState.LINK_LOST


def test_from_dict_rejects_other_data() -> None:
    with pytest.raises(ValueError, match="format"):
        OutageDetector.from_dict({"version": 99})
    with pytest.raises(ValueError, match="stored outage detector"):
        OutageDetector.from_dict({"version": 1, "evidence": {"power_failures": 1}})


def test_event_round_trip_and_exact_seconds() -> None:
    event = OutageEvent(
        OutageState.POWER_OUTAGE,
        T0,
        T0 + 90 * S,
        Decimal(90),
        ("power_failures+1",),
        logged=LoggedOutage(T0 + 90 * S, Decimal(90)),
    )
    assert OutageEvent.from_dict(json.loads(json.dumps(event.as_dict()))) == event
    assert seconds(timedelta(minutes=2, microseconds=500_000)) == Decimal("120.5")
    assert seconds(timedelta(hours=1)) == Decimal(3600)


def test_after_a_restart_the_silence_counts_from_the_restart() -> None:
    """No "link lost" flash at start-up: the stored last frame is old, but the restart is not the link's fault."""
    detector = OutageDetector()
    last = _feed(detector, _meter(), T0, 3, 10 * S)
    restored = OutageDetector.from_dict(json.loads(json.dumps(detector.as_dict())))
    started = last + 3600 * S
    assert restored.check(started) is OutageState.OK
    assert restored.check(started + 30 * S) is OutageState.OK
    assert restored.check(started + 61 * S) is OutageState.LINK_LOST
    event = restored.on_frame(_meter(), started + 300 * S)
    assert event is not None
    assert event.kind is OutageState.LINK_LOST
    assert (event.start, event.duration) == (started, Decimal(300))
