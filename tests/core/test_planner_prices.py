"""The planner's price inputs: attribute formats, units, DST, time-of-use schedules, the tariff register."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from custom_components.smartmeter.core.planner.models import PriceSlot
from custom_components.smartmeter.core.planner.prices import (
    PeakWindow,
    TouSchedule,
    detect_format,
    merge,
    next_peak_change,
    price_unit_factor,
    prices_from_attributes,
    tariff_peak,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "price_attributes"
BRUSSELS = ZoneInfo("Europe/Brussels")
LONDON = ZoneInfo("Europe/London")
OSLO = ZoneInfo("Europe/Oslo")
Q = timedelta(minutes=15)
H = timedelta(hours=1)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def d(value: float | str) -> Decimal:
    return Decimal(str(value))


def durations(slots: list[PriceSlot]) -> set[timedelta]:
    return {s.end - s.start for s in slots}


def assert_contiguous(slots: list[PriceSlot]) -> None:
    for a, b in itertools.pairwise(slots):
        assert a.end == b.start, (a, b)
    for slot in slots:
        assert slot.start.tzinfo is UTC and slot.end.tzinfo is UTC
        assert not slot.peak


# ----------------------------------------------------------------------------- formats from fixtures


def test_fixture_readme_names_every_fixture() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.glob("*.json"):
        assert path.name in readme, path.name


@pytest.mark.parametrize(
    ("name", "fmt", "count", "step", "first", "last_end"),
    [
        (
            "nordpool_no1_2025-10-26_15min_today.json",
            "nordpool",
            100,
            Q,
            "2025-10-25T22:00Z",
            "2025-10-26T23:00Z",
        ),
        (
            "nordpool_no1_2025-10-26_15min_tomorrow.json",
            "nordpool",
            196,
            Q,
            "2025-10-25T22:00Z",
            "2025-10-27T23:00Z",
        ),
        (
            "nordpool_se3_2025-03-30_60min_cents.json",
            "nordpool",
            47,
            H,
            "2025-03-29T23:00Z",
            "2025-03-31T22:00Z",
        ),
        ("entsoe_be_2025-03-30_60min.json", "entsoe", 47, H, "2025-03-29T23:00Z", "2025-03-31T22:00Z"),
        ("entsoe_be_2025-10-26_15min_mwh.json", "entsoe", 100, Q, "2025-10-25T22:00Z", "2025-10-26T23:00Z"),
        (
            "octopus_current_day_rates_2025-03-30.json",
            "octopus",
            46,
            H / 2,
            "2025-03-30T00:00Z",
            "2025-03-30T23:00Z",
        ),
        (
            "octopus_next_day_rates_2025-03-31.json",
            "octopus",
            48,
            H / 2,
            "2025-03-30T23:00Z",
            "2025-03-31T23:00Z",
        ),
        (
            "octopus_legacy_current_rate_2023-10-29.json",
            "octopus",
            50,
            H / 2,
            "2023-10-28T23:00Z",
            "2023-10-30T00:00Z",
        ),
        (
            "smartmeter_current_price_2025-10-26.json",
            "smartmeter",
            50,
            H / 2,
            "2025-10-25T23:00Z",
            "2025-10-27T00:00Z",
        ),
        ("tibber_get_prices_2025-10-26.json", "tibber", 25, H, "2025-10-25T22:00Z", "2025-10-26T23:00Z"),
        (
            "tibber_prices_chart_data_export_2025-10-26.json",
            "tibber_prices",
            100,
            Q,
            "2025-10-25T22:00Z",
            "2025-10-26T23:00Z",
        ),
        (
            "energyzero_get_energy_prices_2025-03-30.json",
            "energyzero",
            23,
            H,
            "2025-03-29T23:00Z",
            "2025-03-30T22:00Z",
        ),
        (
            "easyenergy_get_energy_usage_prices_2025-10-26.json",
            "energyzero",
            25,
            H,
            "2025-10-25T22:00Z",
            "2025-10-26T23:00Z",
        ),
        (
            "nordpool_core_get_prices_for_date_2025-10-26.json",
            "nordpool_service",
            100,
            Q,
            "2025-10-25T22:00Z",
            "2025-10-26T23:00Z",
        ),
    ],
)
def test_fixture_shapes(name: str, fmt: str, count: int, step: timedelta, first: str, last_end: str) -> None:
    attributes = load(name)
    assert detect_format(attributes) == fmt
    slots = prices_from_attributes(attributes, unit=attributes.get("unit_of_measurement"))
    assert len(slots) == count
    assert durations(slots) == {step}
    assert slots[0].start == utc(first.replace("Z", "+00:00"))
    assert slots[-1].end == utc(last_end.replace("Z", "+00:00"))
    assert_contiguous(slots)


@pytest.mark.parametrize("name", ["tibber_core_price_sensor.json", "nordpool_core_current_price_sensor.json"])
def test_core_sensors_without_a_list(name: str) -> None:
    attributes = load(name)
    assert detect_format(attributes) is None
    assert prices_from_attributes(attributes, unit=attributes["unit_of_measurement"]) == []


def test_nordpool_values_exact_over_the_oslo_fall_back() -> None:
    attributes = load("nordpool_no1_2025-10-26_15min_today.json")
    slots = prices_from_attributes(attributes, unit="NOK/kWh", tz=OSLO)
    raw = attributes["raw_today"]
    assert [s.price for s in slots] == [d(r["value"]) for r in raw]
    # 02:45 CEST then 02:00 CET: the repeated hour is two distinct UTC hours.
    assert slots[11].start == utc("2025-10-26T00:45:00+00:00")
    assert slots[12].start == utc("2025-10-26T01:00:00+00:00")
    assert raw[12]["start"] == "2025-10-26T02:00:00+01:00"
    # The unit in the attributes alone gives the same (NOK, kWh, not in cents).
    assert prices_from_attributes(attributes) == slots


def test_nordpool_tomorrow_missing_then_arriving() -> None:
    before = load("nordpool_no1_2025-10-26_15min_today.json")
    after = load("nordpool_no1_2025-10-26_15min_tomorrow.json")
    assert before["raw_tomorrow"] == [] and before["tomorrow_valid"] is False
    first = prices_from_attributes(before, unit="NOK/kWh")
    second = prices_from_attributes(after, unit="NOK/kWh")
    assert second[: len(first)] == first
    assert len(second) - len(first) == 96  # 27 October: a 24-hour day
    assert second[100].start == utc("2025-10-26T23:00:00+00:00")
    assert second[-1].price == d(after["raw_tomorrow"][-1]["value"])


def test_nordpool_in_ore_and_the_stockholm_spring_forward() -> None:
    attributes = load("nordpool_se3_2025-03-30_60min_cents.json")
    assert attributes["unit_of_measurement"] == "Öre/kWh" and attributes["price_in_cents"] is True
    slots = prices_from_attributes(attributes, unit=attributes["unit_of_measurement"])
    assert slots == prices_from_attributes(attributes)  # price_in_cents understood without a unit
    today = slots[:23]
    assert [s.price for s in today] == [d(r["value"]) / 100 for r in attributes["raw_today"]]
    assert today[2].start == utc("2025-03-30T01:00:00+00:00")  # 03:00 CEST follows 01:00 CET
    assert slots[23].start == utc("2025-03-30T22:00:00+00:00")  # tomorrow's local midnight


def test_nordpool_plain_lists_when_raw_lists_are_missing() -> None:
    attributes = load("nordpool_no1_2025-10-26_15min_tomorrow.json")
    expected = prices_from_attributes(attributes, unit="NOK/kWh", tz=OSLO)
    plain = {k: v for k, v in attributes.items() if k not in ("raw_today", "raw_tomorrow")}
    assert detect_format(plain) == "nordpool"
    now = datetime(2025, 10, 26, 14, 3, tzinfo=OSLO)
    assert prices_from_attributes(plain, unit="NOK/kWh", tz=OSLO, now=now) == expected
    # The hourly lists of a 23-hour day.
    spring = load("nordpool_se3_2025-03-30_60min_cents.json")
    plain = {k: v for k, v in spring.items() if k not in ("raw_today", "raw_tomorrow")}
    slots = prices_from_attributes(
        plain, tz=ZoneInfo("Europe/Stockholm"), now=datetime(2025, 3, 30, 9, tzinfo=UTC)
    )
    assert slots == prices_from_attributes(spring)
    # A count that does not divide the day is refused, not guessed.
    plain["today"] = plain["today"][:-1]
    assert len(prices_from_attributes(plain, tz=ZoneInfo("Europe/Stockholm"), now=now)) == 24


def test_entsoe_fixed_offset_labels_across_dst() -> None:
    attributes = load("entsoe_be_2025-10-26_15min_mwh.json")
    # The integration labels the whole period with its first offset (+02:00), so the fall-back
    # day's last hour is labelled 27 October and shows up in prices_tomorrow.
    assert len(attributes["prices_today"]) == 96 and len(attributes["prices_tomorrow"]) == 4
    slots = prices_from_attributes(attributes, unit="€/MWh", tz=BRUSSELS)
    assert len(slots) == 100
    assert [s.price for s in slots] == [d(r["price"]) / 1000 for r in attributes["prices"]]
    assert slots[-1].start == utc("2025-10-26T22:45:00+00:00")  # "2025-10-27 00:45:00+02:00"
    local = [s.start.astimezone(BRUSSELS) for s in slots]
    assert {t.date() for t in local} == {date(2025, 10, 26)}


def test_entsoe_hourly_spring_forward() -> None:
    attributes = load("entsoe_be_2025-03-30_60min.json")
    slots = prices_from_attributes(attributes, unit="€/kWh")
    today = [s for s in slots if s.start.astimezone(BRUSSELS).date() == date(2025, 3, 30)]
    assert len(today) == 23
    assert [s.price for s in today] == [d(r["price"]) for r in attributes["prices_today"]]
    # The same prices read from prices_today + prices_tomorrow alone.
    assert prices_from_attributes({**attributes, "prices": []}, unit="€/kWh") == slots


def test_octopus_event_rates_in_gbp() -> None:
    today = load("octopus_current_day_rates_2025-03-30.json")
    tomorrow = load("octopus_next_day_rates_2025-03-31.json")
    slots = prices_from_attributes(today, tz=LONDON)
    assert [s.price for s in slots] == [d(r["value_inc_vat"]) for r in today["rates"]]
    assert slots[2].start == utc("2025-03-30T01:00:00+00:00")  # 02:00 BST after 00:30 GMT
    both = merge(slots, prices_from_attributes(tomorrow))
    assert len(both) == 94
    assert_contiguous(both)


def test_octopus_legacy_attributes() -> None:
    attributes = load("octopus_legacy_current_rate_2023-10-29.json")
    slots = prices_from_attributes(attributes, unit=attributes["unit_of_measurement"])
    assert [s.price for s in slots] == [d(r["value_inc_vat"]) for r in attributes["all_rates"]]
    # 01:00 BST, 01:30 BST, then 01:00 GMT: 50 half hours.
    rates = attributes["all_rates"]
    assert (rates[2]["valid_from"], rates[4]["valid_from"]) == (
        "2023-10-29T01:00:00+01:00",
        "2023-10-29T01:00:00+00:00",
    )
    assert slots[2].start == utc("2023-10-29T00:00:00+00:00")
    assert slots[4].start == utc("2023-10-29T01:00:00+00:00")


def test_smartmeter_own_sensor() -> None:
    attributes = load("smartmeter_current_price_2025-10-26.json")
    slots = prices_from_attributes(attributes, unit="GBP/kWh")
    assert [(s.start.isoformat(), s.end.isoformat(), s.price) for s in slots] == [
        (r["start"], r["end"], d(r["price"])) for r in attributes["prices"]
    ]


def test_tibber_service_and_tibber_prices_chart_data() -> None:
    attributes = load("tibber_get_prices_2025-10-26.json")
    home = attributes["prices"]["Hjemme"]
    slots = prices_from_attributes(attributes, unit="NOK/kWh")
    assert [s.price for s in slots] == [d(r["price"]) for r in home]
    assert slots[2].start == utc("2025-10-26T00:00:00+00:00") and slots[3].start == utc(
        "2025-10-26T01:00:00+00:00"
    )
    chart = load("tibber_prices_chart_data_export_2025-10-26.json")
    points = chart["data"]["data"]
    slots = prices_from_attributes(chart)  # ct/kWh from the metadata
    assert [s.price for s in slots] == [d(p["price_per_kwh"]) / 100 for p in points]
    assert prices_from_attributes(chart, unit="EUR/kWh")[0].price == d(points[0]["price_per_kwh"])


def test_energyzero_easyenergy_and_core_nordpool_services() -> None:
    ez = load("energyzero_get_energy_prices_2025-03-30.json")
    slots = prices_from_attributes(ez)
    assert slots[0].start == utc("2025-03-29T23:00:00+00:00")
    assert [s.price for s in slots] == [d(r["price"]) for r in ez["prices"]]
    nordpool = load("nordpool_core_get_prices_for_date_2025-10-26.json")
    slots = prices_from_attributes(nordpool)  # currency/MWh by default
    assert [s.price for s in slots] == [d(r["price"]) / 1000 for r in nordpool["SE3"]]
    assert prices_from_attributes(nordpool, unit="SEK/MWh") == slots


# ----------------------------------------------------------------------------- robustness


def test_malformed_entries_are_skipped() -> None:
    attributes = {
        "prices": [
            {"start": "2026-01-05T10:00:00+01:00", "end": "2026-01-05T10:15:00+01:00", "price": 0.25},
            {"start": "not a time", "end": "2026-01-05T10:30:00+01:00", "price": 0.26},
            {"start": "2026-01-05T10:30:00+01:00", "end": "2026-01-05T10:45:00+01:00", "price": "abc"},
            {"start": "2026-01-05T10:45:00+01:00", "end": "2026-01-05T11:00:00+01:00", "price": None},
            {"start": "2026-01-05T11:00:00+01:00", "end": "2026-01-05T11:15:00+01:00", "price": float("nan")},
            {"start": "2026-01-05T11:15:00+01:00", "end": "2026-01-05T11:30:00+01:00", "price": True},
            "garbage",
            None,
            {"start": "2026-01-05", "price": 0.3},
            {"start": "2026-01-05T11:30:00+01:00", "end": "2026-01-05T11:00:00+01:00", "price": "0.27"},
            {"start": 1767607200, "price": 0.31},
        ]
    }
    slots = prices_from_attributes(attributes)
    assert [(s.start, s.end, s.price) for s in slots] == [
        (utc("2026-01-05T09:00:00+00:00"), utc("2026-01-05T09:15:00+00:00"), Decimal("0.25")),
        # end before start: the end is inferred (the granularity of its neighbours, capped at 1 h).
        (utc("2026-01-05T10:30:00+00:00"), utc("2026-01-05T11:30:00+00:00"), Decimal("0.27")),
    ]


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"raw_today": None, "raw_tomorrow": "x"},
        {"prices_today": [], "prices_tomorrow": []},
        {"rates": [{"value_inc_vat": 1}]},
        {"prices": {"home": "nope"}},
        {"prices": [1, 2, 3]},
        {"friendly_name": "x", "today": [1, 2]},
    ],
)
def test_nothing_usable_gives_an_empty_list(attributes: dict[str, Any]) -> None:
    assert prices_from_attributes(attributes) == []


def test_not_a_mapping_or_a_hostile_mapping() -> None:
    class Hostile(dict[str, Any]):
        def __contains__(self, key: object) -> bool:
            raise RuntimeError("boom")

    assert prices_from_attributes(Hostile(a=1)) == []
    assert detect_format([]) is None  # type: ignore[arg-type]


def test_naive_times_in_tz_and_the_repeated_hour() -> None:
    # Naive local times in list order: the second 02:00 of the Brussels fall-back is the CET one.
    day = [f"2025-10-26T{h:02d}:00:00" for h in (0, 1, 2, 2, 3)]
    attributes = {"prices": [{"start": t, "price": i} for i, t in enumerate(day)]}
    slots = prices_from_attributes(attributes, tz=BRUSSELS)
    assert [s.start for s in slots] == [
        utc(f"2025-10-2{x}+00:00") for x in ("5T22:00", "5T23:00", "6T00:00", "6T01:00", "6T02:00")
    ]
    assert durations(slots) == {H}


def test_mixed_granularity() -> None:
    # Hourly prices, then quarter-hours (the day the market moved to 15 minutes), and a gap.
    start = datetime(2025, 9, 30, 22, tzinfo=UTC)
    hourly = [{"time": str((start + H * i).astimezone(BRUSSELS)), "price": 0.1 + i / 100} for i in range(3)]
    quarters = [
        {"time": str((start + 3 * H + Q * i).astimezone(BRUSSELS)), "price": 0.2 + i / 1000} for i in range(8)
    ]
    later = [{"time": str((start + 8 * H).astimezone(BRUSSELS)), "price": 0.5}]
    slots = prices_from_attributes({"prices": hourly + quarters + later}, unit="EUR/kWh")
    assert [s.end - s.start for s in slots] == [H] * 3 + [Q] * 8 + [H]
    assert slots[2].end == slots[3].start and slots[10].end == start + 5 * H
    assert slots[-1].start == start + 8 * H


def test_overlapping_granularities_keep_the_finer_prices() -> None:
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)
    hourly = [
        {"start": (start + H * i).isoformat(), "end": (start + H * (i + 1)).isoformat(), "price": 1}
        for i in range(3)
    ]
    quarters = [{"start": (start + H + Q * i).isoformat(), "price": 2} for i in range(4)]
    slots = prices_from_attributes({"prices": hourly + quarters})
    assert [(s.start - start, s.end - start, s.price) for s in slots] == [
        (timedelta(0), H, 1),
        (H, H + Q, 2),
        (H + Q, H + 2 * Q, 2),
        (H + 2 * Q, H + 3 * Q, 2),
        (H + 3 * Q, 2 * H, 2),
        (2 * H, 3 * H, 1),
    ]


@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        (None, "1"),
        ("EUR/kWh", "1"),
        ("€/kWh", "1"),
        ("EUR", "1"),
        ("c/kWh", "0.01"),
        ("ct/kWh", "0.01"),
        ("öre/kWh", "0.01"),
        ("Öre/kWh", "0.01"),
        ("Øre/kWh", "0.01"),
        ("p/kWh", "0.01"),
        ("EUR cent/kWh", "0.01"),
        ("EUR/MWh", "0.001"),
        ("SEK/MWh", "0.001"),
        ("c/MWh", "0.00001"),
        ("NOK/Wh", "1000"),
    ],
)
def test_unit_factors(unit: str | None, factor: str) -> None:
    assert price_unit_factor(unit) == Decimal(factor)


def test_units_convert_exactly_and_refuse_non_energy_units() -> None:
    attributes = {"prices": [{"start": "2026-01-05T10:00:00+00:00", "price": 0.1}]}
    assert prices_from_attributes(attributes, unit="EUR/MWh")[0].price == Decimal("0.0001")
    assert prices_from_attributes(attributes, unit="c/kWh")[0].price == Decimal("0.001")
    assert prices_from_attributes(attributes, unit="p/kWh")[0].price == Decimal("0.001")
    assert price_unit_factor("EUR/m³") is None and price_unit_factor("%") is None
    assert prices_from_attributes(attributes, unit="EUR/m³") == []


def test_frank_energie_style_generic_list() -> None:
    attributes = {
        "prices": [
            {"from": "2026-01-05T10:00:00+01:00", "till": "2026-01-05T11:00:00+01:00", "price": 0.31},
            {"from": "2026-01-05T11:00:00+01:00", "till": "2026-01-05T12:00:00+01:00", "price": 0.29},
        ]
    }
    assert detect_format(attributes) == "generic"
    assert [s.price for s in prices_from_attributes(attributes)] == [Decimal("0.31"), Decimal("0.29")]


# ----------------------------------------------------------------------------- merge and peaks in slots


def slot(start: datetime, minutes: int, price: str, peak: bool = False) -> PriceSlot:
    return PriceSlot(start, start + timedelta(minutes=minutes), Decimal(price), peak)


def test_merge_later_sources_fill_gaps_only() -> None:
    t = datetime(2026, 1, 5, 10, tzinfo=UTC)
    dynamic = [slot(t, 15, "0.2"), slot(t + Q, 15, "0.3"), slot(t + 3 * Q, 15, "0.4")]
    fallback = [slot(t - H, 180, "0.25", peak=True)]
    merged = merge(dynamic, fallback)
    assert [(s.start - t, s.end - t, s.price, s.peak) for s in merged] == [
        (-H, timedelta(0), Decimal("0.25"), True),
        (timedelta(0), Q, Decimal("0.2"), False),
        (Q, 2 * Q, Decimal("0.3"), False),
        (2 * Q, 3 * Q, Decimal("0.25"), True),
        (3 * Q, 4 * Q, Decimal("0.4"), False),
        (4 * Q, 2 * H, Decimal("0.25"), True),
    ]
    assert merge() == [] and merge([], dynamic) == dynamic


def test_next_peak_change_in_slots() -> None:
    t = datetime(2026, 1, 5, 6, tzinfo=UTC)
    slots = [slot(t + H * i, 60, "0.2", peak=6 <= i < 10 or i >= 14) for i in range(12)]
    slots += [slot(t + H * i, 60, "0.3", peak=True) for i in range(14, 16)]  # after a gap
    assert next_peak_change(slots, t, peak=True) == t + 6 * H
    assert next_peak_change(slots, t, peak=False) == t + 10 * H  # the run at t began at t, not after
    assert next_peak_change(slots, t + 7 * H, peak=False) == t + 10 * H
    assert next_peak_change(slots, t + 7 * H, peak=True) == t + 14 * H
    assert next_peak_change(slots, t + 14 * H, peak=True) is None
    assert next_peak_change([], t, peak=True) is None


# ----------------------------------------------------------------------------- time-of-use schedule


def test_parse_and_round_trip() -> None:
    text = (
        "mon-fri 07:00-22:00 0.35; sat 09:00-13:00; peak 0.30; offpeak 0.22; holidays 2026-12-25,2026-12-26"
    )
    schedule = TouSchedule.parse(text, "Europe/Brussels")
    assert schedule.windows == (
        PeakWindow(frozenset(range(5)), time(7), time(22), Decimal("0.35")),
        PeakWindow(frozenset({5}), time(9), time(13), None),
    )
    assert schedule.offpeak_price == Decimal("0.22") and schedule.peak_price == Decimal("0.30")
    assert schedule.holidays == frozenset({date(2026, 12, 25), date(2026, 12, 26)})
    assert TouSchedule.parse(schedule.to_text(), "Europe/Brussels") == schedule
    other = TouSchedule.parse("Weekend 10:00-24:00\nfri-mon 22:00-06:00 0.1\n07:00-08:00", "UTC")
    assert other.windows[0] == PeakWindow(frozenset({5, 6}), time(10), time(0))
    assert other.windows[1].weekdays == frozenset({4, 5, 6, 0})
    assert other.windows[2].weekdays == frozenset(range(7))
    assert TouSchedule.parse(other.to_text(), "UTC") == other


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" ; ;", "empty"),
        ("mon-fri 25:00-22:00", "bad time '25:00'"),
        ("mon-fri 07:00-22:60", "bad time '22:60'"),
        ("mon-fri 24:00-06:00", "bad time '24:00'"),
        ("mon-fri 0700-2200", "bad time '0700'"),
        ("mon-fri 07:00", "bad period '07:00'"),
        ("mon-fri,xyz 07:00-08:00", "bad day 'xyz'"),
        ("mon-fro 07:00-22:00", "bad day 'fro'"),
        ("mon-fri 07:00-22:00 0,35", "bad price '0,35'"),
        ("mon-fri 07:00-22:00 0.35 extra", "expected '<days> HH:MM-HH:MM [price]'"),
        ("offpeak", "expected 'offpeak <price>'"),
        ("offpeak 0.2; offpeak 0.3", "off-peak price is given twice"),
        ("peak 0.2; peak 0.3", "peak price is given twice"),
        ("holidays 2026-13-01", "bad date '2026-13-01'"),
        ("holidays", "expected 'holidays"),
    ],
)
def test_parse_errors_name_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        TouSchedule.parse(text, "Europe/Brussels")


def test_parse_rejects_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        TouSchedule.parse("offpeak 0.2", "Mars/Olympus")
    with pytest.raises(ValueError, match="weekdays"):
        PeakWindow(frozenset({7}), time(7), time(8))


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[misc]


def test_slots_cut_at_window_edges() -> None:
    schedule = TouSchedule.parse(
        "mon-fri 07:00-22:00 0.35; sat 09:00-13:00; peak 0.30; offpeak 0.22", "Europe/Brussels"
    )
    # Friday 2026-01-09 12:00 to Sunday 12:00.
    slots = schedule.slots(local(BRUSSELS, 2026, 1, 9, 12), local(BRUSSELS, 2026, 1, 11, 12))
    assert [
        (s.start.astimezone(BRUSSELS).strftime("%a %H:%M"), s.end - s.start, s.price, s.peak) for s in slots
    ] == [
        ("Fri 12:00", 10 * H, Decimal("0.35"), True),
        ("Fri 22:00", 11 * H, Decimal("0.22"), False),
        ("Sat 09:00", 4 * H, Decimal("0.30"), True),
        ("Sat 13:00", 23 * H, Decimal("0.22"), False),
    ]
    assert schedule.is_peak(local(BRUSSELS, 2026, 1, 9, 21, 59))
    assert not schedule.is_peak(local(BRUSSELS, 2026, 1, 9, 22))
    assert schedule.next_change(local(BRUSSELS, 2026, 1, 9, 12), peak=False) == local(
        BRUSSELS, 2026, 1, 9, 22
    )
    assert schedule.next_change(local(BRUSSELS, 2026, 1, 9, 12), peak=True) == local(BRUSSELS, 2026, 1, 10, 9)
    assert schedule.slots(local(BRUSSELS, 2026, 1, 9, 12), local(BRUSSELS, 2026, 1, 9, 12)) == []
    with pytest.raises(ValueError, match="aware"):
        schedule.slots(datetime(2026, 1, 9), datetime(2026, 1, 10))


def test_window_across_midnight() -> None:
    schedule = TouSchedule.parse("fri 22:00-06:00 0.5; offpeak 0.2", "Europe/Brussels")
    slots = schedule.slots(local(BRUSSELS, 2026, 1, 9, 20), local(BRUSSELS, 2026, 1, 10, 8))
    assert [(s.start.astimezone(BRUSSELS).strftime("%a %H:%M"), s.end - s.start, s.peak) for s in slots] == [
        ("Fri 20:00", 2 * H, False),
        ("Fri 22:00", 8 * H, True),  # one slot through midnight
        ("Sat 06:00", 2 * H, False),
    ]
    assert schedule.is_peak(local(BRUSSELS, 2026, 1, 10, 5, 59))
    assert not schedule.is_peak(local(BRUSSELS, 2026, 1, 9, 5, 59))  # Friday morning: Thursday has no window
    full = TouSchedule.parse("tue 12:00-12:00", "UTC")
    assert full.is_peak(datetime(2026, 1, 7, 11, 59, tzinfo=UTC))
    assert not full.is_peak(datetime(2026, 1, 7, 12, tzinfo=UTC))


def test_holidays_are_off_peak_all_day() -> None:
    schedule = TouSchedule.parse(
        "daily 20:00-08:00; mon-fri 07:00-22:00; offpeak 0.2; peak 0.4; holidays 2026-12-25",
        "Europe/Brussels",
    )
    # Thursday 24 December 20:00 until Christmas midnight is peak; Christmas (Friday) is off-peak all day.
    assert schedule.is_peak(local(BRUSSELS, 2026, 12, 24, 23, 59))
    assert not schedule.is_peak(local(BRUSSELS, 2026, 12, 25, 0, 0))
    assert not schedule.is_peak(local(BRUSSELS, 2026, 12, 25, 12))
    assert schedule.is_peak(
        local(BRUSSELS, 2026, 12, 26, 0, 0)
    )  # Christmas' evening window runs into the 26th
    assert schedule.next_change(local(BRUSSELS, 2026, 12, 24, 12), peak=False) == local(
        BRUSSELS, 2026, 12, 25
    )
    assert schedule.next_change(local(BRUSSELS, 2026, 12, 25, 1), peak=True) == local(BRUSSELS, 2026, 12, 26)
    slots = schedule.slots(local(BRUSSELS, 2026, 12, 25), local(BRUSSELS, 2026, 12, 26))
    assert slots == [PriceSlot(local(BRUSSELS, 2026, 12, 25), local(BRUSSELS, 2026, 12, 26), Decimal("0.2"))]


def test_schedule_over_dst_changes() -> None:
    schedule = TouSchedule.parse("daily 07:00-22:00 0.3; offpeak 0.2", "Europe/Brussels")
    # Sunday 29 March 2026 (spring forward): the night before is 22:00 CET to 07:00 CEST = 8 hours.
    slots = schedule.slots(local(BRUSSELS, 2026, 3, 28, 22), local(BRUSSELS, 2026, 3, 29, 22))
    assert [(s.end - s.start, s.peak) for s in slots] == [(8 * H, False), (15 * H, True)]
    assert slots[1].start == datetime(2026, 3, 29, 5, tzinfo=UTC)
    # Sunday 25 October 2026 (fall back): 10 hours of night.
    slots = schedule.slots(local(BRUSSELS, 2026, 10, 24, 22), local(BRUSSELS, 2026, 10, 25, 22))
    assert [(s.end - s.start, s.peak) for s in slots] == [(10 * H, False), (15 * H, True)]
    # A window starting in the skipped hour starts when the clock jumps (03:00 CEST).
    odd = TouSchedule.parse("sun 02:30-04:00", "Europe/Brussels")
    assert odd.next_change(datetime(2026, 3, 28, tzinfo=UTC), peak=True) == datetime(
        2026, 3, 29, 1, tzinfo=UTC
    )
    assert odd.is_peak(datetime(2026, 3, 29, 1, tzinfo=UTC))
    assert not odd.is_peak(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC))
    # London and Oslo windows follow their own clocks.
    london = TouSchedule.parse("daily 16:00-19:00", "Europe/London")
    assert london.next_change(datetime(2026, 3, 29, 12, tzinfo=UTC), peak=True) == datetime(
        2026, 3, 29, 15, tzinfo=UTC
    )
    oslo = TouSchedule.parse("daily 06:00-21:00 1.2; offpeak 0.8", "Europe/Oslo")
    day = oslo.slots(local(OSLO, 2026, 10, 25), local(OSLO, 2026, 10, 26))
    assert sum((s.end - s.start for s in day), timedelta()) == 25 * H


def test_schedule_without_prices_still_gives_peaks() -> None:
    schedule = TouSchedule.parse("mon-fri 07:00-22:00", "UTC")
    t = datetime(2026, 1, 5, 6, tzinfo=UTC)
    assert schedule.slots(t, t + 2 * H) == []
    assert schedule.is_peak(t + H) and not schedule.is_peak(t)
    assert schedule.next_change(t, peak=True) == t + H
    assert TouSchedule(tz="UTC").next_change(t, peak=True) is None
    all_holidays = TouSchedule(
        (PeakWindow(frozenset(range(7)), time(7), time(8)),),
        holidays=frozenset(date(2026, 1, 1) + timedelta(days=i) for i in range(400)),
        tz="UTC",
    )
    assert all_holidays.next_change(t, peak=True) is None


def test_schedule_slots_merge_with_dynamic_prices() -> None:
    t = datetime(2026, 1, 5, 6, tzinfo=UTC)
    schedule = TouSchedule.parse("mon-fri 07:00-22:00 0.35; offpeak 0.22", "UTC")
    dynamic = [slot(t + Q * i, 15, "0.1") for i in range(8)]
    merged = merge(dynamic, schedule.slots(t, t + 4 * H))
    assert merged[:8] == dynamic
    assert [(s.start - t, s.peak) for s in merged[8:]] == [(2 * H, True)]
    assert next_peak_change(merged, t, peak=True) == t + 2 * H


# ----------------------------------------------------------------------------- tariff register


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("0002", None, True),
        ("0001", None, False),
        (2, "NL", True),
        (1, "nl", False),
        (Decimal(1), "BE", True),
        ("0002", "BE", False),
        ("0001", "HU", True),
        (None, None, None),
        ("", None, None),
        ("abc", None, None),
        ("1.5", None, None),
        (0, None, None),
        (True, None, None),
        ("0003", None, False),
    ],
)
def test_tariff_register(value: Any, country: str | None, expected: bool | None) -> None:
    assert tariff_peak(value, country=country) is expected


def test_tariff_register_codes_and_unknown_country() -> None:
    assert tariff_peak("0003", peak_codes=frozenset({3})) is True
    assert tariff_peak("0002", peak_codes=frozenset({1}), country="NL") is False  # explicit codes win
    with pytest.raises(ValueError, match="peak_codes"):
        tariff_peak("0001", country="LU")
