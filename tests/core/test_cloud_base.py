"""The cloud provider framework: HttpJson against a real HTTP server, the request budget, the parsers.

Every HTTP test talks to an aiohttp.web server on 127.0.0.1 (a real socket, real
headers and bodies); ``sleep`` is injected, so retries record their delays
instead of waiting them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from custom_components.smartmeter.core.cloud.base import (
    CloudAuthError,
    CloudError,
    CloudRateLimitError,
    CloudResponseError,
    CloudTemporaryError,
    HttpJson,
    RequestBudget,
    RetryPolicy,
    parse_decimal,
    parse_time,
    retry_after,
)
from custom_components.smartmeter.core.errors import SmartMeterError
from tests.conftest import corpus_dir

SECRET = "sk_live_9f8e7d6c5b4a3f2e1d0c"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


# --------------------------------------------------------------------------- a scripted server
@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes | str = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # answer only when the test ends (a server that never answers)


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class Server:
    """Answers with the scripted replies in order; the last one repeats."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.seen: list[Seen] = []
        self.release = asyncio.Event()
        self.port = 0

    def script(self, *replies: Reply) -> None:
        """Answer these, in order."""
        self.replies = list(replies)

    def url(self, path: str = "/v1/data/") -> str:
        """A URL on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request and answer the next scripted reply."""
        self.seen.append(
            Seen(
                request.method, request.path, dict(request.query), dict(request.headers), await request.read()
            )
        )
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if reply.hang:
            await self.release.wait()
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        headers = {"Content-Type": reply.content_type, **reply.headers}
        return web.Response(status=reply.status, body=body, headers=headers)


@pytest.fixture
async def server(socket_enabled: None) -> AsyncIterator[Server]:
    """A scripted JSON server on 127.0.0.1, on a free port."""
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = runner.addresses[0][1]
    try:
        yield srv
    finally:
        srv.release.set()
        await runner.cleanup()


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    """The injected session (Home Assistant's shared one in the integration)."""
    async with aiohttp.ClientSession() as shared:
        yield shared


class Sleeps(list[float]):
    """An injected sleep that records the delays instead of waiting."""

    async def __call__(self, delay: float) -> None:
        """Record the delay."""
        self.append(delay)


