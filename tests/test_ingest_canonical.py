"""The fast path for frames of Bybit's own shape (ingest/canonical.py) against the exact one.

What a user would notice if it broke: a frame the exact decoder refuses being stored, a frame
stored with other values than the exact path stores, Redis storing the fast path's command
differently, or the fast path never taking Bybit's real frames (the ingest would silently cost
twice as much).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aredis
from hypothesis import given, settings
from hypothesis import strategies as st

from common import errors, keys
from ingest import resp
from ingest.canonical import CANONICAL
from ingest.coalescer import Coalescer
from ingest.connection import Connection
from ingest.frames import TICKER_FIELDS, Ticker, decode
from ingest.lag import LagHistogram
from ingest.reporter import Reporter, exact_share
from ingest.sink import TickerSink, complete
from ingest.stats import ConnectionState, Counters
from simulator import frames as sim_frames
from simulator import malformed
from tests.servers import RedisServer
from tests.test_ingest_connection import SYMBOL, Exchange, exchange, until
from tests.test_ingest_connection import settings as conn_settings
from tests.test_simulator_model import _market

__all__ = ["exchange"]  # the fixture of tests/test_ingest_connection.py: a tiny option stream

DATA_DIR = Path(__file__).parent / "data" / "bybit"
LIVE = (DATA_DIR / "ws_ticker_option_empty_book_roq.json").read_bytes().strip()
DOCS = (DATA_DIR / "ws_ticker_option_docs.json").read_bytes()
LIVE_SYMBOL = "BTC-28APR23-30000-C"
LIVE_TS = 1682247012340


def frame_of(symbol: str, ts: int, data: dict[str, str]) -> bytes:
    """A push as the simulator writes it (Bybit's key order)."""
    return sim_frames.ticker_frame(f"tickers.{symbol}".encode(), 7, ts, orjson.dumps(data))


# --- real frames take the fast path ------------------------------------------------------------

def test_the_live_capture_has_bybits_shape_and_the_docs_example_once_compacted() -> None:
    match = CANONICAL.fullmatch(LIVE)
    assert match is not None
    assert match.group(1, 2) == (LIVE_SYMBOL.encode(), str(LIVE_TS).encode())
    assert orjson.loads(match.group(3)) == orjson.loads(LIVE)["data"]
    assert CANONICAL.fullmatch(DOCS) is None  # pretty-printed on the page: the exact path decides it
    assert CANONICAL.fullmatch(orjson.dumps(orjson.loads(DOCS))) is not None


def test_every_push_of_the_simulator_has_bybits_shape() -> None:
    market, symbols = _market(coins=("BTC", "SOL"))
    for n, symbol in enumerate(symbols):
        quote = market.quote(symbol)
        raw = frame_of(symbol, 1_700_000_000_000 + n, quote.data)
        assert CANONICAL.fullmatch(raw) is not None, raw[:200]


def unconnected(symbols: list[str], *, native: bool = True, wall: Callable[[], float] = time.time,
                ) -> tuple[Callable[[bytes | str], None], Counters, Coalescer]:
    """A real (never connected) connection's per-frame handler owning ``symbols`` (coin BTC);
    ``native=False``: with ``INGEST_NATIVE_SCAN=0``; ``wall``: its clock for arrival times."""
    counters, coalescer = Counters(coins=("BTC",)), Coalescer()
    sink = TickerSink(coalescer=coalescer, counters=counters, lag=LagHistogram())
    settings = dataclasses.replace(conn_settings("ws://127.0.0.1:9/"), native_scan=native)
    conn = Connection(0, settings=settings, sink=sink, counters=counters,
                      coin_of=dict.fromkeys(symbols, "BTC"), stop=asyncio.Event(), wall=wall)
    conn.subs.add(symbols)
    return conn._message_handler(), counters, coalescer


def test_no_malformed_kind_of_the_simulator_is_stored_or_left_uncounted_by_the_per_frame_path() -> None:
    """ts_zero, say, has Bybit's shape: the connection's ts check sends it to the exact path."""
    market, symbols = _market(coins=("BTC",))
    on_message, counters, coalescer = unconnected(symbols)
    now_ms = int(time.time() * 1000)
    push = malformed.Push(symbol=symbols[0], seq=3, ts_ms=now_ms, data=market.quote(symbols[0]).data,
                          other_symbol=symbols[1])
    shaped = 0
    for kind in malformed.KINDS:
        raw = malformed.render(kind, push)
        shaped += CANONICAL.fullmatch(raw) is not None
        on_message(raw)
        assert counters.messages == 0, kind
        assert sum(counters.errors.values()) == malformed.KINDS.index(kind) + 1, kind
    assert not coalescer.latest
    assert shaped >= 1  # at least one bad frame looks like Bybit's and is still refused


# --- the fast verdict is the exact one ---------------------------------------------------------

def check_fast_verdict(raw: bytes) -> bool:
    """When the connection took ``raw`` by the fast path, the exact path accepts it and stores the same.

    Both fast paths are tried, the C scanner's and the pure one (``INGEST_NATIVE_SCAN=0``), and
    they must take the same frames. Returns whether the fast path took it.
    """
    taken = {native: _fast_verdict(raw, native=native) for native in (True, False)}
    assert taken[True] == taken[False], raw
    return taken[True]


def _fast_verdict(raw: bytes, *, native: bool) -> bool:
    match = CANONICAL.fullmatch(raw)
    symbol = match.group(1).decode() if match is not None else LIVE_SYMBOL
    on_message, counters, coalescer = unconnected([symbol], native=native)
    on_message(raw)
    now_ms = int(time.time() * 1000)
    entry = coalescer.latest.get(symbol)
    if entry is None or counters.exact_tickers:
        return False
    exact = decode(raw, owned={symbol}, now_ms=now_ms)
    assert type(exact) is Ticker, (exact, raw)
    assert (exact.symbol, exact.ts) == (symbol, entry.ts)
    assert entry.command == exact_command(exact, entry.recv_ms)
    return True


def exact_command(ticker: Ticker, recv_ms: int) -> bytes:
    """The ``HSET`` the exact path writes for ``ticker`` (every Bybit field, those it lacked empty)."""
    return resp.hset_ticker(keys.option_key(ticker.symbol), complete(ticker.data), ticker.ts, recv_ms)


plain = st.from_regex(r"-?[0-9]{1,31}(\.[0-9]{1,31})?", fullmatch=True)
odd = st.sampled_from(["", "1e5", "1.", ".5", "-", "--1", "1-", "0x1", " 1", "1 ", "\"", "\\", "é",
                       "NaN", "1.2.3", "+1", "\uff11"])  # the last: a full-width one


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(plain, odd), min_size=len(TICKER_FIELDS) - 1, max_size=len(TICKER_FIELDS) - 1),
       st.sampled_from([0, -1000, -3_599_000, -3_601_000, 299_000, 301_000]))
