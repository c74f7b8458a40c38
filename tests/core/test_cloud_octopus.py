"""Octopus Energy client against the captured API samples and a local fake API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from custom_components.smartmeter.core.cloud.base import (
    ENERGY_EXPORT,
    ENERGY_IMPORT,
    GAS,
    CloudAuthError,
    CloudError,
    CloudMeter,
    CloudRateLimitError,
    CloudResponseError,
    CloudTemporaryError,
    Interval,
    IntervalData,
    RequestBudget,
    RetryPolicy,
)
from custom_components.smartmeter.core.cloud.octopus import (
    OCTOPUS_API,
    OctopusAccountNotFoundError,
    OctopusClient,
    TariffCode,
    default_budget,
    parse_consumption,
    parse_rates,
)
from custom_components.smartmeter.core.models import Medium
from tests.cloud_servers.octopus import FakeOctopus
from tests.conftest import corpus_dir

KEY = "sk_live_fake0123456789"
ACCOUNT = "A-AAAA1111"
MPAN = "2700003645222"
SERIAL = "19L2761452"
AGILE = "E-1R-AGILE-18-02-21-H"
HALF = timedelta(minutes=30)
POLICY = RetryPolicy(attempts=3, base=0.01, cap=60.0, timeout=2.0)


def utc(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def corpus(name: str) -> Path:
    """A file of the shared corpus's cloud samples."""
    return corpus_dir() / "cloud" / name


def corpus_json(name: str) -> dict[str, Any]:
    """A corpus sample decoded with exact numbers."""
    data: dict[str, Any] = json.loads(corpus(name).read_text(), parse_float=Decimal)
    return data


def last_page(name: str) -> str:
    """A corpus sample as the only page (its ``next``, to the real API, removed)."""
    data = json.loads(corpus(name).read_text())
    data["next"] = None
    return json.dumps(data)


def clean(err: BaseException) -> None:
    """The API key appears in no message of the error or its causes."""
    seen: BaseException | None = err
    while seen is not None:
        assert KEY not in str(seen)
        assert KEY not in repr(seen)
        seen = seen.__cause__ or seen.__context__


class Sleeps(list[float]):
    """An injected sleep that records what it was asked to wait."""

    async def __call__(self, seconds: float) -> None:
        """Record, do not wait."""
        self.append(seconds)


@pytest.fixture
async def server(socket_enabled: None) -> AsyncGenerator[FakeOctopus]:
    """A fake Octopus API with one Agile import meter (the corpus sample's MPAN/serial)."""
    fake = FakeOctopus(api_key=KEY, account=ACCOUNT, page_size_cap=50)
    fake.add_electricity(MPAN, SERIAL)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def session(socket_enabled: None) -> AsyncGenerator[aiohttp.ClientSession]:
    """A client session (the integration injects Home Assistant's)."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def sleeps() -> Sleeps:
    """The recorded retry waits."""
    return Sleeps()


def make_client(
    session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps, **kwargs: Any
) -> OctopusClient:
    """A client of the fake API with fast retries."""
    options: dict[str, Any] = {"base_url": server.base_url, "policy": POLICY, "sleep": sleeps}
    options.update(kwargs)
    key = options.pop("api_key", KEY)
    return OctopusClient(session, key, options.pop("account", ACCOUNT), **options)


@pytest.fixture
def client(session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps) -> OctopusClient:
    """A client of the fake API."""
    return make_client(session, server, sleeps)


async def meter_of(client: OctopusClient, meter_id: str = f"{MPAN}_{SERIAL}") -> CloudMeter:
    """A meter as account discovery reports it."""
    account = await client.async_account()
    return next(m for m in account.meters if m.id == meter_id)


def corpus_rates() -> list[tuple[datetime, datetime | None, Decimal]]:
    """The Agile sample's rates as (valid_from, valid_to, pence inc VAT)."""
    return [
        (
            datetime.fromisoformat(row["valid_from"]),
            datetime.fromisoformat(row["valid_to"]),
            row["value_inc_vat"],
        )
        for row in corpus_json("octopus_agile_standard_unit_rates_page1.json")["results"]
    ]


# --------------------------------------------------------------------------- corpus
async def test_corpus_consumption_decodes_exactly(client: OctopusClient, server: FakeOctopus) -> None:
    """The real page: 99 half-hours, exact sum, descending +01:00 times to sorted UTC, its gaps kept."""
    meter = await meter_of(client)
    server.fail_next(200, body=last_page("octopus_consumption_electricity_page1.json"))
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2020, 5, 1), utc(2020, 5, 10))
    usage = data.consumption
    assert len(usage) == 99
    assert sum(i.value for i in usage) == Decimal("24.774")
    assert all(i.start.tzinfo is UTC and i.end - i.start == HALF and i.unit == "kWh" for i in usage)
    assert [i.start for i in usage] == sorted(i.start for i in usage)
    # The newest row, 2020-05-08T00:00:00+01:00, is 2020-05-07T23:00Z.
    assert usage[-1] == Interval(utc(2020, 5, 7, 23), utc(2020, 5, 7, 23, 30), Decimal("1.836"), "kWh")
    assert usage[0].start == utc(2020, 5, 4, 21, 30)  # 22:30+01:00
    starts = {i.start for i in usage}
    # Nothing from 00:30+01:00 on 5 May to 00:30+01:00 on 6 May, and 11:30+01:00 on 6 May missing.
    assert utc(2020, 5, 4, 23) in starts
    assert utc(2020, 5, 5, 23, 30) in starts
    assert not any(utc(2020, 5, 4, 23) < s < utc(2020, 5, 5, 23, 30) for s in starts)
    assert utc(2020, 5, 6, 10, 30) not in starts
    assert {utc(2020, 5, 6, 10), utc(2020, 5, 6, 11)} <= starts
    # No unit rates for those days in the fake (the rate sample is 8-10 May): no cost, no error.
    assert data.cost == ()


