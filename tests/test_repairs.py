"""Repair issues: a replaced meter or reset register, a new main meter; their fix flows over the HTTP API."""

from __future__ import annotations

from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.smartmeter.const import DOMAIN
from custom_components.smartmeter.repairs import (
    async_clear_replacement,
    async_report_new_meter,
    async_report_replacement,
    new_meter_issue_id,
    replacement_issue_id,
)
from tests.common import entry_data

GAS_ID = "4730303332353631323831363736383134"
ELEC_ID = "E0044007032383519"
NEW_ELEC_ID = "E0044007099999999"


class StubCoordinator:
    """Stands in for the entry's coordinator: records the confirmations it gets."""

    def __init__(self) -> None:
        self.confirmed: list[tuple[str, str]] = []

    async def async_confirm_replacement(self, meter_id: str, register_key: str) -> None:
        """Record the confirmation."""
        self.confirmed.append((meter_id, register_key))


class SyncStubCoordinator:
    """A coordinator whose hook is a plain callback."""

    def __init__(self) -> None:
        self.confirmed: list[tuple[str, str]] = []

    def async_confirm_replacement(self, meter_id: str, register_key: str) -> None:
        """Record the confirmation."""
        self.confirmed.append((meter_id, register_key))


@pytest.fixture
async def repairs_client(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, socket_enabled: None
) -> Any:
    """An HTTP client on a Home Assistant with repairs and our integration loaded (no entry set up)."""
    assert await async_setup_component(hass, "repairs", {})
    assert await async_setup_component(hass, DOMAIN, {})
    return await hass_client()


def _entry(
    hass: HomeAssistant, runtime_data: object | None = None, *, loaded: bool = True
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=ELEC_ID, title="Electricity meter", data=entry_data("/dev/null", ELEC_ID)
    )
    entry.add_to_hass(hass)
    if loaded:
        entry.mock_state(hass, ConfigEntryState.LOADED)
    if runtime_data is not None:
        entry.runtime_data = runtime_data
    return entry


async def _start_fix(client: Any, issue_id: str) -> dict[str, Any]:
    response = await client.post("/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": issue_id})
    assert response.status == HTTPStatus.OK, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def _submit(client: Any, flow_id: str) -> dict[str, Any]:
    response = await client.post(f"/api/repairs/issues/fix/{flow_id}", json={})
    assert response.status == HTTPStatus.OK, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_replacement_issue(hass: HomeAssistant) -> None:
    entry = _entry(hass)
    async_report_replacement(hass, entry, GAS_ID, "gas", Decimal("1234.567"), Decimal("0.012"))
    issue_id = replacement_issue_id(entry.entry_id, GAS_ID, "gas")
    assert issue_id == f"replacement_{entry.entry_id}_{GAS_ID}_gas"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "meter_replaced"
    assert issue.is_fixable
    assert not issue.is_persistent
    assert issue.severity is ir.IssueSeverity.WARNING
    assert issue.data == {"entry_id": entry.entry_id, "meter_id": GAS_ID, "register_key": "gas"}
    assert issue.translation_placeholders == {
        "title": "Electricity meter",
        "meter_id": GAS_ID,
        "register": "gas",
        "old_value": "1234.567",
        "new_value": "0.012",
    }
    # Reported again (a second reset): the same issue, updated.
    async_report_replacement(hass, entry, GAS_ID, "gas", None, Decimal("0.020"))
    issues = [key for key in ir.async_get(hass).issues if key[0] == DOMAIN]
    assert issues == [(DOMAIN, issue_id)]
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["old_value"] == "unknown"
    assert issue.translation_placeholders["new_value"] == "0.020"


async def test_clear_replacement(hass: HomeAssistant) -> None:
    entry = _entry(hass)
    other = MockConfigEntry(domain=DOMAIN, unique_id="other", data=entry_data("/dev/null", "other"))
    other.add_to_hass(hass)
    registry = ir.async_get(hass)
    async_report_replacement(hass, entry, ELEC_ID, "energy_import_tariff_1", Decimal(5), Decimal(1))
    async_report_replacement(hass, entry, ELEC_ID, "energy_import_tariff_2", Decimal(5), Decimal(1))
    async_report_replacement(hass, entry, GAS_ID, "gas", Decimal(5), Decimal(1))
    async_report_replacement(hass, other, ELEC_ID, "energy_import_tariff_1", Decimal(5), Decimal(1))
    async_report_new_meter(hass, entry, ELEC_ID, NEW_ELEC_ID)

    async_clear_replacement(hass, entry, ELEC_ID, "energy_import_tariff_2")
    assert (
        registry.async_get_issue(
            DOMAIN, replacement_issue_id(entry.entry_id, ELEC_ID, "energy_import_tariff_2")
        )
        is None
    )
    assert registry.async_get_issue(
        DOMAIN, replacement_issue_id(entry.entry_id, ELEC_ID, "energy_import_tariff_1")
    )

    async_report_replacement(hass, entry, ELEC_ID, "energy_import_tariff_2", Decimal(5), Decimal(1))
    async_clear_replacement(hass, entry, ELEC_ID)
    left = sorted(issue_id for domain, issue_id in registry.issues if domain == DOMAIN)
    assert left == sorted(
        [
            replacement_issue_id(entry.entry_id, GAS_ID, "gas"),
            replacement_issue_id(other.entry_id, ELEC_ID, "energy_import_tariff_1"),
            new_meter_issue_id(entry.entry_id, ELEC_ID),
        ]
    )