class Clock:
    """A settable wall clock for the budget."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """The time now."""
        return self.now


class MemoryStore:
    """An in-memory BudgetStore; keeps the very object it is given, as a lazy store would."""

    def __init__(self, data: Any = None) -> None:
        self.data = data
        self.saves = 0

    async def async_load(self) -> Any:
        """The saved data."""
        return self.data

    async def async_save(self, data: Any) -> None:
        """Keep the data."""
        self.data = data
        self.saves += 1


def client(
    session: aiohttp.ClientSession,
    sleeps: Sleeps | None = None,
    *,
    budget: RequestBudget | None = None,
    policy: RetryPolicy | None = None,
    redact: tuple[str, ...] = (),
) -> HttpJson:
    return HttpJson(
        session,
        "testcloud",
        budget=budget,
        policy=policy or RetryPolicy(attempts=4, base=2.0, cap=60.0, timeout=5.0),
        sleep=sleeps if sleeps is not None else Sleeps(),
        redact=redact,
    )


# --------------------------------------------------------------------------- success
async def test_json_floats_are_exact_decimals(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(body='{"a": 0.1, "b": 0.2, "tiny": 1e-7, "n": 3, "list": [1.836, 0.146], "s": "x"}'))
    sleeps = Sleeps()
    http = client(session, sleeps)
    data = await http.request("GET", server.url())
    assert data["a"] + data["b"] == Decimal("0.3")  # no 0.30000000000000004
    assert isinstance(data["a"], Decimal)
    assert data["tiny"] == Decimal("1E-7")
    assert data["n"] == 3 and type(data["n"]) is int
    assert data["list"] == [Decimal("1.836"), Decimal("0.146")]
    assert data["s"] == "x"
    assert sleeps == [] and http.requests == 1 and len(server.seen) == 1
    assert session.closed is False


async def test_request_sends_method_params_headers_json_and_auth(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(body="[]"))
    http = client(session)
    data = await http.request(
        "POST",
        server.url("/graphql"),
        headers={"X-Test": "yes"},
        params={"page": "2", "period_from": "2025-01-01T00:00:00Z"},
        json_body={"query": "{ viewer { name } }"},
        auth=aiohttp.BasicAuth("key", ""),
    )
    assert data == []
    (seen,) = server.seen
    assert seen.method == "POST" and seen.path == "/graphql"
    assert seen.query == {"page": "2", "period_from": "2025-01-01T00:00:00Z"}
    assert seen.headers["X-Test"] == "yes"
    assert seen.headers["Authorization"] == aiohttp.BasicAuth("key", "").encode()
    assert json.loads(seen.body) == {"query": "{ viewer { name } }"}


async def test_byte_order_mark_before_json_is_accepted(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(body=b'\xef\xbb\xbf{"count": 1.5}'))
    assert await client(session).request("GET", server.url()) == {"count": Decimal("1.5")}


# --------------------------------------------------------------------------- auth
@pytest.mark.parametrize("status", [401, 403])
async def test_auth_refused_is_not_retried(
    status: int, server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=status, body='{"detail": "Authentication credentials were not provided."}'))
    sleeps = Sleeps()
    budget = RequestBudget(limit=10, window=3600, clock=Clock())
    http = client(session, sleeps, budget=budget)
    with pytest.raises(CloudAuthError, match=f"HTTP {status}"):
        await http.request("GET", server.url())
    assert len(server.seen) == 1 and sleeps == [] and budget.remaining == 9
    assert session.closed is False


# --------------------------------------------------------------------------- 429
async def test_429_retry_after_seconds_is_waited_then_succeeds(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=429, body="{}", headers={"Retry-After": "7"}), Reply(body='{"ok": true}'))
    sleeps = Sleeps()
    http = client(session, sleeps)
    assert await http.request("GET", server.url()) == {"ok": True}
    assert sleeps == [7.0]
    assert len(server.seen) == 2 and http.requests == 2


async def test_429_retry_after_http_date(server: Server, session: aiohttp.ClientSession) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    server.script(
        Reply(status=429, headers={"Retry-After": format_datetime(when, usegmt=True)}), Reply(body="{}")
    )
    sleeps = Sleeps()
    assert await client(session, sleeps).request("GET", server.url()) == {}
    (delay,) = sleeps
    assert 27.0 <= delay <= 31.0  # the date has whole seconds; the test takes a moment


async def test_429_retry_after_above_cap_raises_at_once(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "3600"}), Reply(body="{}"))
    sleeps = Sleeps()
    http = client(session, sleeps, policy=RetryPolicy(attempts=4, base=1, cap=60, timeout=5))
    with pytest.raises(CloudRateLimitError) as caught:
        await http.request("GET", server.url())
    assert caught.value.retry_after == 3600.0
    assert sleeps == [] and len(server.seen) == 1


async def test_429_without_header_backs_off(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(status=429), Reply(status=429), Reply(body='{"ok": 1}'))
    sleeps = Sleeps()
    http = client(session, sleeps, policy=RetryPolicy(attempts=4, base=2, cap=60, timeout=5))
    assert await http.request("GET", server.url()) == {"ok": 1}
    assert len(sleeps) == 2
    assert 1.8 <= sleeps[0] <= 2.2 and 3.6 <= sleeps[1] <= 4.4


async def test_429_every_time_ends_with_rate_limit_error(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "5"}))
    sleeps = Sleeps()
    http = client(session, sleeps, policy=RetryPolicy(attempts=3, base=1, cap=60, timeout=5))
    with pytest.raises(CloudRateLimitError) as caught:
        await http.request("GET", server.url())
    assert caught.value.retry_after == 5.0
    assert sleeps == [5.0, 5.0] and len(server.seen) == 3  # no sleep after the last attempt


async def test_429_with_unusable_retry_after_backs_off(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "inf"}), Reply(body="{}"))
    sleeps = Sleeps()
    http = client(session, sleeps, policy=RetryPolicy(attempts=2, base=3, cap=60, timeout=5))
    assert await http.request("GET", server.url()) == {}
    (delay,) = sleeps
    assert 2.7 <= delay <= 3.3


# --------------------------------------------------------------------------- 5xx, timeouts, connection
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_retried_with_capped_exponential_backoff(
    status: int, server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=status, body='{"error": "busy"}'))
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=7, base=1.0, cap=10.0, timeout=5)
    http = client(session, sleeps, policy=policy)
    with pytest.raises(CloudTemporaryError, match=f"HTTP {status}"):
        await http.request("GET", server.url())
    assert len(server.seen) == 7 and http.requests == 7
    expected = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]  # base * 2**n, capped; none after the last attempt
    assert len(sleeps) == len(expected)
    for delay, nominal in zip(sleeps, expected, strict=True):
        assert nominal * 0.9 <= delay <= nominal * 1.1
        assert delay <= policy.cap * 1.1
    # they grow until the cap (jitter is 10 %, the nominal delays double)
    assert sleeps[0] < sleeps[1] < sleeps[2] < sleeps[3] < sleeps[4]


async def test_5xx_then_success(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(status=502, body="Bad Gateway", content_type="text/plain"), Reply(body='{"ok": 2}'))
    sleeps = Sleeps()
    assert await client(session, sleeps).request("GET", server.url()) == {"ok": 2}
    assert len(sleeps) == 1


def test_policy_delay_never_exceeds_cap_with_jitter() -> None:
    policy = RetryPolicy(attempts=50, base=2.0, cap=60.0)
    for attempt in range(50):
        for _ in range(20):
            delay = policy.delay(attempt)
            nominal = min(60.0, 2.0 * 2.0**attempt)
            assert nominal * 0.9 <= delay <= nominal * 1.1 <= 66.0


async def test_timeout_is_temporary(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(hang=True))
    sleeps = Sleeps()
    http = client(session, sleeps, policy=RetryPolicy(attempts=2, base=1, cap=5, timeout=0.2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CloudTemporaryError, match=r"no answer from .* in 0\.2 s"):
        await http.request("GET", server.url())
    assert loop.time() - started < 3.0
    assert len(server.seen) == 2 and len(sleeps) == 1
    assert session.closed is False


async def test_connection_refused_is_temporary(
    socket_enabled: None, session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    sleeps = Sleeps()
    http = client(session, sleeps, policy=RetryPolicy(attempts=3, base=1, cap=5, timeout=5), redact=(SECRET,))
    with pytest.raises(CloudTemporaryError, match="cannot reach") as caught:
        await http.request("GET", f"http://127.0.0.1:{unused_tcp_port}/v1/data/?api_key={SECRET}")
    assert len(sleeps) == 2 and http.requests == 3
    assert SECRET not in str(caught.value)
    assert session.closed is False


# --------------------------------------------------------------------------- bodies that are not the JSON we want
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html; charset=utf-8", "<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>"),
        ("text/html", "Maintenance: back soon"),  # HTML by content type even though it is not markup
        ("application/json", "\n  <html><head><title>Error</title></head></html>"),  # HTML by its look
        ("text/plain", "<?xml version='1.0'?><error/>"),
    ],
)
async def test_html_page_with_200(
    content_type: str, body: str, server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(body=body, content_type=content_type))
    sleeps = Sleeps()
    with pytest.raises(CloudResponseError, match="HTML page instead of JSON"):
        await client(session, sleeps).request("GET", server.url())
    assert sleeps == [] and len(server.seen) == 1  # an answer, not a failure retrying fixes


@pytest.mark.parametrize(
    "body",
    [
        '{"count": 240, "results": [{"consumption": 1.836, "interval_start": "2020-05-08T00:00',
        "",
        "   ",
        "null trailing",
        "{'single': 'quotes'}",
        "[" * 100_000,  # deeper than the parser goes
        b"\xff\xfe{\x00}\x00",
    ],
    ids=["truncated", "empty", "blank", "trailing", "quotes", "deep", "utf16"],
)
async def test_malformed_json(body: str | bytes, server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(body=body))
    sleeps = Sleeps()
    with pytest.raises(CloudResponseError, match="malformed JSON"):
        await client(session, sleeps).request("GET", server.url())
    assert sleeps == []


async def test_curl_polluted_corpus_body(server: Server, session: aiohttp.ClientSession) -> None:
    polluted = (corpus_dir() / "cloud" / "octopus_consumption_curl_polluted.txt").read_bytes()
    assert b"% Total" in polluted and b'"results"' in polluted  # what the sample is
    server.script(Reply(body=polluted))
    with pytest.raises(CloudResponseError, match=r"malformed JSON \(HTTP 200\)") as caught:
        await client(session).request("GET", server.url())
    assert "% Total" in str(caught.value)  # the snippet shows what came instead
    assert "\n" not in str(caught.value)


async def test_clean_corpus_page_parses_exactly(server: Server, session: aiohttp.ClientSession) -> None:
    raw = (corpus_dir() / "cloud" / "octopus_consumption_electricity_page1.json").read_bytes()
    server.script(Reply(body=raw))
    data = await client(session).request("GET", server.url())
    expected = json.loads(raw, parse_float=Decimal)
    assert data == expected
    assert all(isinstance(row["consumption"], Decimal) for row in data["results"])


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_4xx_json_body_is_a_response_error(
    status: int, server: Server, session: aiohttp.ClientSession
) -> None:
    server.script(Reply(status=status, body='{"detail": "Not found."}'))
    sleeps = Sleeps()
    with pytest.raises(CloudResponseError, match=f"HTTP {status} from .*Not found") as caught:
        await client(session, sleeps).request("GET", server.url())
    assert not isinstance(caught.value, CloudAuthError | CloudTemporaryError)
    assert sleeps == [] and len(server.seen) == 1


def test_error_hierarchy() -> None:
    for cls in (CloudAuthError, CloudRateLimitError, CloudTemporaryError, CloudResponseError):
        assert issubclass(cls, CloudError)
    assert issubclass(CloudError, SmartMeterError)
    assert CloudRateLimitError("x").retry_after is None
    assert CloudRateLimitError("x", 12.5).retry_after == 12.5


# --------------------------------------------------------------------------- secrets
@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="custom_components.smartmeter.core.cloud"):
        yield caplog


def _assert_no_secret(err: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("custom_components.smartmeter")]
    texts = [str(err), repr(err), *map(str, err.args), *ours]
    for text in texts:
        assert SECRET not in text
        # nor a recognisable piece of it (a snippet cut in the middle of the token)
        assert SECRET[:10] not in text
        assert SECRET[-10:] not in text


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=400, body=json.dumps({"detail": f"Invalid API key {SECRET}"})), CloudResponseError),
        (
            Reply(status=200, body=f"<html>token={SECRET}</html>", content_type="text/html"),
            CloudResponseError,
        ),
        (Reply(status=200, body=f'{{"api_key": "{SECRET}", "trunc'), CloudResponseError),
        # the token straddles the 80-character snippet cut
        (Reply(status=200, body="x" * 70 + SECRET + "y" * 50), CloudResponseError),
        (Reply(status=422, body=json.dumps({"e": "z" * 66, "k": SECRET})), CloudResponseError),
        (Reply(status=503, body=f"error for {SECRET}", content_type="text/plain"), CloudTemporaryError),
        (Reply(status=429, body=f"slow down {SECRET}", headers={"Retry-After": "1"}), CloudRateLimitError),
        (Reply(status=401, body=f"bad key {SECRET}"), CloudAuthError),
    ],
)
async def test_secrets_never_in_errors(
    reply: Reply,
    error: type[CloudError],
    server: Server,
    session: aiohttp.ClientSession,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    server.script(reply)
    http = client(session, policy=RetryPolicy(attempts=2, base=1, cap=5, timeout=5), redact=(SECRET, ""))
    # the secret in the path and in the query string
    with pytest.raises(error) as caught:
        await http.request("GET", server.url(f"/v1/accounts/{SECRET}/data/"), params={"token": SECRET})
    assert server.seen[0].query == {"token": SECRET}  # it was really sent
    if error in (CloudTemporaryError, CloudRateLimitError):  # the retry was logged, and checked too
        assert any("retry 1" in r.getMessage() for r in debug_log.records if r.name.endswith("cloud.base"))
    _assert_no_secret(caught.value, debug_log)


async def test_secret_in_url_on_timeout(
    server: Server, session: aiohttp.ClientSession, debug_log: pytest.LogCaptureFixture
) -> None:
    server.script(Reply(hang=True))
    http = client(session, policy=RetryPolicy(attempts=2, base=1, cap=5, timeout=0.2), redact=(SECRET,))
    with pytest.raises(CloudTemporaryError) as caught:
        await http.request("GET", server.url(f"/v1/{SECRET}/?key={SECRET}"))
    assert "**REDACTED**" in str(caught.value)
    _assert_no_secret(caught.value, debug_log)


async def test_secret_not_in_chained_traceback(
    server: Server, session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    """The errors of aiohttp may hold the whole URL: the chained cause must not carry the token either."""
    http = client(session, policy=RetryPolicy(attempts=1, base=1, cap=5, timeout=5), redact=(SECRET,))
    # a redirect loop (TooManyRedirects names the last URL, query string and all)
    server.script(Reply(status=302, headers={"Location": f"/loop?token={SECRET}"}))
    with pytest.raises(CloudTemporaryError, match="TooManyRedirects") as caught:
        await http.request("GET", server.url(f"/v1/?token={SECRET}"))
    assert len(server.seen) > 1
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    # an invalid URL
    with pytest.raises(CloudTemporaryError) as caught:
        await http.request("GET", f"http://[::1/v1/?token={SECRET}")
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    # an error without the secret keeps its cause, for debugging
    with pytest.raises(CloudTemporaryError) as caught:
        await http.request("GET", f"http://127.0.0.1:{unused_tcp_port}/v1/?token={SECRET}")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


# --------------------------------------------------------------------------- the budget in HttpJson
async def test_each_attempt_spends_one_unit(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(status=503), Reply(status=500), Reply(body="{}"))
    budget = RequestBudget(limit=10, window=3600, clock=Clock())
    await budget.async_load()
    assert await client(session, budget=budget).request("GET", server.url()) == {}
    assert budget.remaining == 7 and len(server.seen) == 3


async def test_spent_budget_makes_no_request(server: Server, session: aiohttp.ClientSession) -> None:
    clock = Clock()
    budget = RequestBudget(limit=2, window=3600, clock=clock)
    budget.take()
    clock.now += 600
    budget.take()
    clock.now += 60
    sleeps = Sleeps()
    with pytest.raises(CloudRateLimitError, match="budget spent") as caught:
        await client(session, sleeps, budget=budget).request("GET", server.url())
    assert caught.value.retry_after == pytest.approx(3600 - 660)
    assert server.seen == [] and sleeps == []


async def test_budget_running_out_during_retries(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(status=503))
    budget = RequestBudget(limit=2, window=3600, clock=Clock())
    sleeps = Sleeps()
    with pytest.raises(CloudRateLimitError, match="budget spent"):
        await client(session, sleeps, budget=budget).request("GET", server.url())
    assert len(server.seen) == 2 and budget.remaining == 0


async def test_zero_attempts_still_tries_once(server: Server, session: aiohttp.ClientSession) -> None:
    server.script(Reply(status=500))
    http = client(session, policy=RetryPolicy(attempts=0, base=1, cap=5, timeout=5))
    with pytest.raises(CloudTemporaryError):
        await http.request("GET", server.url())
    assert len(server.seen) == 1


# --------------------------------------------------------------------------- RequestBudget
async def test_budget_survives_a_restart() -> None:
    clock = Clock()
    store = MemoryStore()
    budget = RequestBudget(limit=3, window=3600, store=store, clock=clock)
    await budget.async_load()
    budget.take()
    clock.now += 10
    budget.take()
    await budget.async_save()
    assert store.data == {"times": [clock.now - 10, clock.now]}
    json.dumps(store.data)  # storable as JSON

    # "restart": a new budget over the same store
    clock.now += 100
    again = RequestBudget(limit=3, window=3600, store=store, clock=clock)
    await again.async_load()
    assert again.remaining == 1
    again.take()
    with pytest.raises(CloudRateLimitError) as caught:
        again.take()
    assert caught.value.retry_after == pytest.approx(3600 - 110)
    # once the oldest request leaves the window, one more is allowed
    clock.now += 3600 - 110
    again.take()


async def test_saved_times_are_a_copy() -> None:
    clock = Clock()
    store = MemoryStore()
    budget = RequestBudget(limit=5, window=60, store=store, clock=clock)
    await budget.async_load()
    budget.take()
    await budget.async_save()
    saved = store.data
    budget.take()
    budget.take()
    assert saved == {"times": [clock.now]}  # later requests do not change what was saved


async def test_load_twice_and_without_store() -> None:
    clock = Clock()
    store = MemoryStore({"times": [clock.now - 1]})
    budget = RequestBudget(limit=5, window=60, store=store, clock=clock)
    await budget.async_load()
    await budget.async_load()  # loads once: the time is not counted twice
    assert budget.remaining == 4
    bare = RequestBudget(limit=5, window=60, clock=clock)
    await bare.async_load()
    await bare.async_save()
    assert bare.remaining == 5


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "times",
        42,
        {},
        {"times": None},
        {"times": "1750000000"},
        {"times": {"a": 1}},
        {"times": [None, "1749999990", [1], {"t": 1}, True, float("nan"), float("inf")]},
        {"times": [1_750_000_000.0 + 5, 1_750_000_000.0 + 86_400]},  # in the future (clock set back)
        {"times": [1_750_000_000.0 - 3600, 1_750_000_000.0 - 7200, 0, -5]},  # too old
    ],
)
async def test_corrupt_or_stale_saved_data_counts_as_none(data: Any) -> None:
    clock = Clock()
    budget = RequestBudget(limit=3, window=3600, store=MemoryStore(data), clock=clock)
    await budget.async_load()
    assert budget.remaining == 3


async def test_load_keeps_only_valid_times_and_merges() -> None:
    clock = Clock()
    now = clock.now
    data = {"times": [now - 10, "x", now - 4000, now + 1, now - 20, 7, None, int(now) - 30]}
    budget = RequestBudget(limit=10, window=3600, store=MemoryStore(data), clock=clock)
    budget.take()  # a request before the load (merged, sorted)
    await budget.async_load()
    assert budget.remaining == 6
    store = budget.store
    assert isinstance(store, MemoryStore)
    await budget.async_save()
    assert store.data == {"times": [now - 30, now - 20, now - 10, now]}


async def test_budget_prunes_old_times() -> None:
    clock = Clock()
    store = MemoryStore()
    budget = RequestBudget(limit=2, window=100, store=store, clock=clock)
    budget.take()
    clock.now += 50
    budget.take()
    assert budget.remaining == 0
    clock.now += 50  # the first is exactly one window old: out
    assert budget.remaining == 1
    await budget.async_save()
    assert store.data == {"times": [clock.now - 50]}
    clock.now += 1000
    assert budget.remaining == 2
    await budget.async_save()
    assert store.data == {"times": []}


def test_budget_with_clock_stepping_back_stays_ordered() -> None:
    clock = Clock()
    budget = RequestBudget(limit=2, window=100, clock=clock)
    budget.take()
    clock.now -= 30  # NTP stepped the clock back
    budget.take()
    with pytest.raises(CloudRateLimitError) as caught:
        budget.take()
    # the oldest request (the one stamped 30 s earlier) leaves the window first
    assert caught.value.retry_after == pytest.approx(100)
    clock.now += 99
    with pytest.raises(CloudRateLimitError):
        budget.take()
    clock.now += 1  # now the earlier-stamped one is a window old
    budget.take()


def test_zero_limit_budget_refuses_with_a_wait() -> None:
    budget = RequestBudget(limit=0, window=60, clock=Clock())
    assert budget.remaining == 0
    with pytest.raises(CloudRateLimitError) as caught:
        budget.take()
    assert caught.value.retry_after == 60


# --------------------------------------------------------------------------- retry_after()
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("1e999", None),
        ("soon", None),
        ("Mon, 99 Foo 99999 99:99:99 GMT", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),  # 60 s after `now` below
        ("Wed, 21 Oct 2015 07:28:00 -0000", 60.0),  # no zone: read as UTC
        ("Wed, 21 Oct 2015 09:28:00 +0200", 60.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),  # in the past
        (
            "Fri, 31 Dec 9999 23:59:59 -1200",
            253402343999.0 - 1445412420.0,
        ),  # a wait, if absurd (above any cap)
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 27, tzinfo=UTC).timestamp()
    assert retry_after(value, now=now) == expected


def test_retry_after_date_uses_the_clock_by_default() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    wait = retry_after(later)
    assert wait is not None and 117 <= wait <= 121


# --------------------------------------------------------------------------- parse_time / parse_decimal
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-30T01:00:00Z", datetime(2025, 3, 30, 1, tzinfo=UTC)),
        ("2025-03-30T02:30:00+01:00", datetime(2025, 3, 30, 1, 30, tzinfo=UTC)),
        ("2025-10-26T01:30:00+00:00", datetime(2025, 10, 26, 1, 30, tzinfo=UTC)),
        ("2025-01-01T05:45:00+05:45", datetime(2025, 1, 1, 0, 0, tzinfo=UTC)),
        ("2025-01-01T00:00:00.250-03:00", datetime(2025, 1, 1, 3, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_parse_time(value: str, expected: datetime) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-30T01:00:00",  # naive
        "2025-03-30",  # a date: naive
        "garbage",
        "",
        "2025-13-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",  # past datetime.max in UTC
        "0001-01-01T00:00:00+01:00",  # before datetime.min in UTC
        None,
        1743296400,
        1743296400.0,
        ["2025-03-30T01:00:00Z"],
        datetime(2025, 3, 30, tzinfo=UTC),
    ],
)
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(CloudResponseError, match="interval_start"):
        parse_time(value, "interval_start")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1.836"), Decimal("1.836")),
        (3, Decimal(3)),
        (0, Decimal(0)),
        ("0.146", Decimal("0.146")),
        ("-2.5e-3", Decimal("-0.0025")),
        (0.1, Decimal("0.1")),  # the float's shortest repr, not its binary expansion
        (1.836, Decimal("1.836")),
        (-0.0, Decimal("-0.0")),
    ],
)
def test_parse_decimal(value: object, expected: Decimal) -> None:
    parsed = parse_decimal(value)
    assert parsed == expected and isinstance(parsed, Decimal)
    assert str(parsed) == str(expected)


def test_parse_decimal_huge_int_is_exact() -> None:
    huge = 10**5000 + 7  # past the int-to-str digit limit
    assert parse_decimal(huge) == Decimal(huge)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        [1],
        {"v": 1},
        b"1",
        "abc",
        "",
        "1,5",
        "NaN",
        "-Infinity",
        "inf",
        "sNaN",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("sNaN"),
        float("nan"),
        float("inf"),
        float("-inf"),
    ],
)
def test_parse_decimal_rejects(value: object) -> None:
    with pytest.raises(CloudResponseError, match="consumption"):
        parse_decimal(value, "consumption")
