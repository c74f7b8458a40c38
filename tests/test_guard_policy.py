"""Counter guard, restore and write policy in the Home Assistant layer, over a real pty.

Telegrams are real corpus telegrams with changed readings (CRC recomputed),
written one at a time to a pseudo-terminal the entry reads. Tests that need
time to pass freeze Home Assistant's clock (the event loop keeps real time, so
the link works) and tick it per telegram.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import Event, HomeAssistant, State, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_mock_restore_state_shutdown_restart,
    mock_restore_cache_with_extra_data,
)

from custom_components.smartmeter.const import (
    CONF_BURST_FLOW,
    CONF_BURST_MINUTES,
    CONF_COUNTER_INTERVAL,
    CONF_DEADBAND,
    CONF_HIGH_DAY_FACTOR,
    CONF_LEAK_REPAIR_HOURS,
    CONF_LIVE,
    CONF_MAX_GAS_FLOW,
    CONF_MAX_POWER,
    CONF_MAX_WATER_FLOW,
    CONF_MEASUREMENT_INTERVAL,
    CONF_OUTAGE_TIMEOUT,
    CONF_TIME_ZONE,
    CONF_WATER_QUIET,
    DOMAIN,
    EVENT_READING,
)
from custom_components.smartmeter.coordinator import SmartMeterCoordinator
from custom_components.smartmeter.core.guard import Verdict
from custom_components.smartmeter.core.models import Medium
from tests.common import (
    AM550,
    PtyMeter,
    corpus_telegram,
    loaded_entry,
    meter_id,
    mock_entry,
    state_of,
    unload,
)
from tests.faults import FakeClock, StepSender, record_states, set_line, set_register

ENERGY = "sensor.electricity_meter_energy_import_tariff_1"
GAS = "sensor.gas_meter_m_bus_2_gas_consumption"
POWER = "sensor.electricity_meter_power_import"
TARIFF = "sensor.electricity_meter_active_tariff"
BASE = corpus_telegram(AM550)
METER = meter_id(BASE)
GAS_METER = "4730303339303031393336393930363139"
GAS_LINE = b"0-2:24.2.1(200426223001S)"
LIVE = {CONF_LIVE: True}
START = "2024-01-15 10:02:30+00:00"


@pytest.fixture
def frozen() -> Iterator[FakeClock]:
    """Readings stamped at START and later as the test ticks (Home Assistant's own clock runs on)."""
    fake = FakeClock(START)
    with patch.object(SmartMeterCoordinator, "clock", staticmethod(fake)):
        yield fake


def energy(value: str, telegram: bytes = BASE) -> bytes:
    """The AM550 telegram with import tariff 1 at ``value`` kWh."""
    return set_register(telegram, "1-0:1.8.1", value)


def power(value: str, telegram: bytes = BASE) -> bytes:
    """The AM550 telegram with the import power at ``value`` kW."""
    return set_register(telegram, "1-0:1.7.0", value)


def states_of(states: list[State]) -> list[str]:
    return [s.state for s in states]


def coordinator_of(entry: Any) -> SmartMeterCoordinator:
    coordinator: SmartMeterCoordinator = entry.runtime_data
    return coordinator


# ---- the guard, over the pty ----


async def test_guard_rejects_faults(hass: HomeAssistant) -> None:
    """A zero, a replayed old telegram and an impossible jump never reach the entity, even in live mode."""
    async with loaded_entry(hass, [BASE], options=LIVE) as (entry, pty):
        sender = StepSender(pty, entry)
        written = record_states(hass, ENERGY)
        for telegram in (
            energy("2130.116"),
            energy("0"),  # a meter or bridge that briefly reads zero
            BASE,  # the old telegram replayed (2130.115)
            energy("2140.116"),  # 10 kWh within a fraction of a second
            energy("2130.117"),
        ):
            await sender.send(telegram)
        await hass.async_block_till_done()
        assert states_of(written) == ["2130.116", "2130.117"]
        guards = coordinator_of(entry).guards
        assert guards.rejected == {Verdict.ZERO: 1, Verdict.DECREASE: 1, Verdict.JUMP: 1}
        assert guards.as_dict()["rejected"] == {"decrease": 1, "jump": 1, "zero": 1}
        # The other registers of a telegram with a rejected reading still count.
        assert state_of(hass, POWER).state != STATE_UNAVAILABLE


async def test_guard_on_gas_reading(hass: HomeAssistant) -> None:
    """A gas reading that drops to zero is rejected; the gas sensor keeps its value and its stamp."""
    async with loaded_entry(hass, [BASE], options=LIVE) as (entry, pty):
        sender = StepSender(pty, entry)
        written = record_states(hass, GAS)
        zero = set_line(
            BASE, b"0-2:24.2.1(200426223001S)(00246.138*m3)", b"0-2:24.2.1(200426223501S)(00000.000*m3)"
        )
        await sender.send(zero)
        later = set_line(
            BASE, b"0-2:24.2.1(200426223001S)(00246.138*m3)", b"0-2:24.2.1(200426224001S)(00246.139*m3)"
        )
        await sender.send(later)
        await hass.async_block_till_done()
        assert states_of(written) == ["246.139"]
        assert coordinator_of(entry).guards.rejected == {Verdict.ZERO: 1}


async def test_reading_event(hass: HomeAssistant) -> None:
    """Each good telegram fires smartmeter_reading per meter with the guarded raw values."""
    events: list[Event] = []

    @callback
    def _listen(event: Event) -> None:
        events.append(event)

    hass.bus.async_listen(EVENT_READING, _listen)
    async with loaded_entry(hass, [BASE], options={CONF_TIME_ZONE: "Europe/Amsterdam"}) as (entry, pty):
        sender = StepSender(pty, entry)
        events.clear()
        await sender.send(energy("0"))
        await hass.async_block_till_done()
    by_meter = {event.data["meter_id"]: event.data for event in events}
    assert {METER, GAS_METER} <= set(by_meter)
    main = by_meter[METER]
    assert main["entry_id"] == entry.entry_id
    values = main["values"]
    assert values["energy_import_tariff_1"] == 2130.115  # the zero was rejected
    assert values["power_import"] == 0.111
    assert values["equipment_id"] == METER
    assert values["timestamp"] == "2020-04-26T22:33:25+02:00"
    gas = by_meter[GAS_METER]["values"]
    assert gas["gas"] == 246.138


# ---- restore ----


def _guard_extra(
    value: str, time: float, unit: str = "kWh", key: str = "energy_import_tariff_1"
) -> dict[str, Any]:
    return {
        "native_value": {"__type": "<class 'decimal.Decimal'>", "decimal_str": value},
        "native_unit_of_measurement": "kWh",
        "guard": {"meter_id": METER, "register": key, "value": value, "unit": unit, "time": time},
    }


def _register_energy_entity(hass: HomeAssistant, entry: Any, key: str = "energy_import_tariff_1") -> str:
    return (
        er.async_get(hass)
        .async_get_or_create(
            "sensor",
            DOMAIN,
            f"{METER}_{key}",
            suggested_object_id=f"electricity_meter_{key}",
            config_entry=entry,
        )
        .entity_id
    )


async def test_restore_seeds_guard(hass: HomeAssistant) -> None:
    """After a restart the first reading is judged against the saved one: a lower or zero one is rejected."""
    async with PtyMeter([energy("0")]) as pty:
        entry = mock_entry(pty.path, METER, options=LIVE)
        entry.add_to_hass(hass)
        assert _register_energy_entity(hass, entry) == ENERGY
        tariff_2 = _register_energy_entity(hass, entry, "energy_import_tariff_2")
        export = _register_energy_entity(hass, entry, "energy_export_tariff_1")
        saved = dt_util.utcnow().timestamp() - 600
        mock_restore_cache_with_extra_data(
            hass,
            [
                (State(ENERGY, "2130.200"), _guard_extra("2130.200", saved)),
                # saved in another unit: not comparable, not used
                (
                    State(tariff_2, "245467"),
                    _guard_extra("245467", saved, unit="Wh", key="energy_import_tariff_2"),
                ),
                # damaged: ignored
                (State(export, "1"), {"guard": {"meter_id": METER, "register": "energy_export_tariff_1"}}),
            ],
        )
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        # The zero of the first telegram never shows: the saved reading does.
        assert state_of(hass, ENERGY).state == "2130.200"
        assert state_of(hass, tariff_2).state == "245.467"
        guards = coordinator_of(entry).guards
        assert guards.rejected.get(Verdict.ZERO, 0) >= 1

        sender = StepSender(pty, entry)
        await sender.send(BASE)  # 2130.115: lower than before the restart
        assert state_of(hass, ENERGY).state == "2130.200"
        await sender.send(energy("2130.201"))
        await hass.async_block_till_done()
        assert state_of(hass, ENERGY).state == "2130.201"
        await unload(hass, entry)


async def test_restore_across_reload(hass: HomeAssistant) -> None:
    """Unloaded and set up again (a restart): the guard starts from the last accepted reading."""
    async with loaded_entry(hass, [BASE]) as (entry, pty):
        sender = StepSender(pty, entry)
        await sender.send(energy("2130.116"))
        await async_mock_restore_state_shutdown_restart(hass)
        await unload(hass, entry)
        pty.set_telegrams([energy("0")])
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert state_of(hass, ENERGY).state == "2130.116"
        restored = coordinator_of(entry).guards.guards[(METER, "energy_import_tariff_1")]
        assert restored.value == Decimal("2130.116")


# ---- replacements ----


async def test_persistent_reset_raises_repair(hass: HomeAssistant, frozen: FakeClock) -> None:
    """A register that restarts low and keeps counting from there: new series and a repair issue."""
    async with loaded_entry(hass, [BASE], options=LIVE) as (entry, pty):
        sender = StepSender(pty, entry)
        written = record_states(hass, ENERGY)
        for n in range(5):
            frozen.tick(30)
            await sender.send(energy(f"0.{n + 1:03d}"))
        await hass.async_block_till_done()
        # Rejected until three readings over a minute agreed; from then on the new series.
        assert states_of(written) == ["0.003", "0.004", "0.005"]
        issue_id = f"replacement_{entry.entry_id}_{METER}_energy_import_tariff_1"
        issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
        assert issue is not None
        assert issue.translation_placeholders is not None
        assert issue.translation_placeholders["old_value"] == "2130.115"
        coordinator = coordinator_of(entry)
        assert [r["register"] for r in coordinator.guards.resets] == ["energy_import_tariff_1"]
        coordinator.async_confirm_replacement(METER, "energy_import_tariff_1")
        assert coordinator.guards.resets == []


async def test_new_meter_raises_repair(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> None:
    """A new equipment identifier where the main meter was: new entities from its own readings, a repair issue."""
    new_id = "4530303434303037333832323436309999"
    swapped = set_line(energy("0.500"), f"0-0:96.1.1({METER})".encode(), f"0-0:96.1.1({new_id})".encode())
    async with loaded_entry(hass, [BASE]) as (entry, pty):
        sender = StepSender(pty, entry)
        old = record_states(hass, ENERGY)
        await sender.send(swapped)
        await hass.async_block_till_done()
        assert old == []  # the old meter's sensor keeps its last reading
        new_entity = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{new_id}_energy_import_tariff_1")
        assert new_entity is not None
        assert state_of(hass, new_entity).state == "0.500"
        issue = ir.async_get(hass).async_get_issue(DOMAIN, f"meter_changed_{entry.entry_id}_{METER}")
        assert issue is not None
        assert coordinator_of(entry).guards.rejected == {}


# ---- write policy (frozen clock, one telegram per simulated second) ----


class Clock:
    """Ticks the fake clock, sends telegrams and runs the boundary timer as Home Assistant would."""

    def __init__(self, hass: HomeAssistant, freezer: FakeClock, sender: StepSender) -> None:
        self.hass = hass
        self.freezer = freezer
        self.sender = sender
        self.coordinator = coordinator_of(sender.entry)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing the pre-boundary timer (xx:x4:59.3) when it falls due."""
        now = self.freezer.now
        end = now + timedelta(seconds=seconds)
        fire = now.replace(second=59, microsecond=300000) + timedelta(minutes=(4 - now.minute % 5) % 5)
        if fire <= now:
            fire += timedelta(minutes=5)
        while fire <= end:
            self.freezer.move_to(fire)
            self.coordinator._async_boundary(fire)
            await self.hass.async_block_till_done()
            fire += timedelta(minutes=5)
        self.freezer.move_to(end)

    async def send(self, telegram: bytes, after: float = 1.0) -> datetime:
        """Advance, then send one telegram; returns its (frozen) receive time."""
        await self.advance(after)
        await self.sender.send(telegram)
        await self.hass.async_block_till_done()
        return self.freezer.now


async def test_counter_policy(hass: HomeAssistant, frozen: FakeClock) -> None:
    """At 1 Hz a counter is written at most once a minute, and with the last reading before each boundary."""
    async with loaded_entry(hass, [BASE], options={CONF_COUNTER_INTERVAL: 60}) as (entry, pty):
        clock = Clock(hass, frozen, StepSender(pty, entry))
        times: list[datetime] = []
        written = record_states(hass, ENERGY, times, frozen)
        readings: list[tuple[datetime, Decimal]] = []
        value = Decimal("2130.115")
        for _ in range(660):  # 11 minutes at 1 Hz, 1 Wh per second (3.6 kW)
            value += Decimal("0.001")
            readings.append((await clock.send(energy(str(value))), value))
        await hass.async_block_till_done()

        assert len(written) <= 660 / 60 + 2 * 3 + 1
        boundaries = [
            datetime.fromisoformat(t) for t in ("2024-01-15T10:05:00+00:00", "2024-01-15T10:10:00+00:00")
        ]
        for boundary in boundaries:
            last_reading = max(v for t, v in readings if t < boundary)
            last_write = [s for s, t in zip(written, times, strict=True) if t < boundary][-1]
            assert Decimal(last_write.state) == last_reading, boundary
        # Between boundaries, writes are at least counter_interval apart.
        for before, after in itertools.pairwise(times):
            near_boundary = any(abs((after - b).total_seconds()) <= 2 for b in boundaries) or any(
                abs((before - b).total_seconds()) <= 2 for b in boundaries
            )
            assert near_boundary or (after - before).total_seconds() >= 60, (before, after)


async def test_counter_flushed_when_telegrams_stop_before_boundary(
    hass: HomeAssistant, frozen: FakeClock
) -> None:
    """Telegrams lost just before a boundary: the timer writes the reading that was held back."""
    with patch(
        "custom_components.smartmeter.coordinator.async_track_utc_time_change", return_value=lambda: None
    ) as track:
        async with loaded_entry(hass, [BASE], options={CONF_COUNTER_INTERVAL: 60}) as (entry, pty):
            (call,) = track.call_args_list
            assert call.kwargs == {"minute": range(4, 60, 5), "second": 59}
            boundary_timer = call.args[1]
            sender = StepSender(pty, entry)
            written = record_states(hass, ENERGY)
            frozen.move_to("2024-01-15 10:03:59+00:00")
            for n in range(31):  # 10:04:00 ... 10:04:30 at 1 Hz, then the meter goes quiet
                frozen.tick(1)
                await sender.send(energy(f"2130.{200 + n}"))
            await hass.async_block_till_done()
            # Written at 10:04:00 (a minute after the first); the rest held back.
            assert states_of(written) == ["2130.200"]
            frozen.move_to("2024-01-15 10:04:59.300+00:00")
            boundary_timer(frozen.now)
            await hass.async_block_till_done()
            assert states_of(written) == ["2130.200", "2130.230"]
            boundary_timer(frozen.now)  # nothing held back any more
            assert states_of(written) == ["2130.200", "2130.230"]
            # Unavailable: nothing to write at a boundary.
            frozen.move_to("2024-01-15 10:05:30+00:00")
            await sender.send(energy("2130.240"))
            coordinator_of(entry).source._set_connected(False)
            await hass.async_block_till_done()
            boundary_timer(frozen.now)
            assert states_of(written)[-1] == STATE_UNAVAILABLE


async def test_measurement_policy(hass: HomeAssistant, frozen: FakeClock) -> None:
    """Power is written as the mean over a minute, and at once when it moves beyond the deadband."""
    async with loaded_entry(hass, [power("1.000")], options={CONF_MEASUREMENT_INTERVAL: 60}) as (entry, pty):
        clock = Clock(hass, frozen, StepSender(pty, entry))
        written = record_states(hass, POWER)
        tariff = record_states(hass, TARIFF)
        for second in range(60):
            await clock.send(power("1.090" if second % 2 == 0 else "1.000"))  # within 10 %
        await hass.async_block_till_done()
        assert [float(s) for s in states_of(written)] == pytest.approx([1045.0])  # the mean, in W
        await clock.send(power("2.500"))  # beyond 10 %: at once
        await hass.async_block_till_done()
        assert [float(s) for s in states_of(written)] == pytest.approx([1045.0, 2500.0])
        assert tariff == []  # unchanged: never written again
        await clock.send(set_register(power("2.500"), "0-0:96.14.0", "2"))
        await hass.async_block_till_done()
        assert states_of(tariff) == ["2"]


async def test_live_mode_writes_every_telegram(hass: HomeAssistant, frozen: FakeClock) -> None:
    """Live mode: every telegram is written, counters and measurements alike."""
    async with loaded_entry(hass, [BASE], options=LIVE) as (entry, pty):
        clock = Clock(hass, frozen, StepSender(pty, entry))
        counter = record_states(hass, ENERGY)
        measurement = record_states(hass, POWER)
        for n in range(20):
            await clock.send(power(f"1.{n:03d}", energy(f"2130.{116 + n}")))
        await hass.async_block_till_done()
        assert len(counter) == 20
        assert len(measurement) == 20


async def test_options_apply_without_restart(hass: HomeAssistant) -> None:
    """Write policy and guard limits from the options flow, applied by a reload."""
    async with loaded_entry(hass, [BASE], options={CONF_TIME_ZONE: "Europe/Amsterdam"}) as (entry, _pty):
        coordinator = coordinator_of(entry)
        assert coordinator.policy.live is False
        assert coordinator.policy.counter_interval == 300
        assert coordinator.policy.measurement_interval == 300
        assert coordinator.guards.rates[Medium.ELECTRICITY] == 55
        result = await hass.config_entries.options.async_init(entry.entry_id)
        schema = {str(key): key for key in result["data_schema"].schema}
        assert list(schema) == [
            CONF_TIME_ZONE,
            CONF_LIVE,
            CONF_COUNTER_INTERVAL,
            CONF_MEASUREMENT_INTERVAL,
            CONF_DEADBAND,
            CONF_MAX_POWER,
            CONF_MAX_GAS_FLOW,
            CONF_MAX_WATER_FLOW,
            CONF_WATER_QUIET,
            CONF_BURST_FLOW,
            CONF_BURST_MINUTES,
            CONF_LEAK_REPAIR_HOURS,
            CONF_HIGH_DAY_FACTOR,
            CONF_OUTAGE_TIMEOUT,
        ]
        assert schema[CONF_COUNTER_INTERVAL].description == {"suggested_value": 300}
        assert schema[CONF_WATER_QUIET].description == {"suggested_value": 30}
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                CONF_TIME_ZONE: "Europe/Amsterdam",
                CONF_LIVE: True,
                CONF_COUNTER_INTERVAL: 10,
                CONF_MEASUREMENT_INTERVAL: 30,
                CONF_DEADBAND: 5,
                CONF_MAX_POWER: 17.3,
                CONF_MAX_GAS_FLOW: 6,
                CONF_MAX_WATER_FLOW: 2.5,
                CONF_WATER_QUIET: 60,
                CONF_BURST_FLOW: 20,
                CONF_BURST_MINUTES: 15,
                CONF_LEAK_REPAIR_HOURS: 6,
                CONF_HIGH_DAY_FACTOR: 3,
                CONF_OUTAGE_TIMEOUT: 120,
            },
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        reloaded = coordinator_of(entry)
        assert reloaded is not coordinator
        alerts = reloaded.alerts.options
        assert alerts.water.quiet_period == timedelta(minutes=60)
        assert alerts.water.burst_flow_l_min == 20
        assert alerts.water.burst_duration == timedelta(minutes=15)
        assert alerts.leak_repair_after == timedelta(hours=6)
        assert alerts.high_day_factor == 3
        assert alerts.silence_timeout == timedelta(seconds=120)
        assert reloaded.policy.live is True
        assert reloaded.policy.counter_interval == 10
        assert reloaded.policy.measurement_interval == 30
        assert reloaded.policy.deadband == pytest.approx(0.05)
        assert reloaded.guards.rates == {
            Medium.ELECTRICITY: Decimal("17.3"),
            Medium.GAS: Decimal(6),
            Medium.WATER: Decimal("2.5"),
            Medium.HOT_WATER: Decimal("2.5"),
        }
        limits = reloaded.guards.guards[(METER, "energy_import_tariff_1")].limits
        assert limits.max_rate_per_hour == Decimal("17.3")

        # The form shows the stored options next time; a bad time zone keeps what was typed.
        result = await hass.config_entries.options.async_init(entry.entry_id)
        schema = {str(key): key for key in result["data_schema"].schema}
        assert schema[CONF_LIVE].description == {"suggested_value": True}
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {CONF_TIME_ZONE: "Mars/Base", CONF_COUNTER_INTERVAL: 20}
        )
        assert result["errors"] == {CONF_TIME_ZONE: "invalid_time_zone"}
        schema = {str(key): key for key in result["data_schema"].schema}
        assert schema[CONF_COUNTER_INTERVAL].description == {"suggested_value": 20}
