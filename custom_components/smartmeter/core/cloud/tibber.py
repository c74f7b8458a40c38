"""Tibber: hourly consumption, cost and prices over GraphQL, live Pulse/Watty data over a websocket.

The API (https://developer.tibber.com, endpoint :data:`TIBBER_API`) is GraphQL
over HTTPS with a personal access token as ``Authorization: Bearer``; Tibber
asks every client to send a ``User-Agent`` naming itself and its version.

What this module relies on, and where it comes from:

- ``home.consumption`` / ``home.production`` (``resolution: HOURLY``) are
  Relay connections: ``first``/``after`` or ``last``/``before`` with cursors
  that are base64 ISO 8601 timestamps; ``pageInfo`` has ``hasNextPage`` and
  ``endCursor``. Since 2024-10-24 a page holds at most 744 hourly nodes (one
  31-day month); asking for more is silently capped, so a longer window takes
  several pages (Tibber's changelog, quoted in hombach/ioBroker.tibberlink#546).
  Hours Tibber has no figures for yet come as nodes with ``consumption: null``:
  they are skipped, never read as zero.
- ``priceInfo(resolution: QUARTER_HOURLY)`` gives 15-minute prices since the
  October 2025 change to quarter-hourly day-ahead prices; ``total`` includes
  taxes, ``startsAt`` has the local offset.
- Errors come as ``{"errors": [{"message", "extensions": {"code"}}]}`` with
  HTTP 200 or 400; ``UNAUTHENTICATED`` (or "invalid token") means the token is
  refused (pyTibber's ``response_handler``).
- Rate limit: 100 requests per 5 minutes per IP address; going over gets the
  IP banned for 10 minutes at a time (Tibber support, quoted in
  home-assistant/core#97970). :func:`default_budget` keeps well below.
- Live data: ``viewer.websocketSubscriptionUrl``, subprotocol
  ``graphql-transport-ws``, ``connection_init`` with ``{"token": ...}``,
  ``connection_ack``, ``subscribe`` to ``liveMeasurement(homeId)``, ``next`` /
  ``error`` / ``complete``. Tibber allows two open websocket connections per
  token and closes a third with code 4429 "Too many open connections on this
  server: 2"; a refused token is closed with 4403 "Invalid token"
  (Danielhiversen/pyTibber#265, home-assistant/core#168007). Tibber asks for
  exponential backoff with jitter on reconnects (tibber/Tibber.SDK.NET#2).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from ..models import Frame, Integrity, Medium, Meter, Register
from ..obis import MAIN_REGISTERS
from .base import (
    ENERGY_EXPORT,
    ENERGY_IMPORT,
    BudgetStore,
    CloudAccount,
    CloudAuthError,
    CloudError,
    CloudMeter,
    CloudRateLimitError,
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

TIBBER_API = "https://api.tibber.com/v1-beta/gql"
USER_AGENT = "smartmeter/0.1 (Home Assistant)"
PROVIDER = "tibber"

# Tibber's documented caps and limits (see the module docstring).
PAGE_SIZE = 744  # hourly nodes per consumption/production page
RATE_LIMIT = 100  # requests ...
RATE_WINDOW = 300.0  # ... per 5 minutes, per IP address
BUDGET_LIMIT = 60  # ours: 60 % of it, the rest for Tibber's own app, HA's tibber integration, retries
MAX_WS_CONNECTIONS = 2  # open websocket connections per token
WS_PROTOCOL = "graphql-transport-ws"

# Websocket close codes (graphql-transport-ws, as Tibber uses them).
WS_CLOSE_UNAUTHORIZED = 4401
WS_CLOSE_FORBIDDEN = 4403  # "Invalid token"
WS_CLOSE_TOO_MANY = 4429  # "Too many open connections on this server: 2"

HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)

_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN"})


def default_budget(store: BudgetStore | None = None) -> RequestBudget:
    """Our share of Tibber's 100 requests per 5 minutes (per IP): 60, persisted in ``store``."""
    return RequestBudget(limit=BUDGET_LIMIT, window=RATE_WINDOW, store=store)


def encode_cursor(stamp: datetime) -> str:
    """A Tibber page cursor: the base64 of an ISO 8601 timestamp."""
    return base64.b64encode(stamp.isoformat(timespec="milliseconds").encode()).decode("ascii")


