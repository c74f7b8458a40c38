r"""IEC 62056-21: mode D push telegrams, mode A/B/C readouts, the framer and the readout client.

The real samples in the shared corpus (``iec62056-21/``) are decoded and
checked against what their source project asserts (``*.expected.json``). The
readout client talks to a simulated meter on a real pty: the meter answers the
sign-on request with a corpus identification, reads the acknowledgement and
only sends its data message at the baud rate it agreed to.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import termios
import time
import tty
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from functools import reduce
from operator import xor
from pathlib import Path

import pytest
import serialx
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.smartmeter.core.errors import (
    ChecksumError,
    ConnectionFailedError,
    DecodeError,
    NoTelegramError,
)
from custom_components.smartmeter.core.iec62056 import (
    PROTOCOL,
    IecFramer,
    ack_message,
    bcc,
    decode_iec,
    parse_identification,
    read_mode_c,
    sign_on_request,
    sniff_iec,
    split_iec,
)
from custom_components.smartmeter.core.models import Frame, Integrity, Medium, Register
from custom_components.smartmeter.core.p1 import decode_telegram
from tests.conftest import corpus_dir

CORPUS = corpus_dir()
IEC_DIR = CORPUS / "iec62056-21"
EASYMETER = (IEC_DIR / "de_easymeter_q3d_b1024_com1.txt").read_bytes()
EMH = (IEC_DIR / "de_emh_ehz_modeD_push.txt").read_bytes()
EM214 = (IEC_DIR / "de_itron_em214_modeC_noetx.txt").read_bytes()
WR5 = (IEC_DIR / "de_siemens_wr5_heat_modeC.txt").read_bytes()
SAMPLES = sorted(IEC_DIR.glob("*.txt"))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _split_ident(raw: bytes) -> tuple[bytes, bytes]:
    """(identification line, the rest) of a corpus readout."""
    end = raw.index(b"\n") + 1
    return raw[:end], raw[end:]


def _data_message(body: bytes) -> bytes:
    r"""STX body ETX BCC with the real BCC (body ends with "!\r\n")."""
    block = body + b"\x03"
    return b"\x02" + block + bytes((reduce(xor, block, 0),))


EM214_IDENT, _em214_rest = _split_ident(EM214)
# What a real EM214 sends: the corpus data block with ETX and the real BCC after it.
EM214_MESSAGE = _data_message(_em214_rest.removeprefix(b"\x02"))
WR5_IDENT, WR5_MESSAGE = _split_ident(WR5)


# ---------------------------------------------------------------- corpus


def _obis(source_id: str) -> str:
    """smartmeter-obis id ("6-0:9.20", "1-0:1.8.1*255") -> our normalised OBIS code."""
    match = re.fullmatch(r"(\d+)-(\d+):(\d+)\.(\d+)(?:\.(\d+))?(?:\*(\d+))?", source_id)
    assert match is not None, source_id
    a, b, c, d, e, f = match.groups()
    obis = f"{a}-{b}:{c}.{d}.{e or 0}"
    return obis if f in {None, "255"} else f"{obis}*{int(f)}"


def _register(frame: Frame, obis: str) -> Register:
    assert frame.main is not None
    found = [reg for reg in frame.main.registers if reg.obis == obis]
    assert len(found) == 1, f"{obis}: {found}"
    return found[0]


def _check_assertion(frame: Frame, name: str, expected: str) -> None:
    """One source assertion ("<id>.rawValue", "<id>.values[i].value|unit", "<id>")."""
    match = re.fullmatch(r"(.+?)(?:\.(rawValue)|\.values\[(\d+)\]\.(value|unit))?", name)
    assert match is not None
    source_id, raw_value, index, field = match.groups()
    reg = _register(frame, _obis(source_id))
    if raw_value or index is None:
        text = expected.split(" ", 1)[0]  # "032942.0231 (no unit on the wire; kWh)"
        if isinstance(reg.value, Decimal):
            number, _, unit = text.partition("*")
            assert reg.value == Decimal(number)
            assert reg.unit == (unit or None)
        else:
            assert reg.value == text
        return
    i = int(index)
    if reg.history:
        entry = reg.history[i]
        value, unit = entry.value, entry.unit
    elif isinstance(reg.value, str):
        value, unit = re.split(r"[#&]", reg.value)[i], None
    else:
        assert i == 0
        value, unit = reg.value, reg.unit
    if field == "unit":
        assert unit == expected
    elif isinstance(value, Decimal):
        assert value == Decimal(expected)
    else:
        assert value == expected


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_corpus_sample_matches_its_source_assertions(path: Path) -> None:
    raw = path.read_bytes()
    frames, _discarded = split_iec(raw)
    assert len(frames) == 1
    frame = decode_iec(frames[0])
    assert frame.protocol == PROTOCOL
    assert frame.main is not None
    expected_file = path.with_name(path.stem + ".expected.json")
    if not expected_file.exists():
        assert path.name == "de_easymeter_q3d_b1024_com1.txt"  # the source asserts nothing
        return
    expected = json.loads(expected_file.read_text())
    assertions = next(v for k, v in expected.items() if k.startswith("source_assertions"))
    checked = 0
    for name, value in assertions.items():
        if name == "note":
            continue
        _check_assertion(frame, name, value)
        checked += 1
    assert checked


def test_siemens_wr5_bcc_is_not_the_real_one() -> None:
    """The source sends BCC "X" (0x58); the XOR is 0x6F: decoded, but INVALID."""
    frame = decode_iec(WR5)
    assert frame.integrity is Integrity.INVALID
    assert WR5[-1] == 0x58
    stx, etx = WR5.index(b"\x02"), WR5.index(b"\x03")
    assert bcc(WR5[stx + 1 : etx + 1]) == 0x6F == reduce(xor, WR5[stx + 1 : etx + 1])
    fixed = decode_iec(WR5[:-1] + b"\x6f")
    assert fixed.integrity is Integrity.VALID
    assert fixed.meters == frame.meters
    # one flipped bit anywhere in the block: the BCC notices
    flipped = bytearray(fixed.raw)
    flipped[stx + 5] ^= 0x01
    assert decode_iec(bytes(flipped)).integrity is Integrity.INVALID


def test_siemens_wr5_heat_meter() -> None:
    """Reduced codes over two lines, several data sets a line, "&" values, billing values."""
    frame = decode_iec(WR5)
    meter = frame.main
    assert meter is not None
    assert frame.header == "SIEC2WR5"
    assert (meter.manufacturer, meter.model, meter.id) == ("SIE", "2WR5", "00010213")
    assert meter.medium is Medium.HEAT
    values = {reg.obis: reg for reg in meter.registers}
    assert values["6-0:6.8.0"].key == "heat"
    assert (values["6-0:6.8.0"].value, values["6-0:6.8.0"].unit) == (Decimal("29.055"), "MWh")
    assert (values["6-0:6.26.0"].value, values["6-0:6.26.0"].unit) == (Decimal("1589.28"), "m3")
    assert values["6-0:6.8.0*1"].key == "heat_billing_1"
    assert values["6-0:6.8.0*1"].value == Decimal("28.086")
    temps = values["6-0:9.4.0"]
    assert [(e.value, e.unit) for e in temps.history] == [(Decimal(88), "C"), (Decimal(82), "C")]
    stamp = values["6-0:9.36.0"].value
    assert stamp is not None and not isinstance(stamp, (str, Decimal, int))
    assert (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second) == (
        2017,
        1,
        18,
        1,
        36,
        47,
    )
    assert values["6-0:6.8.1"].value is None  # "6.8.1()": empty
    assert values["6-0:0.0.0"].value == "00010213"
    # the data sets of the second line are there too
    assert values["6-0:6.36.2"].value == "2016-09-24"
    assert len(meter.registers) == WR5.count(b"(") == 50  # every data set, none lost
    # told it is an electricity meter, the same codes get A = 1
    as_electricity = decode_iec(WR5, medium=Medium.ELECTRICITY)
    assert as_electricity.main is not None
    assert as_electricity.main.registers[0].obis == "1-0:6.8.0"


def test_itron_em214_without_etx() -> None:
    frame = decode_iec(EM214)
    meter = frame.main
    assert meter is not None
    assert frame.integrity is Integrity.ABSENT  # no ETX/BCC in the source
    assert (meter.manufacturer, meter.model, meter.medium) == ("ITR", "EM214", Medium.ELECTRICITY)
    assert meter.id == "53965555"  # C.1 (serial number) before 0.0.0 (device address)
    values = meter.values
    assert values["energy_import_tariff_1"].value == Decimal("22108.7")
    assert values["energy_import_tariff_1"].unit == "kWh"
    assert values["power_import"].value == Decimal("0.49")
    assert values["power_import"].unit == "kW"
    assert values["current_l1"].value == Decimal("0.8")  # "+000.8*A"
    assert values["error_register"].value == "00000000"
    assert values["firmware_version"].value == "V01.69#EEA3546C"
    assert values["meter_id"].value == "1240007670003202"
    # with ETX and the real BCC it is VALID
    assert decode_iec(EM214_IDENT + EM214_MESSAGE).integrity is Integrity.VALID
    assert decode_iec(EM214_IDENT + EM214_MESSAGE).meters == frame.meters


@pytest.mark.parametrize("raw", [EASYMETER, EMH], ids=["easymeter_q3d", "emh_ehz"])
def test_mode_d_push_decodes_like_p1(raw: bytes) -> None:
    """Full-code push telegrams: the same meter, keys, values and units as the P1 decoder."""
    ours = decode_iec(raw)
    p1 = decode_telegram(raw)
    assert ours.integrity is Integrity.ABSENT is p1.integrity
    assert ours.header == p1.header
    a, b = ours.main, p1.main
    assert a is not None and b is not None
    assert (a.id, a.medium, a.manufacturer, a.model, a.serial_number) == (
        b.id,
        b.medium,
        b.manufacturer,
        b.model,
        b.serial_number,
    )
    assert [(r.obis, r.key, r.value, r.unit) for r in a.registers] == [
        (r.obis, r.key, r.value, r.unit) for r in b.registers
    ]


def test_easymeter_values_and_gateway_junk() -> None:
    frames, discarded = split_iec(EASYMETER)
    assert len(frames) == 1
    assert frames[0].endswith(b"!\r\n")
    assert discarded == len(EASYMETER) - len(frames[0])  # the COM-1 counter line and 0xFF padding
    meter = decode_iec(frames[0]).main
    assert meter is not None
    assert meter.id == "1ESY1313002565"
    assert meter.values["energy_import_total"].value == Decimal("52185.7825309")
    assert meter.values["power_import"].value == Decimal("2124.86")
    assert meter.values["power_import"].unit == "W"
    assert meter.values["meter_status"].value == "80"  # hex status word, kept as sent


# ---------------------------------------------------------------- message details


@pytest.mark.parametrize(
    ("line", "manufacturer", "mode", "baudrate", "ident", "enhanced", "short"),
    [
        (b"/ITR5EM214\r\n", "ITR", "C", 9600, "EM214", None, False),
        (b"/SIEC2WR5\r\n", "SIE", "B", 2400, "2WR5", None, False),
        (b"/EMH5----eHZ-E0018E\r\n", "EMH", "C", 9600, "----eHZ-E0018E", None, False),
        (b"/ESY5Q3DB1024 V3.04\r\n", "ESY", "C", 9600, "Q3DB1024 V3.04", None, False),
        (b"/LGZ4ZMD3104407.B32\r\n", "LGZ", "C", 4800, "ZMD3104407.B32", None, False),
        (b"/ISk5\\2MIE5T-200\r\n", "ISk", "E", 9600, "MIE5T-200", "2", True),
        (b"/AEL6\\2ZX.1B\r\n", "AEL", "E", 19200, "ZX.1B", "2", False),
        (b"/ABC0XYZ\r\n", "ABC", "C", 300, "XYZ", None, False),
        (b"/ABC@METER\r\n", "ABC", "A", None, "METER", None, False),
        (b"/ABCG\r\n", "ABC", "B", None, "", None, False),
        ("ABC8METER", "ABC", "C", None, "METER", None, False),
    ],
)
def test_identification(
    line: bytes | str,
    manufacturer: str,
    mode: str,
    baudrate: int | None,
    ident: str,
    enhanced: str | None,
    short: bool,
) -> None:
    parsed = parse_identification(line)
    assert parsed.manufacturer == manufacturer
    assert parsed.mode == mode
    assert parsed.baudrate == baudrate
    assert parsed.ident == ident
    assert parsed.enhanced == enhanced
    assert parsed.short_reaction is short


@pytest.mark.parametrize(
    "line", [b"/?!\r\n", b"/AB\r\n", b"hel/lo", b"he", b"", b"/AB1C\r\n", b"/ABC5x!\r\n"]
)
def test_identification_rejects(line: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_identification(line)


def test_sign_on_and_acknowledgement() -> None:
    assert sign_on_request() == b"/?!\r\n"
    assert sign_on_request("12345678") == b"/?12345678!\r\n"
    for bad in ("a!b", "x/y", "?", "1" * 33, "é"):
        with pytest.raises(ValueError, match="address"):
            sign_on_request(bad)
    assert ack_message("5") == b"\x06050\r\n"
    assert ack_message("3") == b"\x06030\r\n"
    assert ack_message("5", mode="1") == b"\x06051\r\n"


@FAST
@given(st.binary(max_size=3000))
def test_bcc_is_the_xor_of_all_bytes(data: bytes) -> None:
    assert bcc(data) == reduce(xor, data, 0)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"hello world",
        b"/ITR5EM214\r\n",  # identification only
        b"/ITR5EM214\r\n\x021.8.1(1*kWh)",  # cut off: no "!" and no ETX
        b"/ITR5EM214\r\n\x021.8.1(1*kWh)!\r\n\x03",  # ETX without BCC
        b"/EMH5----eHZ\r\n\r\n1-0:1.8.1(1)\r\n",  # push telegram without "!"
        b"/EMH5----eHZ\r\n\r\n!\r\n",  # neither data nor checksum
        b"\x02!\r\n",  # empty data message, no BCC
    ],
)
def test_bad_messages_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_iec(raw)


def test_data_message_alone_and_push_crc() -> None:
    """A data message without identification; a mode D telegram with a CRC16 is checked."""
    frame = decode_iec(EM214_MESSAGE)
    assert frame.integrity is Integrity.VALID
    assert frame.header is None
    assert frame.main is not None and frame.main.id == "53965555"
    swedish = (CORPUS / "dsmr" / "se_landisgyr_e360.txt").read_bytes()
    assert decode_iec(swedish).integrity is Integrity.VALID
    bad = swedish.replace(b"!A077", b"!A078")
    assert decode_iec(bad).integrity is Integrity.INVALID


def test_value_forms() -> None:
    """Several values a data set, timestamps, clock, unknown addresses."""
    raw = (
        b"/ABC5TEST\r\n\x02"
        b"1.6.1(02.43*kW)(2001121215)\r\n"
        b"0.9.1(143015)0.9.2(240229)\r\n"
        b"1.8.0(000123.4*kWh)1.8.0*03(000100.0*kWh)1.8.0*255(000123.4*kWh)\r\n"
        b"1-0:1.8.1(1.5*kWh)(1.6*kWh)\r\n"
        b"XYZ(7)\r\n"
        b"!\r\n\x03"
    )
    raw += bytes((bcc(raw[raw.index(b"\x02") + 1 :]),))
    frame = decode_iec(raw)
    assert frame.integrity is Integrity.VALID
    meter = frame.main
    assert meter is not None
    regs = {reg.obis: reg for reg in meter.registers}
    peak = regs["1-0:1.6.1"]
    assert (peak.value, peak.unit) == (Decimal("2.43"), "kW")
    assert peak.timestamp is not None and (peak.timestamp.year, peak.timestamp.hour) == (2020, 12)
    assert meter.timestamp is not None
    assert (meter.timestamp.year, meter.timestamp.month, meter.timestamp.day) == (2024, 2, 29)
    assert (meter.timestamp.hour, meter.timestamp.minute, meter.timestamp.second) == (14, 30, 15)
    assert regs["1-0:1.8.0*3"].key == "energy_import_total_billing_3"
    assert regs["1-0:1.8.0*3"].value == Decimal("100.0")
    assert [reg.obis for reg in meter.registers].count("1-0:1.8.0") == 2  # "*255" is the current value
    assert regs["XYZ"].key == "iec_XYZ"
    assert regs["XYZ"].value == Decimal(7)
    assert meter.id == "ABC5TEST"  # no identifier register: the identification


@FAST
@given(st.binary(max_size=400))
def test_decoder_raises_only_decode_errors(data: bytes) -> None:
    for raw in (data, b"/ABC5X\r\n\x02" + data, b"/ABC5X\r\n\r\n" + data):
        try:
            frame = decode_iec(raw)
        except DecodeError:
            continue
        assert frame.protocol == PROTOCOL


def test_sniff() -> None:
    for path in SAMPLES:
        assert sniff_iec(path.read_bytes()), path.name
    for path in sorted((CORPUS / "dsmr").glob("*.txt")):
        assert not sniff_iec(path.read_bytes()), path.name
    assert not sniff_iec(b"")
    assert not sniff_iec(b"/ABC5X\r\n\r\n")


# ---------------------------------------------------------------- framer

GARBAGE = b"\x00\xff/?!\r\n noise \x06050\r\n"
STREAM_PARTS = [
    GARBAGE,
    EASYMETER,  # its gateway junk is garbage too
    EMH,
    b"/?!\r\n",  # an echoed request
    EM214_IDENT + EM214_MESSAGE,
    WR5,
    b"\x15garbage",
    EM214_MESSAGE,  # a data message on its own (the client's side after the acknowledgement)
    EMH,
]
STREAM = b"".join(STREAM_PARTS)
EXPECTED_FRAMES = [
    EASYMETER[: EASYMETER.index(b"!") + 3],
    EMH,
    EM214_IDENT + EM214_MESSAGE,
    WR5,
    EM214_MESSAGE,
    EMH,
]


def _feed(chunks: list[bytes]) -> tuple[list[bytes], int]:
    framer = IecFramer()
    frames: list[bytes] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    frames += framer.flush()
    return frames, framer.discarded


def test_framer_whole_stream() -> None:
    frames, discarded = _feed([STREAM])
    assert frames == EXPECTED_FRAMES
    assert discarded == len(STREAM) - sum(map(len, EXPECTED_FRAMES))
    assert split_iec(STREAM) == (frames, discarded)
    for frame in frames:
        assert decode_iec(frame).integrity is not Integrity.INVALID or frame == WR5


def test_framer_byte_by_byte() -> None:
    assert _feed([STREAM[i : i + 1] for i in range(len(STREAM))]) == _feed([STREAM])


@FAST
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM)), max_size=30))
def test_framer_any_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _feed(chunks) == _feed([STREAM])


def test_framer_em214_without_etx() -> None:
    """A block ending "!" CR LF without ETX: emitted when the next message starts, or at flush()."""
    framer = IecFramer()
    assert framer.feed(EM214) == []  # ETX may still come
    assert framer.flush() == [EM214]
    assert framer.discarded == 0
    frames, discarded = split_iec(EM214 + EMH)
    assert frames == [EM214, EMH]
    assert discarded == 0


def test_framer_resynchronises() -> None:
    cut = EMH[:40]
    frames, discarded = split_iec(cut + EASYMETER[:200] + b"\xff" + EMH)
    assert frames == [EMH]  # the cut telegram and the one with a bad byte are dropped
    assert discarded == 40 + 201
    # a data message cut by a new identification line
    block_cut = EM214_IDENT + EM214_MESSAGE[:100]
    frames, discarded = split_iec(block_cut + WR5)
    assert frames == [WR5]
    assert discarded == len(block_cut)
    # "!" followed by junk is not an end
    frames, _ = split_iec(b"/ABC5X\r\n\r\n1.8.0(1)\r\n!x\r\n" + EMH)
    assert frames == [EMH]
    # endless garbage does not grow the buffer
    framer = IecFramer()
    for _ in range(100):
        assert framer.feed(b"\x02" + b"1.8.0(1)\r\n" * 100) == []
    assert len(framer._buf) < 70000
    assert framer.discarded > 0


# ---------------------------------------------------------------- readout client over a pty


class PtyMeter:
    """A mode A/B/C meter on the master side of a pty.

    It waits for the sign-on request, answers with ``ident``, then (mode C)
    reads the acknowledgement and sends ``message`` once the line runs at the
    agreed rate; at any other rate it sends what the client would receive
    there: garbage. ``answer=False`` never answers.
    """

    def __init__(
        self,
        ident: bytes,
        message: bytes,
        *,
        answer: bool = True,
        echo: bool = False,
        send_data: bool = True,
    ) -> None:
        self.ident = ident
        self.message = message
        self.answer = answer
        self.echo = echo
        self.send_data = send_data
        self.request = b""
        self.ack = b""
        self.baud_when_sending: int | None = None
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self.slave)
        self.task: asyncio.Task[None] | None = None

    def speed(self) -> int:
        """The line's speed (termios B constant) as the client set it on its side."""
        return termios.tcgetattr(self.master)[5]

    async def _read_line(self, limit: float) -> bytes:
        data = b""
        deadline = time.monotonic() + limit
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                data += os.read(self.master, 64)
            await asyncio.sleep(0.002)
        return data

    async def run(self) -> None:
        """One readout session, the meter's side."""
        self.request = await self._read_line(5)
        if not self.answer:
            return
        if self.echo:
            os.write(self.master, self.request)
        os.write(self.master, self.ident)
        ident = parse_identification(self.ident)
        rate = ident.baudrate
        if ident.mode == "C":
            self.ack = await self._read_line(5)
            rate = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600}[chr(self.ack[2])]
        if not self.send_data:
            return
        wanted = getattr(termios, f"B{rate}")
        deadline = time.monotonic() + 2
        while self.speed() != wanted and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the tty
            await asyncio.sleep(0.005)  # the meter's reaction time: the client switches meanwhile
        self.baud_when_sending = self.speed()
        os.write(self.master, self.message if self.speed() == wanted else b"\xfe\x80\x00" * 50)

    def close(self) -> None:
        """Close both ends of the pty."""
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SpyLink:
    """A serialx.AsyncSerial that records what the client does with it."""

    def __init__(self, link: serialx.AsyncSerial) -> None:
        self.link = link
        self.calls: list[tuple[str, object]] = []

    async def write(self, data: bytes) -> None:
        """Record and send."""
        self.calls.append(("write", data))
        await self.link.write(data)

    async def read(self, n: int = -1) -> bytes:
        """Receive."""
        return await self.link.read(n)

    async def flush(self) -> None:
        """Record and wait until sent."""
        self.calls.append(("flush", None))
        await self.link.flush()

    async def reconfigure_port(self, *, baudrate: int | None = None) -> None:
        """Record and switch the baud rate."""
        self.calls.append(("baudrate", baudrate))
        await self.link.reconfigure_port(baudrate=baudrate)


