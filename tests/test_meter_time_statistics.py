"""External statistics booked in the hour the meter stamped (real telegrams, real recorder)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from unittest.mock import MagicMock, patch
from zoneinfo import ZoneInfo

import pytest
from freezegun.api import FrozenDateTimeFactory

from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.models import StatisticMeanType
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
    get_metadata,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done
from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

from custom_components.smartmeter.const import DOMAIN
from custom_components.smartmeter.core.models import HistoryEntry, Medium, Meter, Register
from custom_components.smartmeter.core.p1 import decode_telegram, parse_timestamp
from custom_components.smartmeter.statistics import MeterTimeStatistics, hour_of, readings, statistic_id
from tests.common import AM550, FLUVIUS_BAD_GAS, KAIFA, corpus_telegram, entry_data, replace_value

STATS = "custom_components.smartmeter.statistics"
AMS = ZoneInfo("Europe/Amsterdam")
ACE4000 = "dsmr/nl_itron_ace4000_gprs.txt"
AM550_GAS_ID = "4730303339303031393336393930363139"
KAIFA_GAS_ID = "4819243993373755377509728609491464"
AM550_GAS_LINE = b"0-2:24.2.1(200426223001S)(00246.138*m3)"
KAIFA_GAS_LINE = b"0-1:24.2.1(161129200000W)(00981.443*m3)"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _sub(telegram: bytes, meter_id: str) -> Meter:
    for meter in decode_telegram(telegram).meters:
        if meter.id == meter_id:
            return meter
    raise AssertionError(f"no meter {meter_id}")


def am550_gas(stamp: str, value: str) -> Meter:
    """The AM550's gas meter as a DSMR 5 telegram with this gas line reports it."""
    line = f"0-2:24.2.1({stamp})({value}*m3)".encode()
    return _sub(replace_value(corpus_telegram(AM550), AM550_GAS_LINE, line, fix_crc=True), AM550_GAS_ID)


def kaifa_gas(stamp: str, value: str) -> Meter:
    """The Kaifa's gas meter as a DSMR 4.2 telegram with this gas line reports it."""
    line = f"0-1:24.2.1({stamp})({value}*m3)".encode()
    return _sub(replace_value(corpus_telegram(KAIFA), KAIFA_GAS_LINE, line, fix_crc=True), KAIFA_GAS_ID)


def gas(stamp: datetime | None, value: str, *, unit: str | None = "m3", meter_id: str = "G1") -> Meter:
    """A gas sub-meter with one stamped reading."""
    return Meter(
        id=meter_id,
        medium=Medium.GAS,
        channel=1,
        registers=(Register("0-1:24.2.1", "gas", Decimal(value), unit, stamp),),
        parent_id="E1",
    )


def dsmr5_stamps(start: datetime, count: int) -> Iterator[datetime]:
    """Every 5 minutes (local meter time) from ``start``."""
    for n in range(count):
        yield start + timedelta(minutes=5 * n)


def stamp_text(local: datetime) -> str:
    """A DSMR stamp ``YYMMDDhhmmssX`` of a local time."""
    flag = "S" if local.dst() else "W"
    return local.strftime("%y%m%d%H%M%S") + flag


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """Prepare the recorder before ``hass`` (the autouse custom-integrations fixture sets ``hass`` up first)."""


@pytest.fixture
def entry(hass: HomeAssistant) -> MockConfigEntry:
    """A config entry (not set up: the statistics need only its options)."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="E1", title="Electricity meter", data=entry_data("/dev/null", "E1")
    )
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
def writes() -> Iterator[MagicMock]:
    """Every call of async_add_external_statistics, still going to the recorder."""
    with patch(f"{STATS}.async_add_external_statistics", wraps=async_add_external_statistics) as spy:
        yield spy


async def _rows(hass: HomeAssistant, stat_id: str) -> list[tuple[datetime, Any, Any]]:
    """The statistic's hourly rows: (start UTC, state, sum)."""
    await async_wait_recording_done(hass)
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        _utc("2000-01-01T00:00"),
        None,
        {stat_id},
        "hour",
        None,
        {"state", "sum"},
    )
    return [
        (datetime.fromtimestamp(row["start"], UTC), row["state"], row["sum"])
        for row in found.get(stat_id, [])
    ]


def _expect(*rows: tuple[str, float, float]) -> list[tuple[datetime, Any, Any]]:
    return [(_utc(start), pytest.approx(state), pytest.approx(total)) for start, state, total in rows]