async def test_corpus_window_filters_starts(client: OctopusClient, server: FakeOctopus) -> None:
    """Only intervals that start in [start, end) are returned."""
    meter = await meter_of(client)
    server.fail_next(200, body=last_page("octopus_consumption_electricity_page1.json"))
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2020, 5, 7), utc(2020, 5, 7, 12))
    assert len(data.consumption) == 24
    assert data.consumption[0].start == utc(2020, 5, 7)
    assert data.consumption[-1].start == utc(2020, 5, 7, 11, 30)


def test_corpus_parsers_directly() -> None:
    """The module's parsers on the decoded samples (no HTTP)."""
    rows = corpus_json("octopus_consumption_electricity_page1.json")["results"]
    usage = parse_consumption(rows, "kWh", utc(2000, 1, 1), utc(2100, 1, 1))
    assert len(usage) == 99
    assert sum(i.value for i in usage) == Decimal("24.774")
    rates = parse_rates(
        corpus_json("octopus_agile_standard_unit_rates_page1.json")["results"], utc(2100, 1, 1)
    )
    assert len(rates) == 99
    assert sum(r.value for r in rates) == Decimal("6.406575")


async def test_corpus_rates_decode_exactly(client: OctopusClient, server: FakeOctopus) -> None:
    """The Agile sample: pence to exact GBP, 0.0 prices kept, the missing slot missing, sorted."""
    meter = await meter_of(client)
    server.fail_next(200, body=last_page("octopus_agile_standard_unit_rates_page1.json"))
    prices = await client.async_prices(meter, utc(2020, 5, 8), utc(2020, 5, 11))
    assert len(prices) == 99
    assert all(p.unit == "GBP/kWh" and p.end - p.start == HALF for p in prices)
    assert [p.start for p in prices] == sorted(p.start for p in prices)
    assert prices[0] == Interval(utc(2020, 5, 8, 20), utc(2020, 5, 8, 20, 30), Decimal("0.07938"), "GBP/kWh")
    assert prices[-1] == Interval(
        utc(2020, 5, 10, 21, 30), utc(2020, 5, 10, 22), Decimal("0.01764"), "GBP/kWh"
    )
    assert sum(p.value for p in prices) == Decimal("6.406575")
    starts = {p.start for p in prices}
    assert utc(2020, 5, 9, 11) not in starts
    assert {utc(2020, 5, 9, 10, 30), utc(2020, 5, 9, 11, 30)} <= starts
    zero = [p.start for p in prices if p.value == 0]
    assert zero == [utc(2020, 5, 10, 5, 30), utc(2020, 5, 10, 6, 30)]
    path, query = server.requests[-1]
    assert path == f"/v1/products/AGILE-18-02-21/electricity-tariffs/{AGILE}/standard-unit-rates/"
    assert query == {
        "period_from": "2020-05-08T00:00:00Z",
        "period_to": "2020-05-11T00:00:00Z",
        "page_size": "1500",
    }


async def test_corpus_pair_has_no_common_slot(client: OctopusClient, server: FakeOctopus) -> None:
    """The consumption (4-7 May) and rate (8-10 May) samples share no half-hour: no cost at all."""
    usage = parse_consumption(
        corpus_json("octopus_consumption_electricity_page1.json")["results"],
        "kWh",
        utc(2000, 1, 1),
        utc(2100, 1, 1),
    )
    rates = parse_rates(
        corpus_json("octopus_agile_standard_unit_rates_page1.json")["results"], utc(2100, 1, 1)
    )
    assert usage[-1].end <= rates[0].start
    meter = await meter_of(client)
    server.set_rates(AGILE, corpus_rates())
    server.set_consumption(MPAN, SERIAL, [(i.start, i.value) for i in usage])
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2020, 5, 1), utc(2020, 5, 12))
    assert len(data.consumption) == 99
    assert data.cost == ()


async def test_cost_is_consumption_times_real_agile_price(client: OctopusClient, server: FakeOctopus) -> None:
    """Consumption over the rate sample's days priced exactly; the missing slot gets no cost."""
    meter = await meter_of(client)
    server.set_rates(AGILE, corpus_rates())
    server.generate(MPAN, SERIAL, utc(2020, 5, 8, 20), utc(2020, 5, 10, 22))
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2020, 5, 8), utc(2020, 5, 11))
    assert len(data.consumption) == 100
    price = {start: pence / 100 for start, _end, pence in corpus_rates()}
    assert len(data.cost) == 99
    for cost in data.cost:
        used = next(i for i in data.consumption if i.start == cost.start)
        assert cost.value == used.value * price[cost.start]
        assert cost.unit == "GBP"
        assert cost.end == used.end
    assert utc(2020, 5, 9, 11) not in {c.start for c in data.cost}
    zero = [c for c in data.cost if c.start == utc(2020, 5, 10, 5, 30)]
    assert zero and zero[0].value == 0
    expected = sum((i.value * price[i.start] for i in data.consumption if i.start in price), Decimal(0))
    assert sum((c.value for c in data.cost), Decimal(0)) == expected