@contextlib.asynccontextmanager
async def _session(meter: PtyMeter) -> AsyncIterator[SpyLink]:
    link = serialx.async_serial_for_url(
        meter.path, baudrate=300, byte_size=7, parity="E", stopbits=1, exclusive=False
    )
    await link.open()
    meter.task = asyncio.create_task(meter.run())
    try:
        yield SpyLink(link)
    finally:
        meter.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await meter.task
        await link.close()
        meter.close()


async def test_mode_c_readout_switches_baud_after_the_ack() -> None:
    meter = PtyMeter(EM214_IDENT, EM214_MESSAGE, echo=True)
    async with _session(meter) as spy:
        frame = await read_mode_c(spy, timeout=3, reaction_time=0.01)
        assert spy.link.baudrate == 9600
    assert meter.request == b"/?!\r\n"
    assert meter.ack == b"\x06050\r\n"
    assert meter.baud_when_sending == termios.B9600
    writes = [call for call in spy.calls if call[0] != "flush"]
    assert writes == [("write", b"/?!\r\n"), ("write", b"\x06050\r\n"), ("baudrate", 9600)]
    # the ACK had left the port (flushed) before the switch
    assert spy.calls.index(("baudrate", 9600)) > spy.calls.index(("write", b"\x06050\r\n")) + 1
    assert frame.integrity is Integrity.VALID
    assert frame.header == "ITR5EM214"
    assert frame.main is not None and frame.main.id == "53965555"
    assert frame.main.values["energy_import_tariff_1"].value == Decimal("22108.7")
    assert frame.raw == EM214_IDENT + EM214_MESSAGE


