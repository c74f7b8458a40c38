"""The protocols benchmark runs, compares values before timing and prints one line per protocol.

Not a timed test: a single run with tiny timing loops, to check that the
benchmark works on the corpus and that its output is well formed.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from typing import Any

import pytest

from benchmarks import bench_protocols
from benchmarks.__main__ import available
from custom_components.smartmeter.core.models import Frame

SUMMARY = re.compile(
    r"^(?P<protocol>\S+) +(?P<library>\S+) +(?P<samples>\d+) +(?P<ours>\d+\.\d) +"
    r"(?P<theirs>\d+\.\d|-) +(?P<ratio>\d+\.\d{3}|-)(?P<note> +\(no reference library\))?$"
)
TARGET = re.compile(r"^target (?P<name>[a-z0-9_]+) (?P<value>\d+\.\d{4}) (?P<goal>\d+\.\d)$")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """No Home Assistant needed: override the suite-wide autouse fixture."""


def _run(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = bench_protocols.run(runs=1, seconds=0.0005)
    return status, capsys.readouterr().out.splitlines()


def test_registered_as_scripts_bench_protocols() -> None:
    assert "protocols" in available()


def test_runs_and_prints_a_line_per_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _run(capsys)
    assert status == 0, "\n".join(lines)
    rows = {m["protocol"]: m for m in map(SUMMARY.match, lines) if m}
    assert set(rows) == {protocol for protocol, _library in bench_protocols.PROTOCOLS}
    for protocol, library in bench_protocols.PROTOCOLS:
        row = rows[protocol]
        assert int(row["samples"]) >= 4, protocol
        assert float(row["ours"]) > 0
        if library is None:
            assert (row["library"], row["theirs"], row["ratio"]) == ("-", "-", "-")
            assert row["note"]
        else:
            assert row["library"] == library
            ratio = float(row["theirs"]) and float(row["ours"]) / float(row["theirs"])
            assert float(row["ratio"]) == pytest.approx(ratio, abs=0.002)
    targets = {m["name"]: m for m in map(TARGET.match, lines) if m}
    assert set(targets) == {
        "sml_decode_time_vs_smllib",
        "dlms_decode_time_vs_amshan",
        "mbus_decode_time_vs_pymeterbus",
    }
    for name, target in targets.items():
        protocol = name.split("_decode_time_vs_")[0]
        assert target["goal"] == "1.0"
        assert float(target["value"]) == pytest.approx(float(rows[protocol]["ratio"]), abs=0.001)
    # Every sample left out is named with its reason; the known reference errors among them.
    left_out = [line for line in lines if line.startswith("left out: ")]
    for protocol, names in bench_protocols.REFERENCE_WRONG.items():
        for name in names:
            assert any(
                line.startswith(f"left out: {protocol} {name}: reference wrong: ") for line in left_out
            )


def _altered(decode: Any) -> Any:
    """A decoder whose first Decimal register is off by one in its last stated digit."""

    def wrong(raw: bytes, **kwargs: Any) -> Frame:
        frame: Frame = decode(raw, **kwargs)
        meter = frame.meters[0]
        registers = list(meter.registers)
        index = next(i for i, reg in enumerate(registers) if isinstance(reg.value, Decimal))
        value = registers[index].value
        assert isinstance(value, Decimal)
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        registers[index] = dataclasses.replace(registers[index], value=value + Decimal(1).scaleb(exponent))
        changed = dataclasses.replace(meter, registers=tuple(registers))
        return dataclasses.replace(frame, meters=(changed, *frame.meters[1:]))

    return wrong


@pytest.mark.parametrize(
    ("protocol", "function"), [("sml", "decode_sml"), ("dlms", "decode_dlms"), ("mbus", "decode_mbus")]
)
def test_a_wrong_value_fails_the_benchmark(
    protocol: str, function: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_protocols, function, _altered(getattr(bench_protocols, function)))
    status, lines = _run(capsys)
    assert status == 1
    mismatch = [line for line in lines if line.startswith(f"MISMATCH: {protocol} ")]
    assert mismatch, lines
    assert "ours fails" not in mismatch[0]
    assert not any(line.startswith("target ") for line in lines)


def test_only_the_listed_reference_errors_leave_a_sample_out() -> None:
    name, (codes, reason) = next(iter(bench_protocols.REFERENCE_WRONG["mbus"].items()))
    assert bench_protocols._wrong("mbus", name, set(codes)) == reason
    assert bench_protocols._wrong("mbus", name, {*codes, "mbus:04/13"}) is None
    assert bench_protocols._wrong("mbus", name, set()) is None
    assert bench_protocols._wrong("sml", name, set(codes)) is None