async def test_polluted_sample_is_a_response_error(client: OctopusClient, server: FakeOctopus) -> None:
    """The curl progress meter before the JSON: CloudResponseError, no partial data."""
    meter = await meter_of(client)
    server.fail_next(200, body=corpus("octopus_consumption_curl_polluted.txt").read_bytes())
    with pytest.raises(CloudResponseError, match="malformed JSON") as err:
        await client.async_intervals(meter, ENERGY_IMPORT, utc(2020, 5, 1), utc(2020, 5, 10))
    clean(err.value)


async def test_real_next_url_is_not_followed(client: OctopusClient, server: FakeOctopus) -> None:
    """The unmodified sample's `next` points at api.octopus.energy, not the configured API: refused."""
    meter = await meter_of(client)
    before = len(server.requests)
    server.fail_next(200, body=corpus("octopus_consumption_electricity_page1.json").read_bytes())
    with pytest.raises(CloudResponseError, match="not following") as err:
        await client.async_intervals(meter, ENERGY_IMPORT, utc(2020, 5, 1), utc(2020, 5, 10))
    clean(err.value)
    assert len(server.requests) == before + 1


# --------------------------------------------------------------------------- account
async def test_account_discovery(
    session: aiohttp.ClientSession, sleeps: Sleeps, socket_enabled: None
) -> None:
    """Import, export and gas meters of the current property; tariffs in force now; old ones skipped."""
    now = datetime.now(UTC)
    async with FakeOctopus(api_key=KEY, account=ACCOUNT) as fake:
        fake.add_property(1, address_line_1="1 New Road", postcode="AB1 2CD")
        fake.add_electricity(
            "1000000000001",
            "E1",
            agreements=[
                ("E-1R-VAR-19-04-12-H", utc(2019, 1, 1), utc(2021, 1, 1)),
                (AGILE, utc(2021, 1, 1), now + timedelta(days=300)),
                ("E-1R-AGILE-24-10-01-H", now + timedelta(days=300), None),
            ],
        )
        fake.add_electricity("1000000000001", "")  # a meter point's meter with no serial yet
        fake.add_electricity(
            "1000000000002", "E1", tariff_code="E-1R-OUTGOING-FIX-12M-19-05-13-H", export=True
        )
        fake.add_gas("3000000001", "G1", tariff_code="G-1R-VAR-22-11-01-H")
        fake.add_property(2, moved_out_at=utc(2020, 1, 1), address_line_1="9 Old Lane", postcode="ZZ9 9ZZ")
        fake.add_electricity("1999999999999", "OLD", property_id=2)
        client = OctopusClient(session, KEY, ACCOUNT, base_url=fake.base_url, policy=POLICY, sleep=sleeps)
        account = await client.async_account()
        assert fake.requests == [(f"/v1/accounts/{ACCOUNT}/", {})]

    assert account.provider == "octopus"
    assert account.id == ACCOUNT
    assert account.name == "1 New Road, AB1 2CD"
    by_id = {m.id: m for m in account.meters}
    assert set(by_id) == {"1000000000001_E1", "1000000000002_E1", "3000000001_G1"}

    imp = by_id["1000000000001_E1"]
    assert (imp.provider, imp.medium, imp.registers, imp.units) == (
        "octopus",
        Medium.ELECTRICITY,
        (ENERGY_IMPORT,),
        ("kWh",),
    )
    assert imp.tariff == AGILE
    assert imp.currency == "GBP"
    assert imp.serial_number == "E1"
    assert imp.get("mpan") == "1000000000001"
    assert imp.get("serial") == "E1"
    assert imp.get("tariff_code") == AGILE
    assert imp.get("kind") == "electricity"

    exp = by_id["1000000000002_E1"]
    assert exp.registers == (ENERGY_EXPORT,)
    assert exp.unit(ENERGY_EXPORT) == "kWh"
    assert exp.tariff == "E-1R-OUTGOING-FIX-12M-19-05-13-H"

    gas = by_id["3000000001_G1"]
    assert (gas.medium, gas.registers, gas.units) == (Medium.GAS, (GAS,), ("m3",))
    assert gas.get("mprn") == "3000000001"
    assert gas.get("kind") == "gas"
    assert gas.tariff == "G-1R-VAR-22-11-01-H"


async def test_account_gas_in_kwh(
    client: OctopusClient, server: FakeOctopus, session: Any, sleeps: Sleeps
) -> None:
    """gas_unit="kWh" (SMETS1 gas meters report kWh)."""
    server.add_gas("3000000001", "G1")
    kwh = make_client(session, server, sleeps, gas_unit="kWh")
    gas = await meter_of(kwh, "3000000001_G1")
    assert gas.units == ("kWh",)
    with pytest.raises(ValueError, match="gas_unit"):
        make_client(session, server, sleeps, gas_unit="ft3")


async def test_account_with_no_current_agreement(client: OctopusClient, server: FakeOctopus) -> None:
    """A meter whose agreements all ended has no tariff (and still is a meter)."""
    server.add_electricity("1000000000009", "X", agreements=[(AGILE, utc(2019, 1, 1), utc(2020, 1, 1))])
    meter = await meter_of(client, "1000000000009_X")
    assert meter.tariff is None
    assert meter.get("tariff_code") is None


