"""Octopus Energy (UK): half-hourly consumption and unit rates over the REST API v1.

Endpoints (https://developer.octopus.energy/rest/guides/endpoints), all with HTTP
basic auth (the API key as the user name, no password):

- ``accounts/{number}/``: properties, their electricity and gas meter points,
  meters (serials) and tariff agreements;
- ``{electricity|gas}-meter-points/{mpan|mprn}/meters/{serial}/consumption/``:
  half-hourly consumption (kWh; m3 from SMETS2 gas meters), paginated, times in
  Europe/London local time with an offset;
- ``products/{product}/{electricity|gas}-tariffs/{tariff}/standard-unit-rates/``
  (``day-unit-rates``/``night-unit-rates`` for two-rate tariffs): unit prices in
  pence per kWh, times in UTC.

Values stay exact: JSON numbers arrive as Decimal, pence become pounds with
``scaleb(-2)``. Interval data is returned in UTC, sorted, deduplicated, and only
for starts inside the requested window. Pagination follows ``next`` only while
it points under the configured base URL, so the API key is never sent
elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from ..models import Medium
from . import hourly
from .base import (
    ENERGY_EXPORT,
    ENERGY_IMPORT,
    GAS,
    BudgetStore,
    CloudAccount,
    CloudAuthError,
    CloudMeter,
    CloudResponseError,
    HttpJson,
    Interval,
    IntervalData,
    RequestBudget,
    RetryPolicy,
    parse_decimal,
    parse_time,
)

_LOGGER = logging.getLogger(__name__)

OCTOPUS_API = "https://api.octopus.energy/v1/"
PROVIDER = "octopus"
CURRENCY = "GBP"
PRICE_UNIT = "GBP/kWh"

# Largest pages the API serves: consumption 25,000 rows (> 1 year of
# half-hours), unit rates 1,500.
CONSUMPTION_PAGE_SIZE = 25000
RATES_PAGE_SIZE = 1500
# A paginated answer is followed for at most this many pages (a server that
# keeps handing out `next` must not spend the whole budget).
MAX_PAGES = 1000

# Octopus' gas billing formula: kWh = m3 x volume correction x calorific value / 3.6.
GAS_VOLUME_CORRECTION = Decimal("1.02264")
GAS_KWH_PER_MJ = Decimal("3.6")

# A smart meter on a two-rate (Economy 7) tariff has its off-peak (night)
# period fixed at 00:30-07:30 UTC all year (Octopus help: "What happens to my
# Economy Seven tariff when I have a smart meter installed?"). The consumption
# API only has data for smart meters, so this is the mapping used here.
NIGHT_START = timedelta(minutes=30)
NIGHT_END = timedelta(hours=7, minutes=30)
DAY = timedelta(days=1)

# Octopus publishes no REST request limit; this stays far below anything it
# would throttle and still backfills years of data (a year of half-hours is
# one consumption page and ~12 unit-rate pages on Agile).
DEFAULT_BUDGET_LIMIT = 300
DEFAULT_BUDGET_WINDOW = 3600.0

_TARIFF = re.compile(
    r"^(?P<fuel>[EG])-(?P<rate>[0-9A-Z]+R)-(?P<product>[A-Z0-9][A-Z0-9-]*)-(?P<region>[A-Z])$"
)


class OctopusAccountNotFoundError(CloudAuthError):
    """The API key is valid but the account number is unknown to it (HTTP 404).

    A subclass of :class:`CloudAuthError`: a config flow that only knows that
    class shows "invalid_auth"; one that knows this class can say which of the
    two inputs is wrong.
    """


def default_budget(store: BudgetStore | None = None) -> RequestBudget:
    """A per-hour request budget for Octopus (kept across restarts through ``store``)."""
    return RequestBudget(limit=DEFAULT_BUDGET_LIMIT, window=DEFAULT_BUDGET_WINDOW, store=store)


@dataclass(frozen=True, slots=True)
class TariffCode:
    """The parts of an Octopus tariff code such as ``E-1R-AGILE-18-02-21-H``."""

    code: str
    fuel: str  # "electricity" or "gas"
    rates: str  # "1R" single rate, "2R" day/night, ...
    product: str  # AGILE-18-02-21
    region: str  # H

    @classmethod
    def parse(cls, code: str) -> TariffCode:
        """Split a tariff code; :class:`CloudResponseError` when it is not one."""
        match = _TARIFF.match(code)
        if match is None:
            raise CloudResponseError(f"{PROVIDER}: not a tariff code: {code[:60]!r}")
        fuel = "electricity" if match["fuel"] == "E" else "gas"
        return cls(code, fuel, match["rate"], match["product"], match["region"])


@dataclass(frozen=True, slots=True)
class Agreement:
    """A tariff valid over ``[valid_from, valid_to)`` (``valid_to`` None: open-ended)."""

    tariff_code: str
    valid_from: datetime | None
    valid_to: datetime | None

    def valid_at(self, stamp: datetime) -> bool:
        """Whether the agreement is in force at ``stamp``."""
        return (self.valid_from is None or self.valid_from <= stamp) and (
            self.valid_to is None or stamp < self.valid_to
        )


_DAWN = datetime.min.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(stamp: datetime) -> str:
    """A UTC timestamp as the API wants it: ``2020-05-04T21:30:00Z``."""
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(stamp: datetime, what: str) -> datetime:
    if stamp.tzinfo is None:
        raise ValueError(f"{what} must be an aware datetime")
    return stamp.astimezone(UTC)


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CloudResponseError(f"{PROVIDER}: {what}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise CloudResponseError(f"{PROVIDER}: {what}: expected a list, got {type(value).__name__}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CloudResponseError(f"{PROVIDER}: {what}: expected a string, got {type(value).__name__}")
    return value


def _optional_time(value: object, what: str) -> datetime | None:
    return None if value is None else parse_time(value, f"{PROVIDER}: {what}")


def _agreements(raw: object, what: str) -> list[Agreement]:
    found: list[Agreement] = []
    for item in _list(raw, what):
        entry = _mapping(item, what)
        code = _text(entry.get("tariff_code"), f"{what} tariff_code")
        found.append(
            Agreement(
                code,
                _optional_time(entry.get("valid_from"), f"{what} valid_from"),
                _optional_time(entry.get("valid_to"), f"{what} valid_to"),
            )
        )
    found.sort(key=lambda a: a.valid_from or datetime.min.replace(tzinfo=UTC))
    return found


def _encode_agreements(agreements: Iterable[Agreement]) -> str:
    return json.dumps(
        [
            [
                a.tariff_code,
                None if a.valid_from is None else a.valid_from.isoformat(),
                None if a.valid_to is None else a.valid_to.isoformat(),
            ]
            for a in agreements
        ],
        separators=(",", ":"),
    )


def _decode_agreements(meter: CloudMeter) -> list[Agreement]:
    """The agreements :meth:`OctopusClient.async_account` stored in the meter."""
    raw = meter.get("agreements")
    if raw is None:
        tariff = meter.get("tariff_code") or meter.tariff
        return [] if tariff is None else [Agreement(tariff, None, None)]
    try:
        rows = json.loads(raw)
        return [
            Agreement(
                str(code),
                None if start is None else datetime.fromisoformat(start),
                None if stop is None else datetime.fromisoformat(stop),
            )
            for code, start, stop in rows
        ]
    except (ValueError, TypeError) as err:
        raise ValueError(f"meter {meter.id}: bad stored agreements") from err


def _is_under(url: URL, base: URL) -> bool:
    """Whether ``url`` is on the same origin as ``base`` and under its path."""
    return (
        url.scheme == base.scheme
        and url.host == base.host
        and url.port == base.port
        and url.path.startswith(base.path)
        and ".." not in url.path.split("/")
    )


def _clip(items: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """Intervals cut to ``[start, end)`` (empty ones dropped)."""
    clipped: list[Interval] = []
    for item in items:
        lo = max(item.start, start)
        hi = min(item.end, end)
        if lo < hi:
            clipped.append(
                item if (lo, hi) == (item.start, item.end) else Interval(lo, hi, item.value, item.unit)
            )
    return clipped


class OctopusClient:
    """The Octopus Energy REST API v1 as a :class:`~.base.CloudProvider`."""

    name = PROVIDER

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        account_number: str,
        *,
        base_url: str = OCTOPUS_API,
        budget: RequestBudget | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        gas_unit: str = "m3",
        calorific_value: Decimal = Decimal("39.5"),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """Use ``session`` (never closed here); ``gas_unit`` is what the gas meter reports (m3 or kWh)."""
        if gas_unit not in ("m3", "kWh"):
            raise ValueError(f"gas_unit must be 'm3' or 'kWh', not {gas_unit!r}")
        self.account_number = account_number.strip()
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._base = URL(self.base_url)
        self.gas_unit = gas_unit
        self.calorific_value = calorific_value
        self.budget = budget
        self._clock = clock
        # HTTP basic auth, the key as user name and no password (built here: aiohttp's
        # BasicAuth and its auth= parameter are deprecated in its newer releases).
        token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._http = HttpJson(
            session, PROVIDER, budget=budget, policy=policy, sleep=sleep, redact=(api_key, token)
        )

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (retries included)."""
        return self._http.requests

    # ------------------------------------------------------------------ http
    async def _get(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        return await self._http.request("GET", url, params=params, headers=self._headers)

    async def _pages(self, path: str, params: Mapping[str, str]) -> list[Any]:
        """Every ``results`` row of a paginated answer, following ``next`` under the base URL only."""
        url: str = self.base_url + path
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        rows: list[Any] = []
        for _page in range(MAX_PAGES):
            data = _mapping(await self._get(url, query), f"{path} page")
            results = data.get("results")
            rows.extend(_list(results, f"{path} results"))
            following = data.get("next")
            if following is None or following == "":
                return rows
            following = _text(following, f"{path} next")
            try:
                target = URL(following)
            except ValueError as err:
                raise CloudResponseError(f"{PROVIDER}: {path}: bad next page URL") from err
            if not _is_under(target, self._base):
                raise CloudResponseError(
                    f"{PROVIDER}: {path}: next page {target.scheme}://{target.host} is not under "
                    f"{self._base.scheme}://{self._base.host}{self._base.path}; not following it"
                )
            if following in seen:
                raise CloudResponseError(f"{PROVIDER}: {path}: next page repeats an earlier one")
            seen.add(following)
            url, query = following, None
        raise CloudResponseError(f"{PROVIDER}: {path}: more than {MAX_PAGES} pages")

    async def _budget_load(self) -> None:
        if self.budget is not None:
            await self.budget.async_load()

    async def _budget_save(self) -> None:
        if self.budget is not None:
            await self.budget.async_save()

    # ------------------------------------------------------------------ account
    async def async_account(self) -> CloudAccount:
        """Validate the key and account number, and list the current meters."""
        await self._budget_load()
        try:
            data = await self._get(f"{self.base_url}accounts/{quote(self.account_number, safe='')}/")
        except CloudResponseError as err:
            if err.status == 404 and "HTML page" not in str(err):  # Octopus' JSON "Not found."
                raise OctopusAccountNotFoundError(
                    f"{PROVIDER}: account {self.account_number} not found for this API key"
                ) from err
            raise
        finally:
            await self._budget_save()
        return self._account(data)

    def _account(self, data: object) -> CloudAccount:
        now = self._clock()
        body = _mapping(data, "account")
        number = body.get("number")
        account_id = number if isinstance(number, str) and number else self.account_number
        meters: dict[str, CloudMeter] = {}
        name: str | None = None
        for index, raw in enumerate(_list(body.get("properties"), "account properties")):
            prop = _mapping(raw, f"property {index}")
            moved_out = _optional_time(prop.get("moved_out_at"), "property moved_out_at")
            if moved_out is not None and moved_out <= now:
                continue
            if name is None:
                parts = [prop.get("address_line_1"), prop.get("postcode")]
                name = ", ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None
            for point in _list(prop.get("electricity_meter_points"), "electricity_meter_points"):
                for meter in self._meters(_mapping(point, "electricity meter point"), "electricity", now):
                    meters.setdefault(meter.id, meter)
            for point in _list(prop.get("gas_meter_points", []), "gas_meter_points"):
                for meter in self._meters(_mapping(point, "gas meter point"), "gas", now):
                    meters.setdefault(meter.id, meter)
        return CloudAccount(PROVIDER, account_id, tuple(meters.values()), name)

    def _meters(self, point: Mapping[str, Any], kind: str, now: datetime) -> list[CloudMeter]:
        key = "mpan" if kind == "electricity" else "mprn"
        number = point.get(key)
        if isinstance(number, int) and not isinstance(number, bool):
            number = str(number)
        number = _text(number, f"{kind} meter point {key}")
        agreements = _agreements(point.get("agreements", []), f"{kind} {number} agreements")
        current = next((a for a in reversed(agreements) if a.valid_at(now)), None)
        export = kind == "electricity" and point.get("is_export") is True
        if kind == "gas":
            medium, register, unit = Medium.GAS, GAS, self.gas_unit
            label = "Gas"
        else:
            medium, register, unit = Medium.ELECTRICITY, ENERGY_EXPORT if export else ENERGY_IMPORT, "kWh"
            label = "Electricity export" if export else "Electricity"
        found: list[CloudMeter] = []
        for raw in _list(point.get("meters"), f"{kind} {number} meters"):
            serial = _mapping(raw, f"{kind} {number} meter").get("serial_number")
            if not isinstance(serial, str) or not serial.strip():
                continue  # a meter point without a usable meter (no serial yet)
            serial = serial.strip()
            extra = [
                (key, number),
                ("serial", serial),
                ("kind", kind),
                ("agreements", _encode_agreements(agreements)),
            ]
            if current is not None:
                extra.insert(2, ("tariff_code", current.tariff_code))
            found.append(
                CloudMeter(
                    provider=PROVIDER,
                    id=f"{number}_{serial}",
                    medium=medium,
                    registers=(register,),
                    units=(unit,),
                    name=f"{label} {number}",
                    serial_number=serial,
                    tariff=None if current is None else current.tariff_code,
                    currency=CURRENCY,
                    extra=tuple(extra),
                )
            )
        return found

    # ------------------------------------------------------------------ consumption
    async def async_intervals(
        self, meter: CloudMeter, register: str, start: datetime, end: datetime
    ) -> IntervalData:
        """Half-hourly consumption with start in ``[start, end)``, and its cost where the rate is known."""
        if register not in meter.registers:
            raise ValueError(f"meter {meter.id} has no register {register!r}")
        start, end = _utc(start, "start"), _utc(end, "end")
        if start >= end:
            return IntervalData(())
        kind = meter.get("kind") or ("gas" if meter.medium is Medium.GAS else "electricity")
        number = meter.get("mprn" if kind == "gas" else "mpan")
        serial = meter.get("serial") or meter.serial_number
        if not number or not serial:
            raise ValueError(f"meter {meter.id} is not an Octopus meter")
        path = f"{kind}-meter-points/{quote(number, safe='')}/meters/{quote(serial, safe='')}/consumption/"
        params = {
            "period_from": _iso(start),
            "period_to": _iso(end),
            "page_size": str(CONSUMPTION_PAGE_SIZE),
            "order_by": "period",
        }
        await self._budget_load()
        try:
            rows = await self._pages(path, params)
        finally:
            await self._budget_save()
        consumption = hourly.dedupe(parse_consumption(rows, meter.unit(register), start, end, meter.id))
        if not consumption:
            return IntervalData(())
        try:
            prices = await self.async_prices(meter, consumption[0].start, consumption[-1].end)
        except CloudResponseError as err:
            # No rates for this tariff (a bespoke or withdrawn product): the
            # consumption still counts; its cost is left out.
            _LOGGER.warning("%s: meter %s: no unit rates, no cost: %s", PROVIDER, meter.id, err)
            prices = ()
        if not prices:
            return IntervalData(tuple(consumption))
        priced: list[Interval] = consumption
        if kind == "gas" and meter.unit(register) == "m3":
            factor = GAS_VOLUME_CORRECTION * self.calorific_value / GAS_KWH_PER_MJ
            priced = [Interval(i.start, i.end, i.value * factor, "kWh") for i in consumption]
        cost = hourly.cost_of(priced, prices, CURRENCY)
        return IntervalData(tuple(consumption), tuple(cost))

    # ------------------------------------------------------------------ prices
    async def async_prices(self, meter: CloudMeter, start: datetime, end: datetime) -> tuple[Interval, ...]:
        """Unit rates (GBP/kWh inc VAT) of the meter's tariffs in ``[start, end)``, sorted."""
        start, end = _utc(start, "start"), _utc(end, "end")
        if start >= end:
            return ()
        prices: list[Interval] = []
        await self._budget_load()
        try:
            for agreement in _decode_agreements(meter):
                lo = start if agreement.valid_from is None else max(start, agreement.valid_from)
                hi = end if agreement.valid_to is None else min(end, agreement.valid_to)
                if lo < hi:
                    prices.extend(await self._tariff_prices(agreement.tariff_code, lo, hi))
        finally:
            await self._budget_save()
        return tuple(hourly.dedupe(prices))

    async def _tariff_prices(self, code: str, start: datetime, end: datetime) -> list[Interval]:
        tariff = TariffCode.parse(code)
        base = f"products/{quote(tariff.product, safe='')}/{tariff.fuel}-tariffs/{quote(code, safe='')}/"
        params = {"period_from": _iso(start), "period_to": _iso(end), "page_size": str(RATES_PAGE_SIZE)}
        if tariff.rates == "1R":
            rows = await self._pages(base + "standard-unit-rates/", params)
            return _clip(parse_rates(rows, end), start, end)
        if tariff.rates == "2R" and tariff.fuel == "electricity":
            day = parse_rates(await self._pages(base + "day-unit-rates/", params), end)
            night = parse_rates(await self._pages(base + "night-unit-rates/", params), end)
            return _day_night(day, night, start, end)
        _LOGGER.debug("%s: tariff %s: %s rates are not supported", PROVIDER, code, tariff.rates)
        return []


def _day_night(day: list[Interval], night: list[Interval], start: datetime, end: datetime) -> list[Interval]:
    """Day and night rates laid on the smart-meter Economy 7 clock (night 00:30-07:30 UTC)."""
    blocks: list[tuple[datetime, datetime, list[Interval]]] = []
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0) - DAY
    while midnight < end:
        blocks.append((midnight + NIGHT_START, midnight + NIGHT_END, night))
        blocks.append((midnight + NIGHT_END, midnight + DAY + NIGHT_START, day))
        midnight += DAY
    prices: list[Interval] = []
    for block_start, block_end, rates in blocks:
        lo, hi = max(block_start, start), min(block_end, end)
        if lo < hi:
            prices.extend(_clip(rates, lo, hi))
    return prices


