"""A fake Tibber API on 127.0.0.1: GraphQL over HTTP and the live-data websocket.

It answers the way Tibber's public API does (https://developer.tibber.com),
reading just enough of each query (with regular expressions) to know what is
asked:

- ``viewer { ... homes { ... } }``: the account and its homes;
- ``viewer { websocketSubscriptionUrl }``;
- ``home(id: "...") { consumption|production(resolution, first/last,
  after/before) { pageInfo nodes } }``: hourly nodes with ``from``/``to`` in the
  home's local time with its offset ("2025-03-30T01:00:00.000+02:00"), cursors
  that are base64 of such a timestamp, pages capped at ``page_cap`` nodes
  (Tibber: 744) without an error, ``hasNextPage``/``hasPreviousPage``;
- ``home(id) { currentSubscription { priceInfo(resolution) { current today
  tomorrow } } }``: prices by the home's local date;
- a missing or wrong bearer token: HTTP 400 with
  ``{"errors": [{"message": "Context creation failed: invalid token",
  "extensions": {"code": "UNAUTHENTICATED"}}]}``.

The websocket (``/v1-beta/gql/subscriptions``) speaks ``graphql-transport-ws``:
``connection_init`` with ``{"token"}`` -> ``connection_ack``, or close 4403
"Invalid token"; more than ``max_ws_connections`` open connections with one
token -> close 4429 "Too many open connections on this server: N"; no
``connection_init`` in time -> close 4408; ``subscribe`` to
``liveMeasurement(homeId)`` -> ``next`` messages from :meth:`FakeTibber.push_live`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import WSMsgType, web

PATH = "/v1-beta/gql"
WS_PATH = "/v1-beta/gql/subscriptions"
HOUR = timedelta(hours=1)

_HOME_ID = re.compile(r"home\s*\(\s*id\s*:\s*\"((?:[^\"\\]|\\.)*)\"\s*\)")
_HOME_VAR = re.compile(r"home\s*\(\s*id\s*:\s*\$(\w+)\s*\)")
_CONNECTION = re.compile(r"\b(consumption|production)\s*\(([^)]*)\)")
_PRICE_INFO = re.compile(r"\bpriceInfo\b\s*(?:\(([^)]*)\))?")
_ARG = re.compile(r"(\w+)\s*:\s*(\"(?:[^\"\\]|\\.)*\"|[\w.-]+)")
_LIVE_HOME = re.compile(r"liveMeasurement\s*\(\s*homeId\s*:\s*(?:\"([^\"]*)\"|\$(\w+))\s*\)")


_DECIMAL = re.compile(r'"@@dec:([-+0-9.Ee]+)@@"')


def dumps(data: object) -> str:
    """JSON with Decimals written exactly as numbers (Tibber's figures have many digits)."""

    def convert(value: object) -> object:
        if isinstance(value, Decimal):
            return f"@@dec:{value}@@"
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [convert(item) for item in value]
        return value

    return _DECIMAL.sub(r"\1", json.dumps(convert(data)))


@dataclass
class _Home:
    home_id: str
    nickname: str | None
    currency: str
    tz: ZoneInfo
    production: bool
    live: bool
    hourly: dict[str, dict[datetime, tuple[Decimal | None, Decimal | None]]] = field(
        default_factory=lambda: {"consumption": {}, "production": {}}
    )
    prices: dict[datetime, Decimal] = field(default_factory=dict)
    price_minutes: int = 15


@dataclass
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]
    delay: float


@dataclass(eq=False)
class _Live:
    ws: web.WebSocketResponse
    token: str
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    subscriptions: dict[str, str] = field(default_factory=dict)  # id -> home id
    user_agent: str | None = None


