"""The fuzz benchmark runs, prints a row and target lines per decoder, and fails on a broken decoder.

Not the benchmark itself: a few hundred cases per decoder, without the
exhaustive single-flip pass, to check that it works and reports failures.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from benchmarks import bench_fuzz
from benchmarks.__main__ import available
from custom_components.smartmeter.core.models import Frame, Integrity
from custom_components.smartmeter.core.sml import decode_sml

ROW = re.compile(r"^(?P<name>[a-z0-9_]+) +(?P<secs>\d+\.\d)(?P<counts>(?: +\d+){9})$")
TARGET = re.compile(r"^target fuzz_(?P<what>escapes|false_valid)_(?P<name>[a-z0-9_]+) (?P<value>\d+) 0$")
NAMES = {target.name for target in bench_fuzz.TARGETS}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """No Home Assistant needed: override the suite-wide autouse fixture."""


def _run(capsys: pytest.CaptureFixture[str], cases: int = 300) -> tuple[int, list[str]]:
    status = bench_fuzz.run(cases=cases, exhaustive=False)
    return status, capsys.readouterr().out.splitlines()


def _rows(lines: list[str]) -> dict[str, dict[str, int]]:
    rows = {}
    for match in filter(None, map(ROW.match, lines)):
        counts = [int(value) for value in match["counts"].split()]
        rows[match["name"]] = dict(zip((name for name, _ in bench_fuzz.COLUMNS), counts, strict=True))
    return rows


def test_registered_as_scripts_bench_fuzz() -> None:
    assert "fuzz" in available()


def test_runs_clean_with_a_row_and_targets_per_decoder(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _run(capsys)
    assert status == 0, "\n".join(lines)
    rows = _rows(lines)
    assert set(rows) == NAMES == {"dsmr", "sml", "sml_accept_invalid", "dlms", "mbus", "iec62056_21"}
    for name, row in rows.items():
        assert row["cases"] >= 300, name
        outcomes = ("rejected", "invalid", "absent", "valid_unchanged", "valid_mutated_check_agrees")
        assert sum(row[what] for what in outcomes) == row["cases"], name
        assert row["rejected"] > 0, name
        assert row["escaped"] == row["valid_after_flip_in_check"] == row["valid_without_check"] == 0
    targets = {(m["what"], m["name"]): int(m["value"]) for m in map(TARGET.match, lines) if m}
    assert set(targets) == {(what, name) for what in ("escapes", "false_valid") for name in NAMES}
    assert not any(targets.values())
    assert not any(line.startswith("FAIL ") for line in lines)


def _replace(monkeypatch: pytest.MonkeyPatch, name: str, **changes: object) -> None:
    targets = tuple(
        dataclasses.replace(target, **changes) if target.name == name else target  # type: ignore[arg-type]
        for target in bench_fuzz.TARGETS
    )
    monkeypatch.setattr(bench_fuzz, "TARGETS", targets)


def test_an_escaping_exception_fails_the_benchmark(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = next(t for t in bench_fuzz.TARGETS if t.name == "mbus").decode

    def leaky(raw: bytes, key: bytes | None) -> Frame:
        if len(raw) % 7 == 3:
            raise IndexError("leaked")
        return decode(raw, key)

    _replace(monkeypatch, "mbus", decode=leaky)
    status, lines = _run(capsys, cases=200)
    assert status == 1
    assert _rows(lines)["mbus"]["escaped"] > 0
    assert "target fuzz_escapes_mbus 0 0" not in lines
    assert "target fuzz_escapes_sml 0 0" in lines
    failure = next(line for line in lines if line.startswith("FAIL mbus: escaped: "))
    assert re.search(r"input \(\d+ bytes\) [0-9a-f]*$", failure)
    assert "IndexError: leaked" in "\n".join(lines)


def test_a_decoder_that_ignores_its_checksum_fails_the_benchmark(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = next(t for t in bench_fuzz.TARGETS if t.name == "sml").decode

    def trusting(raw: bytes, key: bytes | None) -> Frame:
        frame = decode_sml(raw, tz=bench_fuzz.TZ, accept_invalid=True)
        return dataclasses.replace(frame, integrity=Integrity.VALID)

    assert decode is not trusting
    _replace(monkeypatch, "sml", decode=trusting)
    status, lines = _run(capsys, cases=300)
    assert status == 1
    row = _rows(lines)["sml"]
    assert row["valid_after_flip_in_check"] > 0
    assert row["valid_without_check"] > 0
    assert any(
        line.startswith("target fuzz_false_valid_sml ") and not line.endswith(" 0 0") for line in lines
    )


def test_a_hang_is_an_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_fuzz, "HANG", 0.05)
    target = bench_fuzz.TARGETS[0]
    sample = bench_fuzz.load_samples()[target.protocol][0]

    def forever(raw: bytes, key: bytes | None) -> Frame:
        while True:
            pass

    tally = bench_fuzz.Tally()
    bench_fuzz.check_case(
        dataclasses.replace(target, decode=forever), sample, bench_fuzz.Case("x", b"1"), tally
    )
    assert tally.counts["escaped"] == 1
    assert "Hang" in tally.failures[0]
