"""The planning benchmark runs on a small instance, checks its plan and prints its target line."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_plan
from benchmarks.__main__ import available

TARGET = re.compile(r"^target plan_(?P<slots>\d+)_slots_ms (?P<ms>\d+\.\d{2}) 50$", re.MULTILINE)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """No Home Assistant here: override the suite-wide fixture."""


def test_registered_as_scripts_bench_plan() -> None:
    assert "plan" in available()


def test_short_run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two days, three runs: a checked plan cheaper than the naive one and a well-formed target line."""
    monkeypatch.setenv("BENCH_PLAN_DAYS", "2")
    monkeypatch.setenv("BENCH_PLAN_RUNS", "3")
    status = bench_plan.run()
    out = capsys.readouterr().out
    assert status == 0, out
    assert "WRONG PLAN" not in out
    match = TARGET.search(out)
    assert match is not None, out
    assert match["slots"] == "192"
    assert float(match["ms"]) > 0


def test_a_wrong_plan_fails_the_check() -> None:
    """The benchmark's check catches a plan over the fuse or short of energy."""
    from dataclasses import replace
    from datetime import timedelta

    prices, loads = bench_plan.price_list(1), bench_plan.base_loads(1)
    request = bench_plan.ChargeRequest(
        bench_plan.Decimal(10), bench_plan.START, bench_plan.START + timedelta(days=1), bench_plan.CHARGER
    )
    plan = bench_plan.plan_charge(
        request,
        prices,
        bench_plan.LIMITS,
        base_load_kw=loads.__getitem__,
        month_peak_kw=bench_plan.MONTH_PEAK,
    )
    assert bench_plan.check_plan(plan, request, prices, loads) == []
    short = replace(plan, slots=plan.slots[1:])
    assert bench_plan.check_plan(short, request, prices, loads)
    over = replace(plan, slots=(replace(plan.slots[0], current=40), *plan.slots[1:]))
    assert any("outside the charger" in p for p in bench_plan.check_plan(over, request, prices, loads))