@pytest.mark.parametrize(
    "body",
    [
        '{"number": "A-AAAA1111"}',
        '{"number": "A-AAAA1111", "properties": {}}',
        '{"number": "A-AAAA1111", "properties": [{"moved_out_at": null}]}',
        '{"number": "A-AAAA1111", "properties": [{"moved_out_at": null, "electricity_meter_points":'
        ' [{"meters": [{"serial_number": "X"}], "agreements": []}]}]}',
        '{"number": "A-AAAA1111", "properties": [{"moved_out_at": "yesterday"}]}',
        '{"number": "A-AAAA1111", "properties": [{"moved_out_at": null, "electricity_meter_points":'
        ' [{"mpan": "1", "meters": [], "agreements": [{"tariff_code": "E-1R-X-H", "valid_from": 5}]}]}]}',
        "[]",
    ],
)
async def test_account_wrong_shape(client: OctopusClient, server: FakeOctopus, body: str) -> None:
    """An account answer without the documented keys: CloudResponseError."""
    server.fail_next(200, body=body)
    with pytest.raises(CloudResponseError) as err:
        await client.async_account()
    clean(err.value)


async def test_wrong_key_is_auth_error(
    session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps
) -> None:
    """401 (the real JSON detail body) -> CloudAuthError, not retried, key not in the message."""
    wrong = "sk_live_wrongwrongwrong"
    client = make_client(session, server, sleeps, api_key=wrong)
    with pytest.raises(CloudAuthError, match="HTTP 401") as err:
        await client.async_account()
    assert wrong not in str(err.value)
    assert len(server.requests) == 1
    assert sleeps == []


async def test_unknown_account_is_not_found(
    session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps
) -> None:
    """404 for another account number -> OctopusAccountNotFoundError, a CloudAuthError."""
    client = make_client(session, server, sleeps, account="A-BBBB2222")
    with pytest.raises(OctopusAccountNotFoundError, match="A-BBBB2222 not found") as err:
        await client.async_account()
    assert isinstance(err.value, CloudAuthError)
    clean(err.value)


async def test_forbidden_is_auth_error(client: OctopusClient, server: FakeOctopus) -> None:
    """403 (an account of someone else, or the CDN's HTML 403 page) -> CloudAuthError."""
    server.fail_next(403, body='{"detail":"You do not have permission to perform this action."}')
    with pytest.raises(CloudAuthError, match="HTTP 403") as err:
        await client.async_account()
    clean(err.value)
    server.fail_next(403, body="<html><head><title>403 Forbidden</title></head></html>")
    with pytest.raises(CloudAuthError) as err:
        await client.async_account()
    clean(err.value)


# --------------------------------------------------------------------------- pagination
async def test_pagination_follows_next(client: OctopusClient, server: FakeOctopus) -> None:
    """Three days through pages of 50: every half-hour once, exactly what the server holds."""
    meter = await meter_of(client)
    server.generate(MPAN, SERIAL, utc(2024, 1, 1), utc(2024, 1, 4))
    server.set_rates(AGILE, [(utc(2023, 1, 1), None, Decimal("24.5"))])
    before = len(server.requests)
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 4))
    consumption_requests = [q for p, q in server.requests[before:] if p.endswith("/consumption/")]
    assert len(consumption_requests) == 3  # 144 rows / 50
    assert consumption_requests[0] == {
        "period_from": "2024-01-01T00:00:00Z",
        "period_to": "2024-01-04T00:00:00Z",
        "page_size": "25000",
        "order_by": "period",
    }
    assert [q.get("page") for q in consumption_requests] == [None, "2", "3"]
    expected = [(start, value) for start, value in server.consumption(MPAN, SERIAL)]
    assert [(i.start, i.value) for i in data.consumption] == expected
    assert len(data.consumption) == 144
    # A fixed rate (valid_to null) ends at the window's end: every half-hour priced.
    assert len(data.cost) == 144
    assert all(
        c.value == i.value * Decimal("0.245") for c, i in zip(data.cost, data.consumption, strict=True)
    )


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/v1/electricity-meter-points/x/meters/y/consumption/?page=2",
        "{base_scheme}://127.0.0.1:1/v1/electricity-meter-points/x/meters/y/consumption/?page=2",
        "{base}../v2/steal/?page=2",
        "{origin}/other/?page=2",
        "ftp://127.0.0.1/v1/x",
    ],
)
async def test_foreign_next_is_refused(client: OctopusClient, server: FakeOctopus, next_url: str) -> None:
    """`next` anywhere but under the base URL is never requested (the key would go with it)."""
    meter = await meter_of(client)
    origin = server.base_url.removesuffix("/v1/")
    url = next_url.format(base=server.base_url, origin=origin, base_scheme="http")
    body = json.dumps({"count": 2, "next": url, "previous": None, "results": []})
    server.fail_next(200, body=body)
    before = len(server.requests)
    with pytest.raises(CloudResponseError) as err:
        await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))
    clean(err.value)
    assert len(server.requests) == before + 1


async def test_next_loop_is_refused(client: OctopusClient, server: FakeOctopus) -> None:
    """A server that hands out the same `next` again: stopped, not followed forever."""
    meter = await meter_of(client)
    url = f"{server.base_url}electricity-meter-points/{MPAN}/meters/{SERIAL}/consumption/?page=2"
    body = json.dumps({"count": 2, "next": url, "previous": None, "results": []})
    server.fail_next(200, body=body, times=2)
    with pytest.raises(CloudResponseError, match="repeats"):
        await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))


# --------------------------------------------------------------------------- failures
async def test_429_waits_what_retry_after_asks(
    client: OctopusClient, server: FakeOctopus, sleeps: Sleeps
) -> None:
    """429 + Retry-After: 7 -> one wait of 7 s, then the answer."""
    server.fail_next(429, headers={"Retry-After": "7"})
    account = await client.async_account()
    assert account.meters
    assert sleeps == [7.0]
    assert len(server.requests) == 2


