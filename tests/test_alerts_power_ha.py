"""Electricity alerts in a test Home Assistant: outages over a real P1 pty, base load and abnormal days.

Outage detection runs through the real source path: corpus telegrams (with
changed registers and a recomputed CRC) written to a pseudo-terminal the
entry reads. The clock is frozen (``freezer``, which stops the event loop's
clock too) and moved by the test: a silence longer than the entry's outage
timeout (60 s: the option, and the link's idle timeout) passes in steps of
the alert hub's 15 s timer, which falls due at each, as does the reader's
idle timeout, which drops the port and reopens it. Telegrams are written
one at a time, each a simulated 10 s after the last.

Electricity use runs through the entity source: an energy total and a power
sensor of a foreign device (a Shelly 3EM), driven with ``hass.states``
following a simulated household (tests/core/usage_series.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest
from freezegun.api import FrozenDateTimeFactory

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.smartmeter.alerts import TICK
from custom_components.smartmeter.const import (
    DOMAIN,
    EVENT_ALERT,
)
from custom_components.smartmeter.core.source import Backoff
from tests.alert_power_feeds import (
    Household,
    failure_registers,
    frozen_entry,
    household_sensors,
    power_steps,
    send,
    settle,
    until,
    with_failures,
    with_voltages,
)
from tests.common import (
    AM550,
    BAD_CRC,
    corpus_telegram,
    loaded_entry,
    state_of,
    unload,
    with_crc,
)
from tests.conftest import corpus_dir
from tests.core.usage_series import Extra, electricity_readings
from tests.faults import set_register

TZ = "Europe/Amsterdam"
ZONE = ZoneInfo(TZ)
NOON = datetime(2026, 1, 14, 12, 0, tzinfo=ZONE)  # winter: the meters' "W" stamps are UTC+1
OUTAGE_TIMEOUT = 60  # s, the default option; the link's own idle timeout is 60 s too
SILENCE = timedelta(seconds=OUTAGE_TIMEOUT + 20)
STEP = timedelta(seconds=10)  # a DSMR 4 telegram interval
FAILURE_OBIS = (b"0-0:96.7.21(", b"0-0:96.7.9(", b"1-0:99.97.0(")


def _failure_samples() -> list[str]:
    """Every corpus P1 telegram that carries a power-failure counter or log."""
    return sorted(
        f"dsmr/{path.name}"
        for path in (corpus_dir() / "dsmr").glob("*.txt")
        if any(obis in path.read_bytes() for obis in FAILURE_OBIS)
    )


def _wire(name: str) -> bytes:
    """The sample as the pty sends it; the one whose CRC the corpus documents as wrong gets its correct CRC."""
    telegram = corpus_telegram(name)
    if name == BAD_CRC:
        return with_crc(telegram[: telegram.rindex(b"!") + 1])
    return telegram


def _expected_counts(name: str) -> dict[str, int]:
    """The failure counters the sample's source asserts (``*.expected.json``), where it asserts them."""
    path = corpus_dir() / name.replace(".txt", ".expected.json")
    if not path.exists():
        return {}
    asserted = json.loads(path.read_text()).get("source_assertions", {})
    names = {"SHORT_POWER_FAILURE_COUNT": "power_failures", "LONG_POWER_FAILURE_COUNT": "long_power_failures"}
    return {key: int(asserted[src]["value"]) for src, key in names.items() if src in asserted}


def _entity(hass: HomeAssistant, domain: str, unique_id: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(domain, DOMAIN, unique_id)
    assert entity_id is not None, f"no {domain} {unique_id}"
    return entity_id


def _alerts(events: list[Event[Any]]) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events]


