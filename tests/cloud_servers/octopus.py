"""A fake Octopus Energy REST API v1 on 127.0.0.1, for tests and benchmarks.

It answers like the real API (https://developer.octopus.energy/rest/guides/endpoints):

- HTTP basic auth with the API key as the user name: 401 with a JSON ``detail``
  body for a missing or wrong key;
- ``accounts/{number}/`` (404 ``{"detail": "Not found."}`` for another number);
- ``{electricity|gas}-meter-points/{id}/meters/{serial}/consumption/`` with
  ``period_from``/``period_to`` filtering on the interval start, newest first
  unless ``order_by=period``, times in Europe/London local time with their
  offset (``+01:00`` in summer, ``Z`` in winter), like the captured sample;
- ``products/{product}/{electricity|gas}-tariffs/{tariff}/{standard|day|night}-unit-rates/``,
  newest first, times in UTC ``Z``, pence per kWh;
- pagination with absolute ``next`` URLs (``page``), pages capped at
  ``page_size_cap`` rows so tests go through several pages.

Rows are serialised once when the data is set, so serving years of half-hours
is a join of ready strings.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

HALF_HOUR = timedelta(minutes=30)
CONSUMPTION_MAX_PAGE = 25000
RATES_MAX_PAGE = 1500
DEFAULT_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def _stamp(moment: datetime, tz: ZoneInfo | None) -> str:
    """An API timestamp: local time with its offset (``Z`` at UTC+0), or UTC ``Z`` when ``tz`` is None."""
    local = moment.astimezone(tz or UTC)
    text = local.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _number(value: Decimal) -> str:
    return format(value, "f")


@dataclass
class _Failure:
    status: int
    body: bytes | None
    headers: dict[str, str]
    delay: float


@dataclass
class _Point:
    kind: str  # "electricity" | "gas"
    number: str
    serials: list[str]
    agreements: list[tuple[str, datetime | None, datetime | None]]
    export: bool
    property_id: int


@dataclass
class _Series:
    """Rows sorted by start: epoch seconds and the ready JSON object text."""

    starts: list[float] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    values: list[tuple[datetime, Decimal]] = field(default_factory=list)


class FakeOctopus:
    """A local Octopus API; ``await start()`` returns its base URL (``http://127.0.0.1:PORT/v1/``)."""

    def __init__(
        self,
        *,
        api_key: str = "sk_live_fake0123456789",
        account: str = "A-AAAA1111",
        page_size_cap: int = 100,
        tz: str = "Europe/London",
    ) -> None:
        """Set up an empty account (one current property, no meters)."""
        self.api_key = api_key
        self.account = account
        self.page_size_cap = page_size_cap
        self.tz = ZoneInfo(tz)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.base_url = ""
        self.properties: dict[int, dict[str, Any]] = {}
        self.add_property(1)
        self._points: list[_Point] = []
        self._consumption: dict[tuple[str, str], _Series] = {}
        self._rates: dict[tuple[str, str], list[tuple[float, float | None, str]]] = {}
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port."""
        app = web.Application()
        app.router.add_get("/v1/accounts/{account}/", self._account)
        app.router.add_get("/v1/{kind}-meter-points/{number}/meters/{serial}/consumption/", self._usage)
        app.router.add_get(
            "/v1/products/{product}/{fuel}-tariffs/{tariff}/{rate}-unit-rates/", self._unit_rates
        )
        app.middlewares.append(self._middleware)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1/"
        return self.base_url

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOctopus:
        """Start; ``base_url`` is set."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        await self.close()

    # ------------------------------------------------------------------ data
    def add_property(
        self,
        property_id: int,
        *,
        moved_in_at: datetime | None = DEFAULT_FROM,
        moved_out_at: datetime | None = None,
        address_line_1: str = "10 Downing Street",
        postcode: str = "SW1A 2AA",
    ) -> None:
        """A property of the account (meter points are added to property 1 unless told otherwise)."""
        self.properties[property_id] = {
            "id": property_id,
            "moved_in_at": None if moved_in_at is None else _stamp(moved_in_at, None),
            "moved_out_at": None if moved_out_at is None else _stamp(moved_out_at, None),
            "address_line_1": address_line_1,
            "address_line_2": "",
            "address_line_3": "",
            "town": "LONDON",
            "county": "",
            "postcode": postcode,
        }

    def _add_point(
        self,
        kind: str,
        number: str,
        serial: str,
        tariff_code: str,
        agreements: list[tuple[str, datetime | None, datetime | None]] | None,
        export: bool,
        property_id: int,
    ) -> None:
        for point in self._points:
            if point.kind == kind and point.number == number and point.property_id == property_id:
                point.serials.append(serial)
                return
        self._points.append(
            _Point(
                kind, number, [serial], agreements or [(tariff_code, DEFAULT_FROM, None)], export, property_id
            )
        )

    def add_electricity(
        self,
        mpan: str,
        serial: str,
        *,
        tariff_code: str = "E-1R-AGILE-18-02-21-H",
        export: bool = False,
        agreements: list[tuple[str, datetime | None, datetime | None]] | None = None,
        property_id: int = 1,
    ) -> None:
        """An electricity meter point (a second call with the same MPAN adds a meter to it)."""
        self._add_point("electricity", mpan, serial, tariff_code, agreements, export, property_id)

    def add_gas(
        self,
        mprn: str,
        serial: str,
        *,
        tariff_code: str = "G-1R-VAR-22-11-01-H",
        agreements: list[tuple[str, datetime | None, datetime | None]] | None = None,
        property_id: int = 1,
    ) -> None:
        """A gas meter point."""
        self._add_point("gas", mprn, serial, tariff_code, agreements, False, property_id)

    def set_consumption(self, kind_id: str, serial: str, intervals: list[tuple[datetime, Decimal]]) -> None:
        """Half-hours (start in UTC, value) a meter reports; replaces what it had."""
        series = _Series()
        for moment, value in sorted(intervals, key=lambda item: item[0]):
            start = moment.astimezone(UTC)
            series.starts.append(start.timestamp())
            series.values.append((start, value))
            series.rows.append(
                '{"consumption":%s,"interval_start":"%s","interval_end":"%s"}'  # noqa: UP031 - hot path
                % (_number(value), _stamp(start, self.tz), _stamp(start + HALF_HOUR, self.tz))
            )
        self._consumption[kind_id, serial] = series

    def generate(self, mpan_or_mprn: str, serial: str, start: datetime, end: datetime, seed: int = 1) -> None:
        """Deterministic half-hourly values (3 decimals) for every half-hour in ``[start, end)``."""
        rng = random.Random(seed)  # noqa: S311 - test data
        cursor = start.astimezone(UTC)
        stop = end.astimezone(UTC)
        intervals: list[tuple[datetime, Decimal]] = []
        while cursor < stop:
            hour = cursor.astimezone(self.tz).hour
            base = 120 if 7 <= hour < 23 else 60
            intervals.append((cursor, Decimal(base + rng.randrange(0, 900)).scaleb(-3)))
            cursor += HALF_HOUR
        self.set_consumption(mpan_or_mprn, serial, intervals)

    def consumption(self, kind_id: str, serial: str) -> list[tuple[datetime, Decimal]]:
        """What a meter reports (start in UTC, value), oldest first."""
        series = self._consumption.get((kind_id, serial))
        return [] if series is None else list(series.values)

    def set_rates(
        self,
        tariff_code: str,
        rates: list[tuple[datetime, datetime | None, Decimal]],
        *,
        kind: str = "standard",
    ) -> None:
        """Unit rates (valid_from, valid_to or None, pence/kWh inc VAT) of a tariff; ``kind`` standard/day/night."""
        rows: list[tuple[float, float | None, str]] = []
        for valid_from, valid_to, pence in rates:
            text = (
                '{"value_exc_vat":%s,"value_inc_vat":%s,"valid_from":"%s","valid_to":%s,'  # noqa: UP031
                '"payment_method":null}'
                % (
                    _number((pence / Decimal("1.05")).quantize(Decimal("0.0001"))),
                    _number(pence),
                    _stamp(valid_from, None),
                    "null" if valid_to is None else f'"{_stamp(valid_to, None)}"',
                )
            )
            rows.append((valid_from.timestamp(), None if valid_to is None else valid_to.timestamp(), text))
        rows.sort(key=lambda row: row[0])
        self._rates[tariff_code, kind] = rows

    def fail_next(
        self,
        status: int = 500,
        *,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests (any path) this way instead, in the order queued.

        ``body`` None gives a JSON ``detail`` body, except with status 200, which
        serves the normal answer (after ``delay``: a slow server).
        """
        raw = body.encode() if isinstance(body, str) else body
        for _ in range(times):
            self._failures.append(_Failure(status, raw, dict(headers or {}), delay))

    # ------------------------------------------------------------------ serving
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        if self._failures:
            failure = self._failures.pop(0)
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.status != 200 or failure.body is not None:
                body = failure.body
                if body is None:
                    body = json.dumps({"detail": f"Error {failure.status}"}).encode()
                kind = "text/html" if body.lstrip()[:1] == b"<" else "application/json"
                return web.Response(
                    status=failure.status, body=body, headers=failure.headers, content_type=kind
                )
        problem = self._auth(request)
        if problem is not None:
            return problem
        try:
            result: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return self._json(404, '{"detail":"Not found."}')
        return result

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return self._json(401, '{"detail":"Authentication credentials were not provided."}')
        try:
            user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user != self.api_key:
            return self._json(401, '{"detail":"Invalid API key."}')
        return None

    @staticmethod
    def _json(status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text, content_type="application/json")

    async def _account(self, request: web.Request) -> web.Response:
        if request.match_info["account"] != self.account:
            raise web.HTTPNotFound
        properties = []
        for prop_id, prop in self.properties.items():
            entry = dict(prop, electricity_meter_points=[], gas_meter_points=[])
            for point in self._points:
                if point.property_id != prop_id:
                    continue
                agreements = [
                    {
                        "tariff_code": code,
                        "valid_from": None if begin is None else _stamp(begin, self.tz),
                        "valid_to": None if stop is None else _stamp(stop, self.tz),
                    }
                    for code, begin, stop in point.agreements
                ]
                if point.kind == "electricity":
                    entry["electricity_meter_points"].append(
                        {
                            "mpan": point.number,
                            "profile_class": 1,
                            "consumption_standard": 2900,
                            "meters": [
                                {
                                    "serial_number": serial,
                                    "registers": [
                                        {
                                            "identifier": "1",
                                            "rate": "STANDARD",
                                            "is_settlement_register": True,
                                        }
                                    ],
                                }
                                for serial in point.serials
                            ],
                            "agreements": agreements,
                            "is_export": point.export,
                        }
                    )
                else:
                    entry["gas_meter_points"].append(
                        {
                            "mprn": point.number,
                            "consumption_standard": 12000,
                            "meters": [{"serial_number": serial} for serial in point.serials],
                            "agreements": agreements,
                        }
                    )
            properties.append(entry)
        return self._json(200, json.dumps({"number": self.account, "properties": properties}))

    def _page(self, request: web.Request, rows: list[str], maximum: int) -> web.Response:
        """One page of rows (already in answer order) with count/next/previous."""
        query = request.query
        try:
            size = int(query.get("page_size", "100"))
            page = int(query.get("page", "1"))
        except ValueError:
            return self._json(400, '{"detail":"Invalid page size."}')
        size = max(1, min(size, maximum, self.page_size_cap))
        first = (page - 1) * size
        if page < 1 or (first >= len(rows) and page != 1):
            return self._json(404, '{"detail":"Invalid page."}')
        chunk = rows[first : first + size]

        def link(number: int) -> str:
            params = dict(query)
            params["page"] = str(number)
            return f'"{self.base_url}{request.path.removeprefix("/v1/")}?{urlencode(params)}"'

        following = link(page + 1) if first + size < len(rows) else "null"
        previous = link(page - 1) if page > 1 else "null"
        text = '{"count":%d,"next":%s,"previous":%s,"results":[%s]}' % (  # noqa: UP031
            len(rows),
            following,
            previous,
            ",".join(chunk),
        )
        return self._json(200, text)

    @staticmethod
    def _period(request: web.Request) -> tuple[float, float] | web.Response:
        try:
            lo = request.query.get("period_from")
            hi = request.query.get("period_to")
            start = datetime.fromisoformat(lo).timestamp() if lo else float("-inf")
            stop = datetime.fromisoformat(hi).timestamp() if hi else float("inf")
        except ValueError:
            return web.Response(
                status=400,
                text='{"period_from":["Enter a valid date/time."]}',
                content_type="application/json",
            )
        return start, stop

    async def _usage(self, request: web.Request) -> web.Response:
        kind, number, serial = (request.match_info[k] for k in ("kind", "number", "serial"))
        if not any(p.kind == kind and p.number == number and serial in p.serials for p in self._points):
            raise web.HTTPNotFound
        period = self._period(request)
        if isinstance(period, web.Response):
            return period
        series = self._consumption.get((number, serial), _Series())
        lo = bisect.bisect_left(series.starts, period[0])
        hi = bisect.bisect_left(series.starts, period[1])
        rows = series.rows[lo:hi]
        if request.query.get("order_by") != "period":
            rows.reverse()
        return self._page(request, rows, CONSUMPTION_MAX_PAGE)

    async def _unit_rates(self, request: web.Request) -> web.Response:
        tariff, rate = request.match_info["tariff"], request.match_info["rate"]
        if request.match_info["product"] not in tariff or (tariff, rate) not in self._rates:
            raise web.HTTPNotFound
        period = self._period(request)
        if isinstance(period, web.Response):
            return period
        lo, hi = period
        rows = [
            text
            for start, stop, text in reversed(self._rates[tariff, rate])
            if start < hi and (stop is None or stop > lo)
        ]
        return self._page(request, rows, RATES_MAX_PAGE)