def _gql_string(value: str) -> str:
    """A GraphQL string literal (JSON's escaping is GraphQL's)."""
    return json.dumps(value)


# --------------------------------------------------------------------------- errors
def graphql_error(errors: object, clean: Callable[[str], str] = str) -> CloudError:
    """The typed error for a GraphQL ``errors`` list (``clean`` redacts secrets)."""
    first = errors[0] if isinstance(errors, list) and errors else None
    message = "unknown error"
    code = ""
    if isinstance(first, Mapping):
        message = str(first.get("message") or message)
        extensions = first.get("extensions")
        if isinstance(extensions, Mapping):
            code = str(extensions.get("code") or "")
    text = clean(f"{PROVIDER}: {message[:200]}" + (f" ({code[:40]})" if code else ""))
    lowered = message.lower()
    upper = code.upper()
    if upper in _AUTH_CODES or "invalid token" in lowered or "unauthenticated" in lowered:
        return CloudAuthError(text)
    if "RATE" in upper or "TOO_MANY" in upper or "rate limit" in lowered or "too many requests" in lowered:
        return CloudRateLimitError(text)
    return CloudResponseError(text)


class _GraphQLHttp(HttpJson):
    """:class:`HttpJson` that hands a 4xx JSON body with GraphQL ``errors`` back to the caller.

    Tibber answers a bad query or a refused token with HTTP 400 and the GraphQL
    error list; HTTP 428 (Tibber's "slow down") counts as a rate limit.
    """

    rate_limit_statuses = frozenset({428, 429})

    def read_error_body(self, status: int, data: Any) -> bool:
        """GraphQL errors in a 4xx body are the client's to read."""
        return isinstance(data, dict) and isinstance(data.get("errors"), list) and bool(data["errors"])


# --------------------------------------------------------------------------- helpers
def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CloudResponseError(f"{PROVIDER}: {what}: expected an object, got {type(value).__name__}")
    return value