async def test_mode_c_readout_at_a_lower_rate_with_an_address() -> None:
    meter = PtyMeter(EM214_IDENT, EM214_MESSAGE)
    async with _session(meter) as spy:
        frame = await read_mode_c(spy, address="53965555", max_baud=2400, timeout=3, reaction_time=0.01)
    assert meter.request == b"/?53965555!\r\n"
    assert meter.ack == b"\x06030\r\n"
    assert ("baudrate", 2400) in spy.calls
    assert meter.baud_when_sending == termios.B2400
    assert frame.integrity is Integrity.VALID


async def test_mode_b_readout_switches_without_ack_and_checks_the_bcc() -> None:
    """The Siemens WR5 (mode B, 2400 Bd): no ACK, switch at once; its BCC is wrong."""
    meter = PtyMeter(WR5_IDENT, WR5_MESSAGE)
    async with _session(meter) as spy:
        with pytest.raises(ChecksumError, match=r"stated 0x58, computed 0x6F"):
            await read_mode_c(spy, timeout=3)
    assert meter.ack == b""
    assert [call for call in spy.calls if call[0] != "flush"] == [
        ("write", b"/?!\r\n"),
        ("baudrate", 2400),
    ]
    assert meter.baud_when_sending == termios.B2400


async def test_meter_without_etx_is_read_after_the_silence() -> None:
    """The EM214 as the corpus has it ("!" CR LF, no ETX/BCC): taken when nothing follows."""
    _ident, rest = _split_ident(EM214)
    meter = PtyMeter(EM214_IDENT, rest)
    async with _session(meter) as spy:
        frame = await read_mode_c(spy, timeout=0.5, reaction_time=0.01)
    assert frame.integrity is Integrity.ABSENT
    assert frame.main is not None and frame.main.id == "53965555"