def test_a_frame_the_fast_path_takes_is_accepted_and_stored_alike_by_the_exact_path(
        values: list[str], age: int) -> None:
    now_ms = int(time.time() * 1000)
    data = {"symbol": LIVE_SYMBOL, **dict(zip(TICKER_FIELDS[1:], values, strict=True))}
    check_fast_verdict(frame_of(LIVE_SYMBOL, now_ms + age, data))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(LIVE) - 1), st.binary(min_size=0, max_size=3),
       st.integers(min_value=0, max_value=3))
def test_a_byte_edit_of_the_capture_is_taken_by_the_fast_path_only_if_the_exact_path_accepts_it(
        at: int, insert: bytes, cut: int) -> None:
    live = restamped(LIVE)
    check_fast_verdict(live[:at] + insert + live[at + cut:])


def restamped(raw: bytes) -> bytes:
    """The capture with today's time in place of its own (the ingest refuses an hour-old ts)."""
    return raw.replace(str(LIVE_TS).encode(), str(int(time.time() * 1000) - 20).encode())


def test_the_capture_itself_takes_the_fast_path() -> None:
    assert check_fast_verdict(restamped(LIVE))  # the checks above are not vacuous


@given(st.lists(plain.filter(lambda v: len(v.split(".")[0].lstrip("-")) <= 30
                             and len(v.split(".")[-1]) <= 30), min_size=24, max_size=24))