def _opt_obj(value: object, what: str) -> dict[str, Any] | None:
    return None if value is None else _obj(value, what)


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CloudResponseError(f"{PROVIDER}: {what}: expected a list, got {type(value).__name__}")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object, what: str) -> Decimal:
    """A JSON number (parsed as Decimal/int), never a string or a bool."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise CloudResponseError(f"{PROVIDER}: {what}: expected a number, got {type(value).__name__}")
    return parse_decimal(value, f"{PROVIDER}: {what}")


@dataclass(frozen=True, slots=True)
class _Flow:
    """Consumption or production: the GraphQL field names."""

    connection: str
    quantity: str
    unit: str
    money: str


_FLOWS = {
    ENERGY_IMPORT: _Flow("consumption", "consumption", "consumptionUnit", "cost"),
    ENERGY_EXPORT: _Flow("production", "production", "productionUnit", "profit"),
}

_ACCOUNT_QUERY = """{
  viewer {
    userId
    login
    name
    websocketSubscriptionUrl
    homes {
      id
      appNickname
      timeZone
      address { address1 postalCode city country }
      meteringPointData { consumptionEan productionEan }
      features { realTimeConsumptionEnabled }
      currentSubscription { status priceInfo { current { currency } } }
    }
  }
}"""

_WS_URL_QUERY = "{ viewer { websocketSubscriptionUrl } }"


# --------------------------------------------------------------------------- client
class TibberClient:
    """Tibber's GraphQL API as a :class:`~.base.CloudProvider`."""

    name = PROVIDER
    page_size = PAGE_SIZE

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        *,
        base_url: str = TIBBER_API,
        budget: RequestBudget | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        user_agent: str = USER_AGENT,
    ) -> None:
        """Use ``session`` (never closed here) with the personal access ``token``."""
        self._token = token
        self._url = base_url
        self._user_agent = user_agent
        self.http = _GraphQLHttp(
            session, PROVIDER, budget=budget, policy=policy, sleep=sleep, redact=(token,)
        )
        self.ws_url: str | None = None

    @property
    def budget(self) -> RequestBudget | None:
        """The request budget every query spends from."""
        return self.http.budget

    async def query(self, document: str) -> dict[str, Any]:
        """The ``data`` of one GraphQL query; a typed error for any GraphQL error."""
        body = await self.http.request(
            "POST",
            self._url,
            headers={
                "Authorization": f"Bearer {self._token}",
                "User-Agent": self._user_agent,
                "Accept": "application/json",
            },
            json_body={"query": document},
        )
        if not isinstance(body, dict):
            raise CloudResponseError(f"{PROVIDER}: expected a JSON object, got {type(body).__name__}")
        errors = body.get("errors")
        if errors:
            raise graphql_error(errors, self.http._clean)  # noqa: SLF001 - our own subclass
        data = body.get("data")
        if not isinstance(data, dict):
            raise CloudResponseError(f"{PROVIDER}: answer without data")
        return data

    async def _viewer(self, document: str) -> dict[str, Any]:
        return _obj((await self.query(document)).get("viewer"), "viewer")

    async def _home(self, meter: CloudMeter, fields: str) -> dict[str, Any]:
        home_id = meter.get("home_id") or meter.id
        viewer = await self._viewer(f"{{ viewer {{ home(id: {_gql_string(home_id)}) {{ {fields} }} }} }}")
        home = viewer.get("home")
        if home is None:
            raise CloudResponseError(f"{PROVIDER}: home {home_id} not found")
        return _obj(home, "home")

    # ------------------------------------------------------------------ account
    async def async_account(self) -> CloudAccount:
        """Validate the token and list the homes, one :class:`CloudMeter` each."""
        viewer = await self._viewer(_ACCOUNT_QUERY)
        self.ws_url = _text(viewer.get("websocketSubscriptionUrl")) or self.ws_url
        meters: list[CloudMeter] = []
        for raw in _list(viewer.get("homes"), "homes"):
            home = _obj(raw, "home")
            if (home_id := _text(home.get("id"))) is None:
                continue
            meters.append(self._meter(home_id, home))
        account_id = _text(viewer.get("userId")) or _text(viewer.get("login"))
        if account_id is None:
            raise CloudResponseError(f"{PROVIDER}: viewer without userId or login")
        return CloudAccount(PROVIDER, account_id, tuple(meters), name=_text(viewer.get("name")))

    def _meter(self, home_id: str, home: dict[str, Any]) -> CloudMeter:
        address = _opt_obj(home.get("address"), "address") or {}
        points = _opt_obj(home.get("meteringPointData"), "meteringPointData") or {}
        features = _opt_obj(home.get("features"), "features") or {}
        subscription = _opt_obj(home.get("currentSubscription"), "currentSubscription") or {}
        price_info = _opt_obj(subscription.get("priceInfo"), "priceInfo") or {}
        current = _opt_obj(price_info.get("current"), "priceInfo.current") or {}
        production = _text(points.get("productionEan")) is not None
        registers = (ENERGY_IMPORT, ENERGY_EXPORT) if production else (ENERGY_IMPORT,)
        extra = [("home_id", home_id)]
        for key, value in (
            ("time_zone", home.get("timeZone")),
            ("consumption_ean", points.get("consumptionEan")),
            ("production_ean", points.get("productionEan")),
            ("subscription_status", subscription.get("status")),
            ("country", address.get("country")),
        ):
            if (text := _text(value)) is not None:
                extra.append((key, text))
        return CloudMeter(
            provider=PROVIDER,
            id=home_id,
            medium=Medium.ELECTRICITY,
            registers=registers,
            units=("kWh",) * len(registers),
            name=_text(home.get("appNickname")) or _text(address.get("address1")),
            currency=_text(current.get("currency")),
            extra=tuple(extra),
            live=features.get("realTimeConsumptionEnabled") is True,
        )

    async def async_ws_url(self) -> str:
        """The websocket URL for live data (``viewer.websocketSubscriptionUrl``), fetched anew."""
        url = _text((await self._viewer(_WS_URL_QUERY)).get("websocketSubscriptionUrl"))
        if url is None:
            raise CloudResponseError(f"{PROVIDER}: no websocketSubscriptionUrl")
        self.ws_url = url
        return url

    # ------------------------------------------------------------------ intervals
    async def async_intervals(
        self, meter: CloudMeter, register: str, start: datetime, end: datetime
    ) -> IntervalData:
        """Hourly consumption (or production) with start in ``[start, end)``, and its cost (profit)."""
        flow = _FLOWS.get(register)
        if flow is None:
            raise ValueError(f"{PROVIDER}: no interval data for register {register!r}")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return IntervalData(())
        # One hour before start: the node at start comes whether ``after`` is exclusive or not.
        reached = start - HOUR  # the start of the newest node fetched so far
        cursor = encode_cursor(reached)
        seen: dict[datetime, tuple[Interval, Interval | None]] = {}
        while True:
            first = max(1, min(self.page_size, int((end - reached) / HOUR) + 1))
            home = await self._home(
                meter,
                f"{flow.connection}(resolution: HOURLY, first: {first}, after: {_gql_string(cursor)}) "
                f"{{ pageInfo {{ hasNextPage endCursor }} "
                f"nodes {{ from to {flow.quantity} {flow.unit} {flow.money} currency }} }}",
            )
            connection = _opt_obj(home.get(flow.connection), flow.connection)
            if connection is None:
                break
            nodes = _list(connection.get("nodes"), f"{flow.connection}.nodes")
            past_end = False
            for raw in nodes:
                parsed = self._node(_obj(raw, "node"), flow, meter)
                if parsed is None:
                    continue
                interval, cost = parsed
                if interval.start >= end:
                    past_end = True
                elif interval.start >= start:
                    seen[interval.start] = (interval, cost)
            page = _opt_obj(connection.get("pageInfo"), "pageInfo") or {}
            if past_end or not nodes or page.get("hasNextPage") is not True:
                break
            # The newest node (null ones too) must be past the last page's, or paging never ends.
            newest = parse_time(_obj(nodes[-1], "node").get("from"), f"{PROVIDER}: from")
            following = _text(page.get("endCursor"))
            if following is None or following == cursor or newest <= reached:
                raise CloudResponseError(f"{PROVIDER}: {flow.connection} page cursor does not advance")
            if newest >= end - HOUR:
                break
            reached, cursor = newest, following
        ordered = [seen[key] for key in sorted(seen)]
        return IntervalData(
            tuple(interval for interval, _ in ordered),
            tuple(cost for _, cost in ordered if cost is not None),
        )

    def _node(
        self, node: dict[str, Any], flow: _Flow, meter: CloudMeter
    ) -> tuple[Interval, Interval | None] | None:
        begin = parse_time(node.get("from"), f"{PROVIDER}: from")
        raw_to = node.get("to")
        stop = begin + HOUR if raw_to is None else parse_time(raw_to, f"{PROVIDER}: to")
        if stop <= begin:
            raise CloudResponseError(f"{PROVIDER}: {flow.connection} node ends before it starts")
        quantity = node.get(flow.quantity)
        if quantity is None:
            return None  # no figure yet: not zero
        value = _number(quantity, f"{flow.connection} at {begin.isoformat()}")
        unit = node.get(flow.unit)
        if unit not in (None, "kWh"):
            raise CloudResponseError(f"{PROVIDER}: {flow.connection} in {str(unit)[:20]!r}, expected kWh")
        cost: Interval | None = None
        money = node.get(flow.money)
        currency = _text(node.get("currency")) or meter.currency
        if money is not None and currency is not None:
            cost = Interval(begin, stop, _number(money, f"{flow.money} at {begin.isoformat()}"), currency)
        return Interval(begin, stop, value, "kWh"), cost

    # ------------------------------------------------------------------ prices
    async def async_prices(self, meter: CloudMeter, start: datetime, end: datetime) -> tuple[Interval, ...]:
        """Today's and tomorrow's prices (total incl. tax) that overlap ``[start, end)``."""
        fields = "total startsAt currency"
        home = await self._home(
            meter,
            "currentSubscription { priceInfo(resolution: QUARTER_HOURLY) "
            f"{{ today {{ {fields} }} tomorrow {{ {fields} }} }} }}",
        )
        subscription = _opt_obj(home.get("currentSubscription"), "currentSubscription")
        if subscription is None:
            return ()
        info = _opt_obj(subscription.get("priceInfo"), "priceInfo")
        if info is None:
            return ()
        found: dict[datetime, tuple[Decimal, str | None]] = {}
        for day in ("today", "tomorrow"):
            for raw in _list(info.get(day), f"priceInfo.{day}"):
                node = _obj(raw, "price")
                if node.get("total") is None:
                    continue
                begin = parse_time(node.get("startsAt"), f"{PROVIDER}: startsAt")
                found[begin] = (
                    _number(node.get("total"), f"price at {begin.isoformat()}"),
                    _text(node.get("currency")),
                )
        if not found:
            return ()
        starts = sorted(found)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        step = min(gaps) if gaps else QUARTER
        if step > HOUR or step < QUARTER:
            raise CloudResponseError(f"{PROVIDER}: prices {step} apart")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        prices: list[Interval] = []
        for begin in starts:
            value, currency = found[begin]
            currency = currency or meter.currency
            if currency is None:
                raise CloudResponseError(f"{PROVIDER}: prices without a currency")
            stop = begin + step
            if stop > start and begin < end:
                prices.append(Interval(begin, stop, value, f"{currency}/kWh"))
        return tuple(prices)


