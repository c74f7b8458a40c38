"""Fuzzing every decoder and framer with hypothesis (issue 4).

Each decoder of :data:`benchmarks.bench_fuzz.TARGETS` (the protocol registry's
decoders, and SML with ``accept_invalid=True``) gets random bytes, every
truncation of every seed frame, single and multiple bit flips, byte inserts
and deletes, splices, and random chunking through its stream framer. The seeds
are every corpus sample of the protocol, the copies in ``tests/fixtures``, and
a few frames built from them so that each protocol has frames with a valid
check (``load_samples``). Whatever the input, the decoder API contract holds
(:func:`benchmarks.bench_fuzz.check_case`):

- nothing but a :class:`SmartMeterError` leaves a decoder, nothing at all a framer;
- a single bit flipped inside the span a checksum covers never decodes VALID;
- a VALID frame passes an independent check of its checksum (CRCs from the
  definitions, M-Bus sum, IEC BCC, AES-GCM), never the decoder's own code.

``scripts/bench fuzz`` runs the same checks on 100,000 random cases per decoder;
here a few thousand, deterministic (``derandomize=True``). The last tests are
regressions for the bugs the fuzzer found.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from benchmarks.bench_fuzz import (
    TARGETS,
    Case,
    Sample,
    Tally,
    Target,
    check_case,
    crc_arc,
    crc_kermit,
    crc_x25,
    flip_case,
    guarded,
    load_samples,
    mutate,
)
from custom_components.smartmeter.core.errors import DecodeError, SmartMeterError
from custom_components.smartmeter.core.iec62056 import decode_iec
from custom_components.smartmeter.core.models import Integrity
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.protocols import PROTOCOLS
from custom_components.smartmeter.core.smarty import encrypt_frame
from custom_components.smartmeter.core.sml import decode_sml
from tests.core.test_sml import SERVER, I, U, message, transport

SAMPLES = load_samples()
TARGET_IDS = [target.name for target in TARGETS]


def _fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _seeds(target: Target) -> list[Sample]:
    return SAMPLES[target.protocol]


def _checked(target: Target) -> list[Sample]:
    return [sample for sample in _seeds(target) if sample.span is not None]


def _assert_clean(tally: Tally) -> None:
    bad = {
        what: tally.counts[what] for what in ("escaped", "valid_after_flip_in_check", "valid_without_check")
    }
    assert not any(bad.values()), f"{bad}\n" + "\n".join(tally.failures)


def _run(target: Target, sample: Sample, case: Case) -> Tally:
    tally = Tally()
    check_case(target, sample, case, tally)
    _assert_clean(tally)
    return tally


def test_every_protocol_has_seeds_with_a_valid_check() -> None:
    """The seeds cover every protocol, each with frames whose checksum (or tag) is valid."""
    assert set(SAMPLES) == set(PROTOCOLS)
    for target in TARGETS:
        valid = 0
        for sample in _checked(target):
            assert target.check(sample.raw, sample.key), sample.name
            try:
                frame = target.decode(sample.raw, sample.key)
            except SmartMeterError:
                continue  # a checked frame may still carry no data (M-Bus application errors)
            assert frame.integrity is Integrity.VALID, sample.name
            valid += 1
        assert valid >= 3, target.name


def test_independent_checks_are_the_standard_ones() -> None:
    """The oracle CRCs give the catalogued check values (reveng.sourceforge.io)."""
    assert crc_arc(b"123456789") == 0xBB3D
    assert crc_x25(b"123456789") == 0x906E
    assert crc_kermit(b"123456789") == 0x2189


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_every_truncation(target: Target) -> None:
    """Every prefix and every suffix of every seed frame (exhaustive)."""
    tally = Tally()
    for sample in _seeds(target):
        raw = sample.raw
        for cut in range(len(raw)):
            check_case(target, sample, Case("prefix", raw[:cut]), tally)
            check_case(target, sample, Case("suffix", raw[cut + 1 :]), tally)
    _assert_clean(tally)
    assert tally.counts["cases"] > 500


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_every_single_bit_flip_of_the_smallest_checked_frames(target: Target) -> None:
    """Exhaustive single flips over the checked span of the two smallest checked seeds: never VALID."""
    tally = Tally()
    flips = 0
    for sample in sorted(_checked(target), key=lambda s: len(s.raw))[:2]:
        assert sample.span is not None
        for bit in range(sample.span[0] * 8, sample.span[1] * 8):
            data = bytearray(sample.raw)
            data[bit >> 3] ^= 1 << (bit & 7)
            check_case(target, sample, flip_case(sample, bytes(data), bit), tally)
            flips += 1
    _assert_clean(tally)
    assert tally.counts["valid_unchanged"] + tally.counts["valid_mutated_check_agrees"] <= flips // 100


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@_fuzz(250)
@given(data=st.binary(max_size=1200), prefix=st.integers(0, 12), which=st.integers(0))
def test_random_bytes(target: Target, data: bytes, prefix: int, which: int) -> None:
    """Random bytes, alone and behind the first bytes of a seed (to get past the first checks)."""
    sample = _seeds(target)[which % len(_seeds(target))]
    _run(target, sample, Case("random", data))
    _run(target, sample, Case("random", sample.raw[:prefix] + data))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@_fuzz(600)
@given(which=st.integers(0), bit=st.integers(0))
def test_single_bit_flip(target: Target, which: int, bit: int) -> None:
    """One bit flipped anywhere in a seed: inside the checked span never VALID."""
    sample = _seeds(target)[which % len(_seeds(target))]
    bit %= len(sample.raw) * 8
    data = bytearray(sample.raw)
    data[bit >> 3] ^= 1 << (bit & 7)
    _run(target, sample, flip_case(sample, bytes(data), bit))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@_fuzz(250)
@given(which=st.integers(0), bits=st.lists(st.integers(0), min_size=2, max_size=12))
def test_multiple_bit_flips(target: Target, which: int, bits: list[int]) -> None:
    """Several bits flipped: VALID only when the independent check agrees (8-bit sums do collide)."""
    sample = _seeds(target)[which % len(_seeds(target))]
    data = bytearray(sample.raw)
    for number in bits:
        bit = number % (len(data) * 8)
        data[bit >> 3] ^= 1 << (bit & 7)
    _run(target, sample, Case("flipN", bytes(data)))


_EDIT = st.tuples(
    st.sampled_from(("insert", "delete", "replace")), st.integers(0), st.binary(min_size=1, max_size=4)
)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@_fuzz(250)
@given(which=st.integers(0), edits=st.lists(_EDIT, min_size=1, max_size=4))
def test_byte_inserts_and_deletes(target: Target, which: int, edits: list[tuple[str, int, bytes]]) -> None:
    """Bytes inserted, deleted or replaced (a frame that lost or gained bytes on the line)."""
    sample = _seeds(target)[which % len(_seeds(target))]
    data = bytearray(sample.raw)
    for op, offset, noise in edits:
        where = offset % (len(data) + 1)
        if op == "insert":
            data[where:where] = noise
        elif op == "delete":
            del data[where : where + len(noise)]
        else:
            data[where : where + len(noise)] = noise
    _run(target, sample, Case("edit", bytes(data), unchanged=bytes(data) == sample.raw))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@_fuzz(200)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_mutation_mix(target: Target, seed: int) -> None:
    """The benchmark's mutation mix (truncation, flips, edits, splices, overwrites), seeded by hypothesis."""
    rng = random.Random(seed)  # noqa: S311 - reproducible cases
    sample = rng.choice(_seeds(target))
    _run(target, sample, mutate(sample, _seeds(target), rng))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@_fuzz(120)
