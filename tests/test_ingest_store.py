"""The writer, the store and the reporter against a real redis-server (in-process, asyncio)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.exceptions import ResponseError

from common import errors, keys
from ingest import resp
from ingest.coalescer import Coalescer
from ingest.lag import LagHistogram
from ingest.pressure import MemoryPressure
from ingest.reporter import Reporter
from ingest.stats import ConnectionState, Counters
from ingest.store import WRITE_SLICE, RedisUnavailable, Store, make_redis
from ingest.writer import RENEWAL_MAX, Writer, renewal_period
from tests.servers import RedisServer

A, B, C = "BTC-27DEC26-100000-C", "BTC-27DEC26-90000-P", "ETH-27DEC26-4000-C"
DATA = {"symbol": A, "markPrice": "7.5", "lastPrice": "7", "delta": "-0.5"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[Store]:
    redis = make_redis(redis_server.url, timeout=1.0)
    try:
        yield Store(redis, timeout=1.0)
    finally:
        await redis.aclose()


def make_writer(store: Store, clock: Clock | None = None) -> Writer:
    pressure = MemoryPressure(threshold_bytes=400 * 2**20, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
    return Writer(store=store, coalescer=Coalescer(), counters=Counters(coins=("BTC", "ETH")),
                  pressure=pressure, flush_interval=0.1, retry_max=5.0, clock=clock or Clock())


def put(w: Writer, symbol: str, ts: int, mark: str = "7.5") -> None:
    coin = symbol.split("-", maxsplit=1)[0]
    data = {**DATA, "symbol": symbol, "markPrice": mark}
    w.coalescer.put(symbol, coin, ts, ts + 5, resp.hset_ticker(keys.option_key(symbol), data, ts, ts + 5))


async def test_a_flush_writes_each_hash_as_received_with_ttl_index_and_counters(
        store: Store, redis_server: RedisServer) -> None:
    w = make_writer(store)
    put(w, A, 1000)
    put(w, A, 1001, mark="8")  # coalesced: only the newest is written
    put(w, C, 1002)
    assert await w.flush() is True
    r = redis_server.client()
    assert r.hgetall(keys.option_key(A)) == {**DATA, "markPrice": "8", keys.F_OPTION_TS: "1001",
                                              keys.F_OPTION_RECV_TS: "1006"}
    assert 86300 < r.ttl(keys.option_key(A)) <= 86400
    assert r.smembers(keys.coin_index_key("BTC")) == {A}
    assert r.smembers(keys.coin_index_key("ETH")) == {C}
    assert w.counters.redis_writes == 2
    assert w.counters.redis_flushes == 1
    assert w.counters.last_update_by_coin == {"BTC": 1.006, "ETH": 1.007}
    assert w.tracked("BTC") == 1
    assert w.coalescer.pending == 0


async def test_the_ttl_in_force_at_each_flush_is_the_one_written(
        store: Store, redis_server: RedisServer) -> None:
    """The EXPIRE of each symbol is rendered once per TTL: a pressure change must still reach Redis."""
    r = redis_server.client()
    w = make_writer(store)
    put(w, A, 1)
    assert await w.flush() is True
    assert 86300 < r.ttl(keys.option_key(A)) <= 86400
    assert w.pressure.update(used_memory=401 * 2**20, maxmemory=0) is True  # pressure: 6 h
    put(w, A, 2)
    assert await w.flush() is True
    assert 21500 < r.ttl(keys.option_key(A)) <= 21600
    assert w.pressure.update(used_memory=2**20, maxmemory=0) is True  # relieved: 24 h again
    put(w, A, 3)
    assert await w.flush() is True
    assert 86300 < r.ttl(keys.option_key(A)) <= 86400


def expires_run(r: Any) -> int:
    """How many EXPIRE commands this Redis has executed."""
    return int(r.info("commandstats").get("cmdstat_expire", {}).get("calls", 0))


async def test_a_ttl_is_renewed_once_per_renewal_period_not_with_every_write(
        store: Store, redis_server: RedisServer) -> None:
    """At 10 pushes a second an EXPIRE per write was half of what Redis executed for the ingest."""
    r = redis_server.client()
    clock = Clock()
    w = make_writer(store, clock)
    assert renewal_period(86400) == RENEWAL_MAX == 60.0
    assert renewal_period(300) == 30.0
    for ts in range(1, 21):  # 20 flushes in 2 s
        put(w, A, ts, mark=str(ts))
        assert await w.flush() is True
        clock.now += 0.1
    assert expires_run(r) == 1  # with its first write
    assert r.hget(keys.option_key(A), "markPrice") == "20"
    assert 86300 < r.ttl(keys.option_key(A)) <= 86400
    clock.now = 60.0  # a renewal period after the first write
    put(w, A, 21)
    put(w, C, 21)  # new: its EXPIRE goes with its first write
    assert await w.flush() is True
    assert expires_run(r) == 3
    assert w.counters.redis_writes == 22
    put(w, A, 22)
    put(w, C, 22)
    assert await w.flush() is True
    assert expires_run(r) == 3


async def test_a_hash_deleted_behind_the_writers_back_gets_its_ttl_back_within_a_renewal_period(
        store: Store, redis_server: RedisServer) -> None:
    r = redis_server.client()
    clock = Clock()
    w = make_writer(store, clock)
    put(w, A, 1)
    assert await w.flush() is True
    r.delete(keys.option_key(A))
    put(w, A, 2)
    assert await w.flush() is True
    assert r.ttl(keys.option_key(A)) == -1  # the HSET made it again, without a TTL: the documented bound
    clock.now += RENEWAL_MAX
    put(w, A, 3)
    assert await w.flush() is True
    assert 86300 < r.ttl(keys.option_key(A)) <= 86400


async def test_a_refused_write_sends_its_ttl_again_with_the_retry_across_slices(
        store: Store, redis_server: RedisServer) -> None:
    """Symbols with and without an EXPIRE in one flush, refusals on both sides of a slice edge:
    each reply still belongs to its own symbol, and a refused symbol gets its TTL with its retry."""
    r = redis_server.client()
    clock = Clock()
    w = make_writer(store, clock)
    symbols = [f"BTC-27DEC26-{1000 + i}-C" for i in range(3 * WRITE_SLICE)]
    for symbol in symbols[::2]:  # every other one written (and its TTL renewed) before
        put(w, symbol, 1)
    assert await w.flush() is True
    before = expires_run(r)
    bad = {symbols[WRITE_SLICE // 2 - 1], symbols[WRITE_SLICE // 2], symbols[WRITE_SLICE], symbols[-1]}
    for symbol in bad:
        r.delete(keys.option_key(symbol))
        r.set(keys.option_key(symbol), "not a hash")
    for symbol in symbols:
        put(w, symbol, 2)
    assert await w.flush() is True
    assert w.counters.errors[errors.REDIS_ERROR] == len(bad)  # the HSETs; EXPIRE takes a key of any type
    assert w.coalescer.pending == len(bad)
    assert expires_run(r) - before == len(symbols) // 2  # only the new ones
    assert all(r.hget(keys.option_key(s), "ts") == "2" for s in symbols if s not in bad)
    for symbol in bad:
        r.delete(keys.option_key(symbol))
    assert await w.flush() is True  # the retry, well within a renewal period
    assert w.coalescer.pending == 0
    assert all(r.hget(keys.option_key(s), "ts") == "2" for s in symbols)
    assert all(86300 < r.ttl(keys.option_key(s)) <= 86400 for s in symbols)


async def test_a_key_redis_refuses_fails_alone_and_is_counted(
        store: Store, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.set(keys.option_key(B), "not a hash")
    w = make_writer(store)
    put(w, A, 1)
    put(w, B, 1)
    assert await w.flush() is True
    assert r.hget(keys.option_key(A), "markPrice") == "7.5"
    assert w.counters.errors[errors.REDIS_ERROR] == 1
    assert w.coalescer.pending == 1  # B stays pending: written once the key is fixed
    r.delete(keys.option_key(B))
    assert await w.flush() is True
    assert r.hget(keys.option_key(B), "markPrice") == "7.5"
    assert r.smembers(keys.coin_index_key("BTC")) == {A, B}


async def test_a_batch_of_many_slices_maps_each_reply_to_its_own_command(
        store: Store, redis_server: RedisServer) -> None:
    """A flush goes out in slices of WRITE_SLICE commands: the replies still line up, across slices."""
    r = redis_server.client()
    bad = {WRITE_SLICE - 1, WRITE_SLICE, 3 * WRITE_SLICE + 7}  # both sides of a slice edge, and later
    for i in bad:
        r.set(f"k{i}", "not a hash")
    commands = [resp.command("HSET", f"k{i}", "f", str(i)) for i in range(4 * WRITE_SLICE + 3)]
    results = await store.execute(commands)
    assert {i for i, reply in enumerate(results) if reply is not None} == bad
    assert all("WRONGTYPE" in str(results[i]) for i in bad)
    assert r.hget(f"k{4 * WRITE_SLICE + 2}", "f") == str(4 * WRITE_SLICE + 2)


async def test_each_slice_reaches_redis_before_the_next_is_made(
        store: Store, redis_server: RedisServer) -> None:
    """Redis works through a flush's first commands while the writer still renders the rest."""
    r = redis_server.client()
    seen_while_making: list[str | None] = []

    def slices() -> Iterator[list[bytes]]:
        yield [resp.command("SET", "first", "1")]
        deadline = time.monotonic() + 2.0
        while r.get("first") is None and time.monotonic() < deadline:
            time.sleep(0.005)  # the producer blocks the loop, as rendering does
        seen_while_making.append(r.get("first"))
        yield [resp.command("SET", "second", "2")]

    assert await store.execute_slices(slices()) == [None, None]
    assert seen_while_making == ["1"]
    assert r.get("second") == "2"