# --------------------------------------------------------------------------- live
# liveMeasurement field -> (register key, unit; None: the measurement's currency)
_OBIS_BY_KEY = {key: code for code, (key, _kind) in MAIN_REGISTERS.items()}
LIVE_FIELDS: dict[str, tuple[str, str | None]] = {
    "power": ("power_import", "W"),
    "powerProduction": ("power_export", "W"),
    "lastMeterConsumption": ("energy_import_total", "kWh"),
    "lastMeterProduction": ("energy_export_total", "kWh"),
    "voltagePhase1": ("voltage_l1", "V"),
    "voltagePhase2": ("voltage_l2", "V"),
    "voltagePhase3": ("voltage_l3", "V"),
    "currentL1": ("current_l1", "A"),
    "currentL2": ("current_l2", "A"),
    "currentL3": ("current_l3", "A"),
    "powerFactor": ("power_factor", ""),
    "powerReactive": ("reactive_power_import", "kvar"),
    "powerProductionReactive": ("reactive_power_export", "kvar"),
    # Not OBIS registers: Tibber's own running figures (new keys).
    "accumulatedConsumption": ("energy_import_today", "kWh"),
    "accumulatedProduction": ("energy_export_today", "kWh"),
    "accumulatedConsumptionLastHour": ("energy_import_this_hour", "kWh"),
    "accumulatedProductionLastHour": ("energy_export_this_hour", "kWh"),
    "accumulatedCost": ("cost_today", None),
    "accumulatedReward": ("reward_today", None),
    "minPower": ("power_import_min_today", "W"),
    "averagePower": ("power_import_average_today", "W"),
    "maxPower": ("power_import_max_today", "W"),
    "minPowerProduction": ("power_export_min_today", "W"),
    "maxPowerProduction": ("power_export_max_today", "W"),
    "signalStrength": ("signal_strength", ""),  # Pulse: dB, Watty: percent
}

