"""Instrument discovery over REST (ingest/discovery.py), against the simulator and a scripted server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common import errors
from ingest.discovery import Discovery, InstrumentsClient, RestError
from ingest.ratelimit import RestRateLimiter
from ingest.stats import Counters
from tests.bybit_corpus import load
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import LOOPBACK, free_port


def fast_limiter() -> RestRateLimiter:
    return RestRateLimiter(initial=0.01, factor=1.5, maximum=0.1, ban_pause=0.05)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(session: aiohttp.ClientSession, url: str, counters: Counters,
           page_limit: int = 1000) -> InstrumentsClient:
    return InstrumentsClient(session, base_url=url, limiter=fast_limiter(), counters=counters,
                             page_limit=page_limit, timeout=5)


# --- against the simulator -----------------------------------------------------------------------

async def test_every_page_of_every_coin_is_followed(
        session: aiohttp.ClientSession, simulator_factory: Callable[..., SimulatorHandle]) -> None:
    sim = await asyncio.to_thread(simulator_factory, instruments_per_coin=250)
    counters = Counters(coins=("BTC", "ETH", "SOL"))
    c = client(session, sim.rest_url, counters, page_limit=100)
    listed = await asyncio.to_thread(sim.instruments)
    for coin in ("BTC", "ETH", "SOL"):
        assert await c.symbols(coin) == set(listed[coin])
    assert counters.rest_requests == 9  # 3 pages of 100 per coin


async def test_rate_limit_answers_of_every_form_are_retried_after_a_pause(
        session: aiohttp.ClientSession, simulator_factory: Callable[..., SimulatorHandle]) -> None:
    sim = await asyncio.to_thread(simulator_factory, instruments_per_coin=20,
                                  extra_args=("--rest-rate-limit", "3"))
    counters = Counters(coins=("BTC",))
    c = client(session, sim.rest_url, counters)
    assert len(await c.symbols("BTC")) == 20
    assert counters.rest_rate_limited == 3
    assert counters.errors[errors.REST_RATE_LIMITED] == 3
    assert counters.rest_requests == 4
    state = await asyncio.to_thread(sim.state)
    assert state["counters"]["rate_limits_by_form"] == {"10006": 1, "403": 1, "429": 1}


async def test_a_non_zero_ret_code_with_http_200_is_an_error(
        session: aiohttp.ClientSession, simulator_factory: Callable[..., SimulatorHandle]) -> None:
    sim = await asyncio.to_thread(simulator_factory, instruments_per_coin=5)
    c = client(session, sim.rest_url, Counters(coins=("B",)))
    with pytest.raises(RestError, match="retCode 10001") as caught:
        await c.symbols("B")  # one letter: the exchange refuses the baseCoin
    assert caught.value.error_type == errors.REST_ERROR


async def test_an_unreachable_exchange_is_a_rest_error(session: aiohttp.ClientSession) -> None:
    c = client(session, f"http://{LOOPBACK}:{free_port()}", Counters(coins=("BTC",)))
    with pytest.raises(RestError) as caught:
        await c.symbols("BTC")
    assert caught.value.error_type == errors.REST_ERROR


# --- against a scripted server -------------------------------------------------------------------

class Scripted:
    """An instruments-info endpoint answering from a script of (status, body) per call."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.default: tuple[int, Any] = (200, {"retCode": 0, "result": {"list": [], "nextPageCursor": ""}})
        self.calls: list[dict[str, str]] = []
        self.raw_queries: list[str] = []  # as sent on the wire, before any decoding
        self.failing_coins: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(dict(request.query))
        self.raw_queries.append(request.rel_url.raw_query_string)
        if request.query.get("baseCoin") in self.failing_coins:
            return web.Response(status=502, text="bad gateway")
        status, body = self.answers.pop(0) if self.answers else self.default
        if isinstance(body, dict):
            return web.json_response(body, status=status)
        return web.Response(status=status, text=str(body))


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    script = Scripted()
    app = web.Application()
    app.router.add_get("/v5/market/instruments-info", script.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    try:
        yield script, f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


def page(items: list[dict[str, Any]], cursor: str = "") -> tuple[int, dict[str, Any]]:
    return 200, {"retCode": 0, "retMsg": "OK", "result": {"category": "option", "list": items,
                                                          "nextPageCursor": cursor}}


def item(symbol: Any, status: str = "Trading") -> dict[str, Any]:
    return {"symbol": symbol, "status": status, "baseCoin": "BTC"}


async def test_only_streamable_well_formed_symbols_of_the_coin_are_kept(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str]) -> None:
    """Trading and Delivering instruments are streamed; PreLaunch (not quoting yet) and Closed are not."""
    script, url = scripted
    script.answers = [
        page([item("BTC-27DEC26-100000-C"), item("BTC-27DEC26-90000-P", "PreLaunch"), item("*"),
              item("../x"), item(None), item("ETH-27DEC26-4000-C"), "not an object"], "c1"),  # type: ignore[list-item]
        page([item("BTC-3JAN27-95000-P-USDT"), item("BTC-27DEC26-80000-C", "Delivering"),
              item("BTC-27DEC26-70000-C", "Closed"), item("BTC-27DEC26-60000-C", "Settling")]),
    ]
    counters = Counters(coins=("BTC",))
    found = await client(session, url, counters).symbols("BTC")
    assert found == {"BTC-27DEC26-100000-C", "BTC-3JAN27-95000-P-USDT", "BTC-27DEC26-80000-C"}
    assert counters.errors[errors.BAD_SYMBOL] == 4
    assert script.calls[0] == {"category": "option", "baseCoin": "BTC", "limit": "1000"}
    assert script.calls[1]["cursor"] == "c1"


