"""Repair issues of the smartmeter integration and their fix flows.

Two situations need the user:

- ``meter_replaced``: a counter started a new series (the meter was replaced
  or its register reset, so the reading fell and stayed down). The counter
  guard already carries on from the new reading without a spike; the fix flow
  lets the user confirm the replacement, which tells the entry's coordinator
  (``async_confirm_replacement``) and closes the issue.
- ``meter_changed``: a new equipment identifier showed up where the entry's
  main meter used to be. Its sensors are new entities: the user has to pick
  them in the Energy dashboard (and may remove the old device). The fix flow
  acknowledges that.
- ``wrong_key``: the meter's frames are encrypted and the entry's key does not
  open them (a DLMS or Smarty meter whose key changed). Not fixable here: the
  entry's reauthentication flow asks for the new key; the issue clears with
  the first frame that decrypts.

Home Assistant finds :func:`async_create_fix_flow` by this module's name.
"""

from __future__ import annotations

import inspect
from decimal import Decimal
from typing import Any

import voluptuous as vol

from homeassistant.components.repairs import RepairsFlow
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResult
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN

ISSUE_REPLACED = "meter_replaced"
ISSUE_CHANGED = "meter_changed"
ISSUE_WRONG_KEY = "wrong_key"
_REPLACED_PREFIX = "replacement_"
_CHANGED_PREFIX = "meter_changed_"

# Data of a fix flow's issue, as the issue registry stores it.
type IssueData = dict[str, str | int | float | None]


@callback
def async_warning(
    hass: HomeAssistant, issue_id: str, translation_key: str, placeholders: dict[str, str] | None
) -> None:
    """Raise (``placeholders`` given) or clear a warning that clears itself (not fixable, not persistent)."""
    if placeholders is None:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        is_persistent=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=translation_key,
        translation_placeholders=placeholders,
    )


def replacement_issue_id(entry_id: str, meter_id: str, register_key: str) -> str:
    """The issue ID of a replaced meter's register on an entry."""
    return f"{_REPLACED_PREFIX}{entry_id}_{meter_id}_{register_key}"


def new_meter_issue_id(entry_id: str, old_meter_id: str) -> str:
    """The issue ID of a main meter that was swapped for another one."""
    return f"{_CHANGED_PREFIX}{entry_id}_{old_meter_id}"


def wrong_key_issue_id(entry_id: str) -> str:
    """The issue ID of an entry whose frames do not decrypt with its key."""
    return f"{ISSUE_WRONG_KEY}_{entry_id}"


@callback
def async_report_wrong_key(hass: HomeAssistant, entry: ConfigEntry, error: str) -> None:
    """The meter sends encrypted frames the stored key does not open (or no key is stored).

    Not "no data": the link works. The entry's reauthentication flow asks for
    the key; this issue says why in the Repairs dashboard until it works.
    """
    ir.async_create_issue(
        hass,
        DOMAIN,
        wrong_key_issue_id(entry.entry_id),
        data={"entry_id": entry.entry_id},
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=ISSUE_WRONG_KEY,
        translation_placeholders={"title": entry.title, "error": error},
    )


@callback
def async_clear_wrong_key(hass: HomeAssistant, entry_id: str) -> None:
    """Frames decrypt again: the issue is gone."""
    ir.async_delete_issue(hass, DOMAIN, wrong_key_issue_id(entry_id))


def _text(value: Decimal | None) -> str:
    """A reading as the issue shows it."""
    return "unknown" if value is None else str(value)


@callback
def async_report_replacement(
    hass: HomeAssistant,
    entry: ConfigEntry,
    meter_id: str,
    register_key: str,
    old_value: Decimal | None,
    new_value: Decimal,
) -> None:
    """Raise (or update) the fixable issue of a register that started a new series.

    The issue is not persistent: after a restart the guard sees the new series
    as the one it restored, or detects the replacement again.
    """
    ir.async_create_issue(
        hass,
        DOMAIN,
        replacement_issue_id(entry.entry_id, meter_id, register_key),
        data={"entry_id": entry.entry_id, "meter_id": meter_id, "register_key": register_key},
        is_fixable=True,
        is_persistent=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_REPLACED,
        translation_placeholders={
            "title": entry.title,
            "meter_id": meter_id,
            "register": register_key,
            "old_value": _text(old_value),
            "new_value": _text(new_value),
        },
    )