def test_hour_of() -> None:
    assert hour_of(_utc("2024-01-15T13:00")) == _utc("2024-01-15T12:00")
    assert hour_of(_utc("2024-01-15T13:00:01")) == _utc("2024-01-15T13:00")
    assert hour_of(_utc("2024-01-15T13:59:59.5")) == _utc("2024-01-15T13:00")
    assert hour_of(datetime(2024, 1, 15, 14, 0, tzinfo=AMS)) == _utc("2024-01-15T12:00")


def test_statistic_id() -> None:
    assert statistic_id(AM550_GAS_ID, "gas") == f"smartmeter:{AM550_GAS_ID}_gas"
    assert statistic_id("G 12-AB", "gas") == "smartmeter:g_12_ab_gas"
    assert statistic_id("__X__", "obis_0_n_24_2_1") == "smartmeter:x_obis_0_n_24_2_1"


async def test_dsmr5_five_minute_stamps(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    writes: MagicMock,
) -> None:
    """Readings every 5 minutes: each hour holds the reading that closes it; one write per new stamp at most."""
    stats = MeterTimeStatistics(hass, entry)
    stat_id = statistic_id(AM550_GAS_ID, "gas")
    value = Decimal("246.138")
    # 12:05 .. 15:00 local (CET, UTC+1); no gas used from 13:30 to 14:00.
    for n, local in enumerate(dsmr5_stamps(datetime(2024, 1, 15, 12, 5, tzinfo=AMS), 36)):
        if not _utc("2024-01-15T12:30") <= local.astimezone(UTC) < _utc("2024-01-15T13:00"):
            value += Decimal("0.011")
        meter = am550_gas(stamp_text(local), f"{value:09.3f}")
        for _ in range(3):  # the same reading in the next telegrams (one a second)
            await stats.async_book(meter)
        if n == 0:
            first = value
    last = value
    rows = await _rows(hass, stat_id)
    at_13 = first + 11 * Decimal("0.011")  # 12:05 .. 13:00: 12 readings
    at_14 = at_13 + 5 * Decimal("0.011") + Decimal("0.011")  # 13:05 .. 13:25 and 14:00 increase
    assert rows == _expect(
        ("2024-01-15T11:00", float(at_13), float(at_13 - first)),
        ("2024-01-15T12:00", float(at_14), float(at_14 - first)),
        ("2024-01-15T13:00", float(last), float(last - first)),
    )
    # One write per new stamp that changed the value or opened an hour: the 6
    # unchanged readings of 13:30 .. 13:55 wrote nothing; repeats never write.
    assert writes.call_count == 36 - 6
    meta = await get_instance(hass).async_add_executor_job(
        partial(get_metadata, hass, statistic_ids={stat_id})
    )
    _meta_id, metadata = meta[stat_id]
    assert metadata["source"] == DOMAIN
    assert metadata["has_sum"] is True
    assert metadata["mean_type"] is StatisticMeanType.NONE
    assert metadata["unit_of_measurement"] == "m³"
    assert meter.serial_number == "G0039001936990619"  # the readable form of the hex ID
    assert metadata["name"] == "Gas meter G0039001936990619 gas (meter time)"