async def test_meter_that_never_answers() -> None:
    meter = PtyMeter(EM214_IDENT, EM214_MESSAGE, answer=False)
    async with _session(meter) as spy:
        started = time.monotonic()
        with pytest.raises(NoTelegramError, match="identification"):
            await read_mode_c(spy, timeout=0.5)
        assert time.monotonic() - started < 2.0
    assert meter.request == b"/?!\r\n"


async def test_meter_that_sends_no_data_message() -> None:
    meter = PtyMeter(EM214_IDENT, EM214_MESSAGE, send_data=False)
    async with _session(meter) as spy:
        with pytest.raises(NoTelegramError, match="data message"):
            await read_mode_c(spy, timeout=0.5, reaction_time=0.01)


class FakeLink:
    """A scripted link: answers from a list, no flush, optional baud-rate setter."""

    def __init__(self, replies: list[bytes], *, baud: bool = True) -> None:
        self.replies = replies
        self.written: list[bytes] = []
        self.bauds: list[int] = []
        if baud:
            self.set_baudrate = self._set_baudrate

    async def write(self, data: bytes) -> None:
        """Record."""
        self.written.append(data)

    async def read(self, n: int = -1) -> bytes:
        """The next scripted reply (silence when there is none)."""
        if not self.replies:
            await asyncio.sleep(10)
        return self.replies.pop(0)

    async def _set_baudrate(self, baudrate: int) -> None:
        self.bauds.append(baudrate)