@pytest.fixture
async def frozen(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> AsyncGenerator[FrozenDateTimeFactory]:
    """Home Assistant in Amsterdam on a winter day at noon, its clock frozen (moved by the test).

    The reader opens the port without its backoff or settling waits: they
    would wait on the loop's clock, which only moves when the test moves it.
    """
    await hass.config.async_set_time_zone(TZ)
    freezer.move_to(NOON)
    with (
        patch.object(Backoff, "next_delay", lambda self: 0.0),
        patch("serialx.platforms.serial_posix.AFTER_OPEN_DELAY", 0),
    ):
        yield freezer


# ---------------------------------------------------------------- the corpus registers


@pytest.mark.parametrize("name", _failure_samples())
async def test_corpus_failure_registers_feed_the_outage_sensor(hass: HomeAssistant, name: str) -> None:
    """The power-failure counters and the newest log entry of each corpus telegram, as the sensor shows them."""
    await hass.config.async_set_time_zone(TZ)
    telegram = _wire(name)
    said = failure_registers(telegram)
    for key, value in _expected_counts(name).items():
        assert getattr(said, key) == value, f"the oracle disagrees with the corpus source on {key}"
    async with loaded_entry(hass, [telegram]) as (entry, _pty):
        assert entry.state is ConfigEntryState.LOADED
        meter = entry.unique_id
        outage = state_of(hass, _entity(hass, "binary_sensor", f"{meter}_power_outage"))
        attrs = outage.attributes
        assert outage.state == "off"
        assert attrs["power_failures"] == said.power_failures
        assert attrs["long_power_failures"] == said.long_power_failures
        if said.log_last_end is None:
            assert attrs["meter_log_last_end"] is None
            assert attrs["meter_log_last_duration_s"] is None
        else:
            assert datetime.fromisoformat(attrs["meter_log_last_end"]) == said.log_last_end
            assert attrs["meter_log_last_duration_s"] == said.log_last_duration_s
        assert attrs["last_outage_start"] is None  # nothing happened while Home Assistant watched
        assert state_of(hass, _entity(hass, "binary_sensor", f"{meter}_meter_link_lost")).state == "off"


def test_corpus_has_failure_registers() -> None:
    """The parametrisation above covers the samples it should (a glob that finds nothing tests nothing)."""
    samples = _failure_samples()
    assert AM550 in samples
    assert BAD_CRC in samples
    assert len(samples) >= 6
    assert sum(failure_registers(_wire(n)).log_last_end is not None for n in samples) >= 4


# ---------------------------------------------------------------- outages over the pty


class Link:
    """An entry on a pty meter under a frozen clock: send telegrams, stay silent, watch the alerts."""

    def __init__(self, hass: HomeAssistant, freezer: FrozenDateTimeFactory, entry: Any, pty: Any) -> None:
        self.hass = hass
        self.freezer = freezer
        self.entry = entry
        self.pty = pty
        self.source = entry.runtime_data.source
        pty.set_telegrams([])  # the test writes each telegram itself
        meter = entry.unique_id
        self.outage = _entity(hass, "binary_sensor", f"{meter}_power_outage")
        self.link_lost = _entity(hass, "binary_sensor", f"{meter}_meter_link_lost")
        self.events = async_capture_events(hass, EVENT_ALERT)

    async def send(self, telegram: bytes, after: timedelta = STEP) -> datetime:
        """Let ``after`` pass, then one telegram; returns when it was received."""
        self.freezer.tick(after)
        await send(self.pty, self.source, telegram)
        return datetime.now(ZONE)

    async def silence(self, span: timedelta) -> None:
        """Send nothing for ``span``; the timers that fall due meanwhile run.

        When the reader's idle timeout dropped the port meanwhile, waits until
        it reopened it (a telegram written before would be flushed by the open).
        """
        stats = self.source.stats
        down, up = stats.disconnects, stats.connects
        moment = datetime.now(ZONE)
        end = moment + span
        while moment < end:  # the alert hub's timer every TICK, as the loop would run it
            moment = min(moment + TICK, end)
            self.freezer.move_to(moment)
            async_fire_time_changed(self.hass)
            await settle()
        if self.entry.state is ConfigEntryState.LOADED and stats.disconnects > down:
            await until(lambda: stats.connects >= up + stats.disconnects - down)

    def state(self, entity_id: str) -> str:
        """An entity's state now."""
        return state_of(self.hass, entity_id).state


async def test_power_failure_then_recovery(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """Telegrams stop: link lost; they resume with a failure counted and logged: it was a power outage."""
    base = corpus_telegram(AM550)
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        await link.send(base)
        last = await link.send(base)
        assert link.state(link.link_lost) == "off"

        await link.silence(timedelta(seconds=OUTAGE_TIMEOUT - 5))
        assert link.state(link.link_lost) == "off"  # not yet past the timeout
        assert _alerts(link.events) == []
        await link.silence(SILENCE - timedelta(seconds=OUTAGE_TIMEOUT - 5))
        assert link.state(link.link_lost) == "on"
        assert link.state(link.outage) == "off"  # silent: nothing proves an outage yet
        (lost,) = _alerts(link.events)
        assert lost["alert"] == "link_lost"
        assert lost["active"] is True
        assert lost["meter_id"] == entry.unique_id
        assert lost["entry_id"] == entry.entry_id
        assert "no data from the meter" in lost["message"]
        assert state_of(hass, link.link_lost).attributes["since"] is not None

        # The meter logged a 40 s failure inside the silence and counted it.
        failure_end = last + timedelta(seconds=50)
        recovered = with_failures(base, rise=1, logged=(failure_end, 40))
        said = failure_registers(recovered)
        back = await link.send(recovered, after=timedelta(seconds=5))
        assert link.state(link.link_lost) == "off"
        assert link.state(link.outage) == "off"  # over already: found afterwards
        fired = _alerts(link.events)[1:]
        assert [(e["alert"], e["active"]) for e in fired] == [("power_outage", False), ("link_lost", False)]
        outage, cleared = fired
        assert outage["found_after"] is True
        assert datetime.fromisoformat(outage["start"]) == failure_end - timedelta(seconds=40)
        assert datetime.fromisoformat(outage["end"]) == failure_end == said.log_last_end
        assert outage["duration_s"] == 40
        assert set(outage["evidence"]) == {"power_failures+1", "power_failure_log"}
        assert "power was out" in outage["message"]
        assert cleared["cause"] == "power_outage"
        assert "it was a power outage" in cleared["message"]
        attrs = state_of(hass, link.outage).attributes
        assert attrs["power_failures"] == said.power_failures == 6
        assert attrs["last_outage_duration_s"] == 40
        assert datetime.fromisoformat(attrs["meter_log_last_end"]) == failure_end
        assert datetime.fromisoformat(attrs["last_outage_end"]) < back

        # Telegrams flow on: nothing more.
        await link.send(recovered)
        await link.send(recovered)
        assert len(_alerts(link.events)) == 3


async def test_link_fault_without_evidence(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """A silence after which the counters are unchanged: a link fault, not an outage."""
    base = corpus_telegram(AM550)
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        await link.send(base)
        await link.silence(SILENCE)
        assert link.state(link.link_lost) == "on"
        await link.send(base, after=timedelta(seconds=5))
        assert link.state(link.link_lost) == "off"
        assert link.state(link.outage) == "off"
        fired = _alerts(link.events)
        assert [(e["alert"], e["active"]) for e in fired] == [("link_lost", True), ("link_lost", False)]
        assert fired[1]["cause"] == "link_lost"
        assert fired[1]["duration_s"] >= SILENCE.total_seconds()
        assert "power stayed on" in fired[1]["message"]
        assert state_of(hass, link.outage).attributes["last_outage_start"] is None


async def test_brief_link_drop_is_no_alert(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """The source reports its link down and up again within the silence limit: nothing to tell."""
    base = corpus_telegram(AM550)
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        await link.send(base)
        coordinator = entry.runtime_data
        coordinator.async_link_status(False)  # a bridge restarting its Wi-Fi
        await link.silence(timedelta(seconds=20))
        assert link.state(link.link_lost) == "off"
        coordinator.async_link_status(True)
        await link.send(base, after=timedelta(seconds=5))
        await link.silence(SILENCE - timedelta(seconds=40))
        assert link.state(link.link_lost) == "off"
        assert _alerts(link.events) == []


async def test_short_failure_between_telegrams(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """The failure counter rises from one telegram to the next: a failure shorter than the interval."""
    base = corpus_telegram(AM550)
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        before = await link.send(base)
        after = await link.send(with_failures(base, rise=1))
        fired = _alerts(link.events)
        assert [(e["alert"], e["active"]) for e in fired] == [("power_outage", False)]
        assert fired[0]["found_after"] is True
        assert fired[0]["evidence"] == ["power_failures+1"]
        assert datetime.fromisoformat(fired[0]["start"]) == before
        assert datetime.fromisoformat(fired[0]["end"]) == after
        assert link.state(link.outage) == "off"
        assert link.state(link.link_lost) == "off"
        assert state_of(hass, link.outage).attributes["power_failures"] == 6


async def test_voltage_zero_on_every_phase(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """A meter that still reports, at 0 V on every phase: an outage while it lasts; a lost phase is none."""
    base = corpus_telegram(AM550)
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        await link.send(base)
        one_phase = set_register(base, "1-0:72.7.0", "0")  # L3 lost, L1 and L2 at 230 V
        await link.send(one_phase)
        assert link.state(link.outage) == "off"  # one dead phase is not a power outage
        await link.send(base)
        dark = with_voltages(base, "0", power_kw="0")
        went = await link.send(dark)
        assert link.state(link.outage) == "on"
        assert link.state(link.link_lost) == "off"
        await link.send(dark)
        (raised,) = _alerts(link.events)
        assert (raised["alert"], raised["active"]) == ("power_outage", True)
        assert raised["evidence"] == ["voltage_zero"]
        assert "0 V" in raised["message"]

        came = await link.send(base)
        assert link.state(link.outage) == "off"
        fired = _alerts(link.events)
        assert [(e["alert"], e["active"]) for e in fired] == [("power_outage", True), ("power_outage", False)]
        cleared = fired[1]
        assert "found_after" not in cleared
        assert datetime.fromisoformat(cleared["start"]) == went
        assert datetime.fromisoformat(cleared["end"]) == came
        assert cleared["duration_s"] == (came - went).total_seconds()
        assert cleared["evidence"] == ["voltage_zero"]


async def test_link_back_at_zero_volts(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """Silent, then the meter speaks again at 0 V: the lost link is over (cleared), the outage is on."""
    base = corpus_telegram(AM550)
    dark = with_voltages(base, "0", power_kw="0")
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        await link.send(base)
        await link.silence(SILENCE)
        assert link.state(link.link_lost) == "on"
        await link.send(dark, after=timedelta(seconds=5))
        assert link.state(link.link_lost) == "off"
        assert link.state(link.outage) == "on"
        fired = _alerts(link.events)
        assert [(e["alert"], e["active"]) for e in fired] == [
            ("link_lost", True),
            ("link_lost", False),
            ("power_outage", True),
        ]
        assert fired[1]["cause"] == "power_outage"
        await link.send(base)
        fired = _alerts(link.events)
        assert [(e["alert"], e["active"]) for e in fired[3:]] == [("power_outage", False)]
        assert link.state(link.outage) == "off"
        assert link.state(link.link_lost) == "off"


async def test_no_alert_at_unload(hass: HomeAssistant, frozen: FrozenDateTimeFactory) -> None:
    """Unloading closes the port: that is no lost link, and nothing is announced."""
    base = corpus_telegram(AM550)
    async with frozen_entry(hass, base) as (entry, pty):
        link = Link(hass, frozen, entry, pty)
        await link.send(base)
        await unload(hass, entry)
        assert entry.state is ConfigEntryState.NOT_LOADED
        await link.silence(SILENCE)
        assert _alerts(link.events) == []


# ---------------------------------------------------------------- electricity use, from followed sensors

MONDAY = datetime(2026, 1, 5, tzinfo=ZONE)  # local midnight, no clock change for weeks
BASE_W = 150  # the household's always-on load (± 3 W of noise), under a cycling fridge and the rest
SEED = 1


@pytest.fixture
async def household(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> Household:
    """An energy and a power sensor of a Shelly 3EM, the clock in Amsterdam at the series start."""
    hass.loop.set_debug(False)  # a traceback per callback would make the simulated weeks slow
    await hass.config.async_set_time_zone(TZ)
    freezer.move_to(MONDAY)
    energy, power = household_sensors(hass)
    return Household(hass, freezer, energy, power, ZONE)


async def test_base_load_from_power_readings(hass: HomeAssistant, household: Household) -> None:
    """After six hours of power readings the base load sensor shows the always-on load."""
    readings = electricity_readings(MONDAY, 1, seed=SEED, base_w=BASE_W)
    steps = list(power_steps(readings[: 7 * 60], timedelta(seconds=100)))  # 3 readings per 5-min window
    entry = await household.start(*steps[0])
    meter = f"device_{er.async_get(hass).async_get(household.energy).device_id}"  # type: ignore[union-attr]
    base_load = _entity(hass, "sensor", f"{meter}_base_load")
    assert er.async_get(hass).async_get_entity_id("binary_sensor", DOMAIN, f"{meter}_power_outage") is None
    assert er.async_get(hass).async_get_entity_id("binary_sensor", DOMAIN, f"{meter}_meter_link_lost") is None
    six_hours = MONDAY + timedelta(hours=6)
    for moment, kwh, kw in steps[1:]:
        if moment >= six_hours and state_of(hass, base_load).state == "unknown":
            assert moment < six_hours + timedelta(minutes=5), "no base load 5 min after six hours of windows"
        await household.step(moment, kwh, kw)
        if moment < six_hours:
            assert state_of(hass, base_load).state == "unknown", f"a base load before six hours ({moment})"
    state = state_of(hass, base_load)
    expected = household.reference.base_load()
    assert expected is not None
    assert Decimal(state.state) == expected * 1000  # exactly what the monitor makes of the same readings
    assert abs(Decimal(state.state) - BASE_W) <= 6  # the always-on load, not the fridge or breakfast
    assert state.attributes["source"] == "power"
    assert state.attributes["unit_of_measurement"] == "W"
    assert entry.state is ConfigEntryState.LOADED


async def test_today_vs_typical_and_high_day(hass: HomeAssistant, household: Household) -> None:
    """Three weeks learned hourly: a normal day near 100 %, a day with a 3 kW heater far above, announced once."""
    heater_day = MONDAY + timedelta(days=21)
    heater = Extra(heater_day + timedelta(hours=8), heater_day + timedelta(hours=20), 3000)
    readings = electricity_readings(MONDAY, 23, seed=SEED, step_minutes=60, base_w=BASE_W, extras=[heater])
    events = async_capture_events(hass, EVENT_ALERT)
    await household.start(*readings[0])
    meter = f"device_{er.async_get(hass).async_get(household.energy).device_id}"  # type: ignore[union-attr]
    percent = _entity(hass, "sensor", f"{meter}_today_vs_typical")
    seen: dict[datetime, str] = {}
    for moment, kwh, kw in readings[1:]:
        await household.step(moment, kwh, kw)
        if moment.hour == 20:
            seen[moment] = state_of(hass, percent).state
            reference = household.typical_at_energy
            assert seen[moment] == ("unknown" if reference is None else str(reference)), moment

    at_eight = {moment.date(): value for moment, value in seen.items()}
    # Two weeks of the weekday learned: from the third Monday on the figure means something.
    assert at_eight[(MONDAY + timedelta(days=13)).date()] == "unknown"
    for day in range(14, 21):
        value = float(at_eight[(MONDAY + timedelta(days=day)).date()])
        assert 75 <= value <= 125, f"day {day}: {value} % on a normal day"
    assert float(at_eight[heater_day.date()]) > 400  # 36 kWh more than a ~6 kWh day
    assert float(at_eight[(heater_day + timedelta(days=1)).date()]) == pytest.approx(100, abs=25)

    (high,) = _alerts(events)  # once, and nothing else in three weeks
    assert (high["alert"], high["active"]) == ("electricity_high_day", True)
    assert high["meter_id"] == meter
    assert high["unit"] == "kWh"
    assert datetime.fromisoformat(high["period_start"]) == heater_day
    assert high["value"] > 2.5 * high["reference"]  # the default high_day_factor
    (expected,) = household.reference_alerts  # as soon as the bar was crossed, with the monitor's figures
    assert (high["value"], high["reference"]) == (float(expected.value), float(expected.reference))
    assert high["value"] - high["reference"] >= 5
    assert "electricity use today" in high["message"]


async def test_holiday_week_is_no_alert(hass: HomeAssistant, household: Household) -> None:
    """Two learned weeks, then a week away (only the fridge and the always-on load): low figures, no alert."""
    away = range(14, 21)
    readings = electricity_readings(MONDAY, 22, seed=SEED, step_minutes=60, base_w=BASE_W, holidays=away)
    events = async_capture_events(hass, EVENT_ALERT)
    await household.start(*readings[0])
    meter = f"device_{er.async_get(hass).async_get(household.energy).device_id}"  # type: ignore[union-attr]
    percent = _entity(hass, "sensor", f"{meter}_today_vs_typical")
    seen: dict[int, str] = {}
    for moment, kwh, kw in readings[1:]:
        await household.step(moment, kwh, kw)
        if moment.hour == 20:
            seen[(moment - MONDAY).days] = state_of(hass, percent).state
    for day in away:
        assert float(seen[day]) < 75, f"day {day} away: {seen[day]} %"  # well below a normal day
    assert 75 <= float(seen[21]) <= 125  # back home: normal again
    assert _alerts(events) == []  # a low day is no alarm
