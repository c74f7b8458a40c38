"""Cloud accounts (Octopus Energy, Tibber): one coordinator per account entry.

The coordinator polls the provider every 30 minutes. Each update:

- imports every meter register's interval data as external statistics at the
  hours of use (:mod:`.cloud_statistics`): a backfill on the first run, then a
  restatement window, written chunk by chunk, so a restart loses nothing;
- fetches the tariff's unit prices around now for the current-price sensor;
- raises a repair issue for a meter whose newest data is older than the
  entry's ``stale_hours`` (and clears it when data arrives again).

Errors are typed by the core (:mod:`.core.cloud.base`): refused credentials
start a reauthentication flow, everything else fails the update with one
clear message (the coordinator logs it once, without a traceback) and the next
update resumes from the database. Requests spend a per-provider budget kept in
``.storage`` across restarts.

A Tibber home with a Pulse also streams live readings over Tibber's websocket
in an entry background task, stopped when the entry unloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey

from .alerts import AlertHub, AlertOptions
from .cloud_statistics import CloudStatistics, cloud_statistic_id, metadata
from .const import (
    CLOUD_POLL_INTERVAL,
    CONF_ACCOUNT,
    CONF_API_KEY,
    CONF_BACKFILL_DAYS,
    CONF_CALORIFIC_VALUE,
    CONF_GAS_UNIT,
    CONF_LIVE,
    CONF_PROTOCOL,
    CONF_RESTATE_DAYS,
    CONF_STALE_HOURS,
    CONF_TOKEN,
    DEFAULT_BACKFILL_DAYS,
    DEFAULT_CALORIFIC_VALUE,
    DEFAULT_CLOUD_LIVE,
    DEFAULT_GAS_UNIT,
    DEFAULT_RESTATE_DAYS,
    DEFAULT_STALE_HOURS,
    DOMAIN,
    LOGGER,
    PROTOCOL_NAMES,
    PROTOCOL_OCTOPUS,
    PROTOCOL_TIBBER,
)
from .core.cloud.base import (
    CloudAccount,
    CloudAuthError,
    CloudError,
    CloudMeter,
    CloudProvider,
    CloudRateLimitError,
    CloudResponseError,
    Interval,
    RequestBudget,
)
from .core.cloud.hourly import HOUR, chunks, floor_hour, hourly, import_window, price_at, running_sums
from .core.cloud.octopus import OCTOPUS_API, OctopusClient, default_budget as octopus_budget
from .core.cloud.tibber import TIBBER_API, TibberClient, TibberLive, default_budget as tibber_budget
from .core.models import Medium, Meter
from .repairs import async_warning

type CloudConfigEntry = ConfigEntry[CloudCoordinator]

# Newer Home Assistant lets a failed update say when to retry (a provider's Retry-After).
UPDATE_FAILED_RETRY_AFTER = "retry_after" in inspect.signature(UpdateFailed.__init__).parameters

# Where each provider's API is (tests point these at local servers).
BASE_URLS: dict[str, str] = {PROTOCOL_OCTOPUS: OCTOPUS_API, PROTOCOL_TIBBER: TIBBER_API}
# Tibber's live websocket: None asks the API for it.
LIVE_URLS: dict[str, str | None] = {PROTOCOL_TIBBER: None}
# Interval data is fetched and written a month at a time (one Tibber page).
CHUNK = timedelta(days=31)
# The account's meters are looked up again once a day (a new meter, a new tariff).
ACCOUNT_REFRESH = timedelta(hours=24)
# Per-provider request budgets, shared by the provider's entries.
BUDGETS: HassKey[dict[str, RequestBudget]] = HassKey(f"{DOMAIN}_cloud_budgets")
ISSUE_STALE = "cloud_data_stopped"

REGISTER_NAMES: dict[str, str] = {
    "energy_import_total": "energy import",
    "energy_export_total": "energy export",
    "gas": "gas",
}
MEDIUM_NAMES: dict[Medium, str] = {Medium.ELECTRICITY: "electricity meter", Medium.GAS: "gas meter"}


def meter_name(meter: CloudMeter) -> str:
    """The device name of a cloud meter."""
    if meter.name:
        return meter.name
    medium = MEDIUM_NAMES.get(meter.medium, "meter")
    return f"{PROTOCOL_NAMES.get(meter.provider, meter.provider)} {medium}"


def device_id(meter: CloudMeter) -> str:
    """The device identifier (and unique ID prefix) of a cloud meter: provider-qualified."""
    return f"{meter.provider}_{meter.id}"


def device_info(meter: CloudMeter) -> DeviceInfo:
    """The device of a cloud meter (its sensors and alerts)."""
    return DeviceInfo(
        identifiers={(DOMAIN, device_id(meter))},
        name=meter_name(meter),
        manufacturer=PROTOCOL_NAMES.get(meter.provider, meter.provider),
        model=meter.model or meter.tariff,
        serial_number=meter.serial_number,
        entry_type=None,
    )


def statistic_register(meter: CloudMeter, register: str) -> str:
    """The register part of a statistic ID: gas in kWh (SMETS1) is a statistic of its own.

    Switching an Octopus gas meter between m³ and kWh must not relabel the rows
    already imported in the other unit.
    """
    if register == "gas" and meter.unit(register).lower() == "kwh":
        return "gas_kwh"
    return register


def stale_issue_id(entry_id: str, meter: CloudMeter) -> str:
    """The issue ID of a cloud meter whose data stopped."""
    return f"{ISSUE_STALE}_{entry_id}_{device_id(meter)}"


def provider_budget(hass: HomeAssistant, provider: str) -> RequestBudget:
    """The provider's request budget (one per provider, persisted)."""
    budgets = hass.data.setdefault(BUDGETS, {})
    if provider not in budgets:
        # Home Assistant's Store is a core.cloud.base.BudgetStore as it is.
        store: Store[dict[str, Any]] = Store(hass, 1, f"{DOMAIN}.cloud_budget_{provider}")
        budgets[provider] = (octopus_budget if provider == PROTOCOL_OCTOPUS else tibber_budget)(store)
    return budgets[provider]