async def test_fake_link_paths() -> None:
    # mode A: no switch, the data message follows in the same read
    link = FakeLink([b"/ABC@X\r\n" + EM214_MESSAGE])
    frame = await read_mode_c(link, timeout=0.3)
    assert frame.integrity is Integrity.VALID
    assert link.written == [b"/?!\r\n"] and link.bauds == []
    # mode C through set_baudrate, data arriving in small pieces
    pieces = [EM214_MESSAGE[i : i + 7] for i in range(0, len(EM214_MESSAGE), 7)]
    link = FakeLink([EM214_IDENT[:4], EM214_IDENT[4:], *pieces])
    frame = await read_mode_c(link, timeout=0.3, reaction_time=0)
    assert link.written == [b"/?!\r\n", b"\x06050\r\n"] and link.bauds == [9600]
    # a sleeping battery meter: NUL bytes first
    link = FakeLink([b"/ABC@X\r\n" + EM214_MESSAGE])
    await read_mode_c(link, timeout=0.3, wakeup=4)
    assert link.written == [b"\x00" * 4, b"/?!\r\n"]
    # the link closes
    with pytest.raises(ConnectionFailedError):
        await read_mode_c(FakeLink([b""]), timeout=0.3)
    # a link that cannot switch its baud rate
    with pytest.raises(ConnectionFailedError, match="baud"):
        await read_mode_c(FakeLink([EM214_IDENT], baud=False), timeout=0.3, reaction_time=0)
    # garbage for a data message
    with pytest.raises(NoTelegramError):
        await read_mode_c(FakeLink([EM214_IDENT, b"\xff" * 100]), timeout=0.3, reaction_time=0)


async def test_link_errors_become_connection_failed() -> None:
    class Broken(FakeLink):
        async def read(self, n: int = -1) -> bytes:
            raise OSError(5, "Input/output error")

    with pytest.raises(ConnectionFailedError, match="Input/output"):
        await read_mode_c(Broken([]), timeout=0.3)


def _timings() -> dict[str, float]:
    """Decode time per telegram (µs) for the corpus samples (used in the report)."""
    out: dict[str, float] = {}
    for path in SAMPLES:
        raw = path.read_bytes()
        decode: Callable[[], Frame] = lambda raw=raw: decode_iec(raw)  # noqa: E731
        decode()
        runs = 2000
        start = time.perf_counter()
        for _ in range(runs):
            decode()
        out[path.stem] = (time.perf_counter() - start) / runs * 1e6
    return out


def test_decode_is_fast() -> None:
    """Generous bound (shared CI machines): well under a millisecond per telegram."""
    for name, micros in _timings().items():
        assert micros < 2000, name