def parse_consumption(
    rows: list[Any], unit: str, start: datetime, end: datetime, meter_id: str = "?"
) -> list[Interval]:
    """Consumption rows as UTC intervals in ``unit``, those starting in ``[start, end)`` only.

    A row without its keys, with a value that is not a number or a timestamp
    without an offset is a :class:`CloudResponseError`. A negative value is
    no consumption (an export meter reports its export as positive values):
    it is left out and logged, so one bad half-hour does not block the rest.
    """
    found: list[Interval] = []
    negative = 0
    for row in rows:
        if not isinstance(row, dict):
            raise CloudResponseError(f"{PROVIDER}: consumption row: expected an object")
        try:
            value, begin, stop = row["consumption"], row["interval_start"], row["interval_end"]
        except KeyError as err:
            raise CloudResponseError(f"{PROVIDER}: consumption row without {err.args[0]!r}") from err
        value = parse_decimal(value, f"{PROVIDER}: consumption")
        begin = parse_time(begin, f"{PROVIDER}: interval_start")
        stop = parse_time(stop, f"{PROVIDER}: interval_end")
        if stop <= begin:
            raise CloudResponseError(f"{PROVIDER}: consumption interval ends before it starts ({begin})")
        if not start <= begin < end:
            continue
        if value < 0:
            negative += 1
            continue
        found.append(Interval(begin, stop, value, unit))
    if negative:
        _LOGGER.warning("%s: meter %s: ignored %d negative consumption values", PROVIDER, meter_id, negative)
    return found


