"""One ingest connection against a scripted Bybit-like WebSocket server (in-process, real sockets).

The server records what the client sends and how it closes, which the simulator does not expose:
the exact request shapes, the application ping, and the close code at shutdown. It answers as
Bybit's option stream does (captures in tests/data/bybit/): subscribe answers in the COMMAND_RESP
form with no ``req_id``, ``op`` or ``ret_msg``, and pongs as ``{"args": ["<ms>"], "op": "pong"}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from common.config import Settings, load_settings
from ingest.coalescer import Coalescer
from ingest.connection import Connection
from ingest.lag import LagHistogram
from ingest.sink import TickerSink
from ingest.stats import Counters
from tests.servers import LOOPBACK, free_port

SYMBOL = "BTC-27DEC26-100000-C"


@dataclass
class Exchange:
    """A tiny option stream: answers subscribe and ping, pushes on request, records closes."""

    received: list[dict[str, Any]] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    sockets: list[ServerConnection] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, ws: ServerConnection) -> None:
        self.sockets.append(ws)
        self.connected.set()
        async for raw in ws:
            msg = orjson.loads(raw)
            self.received.append(msg)
            if msg.get("op") == "ping":
                pong = {"args": [str(int(time.time() * 1000))], "op": "pong"}
                await ws.send(orjson.dumps(pong).decode())
            elif msg.get("op") == "subscribe":
                await ws.send(orjson.dumps({
                    "success": True, "conn_id": "cb5e5a8e-5b2a-4a0e-8d1b-3f0f6f3c2d11",
                    "data": {"failTopics": [], "successTopics": msg["args"]},
                    "type": "COMMAND_RESP"}).decode())
        self.close_codes.append(ws.close_code)

    async def push(self, mark: str) -> None:
        ts = int(time.time() * 1000)
        frame = {"topic": f"tickers.{SYMBOL}", "ts": ts, "type": "snapshot",
                 "data": {"symbol": SYMBOL, "markPrice": mark, "lastPrice": "1"}}
        await self.sockets[-1].send(orjson.dumps(frame).decode())


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[Exchange, str]]:
    ex = Exchange()
    port = free_port()
    async with serve(ex.handler, LOOPBACK, port):
        yield ex, f"ws://{LOOPBACK}:{port}/v5/public/option"


def settings(url: str) -> Settings:
    return load_settings(env={"BYBIT_WS_URL": url, "INGEST_PING_INTERVAL": "0.2", "INGEST_PING_TIMEOUT": "1",
                              "INGEST_DATA_TIMEOUT": "5", "INGEST_BACKOFF_CAP": "0.2",
                              "INGEST_SUBSCRIBE_DELAY": "0.01"})


@dataclass
class Running:
    conn: Connection
    coalescer: Coalescer
    counters: Counters
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture
async def running(exchange: tuple[Exchange, str]) -> AsyncIterator[Running]:
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


async def until(predicate: Any, within: float = 5.0) -> None:
    """Poll state owned by other tasks against a deadline (the async twin of wait_until)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.01)


async def test_subscribe_and_ping_requests_are_in_bybits_documented_form(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    await until(lambda: any(m.get("op") == "ping" for m in ex.received))
    subscribe = next(m for m in ex.received if m.get("op") == "subscribe")
    assert subscribe == {"req_id": "ws0-1", "op": "subscribe", "args": [f"tickers.{SYMBOL}"]}
    ping = next(m for m in ex.received if m.get("op") == "ping")
    assert set(ping) == {"op", "req_id"}
    assert running.conn.subs.confirmed == {SYMBOL}


async def test_a_pushed_ticker_reaches_the_coalescer(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    await ex.push("42.5")
    await until(lambda: SYMBOL in running.coalescer.latest)
    assert b"$9\r\nmarkPrice\r\n$4\r\n42.5\r\n" in running.coalescer.latest[SYMBOL].command
    assert running.counters.messages == 1


async def test_stop_closes_the_socket_with_code_1000(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    running.stop.set()
    await asyncio.wait_for(running.task, 5)
    await until(lambda: bool(ex.close_codes))
    assert ex.close_codes == [1000]


async def test_a_connection_the_server_drops_is_reopened_and_resubscribed(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    await ex.sockets[-1].close(1001, "going away")
    await until(lambda: running.counters.reconnects == 1)
    assert len(ex.sockets) == 2
    assert [m["op"] for m in ex.received].count("subscribe") == 2
    assert running.conn.subs.confirmed == {SYMBOL}
    assert running.counters.errors["ws_closed"] == 1


async def test_a_healthy_feed_answered_without_req_ids_counts_no_error(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    await until(lambda: sum(m.get("op") == "ping" for m in ex.received) >= 3)
    for mark in ("1.5", "1.6"):
        await ex.push(mark)
    await until(lambda: running.counters.messages == 2)
    assert running.conn.subs.confirmed == {SYMBOL}
    assert dict(running.counters.errors) == {}


async def test_a_stream_that_goes_silent_while_pongs_flow_is_dropped_after_the_data_timeout(
        exchange: tuple[Exchange, str], running: Running) -> None:
    ex, _ = exchange
    await until(lambda: running.conn.open)
    await ex.push("1.5")
    await until(lambda: running.counters.messages == 1)
    silent_from = time.monotonic()
    await until(lambda: running.counters.errors.get("data_timeout", 0) == 1, within=10.0)
    waited = time.monotonic() - silent_from
    assert waited > 4.5  # INGEST_DATA_TIMEOUT is 5 s here (and caught within 10 s); pongs kept flowing
    assert "pong_timeout" not in running.counters.errors


async def test_tickers_arm_the_data_timeout_even_when_no_answer_can_be_read(
        exchange: tuple[Exchange, str]) -> None:
    """An exchange whose answers match nothing we know must not hide a silent stream."""
    ex, url = exchange
    counters = Counters(coins=("BTC",))
    coalescer = Coalescer()
    sink = TickerSink(coalescer=coalescer, counters=counters, lag=LagHistogram())
    stop = asyncio.Event()
    conn = Connection(0, settings=settings(url), sink=sink, counters=counters, coin_of={SYMBOL: "BTC"},
                      stop=stop)
    conn.add([SYMBOL])

    async def unreadable(ws: ServerConnection) -> None:
        ex.sockets.append(ws)
        async for raw in ws:
            if orjson.loads(raw).get("op") == "ping":
                await ws.send(orjson.dumps({"args": ["1"], "op": "pong"}).decode())
            # subscribe requests get no answer at all

    port = free_port()
    async with serve(unreadable, LOOPBACK, port):
        conn.settings = settings(f"ws://{LOOPBACK}:{port}/v5/public/option")
        task = asyncio.create_task(conn.run())
        try:
            await until(lambda: bool(ex.sockets))
            await ex.push("1.5")
            await until(lambda: counters.messages == 1)
            assert not conn.subs.confirmed
            await until(lambda: counters.errors.get("data_timeout", 0) == 1, within=10.0)
            assert counters.errors.get("subscribe_unanswered", 0) >= 1
            assert "subscribe_failed" not in counters.errors
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