def make_client(
    hass: HomeAssistant, data: dict[str, Any], options: dict[str, Any] | None = None
) -> OctopusClient | TibberClient:
    """The provider client of an entry's (or a config flow's) data, on Home Assistant's session."""
    options = options or {}
    provider = data[CONF_PROTOCOL]
    session = async_get_clientsession(hass)
    budget = provider_budget(hass, provider)
    if provider == PROTOCOL_OCTOPUS:
        return OctopusClient(
            session,
            data[CONF_API_KEY],
            data[CONF_ACCOUNT],
            base_url=BASE_URLS[provider],
            budget=budget,
            gas_unit=options.get(CONF_GAS_UNIT, DEFAULT_GAS_UNIT),
            calorific_value=Decimal(str(options.get(CONF_CALORIFIC_VALUE, DEFAULT_CALORIFIC_VALUE))),
        )
    return TibberClient(session, data[CONF_TOKEN], base_url=BASE_URLS[provider], budget=budget)


@dataclass(slots=True)
class CloudMeterState:
    """What is known of one cloud meter."""

    meter: CloudMeter
    # Register -> the newest interval the provider has reported.
    latest: dict[str, Interval] = field(default_factory=dict)
    # Unit prices around now (for the current price).
    prices: tuple[Interval, ...] = ()
    # The latest live reading (Tibber Pulse), and when it arrived.
    live: Meter | None = None
    live_at: datetime | None = None

    @property
    def newest(self) -> datetime | None:
        """The end of the newest interval over the meter's registers."""
        return max((interval.end for interval in self.latest.values()), default=None)

    def price(self, now: datetime) -> Interval | None:
        """The unit price valid at ``now``."""
        return price_at(self.prices, now)


@dataclass(slots=True)
class CloudData:
    """An account's meters."""

    account: CloudAccount
    meters: dict[str, CloudMeterState]