def parse_rates(rows: list[Any], end: datetime) -> list[Interval]:
    """Rate rows as intervals in GBP/kWh; an open-ended rate ends at ``end``; overlaps cut."""
    preferred: list[tuple[datetime, datetime, Decimal]] = []
    other: list[tuple[datetime, datetime, Decimal]] = []
    for row in rows:
        if not isinstance(row, dict):
            raise CloudResponseError(f"{PROVIDER}: unit rate row: expected an object")
        if "value_inc_vat" not in row or "valid_from" not in row:
            raise CloudResponseError(f"{PROVIDER}: unit rate row without value_inc_vat/valid_from")
        value = parse_decimal(row["value_inc_vat"], f"{PROVIDER}: value_inc_vat").scaleb(-2)
        begin = _optional_time(row["valid_from"], "valid_from") or _DAWN
        stop = _optional_time(row.get("valid_to"), "valid_to") or end
        if stop <= begin:
            continue
        # Variable tariffs list a direct-debit and a non-direct-debit price per
        # period; Octopus bills direct debit unless told otherwise.
        target = other if row.get("payment_method") == "NON_DIRECT_DEBIT" else preferred
        target.append((begin, stop, value))
    chosen = sorted(preferred or other)
    rates: list[Interval] = []
    for index, (begin, valid_to, value) in enumerate(chosen):
        stop = min(valid_to, chosen[index + 1][0]) if index + 1 < len(chosen) else valid_to
        if begin < stop:
            rates.append(Interval(begin, stop, value, PRICE_UNIT))
    return rates
