"""The shared meter model: register lookup, the main meter of a frame, link counters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from custom_components.smartmeter.core.models import Frame, Integrity, LinkStats, Medium, Meter, Register


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _reg(key: str, value: str, obis: str = "1-0:1.8.0") -> Register:
    return Register(obis=obis, key=key, value=Decimal(value), unit="kWh")


def test_register_lookup_and_values_last_wins() -> None:
    first = _reg("energy_import", "1.000")
    again = _reg("energy_import", "2.000")
    other = _reg("energy_export", "3.000", "1-0:2.8.0")
    meter = Meter(id="M1", medium=Medium.ELECTRICITY, channel=0, registers=(first, other, again))
    # register() answers the first one with the key, values the last one
    assert meter.register("energy_import") is first
    assert meter.register("energy_export") is other
    assert meter.register("gas_volume") is None
    assert meter.values == {"energy_import": again, "energy_export": other}
    assert Meter(id="M2", medium=Medium.GAS, channel=1).register("energy_import") is None


def test_main_meter_is_channel_0_wherever_it_is() -> None:
    gas = Meter(id="G", medium=Medium.GAS, channel=1)
    water = Meter(id="W", medium=Medium.WATER, channel=2)
    electricity = Meter(id="E", medium=Medium.ELECTRICITY, channel=0)
    frame = Frame(protocol="dsmr", integrity=Integrity.VALID, meters=(gas, water, electricity))
    assert frame.main is electricity


def test_main_meter_without_channel_0_is_the_first() -> None:
    gas = Meter(id="G", medium=Medium.GAS, channel=1)
    water = Meter(id="W", medium=Medium.WATER, channel=2)
    assert Frame(protocol="mbus", integrity=Integrity.ABSENT, meters=(gas, water)).main is gas


def test_frame_without_meters_has_no_main() -> None:
    assert Frame(protocol="sml", integrity=Integrity.VALID, meters=()).main is None


def test_link_stats_as_dict_reports_every_counter() -> None:
    stats = LinkStats()
    assert stats.as_dict() == {
        "frames_ok": 0,
        "frames_bad_checksum": 0,
        "frames_undecodable": 0,
        "frames_decrypt_failed": 0,
        "bytes_discarded": 0,
        "connects": 0,
        "disconnects": 0,
        "last_error": None,
    }
    stats.frames_ok += 3
    stats.bytes_discarded = 17
    stats.last_error = "CRC mismatch"
    as_dict = stats.as_dict()
    assert (as_dict["frames_ok"], as_dict["bytes_discarded"], as_dict["last_error"]) == (
        3,
        17,
        "CRC mismatch",
    )
    # a snapshot, not a view
    stats.frames_ok += 1
    assert as_dict["frames_ok"] == 3