class CloudCoordinator(DataUpdateCoordinator[CloudData]):
    """Polls one cloud account and imports its meters' statistics."""

    config_entry: CloudConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: CloudConfigEntry,
        client: CloudProvider,
        budget: RequestBudget,
        *,
        clock: Callable[[], datetime] = dt_util.utcnow,
    ) -> None:
        """Poll ``client`` for ``entry``."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=timedelta(seconds=CLOUD_POLL_INTERVAL),
        )
        self.client = client
        self.budget = budget
        self.clock = clock
        self.statistics = CloudStatistics(hass)
        self.account: CloudAccount | None = None
        self.account_at: datetime | None = None
        self.meters: dict[str, CloudMeterState] = {}
        self.last_error: str | None = None
        self.imported_rows = 0
        self._live_tasks: dict[str, asyncio.Task[None]] = {}
        # Abnormal use from the intervals (gas at night, a high day, base load).
        self.alerts = AlertHub(hass, entry, AlertOptions.from_options(entry.options, None), coordinator=self)

    # ---- options ----

    def _option(self, key: str, default: float) -> float:
        value = self.config_entry.options.get(key, default)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

    @property
    def backfill(self) -> timedelta:
        """History the first run imports."""
        return timedelta(days=self._option(CONF_BACKFILL_DAYS, DEFAULT_BACKFILL_DAYS))

    @property
    def restate(self) -> timedelta:
        """How far back each run re-imports."""
        return timedelta(days=self._option(CONF_RESTATE_DAYS, DEFAULT_RESTATE_DAYS))

    @property
    def stale_after(self) -> timedelta:
        """Data older than this raises a repair issue."""
        return timedelta(hours=self._option(CONF_STALE_HOURS, DEFAULT_STALE_HOURS))

    # ---- updates ----

    async def _async_setup(self) -> None:
        """Load the request budget and what the alerts learned; discover the account's meters."""
        await self.budget.async_load()
        await self.alerts.async_load()
        await self._guarded(self._async_account(self.clock()))

    async def _async_account(self, now: datetime) -> None:
        account = await self.client.async_account()
        self.account, self.account_at = account, now
        for meter in account.meters:
            state = self.meters.get(meter.id)
            if state is None:
                self.meters[meter.id] = CloudMeterState(meter)
            else:
                state.meter = meter

    async def _guarded[T](self, work: Any) -> T:
        """Await ``work``, mapping cloud errors to what the coordinator understands."""
        try:
            result: T = await work
        except CloudAuthError as err:
            self.last_error = str(err)
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN,
                translation_key="cloud_auth",
                translation_placeholders={"error": str(err)},
            ) from err
        except CloudError as err:
            self.last_error = str(err)
            key = "cloud_rate_limited" if isinstance(err, CloudRateLimitError) else "cloud_failed"
            extra: dict[str, Any] = {}
            if isinstance(err, CloudRateLimitError) and err.retry_after and UPDATE_FAILED_RETRY_AFTER:
                extra["retry_after"] = min(err.retry_after, 6 * 3600)  # Home Assistant 2025.10+
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key=key,
                translation_placeholders={"error": str(err)},
                **extra,
            ) from err
        finally:
            await self.budget.async_save()
        self.last_error = None
        return result

    async def _async_update_data(self) -> CloudData:
        now = self.clock()
        try:
            await self._guarded(self._async_update(now))
        finally:
            self._check_stale(now)
        assert self.account is not None
        return CloudData(self.account, self.meters)

    async def _async_update(self, now: datetime) -> None:
        if self.account is None or self.account_at is None or now - self.account_at >= ACCOUNT_REFRESH:
            await self._async_account(now)
        if not await self.statistics.async_ready():
            LOGGER.debug("%s: recorder not ready, statistics import postponed", self.name)
        else:
            for state in list(self.meters.values()):
                for register in state.meter.registers:
                    await self._async_import(state, register, now)
        for state in self.meters.values():
            start = floor_hour(now) - HOUR
            try:
                state.prices = await self.client.async_prices(state.meter, start, start + timedelta(days=2))
            except CloudResponseError as err:
                # A tariff without published rates: no price, the consumption still counts.
                LOGGER.debug("%s: no prices for %s: %s", self.name, meter_name(state.meter), err)
                state.prices = ()

    async def _async_import(self, state: CloudMeterState, register: str, now: datetime) -> None:
        """Import one register's intervals since the last imported hour (or the backfill start)."""
        meter = state.meter
        unit = meter.unit(register)
        name = f"{meter_name(meter)} {REGISTER_NAMES.get(register, register)}"
        key = statistic_register(meter, register)
        meta = metadata(meter, key, unit, name)
        stat_id = meta["statistic_id"]
        cost_meta = metadata(meter, key, meter.currency, name, cost=True) if meter.currency else None
        start = import_window(
            now, await self.statistics.async_last_hour(stat_id), backfill=self.backfill, restate=self.restate
        )
        total = await self.statistics.async_sum_before(stat_id, start)
        cost_total = Decimal(0)
        if cost_meta is not None:
            cost_total = await self.statistics.async_sum_before(cost_meta["statistic_id"], start)
        for first, stop in chunks(start, floor_hour(now) + HOUR, CHUNK):
            data = await self.client.async_intervals(meter, register, first, stop)
            consumption = [i for i in data.consumption if first <= i.start < stop]
            if any(i.unit != unit for i in consumption):
                raise CloudResponseError(f"{meter.provider}: {register} data not in {unit}")
            self.alerts.async_feed_intervals(
                device_info(meter), device_id(meter), register, unit, consumption
            )
            hour_rows = running_sums(hourly(consumption), total)
            if hour_rows:
                total = hour_rows[-1].sum
                self.statistics.write(meta, hour_rows)
                self.imported_rows += len(hour_rows)
                newest = max(consumption, key=lambda i: i.end)
                if register not in state.latest or newest.end >= state.latest[register].end:
                    state.latest[register] = newest
            costs = [i for i in data.cost if first <= i.start < stop]
            if cost_meta is not None and costs:
                cost_rows = running_sums(hourly(costs), cost_total)
                cost_total = cost_rows[-1].sum
                self.statistics.write(cost_meta, cost_rows)
                self.imported_rows += len(cost_rows)

    @callback
    def _check_stale(self, now: datetime) -> None:
        """Raise or clear each meter's "data stopped" issue."""
        entry = self.config_entry
        for state in self.meters.values():
            issue_id = stale_issue_id(entry.entry_id, state.meter)
            newest = state.newest
            if newest is None or now - newest <= self.stale_after:
                async_warning(self.hass, issue_id, ISSUE_STALE, None)
                continue
            async_warning(
                self.hass,
                issue_id,
                ISSUE_STALE,
                {
                    "title": entry.title,
                    "meter": meter_name(state.meter),
                    "newest": dt_util.as_local(newest).strftime("%Y-%m-%d %H:%M"),
                    "hours": str(int((now - newest).total_seconds() // 3600)),
                },
            )

    # ---- live data (Tibber Pulse) ----

    @callback
    def async_start_live(self) -> None:
        """Stream live readings for the meters that have them (when the option allows)."""
        entry = self.config_entry
        if (
            not entry.options.get(CONF_LIVE, DEFAULT_CLOUD_LIVE)
            or entry.data[CONF_PROTOCOL] != PROTOCOL_TIBBER
        ):
            return
        assert isinstance(self.client, TibberClient)
        for state in self.meters.values():
            meter = state.meter
            if not meter.live or meter.id in self._live_tasks:
                continue
            live = TibberLive(
                async_get_clientsession(self.hass),
                entry.data[CONF_TOKEN],
                meter.get("home_id") or meter.id,
                meter.id,
                ws_url=LIVE_URLS.get(PROTOCOL_TIBBER),
                client=self.client,
            )
            self._live_tasks[meter.id] = entry.async_create_background_task(
                self.hass, self._async_live(live, state), f"{DOMAIN} live {meter.provider}"
            )

    async def _async_live(self, live: TibberLive, state: CloudMeterState) -> None:
        try:
            async for frame in live.frames():
                if frame.meters:
                    state.live = frame.meters[0]
                    state.live_at = self.clock()
                    self.async_update_listeners()
        except CloudAuthError as err:
            LOGGER.warning("%s: live data refused: %s", self.name, err)
            self.config_entry.async_start_reauth(self.hass)
        except CloudError as err:
            LOGGER.warning("%s: live data stopped: %s", self.name, err)

    async def async_stop(self) -> None:
        """Stop the live streams and save what the alerts learned (entry unload)."""
        await self.alerts.async_stop()
        tasks = list(self._live_tasks.values())
        self._live_tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def statistic_ids(self) -> list[str]:
        """Every statistic this account's meters feed (for diagnostics and the README)."""
        found: list[str] = []
        for state in self.meters.values():
            for register in state.meter.registers:
                found.append(cloud_statistic_id(state.meter.provider, state.meter.id, register))
                if state.meter.currency:
                    found.append(
                        cloud_statistic_id(state.meter.provider, state.meter.id, register, cost=True)
                    )
        return found