@given(
    which=st.lists(st.integers(0), min_size=1, max_size=4),
    garbage=st.lists(st.binary(max_size=30), min_size=5, max_size=5),
    flips=st.lists(st.integers(0), max_size=3),
    chunks=st.lists(st.integers(1, 300), min_size=1, max_size=20),
)
def test_framer_in_random_chunks(
    target: Target, which: list[int], garbage: list[bytes], flips: list[int], chunks: list[int]
) -> None:
    """Seeds between garbage, some bits flipped, fed in random chunks.

    The framer never raises and cuts frames from the stream; each meets the decoder contract.
    """
    seeds = _seeds(target)
    chosen = [seeds[index % len(seeds)] for index in which]
    parts = [garbage[0]]
    for index, sample in enumerate(chosen):
        parts += [sample.raw, garbage[index + 1]]
    data = bytearray(b"".join(parts))
    for number in flips:
        bit = number % (len(data) * 8)
        data[bit >> 3] ^= 1 << (bit & 7)
    stream = bytes(data)
    framer = PROTOCOLS[target.protocol].framer()
    frames: list[bytes] = []
    pos, index = 0, 0
    while pos < len(stream):
        size = chunks[index % len(chunks)]
        frames += guarded(lambda: framer.feed(stream[pos : pos + size]))  # noqa: B023 - called at once
        pos += size
        index += 1
    assert framer.discarded <= len(stream)
    assert sum(map(len, frames)) <= len(stream) - framer.discarded
    for raw in frames:
        assert raw in stream
        owner = next((s for s in chosen if s.raw == raw), chosen[0])
        _run(target, owner, Case("framed", raw, unchanged=raw == owner.raw))
    if not flips and not any(garbage) and all(s.span is not None for s in chosen):
        # Valid frames back to back come out whole (the last may wait for more bytes).
        cut = [raw for raw in frames if any(raw == s.raw for s in chosen)]
        assert len(cut) >= len(chosen) - 1