LIVE_SUBSCRIPTION = (
    "subscription($homeId: ID!) { liveMeasurement(homeId: $homeId) { timestamp currency "
    + " ".join(LIVE_FIELDS)
    + " } }"
)


def live_frame(meter_id: str, measurement: Mapping[str, Any]) -> Frame:
    """One ``liveMeasurement`` as a frame; null or non-numeric fields are left out."""
    stamp: datetime | None = None
    if measurement.get("timestamp") is not None:
        try:
            stamp = parse_time(measurement.get("timestamp"), f"{PROVIDER}: timestamp")
        except CloudResponseError:
            stamp = None
    currency = _text(measurement.get("currency"))
    registers: list[Register] = []
    for field, (key, stated) in LIVE_FIELDS.items():
        value = measurement.get(field)
        if value is None or isinstance(value, bool) or not isinstance(value, Decimal | int | float):
            continue
        try:
            number = parse_decimal(value, field)
        except CloudResponseError:
            continue
        unit = currency if stated is None else stated
        if unit is None:
            continue
        registers.append(Register(_OBIS_BY_KEY.get(key, f"tibber:{field}"), key, number, unit or None))
    meter = Meter(id=meter_id, medium=Medium.ELECTRICITY, registers=tuple(registers), timestamp=stamp)
    return Frame(protocol="tibber_live", integrity=Integrity.ABSENT, meters=(meter,))


