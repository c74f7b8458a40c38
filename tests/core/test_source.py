"""Meter sources over real pseudo-terminals: push streams, IEC mode C readouts, M-Bus polling.

The simulated meters sit on the master side of a pty and send real corpus
frames; the source opens the slave path through serialx like a USB adapter.
The simulators are in ``tests/simulators.py`` (shared with ``test_detect.py`` and the
Home Assistant tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from custom_components.smartmeter.core import mbus
from custom_components.smartmeter.core.crc import crc16_arc
from custom_components.smartmeter.core.dlms import encrypt_apdu
from custom_components.smartmeter.core.errors import KeyRequiredError, WrongKeyError
from custom_components.smartmeter.core.hdlc import crc16_x25
from custom_components.smartmeter.core.iec62056 import parse_identification
from custom_components.smartmeter.core.models import Frame
from custom_components.smartmeter.core.p1 import DEFAULT_TZ
from custom_components.smartmeter.core.protocols import PROTOCOLS
from custom_components.smartmeter.core.source import (
    Backoff,
    IecReadoutSource,
    MbusSource,
    P1Source,
    StreamSource,
    parse_mbus_address,
)
from tests.simulators import MBUS_SAMPLES, MbusBus, ModeCMeter, Pty, PushMeter, corpus, secondary

FAST = Backoff(first=0.01, cap=0.05)
DLMS_KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
TITLE = b"KFM\x10\x10\x00\x00\x23"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def hdlc(info: bytes) -> bytes:
    """One HDLC frame (type 3, Aidon-style addresses) around ``info``."""
    length = 2 + 1 + 2 + 1 + 2 + len(info) + 2
    head = bytes([0xA0 | (length >> 8), length & 0xFF, 0x41, 0x08, 0x83, 0x13])
    body = head + crc16_x25(head).to_bytes(2, "little") + info
    return b"\x7e" + body + crc16_x25(body).to_bytes(2, "little") + b"\x7e"


def encrypted_dlms(key: bytes = DLMS_KEY, counter: int = 1) -> bytes:
    """The Kaifa list-2 sample as an encrypted HAN meter sends it (general-glo-ciphering in HDLC)."""
    llc = corpus("han_dlms/no_kaifa_list2.llc.bin")
    cipher = encrypt_apdu(llc[3:], key, system_title=TITLE, frame_counter=counter)
    return hdlc(llc[:3] + cipher)


async def take(
    source: StreamSource | IecReadoutSource | MbusSource, count: int, timeout: float = 10
) -> list[Frame]:
    """The first ``count`` frames the source yields."""
    frames: list[Frame] = []
    async with asyncio.timeout(timeout):
        async for frame in source.frames():
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Let the loop run until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a source's counters
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(source: StreamSource | IecReadoutSource | MbusSource) -> AsyncIterator[list[Frame]]:
    """Read the source in the background (the frames collect in the list); close it on exit."""
    frames: list[Frame] = []

    async def consume() -> None:
        async for frame in source.frames():
            frames.append(frame)  # noqa: PERF401 - the test looks at the list while this runs

    reader = asyncio.create_task(consume())
    try:
        yield frames
    finally:
        await source.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


# ---------------------------------------------------------------- push streams

GARBAGE = b"\x00\xffnoise\x13\x37"


def _bad_p1(good: bytes) -> bytes:
    return good.replace(b"1-0:1.8.1(", b"1-0:1.8.1(9", 1)  # CRC kept: now wrong


def _bad_sml(good: bytes) -> bytes:
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0x01
    return bytes(raw)


def _bad_hdlc(good: bytes) -> bytes:
    raw = bytearray(good)
    raw[-3] ^= 0xFF  # the FCS
    return bytes(raw)


def _iec_with_crc(telegram: bytes, *, wrong: bool = False) -> bytes:
    body = telegram[: telegram.rindex(b"!") + 1]
    return body + f"{crc16_arc(body) ^ (1 if wrong else 0):04X}\r\n".encode()


EMH = corpus("iec62056-21/de_emh_ehz_modeD_push.txt")
# protocol, good frame, a frame that fails its check, a register key and its value in the good one
PUSH_CASES = [
    (
        "dsmr",
        corpus("dsmr/nl_dsmr50_iskra_am550_two_mbus.txt"),
        _bad_p1(corpus("dsmr/nl_dsmr50_iskra_am550_two_mbus.txt")),
    ),
    (
        "sml",
        corpus("sml/de_emh_ehz_smartmeter_obis.bin"),
        _bad_sml(corpus("sml/de_emh_ehz_smartmeter_obis.bin")),
    ),
    (
        "dlms",
        corpus("han_dlms/no_kamstrup_omnipower_list.bin"),
        _bad_hdlc(corpus("han_dlms/no_kamstrup_omnipower_list.bin")),
    ),
    ("iec62056-21", _iec_with_crc(EMH), _iec_with_crc(EMH, wrong=True)),
]


@pytest.mark.parametrize(("protocol", "good", "bad"), PUSH_CASES, ids=[c[0] for c in PUSH_CASES])
async def test_push_source_decodes_and_counts(protocol: str, good: bytes, bad: bytes) -> None:
    expected = PROTOCOLS[protocol].decode(good, None, DEFAULT_TZ)
    async with PushMeter([GARBAGE + good, bad, good]) as meter:
        source = StreamSource(meter.path, protocol=protocol, backoff=FAST)
        try:
            frames = await take(source, 4)
            assert source.connected
        finally:
            await source.close()
    assert {frame.protocol for frame in frames} == {protocol}
    assert frames[0].main is not None and expected.main is not None
    assert frames[0].main.id == expected.main.id
    assert frames[0].main.registers == expected.main.registers
    assert source.stats.frames_ok == 4
    assert source.stats.frames_bad_checksum >= 1
    assert source.stats.frames_undecodable == 0
    assert source.stats.bytes_discarded >= len(GARBAGE)
    assert source.raw_history[-1] == good
    assert source.settings == PROTOCOLS[protocol].settings[0]
    assert not source.connected


def test_stream_source_rejects_polled_protocols() -> None:
    with pytest.raises(ValueError, match="push"):
        StreamSource("/dev/null", protocol="mbus")
    with pytest.raises(ValueError, match="push"):
        StreamSource("/dev/null", protocol="nope")


async def test_p1_source_is_a_stream_source() -> None:
    source = P1Source("/dev/null", key=b"k" * 16)
    assert isinstance(source, StreamSource)
    assert (source.protocol, source.settings.label, source.key) == ("dsmr", "115200 8N1", b"k" * 16)


async def test_dlms_wrong_key_then_right_key() -> None:
    frame = encrypted_dlms()
    async with PushMeter([frame]) as meter:
        source = StreamSource(meter.path, protocol="dlms", key=bytes(16), backoff=FAST)
        async with running(source) as frames:
            await wait_until(lambda: source.stats.frames_decrypt_failed >= 2)
            assert isinstance(source.key_error, WrongKeyError)
            assert not source.connected
            assert frames == []
        source = StreamSource(meter.path, protocol="dlms", backoff=FAST)
        async with running(source):
            await wait_until(lambda: source.stats.frames_decrypt_failed >= 1)
            assert isinstance(source.key_error, KeyRequiredError)
        source = StreamSource(meter.path, protocol="dlms", key=DLMS_KEY, backoff=FAST)
        try:
            [decoded] = await take(source, 1)
        finally:
            await source.close()
    assert decoded.encrypted
    assert decoded.main is not None and decoded.main.id == "6970631402614476"
    assert source.key_error is None


async def test_dlms_list_1_frames_get_the_last_meter_id() -> None:
    """Kaifa list 1 (power only, no ID) after list 2: same meter; before any list 2: held back."""
    list1 = corpus("han_dlms/no_kaifa_ma304h4_list1.bin")
    list2 = corpus("han_dlms/no_kaifa_ma304h4d_list.bin")
    async with PushMeter([list1, list2, list1]) as meter:
        source = StreamSource(meter.path, protocol="dlms", backoff=FAST)
        try:
            frames = await take(source, 4)
        finally:
            await source.close()
    ids = {frame.main.id for frame in frames if frame.main is not None}
    assert len(ids) == 1
    assert "unidentified" not in ids
    sizes = [len(frame.main.registers) for frame in frames if frame.main is not None]
    assert min(sizes) < max(sizes)  # list-1 frames came through, under the list-2 meter's ID


async def test_dead_port_retries_quietly_then_connects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing port: retried with backoff, one warning, no traceback; then the meter appears."""
    port = tmp_path / "ttyMETER"
    good = corpus("sml/de_dzg_frame1.bin")
    statuses: list[bool] = []
    source = StreamSource(str(port), protocol="sml", backoff=FAST, on_status=statuses.append)
    caplog.set_level(logging.DEBUG, logger="custom_components.smartmeter.core.source")
    reader = asyncio.create_task(take(source, 2))
    try:
        await wait_until(lambda: source.stats.disconnects >= 4)
        assert not reader.done()
        async with PushMeter([good]) as meter:
            port.symlink_to(meter.path)
            frames = await reader
    finally:
        await source.close()
    assert len(frames) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "Lost connection" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    assert any("restored" in r.getMessage() for r in caplog.records)
    assert statuses == [True, False]