def corpus_page(name: str) -> tuple[int, Any]:
    return 200, load(name)


async def test_a_percent_encoded_cursor_goes_back_unchanged(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str]) -> None:
    """Bybit's cursors are already percent-encoded (live capture ``0%2C500``); Bybit's SDK sends them
    back byte for byte. Encoding them again (``0%252C500``) would ask for a different page."""
    script, url = scripted
    script.answers = [corpus_page("rest_instruments_option_page_roq"),
                      page([item("BTC-27DEC26-100000-C")], "first%3DBIOUSDT%26last%3DBIOUSDT"),
                      corpus_page("rest_instruments_option_docs_2023")]
    found = await client(session, url, Counters(coins=("BTC",))).symbols("BTC")
    assert script.raw_queries[1] == "category=option&baseCoin=BTC&limit=1000&cursor=0%2C500"
    assert script.raw_queries[2].endswith("&cursor=first%3DBIOUSDT%26last%3DBIOUSDT")
    assert script.calls[1]["cursor"] == "0,500"  # what the exchange reads after its one decoding
    assert "BTC-29SEP23-80000-C" in found
    assert "BTC-27DEC26-100000-C" in found


@pytest.mark.parametrize(("cursor", "sent"), [("a&b=c", "a%26b%3Dc"), ("50%", "50%25"),
                                              ("x y+z", "x%20y%2Bz"), ("abc123==", "abc123%3D%3D")])
async def test_a_cursor_that_is_not_url_safe_is_encoded_so_it_cannot_break_the_query(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str], cursor: str, sent: str) -> None:
    script, url = scripted
    script.answers = [page([], cursor)]
    await client(session, url, Counters(coins=("BTC",))).symbols("BTC")
    assert script.raw_queries[1].endswith(f"&cursor={sent}")
    assert script.calls[1]["cursor"] == cursor


@pytest.mark.parametrize("last", [None, "", "missing"])
async def test_a_null_empty_or_missing_cursor_ends_the_listing(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str], last: str | None) -> None:
    script, url = scripted
    final: dict[str, Any] = {"retCode": 0, "retMsg": "OK",
                             "result": {"category": "option", "list": [item("BTC-27DEC26-100000-C")]}}
    if last != "missing":
        final["result"]["nextPageCursor"] = last
    script.answers = [page([], "c1"), (200, final)]
    script.default = (500, "must not be called")
    found = await client(session, url, Counters(coins=("BTC",))).symbols("BTC")
    assert found == {"BTC-27DEC26-100000-C"}
    assert len(script.calls) == 2


