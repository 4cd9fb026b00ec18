"""The ingest's per-frame path after issue 14: rendered at flush, validated by the fast form, replies in bulk.

Each test states what a user of Redis would see (the newest ticker stored, a refused key failing
alone in a big batch) or pins the fast form of a check to the exact one it stands in for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from common import errors, keys
from ingest.coalescer import Coalescer
from ingest.connection import Connection
from ingest.frames import _DECIMAL, _DECIMALS_JOINED, _FAST_JOINED, Rejected, Ticker, decode
from ingest.lag import LagHistogram
from ingest.pressure import MemoryPressure
from ingest.sink import TickerSink
from ingest.stats import Counters
from ingest.store import Store, make_redis
from ingest.writer import Writer
from ingest.wsread import TickerConnection
from tests.servers import RedisServer
from tests.test_ingest_connection import SYMBOL, Exchange, Running, exchange, settings, until

__all__ = ["exchange"]  # the fixture of tests/test_ingest_connection.py: a tiny option stream

A = "BTC-27DEC26-100000-C"
NOW = 1_764_640_000_000


def ticker_data(symbol: str, mark: str) -> dict[str, str]:
    return {"symbol": symbol, "markPrice": mark, "lastPrice": "7", "delta": "-0.5"}


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[Store]:
    redis = make_redis(redis_server.url, timeout=2.0)
    try:
        yield Store(redis, timeout=2.0)
    finally:
        await redis.aclose()


def writer(store: Store, coalescer: Coalescer, counters: Counters) -> Writer:
    pressure = MemoryPressure(threshold_bytes=400 * 2**20, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
    return Writer(store=store, coalescer=coalescer, counters=counters, pressure=pressure, flush_interval=0.1,
                  retry_max=5.0)


async def test_only_the_newest_of_many_frames_is_rendered_and_stored(
        store: Store, redis_server: RedisServer) -> None:
    coalescer, counters = Coalescer(), Counters(coins=("BTC",))
    sink = TickerSink(coalescer=coalescer, counters=counters, lag=LagHistogram())
    for i in range(50):
        sink.accept(Ticker(A, NOW + i, ticker_data(A, f"{i}.5")), "BTC", NOW + i + 3)
    entry = coalescer.latest[A]
    assert entry._command is None  # nothing rendered yet: 49 of these frames never will be
    assert counters.messages == 50
    w = writer(store, coalescer, counters)
    assert await w.flush()
    stored = redis_server.client().hgetall(keys.option_key(A))
    assert stored["markPrice"] == "49.5"
    assert stored[keys.F_OPTION_TS] == str(NOW + 49)
    assert stored["bidPrice"] == ""  # absent fields are written empty, as before
    assert entry._data is None  # rendered once at the flush; the dict is let go
    assert b"$9\r\nmarkPrice\r\n$4\r\n49.5\r\n" in entry.command


async def test_a_refused_key_fails_alone_in_a_batch_larger_than_one_socket_read(
        store: Store, redis_server: RedisServer) -> None:
    r = redis_server.client()
    symbols = [f"BTC-27DEC26-{10000 + 50 * i}-C" for i in range(3000)]
    bad = symbols[2222]
    r.set(keys.option_key(bad), "not a hash")
    coalescer, counters = Coalescer(), Counters(coins=("BTC",))
    for s in symbols:
        coalescer.put_ticker(s, "BTC", NOW, NOW + 1, ticker_data(s, "1.5"))
    w = writer(store, coalescer, counters)
    assert await w.flush()
    assert counters.errors[errors.REDIS_ERROR] == 1
    assert coalescer.pending == 1  # only the refused symbol waits for the next flush
    assert counters.redis_writes == len(symbols) - 1
    assert r.hget(keys.option_key(symbols[2223]), "markPrice") == "1.5"
    assert r.ttl(keys.option_key(symbols[-1])) > 0
    # The connection is still in step: the next batch's replies are its own.
    r.delete(keys.option_key(bad))
    assert await w.flush()
    assert r.hget(keys.option_key(bad), "markPrice") == "1.5"
    assert counters.errors[errors.REDIS_ERROR] == 1


decimals = st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,5})?", fullmatch=True)
values = st.lists(st.one_of(st.just(""), decimals, st.text(max_size=8)), max_size=30)


@given(values)
def test_the_fast_check_is_the_exact_one_without_exponents(vals: list[str]) -> None:
    joined = "\x00".join(vals)
    exact = _DECIMALS_JOINED.fullmatch(joined) is not None
    assert (_FAST_JOINED.fullmatch(joined) is not None) == (exact and "e" not in joined and "E" not in joined)
    if _FAST_JOINED.fullmatch(joined) is not None:
        assert all(v == "" or _DECIMAL.fullmatch(v) for v in vals)


@given(st.lists(st.one_of(st.just(""), st.from_regex(r"-?[0-9]{1,14}(\.[0-9]{1,14})?", fullmatch=True)),
                max_size=30))
def test_the_fast_check_accepts_every_plain_decimal_bybit_sends(vals: list[str]) -> None:
    assert _FAST_JOINED.fullmatch("\x00".join(vals)) is not None


def test_values_outside_the_fast_form_are_still_decided_exactly() -> None:
    def frame(**data: str) -> bytes:
        import orjson

        body = {"symbol": A, "markPrice": "7.5", "lastPrice": "7", **data}
        return orjson.dumps({"topic": f"tickers.{A}", "ts": NOW, "data": body})

    owned = {A}
    assert isinstance(decode(frame(delta="1e-5"), owned=owned, now_ms=NOW), Ticker)  # exponent: exact path
    assert isinstance(decode(frame(delta="1" * 30 + ".5"), owned=owned, now_ms=NOW), Ticker)  # long, valid
    rejected = decode(frame(delta="1" * 31), owned=owned, now_ms=NOW)
    assert isinstance(rejected, Rejected)
    assert rejected.error == errors.BAD_NUMBER
    assert isinstance(decode(frame(delta="1e999"), owned=owned, now_ms=NOW), Rejected)


# --- the read path: complete frames by callback, fragmented ones through websockets' queue ----------

@pytest.fixture
async def running(exchange: tuple[Exchange, str]) -> AsyncIterator[Running]:
    """One real :class:`Connection` against it, as in tests/test_ingest_connection.py."""
    _, url = exchange
    counters = Counters(coins=("BTC",))
    coalescer = Coalescer()
    sink = TickerSink(coalescer=coalescer, counters=counters, lag=LagHistogram())
    stop = asyncio.Event()
    conn = Connection(0, settings=settings(url), sink=sink, counters=counters, coin_of={SYMBOL: "BTC"},
                      stop=stop)
    conn.add([SYMBOL])
    task = asyncio.create_task(conn.run())
    try:
        yield Running(conn, coalescer, counters, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_fragmented_and_whole_ticker_frames_both_reach_the_coalescer_in_order(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    ts = int(time.time() * 1000)

    def frame(mark: str, at: int) -> str:
        return orjson.dumps({"topic": f"tickers.{SYMBOL}", "ts": at, "type": "snapshot",
                             "data": {"symbol": SYMBOL, "markPrice": mark, "lastPrice": "1"}}).decode()

    whole = frame("11", ts)
    await ex.sockets[-1].send([whole[:25], whole[25:60], whole[60:]])  # one message in three frames
    await until(lambda: SYMBOL in running.coalescer.latest and running.coalescer.latest[SYMBOL].ts == ts)
    assert b"$9\r\nmarkPrice\r\n$2\r\n11\r\n" in running.coalescer.latest[SYMBOL].command
    await ex.sockets[-1].send(frame("12", ts + 1))  # a whole frame, straight from data_received
    await until(lambda: running.coalescer.latest[SYMBOL].ts == ts + 1)
    assert b"$9\r\nmarkPrice\r\n$2\r\n12\r\n" in running.coalescer.latest[SYMBOL].command
    assert running.counters.messages == 2
    assert sum(running.counters.errors.values()) == 0


async def test_the_ingest_reads_through_the_callback_connection(exchange: tuple[Exchange, str]) -> None:
    _, url = exchange
    seen: list[bytes] = []
    async with connect(url, create_connection=TickerConnection) as ws:
        assert isinstance(ws, TickerConnection)
        ws.on_message = seen.append
        await ws.send(orjson.dumps({"op": "subscribe", "args": [f"tickers.{SYMBOL}"]}).decode())
        await until(lambda: len(seen) == 1)  # the answer came by callback: nothing waits in recv()
    assert orjson.loads(seen[0])["type"] == "COMMAND_RESP"