def test_every_plain_decimal_bybit_sends_takes_the_fast_path(values: list[str]) -> None:
    data = {"symbol": LIVE_SYMBOL, **dict(zip(TICKER_FIELDS[1:], values, strict=True))}
    assert CANONICAL.fullmatch(frame_of(LIVE_SYMBOL, LIVE_TS, data)) is not None


# --- Redis stores the fast path's command ------------------------------------------------------

@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


async def _raw(redis_server: RedisServer, payload: bytes, replies: int) -> bytes:
    host, port = redis_server.url.removeprefix("redis://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    await writer.drain()
    got = b""
    async with asyncio.timeout(5):
        while got.count(b"\r\n") < replies:
            got += await reader.read(65536)
    writer.close()
    await writer.wait_closed()
    return got


async def test_redis_stores_the_capture_from_the_fast_path_as_bybit_sent_it(
        redis_server: RedisServer, r: aredis.Redis) -> None:
    match = CANONICAL.fullmatch(LIVE)
    assert match is not None
    exact = decode(LIVE, owned={LIVE_SYMBOL}, now_ms=LIVE_TS)
    assert type(exact) is Ticker
    command = resp.hset_canonical(b"option:fast", match.group(3), LIVE_TS, LIVE_TS + 9)
    assert command.startswith(b"*56\r\n$4\r\nHSET\r\n")  # RESP: Redis parses an inline one 2x slower
    reference = resp.hset_ticker("option:exact", exact.data, LIVE_TS, LIVE_TS + 9)
    replies = await _raw(redis_server, command + reference + resp.expire("option:fast", 60), 3)
    assert replies == b":27\r\n:27\r\n:1\r\n"
    stored = await r.hgetall("option:fast")
    assert stored == await r.hgetall("option:exact")
    capture = orjson.loads(LIVE)["data"]
    want = {**capture, keys.F_OPTION_TS: str(LIVE_TS), keys.F_OPTION_RECV_TS: str(LIVE_TS + 9)}
    assert stored == {k.encode(): v.encode() for k, v in want.items()}  # as Bybit sent it
    assert 0 < await r.ttl("option:fast") <= 60


async def test_the_guarded_fast_path_write_skips_an_older_ticker(
        redis_server: RedisServer, r: aredis.Redis) -> None:
    await r.function_load(resp.LIBRARY, replace=True)
    data = {"symbol": LIVE_SYMBOL, **dict.fromkeys(TICKER_FIELDS[1:], "1")}
    newer = CANONICAL.fullmatch(frame_of(LIVE_SYMBOL, LIVE_TS + 10, {**data, "markPrice": "2"}))
    older = CANONICAL.fullmatch(frame_of(LIVE_SYMBOL, LIVE_TS, {**data, "markPrice": "3"}))
    assert newer is not None
    assert older is not None
    key = keys.option_key(LIVE_SYMBOL).encode()
    first = resp.guarded(resp.hset_canonical(key, newer.group(3), LIVE_TS + 10, 1), LIVE_TS + 10, 600)
    second = resp.guarded(resp.hset_canonical(key, older.group(3), LIVE_TS, 2), LIVE_TS, 600)
    assert await _raw(redis_server, first + second, 2) == b":1\r\n:0\r\n"
    stored = await r.hgetall(key)
    assert stored[b"markPrice"] == b"2"
    assert stored[b"ts"] == str(LIVE_TS + 10).encode()
    assert 0 < await r.ttl(key) <= 600


# --- through a real connection ------------------------------------------------------------------

async def test_a_connection_takes_bybits_frames_by_the_fast_path_and_others_exactly(
        exchange: tuple[Exchange, str]) -> None:
    ex, url = exchange
    counters, coalescer = Counters(coins=("BTC",)), Coalescer()
    sink = TickerSink(coalescer=coalescer, counters=counters, lag=LagHistogram())
    stop = asyncio.Event()
    other = "BTC-27DEC26-90000-P"
    conn = Connection(0, settings=conn_settings(url), sink=sink, counters=counters,
                      coin_of={SYMBOL: "BTC", other: "BTC"}, stop=stop)
    conn.add([SYMBOL])
    task = asyncio.create_task(conn.run())
    try:
        await until(lambda: conn.open)
        now = int(time.time() * 1000)
        data = {"symbol": SYMBOL, **dict.fromkeys(TICKER_FIELDS[1:], "4.5")}
        await ex.sockets[-1].send(frame_of(SYMBOL, now, data).decode())  # a text frame, as Bybit sends
        await until(lambda: SYMBOL in coalescer.latest)
        entry = coalescer.latest[SYMBOL]
        assert entry.command == resp.hset_ticker(keys.option_key(SYMBOL), data, now, entry.recv_ms)
        # Bybit's shape, but a symbol this connection never subscribed: the exact path counts it.
        await ex.sockets[-1].send(frame_of(other, now, {**data, "symbol": other}).decode())
        # ...and one with a ts an hour and more in the past.
        await ex.sockets[-1].send(frame_of(SYMBOL, now - 3_700_000, data).decode())
        await until(lambda: counters.errors[errors.BAD_TIMESTAMP] == 1)
        assert counters.errors[errors.UNSUBSCRIBED_SYMBOL] == 1
        assert counters.messages == 1
        assert counters.messages_by_coin["BTC"] == 1
        assert coalescer.latest[SYMBOL].ts == now
        assert counters.exact_tickers == 0
        # A valid ticker in another key order: stored by the exact path, and counted as such.
        reordered = {"topic": f"tickers.{SYMBOL}", "ts": now + 1, "type": "snapshot",
                     "data": {**data, "markPrice": "5"}}
        await ex.sockets[-1].send(orjson.dumps(reordered).decode())
        await until(lambda: counters.messages == 2)
        assert counters.exact_tickers == 1
        assert b"$1\r\n5\r\n" in coalescer.latest[SYMBOL].command
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


# --- an operator hears when Bybit's frames change shape ------------------------------------------

def test_the_exact_share_speaks_only_for_a_real_majority_of_a_real_sample() -> None:
    assert exact_share(999, 999) is None  # too few tickers to say anything
    assert exact_share(1000, 500) is None
    assert exact_share(1000, 501) == pytest.approx(0.501)
    assert exact_share(0, 0) is None


def test_the_reporter_warns_when_most_tickers_take_the_exact_decoder(
        caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters(coins=("BTC",))
    reporter = Reporter(store=cast(Any, None), writer=cast(Any, None), counters=counters, lag=LagHistogram(),
                        pressure=cast(Any, None), connection_state=ConnectionState, interval=1.0,
                        heartbeat_ttl=10.0)
    counters.messages, counters.exact_tickers = 5000, 100
    with caplog.at_level(logging.WARNING, logger="ingest.reporter"):
        reporter._watch_shape()
        assert not caplog.records
        counters.messages, counters.exact_tickers = 10_000, 4_000  # this interval: 3,900 of 5,000
        reporter._watch_shape()
    assert [r.getMessage() for r in caplog.records] == [
        "most tickers are not in Bybit's documented shape: each takes the exact decoder, at about twice "
        "the CPU (a new field or key order on Bybit's side?)"]
    assert caplog.records[0].__dict__["exact_share"] == 0.78
