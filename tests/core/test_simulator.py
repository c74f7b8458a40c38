"""The P1 meter simulator: telegrams that decode, counters that add up, live links."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core.errors import KeyRequiredError, WrongKeyError
from custom_components.smartmeter.core.framer import P1Framer
from custom_components.smartmeter.core.models import Frame, Integrity, Register
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.simulator import (
    DEFAULT_TEMPLATE,
    Fault,
    P1TelegramModel,
    PtySimulator,
    Reading,
    TcpSimulator,
    inject_fault,
    main,
)
from custom_components.smartmeter.core.smarty import encrypt_frame
from custom_components.smartmeter.core.source import Backoff, P1Source
from tests.conftest import corpus_dir

AMS = ZoneInfo("Europe/Amsterdam")
KEY = bytes.fromhex("D491470F47126332B07D1923B3504188")
GUARD = 15  # seconds: a guard against hangs, never a speed assertion


def _registers(frame: Frame) -> dict[str, Register]:
    return {reg.obis: reg for meter in frame.meters for reg in meter.registers}


def _assert_matches(frame: Frame, reading: Reading) -> None:
    """The decoded frame carries exactly what the model says it wrote."""
    regs = _registers(frame)
    for obis, value in reading.values.items():
        assert regs[obis].value == value, obis
    for obis, (stamp, value) in reading.captures.items():
        assert regs[obis].value == value, obis
        decoded_stamp = regs[obis].timestamp
        assert decoded_stamp is not None and decoded_stamp.timestamp() == stamp.timestamp(), obis
    if "0-0:1.0.0" in regs:
        decoded = regs["0-0:1.0.0"].value
        assert isinstance(decoded, datetime) and decoded.timestamp() == reading.timestamp.timestamp()


def _corpus_templates() -> list[Path]:
    try:
        folder = corpus_dir() / "dsmr"
    except FileNotFoundError:
        return []
    return sorted(folder.glob("*.txt"))


def test_default_template_is_the_corpus_sample() -> None:
    """The built-in template is byte-identical to the MIT-licensed corpus sample."""
    try:
        sample = (corpus_dir() / "dsmr" / "nl_dsmr50_iskra_mt382.txt").read_bytes()
    except FileNotFoundError:
        pytest.skip("corpus not available")
    assert sample == DEFAULT_TEMPLATE
    assert decode_telegram(DEFAULT_TEMPLATE).integrity is Integrity.VALID


def test_rendered_telegrams_decode_valid_and_match_the_model() -> None:
    model = P1TelegramModel(seed=1, tz=AMS)
    start = datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
    for second in range(0, 3 * 3600, 7):
        raw = model.render(start + timedelta(seconds=second))
        frame = decode_telegram(raw, tz=AMS)
        assert frame.integrity is Integrity.VALID
        assert model.last is not None
        _assert_matches(frame, model.last)
        assert raw.endswith(b"\r\n") and raw[-6:-2].decode().upper() == raw[-6:-2].decode()


def test_counters_grow_by_power_times_time() -> None:
    """Energy registers never decrease and add up to the sum of power x elapsed time."""
    model = P1TelegramModel(seed=2, tz=AMS)
    t = datetime(2025, 2, 3, 5, 0, tzinfo=UTC)  # Monday 06:00 local: tariff 1 then 2
    model.render(t)
    first = model.last
    assert first is not None
    expected_ws: dict[int, int] = {1: 0, 2: 0}
    previous = dict(first.values)
    tariffs_seen = set()
    steps = [1, 1, 2, 10, 1, 30, 1, 300, 1, 1]
    for i in range(3000):
        t += timedelta(seconds=steps[i % len(steps)])
        frame = decode_telegram(model.render(t), tz=AMS)
        reading = model.last
        assert reading is not None and reading.tariff is not None
        tariffs_seen.add(reading.tariff)
        expected_ws[reading.tariff] += reading.power_import_w * int(reading.elapsed.total_seconds())
        regs = _registers(frame)
        for obis in ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2"):
            assert regs[obis].value >= previous[obis], obis  # type: ignore[operator]
            previous[obis] = regs[obis].value  # type: ignore[assignment]
        for tariff in (1, 2):
            obis = f"1-0:1.8.{tariff}"
            exact = first.values[obis] + Decimal(expected_ws[tariff]) / 3_600_000
            assert exact - Decimal("0.001") < regs[obis].value <= exact, obis  # type: ignore[operator]
            assert model.energy_wh(obis) == exact * 1000
    assert tariffs_seen == {1, 2}
    # Without solar nothing is exported.
    assert previous["1-0:2.8.1"] == first.values["1-0:2.8.1"]


def test_clock_going_backwards_never_decreases_a_counter() -> None:
    model = P1TelegramModel(seed=3)
    t = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    model.render(t)
    model.render(t + timedelta(hours=1))
    after = model.last
    model.render(t)  # the clock jumped back
    assert model.last is not None and after is not None
    assert model.last.elapsed == timedelta(0)
    for obis in ("1-0:1.8.1", "1-0:1.8.2"):
        assert model.last.values[obis] == after.values[obis]


def test_solar_exports_and_phases_add_up() -> None:
    model = P1TelegramModel(seed=4, solar_kwp=6.0, tz=AMS)
    t = datetime(2025, 6, 21, 10, 0, tzinfo=UTC)  # noon local, midsummer
    exported = False
    start = None
    for _ in range(200):
        t += timedelta(seconds=10)
        decode_telegram(model.render(t), tz=AMS)
        reading = model.last
        assert reading is not None
        start = start or reading
        values = reading.values
        phases = sum(values[f"1-0:{c}.7.0"] - values[f"1-0:{c + 1}.7.0"] for c in (21, 41, 61))
        assert phases == values["1-0:1.7.0"] - values["1-0:2.7.0"]
        assert not (values["1-0:1.7.0"] and values["1-0:2.7.0"])
        exported = exported or reading.power_export_w > 0
        # Current follows power on each phase.
        for power, current, voltage in ((21, 31, 32), (41, 51, 52), (61, 71, 72)):
            net = abs(values[f"1-0:{power}.7.0"] - values[f"1-0:{power + 1}.7.0"]) * 1000
            assert (
                abs(values[f"1-0:{current}.7.0"] * values[f"1-0:{voltage}.7.0"] - net)
                < 3 * values[f"1-0:{voltage}.7.0"] / 100 + 1
            )
    assert exported
    assert start is not None and reading is not None
    assert (
        reading.values["1-0:2.8.1"] + reading.values["1-0:2.8.2"]
        > start.values["1-0:2.8.1"] + start.values["1-0:2.8.2"]
    )


def test_timestamp_and_dst_flag() -> None:
    model = P1TelegramModel(seed=5, tz=AMS)
    summer = datetime(2025, 7, 1, 12, 0, 5, tzinfo=UTC)
    assert b"0-0:1.0.0(250701140005S)" in model.render(summer)
    winter = datetime(2025, 12, 1, 12, 0, 5, tzinfo=UTC)
    assert b"0-0:1.0.0(251201130005W)" in model.render(winter)


def test_ambiguous_hour_decodes_to_the_right_instant() -> None:
    """02:30 happens twice on 26 October 2025 in Amsterdam: S then W tell them apart."""
    first = datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    second = datetime(2025, 10, 26, 1, 30, tzinfo=UTC)
    model = P1TelegramModel(seed=6, tz=AMS)
    raw1 = model.render(first)
    raw2 = model.render(second)
    assert b"(251026023000S)" in raw1
    assert b"(251026023000W)" in raw2
    stamp1 = _registers(decode_telegram(raw1, tz=AMS))["0-0:1.0.0"].value
    stamp2 = _registers(decode_telegram(raw2, tz=AMS))["0-0:1.0.0"].value
    # (Aware datetimes in the repeated hour never compare equal across zones: compare instants.)
    assert isinstance(stamp1, datetime) and isinstance(stamp2, datetime)
    assert stamp1.timestamp() == first.timestamp()
    assert stamp2.timestamp() == second.timestamp()


def test_gas_advances_at_capture_times() -> None:
    model = P1TelegramModel(seed=7, tz=AMS)
    assert model.capture_interval == 300  # DSMR 5: 5-minute values
    t = datetime(2025, 1, 10, 6, 0, 30, tzinfo=UTC)  # a cold morning
    stamps, values = [], []
    for _ in range(4 * 3600):
        t += timedelta(seconds=1)
        model.render(t)
        assert model.last is not None
        stamp, value = model.last.captures["0-1:24.2.1"]
        stamps.append(stamp)
        values.append(value)
    assert values == sorted(values) and values[-1] > values[0]
    distinct = sorted(set(stamps))
    assert len(distinct) == 4 * 12 + 1
    assert all(s.minute % 5 == 0 and s.second == 0 for s in distinct)
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(distinct))


def test_dsmr4_template_has_hourly_gas_and_ten_second_interval() -> None:
    try:
        template = (corpus_dir() / "dsmr" / "nl_dsmr42_kaifa.txt").read_bytes()
    except FileNotFoundError:
        pytest.skip("corpus not available")
    model = P1TelegramModel(template, seed=8)
    assert model.default_interval == 10
    assert model.capture_interval == 3600


@pytest.mark.parametrize("path", _corpus_templates(), ids=lambda p: p.name)
def test_every_corpus_telegram_works_as_a_template(path: Path) -> None:
    template = path.read_bytes()
    stated = decode_telegram(template).integrity
    model = P1TelegramModel(template, seed=9, tz=AMS, solar_kwp=4.0)
    t = datetime(2025, 4, 2, 9, 0, tzinfo=UTC)
    previous: dict[str, Decimal] = {}
    for _ in range(50):
        t += timedelta(seconds=61)
        frame = decode_telegram(model.render(t), tz=AMS)
        # A template with a CRC gets a correct one, even a template whose CRC was wrong.
        assert frame.integrity is (Integrity.ABSENT if stated is Integrity.ABSENT else Integrity.VALID)
        assert model.last is not None
        _assert_matches(frame, model.last)
        for obis, value in model.last.values.items():
            if ".8." in obis:
                assert value >= previous.get(obis, value)
                previous[obis] = value


def test_template_must_be_a_telegram() -> None:
    with pytest.raises(ValueError, match="not a plain P1 telegram"):
        P1TelegramModel(b"hello")
    with pytest.raises(ValueError, match="timezone-aware"):
        P1TelegramModel().render(datetime(2025, 1, 1))


def test_fault_injection() -> None:
    raw = P1TelegramModel(seed=10).render(datetime(2025, 3, 1, tzinfo=UTC))
    assert decode_telegram(inject_fault(raw, Fault.BAD_CRC)).integrity is Integrity.INVALID
    framer = P1Framer()
    assert framer.feed(inject_fault(raw, Fault.GARBAGE)) == [raw]
    assert framer.discarded > 0
    framer = P1Framer()
    frames = framer.feed(inject_fault(raw, Fault.TRUNCATE) + raw)
    assert frames == [raw]  # the cut-off telegram is dropped, the next one survives
    encrypted = encrypt_frame(raw, KEY)
    assert len(inject_fault(encrypted, Fault.TRUNCATE)) < len(encrypted)
    with pytest.raises(WrongKeyError):
        decode_telegram(inject_fault(encrypted, Fault.BAD_CRC), key=KEY)


async def test_encrypted_telegrams_decode_with_the_key() -> None:
    sim = PtySimulator(P1TelegramModel(seed=11), key=KEY)
    data = sim.next_telegram(datetime(2025, 3, 1, 12, tzinfo=UTC))
    assert data[0] == 0xDB
    frame = decode_telegram(data, key=KEY)
    assert frame.encrypted and frame.integrity is Integrity.VALID
    assert frame.raw == sim.history[-1].plaintext
    assert sim.model.last is not None
    _assert_matches(frame, sim.model.last)
    with pytest.raises(KeyRequiredError):
        decode_telegram(data)
    # The frame counter advances with every telegram.
    second = sim.next_telegram(datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC))
    assert second[14:18] != data[14:18]


async def _frames(source: P1Source, count: int) -> AsyncIterator[Frame]:
    got = 0
    async for frame in source.frames():
        yield frame
        got += 1
        if got == count:
            return


def _seq_of(sim: PtySimulator | TcpSimulator, frame: Frame) -> int:
    for sent in sim.history:
        if sent.plaintext == frame.raw:
            return sent.seq
    raise AssertionError("frame not sent by the simulator")


async def test_p1source_reads_the_pty_simulator() -> None:
    async with PtySimulator(P1TelegramModel(seed=12), interval=0.05) as sim:
        assert sim.device_path.startswith("/dev/")
        source = P1Source(sim.device_path)
        seqs = []
        try:
            async with asyncio.timeout(GUARD):
                async for frame in _frames(source, 4):
                    assert frame.integrity is Integrity.VALID
                    seqs.append(_seq_of(sim, frame))
                    reading = next(s.reading for s in sim.history if s.seq == seqs[-1])
                    _assert_matches(frame, reading)
        finally:
            await source.close()
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert not sim.running


async def test_pty_symlink_and_faults(tmp_path: Path) -> None:
    """Faults on the line: the source drops the bad telegrams and keeps the good ones."""
    plan: dict[int, Fault] = {}
    link = tmp_path / "ttyP1"
    async with PtySimulator(P1TelegramModel(seed=13), interval=0.05, link=link, faults=plan) as sim:
        assert link.is_symlink() and os.readlink(link) == sim.device_path  # noqa: PTH115
        source = P1Source(str(link))
        seqs = []
        try:
            async with asyncio.timeout(GUARD):
                async for frame in source.frames():
                    seq = _seq_of(sim, frame)
                    if not seqs:
                        base = sim.sent
                        plan.update(
                            {base + 2: Fault.GARBAGE, base + 3: Fault.TRUNCATE, base + 4: Fault.BAD_CRC}
                        )
                    seqs.append(seq)
                    if seq >= base + 6:
                        break
        finally:
            await source.close()
    assert not link.exists()
    assert base + 2 in seqs  # garbage before a good telegram does not lose it
    assert base + 3 not in seqs and base + 4 not in seqs
    assert base + 5 in seqs
    assert source.stats.frames_bad_checksum >= 1
    assert source.stats.bytes_discarded > 0


async def test_encrypted_pty_simulator() -> None:
    async with PtySimulator(P1TelegramModel(seed=14), interval=0.05, key=KEY) as sim:
        source = P1Source(sim.device_path, key=KEY)
        try:
            async with asyncio.timeout(GUARD):
                async for frame in _frames(source, 2):
                    assert frame.encrypted
                    _seq_of(sim, frame)
        finally:
            await source.close()


async def test_p1source_reads_the_tcp_simulator(socket_enabled: None) -> None:
    async with TcpSimulator(P1TelegramModel(seed=15), interval=0.05) as sim:
        assert sim.port > 0 and sim.url == f"socket://127.0.0.1:{sim.port}"
        sources = [P1Source(sim.url), P1Source(sim.url)]  # a dongle serves several clients
        try:
            async with asyncio.timeout(GUARD):
                for source in sources:
                    async for frame in _frames(source, 2):
                        _seq_of(sim, frame)
        finally:
            for source in sources:
                await source.close()


async def test_p1source_reconnects_after_the_tcp_peer_closes(socket_enabled: None) -> None:
    model = P1TelegramModel(seed=16)
    sim = TcpSimulator(model, interval=0.05)
    await sim.start()
    port = sim.port
    source = P1Source(sim.url, backoff=Backoff(first=0.05, cap=0.2))
    try:
        async with asyncio.timeout(GUARD):
            stream = source.frames()
            _seq_of(sim, await anext(stream))
            await sim.stop()  # the dongle goes away
            assert sim.clients == 0
            sim = TcpSimulator(model, interval=0.05, port=port)
            await sim.start()  # ... and comes back on the same port
            while True:
                frame = await anext(stream)
                if any(sent.plaintext == frame.raw for sent in sim.history):
                    break  # a telegram from the new server
            # A dropped client connection is survived too.
            await sim.disconnect_clients()
            frame = await anext(stream)
            _seq_of(sim, frame)
            await stream.aclose()
    finally:
        await source.close()
        await sim.stop()
    assert source.stats.connects >= 3
    assert source.stats.disconnects >= 2


async def test_simulator_stop_is_idempotent_and_context_closes() -> None:
    sim = PtySimulator(interval=0.05)
    await sim.stop()
    async with sim:
        await asyncio.wait_for(sim.wait_sent(2), GUARD)
        assert sim.running
    assert not sim.running
    await sim.stop()


async def test_time_compression() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    async with PtySimulator(P1TelegramModel(seed=17), interval=0.05, speed=3600, start=start) as sim:
        await asyncio.wait_for(sim.wait_sent(3), GUARD)
    stamps = [sent.reading.timestamp for sent in sim.history]
    assert stamps[-1] - stamps[0] >= timedelta(minutes=5)  # 0.1 s of wall time, 6 min of meter time


def test_command_line_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--pty-link" in capsys.readouterr().out