async def test_429_long_retry_after_is_raised(
    client: OctopusClient, server: FakeOctopus, sleeps: Sleeps
) -> None:
    """A Retry-After beyond the policy cap is the caller's business: CloudRateLimitError with it."""
    server.fail_next(429, headers={"Retry-After": "3600"})
    with pytest.raises(CloudRateLimitError) as err:
        await client.async_account()
    assert err.value.retry_after == pytest.approx(3600)
    assert sleeps == []
    assert len(server.requests) == 1
    clean(err.value)


async def test_500_then_success(client: OctopusClient, server: FakeOctopus, sleeps: Sleeps) -> None:
    """A 500 is retried after a backoff."""
    meter = await meter_of(client)
    server.generate(MPAN, SERIAL, utc(2024, 1, 1), utc(2024, 1, 2))
    server.fail_next(500)
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))
    assert len(data.consumption) == 48
    assert len(sleeps) == 1


async def test_500_forever(client: OctopusClient, server: FakeOctopus, sleeps: Sleeps) -> None:
    """5xx on every attempt -> CloudTemporaryError after `attempts` tries."""
    server.fail_next(502, body="<html><body>Bad gateway</body></html>", times=POLICY.attempts)
    with pytest.raises(CloudTemporaryError, match="HTTP 502") as err:
        await client.async_account()
    assert len(server.requests) == POLICY.attempts
    assert len(sleeps) == POLICY.attempts - 1
    clean(err.value)


async def test_timeout(session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps) -> None:
    """A server slower than the policy's timeout -> CloudTemporaryError."""
    client = make_client(session, server, sleeps, policy=RetryPolicy(attempts=2, base=0.01, timeout=0.2))
    server.fail_next(200, delay=0.6, times=2)
    started = time.monotonic()
    with pytest.raises(CloudTemporaryError, match="no answer") as err:
        await client.async_account()
    assert time.monotonic() - started < 1.5
    clean(err.value)


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (200, "<!DOCTYPE html><html><body>Maintenance</body></html>", "HTML"),
        (404, "<html><body>Not Found</body></html>", "HTML"),
        (
            200,
            '{"count":3,"next":null,"previous":null,"results":[{"consumption":0.1,"interval_st',
            "malformed",
        ),
        (200, '{"count":0,"next":null,"previous":null,"results":{}}', "expected a list"),
        (200, '{"count":0,"next":null,"previous":null}', "expected a list"),
        (200, '{"count":1,"next":null,"previous":null,"results":[5]}', "expected an object"),
        (200, '{"count":1,"next":7,"previous":null,"results":[]}', "expected a string"),
        (
            200,
            '{"count":1,"next":null,"results":[{"interval_start":"2024-01-01T00:00:00Z",'
            '"interval_end":"2024-01-01T00:30:00Z"}]}',
            "without 'consumption'",
        ),
        (
            200,
            '{"count":1,"next":null,"results":[{"consumption":"lots","interval_start":"2024-01-01T00:00:00Z",'
            '"interval_end":"2024-01-01T00:30:00Z"}]}',
            "bad number",
        ),
        (
            200,
            '{"count":1,"next":null,"results":[{"consumption":true,"interval_start":"2024-01-01T00:00:00Z",'
            '"interval_end":"2024-01-01T00:30:00Z"}]}',
            "expected a number",
        ),
        (
            200,
            '{"count":1,"next":null,"results":[{"consumption":0.1,"interval_start":"2024-01-01T00:00:00",'
            '"interval_end":"2024-01-01T00:30:00Z"}]}',
            "without an offset",
        ),
        (
            200,
            '{"count":1,"next":null,"results":[{"consumption":0.1,"interval_start":"2024-01-01T00:30:00Z",'
            '"interval_end":"2024-01-01T00:00:00Z"}]}',
            "ends before",
        ),
        (400, '{"period_from":["Enter a valid date/time."]}', "HTTP 400"),
    ],
)
async def test_bad_consumption_answers(
    client: OctopusClient, server: FakeOctopus, status: int, body: str, match: str
) -> None:
    """HTML pages, truncated JSON and wrong shapes: CloudResponseError, no partial data."""
    meter = await meter_of(client)
    server.fail_next(status, body=body)
    with pytest.raises(CloudResponseError, match=match) as err:
        await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))
    clean(err.value)


async def test_bad_rate_answers(client: OctopusClient, server: FakeOctopus) -> None:
    """A rate row without its price, or a price that is no number: CloudResponseError."""
    meter = await meter_of(client)
    for row in (
        '{"valid_from":"2024-01-01T00:00:00Z"}',
        '{"value_inc_vat":"x","valid_from":"2024-01-01T00:00:00Z"}',
    ):
        server.fail_next(200, body='{"count":1,"next":null,"results":[%s]}' % row)  # noqa: UP031
        with pytest.raises(CloudResponseError):
            await client.async_prices(meter, utc(2024, 1, 1), utc(2024, 1, 2))


async def test_negative_consumption_is_left_out(
    client: OctopusClient, server: FakeOctopus, caplog: pytest.LogCaptureFixture
) -> None:
    """A negative half-hour is no consumption: dropped (and logged), the rest kept."""
    meter = await meter_of(client)
    server.set_consumption(
        MPAN,
        SERIAL,
        [
            (utc(2024, 1, 1), Decimal("0.5")),
            (utc(2024, 1, 1, 0, 30), Decimal("-0.2")),
            (utc(2024, 1, 1, 1), Decimal(0)),
        ],
    )
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))
    assert [(i.start, i.value) for i in data.consumption] == [
        (utc(2024, 1, 1), Decimal("0.5")),
        (utc(2024, 1, 1, 1), Decimal(0)),
    ]
    assert "ignored 1 negative" in caplog.text