# ---------------------------------------------------------------- regressions


def test_sml_scaler_wider_than_integer8_is_a_decode_error() -> None:
    """A list entry whose scaler is a 64-bit integer (bit-flipped TL byte) made 10**scaler run forever."""
    for scaler in (2**40, -(2**40), 128, -129):
        entry = [bytes.fromhex("0100010800ff"), None, None, U(30, 1), I(scaler, 8), U(5, 4), None]
        body = message(
            b"\x00\x02", 0x0701, [None, SERVER, bytes.fromhex("0100620affff"), None, [entry], None, None]
        )
        raw = transport(body)
        with pytest.raises(DecodeError, match="scaler"):
            guarded(lambda: decode_sml(raw, accept_invalid=True))  # noqa: B023 - called at once
    ok = [bytes.fromhex("0100010800ff"), None, None, U(30, 1), I(-1, 1), U(5, 4), None]
    body = message(b"\x00\x02", 0x0701, [None, SERVER, bytes.fromhex("0100620affff"), None, [ok], None, None])
    frame = decode_sml(transport(body))
    assert frame.meters[0].registers[0].value == Decimal("0.0005")


@pytest.mark.parametrize("address", ["C2", "6F8", "20F", "1-0:C1.8.0", "P10"])
def test_iec_letter_groups_stand_alone(address: str) -> None:
    """An address "C2" or "6F8" (a flipped digit) is no OBIS group: kept under its own name, no ValueError."""
    data = f"{address}(1)\r\n1.8.0(00123.4*kWh)\r\n!\r\n\x03".encode()
    raw = b"/ABC5test\r\n\x02" + data + bytes([_xor(data)])
    frame = decode_iec(raw)
    assert frame.integrity is Integrity.VALID
    values = {reg.key: reg.value for reg in frame.meters[0].registers}
    assert values["energy_import_total"] == Decimal("123.4")
    assert len(frame.meters[0].registers) == 2


def test_iec_letter_groups_still_read() -> None:
    """The letters C, F, L, P alone are value groups 96..99, as before."""
    data = b"C.1(12345678)\r\nF.F(00)\r\n!\r\n\x03"
    frame = decode_iec(b"/ABC5test\r\n\x02" + data + bytes([_xor(data)]))
    assert {reg.obis for reg in frame.meters[0].registers} >= {"1-0:96.1.0", "1-0:97.97.0"}


def _xor(data: bytes) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check


def test_smarty_frame_that_lost_its_authentication_bit_is_refused() -> None:
    """Security byte 0x30 -> 0x20 (one bit) turned GCM into unchecked CTR: the frame decoded VALID."""
    plain = next(s for s in SAMPLES["dsmr"] if s.span is not None).raw
    key = bytes.fromhex("D491470F47126332B07D1923B3504188")
    frame = bytearray(encrypt_frame(plain, key))
    assert decode_telegram(bytes(frame), key=key).integrity is Integrity.VALID
    frame[13] ^= 0x10
    with pytest.raises(SmartMeterError):
        decode_telegram(bytes(frame), key=key)
