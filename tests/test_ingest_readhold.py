"""Held reads (ingest/readhold.py): the kernel keeps a connection's bytes until a release.

Real sockets on loopback throughout (the raw exchange of tests/test_ingest_wsread.py, and a real
Redis for the flush): what a user would notice if this broke is a frame that reaches Redis a flush
late or never, a connection whose pongs or close go unread, or a stream read one segment at a time
(the CPU it is for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis

from common import errors, keys
from ingest.coalescer import Coalescer
from ingest.pressure import MemoryPressure
from ingest.readhold import ReadHold
from ingest.stats import Counters
from ingest.store import Store
from ingest.writer import Writer
from ingest.wsread import TickerConnection
from tests.servers import RedisServer
from tests.test_ingest_canonical import LIVE
from tests.test_ingest_connection import until
from tests.test_ingest_wsread import RawExchange, frame, opened, raw

__all__ = ["raw"]  # the fixture of tests/test_ingest_wsread.py: a raw WebSocket exchange on loopback

LONG = 60.0  # a release interval no test waits for: only explicit releases read


async def settle(seconds: float = 0.1) -> None:
    await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def running(ws: TickerConnection, *, interval: float) -> AsyncIterator[ReadHold]:
    """``ws`` held, with the hold's own release loop running every ``interval``."""
    hold = ReadHold(interval=interval, counters=Counters(coins=("BTC",)))
    hold.hold(ws, "ws0")
    stop = asyncio.Event()
    releasing = asyncio.create_task(hold.run(stop))
    try:
        yield hold
    finally:
        stop.set()
        await asyncio.wait_for(releasing, 1)


