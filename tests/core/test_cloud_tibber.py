"""The Tibber client against a fake Tibber on 127.0.0.1 (tests/cloud_servers/tibber.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from custom_components.smartmeter.core.cloud import tibber as tibber_module
from custom_components.smartmeter.core.cloud.base import (
    ENERGY_EXPORT,
    ENERGY_IMPORT,
    CloudAuthError,
    CloudError,
    CloudMeter,
    CloudRateLimitError,
    CloudResponseError,
    CloudTemporaryError,
    RequestBudget,
    RetryPolicy,
)
from custom_components.smartmeter.core.cloud.tibber import (
    BUDGET_LIMIT,
    RATE_WINDOW,
    TibberClient,
    TibberLive,
    default_budget,
    live_frame,
)
from custom_components.smartmeter.core.models import Frame, Integrity, Medium
from tests.cloud_servers.tibber import FakeTibber

OSLO = ZoneInfo("Europe/Oslo")
HOUR = timedelta(hours=1)
TOKEN = "fake-tibber-token-0123456789"


class Sleeps:
    """An injectable sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        """Record the delay; yield to the loop once."""
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def fake(socket_enabled: None) -> AsyncIterator[FakeTibber]:
    server = FakeTibber()
    await server.start()
    server.add_home("home-a", nickname="Cabin", currency="NOK", production=True, live=True)
    server.add_home("home-b", nickname=None, currency="SEK", time_zone="Europe/Stockholm")
    yield server
    await server.close()


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(
    session: aiohttp.ClientSession,
    fake: FakeTibber,
    sleeps: Sleeps,
    *,
    token: str = TOKEN,
    policy: RetryPolicy | None = None,
    budget: RequestBudget | None = None,
) -> TibberClient:
    return TibberClient(
        session,
        token,
        base_url=fake.base_url,
        sleep=sleeps,
        policy=policy or RetryPolicy(attempts=3, base=0.01, cap=60.0, timeout=5.0),
        budget=budget,
    )


def meter_for(home_id: str, currency: str = "NOK") -> CloudMeter:
    return CloudMeter(
        "tibber",
        home_id,
        Medium.ELECTRICITY,
        (ENERGY_IMPORT, ENERGY_EXPORT),
        ("kWh", "kWh"),
        currency=currency,
        extra=(("home_id", home_id),),
    )


def local(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=OSLO).astimezone(UTC)


def graphql_queries(fake: FakeTibber, word: str) -> list[str]:
    return [body["query"] for body in fake.requests if word in str(body.get("query", ""))]