@dataclass(slots=True)
class LiveStats:
    """Counters of a :class:`TibberLive` (read for diagnostics)."""

    connects: int = 0
    disconnects: int = 0
    messages: int = 0
    frames: int = 0
    errors: int = 0
    limit_rejections: int = 0
    connected: bool = False
    last_error: str | None = None

    def as_dict(self) -> dict[str, int | str | bool | None]:
        """Plain dict for diagnostics."""
        return {
            "connects": self.connects,
            "disconnects": self.disconnects,
            "messages": self.messages,
            "frames": self.frames,
            "errors": self.errors,
            "limit_rejections": self.limit_rejections,
            "connected": self.connected,
            "last_error": self.last_error,
        }


class _Dropped(Exception):
    """The live connection ended; reconnect after a backoff."""


class _TooMany(_Dropped):
    """Tibber (or our own count) says: too many connections for this token."""


# Open live connections per token (hashed) in this process: Tibber allows two.
_OPEN: dict[str, int] = {}


class TibberLive:
    """Live Pulse/Watty readings over the subscription websocket.

    One connection per home. Reconnects with capped exponential backoff and
    jitter; "too many connections" (close 4429, or two connections already open
    with this token in this process) backs off for minutes. A refused token
    (close 4403/4401, an auth error on subscribe or on the HTTP API) raises
    :class:`CloudAuthError` out of :meth:`frames`.
    """

    backoff_base = 2.0
    backoff_cap = 300.0
    limit_base = 60.0
    limit_cap = 900.0
    ack_timeout = 15.0
    receive_timeout = 90.0  # Pulse reports every few seconds; silence this long means a dead link

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        home_id: str,
        meter_id: str,
        *,
        ws_url: str | None = None,
        client: TibberClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        user_agent: str = USER_AGENT,
    ) -> None:
        """Stream ``home_id``'s live data as frames of meter ``meter_id``."""
        self._session = session
        self._token = token
        self._token_key = hashlib.sha256(token.encode()).hexdigest()[:16]
        self.home_id = home_id
        self.meter_id = meter_id
        self._fixed_url = ws_url
        self._client = client or TibberClient(session, token, user_agent=user_agent)
        self._sleep = sleep
        self._user_agent = user_agent
        self.stats = LiveStats()

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "**REDACTED**") if self._token else text

    async def _url(self, refresh: bool) -> str:
        if self._fixed_url is not None:
            return self._fixed_url
        if self._client.ws_url is not None and not refresh:
            return self._client.ws_url
        return await self._client.async_ws_url()

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if _OPEN.get(self._token_key, 0) >= MAX_WS_CONNECTIONS:
            raise _TooMany(f"{MAX_WS_CONNECTIONS} live connections already open with this token")
        _OPEN[self._token_key] = _OPEN.get(self._token_key, 0) + 1
        try:
            yield
        finally:
            left = _OPEN.get(self._token_key, 1) - 1
            if left > 0:
                _OPEN[self._token_key] = left
            else:
                _OPEN.pop(self._token_key, None)

    def _delay(self, failures: int, limit_strikes: int) -> float:
        if limit_strikes:
            delay = min(self.limit_cap, self.limit_base * 2.0 ** (limit_strikes - 1))
            return delay * (0.75 + 0.25 * random.random())  # noqa: S311 - jitter
        delay = min(self.backoff_cap, self.backoff_base * 2.0 ** max(0, failures - 1))
        return delay * (0.5 + 0.5 * random.random())  # noqa: S311 - jitter

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames as they arrive, until cancelled; :class:`CloudAuthError` on a refused token."""
        failures = 0
        limit_strikes = 0
        down = False
        while True:
            failure: Exception
            try:
                url = await self._url(refresh=failures > 0 and failures % 5 == 0)
                with self._slot():
                    async with aclosing(self._connection(url)) as connection:
                        async for frame in connection:
                            if down:
                                _LOGGER.info("Tibber live data for home %s is back", self.home_id)
                                down = False
                            failures = limit_strikes = 0
                            yield frame
                failure = _Dropped("subscription completed by the server")
            except CloudAuthError as err:
                self.stats.last_error = str(err)
                self.stats.connected = False
                raise
            except (_Dropped, CloudError, aiohttp.ClientError, TimeoutError, ValueError) as err:
                failure = err
            failures += 1
            self.stats.errors += 1
            self.stats.connected = False
            if isinstance(failure, _TooMany):
                limit_strikes += 1
                self.stats.limit_rejections += 1
            reason = self._clean(str(failure) or type(failure).__name__)
            self.stats.last_error = reason
            delay = self._delay(failures, limit_strikes)
            if not down:
                _LOGGER.warning(
                    "Tibber live data for home %s is down (%s); reconnecting", self.home_id, reason
                )
                down = True
            _LOGGER.debug("Tibber live %s: %s; retry %d in %.0f s", self.home_id, reason, failures, delay)
            await self._sleep(delay)

    async def _connection(self, url: str) -> AsyncGenerator[Frame]:
        """One websocket connection: init, subscribe, frames until it ends (then :class:`_Dropped`)."""
        try:
            ws = await self._session.ws_connect(
                url,
                protocols=(WS_PROTOCOL,),
                headers={"User-Agent": self._user_agent},
                # No aiohttp heartbeat: its timer can outlive a connection the server
                # closed (newer aiohttp); a dead link is found by ``receive_timeout``.
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as err:
            if err.status in (401, 403):
                raise CloudAuthError(f"{PROVIDER}: live connection refused (HTTP {err.status})") from err
            if err.status == 429:
                raise _TooMany(f"live connection refused (HTTP {err.status})") from err
            raise _Dropped(f"live connection refused (HTTP {err.status})") from err
        self.stats.connects += 1
        try:
            await ws.send_json({"type": "connection_init", "payload": {"token": self._token}})
            async with asyncio.timeout(self.ack_timeout):
                while True:
                    message = await self._receive(ws)
                    kind = message.get("type")
                    if kind == "connection_ack":
                        break
                    if kind == "ping":
                        await ws.send_json({"type": "pong"})
                    elif kind in ("connection_error", "error"):
                        raise self._payload_error(message.get("payload"))
            self.stats.connected = True
            await ws.send_json(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": LIVE_SUBSCRIPTION, "variables": {"homeId": self.home_id}},
                }
            )
            while True:
                async with asyncio.timeout(self.receive_timeout):
                    message = await self._receive(ws)
                kind = message.get("type")
                if kind == "next" and message.get("id") == "1":
                    payload = message.get("payload")
                    if isinstance(payload, dict) and payload.get("errors"):
                        raise self._payload_error(payload.get("errors"))
                    data = payload.get("data") if isinstance(payload, dict) else None
                    measurement = data.get("liveMeasurement") if isinstance(data, dict) else None
                    if isinstance(measurement, dict):
                        self.stats.frames += 1
                        yield live_frame(self.meter_id, measurement)
                elif kind == "error":
                    raise self._payload_error(message.get("payload"))
                elif kind == "complete":
                    raise _Dropped("subscription completed by the server")
                elif kind == "ping":
                    await ws.send_json({"type": "pong"})
        except TimeoutError as err:
            raise _Dropped("no data from the live connection in time") from err
        finally:
            self.stats.connected = False
            self.stats.disconnects += 1
            if not ws.closed:
                await ws.close()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = ws.close_code if ws.close_code is not None else msg.data
            reason = self._clean(str(msg.extra or "")) if msg.type == aiohttp.WSMsgType.CLOSE else ""
            if code in (WS_CLOSE_FORBIDDEN, WS_CLOSE_UNAUTHORIZED):
                raise CloudAuthError(f"{PROVIDER}: live connection refused ({code} {reason})".rstrip())
            if code == WS_CLOSE_TOO_MANY:
                raise _TooMany(f"closed {code} {reason}".rstrip())
            raise _Dropped(
                f"closed by the server ({code} {reason})".rstrip() if code else "connection closed"
            )
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise _Dropped(f"connection error: {type(msg.data).__name__}")
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise _Dropped(f"unexpected {msg.type.name} message")
        self.stats.messages += 1
        try:
            message = json.loads(msg.data, parse_float=Decimal)
        except (ValueError, RecursionError) as err:
            raise _Dropped("malformed message") from err
        if not isinstance(message, dict):
            raise _Dropped("malformed message")
        return message

    def _payload_error(self, payload: object) -> Exception:
        errors = payload if isinstance(payload, list) else [payload]
        error = graphql_error(errors, self._clean)
        if isinstance(error, CloudAuthError):
            return error
        return _Dropped(str(error))