class FakeTibber:
    """A Tibber stand-in for tests; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = "fake-tibber-token-0123456789",  # noqa: S107 - a test token
        user_id: str = "user-1",
        page_cap: int = 744,
        max_ws_connections: int = 2,
    ) -> None:
        """Accept ``token``; answer for ``user_id``."""
        self.token = token
        self.user_id = user_id
        self.page_cap = page_cap
        self.max_ws_connections = max_ws_connections
        self.name = "Arya Stark"
        self.login = "arya@example.invalid"
        self.now: datetime | None = None  # the fake's clock for today/tomorrow; None: the real one
        self.init_timeout = 10.0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.ws_connects = 0
        self.ws_closed = 0
        self.ws_rejected: list[int] = []  # close codes of refused connections
        self.ws_messages: list[dict[str, Any]] = []  # what clients sent
        self._homes: dict[str, _Home] = {}
        self._failures: list[_Failure] = []
        self._live: list[_Live] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.base_url = ""
        self.ws_url = ""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; the GraphQL endpoint's URL."""
        app = web.Application()
        app.router.add_post(PATH, self._graphql)
        app.router.add_get(WS_PATH, self._websocket)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}{PATH}"
        self.ws_url = f"ws://127.0.0.1:{port}{WS_PATH}"
        return self.base_url

    async def close(self) -> None:
        """Close live connections and stop listening."""
        self._closing.set()
        for live in list(self._live):
            await live.ws.close(code=1001, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ data
    def add_home(
        self,
        home_id: str,
        *,
        nickname: str | None = "Home",
        currency: str = "NOK",
        time_zone: str = "Europe/Oslo",
        production: bool = False,
        live: bool = False,
    ) -> None:
        """A home of the account (``production``: it has a production metering point)."""
        self._homes[home_id] = _Home(home_id, nickname, currency, ZoneInfo(time_zone), production, live)

    def set_hourly(
        self,
        home_id: str,
        rows: Sequence[tuple[datetime, Decimal | None, Decimal | None]],
        *,
        production: bool = False,
    ) -> None:
        """Hourly rows ``(hour start UTC, kWh or None, cost/profit or None)``, replacing what was there."""
        series = self._homes[home_id].hourly["production" if production else "consumption"]
        series.clear()
        for start, energy, money in rows:
            series[start.astimezone(UTC)] = (energy, money)

    def generate(self, home_id: str, start: datetime, end: datetime, seed: int = 1) -> None:
        """Plausible hourly consumption and cost (and production for producing homes) over ``[start, end)``."""
        rng = random.Random(seed)  # noqa: S311 - test data
        home = self._homes[home_id]
        rows: list[tuple[datetime, Decimal | None, Decimal | None]] = []
        made: list[tuple[datetime, Decimal | None, Decimal | None]] = []
        stamp = start.astimezone(UTC)
        while stamp < end:
            energy = Decimal(rng.randint(50, 4500)).scaleb(-3)
            price = Decimal(rng.randint(2000, 25000)).scaleb(-5)
            rows.append((stamp, energy, energy * price))
            if home.production:
                out = Decimal(rng.randint(0, 3000)).scaleb(-3)
                made.append((stamp, out, out * price))
            stamp += HOUR
        self.set_hourly(home_id, rows)
        if home.production:
            self.set_hourly(home_id, made, production=True)

    def set_prices(
        self, home_id: str, prices: list[tuple[datetime, Decimal]], resolution_minutes: int = 15
    ) -> None:
        """Unit prices (total incl. tax) from each start, ``resolution_minutes`` long."""
        home = self._homes[home_id]
        home.prices = {start.astimezone(UTC): value for start, value in prices}
        home.price_minutes = resolution_minutes

    def push_live(self, home_id: str, measurement: dict[str, Any]) -> None:
        """Send a ``liveMeasurement`` to every client subscribed to the home."""
        for live in self._live:
            for sub_id, subscribed in live.subscriptions.items():
                if subscribed == home_id:
                    message = {
                        "id": sub_id,
                        "type": "next",
                        "payload": {"data": {"liveMeasurement": measurement}},
                    }
                    live.queue.put_nowait(dumps(message))

    def send_ws(self, message: dict[str, Any]) -> None:
        """Send a raw message to every open live connection."""
        for live in self._live:
            live.queue.put_nowait(dumps(message))

    def fail_next(
        self,
        status: int = 500,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        delay: float = 0.0,
        graphql_error: str | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next ``times`` GraphQL requests with ``status`` and ``body`` after ``delay`` s.

        ``body``: a str/bytes sent as is (HTML when it starts with "<"), anything
        else as JSON. ``graphql_error``: a Tibber-shaped error body
        (``{"errors": [{"message", "extensions": {"code"}}], "data": null}``) with
        ``status`` (pass 200 or 400, as Tibber does).
        """
        if graphql_error is not None:
            body = {
                "errors": [
                    {
                        "message": graphql_error,
                        "locations": [{"line": 1, "column": 3}],
                        "path": ["viewer"],
                        "extensions": {"code": code or "INTERNAL_SERVER_ERROR"},
                    }
                ],
                "data": None,
            }
        for _ in range(times):
            self._failures.append(_Failure(status, body, dict(headers or {}), delay))

    def drop_ws(self, code: int = 1011, message: str = "Internal error") -> None:
        """Close every live connection (as a server restart or a network fault would)."""
        for live in list(self._live):
            asyncio.get_running_loop().create_task(live.ws.close(code=code, message=message.encode()))

    def subscribers(self, home_id: str) -> int:
        """Live subscriptions to a home now."""
        return sum(1 for live in self._live for home in live.subscriptions.values() if home == home_id)

    @property
    def open_ws(self) -> int:
        """Live connections open now."""
        return len(self._live)

    # ------------------------------------------------------------------ http
    async def _graphql(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.headers.append(dict(request.headers))
        self.requests.append(body if isinstance(body, dict) else {"raw": body})
        if self._failures:
            failure = self._failures.pop(0)
            if failure.delay:
                # A slow answer; close() ends the wait so no handler outlives the server.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(failure.delay):
                        await self._closing.wait()
            return self._raw(failure.status, failure.body, failure.headers)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._errors(400, "Context creation failed: invalid token", "UNAUTHENTICATED")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return self._errors(400, "Must provide query string.", "BAD_USER_INPUT")
        query: str = body["query"]
        variables = body.get("variables") if isinstance(body.get("variables"), dict) else {}
        return self._answer(query, variables or {})

    @staticmethod
    def _raw(status: int, body: Any, headers: dict[str, str]) -> web.Response:
        if body is None:
            body = {"errors": [{"message": "Internal server error"}]} if status >= 400 else {"data": None}
        if isinstance(body, bytes | str):
            raw = body.encode() if isinstance(body, str) else body
            html = raw.lstrip()[:1] == b"<"
            kind = "text/html" if html else "application/json"
            return web.Response(status=status, body=raw, headers={"Content-Type": kind, **headers})
        return web.Response(
            status=status, text=dumps(body), headers={"Content-Type": "application/json", **headers}
        )

    def _errors(self, status: int, message: str, code: str, data: Any = None) -> web.Response:
        body = {"errors": [{"message": message, "extensions": {"code": code}}], "data": data}
        return web.Response(status=status, text=dumps(body), content_type="application/json")

    def _answer(self, query: str, variables: dict[str, Any]) -> web.Response:
        home_id: str | None = None
        if match := _HOME_ID.search(query):
            home_id = json.loads(f'"{match.group(1)}"')
        elif match := _HOME_VAR.search(query):
            value = variables.get(match.group(1))
            home_id = value if isinstance(value, str) else None
        if home_id is not None or _HOME_VAR.search(query):
            home = self._homes.get(home_id or "")
            if home is None:
                return self._errors(
                    200,
                    f"Could not find home with id {home_id}",
                    "INTERNAL_SERVER_ERROR",
                    {"viewer": {"home": None}},
                )
            try:
                answer = self._home_answer(home, query)
            except _BadArgument as err:
                return self._errors(400, str(err), "BAD_USER_INPUT")
            return self._data({"viewer": {"home": answer}})
        viewer: dict[str, Any] = {}
        if "websocketSubscriptionUrl" in query:
            viewer["websocketSubscriptionUrl"] = self.ws_url
        if re.search(r"\bhomes\b", query):
            viewer.update(userId=self.user_id, login=self.login, name=self.name)
            viewer["homes"] = [self._home_info(home) for home in self._homes.values()]
        if not viewer:
            return self._errors(400, 'Syntax Error: Unexpected Name "invalidquery".', "GRAPHQL_PARSE_FAILED")
        return self._data({"viewer": viewer})

    @staticmethod
    def _data(data: dict[str, Any]) -> web.Response:
        return web.Response(text=dumps({"data": data}), content_type="application/json")

    def _clock(self) -> datetime:
        return self.now.astimezone(UTC) if self.now is not None else datetime.now(UTC)

    def _home_info(self, home: _Home) -> dict[str, Any]:
        return {
            "id": home.home_id,
            "appNickname": home.nickname,
            "timeZone": home.tz.key,
            "address": {
                "address1": f"Storgata {len(home.home_id)}",
                "postalCode": "0155",
                "city": "Oslo",
                "country": "NO",
            },
            "meteringPointData": {
                "consumptionEan": f"70705730000000{abs(hash(home.home_id)) % 10000:04d}",
                "productionEan": f"70705730000001{abs(hash(home.home_id)) % 10000:04d}"
                if home.production
                else None,
            },
            "features": {"realTimeConsumptionEnabled": home.live},
            "currentSubscription": {
                "status": "running",
                "priceInfo": {"current": self._current_price(home) or {"currency": home.currency}},
            },
        }

    def _home_answer(self, home: _Home, query: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": home.home_id}
        for match in _CONNECTION.finditer(query):
            name = match.group(1)
            answer[name] = self._connection(home, name, dict(_args(match.group(2))))
        if price := _PRICE_INFO.search(query):
            resolution = dict(_args(price.group(1) or "")).get("resolution", "HOURLY")
            answer["currentSubscription"] = {
                "status": "running",
                "priceInfo": self._price_info(home, resolution),
            }
        if "timeZone" in query:
            answer["timeZone"] = home.tz.key
        return answer

    # ------------------------------------------------------------------ consumption
    def _stamp(self, home: _Home, stamp: datetime) -> str:
        return stamp.astimezone(home.tz).isoformat(timespec="milliseconds")

    def _cursor(self, home: _Home, stamp: datetime) -> str:
        return base64.b64encode(self._stamp(home, stamp).encode()).decode()

    def _decode_cursor(self, home: _Home, cursor: str) -> datetime:
        try:
            text = base64.b64decode(cursor, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as err:
            raise _BadArgument(f"Invalid cursor: {cursor[:40]}") from err
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return datetime(day.year, day.month, day.day, tzinfo=home.tz).astimezone(UTC)
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as err:
            raise _BadArgument(f"Invalid cursor: {cursor[:40]}") from err
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=home.tz)
        return stamp.astimezone(UTC)

    def _connection(self, home: _Home, name: str, args: dict[str, str]) -> dict[str, Any]:
        if args.get("resolution", "HOURLY") != "HOURLY":
            raise _BadArgument(f"fake: resolution {args.get('resolution')} not supported")
        series = home.hourly[name]
        stamps = sorted(series)
        if "after" in args:
            after = self._decode_cursor(home, args["after"])
            stamps = [s for s in stamps if s > after]
        if "before" in args:
            before = self._decode_cursor(home, args["before"])
            stamps = [s for s in stamps if s < before]
        total = len(stamps)
        if "first" in args:
            count = min(int(args["first"]), self.page_cap)
            page = stamps[:count]
        elif "last" in args:
            count = min(int(args["last"]), self.page_cap)
            page = stamps[-count:] if count else []
        else:
            page = stamps[: self.page_cap]
        all_stamps = sorted(series)
        first_index = all_stamps.index(page[0]) if page else 0
        last_index = all_stamps.index(page[-1]) if page else -1
        nodes = []
        money_name = "profit" if name == "production" else "cost"
        for stamp in page:
            energy, money = series[stamp]
            node: dict[str, Any] = {
                "from": self._stamp(home, stamp),
                "to": self._stamp(home, stamp + HOUR),
                name: energy,
                f"{name}Unit": "kWh",
                money_name: money,
                "currency": home.currency,
            }
            if name == "consumption":
                node["unitPrice"] = (
                    (money / energy).quantize(Decimal("0.000001")) if money and energy else None
                )
                node["unitPriceVAT"] = (
                    (node["unitPrice"] / 5).quantize(Decimal("0.000001")) if node["unitPrice"] else None
                )
            nodes.append(node)
        return {
            "pageInfo": {
                "hasNextPage": bool(page) and last_index < len(all_stamps) - 1,
                "hasPreviousPage": bool(page) and first_index > 0,
                "startCursor": self._cursor(home, page[0]) if page else None,
                "endCursor": self._cursor(home, page[-1]) if page else None,
                "count": len(page),
                "filtered": total,
                "currency": home.currency,
            },
            "nodes": nodes,
        }

    # ------------------------------------------------------------------ prices
    def _price_nodes(self, home: _Home, resolution: str) -> list[tuple[datetime, Decimal]]:
        step = timedelta(minutes=home.price_minutes)
        items = sorted(home.prices.items())
        if resolution == "QUARTER_HOURLY" or step >= HOUR:
            return items
        hours: dict[datetime, list[Decimal]] = {}
        for start, value in items:  # HOURLY from finer prices: the hour's mean, as Tibber does
            hours.setdefault(start.replace(minute=0), []).append(value)
        return [(start, sum(values, Decimal(0)) / len(values)) for start, values in sorted(hours.items())]

    def _price_node(self, home: _Home, start: datetime, value: Decimal) -> dict[str, Any]:
        return {
            "total": value,
            "energy": (value * Decimal("0.8")).quantize(Decimal("0.0001")),
            "tax": value - (value * Decimal("0.8")).quantize(Decimal("0.0001")),
            "startsAt": self._stamp(home, start),
            "currency": home.currency,
            "level": "NORMAL",
        }

    def _current_price(self, home: _Home) -> dict[str, Any] | None:
        now = self._clock()
        step = timedelta(minutes=home.price_minutes)
        for start, value in sorted(home.prices.items()):
            if start <= now < start + step:
                return self._price_node(home, start, value)
        return None

    def _price_info(self, home: _Home, resolution: str) -> dict[str, Any]:
        if resolution not in ("HOURLY", "QUARTER_HOURLY"):
            raise _BadArgument(f'Value "{resolution}" does not exist in "PriceInfoResolution" enum.')
        today = self._clock().astimezone(home.tz).date()
        nodes = self._price_nodes(home, resolution)
        by_day: dict[date, list[dict[str, Any]]] = {}
        for start, value in nodes:
            by_day.setdefault(start.astimezone(home.tz).date(), []).append(
                self._price_node(home, start, value)
            )
        return {
            "current": self._current_price(home),
            "today": by_day.get(today, []),
            "tomorrow": by_day.get(today + timedelta(days=1), []),
        }

    # ------------------------------------------------------------------ websocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("graphql-transport-ws",))
        await ws.prepare(request)
        self.ws_connects += 1
        if ws.ws_protocol != "graphql-transport-ws":
            self.ws_rejected.append(4406)
            await ws.close(code=4406, message=b"Subprotocol not acceptable")
            return ws
        live: _Live | None = None
        try:
            try:
                async with asyncio.timeout(self.init_timeout):
                    msg = await ws.receive()
            except TimeoutError:
                self.ws_rejected.append(4408)
                await ws.close(code=4408, message=b"Connection initialisation timeout")
                return ws
            init = _parse(msg.data) if msg.type == WSMsgType.TEXT else None
            if init is not None:
                self.ws_messages.append(init)
            if init is None or init.get("type") != "connection_init":
                self.ws_rejected.append(4400)
                await ws.close(code=4400, message=b"Expected connection_init")
                return ws
            payload = init.get("payload") if isinstance(init.get("payload"), dict) else {}
            token = payload.get("token") if payload else None
            if token != self.token:
                self.ws_rejected.append(4403)
                await ws.close(code=4403, message=b"Invalid token")
                return ws
            if sum(1 for other in self._live if other.token == token) >= self.max_ws_connections:
                self.ws_rejected.append(4429)
                await ws.close(
                    code=4429,
                    message=f"Too many open connections on this server: {self.max_ws_connections}".encode(),
                )
                return ws
            live = _Live(ws, token, user_agent=request.headers.get("User-Agent"))
            self._live.append(live)
            await ws.send_str(dumps({"type": "connection_ack"}))
            sender = asyncio.create_task(self._sender(live))
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        continue
                    message = _parse(msg.data)
                    if message is None:
                        await ws.close(code=4400, message=b"Invalid message received")
                        break
                    self.ws_messages.append(message)
                    await self._client_message(live, message)
            finally:
                sender.cancel()
        finally:
            if live is not None and live in self._live:
                self._live.remove(live)
            self.ws_closed += 1
        return ws

    async def _sender(self, live: _Live) -> None:
        while True:
            text = await live.queue.get()
            if live.ws.closed:
                return
            await live.ws.send_str(text)

    async def _client_message(self, live: _Live, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ping":
            live.queue.put_nowait(dumps({"type": "pong"}))
        elif kind == "complete":
            live.subscriptions.pop(str(message.get("id")), None)
        elif kind == "subscribe":
            sub_id = str(message.get("id"))
            payload = message.get("payload") if isinstance(message.get("payload"), dict) else {}
            query = str((payload or {}).get("query", ""))
            variables = (payload or {}).get("variables") or {}
            match = _LIVE_HOME.search(query)
            home_id = None
            if match:
                home_id = match.group(1) if match.group(1) is not None else variables.get(match.group(2))
            home = self._homes.get(home_id or "")
            if home is None or not home.live:
                error = [
                    {"message": f"unable to start stream for home {home_id}", "path": ["liveMeasurement"]}
                ]
                live.queue.put_nowait(dumps({"id": sub_id, "type": "error", "payload": error}))
                return
            live.subscriptions[sub_id] = home.home_id


class _BadArgument(Exception):
    """A query argument Tibber would refuse."""


def _args(text: str) -> list[tuple[str, str]]:
    found = []
    for name, value in _ARG.findall(text):
        found.append((name, json.loads(value) if value.startswith('"') else value))
    return found


def _parse(text: Any) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except (TypeError, ValueError):
        return None
    return message if isinstance(message, dict) else None
