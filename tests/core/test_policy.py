"""Write policy: counters exact at every 5-minute boundary, measurements as means."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from custom_components.smartmeter.core.policy import CounterWriter, MeasurementWriter, WritePolicy


def _run_counter(
    times: list[float], step_wh: int, policy: WritePolicy
) -> tuple[int, dict[int, Decimal], dict[int, Decimal]]:
    writer = CounterWriter(policy)
    value = Decimal("1000.000")
    last_written: Decimal | None = None
    written_at_end: dict[int, Decimal] = {}
    true_at_end: dict[int, Decimal] = {}
    writes = 0
    for t in times:
        value += Decimal(step_wh) / 1000
        if writer.offer(value, t):
            writes += 1
            last_written = value
        period = math.floor(t / policy.boundary)
        true_at_end[period] = value
        assert last_written is not None
        written_at_end[period] = last_written
    return writes, written_at_end, true_at_end


def test_counter_written_at_every_boundary_at_1hz() -> None:
    policy = WritePolicy()
    times = [float(t) + 0.3 for t in range(3600)]
    writes, written, true = _run_counter(times, 1, policy)
    assert written == true  # every 5-minute period ends on the exact register value
    assert writes <= 3600 / 60 + 3600 / 300 + 2  # ~72 instead of 3600


@settings(max_examples=100, deadline=None)
@given(
    start=st.floats(0, 10_000),
    cadence=st.sampled_from([1.0, 10.0]),
    jitter=st.lists(st.floats(-0.1, 0.1), min_size=10, max_size=1500),
)
def test_counter_exact_at_boundaries_with_jitter(start: float, cadence: float, jitter: list[float]) -> None:
    """A meter with a steady cadence (DSMR 5: 1 s, DSMR 4: 10 s) and +-10 % jitter: exact."""
    times = []
    t = start
    for j in jitter:
        t += cadence * (1 + j)
        times.append(t)
    _writes, written, true = _run_counter(times, 2, WritePolicy())
    for period in list(true)[:-1]:  # every completed period ends on the exact value
        assert written[period] == true[period]


def test_lost_telegrams_before_boundary_are_flushed() -> None:
    """Telegrams lost just before a boundary: the flush timer writes the held-back reading."""
    writer = CounterWriter(WritePolicy())
    value = Decimal(1000)
    last_written = value
    for t in range(1, 298):  # 298..300 never arrive
        value += Decimal("0.001")
        if writer.offer(value, float(t)):
            last_written = value
    flushed = writer.flush(299.8)
    assert flushed == value != last_written
    assert writer.flush(299.9) is None  # nothing left to write
    assert not writer.offer(value, 301.0)  # already written


def test_live_mode_writes_every_change() -> None:
    writes, _, _ = _run_counter([float(t) for t in range(100)], 1, WritePolicy(live=True))
    assert writes == 100


def test_unchanged_counter_is_not_written() -> None:
    writer = CounterWriter(WritePolicy())
    assert writer.offer(Decimal(5), 0)
    assert not any(writer.offer(Decimal(5), t) for t in range(1, 1000))


def test_measurement_mean_and_deadband() -> None:
    writer = MeasurementWriter(WritePolicy(measurement_interval=60, deadband=0.1, deadband_floor=0.05))
    assert writer.offer(1.0, 0) == 1.0
    written = [w for t in range(1, 60) if (w := writer.offer(1.0 if t % 2 else 1.05, t)) is not None]
    assert written == []  # wobble inside the deadband
    mean = writer.offer(1.0, 60)
    assert mean is not None and 1.0 < mean < 1.05
    assert writer.offer(3.0, 61) == 3.0  # kettle on: written at once