async def test_a_producer_failing_mid_batch_leaves_no_reply_for_the_next_batch(
        store: Store, redis_server: RedisServer) -> None:
    """Half a batch sent and its producer broken: the connection is dropped, not handed on with
    unread replies that the next batch would take for its own."""
    r = redis_server.client()
    r.set("text", "not a hash")

    def broken() -> Iterator[list[bytes]]:
        yield [resp.command("HSET", "text", "f", "v")]  # its WRONGTYPE reply is never read
        raise ValueError("a bug in rendering")

    with pytest.raises(ValueError, match="a bug in rendering"):
        await store.execute_slices(broken())
    for _ in range(3):  # whichever pooled connection each batch gets
        results = await store.execute([resp.command("HSET", "h", "f", "v"), resp.command("GET", "h")])
        assert results[0] is None  # not the stray WRONGTYPE of the broken batch
        assert isinstance(results[1], ResponseError)
        assert "WRONGTYPE" in str(results[1])


async def test_a_flush_over_many_slices_fails_only_the_refused_symbols(
        store: Store, redis_server: RedisServer) -> None:
    """Rendered and sent slice by slice, each reply still belongs to its own symbol."""
    r = redis_server.client()
    symbols = [f"BTC-27DEC26-{1000 + i}-C" for i in range(3 * WRITE_SLICE)]
    bad = {symbols[WRITE_SLICE // 2 - 1], symbols[WRITE_SLICE // 2], symbols[-1]}  # both sides of an edge
    for symbol in bad:
        r.set(keys.option_key(symbol), "not a hash")
    w = make_writer(store)
    for symbol in symbols:
        put(w, symbol, 1)
    assert await w.flush() is True
    assert w.counters.errors[errors.REDIS_ERROR] == len(bad)
    assert w.coalescer.pending == len(bad)
    assert w.counters.redis_writes == len(symbols) - len(bad)
    assert r.smembers(keys.coin_index_key("BTC")) == set(symbols)
    assert all(r.hget(keys.option_key(s), "symbol") == s for s in symbols if s not in bad)
    assert all(0 < r.ttl(keys.option_key(s)) <= 86400 for s in symbols if s not in bad)


async def test_an_outage_holds_the_latest_state_and_a_restarted_redis_gets_all_of_it_back(
        store: Store, redis_server: RedisServer) -> None:
    clock = Clock()
    w = make_writer(store, clock)
    put(w, A, 1)
    put(w, C, 1)
    assert await w.flush() is True
    redis_server.kill()
    for ts in range(2, 500):
        put(w, A, ts, mark=str(ts))
    assert await w.flush() is False
    assert not w.up
    assert len(w.coalescer) == 2  # one entry per symbol, however long the outage
    assert w.counters.errors[errors.REDIS_ERROR] == 1
    clock.now += 0.05
    assert await w.flush() is False  # not retried before its pause is over
    assert w.counters.errors[errors.REDIS_ERROR] == 1
    redis_server.start()  # empty
    clock.now += 10
    assert await w.flush() is True
    r = redis_server.client()
    assert r.hget(keys.option_key(A), "markPrice") == "499"
    assert r.hget(keys.option_key(C), "markPrice") == "7.5"  # unchanged during the outage, rewritten anyway
    assert r.smembers(keys.coin_index_key("BTC")) == {A}
    assert r.smembers(keys.coin_index_key("ETH")) == {C}
    # their TTLs too, although both were renewed a moment ago in the Redis that died
    assert all(86300 < r.ttl(keys.option_key(s)) <= 86400 for s in (A, C))


async def test_the_retry_pause_grows_to_the_configured_maximum(
        store: Store, redis_server: RedisServer) -> None:
    clock = Clock()
    w = make_writer(store, clock)
    put(w, A, 1)
    redis_server.kill()
    pauses = []
    for _ in range(10):
        assert await w.flush() is False
        pauses.append(round(w._next_try - clock.now, 3))
        clock.now = w._next_try
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]


async def test_delivered_symbols_are_deleted_with_their_index_entries(
        store: Store, redis_server: RedisServer) -> None:
    w = make_writer(store)
    put(w, A, 1)
    put(w, B, 1)
    await w.flush()
    w.forget({"BTC": [A]})
    assert await w.flush() is True
    r = redis_server.client()
    assert not r.exists(keys.option_key(A))
    assert r.smembers(keys.coin_index_key("BTC")) == {B}
    assert w.tracked("BTC") == 1


async def test_apply_ttl_expires_every_known_hash_without_scanning(
        store: Store, redis_server: RedisServer) -> None:
    w = make_writer(store)
    for i in range(50):
        put(w, f"BTC-27DEC26-{1000 + i}-C", 1)
    await w.flush()
    await w.apply_ttl(600)
    r = redis_server.client()
    assert all(0 < r.ttl(keys.option_key(f"BTC-27DEC26-{1000 + i}-C")) <= 600 for i in range(50))


async def test_the_reporter_writes_every_stats_hash_and_resyncs_after_a_redis_restart(
        store: Store, redis_server: RedisServer) -> None:
    w = make_writer(store)
    put(w, A, 1)
    await w.flush()
    lag = LagHistogram()
    lag.observe(0.2)
    rep = Reporter(store=store, writer=w, counters=w.counters, lag=lag, pressure=w.pressure,
                   connection_state=lambda: ConnectionState(desired=2, connected=2, subscriptions=9),
                   interval=1.0, heartbeat_ttl=15)
    assert await rep.report() is True
    r = redis_server.client()
    stats = r.hgetall(keys.STATS_GLOBAL)
    assert stats[keys.F_WS_CONNECTED] == "2"
    assert stats[keys.F_SUBSCRIPTIONS] == "9"
    assert stats[keys.F_REDIS_WRITES] == "1"
    assert r.hget(keys.coin_stats_key("BTC"), keys.F_COIN_TRACKED) == "1"
    assert r.hget(keys.STATS_LAG, keys.lag_bucket_field(0.25)) == "1"
    assert 0 < r.pttl(keys.INGEST_HEARTBEAT) <= 15_000

    redis_server.restart()  # a new run_id and an empty Redis
    # The first call may meet a pooled connection the restart closed; the next one gets through.
    assert await rep.report() or await rep.report()
    assert w.coalescer.pending == 1  # the new run_id made the writer rewrite everything
    assert await w.flush() is True
    r = redis_server.client()
    assert r.exists(keys.option_key(A))
    assert r.smembers(keys.coin_index_key("BTC")) == {A}


async def test_store_calls_fail_fast_with_redis_unavailable(store: Store, redis_server: RedisServer) -> None:
    redis_server.kill()
    with pytest.raises(RedisUnavailable):
        await store.ping()
    with pytest.raises(RedisUnavailable):
        await store.server_info()
    with pytest.raises(RedisUnavailable):
        await store.execute([b"*1\r\n$4\r\nPING\r\n"])