async def test_new_meter_issue(hass: HomeAssistant) -> None:
    entry = _entry(hass)
    async_report_new_meter(hass, entry, ELEC_ID, NEW_ELEC_ID)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, new_meter_issue_id(entry.entry_id, ELEC_ID))
    assert issue is not None
    assert issue.translation_key == "meter_changed"
    assert issue.is_fixable
    assert issue.is_persistent
    assert issue.data == {"entry_id": entry.entry_id, "old_meter_id": ELEC_ID, "new_meter_id": NEW_ELEC_ID}
    assert issue.translation_placeholders == {
        "title": "Electricity meter",
        "old_meter_id": ELEC_ID,
        "new_meter_id": NEW_ELEC_ID,
    }


@pytest.mark.parametrize("stub_type", [StubCoordinator, SyncStubCoordinator])
async def test_fix_flow_confirms_replacement(
    hass: HomeAssistant, repairs_client: Any, stub_type: type[StubCoordinator]
) -> None:
    coordinator = stub_type()
    entry = _entry(hass, coordinator)
    async_report_replacement(hass, entry, GAS_ID, "gas", Decimal("1234.567"), Decimal("0.012"))
    issue_id = replacement_issue_id(entry.entry_id, GAS_ID, "gas")

    flow = await _start_fix(repairs_client, issue_id)
    assert flow["type"] == "form"
    assert flow["step_id"] == "confirm"
    assert flow["description_placeholders"]["old_value"] == "1234.567"
    assert flow["description_placeholders"]["new_value"] == "0.012"
    assert coordinator.confirmed == []

    done = await _submit(repairs_client, flow["flow_id"])
    assert done["type"] == "create_entry"
    assert coordinator.confirmed == [(GAS_ID, "gas")]
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


@pytest.mark.parametrize(
    ("runtime_data", "loaded"),
    [
        (object(), True),  # a coordinator without the hook (yet)
        (None, True),  # no runtime data at all
        (StubCoordinator(), False),  # the entry is not loaded: its old coordinator stays untouched
    ],
)
async def test_fix_flow_without_hook(
    hass: HomeAssistant, repairs_client: Any, runtime_data: object | None, loaded: bool
) -> None:
    entry = _entry(hass, runtime_data, loaded=loaded)
    async_report_replacement(hass, entry, GAS_ID, "gas", Decimal(2), Decimal(1))
    issue_id = replacement_issue_id(entry.entry_id, GAS_ID, "gas")
    flow = await _start_fix(repairs_client, issue_id)
    done = await _submit(repairs_client, flow["flow_id"])
    assert done["type"] == "create_entry"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    if isinstance(runtime_data, StubCoordinator):
        assert runtime_data.confirmed == []


async def test_fix_flow_entry_gone(hass: HomeAssistant, repairs_client: Any) -> None:
    coordinator = StubCoordinator()
    entry = _entry(hass, coordinator, loaded=False)
    async_report_replacement(hass, entry, GAS_ID, "gas", Decimal(2), Decimal(1))
    issue_id = replacement_issue_id(entry.entry_id, GAS_ID, "gas")
    assert await hass.config_entries.async_remove(entry.entry_id)

    flow = await _start_fix(repairs_client, issue_id)
    assert flow["type"] == "abort"
    assert flow["reason"] == "entry_removed"
    assert coordinator.confirmed == []
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_fix_flow_entry_gone_while_open(hass: HomeAssistant, repairs_client: Any) -> None:
    coordinator = StubCoordinator()
    entry = _entry(hass, coordinator, loaded=False)
    async_report_replacement(hass, entry, GAS_ID, "gas", Decimal(2), Decimal(1))
    issue_id = replacement_issue_id(entry.entry_id, GAS_ID, "gas")
    flow = await _start_fix(repairs_client, issue_id)
    assert flow["type"] == "form"
    assert await hass.config_entries.async_remove(entry.entry_id)

    done = await _submit(repairs_client, flow["flow_id"])
    assert done["type"] == "abort"
    assert done["reason"] == "entry_removed"
    assert coordinator.confirmed == []
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_fix_flow_new_meter(hass: HomeAssistant, repairs_client: Any) -> None:
    coordinator = StubCoordinator()
    entry = _entry(hass, coordinator)
    async_report_new_meter(hass, entry, ELEC_ID, NEW_ELEC_ID)
    issue_id = new_meter_issue_id(entry.entry_id, ELEC_ID)

    flow = await _start_fix(repairs_client, issue_id)
    assert flow["type"] == "form"
    assert flow["step_id"] == "confirm"
    assert flow["description_placeholders"] == {
        "title": "Electricity meter",
        "old_meter_id": ELEC_ID,
        "new_meter_id": NEW_ELEC_ID,
    }
    done = await _submit(repairs_client, flow["flow_id"])
    assert done["type"] == "create_entry"
    assert coordinator.confirmed == []  # acknowledging a new meter changes no counter
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_fix_flow_issue_without_data(hass: HomeAssistant, repairs_client: Any) -> None:
    """An issue whose data went missing (an old stored issue) aborts instead of failing."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        "meter_changed_gone",
        is_fixable=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key="meter_changed",
    )
    flow = await _start_fix(repairs_client, "meter_changed_gone")
    assert flow["type"] == "abort"
    assert flow["reason"] == "entry_removed"