async def test_missing_tariff_rates_keep_consumption(client: OctopusClient, server: FakeOctopus) -> None:
    """Rates the API does not have (404) leave the consumption without cost, not lost."""
    meter = await meter_of(client)
    server.generate(MPAN, SERIAL, utc(2024, 1, 1), utc(2024, 1, 2))
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))
    assert len(data.consumption) == 48
    assert data.cost == ()


async def test_budget_spent_sends_nothing(
    session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps
) -> None:
    """No request once the budget is spent: CloudRateLimitError with the wait."""
    budget = RequestBudget(limit=1, window=3600)
    client = make_client(session, server, sleeps, budget=budget)
    meter = await meter_of(client)
    before = len(server.requests)
    with pytest.raises(CloudRateLimitError, match="budget") as err:
        await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 1, 1), utc(2024, 1, 2))
    assert len(server.requests) == before
    assert err.value.retry_after is not None
    assert 3500 < err.value.retry_after <= 3600
    clean(err.value)


class MemoryStore:
    """A BudgetStore in memory."""

    def __init__(self) -> None:
        """Empty."""
        self.data: Any = None

    async def async_load(self) -> Any:
        """The saved data."""
        return self.data

    async def async_save(self, data: Any) -> None:
        """Keep a copy."""
        self.data = json.loads(json.dumps(data))


async def test_budget_is_saved_and_survives_a_restart(
    session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps
) -> None:
    """The client loads the budget before and saves it after its requests."""
    store = MemoryStore()
    budget = default_budget(store)
    assert (budget.limit, budget.window) == (300, 3600)
    client = make_client(session, server, sleeps, budget=budget)
    await client.async_account()
    assert len(store.data["times"]) == 1
    again = default_budget(store)
    await make_client(session, server, sleeps, budget=again).async_account()
    assert again.remaining == 298


# --------------------------------------------------------------------------- time
@pytest.mark.parametrize(
    ("day_start", "day_end", "count", "offsets"),
    [
        # 30 March 2025: clocks go forward at 01:00 GMT; the local day is 23 h.
        (utc(2025, 3, 30), utc(2025, 3, 30, 23), 46, {"Z", "+01:00"}),
        # 26 October 2025: clocks go back at 01:00 GMT; the local day is 25 h.
        (utc(2025, 10, 25, 23), utc(2025, 10, 27), 50, {"Z", "+01:00"}),
    ],
)
async def test_dst_days(
    client: OctopusClient,
    server: FakeOctopus,
    day_start: datetime,
    day_end: datetime,
    count: int,
    offsets: set[str],
) -> None:
    """A local Europe/London day across a clock change: 46 or 50 half-hours, contiguous in UTC."""
    meter = await meter_of(client)
    server.generate(MPAN, SERIAL, day_start - timedelta(days=1), day_end + timedelta(days=1))
    data = await client.async_intervals(meter, ENERGY_IMPORT, day_start, day_end)
    starts = [i.start for i in data.consumption]
    assert len(starts) == count
    assert starts == [day_start + n * HALF for n in range(count)]
    assert data.consumption[-1].end == day_end
    assert sum(i.value for i in data.consumption) == sum(
        v for s, v in server.consumption(MPAN, SERIAL) if day_start <= s < day_end
    )
    # The fake writes local time like the API: both offsets occur on those days.
    async with aiohttp.ClientSession() as raw:
        url = f"{server.base_url}electricity-meter-points/{MPAN}/meters/{SERIAL}/consumption/"
        params = {"period_from": day_start.isoformat(), "period_to": day_end.isoformat(), "page_size": "100"}
        async with raw.get(url, params=params, auth=aiohttp.BasicAuth(KEY, "")) as resp:
            body = await resp.json()
    seen = {"Z" if r["interval_start"].endswith("Z") else r["interval_start"][-6:] for r in body["results"]}
    assert seen == offsets
    assert datetime.fromisoformat(body["results"][0]["interval_start"]) > datetime.fromisoformat(
        body["results"][-1]["interval_start"]
    )


async def test_empty_day(client: OctopusClient, server: FakeOctopus) -> None:
    """No data for the day: empty IntervalData, and no price request."""
    meter = await meter_of(client)
    before = len(server.requests)
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 6, 1), utc(2024, 6, 2))
    assert data == IntervalData(())
    assert len(server.requests) == before + 1
    assert await client.async_intervals(
        meter, ENERGY_IMPORT, utc(2024, 6, 2), utc(2024, 6, 2)
    ) == IntervalData(())


async def test_naive_window_and_wrong_register(client: OctopusClient) -> None:
    """Caller mistakes are ValueErrors, not cloud errors."""
    meter = await meter_of(client)
    with pytest.raises(ValueError, match="aware"):
        await client.async_intervals(meter, ENERGY_IMPORT, datetime(2024, 1, 1), utc(2024, 1, 2))
    with pytest.raises(ValueError, match="register"):
        await client.async_intervals(meter, GAS, utc(2024, 1, 1), utc(2024, 1, 2))


# --------------------------------------------------------------------------- tariffs
def test_tariff_codes() -> None:
    """Product codes come out of tariff codes."""
    assert TariffCode.parse(AGILE) == TariffCode(AGILE, "electricity", "1R", "AGILE-18-02-21", "H")
    gas = TariffCode.parse("G-1R-VAR-22-11-01-C")
    assert (gas.fuel, gas.product, gas.region) == ("gas", "VAR-22-11-01", "C")
    assert TariffCode.parse("E-2R-VAR-22-11-01-A").rates == "2R"
    assert TariffCode.parse("E-1R-OUTGOING-FIX-12M-19-05-13-H").product == "OUTGOING-FIX-12M-19-05-13"
    for bad in ("", "AGILE-18-02-21", "X-1R-AGILE-18-02-21-H", "E-1R-AGILE-18-02-21"):
        with pytest.raises(CloudResponseError):
            TariffCode.parse(bad)