async def test_held_bytes_are_read_only_at_a_release_and_all_of_them(raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, got = await opened(url)
    hold = ReadHold(interval=LONG, counters=Counters(coins=("BTC",)))
    hold.hold(ws, "ws0")
    await ex.send(*(frame(LIVE) for _ in range(20)), pause=0.005)
    await settle()
    assert got == []  # twenty frames on the wire, none read: the kernel holds them
    hold.release()
    await settle()
    assert got == [LIVE] * 20
    await ex.send(frame(LIVE), pause=0)
    await settle()
    assert len(got) == 20  # held again after the released read emptied the queue
    hold.release()
    await settle()
    assert len(got) == 21
    await ws.close()


async def test_without_holding_every_frame_is_read_as_it_arrives(raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, got = await opened(url)
    hold = ReadHold(interval=0, counters=Counters(coins=("BTC",)))  # INGEST_READ_HOLD=0
    hold.hold(ws, "ws0")
    await ex.send(frame(LIVE), pause=0)
    await settle()
    assert got == [LIVE]
    await ws.close()


async def test_more_than_one_read_of_bytes_is_read_to_the_end_after_one_release(
        raw: tuple[RawExchange, str]) -> None:
    """The event loop reads at most 256 kB a time: the threshold stays down until the queue is
    empty, so nothing queued before the release waits for the next one."""
    ex, url = raw
    ws, got = await opened(url, max_size=2**20)
    hold = ReadHold(interval=LONG, counters=Counters(coins=("BTC",)))
    hold.hold(ws, "ws0")
    big = LIVE * 90  # ~60 kB a frame
    await ex.send(*(frame(big) for _ in range(40)), pause=0)  # ~2.4 MB
    await settle(0.3)
    assert got == []
    hold.release()
    await until(lambda: len(got) == 40)
    await ws.close()


async def test_the_interval_releases_by_itself(raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, got = await opened(url)
    async with running(ws, interval=0.05):
        for _ in range(5):
            await ex.send(frame(LIVE), pause=0)
            await asyncio.sleep(0.2)  # several intervals
        assert got == [LIVE] * 5
    await ws.close()


async def test_a_close_from_the_exchange_is_seen_while_held(raw: tuple[RawExchange, str]) -> None:
    """The threshold holds data, not the end of the stream: a dropped connection is noticed at once
    (the ingest reconnects), not at the next release."""
    ex, url = raw
    ws, _got = await opened(url)
    hold = ReadHold(interval=LONG, counters=Counters(coins=("BTC",)))
    hold.hold(ws, "ws0")
    ex.writers[-1].close()  # TCP FIN, no close frame
    await asyncio.wait_for(ws.wait_closed(), 5)  # far sooner than the next release (LONG)
    hold.unhold(ws)
    hold.release()  # a release after the end forgets nothing and raises nothing


async def test_a_ping_is_answered_within_an_interval_while_held(raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, _got = await opened(url)
    async with running(ws, interval=0.05):
        received = len(ex.received)
        await ex.send(frame(b"hi", opcode=0x9), pause=0)
        await until(lambda: len(ex.received) > received, within=2)  # websockets' pong went out
    await ws.close()


def test_a_connection_that_is_not_tcp_is_not_held() -> None:
    ws = TickerConnection.__new__(TickerConnection)
    ws.transport = None  # type: ignore[assignment]  # never connected
    assert ws.hold_reads() is False
    hold = ReadHold(interval=LONG, counters=Counters(coins=("BTC",)))
    hold.hold(ws, "ws0")
    hold.release()  # nothing held, nothing to do


async def test_a_connection_closed_before_its_session_is_not_held_and_counts_no_error(
        raw: tuple[RawExchange, str]) -> None:
    _ex, url = raw
    ws, _got = await opened(url)
    await ws.close()
    counters = Counters(coins=("BTC",))
    hold = ReadHold(interval=LONG, counters=counters)
    hold.hold(ws, "ws0")
    hold.release()
    assert not counters.errors


async def test_a_release_that_fails_is_logged_counted_and_stops_holding(
        raw: tuple[RawExchange, str], caplog: pytest.LogCaptureFixture) -> None:
    _ex, url = raw
    ws, _got = await opened(url)
    counters = Counters(coins=("BTC",))
    hold = ReadHold(interval=LONG, counters=counters)
    hold.hold(ws, "ws0")

    def broken() -> None:
        raise OSError(9, "Bad file descriptor")

    ws.release_reads = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="ingest.readhold"):
        hold.release()
        hold.release()
    assert counters.errors[errors.OTHER] == 1  # once: the connection is no longer held
    assert [r.message for r in caplog.records] == ["read hold failed; the connection is no longer held"]
    assert caplog.records[0].conn == "ws0"  # type: ignore[attr-defined]
    await ws.close()


# --- the flush reads what arrived before it ----------------------------------------------------------

@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


async def test_every_frame_that_arrived_before_a_flush_is_in_it(
        raw: tuple[RawExchange, str], r: aredis.Redis) -> None:
    """With no interval release at all, the writer's own release before its flush reads the held
    frames in time: what Redis holds is the same as without holding."""
    from ingest.canonical import pure_scan

    ex, url = raw
    ws, _got = await opened(url)
    counters, coalescer = Counters(coins=("BTC",)), Coalescer()

    def store(payload: bytes) -> None:
        scanned = pure_scan(payload, int(time.time() * 1000))
        assert scanned is not None
        symbol, ts, command = scanned
        coalescer.put(symbol, "BTC", ts, 0, command)

    ws.on_message = store
    hold = ReadHold(interval=LONG, counters=counters)
    hold.hold(ws, "ws0")
    pressure = MemoryPressure(threshold_bytes=1 << 40, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
    writer = Writer(store=Store(r, timeout=2), coalescer=coalescer, counters=counters, pressure=pressure,
                    flush_interval=0.2, retry_max=1, before_flush=hold.release)
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop))
    try:
        await ex.send(frame(LIVE), pause=0)
        await until(lambda: counters.redis_writes >= 1, within=3)
        key = keys.option_key("BTC-28APR23-30000-C")
        assert await r.hget(key, "markPrice") == b"35.85848319"
        assert counters.redis_flushes >= 1
    finally:
        stop.set()
        await asyncio.wait_for(writing, 3)
    await ws.close()