@pytest.mark.parametrize(("name", "coin", "symbols"), [
    ("rest_instruments_option_docs_2022", "ETH", {"ETH-31MAR23-30000-C"}),  # status "ONLINE", cursor "0%2C1"
    ("rest_instruments_option_docs_2023", "ETH", {"ETH-3JAN23-1250-P"}),
    ("rest_instruments_option_usdt_docs", "BTC", {"BTC-27MAR26-70000-P-USDT"}),
    ("rest_instruments_option_page_roq", "BTC", {"BTC-29SEP23-80000-C", "BTC-29SEP23-80000-P"}),
])
async def test_every_captured_instruments_page_is_read(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str], name: str, coin: str,
        symbols: set[str]) -> None:
    script, url = scripted
    script.answers = [corpus_page(name)]
    counters = Counters(coins=(coin,))
    assert await client(session, url, counters).symbols(coin) == symbols
    assert counters.errors.get(errors.BAD_SYMBOL, 0) == 0


async def test_a_repeating_cursor_is_an_error_not_an_endless_loop(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.answers = [page([], "same"), page([], "same")]
    with pytest.raises(RestError, match="repeats"):
        await client(session, url, Counters(coins=("BTC",))).symbols("BTC")


@pytest.mark.parametrize("answer", [(500, "oops"), (200, "not json"), (200, {"retCode": 0, "result": []}),
                                    (200, {"retCode": 10001, "retMsg": "params error"}), (200, [1])])
async def test_malformed_answers_are_rest_errors(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str], answer: tuple[int, Any]) -> None:
    script, url = scripted
    script.answers = [answer]
    with pytest.raises(RestError) as caught:
        await client(session, url, Counters(coins=("BTC",))).symbols("BTC")
    assert caught.value.error_type == errors.REST_ERROR


async def test_retcode_10018_is_a_rate_limit_like_10006(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.answers = [(200, {"retCode": 10018, "retMsg": "ip limit"}), page([item("BTC-27DEC26-100000-C")])]
    counters = Counters(coins=("BTC",))
    assert await client(session, url, counters).symbols("BTC") == {"BTC-27DEC26-100000-C"}
    assert counters.rest_rate_limited == 1


async def test_startup_retries_until_discovery_succeeds_and_a_failed_refresh_keeps_the_current_set(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.answers = [(500, "down"), (500, "down"), page([item("BTC-27DEC26-100000-C")]), (500, "down")]
    script.default = page([item("BTC-27DEC26-100000-C"), item("BTC-27DEC26-110000-C")])
    universes: list[dict[str, set[str]]] = []
    two = asyncio.Event()

    def on_universe(universe: dict[str, set[str]]) -> None:
        universes.append(universe)
        if len(universes) == 2:
            two.set()

    counters = Counters(coins=("BTC",))
    d = Discovery(client(session, url, counters), coins=("BTC",), refresh_interval=0.05, retry_cap=0.05,
                  on_universe=on_universe, counters=counters)
    task = asyncio.create_task(d.run())
    try:
        async with asyncio.timeout(10):
            await two.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert universes[0] == {"BTC": {"BTC-27DEC26-100000-C"}}
    # The refresh that failed in between changed nothing (no call); the next one brought the new listing.
    assert universes[1] == {"BTC": {"BTC-27DEC26-100000-C", "BTC-27DEC26-110000-C"}}
    assert counters.errors[errors.REST_ERROR] == 3


async def test_a_coin_that_keeps_failing_does_not_hold_back_the_refresh_of_the_others(
        session: aiohttp.ClientSession, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.failing_coins = {"ETH"}
    script.default = page([item("BTC-27DEC26-100000-C")])
    universes: list[dict[str, set[str]]] = []
    three = asyncio.Event()

    def on_universe(universe: dict[str, set[str]]) -> None:
        universes.append(universe)
        if len(universes) == 3:
            three.set()

    counters = Counters(coins=("BTC", "ETH"))
    d = Discovery(client(session, url, counters), coins=("BTC", "ETH"), refresh_interval=0.05,
                  retry_cap=0.02, on_universe=on_universe, counters=counters)
    task = asyncio.create_task(d.run())
    try:
        async with asyncio.timeout(10):
            await three.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(u == {"BTC": {"BTC-27DEC26-100000-C"}} for u in universes)
    eth_calls = sum(1 for c in script.calls if c["baseCoin"] == "ETH")
    assert eth_calls >= 3  # still retried, with backoff
    assert counters.errors[errors.REST_ERROR] == eth_calls