async def test_port_that_goes_away_is_counted() -> None:
    meter = PushMeter([corpus("dsmr/nl_dsmr42_kaifa.txt")])
    async with meter:
        source = StreamSource(meter.path, backoff=FAST)
        reader = asyncio.create_task(take(source, 100, timeout=30))
        try:
            await wait_until(lambda: source.stats.frames_ok >= 1)
            meter.close()  # the adapter is unplugged
            await wait_until(lambda: source.stats.disconnects >= 2)
            assert not source.connected
        finally:
            await source.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_close_closes_the_port() -> None:
    async with PushMeter([corpus("dsmr/nl_dsmr42_kaifa.txt")]) as meter:
        source = StreamSource(meter.path, backoff=FAST)
        reader = asyncio.create_task(take(source, 100, timeout=30))
        await wait_until(lambda: source.stats.frames_ok >= 1)
        link = source._link
        assert link is not None and link.is_open
        await source.close()
        await source.close()  # idempotent
        assert not link.is_open
        assert source._link is None
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


# ---------------------------------------------------------------- IEC 62056-21 mode C


async def test_iec_readout_source_polls() -> None:
    async with ModeCMeter() as meter:
        source = IecReadoutSource(meter.path, address="53965555", interval=0.1, timeout=2, backoff=FAST)
        try:
            frames = await take(source, 2)
        finally:
            await source.close()
    assert meter.requests == [b"/?53965555!\r\n"] * 2
    assert meter.rates == [9600, 9600]
    assert source.settings.label == "300 7E1"
    assert source.stats.frames_ok == 2 and source.stats.connects == 1
    for frame in frames:
        assert frame.protocol == "iec62056-21"
        assert frame.header == "ITR5EM214"
        assert frame.main is not None and frame.main.id == "53965555"
        assert frame.main.values["energy_import_tariff_1"].value == Decimal("22108.7")