async def test_gas_m3_cost_uses_billing_formula(client: OctopusClient, server: FakeOctopus) -> None:
    """m3 -> kWh = m3 x 1.02264 x CV / 3.6, then x the gas unit rate (open-ended)."""
    server.add_gas("3000000001", "G1", tariff_code="G-1R-VAR-22-11-01-H")
    server.set_rates("G-1R-VAR-22-11-01-H", [(utc(2023, 1, 1), None, Decimal("6.5"))])
    server.set_consumption(
        "3000000001", "G1", [(utc(2024, 1, 1), Decimal("0.123")), (utc(2024, 1, 1, 0, 30), Decimal("0.456"))]
    )
    meter = await meter_of(client, "3000000001_G1")
    data = await client.async_intervals(meter, GAS, utc(2024, 1, 1), utc(2024, 1, 2))
    assert [i.value for i in data.consumption] == [Decimal("0.123"), Decimal("0.456")]
    assert {i.unit for i in data.consumption} == {"m3"}
    factor = Decimal("1.02264") * Decimal("39.5") / Decimal("3.6")
    assert [c.value for c in data.cost] == [
        Decimal("0.123") * factor * Decimal("0.065"),
        Decimal("0.456") * factor * Decimal("0.065"),
    ]
    assert abs(float(data.cost[0].value) - 0.123 * 1.02264 * 39.5 / 3.6 * 0.065) < 1e-12  # ~1.38 kWh x 6.5p
    path = server.requests[-1][0]
    assert path == "/v1/products/VAR-22-11-01/gas-tariffs/G-1R-VAR-22-11-01-H/standard-unit-rates/"
    assert server.requests[-2][0] == "/v1/gas-meter-points/3000000001/meters/G1/consumption/"


async def test_gas_kwh_cost(session: aiohttp.ClientSession, server: FakeOctopus, sleeps: Sleeps) -> None:
    """A gas meter in kWh is priced as it is; a calorific value changes nothing."""
    server.add_gas("3000000001", "G1", tariff_code="G-1R-VAR-22-11-01-H")
    server.set_rates("G-1R-VAR-22-11-01-H", [(utc(2023, 1, 1), None, Decimal("6.5"))])
    server.set_consumption("3000000001", "G1", [(utc(2024, 1, 1), Decimal("1.5"))])
    client = make_client(session, server, sleeps, gas_unit="kWh", calorific_value=Decimal("40"))
    meter = await meter_of(client, "3000000001_G1")
    data = await client.async_intervals(meter, GAS, utc(2024, 1, 1), utc(2024, 1, 2))
    assert [c.value for c in data.cost] == [Decimal("1.5") * Decimal("0.065")]


async def test_tariff_change_within_window(client: OctopusClient, server: FakeOctopus) -> None:
    """Two agreements in the window: each tariff's rates over its own part only."""
    server.add_electricity(
        "1000000000001",
        "E1",
        agreements=[
            ("E-1R-VAR-19-04-12-H", utc(2020, 1, 1), utc(2025, 1, 1)),
            ("E-1R-VAR-22-11-01-H", utc(2025, 1, 1), None),
        ],
    )
    server.set_rates("E-1R-VAR-19-04-12-H", [(utc(2020, 1, 1), None, Decimal("20"))])
    server.set_rates(
        "E-1R-VAR-22-11-01-H",
        [(utc(2024, 1, 1), utc(2025, 1, 1, 1), Decimal("25")), (utc(2025, 1, 1, 1), None, Decimal("24.86"))],
    )
    meter = await meter_of(client, "1000000000001_E1")
    prices = await client.async_prices(meter, utc(2024, 12, 31, 22), utc(2025, 1, 1, 2))
    assert prices == (
        Interval(utc(2024, 12, 31, 22), utc(2025, 1, 1), Decimal("0.20"), "GBP/kWh"),
        Interval(utc(2025, 1, 1), utc(2025, 1, 1, 1), Decimal("0.25"), "GBP/kWh"),
        Interval(utc(2025, 1, 1, 1), utc(2025, 1, 1, 2), Decimal("0.2486"), "GBP/kWh"),
    )
    queries = [q for p, q in server.requests if p.endswith("-unit-rates/")]
    assert queries == [
        {"period_from": "2024-12-31T22:00:00Z", "period_to": "2025-01-01T00:00:00Z", "page_size": "1500"},
        {"period_from": "2025-01-01T00:00:00Z", "period_to": "2025-01-01T02:00:00Z", "page_size": "1500"},
    ]


