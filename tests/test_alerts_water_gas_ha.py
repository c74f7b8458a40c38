"""Water and gas alerts in a test Home Assistant, from simulated household series through the real sources.

The series are the core tests' simulators (tests/core/water_series.py,
tests/core/usage_series.py): a household's water use read as a 1 L register
every few minutes, a Dutch-style house's gas use read every 15 minutes. They
reach the alert hub the way a real meter's readings do: as the state of a
water or gas sensor that an "entity" entry follows, or as wmbusmeters
telegrams on the (mocked) MQTT broker; the clock is frozen and moved to each
reading's time, so the hub's 15 s tick, its delayed saves and the counter
guard all run on simulated time (tests/alert_feeds.py).

What the issue asks of each alert: it fires when it should and stays quiet
otherwise. A normal week, a holiday: nothing. A running toilet (20 L/h): a
possible leak after about a day, a repair issue after ``leak_repair_hours``,
both gone once the flow stops for the quiet period; the evidence survives a
reload. A dripping tap (2 L/h) on a 1 L register: seen with a 60-minute quiet
period, not with the default 30 (a step every 30 minutes leaves a possible
30-minute stand-still between steps: the documented limit, pinned here). A
burst: on within duration + window, off after it stops; baths are no burst.
Gas: after three learned weeks, use at 3 a.m. and a day far above the typical
same weekday are announced, normal weeks are not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun.api import FrozenDateTimeFactory

# Imported before the clock is frozen: its dataclasses cannot be built under freezegun's datetime.
from homeassistant.components.mqtt import config_flow as _mqtt_config_flow  # noqa: F401
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.smartmeter.const import (
    CONF_WATER_QUIET,
    DOMAIN,
)
from tests.alert_feeds import (
    GAS_ENTITY,
    GAS_M3,
    WATER_ENTITY,
    WATER_L,
    WATER_M3,
    WMBUS_ID,
    AlertRun,
    EntityFeed,
    Feed,
    WmbusFeed,
    between,
    entity_entry,
    entity_meter_id,
    running_toilet,
    water_readings,
)
from tests.core.usage_series import Extra, gas_readings
from tests.core.water_series import Household, Segment
from tests.mqtt_common import wmbus_entry

TZ = ZoneInfo("Europe/Amsterdam")
START = datetime(2024, 3, 4, tzinfo=TZ)  # a Monday, local midnight
GAS_START = datetime(2025, 1, 6, tzinfo=TZ)  # a Monday in winter
WATER_ALERTS = ("water_leak", "water_burst")


@pytest.fixture
def expected_lingering_timers() -> bool:
    """The MQTT integration's periodic timers outlive a test (as in Home Assistant's own MQTT tests)."""
    return True


@pytest.fixture(autouse=True)
async def amsterdam(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Local time in Amsterdam, the clock at the series start.

    The event loop's debug mode is off: it records a traceback for every
    callback, which would make the simulated weeks many times slower.
    """
    hass.loop.set_debug(False)
    await hass.config.async_set_time_zone("Europe/Amsterdam")
    freezer.move_to(START)


@pytest.fixture
def source(request: pytest.FixtureRequest) -> str:
    """Where the water readings come from: a followed sensor in L ("entity") or m³ ("entity_m3"), or wmbusmeters."""
    if request.param == "wmbus":
        request.getfixturevalue("mqtt_mock")
    return str(request.param)


async def _water_run(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    source: str,
    first: tuple[datetime, Decimal],
    options: dict[str, Any] | None = None,
    *,
    force_update: bool = True,
) -> AlertRun:
    """A water meter's alerts, fed by a followed sensor ("entity", "entity_m3") or wmbusmeters ("wmbus")."""
    feed: Feed
    if source == "wmbus":
        feed = WmbusFeed()
        run = AlertRun(hass, freezer, wmbus_entry([WMBUS_ID], options=options), WMBUS_ID, feed)
    else:
        m3 = source == "entity_m3"
        feed = EntityFeed(WATER_ENTITY, WATER_M3 if m3 else WATER_L, force_update=force_update, m3=m3)
        feed.write(hass, first[0], first[1])  # the sensor has its reading when the entry starts
        run = AlertRun(
            hass, freezer, entity_entry(WATER_ENTITY, options), entity_meter_id(WATER_ENTITY), feed
        )
    freezer.move_to(first[0])
    await run.setup()
    run.watch(*WATER_ALERTS)
    if source == "wmbus":
        await run.play([first])
    return run


def _issue(hass: HomeAssistant, run: AlertRun) -> ir.IssueEntry | None:
    issue_id = f"persistent_leak_{run.entry.entry_id}_{run.meter_id}"
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id)