# --------------------------------------------------------------------------- account
async def test_account_two_homes(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    client = make_client(session, fake, sleeps)
    account = await client.async_account()
    assert account.provider == "tibber"
    assert account.id == "user-1"
    assert account.name == "Arya Stark"
    cabin, other = account.meters
    assert cabin.id == "home-a"
    assert cabin.medium is Medium.ELECTRICITY
    assert cabin.registers == (ENERGY_IMPORT, ENERGY_EXPORT)
    assert cabin.units == ("kWh", "kWh")
    assert cabin.currency == "NOK"
    assert cabin.name == "Cabin"
    assert cabin.live is True
    assert cabin.tariff is None
    assert cabin.get("home_id") == "home-a"
    assert cabin.get("time_zone") == "Europe/Oslo"
    assert cabin.get("production_ean")
    assert other.registers == (ENERGY_IMPORT,)
    assert other.units == ("kWh",)
    assert other.currency == "SEK"
    assert other.name == "Storgata 6"  # no nickname: address1
    assert other.live is False
    assert other.get("time_zone") == "Europe/Stockholm"
    assert client.ws_url == fake.ws_url
    headers = fake.headers[-1]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["User-Agent"] == "smartmeter/0.1 (Home Assistant)"


async def test_account_login_when_no_user_id(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    fake.fail_next(
        200,
        body={"data": {"viewer": {"userId": None, "login": "me@example.invalid", "name": None, "homes": []}}},
    )
    account = await make_client(session, fake, sleeps).async_account()
    assert account.id == "me@example.invalid"
    assert account.meters == ()


# --------------------------------------------------------------------------- intervals
async def test_hourly_consumption_and_cost_exact(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    start = local(2025, 1, 15)
    rows = [
        (start, Decimal("1.234"), Decimal("2.3456789012345")),
        (start + HOUR, Decimal("0.001"), Decimal("0.0000012")),
        (start + 2 * HOUR, Decimal("12.5"), Decimal("31.25")),
        (start + 3 * HOUR, Decimal("3"), Decimal("4.1")),
    ]
    fake.set_hourly("home-a", rows)
    client = make_client(session, fake, sleeps)
    data = await client.async_intervals(meter_for("home-a"), ENERGY_IMPORT, start, start + 3 * HOUR)
    assert [(i.start, i.end, i.value, i.unit) for i in data.consumption] == [
        (start, start + HOUR, Decimal("1.234"), "kWh"),
        (start + HOUR, start + 2 * HOUR, Decimal("0.001"), "kWh"),
        (start + 2 * HOUR, start + 3 * HOUR, Decimal("12.5"), "kWh"),
    ]
    assert [(i.start, i.value, i.unit) for i in data.cost] == [
        (start, Decimal("2.3456789012345"), "NOK"),
        (start + HOUR, Decimal("0.0000012"), "NOK"),
        (start + 2 * HOUR, Decimal("31.25"), "NOK"),
    ]
    assert all(i.start.tzinfo is UTC for i in data.consumption)
    (query,) = graphql_queries(fake, "consumption")
    assert "resolution: HOURLY" in query
    assert 'home(id: "home-a")' in query


async def test_production_and_profit(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    start = local(2025, 6, 1, 12)
    fake.set_hourly("home-a", [(start, Decimal("2.5"), Decimal("1.75"))], production=True)
    fake.set_hourly("home-a", [(start, Decimal("0.3"), Decimal("0.9"))])
    client = make_client(session, fake, sleeps)
    data = await client.async_intervals(meter_for("home-a"), ENERGY_EXPORT, start, start + HOUR)
    assert [(i.value, i.unit) for i in data.consumption] == [(Decimal("2.5"), "kWh")]
    assert [(i.value, i.unit) for i in data.cost] == [(Decimal("1.75"), "NOK")]
    assert "production(" in fake.requests[-1]["query"]
    with pytest.raises(ValueError, match="register"):
        await client.async_intervals(meter_for("home-a"), "gas", start, start + HOUR)


async def test_pagination_across_pages(
    session: aiohttp.ClientSession, sleeps: Sleeps, socket_enabled: None
) -> None:
    fake = FakeTibber(page_cap=24)
    await fake.start()
    try:
        fake.add_home("h")
        start = local(2025, 2, 1)
        fake.generate("h", start - 5 * HOUR, start + 80 * HOUR, seed=3)
        expected = {stamp: (energy, cost) for stamp, energy, cost in _rows(fake, "h")}
        client = make_client(session, fake, sleeps)
        data = await client.async_intervals(meter_for("h"), ENERGY_IMPORT, start, start + 75 * HOUR)
        assert [i.start for i in data.consumption] == [start + n * HOUR for n in range(75)]
        assert all(i.value == expected[i.start][0] for i in data.consumption)
        assert all(i.value == expected[i.start][1] for i in data.cost)
        queries = graphql_queries(fake, "consumption")
        assert len(queries) == 4  # 76 nodes asked for (one before start), 24 a page
        cursors = [re.search(r'after: "([^"]+)"', q).group(1) for q in queries]  # type: ignore[union-attr]
        assert len(set(cursors)) == 4
        assert base64.b64decode(cursors[0]).decode().startswith((start - HOUR).isoformat()[:19])
    finally:
        await fake.close()


async def test_window_longer_than_a_page(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    start = local(2025, 1, 1)
    end = local(2025, 2, 10)  # 40 days: 960 hours, more than Tibber's 744 a page
    fake.generate("home-a", start, end)
    data = await make_client(session, fake, sleeps).async_intervals(
        meter_for("home-a"), ENERGY_IMPORT, start, end
    )
    assert len(data.consumption) == 960
    assert len(graphql_queries(fake, "consumption")) == 2
    firsts = [re.search(r"first: (\d+)", q).group(1) for q in graphql_queries(fake, "consumption")]  # type: ignore[union-attr]
    assert firsts == ["744", "218"]  # a full page, then what is left of the window (and one spare)


def _rows(fake: FakeTibber, home_id: str) -> list[tuple[datetime, Decimal, Decimal]]:
    series = fake._homes[home_id].hourly["consumption"]
    return [(stamp, energy, cost) for stamp, (energy, cost) in sorted(series.items())]  # type: ignore[misc]


async def test_null_consumption_is_skipped(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    start = local(2025, 3, 1, 10)
    fake.set_hourly(
        "home-a",
        [
            (start, Decimal("1.5"), Decimal("3.0")),
            (start + HOUR, None, None),
            (start + 2 * HOUR, Decimal("0.7"), None),  # consumption without its cost yet
            (start + 3 * HOUR, None, None),
        ],
    )
    data = await make_client(session, fake, sleeps).async_intervals(
        meter_for("home-a"), ENERGY_IMPORT, start, start + 4 * HOUR
    )
    assert [(i.start, i.value) for i in data.consumption] == [
        (start, Decimal("1.5")),
        (start + 2 * HOUR, Decimal("0.7")),
    ]
    assert [(i.start, i.value) for i in data.cost] == [(start, Decimal("3.0"))]


@pytest.mark.parametrize(
    ("day", "hours", "first_utc"),
    [
        ((2025, 3, 30), 23, datetime(2025, 3, 29, 23, tzinfo=UTC)),
        ((2025, 10, 26), 25, datetime(2025, 10, 25, 22, tzinfo=UTC)),
        ((2025, 6, 10), 24, datetime(2025, 6, 9, 22, tzinfo=UTC)),
    ],
)
async def test_dst_days(
    fake: FakeTibber,
    session: aiohttp.ClientSession,
    sleeps: Sleeps,
    day: tuple[int, int, int],
    hours: int,
    first_utc: datetime,
) -> None:
    start = local(*day)
    end = datetime(*day, tzinfo=OSLO).replace(day=day[2] + 1).astimezone(UTC)
    assert end - start == hours * HOUR
    fake.generate("home-a", start - 24 * HOUR, end + 24 * HOUR)
    data = await make_client(session, fake, sleeps).async_intervals(
        meter_for("home-a"), ENERGY_IMPORT, start, end
    )
    assert len(data.consumption) == hours
    assert [i.start for i in data.consumption] == [first_utc + n * HOUR for n in range(hours)]
    assert all(i.end - i.start == HOUR for i in data.consumption)
    # The fake answers in local time with the offset, like Tibber.
    body = fake.requests[-1]
    assert "consumption" in body["query"]


async def test_dst_node_times_are_local(fake: FakeTibber, session: aiohttp.ClientSession) -> None:
    start = local(2025, 3, 30)
    fake.generate("home-a", start, start + 3 * HOUR)
    async with session.post(
        fake.base_url,
        json={
            "query": '{ viewer { home(id: "home-a") { consumption(resolution: HOURLY, first: 3) { nodes { from to } } } } }'
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as resp:
        body = await resp.json()
    nodes = body["data"]["viewer"]["home"]["consumption"]["nodes"]
    assert [n["from"] for n in nodes] == [
        "2025-03-30T00:00:00.000+01:00",
        "2025-03-30T01:00:00.000+01:00",
        "2025-03-30T03:00:00.000+02:00",
    ]


async def test_empty_day(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    start = local(2025, 4, 1)
    data = await make_client(session, fake, sleeps).async_intervals(
        meter_for("home-a"), ENERGY_IMPORT, start, start + 24 * HOUR
    )
    assert data.consumption == ()
    assert data.cost == ()
    assert len(fake.requests) == 1
    empty = await make_client(session, fake, sleeps).async_intervals(
        meter_for("home-a"), ENERGY_IMPORT, start, start
    )
    assert empty.consumption == ()
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("node", "match"),
    [
        ({"consumption": "1.5"}, "expected a number"),
        ({"consumption": True}, "expected a number"),
        ({"consumption": {"value": 1}}, "expected a number"),
        ({"consumption": Decimal("1.5"), "consumptionUnit": "Wh"}, "expected kWh"),
        ({"consumption": Decimal("1.5"), "cost": "x"}, "expected a number"),
        ({"from": "yesterday"}, "bad timestamp"),
        ({"from": "2025-01-15T00:00:00"}, "without an offset"),
        ({"to": "2025-01-14T23:00:00.000+01:00"}, "ends before it starts"),
    ],
)
async def test_bad_node_fails_the_request(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps, node: dict[str, Any], match: str
) -> None:
    good = {
        "from": "2025-01-15T00:00:00.000+01:00",
        "to": "2025-01-15T01:00:00.000+01:00",
        "consumption": Decimal("1.0"),
        "consumptionUnit": "kWh",
        "cost": Decimal("1.0"),
        "currency": "NOK",
    }
    nodes = [
        good,
        {**good, "from": "2025-01-15T01:00:00.000+01:00", "to": "2025-01-15T02:00:00.000+01:00", **node},
    ]
    fake.fail_next(
        200,
        body={
            "data": {
                "viewer": {"home": {"consumption": {"pageInfo": {"hasNextPage": False}, "nodes": nodes}}}
            }
        },
    )
    start = local(2025, 1, 15)
    with pytest.raises(CloudResponseError, match=match):
        await make_client(session, fake, sleeps).async_intervals(
            meter_for("home-a"), ENERGY_IMPORT, start, start + 4 * HOUR
        )


async def test_cursor_that_does_not_advance(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    start = local(2025, 1, 15)
    page = {
        "pageInfo": {
            "hasNextPage": True,
            "endCursor": base64.b64encode(b"2025-01-14T23:00:00.000+01:00").decode(),
        },
        "nodes": [
            {"from": "2025-01-14T23:00:00.000+01:00", "to": "2025-01-15T00:00:00.000+01:00", "consumption": 1}
        ],
    }
    fake.fail_next(200, body={"data": {"viewer": {"home": {"consumption": page}}}}, times=2)
    with pytest.raises(CloudResponseError, match="does not advance"):
        await make_client(session, fake, sleeps).async_intervals(
            meter_for("home-a"), ENERGY_IMPORT, start, start + 48 * HOUR
        )


async def test_unknown_home(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    start = local(2025, 1, 15)
    with pytest.raises(CloudResponseError, match="Could not find home"):
        await make_client(session, fake, sleeps).async_intervals(
            meter_for("nope"), ENERGY_IMPORT, start, start + HOUR
        )


# --------------------------------------------------------------------------- prices
async def test_prices_today_tomorrow_quarter_hourly(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    today = local(2025, 11, 3)
    quarter = timedelta(minutes=15)
    prices = [
        (today + n * quarter, Decimal(1000 + n).scaleb(-4)) for n in range(3 * 96)
    ]  # today .. day after
    fake.set_prices("home-a", prices, resolution_minutes=15)
    fake.now = today + 10 * HOUR
    client = make_client(session, fake, sleeps)
    got = await client.async_prices(meter_for("home-a"), today - 24 * HOUR, today + 72 * HOUR)
    assert len(got) == 192  # today and tomorrow only
    assert got[0].start == today
    assert got[0].end == today + quarter
    assert got[0].value == Decimal("0.1000")
    assert got[-1].start == today + 191 * quarter
    assert got[-1].value == Decimal("0.1191")
    assert {p.unit for p in got} == {"NOK/kWh"}
    assert "priceInfo(resolution: QUARTER_HOURLY)" in fake.requests[-1]["query"]
    clipped = await client.async_prices(meter_for("home-a"), today + 2 * HOUR, today + 3 * HOUR)
    assert [p.start for p in clipped] == [today + 2 * HOUR + n * quarter for n in range(4)]
    assert [p.value for p in clipped] == [Decimal(1008 + n).scaleb(-4) for n in range(4)]


async def test_prices_hourly_when_the_api_gives_hours(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    today = local(2025, 3, 30)  # 23 hours
    hours = [(today + n * HOUR, Decimal(n)) for n in range(23)]
    fake.set_prices("home-a", hours, resolution_minutes=60)
    fake.now = today + HOUR
    got = await make_client(session, fake, sleeps).async_prices(meter_for("home-a"), today, today + 23 * HOUR)
    assert len(got) == 23
    assert all(p.end - p.start == HOUR for p in got)
    assert got[2].start == datetime(2025, 3, 30, 1, tzinfo=UTC)  # 03:00 CEST


async def test_prices_without_subscription(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    fake.fail_next(200, body={"data": {"viewer": {"home": {"currentSubscription": None}}}})
    got = await make_client(session, fake, sleeps).async_prices(
        meter_for("home-a"), local(2025, 1, 1), local(2025, 1, 2)
    )
    assert got == ()


# --------------------------------------------------------------------------- errors
async def test_bad_token_graphql_shape(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    client = make_client(session, fake, sleeps, token="wrong-token-9876543210")
    with pytest.raises(CloudAuthError) as caught:
        await client.async_account()
    assert "invalid token" in str(caught.value)
    assert "wrong-token-9876543210" not in str(caught.value)
    assert len(fake.requests) == 1  # not retried


async def test_bad_token_http_200_and_401(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    client = make_client(session, fake, sleeps)
    fake.fail_next(200, graphql_error="Context creation failed: invalid token", code="UNAUTHENTICATED")
    with pytest.raises(CloudAuthError):
        await client.async_account()
    fake.fail_next(401, body={"message": "Unauthorized"})
    with pytest.raises(CloudAuthError, match="HTTP 401"):
        await client.async_account()
    assert sleeps.delays == []


async def test_429_retry_after(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    fake.fail_next(429, body={"errors": [{"message": "Too Many Requests"}]}, headers={"Retry-After": "7"})
    account = await make_client(session, fake, sleeps).async_account()
    assert account.id == "user-1"
    assert sleeps.delays == [7.0]


async def test_429_long_retry_after_is_the_callers(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    fake.fail_next(429, headers={"Retry-After": "600"})
    with pytest.raises(CloudRateLimitError) as caught:
        await make_client(session, fake, sleeps).async_account()
    assert caught.value.retry_after == 600


async def test_graphql_rate_limit_error(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    fake.fail_next(200, graphql_error="Too many requests, slow down", code="TOO_MANY_REQUESTS")
    with pytest.raises(CloudRateLimitError):
        await make_client(session, fake, sleeps).async_account()


async def test_500_retried(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    fake.fail_next(500, times=2)
    account = await make_client(session, fake, sleeps).async_account()
    assert len(account.meters) == 2
    assert len(sleeps.delays) == 2
    fake.fail_next(503, times=3)
    with pytest.raises(CloudTemporaryError, match="HTTP 503"):
        await make_client(session, fake, sleeps).async_account()


async def test_timeout(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    fake.fail_next(200, delay=1.0)
    client = make_client(session, fake, sleeps, policy=RetryPolicy(attempts=1, timeout=0.1))
    with pytest.raises(CloudTemporaryError, match="no answer"):
        await client.async_account()


async def test_html_page(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    fake.fail_next(200, body="<!DOCTYPE html><html><body>Service unavailable</body></html>")
    with pytest.raises(CloudResponseError, match="HTML"):
        await make_client(session, fake, sleeps).async_account()


async def test_truncated_json(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    fake.fail_next(200, body='{"data": {"viewer": {"userId": "user-1", "homes": [{"id": "ho')
    with pytest.raises(CloudResponseError, match="malformed JSON"):
        await make_client(session, fake, sleeps).async_account()


@pytest.mark.parametrize("status", [200, 400])
async def test_graphql_error_with_null_data(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps, status: int
) -> None:
    fake.fail_next(
        status, graphql_error="Cannot query field 'foo' on type 'Home'.", code="GRAPHQL_VALIDATION_FAILED"
    )
    with pytest.raises(CloudResponseError, match="Cannot query field") as caught:
        await make_client(session, fake, sleeps).async_account()
    assert not isinstance(caught.value, CloudAuthError)


async def test_400_without_errors(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    fake.fail_next(400, body={"message": "bad"})
    with pytest.raises(CloudResponseError, match="HTTP 400"):
        await make_client(session, fake, sleeps).async_account()


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        {"data": None},
        {"data": {"viewer": None}},
        {"data": {"viewer": {"userId": "u", "homes": "many"}}},
        {"data": {"viewer": {"userId": "u", "homes": [{"id": "h", "features": []}]}}},
        {"data": {"viewer": {"homes": []}}},
    ],
)
async def test_wrong_shapes(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps, body: Any
) -> None:
    fake.fail_next(200, body=body)
    with pytest.raises(CloudResponseError):
        await make_client(session, fake, sleeps).async_account()


async def test_token_never_in_errors(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    failures: list[dict[str, Any]] = [
        {"status": 200, "graphql_error": f"token {TOKEN} is not valid", "code": "UNAUTHENTICATED"},
        {"status": 200, "graphql_error": f"odd {TOKEN}"},
        {"status": 400, "body": {"detail": f"bad {TOKEN}"}},
        {"status": 200, "body": f"<html>{TOKEN}</html>"},
        {"status": 200, "body": f'{{"data": "{TOKEN}'},
    ]
    for failure in failures:
        status = failure.pop("status")
        fake.fail_next(status, **failure)
        with pytest.raises(CloudError) as caught:
            await make_client(session, fake, sleeps).async_account()
        assert TOKEN not in str(caught.value)
        assert TOKEN[:12] not in str(caught.value)


async def test_budget(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    budget = default_budget()
    assert budget.limit == BUDGET_LIMIT < 100
    assert budget.window == RATE_WINDOW == 300
    tight = RequestBudget(limit=1, window=300)
    client = make_client(session, fake, sleeps, budget=tight)
    await client.async_account()
    with pytest.raises(CloudRateLimitError, match="budget"):
        await client.async_account()
    assert len(fake.requests) == 1


# --------------------------------------------------------------------------- live
MEASUREMENT: dict[str, Any] = {
    "timestamp": "2025-11-03T12:00:05.000+01:00",
    "power": Decimal("1523"),
    "powerProduction": Decimal("0"),
    "lastMeterConsumption": Decimal("12345.678"),
    "lastMeterProduction": Decimal("9.001"),
    "accumulatedConsumption": Decimal("7.123456"),
    "accumulatedProduction": Decimal("0.5"),
    "accumulatedConsumptionLastHour": Decimal("0.42"),
    "accumulatedCost": Decimal("10.25"),
    "currency": "NOK",
    "voltagePhase1": Decimal("231.4"),
    "voltagePhase2": None,
    "voltagePhase3": Decimal("229"),
    "currentL1": Decimal("3.25"),
    "currentL2": None,
    "currentL3": Decimal("1.0"),
    "powerFactor": Decimal("0.98"),
    "signalStrength": -71,
    "maxPower": Decimal("4010"),
}


async def _collect(live: TibberLive, out: asyncio.Queue[Frame | BaseException]) -> None:
    try:
        async for frame in live.frames():
            out.put_nowait(frame)
    except Exception as err:
        out.put_nowait(err)


async def _until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling the fake's state
            await asyncio.sleep(0.01)


async def _next(out: asyncio.Queue[Frame | BaseException]) -> Frame:
    async with asyncio.timeout(5):
        item = await out.get()
    assert isinstance(item, Frame), item
    return item


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def make_live(
    session: aiohttp.ClientSession,
    fake: FakeTibber,
    sleep: Callable[[float], Awaitable[None]],
    *,
    token: str = TOKEN,
    url: bool = False,
) -> TibberLive:
    client = TibberClient(session, token, base_url=fake.base_url, sleep=sleep)
    return TibberLive(
        session,
        token,
        "home-a",
        "tibber:home-a",
        ws_url=fake.ws_url if url else None,
        client=None if url else client,
        sleep=sleep,
        user_agent="smartmeter-test/1.0",
    )


async def test_live_frames(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    live = make_live(session, fake, sleeps)
    out: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_collect(live, out))
    try:
        await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
        fake.push_live("home-a", MEASUREMENT)
        frame = await _next(out)
    finally:
        await _stop(task)
    assert frame.protocol == "tibber_live"
    assert frame.integrity is Integrity.ABSENT
    (meter,) = frame.meters
    assert meter.id == "tibber:home-a"
    assert meter.medium is Medium.ELECTRICITY
    assert meter.timestamp == datetime(2025, 11, 3, 11, 0, 5, tzinfo=UTC)
    values = {key: (reg.value, reg.unit) for key, reg in meter.values.items()}
    assert values == {
        "power_import": (Decimal("1523"), "W"),
        "power_export": (Decimal("0"), "W"),
        "energy_import_total": (Decimal("12345.678"), "kWh"),
        "energy_export_total": (Decimal("9.001"), "kWh"),
        "energy_import_today": (Decimal("7.123456"), "kWh"),
        "energy_export_today": (Decimal("0.5"), "kWh"),
        "energy_import_this_hour": (Decimal("0.42"), "kWh"),
        "cost_today": (Decimal("10.25"), "NOK"),
        "voltage_l1": (Decimal("231.4"), "V"),
        "voltage_l3": (Decimal("229"), "V"),
        "current_l1": (Decimal("3.25"), "A"),
        "current_l3": (Decimal("1.0"), "A"),
        "power_factor": (Decimal("0.98"), None),
        "signal_strength": (Decimal("-71"), None),
        "power_import_max_today": (Decimal("4010"), "W"),
    }
    assert meter.register("power_import").obis == "1-0:1.7.0"  # type: ignore[union-attr]
    assert meter.register("voltage_l1").obis == "1-0:32.7.0"  # type: ignore[union-attr]
    assert meter.register("energy_import_today").obis == "tibber:accumulatedConsumption"  # type: ignore[union-attr]
    init = next(m for m in fake.ws_messages if m.get("type") == "connection_init")
    assert init["payload"] == {"token": TOKEN}
    subscribe = next(m for m in fake.ws_messages if m.get("type") == "subscribe")
    assert subscribe["payload"]["variables"] == {"homeId": "home-a"}
    assert "liveMeasurement(homeId: $homeId)" in subscribe["payload"]["query"]
    assert live.stats.connects == 1
    assert live.stats.frames == 1
    assert sleeps.delays == []


def test_live_frame_skips_bad_fields() -> None:
    frame = live_frame(
        "m",
        {
            "power": "12",
            "voltagePhase1": True,
            "currentL1": Decimal("NaN"),
            "accumulatedCost": 5,
            "maxPower": 7,
        },
    )
    (meter,) = frame.meters
    assert {reg.key: reg.value for reg in meter.registers} == {"power_import_max_today": Decimal(7)}
    assert meter.timestamp is None


def _reconnected(fake: FakeTibber, connects: int) -> Callable[[], bool]:
    return lambda: fake.ws_connects == connects and fake.subscribers("home-a") == 1


async def test_live_reconnect_after_drop(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=tibber_module.__name__)
    live = make_live(session, fake, sleeps, url=True)
    out: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_collect(live, out))
    try:
        await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
        fake.push_live("home-a", {"power": 100})
        await _next(out)
        for count in (2, 3, 4):  # three drops in a row before data flows again: one warning
            fake.drop_ws()
            await _until(_reconnected(fake, count), "resubscribed")
        fake.push_live("home-a", {"power": 200})
        frame = await _next(out)
    finally:
        await _stop(task)
    assert frame.meters[0].register("power_import").value == Decimal(200)  # type: ignore[union-attr]
    assert fake.ws_connects == 4
    assert live.stats.connects == 4
    assert live.stats.disconnects == 4
    assert "1011" in (live.stats.last_error or "")
    assert len(sleeps.delays) == 3
    assert all(0 < delay <= 300 for delay in sleeps.delays)
    records = [r for r in caplog.records if r.name == tibber_module.__name__]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    infos = [r for r in records if r.levelno == logging.INFO]
    assert len(warnings) == 1
    assert len(infos) == 1
    assert all(r.exc_info is None for r in records)


async def test_live_server_completes_subscription(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    live = make_live(session, fake, sleeps, url=True)
    out: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_collect(live, out))
    try:
        await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
        fake.send_ws({"id": "1", "type": "complete"})
        await _until(lambda: fake.ws_connects == 2 and fake.subscribers("home-a") == 1, "resubscribed")
        fake.push_live("home-a", {"power": 5})
        await _next(out)
    finally:
        await _stop(task)
    assert len(sleeps.delays) == 1


async def test_live_connection_limit_backs_off(
    fake: FakeTibber, session: aiohttp.ClientSession, socket_enabled: None
) -> None:
    held: list[aiohttp.ClientWebSocketResponse] = []
    for _ in range(2):  # two other connections with the same token: Tibber's limit
        ws = await session.ws_connect(fake.ws_url, protocols=("graphql-transport-ws",))
        await ws.send_json({"type": "connection_init", "payload": {"token": TOKEN}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        held.append(ws)
    delays: list[float] = []
    released = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 2:
            await held.pop().close()  # one frees up while we wait
            released.set()
        await asyncio.sleep(0)

    live = make_live(session, fake, sleep, url=True)
    out: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_collect(live, out))
    try:
        await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
        fake.push_live("home-a", {"power": 1})
        await _next(out)
    finally:
        await _stop(task)
        for ws in held:
            await ws.close()
    assert fake.ws_rejected == [4429, 4429]
    assert live.stats.limit_rejections == 2
    assert 45 <= delays[0] <= 60  # minutes-scale backoff, not seconds
    assert 90 <= delays[1] <= 120
    assert "Too many open connections" in (live.stats.last_error or "")


async def test_live_local_connection_limit(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    fake.add_home("home-c", live=True)
    lives = [make_live(session, fake, sleeps, url=True) for _ in range(3)]
    queues: list[asyncio.Queue[Frame | BaseException]] = [asyncio.Queue() for _ in lives]
    tasks = [asyncio.create_task(_collect(live, out)) for live, out in zip(lives, queues, strict=True)]
    try:
        await _until(lambda: fake.subscribers("home-a") == 2, "two subscribed")
        await _until(lambda: any(live.stats.limit_rejections for live in lives), "third held back")
    finally:
        for task in tasks:
            await _stop(task)
    assert fake.ws_rejected == []  # the third never tried Tibber
    assert any(delay >= 45 for delay in sleeps.delays)
    await _until(lambda: fake.open_ws == 0, "closed")
    assert tibber_module._OPEN == {}


async def test_live_bad_token(fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    live = make_live(session, fake, sleeps, token="not-the-token-000000", url=True)
    with pytest.raises(CloudAuthError, match="4403") as caught:
        async with asyncio.timeout(5):
            async for _frame in live.frames():
                pass
    assert "not-the-token-000000" not in str(caught.value)
    assert fake.ws_rejected == [4403]
    assert fake.ws_connects == 1
    assert sleeps.delays == []


async def test_live_bad_token_on_the_api(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    live = make_live(session, fake, sleeps, token="not-the-token-000000")
    with pytest.raises(CloudAuthError):
        async with asyncio.timeout(5):
            async for _frame in live.frames():
                pass
    assert fake.ws_connects == 0


async def test_live_api_down_then_up(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    fake.fail_next(503, times=4)  # the websocket URL lookup fails once (4 attempts), then works
    live = make_live(session, fake, sleeps)
    out: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_collect(live, out))
    try:
        await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
    finally:
        await _stop(task)
    assert live.stats.errors == 1


async def test_live_cancel_closes_the_websocket(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    live = make_live(session, fake, sleeps, url=True)
    out: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_collect(live, out))
    await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
    assert fake.open_ws == 1
    await _stop(task)
    await _until(lambda: fake.open_ws == 0, "closed by the client")
    assert fake.ws_closed == 1
    assert live.stats.connected is False
    assert tibber_module._OPEN == {}


async def test_live_breaking_out_closes_the_websocket(
    fake: FakeTibber, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    live = make_live(session, fake, sleeps, url=True)
    frames = live.frames()

    async def push_when_subscribed() -> None:
        await _until(lambda: fake.subscribers("home-a") == 1, "subscribed")
        fake.push_live("home-a", {"power": 3})

    pusher = asyncio.create_task(push_when_subscribed())
    async with asyncio.timeout(5):
        frame = await anext(frames)
    await pusher
    assert frame.meters[0].register("power_import") is not None
    await frames.aclose()  # type: ignore[attr-defined]
    await _until(lambda: fake.open_ws == 0, "closed")