async def test_iec_readout_bad_bcc_is_counted() -> None:
    wr5 = corpus("iec62056-21/de_siemens_wr5_heat_modeC.txt")
    ident = wr5[: wr5.index(b"\n") + 1]
    assert parse_identification(ident).mode == "B"
    # as a mode C meter with the WR5's data message (its BCC is wrong in the corpus)
    async with ModeCMeter(b"/SIE5WR5\r\n", wr5[len(ident) :]) as meter:
        source = IecReadoutSource(meter.path, interval=0.05, timeout=1, backoff=FAST)
        reader = asyncio.create_task(take(source, 1, timeout=30))
        try:
            await wait_until(lambda: source.stats.frames_bad_checksum >= 2)
            assert source.stats.frames_ok == 0
            assert source.stats.disconnects == 0  # the meter answers: the link is fine
            assert "BCC" in (source.stats.last_error or "")
        finally:
            await source.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_iec_meter_that_does_not_answer(caplog: pytest.LogCaptureFixture) -> None:
    port = Pty()
    try:
        source = IecReadoutSource(port.path, interval=0.05, timeout=0.1, backoff=FAST)
        reader = asyncio.create_task(take(source, 1, timeout=30))
        await wait_until(lambda: source.stats.disconnects >= 3)
        await source.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        assert b"/?!\r\n" in bytes(port.received) + port.read()
    finally:
        port.close()
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