# ---------------------------------------------------------------- water


@pytest.mark.parametrize("source", ["entity", "wmbus"], indirect=True)
async def test_water_normal_week_is_quiet(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, source: str
) -> None:
    """A household's week (showers, flushes, washing machine, dishwasher): no leak, no burst, no event."""
    readings = water_readings(Household(days=7, seed=1), START, cadence=180 if source == "entity" else 300)
    run = await _water_run(hass, freezer, source, readings[0])
    await run.play(readings[1:])
    assert [state for _, state in run.seen("water_leak")] == ["off"]
    assert [state for _, state in run.seen("water_burst")] == ["off"]
    assert run.events == []
    leak = run.state("water_leak").attributes
    # The hub did follow the week: 1 L steps, complete evidence, a night's stand-still in the last 24 h.
    assert leak["register_step_l"] == 1.0
    assert leak["evidence_complete"] is True
    assert leak["longest_quiet_minutes_24h"] >= 3 * 60
    assert run.state("water_burst").attributes["threshold_l_min"] == 12.0


async def test_running_toilet_leak_repair_reload_and_clear(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A running toilet (20 L/h) from 10:00 on Monday, fixed at 01:00 on Wednesday.

    The entry is reloaded on Monday evening, mid-evidence: the leak still comes
    on about 23.5 h after the toilet started (a fresh monitor would need 23.5 h
    from the reload). The repair issue follows 12 h later; both clear once the
    night after the fix has 30 minutes without flow.
    """
    toilet_from, toilet_to = 10.0, 49.0
    house = Household(days=3, seed=2, extra=running_toilet(20.0, toilet_from, toilet_to))
    readings = water_readings(house, START, cadence=150)
    run = await _water_run(hass, freezer, "entity", readings[0])
    started = START + timedelta(hours=toilet_from)
    fixed = START + timedelta(hours=toilet_to)
    reload_at = START + timedelta(hours=22)

    issue_seen: list[datetime] = []

    def check(when: datetime) -> None:
        if not issue_seen and _issue(hass, run) is not None:
            issue_seen.append(when)

    await run.play(between(readings, readings[1][0], reload_at), check=check)
    assert run.first("water_leak") is None
    await run.reload()
    stored = hass_storage[f"smartmeter.alerts.{run.entry.entry_id}"]["data"][run.meter_id]["water"]
    assert stored["last"] is not None and stored["quiet_end"] is not None  # the evidence was saved
    await run.play(between(readings, reload_at, fixed), check=check)

    on = run.first("water_leak")
    assert on is not None
    assert timedelta(hours=23) <= on - started <= timedelta(hours=24, minutes=30), on
    leak_events = [e for e in run.events if e["alert"] == "water_leak"]
    assert [(e["active"], e["at"]) for e in leak_events] == [(True, on)]
    since = datetime.fromisoformat(leak_events[0]["since"])
    assert started + timedelta(hours=23) <= since <= on
    assert leak_events[0]["meter_id"] == run.meter_id
    assert "possible leak" in leak_events[0]["message"]
    attributes = run.state("water_leak").attributes
    assert datetime.fromisoformat(attributes["leak_since"]) == since
    assert attributes["quiet_period_minutes"] == 30.0
    # The repair issue: 12 h (the default leak_repair_hours) after the leak began.
    assert issue_seen, "no persistent_leak issue"
    assert since + timedelta(hours=12) <= issue_seen[0] <= since + timedelta(hours=12, minutes=5)
    issue = _issue(hass, run)
    assert issue is not None
    assert issue.translation_key == "persistent_leak"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["quiet"] == "30"

    # Fixed at 01:00: the night gives 30 minutes without flow, the leak clears, the issue goes.
    await run.play(between(readings, fixed, fixed + timedelta(hours=6)))
    off = run.seen("water_leak")[-1]
    assert off[1] == "off"
    assert fixed + timedelta(minutes=25) <= off[0] <= fixed + timedelta(hours=5), off
    assert run.alerts("water_leak") == [("water_leak", True), ("water_leak", False)]
    assert run.events[-1]["at"] == off[0]
    assert _issue(hass, run) is None
    assert [state for _, state in run.seen("water_burst")] == ["off"]


@pytest.mark.parametrize("source", ["entity_m3", "wmbus"], indirect=True)
@pytest.mark.parametrize("quiet", [30, 60])
async def test_dripping_tap_needs_a_longer_quiet_period(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, source: str, quiet: int
) -> None:
    """A tap dripping 2 L/h on a 1 L register (a step every 30 min) on top of two days' use.

    With a 60-minute quiet period the leak is proven about a day after the
    drip starts; with the default 30 minutes it never is: between two steps
    30 minutes apart a 30-minute stand-still stays possible.
    """
    house = Household(days=2, seed=3, drip_l_h=2.0, drip_from_h=2.0)
    readings = water_readings(house, START, cadence=180)
    run = await _water_run(hass, freezer, source, readings[0], {CONF_WATER_QUIET: quiet})
    await run.play(readings[1:])
    drip = START + timedelta(hours=2)
    attributes = run.state("water_leak").attributes
    assert attributes["quiet_period_minutes"] == float(quiet)
    if quiet == 60:
        on = run.first("water_leak")
        assert on is not None
        assert timedelta(hours=23) <= on - drip <= timedelta(hours=24, minutes=30), on
        assert run.alerts() == [("water_leak", True)]
        assert run.state("water_leak").state == "on"
        assert attributes["longest_quiet_minutes_24h"] < 60
    else:
        assert [state for _, state in run.seen("water_leak")] == ["off"]
        assert run.events == []
        # The limit, pinned: the drip leaves no more than about 30 min + 2 readings of possible stand-still.
        assert 30 <= attributes["longest_quiet_minutes_24h"] <= 30 + 2 * 3.6 + 0.1


@pytest.mark.parametrize("source", ["entity", "wmbus"], indirect=True)
async def test_burst_on_and_off_but_baths_are_no_burst(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, source: str
) -> None:
    """A burst pipe (25 L/min for 20 min at 13:00) is announced; two bath fills are not.

    The baths: 25 L/min for 8 minutes (water.py: does not reach the 10-minute
    duration) and 15 L/min for 10 minutes (the flow is proven only a window
    after it starts, so 10 minutes of it cannot be proven for 10 minutes).
    """
    burst_h = 13.0
    baths = (
        Segment(19.5 * 3600, 19.5 * 3600 + 8 * 60, 25.0 / 60),
        Segment(21.0 * 3600, 21.0 * 3600 + 10 * 60, 15.0 / 60),
    )
    house = Household(days=1, seed=4, bursts=((burst_h, 25.0, 20.0),), extra=baths)
    readings = water_readings(house, START, cadence=60)
    run = await _water_run(hass, freezer, source, readings[0])
    await run.play(readings[1:])
    start = START + timedelta(hours=burst_h)
    end = start + timedelta(minutes=20)
    seen = run.seen("water_burst")
    assert [state for _, state in seen] == ["off", "on", "off"], seen
    on, off = seen[1][0], seen[2][0]
    # On after the duration (10 min) plus at most the window (5 min) and a reading (72 s).
    assert start + timedelta(minutes=10) <= on <= start + timedelta(minutes=16, seconds=12), on
    # Off at most a window and a reading after it stops (readings keep coming: the flow is measured).
    assert end <= off <= end + timedelta(minutes=6, seconds=12), off
    assert run.alerts() == [("water_burst", True), ("water_burst", False)]
    raised, cleared = run.events
    assert raised["at"] == on and cleared["at"] == off
    assert 20.0 <= raised["flow_l_min"] <= 26.0
    # Since the start of the first window that proved it (it may begin up to a window before the flow).
    since = datetime.fromisoformat(raised["since"])
    assert start - timedelta(minutes=6, seconds=12) <= since <= start + timedelta(minutes=6)
    assert "burst?" in raised["message"]
    assert [state for _, state in run.seen("water_leak")] == ["off"]


@pytest.mark.parametrize("source", ["entity", "wmbus"], indirect=True)
async def test_holiday_is_quiet(hass: HomeAssistant, freezer: FrozenDateTimeFactory, source: str) -> None:
    """Three days away (no use at all) between normal days: nothing fires.

    The followed sensor writes only changes here: for three days the source
    delivers nothing and only the hub's tick runs; wmbusmeters keeps
    reporting the same total.
    """
    house = Household(days=5, seed=5, holiday_days=frozenset({1, 2, 3}))
    readings = water_readings(house, START, cadence=300)
    run = await _water_run(hass, freezer, source, readings[0], force_update=False)
    await run.play(readings[1:])
    assert [state for _, state in run.seen("water_leak")] == ["off"]
    assert [state for _, state in run.seen("water_burst")] == ["off"]
    assert run.events == []
    holiday = between(readings, START + timedelta(days=1), START + timedelta(days=4))
    assert holiday[0][1] == holiday[-1][1]  # the series is a holiday: the register stood still
    assert readings[-1][1] > holiday[-1][1]  # and the household came back


# ---------------------------------------------------------------- gas


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return GAS_START + timedelta(days=day, hours=hour, minutes=minute)


async def test_gas_learned_weeks_then_night_use_and_a_high_day(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Five weeks of a gas meter read every 15 minutes.

    Weeks 1-3 learn (nothing can fire), week 4 is normal (nothing fires),
    today-vs-typical reads around 100 % from week 3 on. Week 5: 0.3 m³ between
    03:10 and 03:40 on Tuesday (the night is normally without gas) and three
    four times the usual use on Friday.
    """
    night, high = 29, 32  # Tuesday and Friday of week 5
    extras = [Extra(_at(night, 3, 10), _at(night, 3, 40), 0.3)]
    readings = gas_readings(GAS_START, 35, seed=1, step_minutes=15, extras=extras, scale={high: 4.0})
    feed = EntityFeed(GAS_ENTITY, GAS_M3)
    feed.write(hass, readings[0][0], readings[0][1])
    freezer.move_to(readings[0][0])
    run = AlertRun(hass, freezer, entity_entry(GAS_ENTITY), entity_meter_id(GAS_ENTITY), feed)
    await run.setup()
    run.watch("gas_anomaly")
    typical: dict[int, str] = {}

    def check(when: datetime) -> None:
        local = when.astimezone(TZ)
        if local.hour == 20 and local.minute == 0:
            typical[(local.date() - GAS_START.date()).days] = run.state("today_vs_typical", "sensor").state

    await run.play(between(readings, readings[1][0], _at(28, 0)), check=check)
    assert run.events == []
    assert [state for _, state in run.seen("gas_anomaly")] == ["off"]
    # today vs typical: unknown while fewer than two same weekdays are learned, then around 100 %.
    assert all(typical[day] == "unknown" for day in range(14)), typical
    later = [float(typical[day]) for day in range(14, 28)]
    assert all(50 <= value <= 200 for value in later), later
    assert 80 <= sorted(later)[len(later) // 2] <= 125, later

    await run.play(between(readings, _at(28, 0), _at(35, 0)), check=check)
    assert run.alerts() == [("gas_unusual_hour", True), ("gas_high_day", True)]
    unusual, high_day = run.events
    assert datetime.fromisoformat(unusual["period_start"]) == _at(night, 3)
    assert _at(night, 3, 10) < unusual["at"] <= _at(night, 4)
    assert 0.02 <= unusual["value"] <= 0.31
    assert unusual["unit"] == "m³"
    assert "an hour that normally has none" in unusual["message"]
    assert datetime.fromisoformat(high_day["period_start"]) == _at(high, 0)
    assert _at(high, 0) < high_day["at"] < _at(high + 1, 0)  # the same day, not at midnight
    assert high_day["value"] > 2.5 * high_day["reference"]
    anomaly = run.seen("gas_anomaly")
    assert [state for _, state in anomaly] == ["off", "on", "off", "on", "off"], anomaly
    assert anomaly[1][0] == unusual["at"]
    assert _at(night, 4) <= anomaly[2][0] <= _at(night, 5, 15)  # the hour is over, shown for at least 1 h
    assert anomaly[3][0] == high_day["at"]
    assert _at(high + 1, 0) <= anomaly[4][0] <= _at(high + 1, 0, 15)  # until the day is over
    assert 50 <= float(typical[30]) <= 200  # the day after the night alert reads normal


@pytest.mark.parametrize(
    "force_update",
    # Unchanged writes are state_reported events, which the entity source takes as readings too.
    [True, False],
    ids=["force_update", "unchanged_writes"],
)
async def test_gas_anomaly_attributes_while_on(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, force_update: bool
) -> None:
    """The binary sensor tells which rule fired while it is on (four weeks, the night use in week 4).

    The gas sensor is written with every 15-minute reading, changed or not:
    with ``force_update`` (the state machine reports each write as a change)
    and as most meter integrations write (an unchanged value is only a
    "reported" state).
    """
    night = 22  # Tuesday of week 4
    extras = [Extra(_at(night, 3, 5), _at(night, 3, 35), 0.2)]
    readings = gas_readings(GAS_START, 23, seed=2, step_minutes=15, extras=extras)
    feed = EntityFeed(GAS_ENTITY, GAS_M3, force_update=force_update, every_write=True)
    feed.write(hass, readings[0][0], readings[0][1])
    freezer.move_to(readings[0][0])
    run = AlertRun(hass, freezer, entity_entry(GAS_ENTITY), entity_meter_id(GAS_ENTITY), feed)
    await run.setup()
    await run.play(between(readings, readings[1][0], _at(night, 3, 45)))
    state = run.state("gas_anomaly")
    assert state.state == "on"
    assert state.attributes["kind"] == "unusual_hour"
    assert datetime.fromisoformat(state.attributes["period_start"]) == _at(night, 3)
    assert state.attributes["unit"] == "m³"
    assert run.alerts() == [("gas_unusual_hour", True)]
