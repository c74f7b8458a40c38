"""The cloud backfill benchmark: its correctness check, and a short end-to-end run with its target lines."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks import bench_cloud
from benchmarks.__main__ import available

TARGETS = re.compile(
    r"^target (?P<name>cloud_backfill_seconds|cloud_backfill_peak_mb) (?P<value>\d+\.\d+) (?P<goal>\d+)$",
    re.MULTILINE,
)
NOW = datetime(2025, 3, 30, 12, 17, tzinfo=UTC)  # a day with the spring-forward hour in London


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """No Home Assistant in this process (the workers have their own): override the suite-wide fixture."""


def test_registered_as_scripts_bench_cloud() -> None:
    assert "cloud" in available()


def test_dataset_expectations() -> None:
    """Two meters, 48 half-hours a day each, 4 series of 24 hours a day; costs priced per half-hour."""
    data = bench_cloud.build(3, NOW)
    assert data.half_hours == 144
    assert data.rows == 4 * 72
    assert set(data.expected) == {
        bench_cloud.ELEC_ID,
        f"{bench_cloud.ELEC_ID}_cost",
        bench_cloud.GAS_ID,
        f"{bench_cloud.GAS_ID}_cost",
    }
    usage = data.server.consumption(bench_cloud.MPAN, bench_cloud.SERIAL)
    assert sum(data.expected[bench_cloud.ELEC_ID].values()) == sum(value for _, value in usage)
    # Agile-like: some negative prices over two years, every half-hour priced.
    start = NOW.replace(minute=0)
    rates = bench_cloud.agile_rates(start, start.replace(year=2027))  # 730 days
    assert len(rates) == 730 * 48
    assert any(pence < 0 for _, _, pence in rates)


def _database(path: Path, data: bench_cloud.Dataset) -> None:
    """A statistics database as the recorder writes it, holding exactly the expected rows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE statistics_meta (id INTEGER PRIMARY KEY, statistic_id TEXT)")
        db.execute("CREATE TABLE statistics (metadata_id INTEGER, start_ts REAL, state REAL, sum REAL)")
        db.execute("INSERT INTO statistics_meta (id, statistic_id) VALUES (99, 'sensor.price')")
        db.execute("INSERT INTO statistics VALUES (99, 0, 1, 1)")  # not ours: ignored
        for index, (stat, hours) in enumerate(data.expected.items()):
            db.execute("INSERT INTO statistics_meta (id, statistic_id) VALUES (?, ?)", (index, stat))
            running = 0
            for start in sorted(hours):
                running += hours[start]
                db.execute(
                    "INSERT INTO statistics VALUES (?, ?, ?, ?)",
                    (index, start, float(hours[start]), float(running)),
                )
        db.commit()


def test_verify_accepts_the_exact_rows_and_catches_wrong_ones(tmp_path: Path) -> None:
    data = bench_cloud.build(2, NOW)
    path = tmp_path / "db.sqlite"
    _database(path, data)
    check = bench_cloud.verify(path, data)
    assert check.ok, check.notes
    assert check.rows == data.rows
    for stat, (got, want) in check.last_sums.items():
        assert got == pytest.approx(float(want), rel=1e-12), stat
    with contextlib.closing(sqlite3.connect(path)) as db:
        # A sum off by a thousandth of a kWh in one hour.
        db.execute(
            "UPDATE statistics SET sum = sum + 0.001 WHERE metadata_id = 0 AND start_ts ="
            " (SELECT MAX(start_ts) FROM statistics WHERE metadata_id = 0)"
        )
        db.commit()
    check = bench_cloud.verify(path, data)
    assert not check.ok
    assert any("differ" in note for note in check.notes)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE statistics SET sum = sum - 0.001 WHERE metadata_id = 0")
        db.execute(
            "DELETE FROM statistics WHERE metadata_id = 2 AND start_ts = (SELECT MIN(start_ts) FROM statistics)"
        )
        db.commit()
    check = bench_cloud.verify(path, data)
    assert not check.ok


def test_short_run(
    socket_enabled: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three days through the whole path (fake API, real Home Assistant and recorder): checked, two targets."""
    monkeypatch.setenv("BENCH_CLOUD_DAYS", "3")
    monkeypatch.setenv("BENCH_CLOUD_RUNS", "1")
    monkeypatch.setenv("BENCH_CLOUD_MEMORY_RUNS", "1")
    status = bench_cloud.run()
    out = capsys.readouterr().out
    assert status == 0, out
    targets = {match["name"]: match for match in TARGETS.finditer(out)}
    assert set(targets) == {"cloud_backfill_seconds", "cloud_backfill_peak_mb"}, out
    assert targets["cloud_backfill_seconds"]["goal"] == "10"
    assert targets["cloud_backfill_peak_mb"]["goal"] == "100"
    assert 0 < float(targets["cloud_backfill_seconds"]["value"]) < 60
    assert 0 <= float(targets["cloud_backfill_peak_mb"]["value"]) < 1000
    assert "correctness: every row of 2 import(s) checked" in out, out
    assert re.search(r"^time 1 .* 288 .* ok$", out, re.MULTILINE), out
    assert re.search(r"^memory 1 .* ok$", out, re.MULTILINE), out