# ---------------------------------------------------------------- M-Bus


def test_mbus_addresses() -> None:
    assert parse_mbus_address(" p5 ") == "p5"
    assert parse_mbus_address("P250") == "p250"
    assert parse_mbus_address("12345678") == "12345678"
    assert parse_mbus_address("6666020532a70704") == "6666020532A70704"
    for bad in ("p251", "5", "1234567", "6666020532A7070", "x"):
        with pytest.raises(ValueError, match="M-Bus address"):
            parse_mbus_address(bad)
    with pytest.raises(ValueError, match="no M-Bus slave"):
        MbusSource("/dev/null", addresses=[])


async def test_mbus_source_polls_every_slave(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="custom_components.smartmeter.core.source")
    water_id = secondary(MBUS_SAMPLES[7])
    async with MbusBus(MBUS_SAMPLES, silent=frozenset({9})) as bus:
        source = MbusSource(
            bus.path,
            addresses=["p5", water_id, water_id[:8], "p9"],
            interval=0.05,
            timeout=0.1,
            backoff=FAST,
        )
        try:
            frames = await take(source, 6)
            assert source.connected
        finally:
            await source.close()
    ids = [frame.meters[0].serial_number for frame in frames]
    assert ids == [secondary(MBUS_SAMPLES[5]), water_id, water_id] * 2
    assert source.no_answer["p9"] >= 1  # round 2 stopped before p9
    assert source.stats.frames_ok == 6
    assert source.stats.disconnects == 0
    assert source.stats.last_error == "M-Bus slave p9 did not answer"
    silent_logs = [r for r in caplog.records if "p9" in r.getMessage()]
    assert len(silent_logs) == 1 and silent_logs[0].levelno == logging.DEBUG
    # SND_NKE to the primary slaves once, then REQ_UD2 with the FCB toggling
    assert bus.requests[:2] == [mbus.snd_nke(5), mbus.snd_nke(9)]
    to_5 = [r for r in bus.requests if r[2] == 5 and r[1] & ~mbus.FCB == mbus.C_REQ_UD2]
    assert [bool(r[1] & mbus.FCB) for r in to_5[:2]] == [True, False]
    assert mbus.select_secondary(water_id) in bus.requests
    assert mbus.select_secondary(water_id[:8] + "FFFFFFFF") in bus.requests


async def test_mbus_source_all_silent_is_disconnected_but_keeps_polling() -> None:
    async with MbusBus(MBUS_SAMPLES, silent=frozenset(MBUS_SAMPLES)) as bus:
        statuses: list[bool] = []
        source = MbusSource(
            bus.path, addresses=["p5"], interval=0.01, timeout=0.05, on_status=statuses.append
        )
        reader = asyncio.create_task(take(source, 1, timeout=30))
        try:
            await wait_until(lambda: source.no_answer["p5"] >= 3)
            assert not source.connected
            assert source.stats.connects == 1
        finally:
            await source.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert statuses == []


async def test_mbus_source_reconnects(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = MbusSource(str(tmp_path / "missing"), addresses=["p1"], backoff=FAST)
    reader = asyncio.create_task(take(source, 1, timeout=30))
    try:
        await wait_until(lambda: source.stats.disconnects >= 3)
    finally:
        await source.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert all(r.exc_info is None for r in caplog.records)
