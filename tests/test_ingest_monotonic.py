"""Monotonic writes (INGEST_MONOTONIC_WRITES): two ingest replicas on one real Redis.

The guard is a Redis Function (:data:`ingest.resp.LIBRARY`); these tests run it in a real
redis-server and show the stored exchange ``ts`` never goes back, whichever replica writes last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common import errors, keys
from common.config import load_settings
from ingest import resp
from ingest.coalescer import Coalescer
from ingest.pressure import MemoryPressure
from ingest.stats import Counters
from ingest.store import Store, make_redis
from ingest.writer import Writer
from tests.servers import RedisServer

A, C = "BTC-27DEC26-100000-C", "ETH-27DEC26-4000-C"
DATA = {"symbol": A, "markPrice": "7.5", "lastPrice": "7", "delta": "-0.5"}


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one Redis, as two replicas would have."""
    one, two = make_redis(redis_server.url, timeout=1.0), make_redis(redis_server.url, timeout=1.0)
    try:
        yield Store(one, timeout=1.0), Store(two, timeout=1.0)
    finally:
        await one.aclose()
        await two.aclose()


def replica(store: Store, *, monotonic: bool = True) -> Writer:
    pressure = MemoryPressure(threshold_bytes=400 * 2**20, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
    return Writer(store=store, coalescer=Coalescer(), counters=Counters(coins=("BTC", "ETH")),
                  pressure=pressure, flush_interval=0.1, retry_max=5.0, monotonic=monotonic)


def put(w: Writer, symbol: str, ts: int, mark: str) -> None:
    coin = symbol.split("-", maxsplit=1)[0]
    data = {**DATA, "symbol": symbol, "markPrice": mark}
    w.coalescer.put(symbol, coin, ts, ts + 5, resp.hset_ticker(keys.option_key(symbol), data, ts, ts + 5))


def test_the_guard_is_off_unless_asked_for() -> None:
    assert load_settings({}).monotonic_writes is False
    assert load_settings({"INGEST_MONOTONIC_WRITES": "true"}).monotonic_writes is True


async def test_the_guarded_command_stores_exactly_what_hset_and_expire_would(
        stores: tuple[Store, Store], redis_server: RedisServer) -> None:
    store = stores[0]
    await store.load_library(resp.LIBRARY)
    plain = resp.hset_ticker(keys.option_key(C), {**DATA, "symbol": C}, 1000, 1005)
    guarded = resp.hset_ticker(keys.option_key(A), DATA, 1000, 1005)
    replies = await store.execute([plain, resp.expire(keys.option_key(C), 600),
                                   resp.guarded(guarded, 1000, 600)])
    assert replies == [None, None, None]
    r = redis_server.client()
    assert r.hgetall(keys.option_key(A)) == {**r.hgetall(keys.option_key(C)), "symbol": A}
    assert 590 < r.ttl(keys.option_key(A)) <= 600


async def test_an_older_ticker_from_the_other_replica_never_replaces_a_newer_one(
        stores: tuple[Store, Store], redis_server: RedisServer) -> None:
    fast, slow = replica(stores[0]), replica(stores[1])
    put(fast, A, 2000, mark="new")
    assert await fast.flush()
    put(slow, A, 1000, mark="old")  # the lagging replica flushes an older frame afterwards
    put(slow, C, 1000, mark="only-slow-has-it")
    assert await slow.flush()
    r = redis_server.client()
    assert r.hget(keys.option_key(A), "markPrice") == "new"
    assert r.hget(keys.option_key(A), keys.F_OPTION_TS) == "2000"
    assert r.hget(keys.option_key(C), "markPrice") == "only-slow-has-it"
    assert slow.counters.errors.get(errors.REDIS_ERROR, 0) == 0
    put(slow, A, 2000, mark="same-frame")  # the same frame again (equal ts) may overwrite
    put(fast, A, 3000, mark="newer")
    assert await slow.flush()
    assert r.hget(keys.option_key(A), "markPrice") == "same-frame"
    assert await fast.flush()
    assert r.hget(keys.option_key(A), "markPrice") == "newer"


async def test_without_the_guard_the_lagging_replica_wins(
        stores: tuple[Store, Store], redis_server: RedisServer) -> None:
    """What the guard prevents: plain HSET lets the last writer win, even with an older ticker."""
    fast, slow = replica(stores[0], monotonic=False), replica(stores[1], monotonic=False)
    put(fast, A, 2000, mark="new")
    assert await fast.flush()
    put(slow, A, 1000, mark="old")
    assert await slow.flush()
    assert redis_server.client().hget(keys.option_key(A), keys.F_OPTION_TS) == "1000"


async def test_a_redis_that_lost_the_library_gets_it_again_and_nothing_is_lost(
        stores: tuple[Store, Store], redis_server: RedisServer) -> None:
    w = replica(stores[0])
    put(w, A, 1000, mark="first")
    assert await w.flush()
    r = redis_server.client()
    r.function_flush()  # e.g. a Redis restarted without persistence, under the same run
    put(w, A, 2000, mark="second")
    assert await w.flush()  # refused: counted, kept, and the library marked for reloading
    assert w.counters.errors[errors.REDIS_ERROR] == 1
    assert r.hget(keys.option_key(A), "markPrice") == "first"
    assert w.coalescer.pending == 1
    assert await w.flush()
    assert r.hget(keys.option_key(A), "markPrice") == "second"
    assert w.coalescer.pending == 0


def test_the_cost_benchmark_runs_and_reports_both_modes_without_errors() -> None:
    import subprocess
    import sys

    from tests.servers import python_env, repo_root

    argv = [sys.executable, "-m", "bench.bench_monotonic", "--symbols", "50", "--flushes", "8"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=repo_root(),
                          env=python_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Errors: baseline 0, guarded 0." in done.stdout
    assert "| tickers written per second |" in done.stdout
