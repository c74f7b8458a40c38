"""What every cloud provider shares: models, errors, retries and a request budget.

A provider client (:mod:`.octopus`, :mod:`.tibber`) takes an injected
:class:`aiohttp.ClientSession` (Home Assistant's shared one in the integration)
and never closes it. Every request goes through :class:`HttpJson`, which

- spends one unit of the provider's :class:`RequestBudget` per attempt, so the
  budget holds across retries and, through its :class:`BudgetStore`, across
  restarts;
- retries what retrying can fix (timeouts, connection errors, 5xx, 429) with
  capped exponential backoff, waiting what a ``Retry-After`` header asks when
  that is within the cap;
- turns everything else into one typed error: :class:`CloudAuthError` (401,
  403), :class:`CloudRateLimitError`, :class:`CloudTemporaryError`,
  :class:`CloudResponseError` (an HTML error page, truncated or polluted JSON,
  a body of the wrong shape).

Interval data is a list of :class:`Interval` ``(start, end, value, unit)`` in
UTC, per meter and register.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp

from ..errors import SmartMeterError
from ..models import Medium

_LOGGER = logging.getLogger(__name__)

# Register keys of cloud interval data: the keys local sources use for the same
# quantity (core/obis.py), so entities and statistics read alike.
ENERGY_IMPORT = "energy_import_total"
ENERGY_EXPORT = "energy_export_total"
GAS = "gas"  # gas consumption, in m3 or kWh as the provider states it


# --------------------------------------------------------------------------- errors
class CloudError(SmartMeterError):
    """A cloud provider request failed."""


class CloudAuthError(CloudError):
    """The credentials were refused (401/403, or the API's own auth error)."""


class CloudRateLimitError(CloudError):
    """The provider (429) or our own request budget says: not now.

    ``retry_after`` is the number of seconds to wait, when known.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CloudTemporaryError(CloudError):
    """A failure retrying may fix: timeout, connection error, 5xx."""


class CloudResponseError(CloudError):
    """The provider answered, but not with what its API documents.

    ``status`` is the HTTP status of the answer, when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- models
@dataclass(frozen=True, slots=True)
class Interval:
    """A quantity over ``[start, end)``: consumption in kWh/m³, a cost, a unit price.

    ``start`` and ``end`` are aware datetimes in UTC.
    """

    start: datetime
    end: datetime
    value: Decimal
    unit: str


@dataclass(frozen=True, slots=True)
class CloudMeter:
    """One meter (or home) an account reports interval data for.

    ``id`` is stable and unique within the provider (an MPAN/MPRN and serial, a
    Tibber home id). ``registers`` are the register keys it has interval data
    for, ``units`` their units in the same order.
    """

    provider: str
    id: str
    medium: Medium
    registers: tuple[str, ...]
    units: tuple[str, ...]
    name: str | None = None
    serial_number: str | None = None
    model: str | None = None
    tariff: str | None = None
    currency: str | None = None
    # Provider-specific values the client needs again (a meter point, a home id).
    extra: tuple[tuple[str, str], ...] = ()
    live: bool = False

    def unit(self, register: str) -> str:
        """The unit of a register's interval values."""
        return self.units[self.registers.index(register)]

    def get(self, key: str) -> str | None:
        """One of the provider-specific values."""
        return dict(self.extra).get(key)


@dataclass(frozen=True, slots=True)
class CloudAccount:
    """What the credentials give access to."""

    provider: str
    id: str
    meters: tuple[CloudMeter, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class IntervalData:
    """One fetch of a meter's register over a window."""

    consumption: tuple[Interval, ...]
    # Cost per interval in ``currency`` (provider's own figure or consumption x price).
    cost: tuple[Interval, ...] = ()


class CloudProvider(Protocol):
    """What the integration asks of a provider client."""

    name: str

    async def async_account(self) -> CloudAccount:
        """Validate the credentials and discover the meters."""

    async def async_intervals(
        self, meter: CloudMeter, register: str, start: datetime, end: datetime
    ) -> IntervalData:
        """Interval data (and its cost, where known) with start in ``[start, end)``."""

    async def async_prices(self, meter: CloudMeter, start: datetime, end: datetime) -> tuple[Interval, ...]:
        """Unit prices (currency per kWh) valid in ``[start, end)``; empty when the tariff has none."""


# --------------------------------------------------------------------------- budget
class BudgetStore(Protocol):
    """Where a budget keeps its request times (Home Assistant's Store in the integration)."""

    async def async_load(self) -> Any:
        """The saved data, or None."""

    async def async_save(self, data: Any) -> None:
        """Save the data."""


@dataclass(slots=True)
class RequestBudget:
    """At most ``limit`` requests per sliding ``window`` seconds, kept across restarts.

    ``take()`` records one request or raises :class:`CloudRateLimitError` with
    the seconds until the oldest request leaves the window. Call
    :meth:`async_load` once before use and :meth:`async_save` after a batch.
    """

    limit: int
    window: float
    store: BudgetStore | None = None
    clock: Callable[[], float] = time.time
    _times: list[float] = field(default_factory=list)
    _loaded: bool = False

    def _prune(self, now: float) -> None:
        cut = now - self.window
        if self._times and self._times[0] <= cut:
            self._times = [t for t in self._times if t > cut]

    @property
    def remaining(self) -> int:
        """Requests left in the current window."""
        self._prune(self.clock())
        return max(0, self.limit - len(self._times))

    def take(self) -> None:
        """Spend one request."""
        now = self.clock()
        self._prune(now)
        if len(self._times) >= max(self.limit, 0):
            # With no request in the window (a limit of 0), nothing frees up sooner than a window.
            wait = (self._times[0] + self.window - now) if self._times else self.window
            raise CloudRateLimitError(
                f"request budget spent ({self.limit} per {self.window:.0f} s): next in {wait:.0f} s", wait
            )
        # Kept sorted even when the wall clock steps back: the oldest time is first.
        bisect.insort(self._times, now)

    async def async_load(self) -> None:
        """Load the request times saved before a restart (bad data counts as none)."""
        if self._loaded or self.store is None:
            self._loaded = True
            return
        data = await self.store.async_load()
        times = data.get("times") if isinstance(data, dict) else None
        if isinstance(times, list):
            now = self.clock()
            kept = [float(t) for t in times if isinstance(t, int | float) and now - self.window < t <= now]
            self._times = sorted(kept + self._times)
        self._loaded = True

    async def async_save(self) -> None:
        """Save the request times still inside the window."""
        if self.store is None:
            return
        self._prune(self.clock())
        # A copy: the store may keep the object (and serialise it later) while we go on appending.
        await self.store.async_save({"times": list(self._times)})


# --------------------------------------------------------------------------- http
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff: ``base * 2**n`` seconds, at most ``cap``, ``attempts`` tries in all."""

    attempts: int = 4
    base: float = 2.0
    cap: float = 60.0
    timeout: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based), with 10 % jitter."""
        delay = min(self.cap, self.base * 2.0**attempt)
        return delay * (0.9 + 0.2 * random.random())  # noqa: S311 - jitter, not crypto


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "nan", "inf", "1e999": not a wait anyone can honour; the caller backs off as without the header.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _snippet(text: str) -> str:
    """The start of a body for an error message, on one line."""
    text = " ".join(text.split())
    return text[:80] + ("..." if len(text) > 80 else "")


class HttpJson:
    """JSON over HTTP with typed errors, retries and a budget (see the module docstring).

    ``redact`` lists strings (tokens, keys) that must never appear in an error
    message; ``sleep`` is injectable for tests.
    """

    # HTTP statuses that mean "slow down".
    rate_limit_statuses: frozenset[int] = frozenset({429})

    def __init__(
        self,
        session: aiohttp.ClientSession,
        provider: str,
        *,
        budget: RequestBudget | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        redact: tuple[str, ...] = (),
    ) -> None:
        """Use ``session`` (never closed here)."""
        self.session = session
        self.provider = provider
        self.budget = budget
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.redact = tuple(secret for secret in redact if secret)
        self.requests = 0

    def _clean(self, text: str) -> str:
        for secret in self.redact:
            text = text.replace(secret, "**REDACTED**")
        return text

    def _snippet(self, text: str) -> str:
        # Redact before cutting: a secret cut in two at the end of the snippet would leak its start.
        return _snippet(self._clean(text))

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        auth: aiohttp.BasicAuth | None = None,
    ) -> Any:
        """The decoded JSON body of a 2xx answer, after retries; a typed error otherwise."""
        policy = self.policy
        last: CloudError | None = None
        for attempt in range(max(1, policy.attempts)):
            if self.budget is not None:
                self.budget.take()  # raises CloudRateLimitError when spent
            self.requests += 1
            wait: float | None = None
            try:
                return await self._once(method, url, headers, params, json_body, auth)
            except CloudRateLimitError as err:
                last = err
                wait = err.retry_after
                if wait is not None and wait > policy.cap:
                    raise  # a long wait is the caller's (next update's) business
            except CloudTemporaryError as err:
                last = err
            if attempt + 1 < policy.attempts:
                delay = policy.delay(attempt) if wait is None else wait
                _LOGGER.debug("%s: %s; retry %d in %.1f s", self.provider, last, attempt + 1, delay)
                await self.sleep(delay)
        assert last is not None
        raise last

    async def _once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        json_body: Any,
        auth: aiohttp.BasicAuth | None,
    ) -> Any:
        where = self._clean(url.split("?", 1)[0])
        try:
            async with asyncio.timeout(self.policy.timeout):
                async with self.session.request(
                    method, url, headers=headers, params=params, json=json_body, auth=auth
                ) as resp:
                    status = resp.status
                    body = await resp.read()
                    retry = retry_after(resp.headers.get("Retry-After"))
                    content_type = resp.headers.get("Content-Type", "")
        except TimeoutError as err:
            raise CloudTemporaryError(
                f"{self.provider}: no answer from {where} in {self.policy.timeout:g} s"
            ) from err
        except aiohttp.ClientError as err:
            # aiohttp's own message may hold the whole URL, query string and all (a redirect
            # loop, an invalid URL): then keep it out of the chained traceback too.
            cause = err if self._clean(str(err)) == str(err) else None
            raise CloudTemporaryError(
                f"{self.provider}: cannot reach {where}: {self._clean(type(err).__name__)}"
            ) from cause
        # utf-8-sig: a byte order mark before the JSON is not an error (RFC 8259 lets parsers ignore it).
        text = body.decode("utf-8-sig", "replace")
        if status in (401, 403):
            raise CloudAuthError(f"{self.provider}: credentials refused (HTTP {status})")
        if status in self.rate_limit_statuses:
            raise CloudRateLimitError(f"{self.provider}: rate limited (HTTP {status})", retry)
        if status >= 500:
            raise CloudTemporaryError(f"{self.provider}: server error HTTP {status} from {where}")
        if "html" in content_type.lower() or text.lstrip()[:1] == "<":
            raise CloudResponseError(
                f"{self.provider}: HTML page instead of JSON (HTTP {status}) from {where}: {self._snippet(text)}",
                status,
            )
        try:
            data = json.loads(text, parse_float=Decimal)
        except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than the parser goes
            raise CloudResponseError(
                f"{self.provider}: malformed JSON (HTTP {status}) from {where}: {self._snippet(text)}", status
            ) from err
        if status >= 400:
            if self.read_error_body(status, data):
                return data  # the client reads it (GraphQL errors)
            raise CloudResponseError(
                f"{self.provider}: HTTP {status} from {where}: {self._snippet(text)}", status
            )
        return data

    def read_error_body(self, status: int, data: Any) -> bool:
        """Whether a 4xx JSON body goes back to the client instead of raising (default: never)."""
        return False