async def test_dsmr4_hourly_stamps_delivered_late(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    writes: MagicMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The reading for 13:00-14:00 arriving at 14:07 is booked in the 13:00 hour, not 14:00."""
    stats = MeterTimeStatistics(hass, entry)
    stat_id = statistic_id(KAIFA_GAS_ID, "gas")
    for local, value in (
        ("161129130000W", "00981.443"),
        ("161129140000W", "00981.943"),
        ("161129150000W", "00982.043"),
    ):
        meter = kaifa_gas(local, value)
        arrival = parse_timestamp(local, AMS)
        assert arrival is not None
        for minutes in (7, 8, 30):  # telegrams every 10 s repeat the stamped reading
            freezer.move_to(arrival + timedelta(minutes=minutes))
            await stats.async_book(meter)
    assert await _rows(hass, stat_id) == _expect(
        ("2016-11-29T11:00", 981.443, 0.0),  # 12:00-13:00 local
        ("2016-11-29T12:00", 981.943, 0.5),  # 13:00-14:00 local, arrived 14:07
        ("2016-11-29T13:00", 982.043, 0.6),
    )
    assert writes.call_count == 3


async def test_dst_change(recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Hourly stamps through the autumn change: 02:00 summer and 02:00 winter are two hours."""
    stats = MeterTimeStatistics(hass, entry)
    for text, value in (
        ("241027010000S", "100.0"),
        ("241027020000S", "100.1"),
        ("241027020000W", "100.3"),
        ("241027030000W", "100.6"),
    ):
        await stats.async_book(kaifa_gas(text, value))
    assert await _rows(hass, statistic_id(KAIFA_GAS_ID, "gas")) == _expect(
        ("2024-10-26T22:00", 100.0, 0.0),
        ("2024-10-26T23:00", 100.1, 0.1),
        ("2024-10-27T00:00", 100.3, 0.3),
        ("2024-10-27T01:00", 100.6, 0.6),
    )


async def test_ace4000_history(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry, writes: MagicMock
) -> None:
    """The ACE4000 sends its last 24 hourly readings in each telegram: all are booked, once."""
    telegram = corpus_telegram(ACE4000)
    frame = decode_telegram(telegram)
    meter = next(m for m in frame.meters if m.channel)
    assert meter.medium is Medium.GAS
    register = meter.register("gas")
    assert register is not None
    assert len(register.history) == 24
    stats = MeterTimeStatistics(hass, entry)
    await stats.async_book(meter)
    await stats.async_book(
        next(m for m in decode_telegram(telegram).meters if m.channel)
    )  # the next telegram
    rows = await _rows(hass, statistic_id(meter.id, "gas"))
    first = Decimal("1237.560")
    expected = []
    for entry_ in register.history:
        assert entry_.timestamp is not None
        assert entry_.value is not None
        expected.append((hour_of(entry_.timestamp), float(entry_.value), float(entry_.value - first)))
    assert rows == [(start, pytest.approx(state), pytest.approx(total)) for start, state, total in expected]
    assert rows[0][0] == _utc("2018-12-31T12:00")  # stamped 14:00 CET: the 13:00-14:00 local hour
    assert rows[-1][0] == _utc("2019-01-01T11:00")
    assert rows[-1][2] == pytest.approx(1240.690 - 1237.560)
    assert writes.call_count == 1
    assert len(writes.call_args.args[2]) == 24

    # After a restart the same telegram books nothing again.
    restarted = MeterTimeStatistics(hass, entry)
    await restarted.async_book(meter)
    assert writes.call_count == 1
    assert await _rows(hass, statistic_id(meter.id, "gas")) == rows

    # An hour later the meter drops its oldest reading and adds a new one: only that one is booked.
    newest = HistoryEntry(datetime(2019, 1, 1, 14, tzinfo=AMS), Decimal("1240.990"), "m3")
    shifted = replace(
        register, value=newest.value, timestamp=newest.timestamp, history=(*register.history[1:], newest)
    )
    await restarted.async_book(replace(meter, registers=(shifted,)))
    assert writes.call_count == 2
    assert len(writes.call_args.args[2]) == 1
    assert (await _rows(hass, statistic_id(meter.id, "gas")))[-1] == (
        _utc("2019-01-01T12:00"),
        pytest.approx(1240.990),
        pytest.approx(1240.990 - 1237.560),
    )


async def test_restart_continues_the_sum(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry, writes: MagicMock
) -> None:
    """A new instance (a restart in the middle of an hour) continues the last row: no gap, no duplicate."""
    stat_id = statistic_id("G1", "gas")
    before = MeterTimeStatistics(hass, entry)
    for stamp, value in (
        ("2024-01-15T11:00", "10.000"),
        ("2024-01-15T11:05", "10.100"),
        ("2024-01-15T11:10", "10.200"),
    ):
        await before.async_book(gas(_utc(stamp), value))
    await async_wait_recording_done(hass)

    after = MeterTimeStatistics(hass, entry)
    await after.async_book(gas(_utc("2024-01-15T11:10"), "10.200"))  # the reading it booked last
    await after.async_book(gas(_utc("2024-01-15T10:55"), "9.900"))  # a replayed older hour
    assert writes.call_count == 3
    for stamp, value in (
        ("2024-01-15T11:15", "10.250"),
        ("2024-01-15T12:00", "10.400"),
        ("2024-01-15T12:05", "10.500"),
    ):
        await after.async_book(gas(_utc(stamp), value))
    assert await _rows(hass, stat_id) == _expect(
        ("2024-01-15T10:00", 10.0, 0.0),
        ("2024-01-15T11:00", 10.4, 0.4),
        ("2024-01-15T12:00", 10.5, 0.5),
    )


async def test_restart_after_a_gap(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """Days without readings: the next reading continues the sum from the last row."""
    before = MeterTimeStatistics(hass, entry)
    await before.async_book(gas(_utc("2024-01-15T11:00"), "10.0"))
    await before.async_book(gas(_utc("2024-01-15T12:00"), "11.0"))
    await async_wait_recording_done(hass)
    after = MeterTimeStatistics(hass, entry)
    await after.async_book(gas(_utc("2024-01-18T08:00"), "50.0"))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(
        ("2024-01-15T10:00", 10.0, 0.0),
        ("2024-01-15T11:00", 11.0, 1.0),
        ("2024-01-18T07:00", 50.0, 40.0),
    )


async def test_decrease_and_glitches_ignored(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """A decrease, a zero and an impossible jump are ignored; the sum never moves back."""
    stats = MeterTimeStatistics(hass, entry)
    for stamp, value in (
        ("2024-01-15T11:00", "100.000"),
        ("2024-01-15T11:05", "100.500"),
        ("2024-01-15T11:10", "99.000"),  # decrease
        ("2024-01-15T11:15", "0.000"),  # zero
        ("2024-01-15T11:20", "9100.500"),  # 9000 m3 in 5 minutes
        ("2024-01-15T11:25", "100.600"),
        ("2024-01-15T12:05", "100.700"),
    ):
        await stats.async_book(gas(_utc(stamp), value))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(
        ("2024-01-15T10:00", 100.0, 0.0),
        ("2024-01-15T11:00", 100.6, 0.6),
        ("2024-01-15T12:00", 100.7, 0.7),
    )


async def test_replaced_meter_starts_a_new_baseline(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """A reset that persists (hourly stamps) becomes the new baseline: nothing added, nothing taken."""
    stats = MeterTimeStatistics(hass, entry)
    for stamp, value in (
        ("2024-01-15T10:00", "500.0"),
        ("2024-01-15T11:00", "501.0"),
        ("2024-01-15T12:00", "0.2"),  # the new meter
        ("2024-01-15T13:00", "0.5"),
        ("2024-01-15T14:00", "0.9"),  # third reading of the new series: reset confirmed
        ("2024-01-15T15:00", "1.4"),
    ):
        await stats.async_book(gas(_utc(stamp), value))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(
        ("2024-01-15T09:00", 500.0, 0.0),
        ("2024-01-15T10:00", 501.0, 1.0),
        ("2024-01-15T13:00", 0.9, 1.0),
        ("2024-01-15T14:00", 1.4, 1.5),
    )


async def test_rebase(recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """A confirmed replacement starts the new series at once (loaded series, and series loaded later)."""
    before = MeterTimeStatistics(hass, entry)
    await before.async_book(gas(_utc("2024-01-15T10:00"), "500.0"))
    await before.async_book(gas(_utc("2024-01-15T11:00"), "501.0"))
    before.async_rebase("G1", "gas")
    await before.async_book(gas(_utc("2024-01-15T12:00"), "0.2"))
    await before.async_book(gas(_utc("2024-01-15T13:00"), "0.5"))
    await async_wait_recording_done(hass)

    # After a restart: the rebase arrives before the series is loaded.
    after = MeterTimeStatistics(hass, entry)
    after.async_rebase("G1")
    after.async_rebase("other")
    await after.async_book(gas(_utc("2024-01-15T14:00"), "0.1"))
    await after.async_book(gas(_utc("2024-01-15T15:00"), "0.4"))
    after.async_rebase("G1", "water")  # another register: no effect
    await after.async_book(gas(_utc("2024-01-15T16:00"), "0.6"))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(
        ("2024-01-15T09:00", 500.0, 0.0),
        ("2024-01-15T10:00", 501.0, 1.0),
        ("2024-01-15T11:00", 0.2, 1.0),
        ("2024-01-15T12:00", 0.5, 1.3),
        ("2024-01-15T13:00", 0.1, 1.3),
        ("2024-01-15T14:00", 0.4, 1.6),
        ("2024-01-15T15:00", 0.6, 1.8),
    )


async def test_placeholder_stamps_ignored(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry, writes: MagicMock
) -> None:
    """1970 and impossible stamps (real telegrams), naive and missing stamps book nothing."""
    stats = MeterTimeStatistics(hass, entry)
    am550 = decode_telegram(corpus_telegram(AM550))
    placeholder = next(m for m in am550.meters if m.channel == 1)
    reading = placeholder.register("gas")
    assert reading is not None
    assert reading.timestamp is not None
    assert reading.timestamp.year == 1970
    await stats.async_book(placeholder)
    fluvius = next(m for m in decode_telegram(corpus_telegram(FLUVIUS_BAD_GAS)).meters if m.channel)
    await stats.async_book(fluvius)
    await stats.async_book(gas(datetime(2024, 1, 15, 12), "1.0"))  # naive
    await stats.async_book(gas(None, "1.0"))
    await stats.async_book(gas(datetime(1999, 12, 31, 23, tzinfo=UTC), "1.0"))
    await async_wait_recording_done(hass)
    assert writes.call_count == 0


async def test_what_is_booked(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry, writes: MagicMock
) -> None:
    """Sub-meters' cumulative stamped readings only, in Home Assistant units."""
    stats = MeterTimeStatistics(hass, entry)
    stamp = _utc("2024-01-15T12:00")
    main = decode_telegram(corpus_telegram(AM550)).meters[0]
    await stats.async_book(main)  # the main meter: its sensors are booked by Home Assistant
    await stats.async_book(replace(gas(stamp, "1.0"), channel=0))
    heat = Meter(
        id="H1",
        medium=Medium.HEAT,
        channel=2,
        registers=(
            Register("0-2:24.2.1", "heat", Decimal("12.5"), "GJ", stamp),
            Register(
                "0-2:24.2.1", "no_unit", Decimal("1"), None, stamp
            ),  # not the reading: no unit to assume
            Register("0-2:24.4.0", "valve_position", Decimal(1)),
            Register("0-2:1.6.0", "peak", Decimal("3.2"), "kW", stamp),  # stamped, not cumulative
            Register("0-2:96.1.0", "equipment_id", "H1"),
        ),
        serial_number="HEAT-1",
        parent_id="E1",
    )
    electricity = Meter(
        id="M1",
        medium=Medium.ELECTRICITY,
        channel=3,
        registers=(Register("0-3:24.2.1", "energy_import_total", Decimal("12345.6"), "kWh", stamp),),
        parent_id="E1",
    )
    await stats.async_book(heat)
    await stats.async_book(electricity)
    await stats.async_book(gas(stamp, "7.5", unit=None, meter_id="G2"))  # gas without a unit: m3
    await async_wait_recording_done(hass)
    booked = {call.args[1]["statistic_id"]: call.args[1] for call in writes.call_args_list}
    assert sorted(booked) == ["smartmeter:g2_gas", "smartmeter:h1_heat", "smartmeter:m1_energy_import_total"]
    assert booked["smartmeter:h1_heat"]["unit_of_measurement"] == "GJ"
    assert booked["smartmeter:h1_heat"]["name"] == "Heat meter HEAT-1 heat (meter time)"
    assert booked["smartmeter:m1_energy_import_total"]["unit_of_measurement"] == "kWh"
    assert (
        booked["smartmeter:m1_energy_import_total"]["name"]
        == "Electricity meter M1 energy_import_total (meter time)"
    )
    assert booked["smartmeter:g2_gas"]["unit_of_measurement"] == "m³"
    for metadata in booked.values():
        if "unit_class" in metadata:  # Home Assistant 2025.11+
            assert metadata["unit_class"] == (
                "volume" if metadata["unit_of_measurement"] == "m³" else "energy"
            )
    assert await _rows(hass, "smartmeter:h1_heat") == _expect(("2024-01-15T11:00", 12.5, 0.0))


async def test_unit_change_ignored(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """A reading in another unit than the series' is not mixed in."""
    stats = MeterTimeStatistics(hass, entry)
    await stats.async_book(gas(_utc("2024-01-15T11:00"), "10.0"))
    await stats.async_book(gas(_utc("2024-01-15T12:00"), "10000.0", unit="l"))
    await stats.async_book(gas(_utc("2024-01-15T13:00"), "10.5"))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(
        ("2024-01-15T10:00", 10.0, 0.0),
        ("2024-01-15T12:00", 10.5, 0.5),
    )


@pytest.mark.parametrize(
    ("options", "booked_sum"),
    [
        ({}, 5.0),  # 5 m3 in an hour: below the default 25 m3/h
        ({"max_gas_flow_m3h": 2}, 0.0),  # above a G1.6's 2 m3/h: a glitch
        ({"max_gas_flow_m3h": 2.5}, 0.0),
        ({"max_gas_flow_m3h": True}, 5.0),  # not a number: the default
        ({"max_gas_flow_m3h": 0}, 5.0),
    ],
)
async def test_max_flow_option(
    recorder_mock: Recorder, hass: HomeAssistant, options: dict[str, Any], booked_sum: float
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="E1", data=entry_data("/dev/null", "E1"), options=options
    )
    entry.add_to_hass(hass)
    stats = MeterTimeStatistics(hass, entry)
    await stats.async_book(gas(_utc("2024-01-15T11:00"), "10.0"))
    await stats.async_book(gas(_utc("2024-01-15T12:00"), "15.0"))
    rows = await _rows(hass, statistic_id("G1", "gas"))
    assert rows[-1][2] == pytest.approx(booked_sum)


async def test_concurrent_first_readings(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """Frames booked in parallel tasks: the series is loaded once and readings stay in order."""
    stats = MeterTimeStatistics(hass, entry)
    with patch(f"{STATS}.get_last_statistics", wraps=get_last_statistics) as loads:
        await asyncio.gather(
            stats.async_book(gas(_utc("2024-01-15T11:00"), "10.0")),
            stats.async_book(gas(_utc("2024-01-15T11:05"), "10.2")),
            stats.async_book(gas(_utc("2024-01-15T12:05"), "10.3")),
        )
    assert loads.call_count == 1
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(
        ("2024-01-15T10:00", 10.0, 0.0),
        ("2024-01-15T11:00", 10.2, 0.2),
        ("2024-01-15T12:00", 10.3, 0.3),
    )


async def test_database_errors(
    recorder_mock: Recorder, hass: HomeAssistant, entry: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable last row books nothing (a wrong sum would be a spike) and is retried with the next reading."""
    stats = MeterTimeStatistics(hass, entry)
    with patch(f"{STATS}.get_last_statistics", side_effect=RuntimeError("database is locked")):
        await stats.async_book(gas(_utc("2024-01-15T11:00"), "10.0"))
    assert "Could not read the last statistics of smartmeter:g1_gas" in caplog.text
    not_ready: asyncio.Future[bool] = hass.loop.create_future()
    not_ready.set_result(False)
    with patch.object(get_instance(hass), "async_db_ready", not_ready):
        await stats.async_book(gas(_utc("2024-01-15T11:05"), "10.1"))
    assert await _rows(hass, statistic_id("G1", "gas")) == []
    await stats.async_book(gas(_utc("2024-01-15T11:10"), "10.2"))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(("2024-01-15T11:00", 10.2, 0.0))


@pytest.mark.parametrize(
    ("last_sum", "last_state", "expected"),
    [
        (7.25, None, ("2024-01-15T11:00", 3.5, 7.75)),  # no state: the next reading is a baseline on that sum
        (None, 2.0, ("2024-01-15T11:00", 3.5, 1.5)),  # no sum: it starts from 0
    ],
)
async def test_last_row_incomplete(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    last_sum: float | None,
    last_state: float | None,
    expected: tuple[str, float, float],
) -> None:
    """A last row without a state or a sum (written by someone else) still gives a consistent series."""
    stats = MeterTimeStatistics(hass, entry)
    start = _utc("2024-01-15T10:00").timestamp()
    last = {"smartmeter:g1_gas": [{"start": start, "sum": last_sum, "state": last_state}]}
    with patch(f"{STATS}.get_last_statistics", return_value=last):
        await stats.async_book(gas(_utc("2024-01-15T11:30"), "3.0"))
    await stats.async_book(gas(_utc("2024-01-15T11:35"), "3.5"))
    assert await _rows(hass, statistic_id("G1", "gas")) == _expect(expected)


async def test_without_recorder(hass: HomeAssistant, entry: MockConfigEntry, writes: MagicMock) -> None:
    """Without a recorder there is nothing to book into."""
    stats = MeterTimeStatistics(hass, entry)
    await stats.async_book(gas(_utc("2024-01-15T11:00"), "10.0"))
    assert writes.call_count == 0


def test_history_entries_without_values() -> None:
    register = Register(
        "0-3:23.1.0",
        "gas",
        Decimal(2),
        "m3",
        _utc("2024-01-15T12:00"),
        history=(
            HistoryEntry(_utc("2024-01-15T11:00"), Decimal(1)),
            HistoryEntry(_utc("2024-01-15T11:30"), None),
            HistoryEntry(None, Decimal(3)),
            HistoryEntry(_utc("2024-01-15T12:00"), Decimal(2)),
        ),
    )
    assert readings(register) == [
        (_utc("2024-01-15T11:00"), Decimal(1)),
        (_utc("2024-01-15T12:00"), Decimal(2)),
    ]
    assert readings(replace(register, history=(), value=Decimal("NaN"))) == []
