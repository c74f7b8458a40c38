"""What the cloud tests read back from the recorder: hourly statistics rows, checked exact."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance


def floor_hour(stamp: datetime) -> datetime:
    """The start of the hour ``stamp`` is in."""
    return stamp.replace(minute=0, second=0, microsecond=0)


async def hourly_rows(hass: HomeAssistant, stat_id: str) -> list[dict[str, Any]]:
    """Every hourly row of a statistic (state and sum), oldest first."""
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        datetime(2000, 1, 1, tzinfo=UTC),
        None,
        {stat_id},
        "hour",
        None,
        {"state", "sum"},
    )
    return [dict(row) for row in found.get(stat_id, [])]


def assert_hourly_exact(rows: list[dict[str, Any]], expected: dict[datetime, Decimal]) -> None:
    """One row per expected hour, each state equal to it, sums running from 0 without a gap."""
    starts = [datetime.fromtimestamp(row["start"], UTC) for row in rows]
    assert len(starts) == len(set(starts)), "duplicate hours"
    assert starts == sorted(expected), "missing or extra hours"
    total = Decimal(0)
    for row, start in zip(rows, starts, strict=True):
        total += expected[start]
        assert Decimal(repr(row["state"])) == expected[start]
        assert row["sum"] == pytest.approx(float(total), abs=1e-9)