# --------------------------------------------------------------------------- parsing helpers
def parse_time(value: object, what: str = "time") -> datetime:
    """An ISO 8601 timestamp with an offset, as UTC; :class:`CloudResponseError` otherwise."""
    if not isinstance(value, str):
        raise CloudResponseError(f"{what}: expected an ISO timestamp, got {type(value).__name__}")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise CloudResponseError(f"{what}: bad timestamp {value[:40]!r}") from err
    if stamp.tzinfo is None:
        raise CloudResponseError(f"{what}: timestamp without an offset {value[:40]!r}")
    try:
        return stamp.astimezone(UTC)
    except OverflowError as err:  # 9999-12-31T23:30:00-01:00 is past datetime.max in UTC
        raise CloudResponseError(f"{what}: timestamp out of range {value[:40]!r}") from err


def parse_decimal(value: object, what: str = "value") -> Decimal:
    """A JSON number as an exact Decimal (:class:`HttpJson` parses JSON floats as Decimal)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CloudResponseError(f"{what}: not a finite number")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CloudResponseError(f"{what}: expected a number, got {type(value).__name__}")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except (ArithmeticError, ValueError) as err:
        raise CloudResponseError(f"{what}: bad number {str(value)[:40]!r}") from err
    if not number.is_finite():
        raise CloudResponseError(f"{what}: not a finite number")
    return number
