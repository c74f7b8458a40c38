"""Diagnostics: last telegrams and link counters, with equipment IDs and the key redacted."""

from __future__ import annotations

import json

import pytest
from syrupy.assertion import SnapshotAssertion

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.smartmeter.const import CONF_TIME_ZONE
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import parse_key
from tests.common import (
    AM550,
    AUSTRIA,
    BAD_CRC,
    FLUVIUS,
    OTHER_KEY,
    SMARTY,
    SMARTY_KEY,
    corpus_telegram,
    loaded_entry,
    smarty_frame,
)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots in Home Assistant's format, in tests/snapshots."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


_ID_KEYS = ("equipment_id", "meter_serial", "logical_device_name", "meter_id")


def _secrets(telegram: bytes, key: str | None = None) -> set[str]:
    """The key, and every equipment identifier the telegram carries (raw and readable).

    A meter without an identifier line is known by its header (type and
    firmware, not a serial): that stays readable in the telegram text.
    """
    frame = decode_telegram(telegram, key=parse_key(key) if key else None)
    found = {key} if key else set()
    for meter in frame.meters:
        for reg in meter.registers:
            if reg.key in _ID_KEYS and isinstance(reg.value, str) and reg.value:
                found.add(reg.value)
                if reg.value == meter.id and meter.serial_number:
                    found.add(meter.serial_number)
    return found


@pytest.mark.parametrize(
    ("sample", "key"),
    [(AM550, None), (FLUVIUS, None), (AUSTRIA, None), (SMARTY, SMARTY_KEY)],
    ids=["nl_am550", "be_fluvius", "at_sagemcom", "lu_smarty_encrypted"],
)
async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    snapshot: SnapshotAssertion,
    sample: str,
    key: str | None,
) -> None:
    """Diagnostics hold the decoded meters and raw telegrams, but no identifier and no key."""
    telegram = corpus_telegram(sample)
    wire = smarty_frame() if key else telegram
    async with loaded_entry(hass, [wire], key=key, options={CONF_TIME_ZONE: "Europe/Amsterdam"}) as (
        entry,
        pty,
    ):
        diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
        # The port is a pty whose number varies: redacted by value, like the link counters' timing.
        assert diagnostics["entry"]["url"] == pty.path
        diagnostics["entry"]["url"] = "/dev/pts/N"
        link = diagnostics["link"]
        assert link["frames_ok"] >= 1
        assert link["connects"] == 1
        diagnostics["link"] = {name: int(value) > 0 for name, value in link.items() if name != "last_error"}
        diagnostics["telegrams"] = diagnostics["telegrams"][:1]
        diagnostics["received_frames"] = diagnostics["received_frames"][:1]
        assert diagnostics == snapshot

    dump = json.dumps(diagnostics)
    secrets = _secrets(telegram, key)
    assert len(secrets) >= (2 if key or sample != AUSTRIA else 0)
    for secret in secrets:
        assert secret not in dump
        assert secret.lower() not in dump.lower()


async def test_diagnostics_entry_not_loaded(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, snapshot: SnapshotAssertion
) -> None:
    """An entry waiting for its meter (setup retry) still gives diagnostics: what the port delivered."""
    from unittest.mock import patch

    from homeassistant.config_entries import ConfigEntryState

    from custom_components.smartmeter.const import FAILED_SETUPS

    telegram = corpus_telegram(BAD_CRC)  # every telegram has a wrong CRC
    with patch("custom_components.smartmeter.FIRST_FRAME_TIMEOUT", 0.3):
        async with loaded_entry(
            hass, [telegram], meter="5341473130333037303031313430303453414731", key=OTHER_KEY
        ) as (
            entry,
            _pty,
        ):
            assert entry.state is ConfigEntryState.SETUP_RETRY
            diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    diagnostics["entry"]["url"] = "/dev/pts/N"
    link = diagnostics["link"]
    assert link["frames_bad_checksum"] >= 1
    assert link["last_error"] == "CRC mismatch"
    diagnostics["link"] = {name: int(value) > 0 for name, value in link.items() if name != "last_error"}
    diagnostics["received_frames"] = diagnostics["received_frames"][:1]
    assert diagnostics == snapshot
    dump = json.dumps(diagnostics)
    for secret in _secrets(telegram) | {OTHER_KEY}:
        assert secret not in dump

    # Removing the entry forgets the failed attempt.
    assert entry.entry_id in hass.data[FAILED_SETUPS]
    await hass.config_entries.async_remove(entry.entry_id)
    assert entry.entry_id not in hass.data[FAILED_SETUPS]


async def test_diagnostics_entry_never_set_up(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, snapshot: SnapshotAssertion
) -> None:
    """A disabled entry: diagnostics show the (redacted) entry and its state only."""
    from homeassistant.config_entries import ConfigEntryDisabler

    from tests.common import mock_entry

    entry = mock_entry(
        "esphome://user:secret@192.0.2.1:6053/?key=secret&port_name=P1",
        "4530303434303037333832323436303139",
        key=SMARTY_KEY,
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_set_disabled_by(entry.entry_id, ConfigEntryDisabler.USER)
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, "smartmeter", {})
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics == snapshot
    assert "secret" not in json.dumps(diagnostics)
    assert SMARTY_KEY not in json.dumps(diagnostics)