@callback
def async_clear_replacement(
    hass: HomeAssistant, entry: ConfigEntry, meter_id: str, register_key: str | None = None
) -> None:
    """Close the replacement issue of one register, or of every register of a meter."""
    if register_key is not None:
        ir.async_delete_issue(hass, DOMAIN, replacement_issue_id(entry.entry_id, meter_id, register_key))
        return
    registry = ir.async_get(hass)
    stale = [
        issue_id
        for (domain, issue_id), issue in registry.issues.items()
        if domain == DOMAIN
        and issue_id.startswith(_REPLACED_PREFIX)
        and issue.data is not None
        and issue.data.get("entry_id") == entry.entry_id
        and issue.data.get("meter_id") == meter_id
    ]
    for issue_id in stale:
        ir.async_delete_issue(hass, DOMAIN, issue_id)


@callback
def async_report_new_meter(
    hass: HomeAssistant, entry: ConfigEntry, old_meter_id: str, new_meter_id: str
) -> None:
    """Tell the user a new meter took the old main meter's place.

    Persistent: the new meter's sensors stay new after a restart, so the hint
    stays until the user acknowledges it.
    """
    ir.async_create_issue(
        hass,
        DOMAIN,
        new_meter_issue_id(entry.entry_id, old_meter_id),
        data={"entry_id": entry.entry_id, "old_meter_id": old_meter_id, "new_meter_id": new_meter_id},
        is_fixable=True,
        is_persistent=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_CHANGED,
        translation_placeholders={
            "title": entry.title,
            "old_meter_id": old_meter_id,
            "new_meter_id": new_meter_id,
        },
    )


class _ConfirmFlow(RepairsFlow):
    """Show the issue, let the user confirm it; subclasses act on the confirmation."""

    def __init__(self, entry_id: str | None) -> None:
        """Remember which entry the issue belongs to."""
        self._entry_id = entry_id

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Start at the confirm step."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Show what happened; on submit, apply the confirmation and close the issue."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id) if self._entry_id else None
        if entry is None:
            # The entry was deleted: the issue has nothing left to repair.
            ir.async_delete_issue(self.hass, DOMAIN, self.issue_id)
            return self.async_abort(reason="entry_removed")
        if user_input is not None:
            await self._async_confirmed(entry)
            return self.async_create_entry(data={})
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders=issue.translation_placeholders if issue else None,
        )

    async def _async_confirmed(self, entry: ConfigEntry) -> None:
        """Act on the user's confirmation (nothing by default)."""


class ReplacementRepairFlow(_ConfirmFlow):
    """The user confirms a meter replacement or register reset."""

    def __init__(self, entry_id: str | None, meter_id: str, register_key: str) -> None:
        """Fix the replacement of ``meter_id``'s ``register_key``."""
        super().__init__(entry_id)
        self._meter_id = meter_id
        self._register_key = register_key

    async def _async_confirmed(self, entry: ConfigEntry) -> None:
        """Tell the running coordinator, when it has the hook."""
        if entry.state is not ConfigEntryState.LOADED:
            return  # no coordinator: the next setup starts from the meter's reading
        hook = getattr(getattr(entry, "runtime_data", None), "async_confirm_replacement", None)
        if hook is None:
            return
        result = hook(self._meter_id, self._register_key)
        if inspect.isawaitable(result):
            await result


class NewMeterRepairFlow(_ConfirmFlow):
    """The user acknowledges that a new meter replaced the main meter."""


def _str(data: IssueData | None, key: str) -> str | None:
    value = (data or {}).get(key)
    return None if value is None else str(value)


async def async_create_fix_flow(hass: HomeAssistant, issue_id: str, data: IssueData | None) -> RepairsFlow:
    """Create the fix flow of one of our issues."""
    entry_id = _str(data, "entry_id")
    if issue_id.startswith(_REPLACED_PREFIX):
        return ReplacementRepairFlow(entry_id, _str(data, "meter_id") or "", _str(data, "register_key") or "")
    return NewMeterRepairFlow(entry_id)