async def test_day_night_tariff(client: OctopusClient, server: FakeOctopus) -> None:
    """E-2R: night rate 00:30-07:30 UTC (the smart-meter Economy 7 clock), day rate otherwise."""
    code = "E-2R-VAR-22-11-01-H"
    server.add_electricity("1000000000003", "E7", tariff_code=code)
    server.set_rates(code, [(utc(2023, 1, 1), None, Decimal("30"))], kind="day")
    server.set_rates(code, [(utc(2023, 1, 1), None, Decimal("12"))], kind="night")
    meter = await meter_of(client, "1000000000003_E7")
    # A summer day (BST): the night is still 00:30-07:30 UTC.
    prices = await client.async_prices(meter, utc(2024, 7, 1), utc(2024, 7, 2))
    assert prices == (
        Interval(utc(2024, 7, 1), utc(2024, 7, 1, 0, 30), Decimal("0.30"), "GBP/kWh"),
        Interval(utc(2024, 7, 1, 0, 30), utc(2024, 7, 1, 7, 30), Decimal("0.12"), "GBP/kWh"),
        Interval(utc(2024, 7, 1, 7, 30), utc(2024, 7, 2), Decimal("0.30"), "GBP/kWh"),
    )
    paths = [p for p, _q in server.requests if p.endswith("-unit-rates/")]
    assert [p.rsplit("/", 2)[-2] for p in paths] == ["day-unit-rates", "night-unit-rates"]
    # Costs follow the clock.
    server.set_consumption(
        "1000000000003", "E7", [(utc(2024, 7, 1, 1), Decimal(2)), (utc(2024, 7, 1, 8), Decimal(1))]
    )
    data = await client.async_intervals(meter, ENERGY_IMPORT, utc(2024, 7, 1), utc(2024, 7, 2))
    assert [c.value for c in data.cost] == [Decimal("0.24"), Decimal("0.30")]


async def test_unsupported_tariff_has_no_prices(client: OctopusClient, server: FakeOctopus) -> None:
    """A three-rate tariff: no prices (and no request), not an error."""
    server.add_electricity("1000000000004", "E3", tariff_code="E-3R-COSY-22-12-08-H")
    meter = await meter_of(client, "1000000000004_E3")
    before = len(server.requests)
    assert await client.async_prices(meter, utc(2024, 1, 1), utc(2024, 1, 2)) == ()
    assert len(server.requests) == before


async def test_non_direct_debit_duplicates_are_dropped() -> None:
    """Variable tariffs list both payment methods per period: the direct-debit price is used."""
    rows = [
        {
            "value_inc_vat": Decimal("25.0"),
            "valid_from": "2024-01-01T00:00:00Z",
            "valid_to": None,
            "payment_method": "DIRECT_DEBIT",
        },
        {
            "value_inc_vat": Decimal("26.3"),
            "valid_from": "2024-01-01T00:00:00Z",
            "valid_to": None,
            "payment_method": "NON_DIRECT_DEBIT",
        },
    ]
    assert parse_rates(rows, utc(2024, 2, 1)) == [
        Interval(utc(2024, 1, 1), utc(2024, 2, 1), Decimal("0.250"), "GBP/kWh")
    ]


# --------------------------------------------------------------------------- fake server and speed
async def test_fake_server_behaves_like_the_api(server: FakeOctopus, session: aiohttp.ClientSession) -> None:
    """Auth, 404s, newest-first order and absolute `next` URLs, as the real API."""
    url = f"{server.base_url}accounts/{ACCOUNT}/"
    async with session.get(url) as resp:
        assert resp.status == 401
        assert (await resp.json()) == {"detail": "Authentication credentials were not provided."}
    async with session.get(url, auth=aiohttp.BasicAuth("nope", "")) as resp:
        assert resp.status == 401
        assert "detail" in await resp.json()
    async with session.get(f"{server.base_url}accounts/A-X/", auth=aiohttp.BasicAuth(KEY, "")) as resp:
        assert resp.status == 404
        assert (await resp.json()) == {"detail": "Not found."}
    server.generate(MPAN, SERIAL, utc(2024, 1, 1), utc(2024, 1, 2))
    usage = f"{server.base_url}electricity-meter-points/{MPAN}/meters/{SERIAL}/consumption/"
    async with session.get(usage, auth=aiohttp.BasicAuth(KEY, "")) as resp:
        body = await resp.json()
    assert body["count"] == 48
    assert len(body["results"]) == 48
    assert body["results"][0]["interval_start"] == "2024-01-01T23:30:00Z"  # winter: Z, newest first
    assert body["next"] is None
    server.page_size_cap = 10
    async with session.get(usage, auth=aiohttp.BasicAuth(KEY, "")) as resp:
        body = await resp.json()
    assert body["next"].startswith(server.base_url)
    assert "page=2" in body["next"]


async def test_two_years_two_meters_is_fast(
    session: aiohttp.ClientSession, sleeps: Sleeps, socket_enabled: None
) -> None:
    """2 meters x 35,040 half-hours, one page each: served and decoded in a few seconds."""
    async with FakeOctopus(api_key=KEY, account=ACCOUNT, page_size_cap=25000) as fake:
        start, end = utc(2023, 1, 1), utc(2025, 1, 1)
        fake.add_electricity(MPAN, SERIAL)
        fake.add_electricity(
            "1000000000002", "EX", export=True, tariff_code="E-1R-OUTGOING-FIX-12M-19-05-13-H"
        )
        fake.generate(MPAN, SERIAL, start, end, seed=1)
        fake.generate("1000000000002", "EX", start, end, seed=2)
        client = OctopusClient(session, KEY, ACCOUNT, base_url=fake.base_url, policy=POLICY, sleep=sleeps)
        account = await client.async_account()
        began = time.monotonic()
        total = 0
        for meter in account.meters:
            data = await client.async_intervals(meter, meter.registers[0], start, end)
            total += len(data.consumption)
        elapsed = time.monotonic() - began
    assert total == 2 * 35088  # 2023 and 2024 (a leap year): 731 days of 48
    assert elapsed < 8.0


def test_base_url_default() -> None:
    """The real API's base URL."""
    assert OCTOPUS_API == "https://api.octopus.energy/v1/"
    assert issubclass(OctopusAccountNotFoundError, CloudError)
