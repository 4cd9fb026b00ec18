"""Ingest replicas on one Redis: each writes its own stats and heartbeat, the shared fields only go up.

Real redis-server; the ingest's own :class:`~ingest.store.Store` writes what its reporter
writes every stats interval. The end-to-end view (two ``python -m ingest`` processes, the
exporter, the alerts) is tests/test_ingest_replicas_e2e.py.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from common import errors, keys
from common.config import ConfigError, load_settings, retired_replicas
from ingest.app import retiring
from ingest.sharding import WorkerShare
from ingest.stats import ConnectionState, Counters, coin_fields, global_fields, heartbeat_fields
from ingest.store import Store, make_redis
from tests.servers import RedisServer


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[Store]:
    redis = make_redis(redis_server.url, timeout=2.0)
    try:
        yield Store(redis, timeout=2.0)
    finally:
        await redis.aclose()


async def report(store: Store, replica: str, *, now: float, last_update: float, messages: int,
                 connected: int = 2) -> None:
    """What one replica's reporter writes: its counters with ``last_update`` (BTC) at ``last_update``."""
    counters = Counters(coins=("BTC", "ETH"), started_at=now - 60)
    counters.messages = messages
    counters.messages_by_coin["BTC"] = messages
    counters.written("BTC", last_update)
    failed = await store.write_stats(
        replica=replica, now=now, legacy=replica == keys.DEFAULT_REPLICA,
        global_doc=global_fields(counters, ConnectionState(desired=2, connected=connected), ttl=86400,
                                 pressure=False, pending=0),
        coin_docs={c: coin_fields(counters, c, 5) for c in counters.coins},
        lag_doc={keys.LAG_COUNT_FIELD: str(messages)},
        heartbeat_doc=heartbeat_fields(now=now, pid=1000 + len(replica), rss_bytes=1, cpu_seconds=0.5,
                                       started_at=now - 60),
        heartbeat_ttl=15.0)
    assert failed == []


def test_the_replica_name_is_validated_with_a_message_naming_the_knob() -> None:
    assert load_settings({}).ingest_replica == keys.DEFAULT_REPLICA == "main"
    assert load_settings({"INGEST_REPLICA": "ingest-b_2"}).ingest_replica == "ingest-b_2"
    for bad in ("B", "-b", "b c", "x" * 33, "stats:global", "ü", "b\x00"):
        with pytest.raises(ConfigError, match="INGEST_REPLICA"):
            load_settings({"INGEST_REPLICA": bad})


async def test_two_replicas_keep_their_own_counters_and_heartbeats(
        store: Store, redis_server: RedisServer) -> None:
    now = time.time()
    await report(store, "a", now=now, last_update=now - 1, messages=500, connected=2)
    await report(store, "b", now=now + 0.5, last_update=now - 3, messages=7, connected=1)
    await report(store, "a", now=now + 1, last_update=now - 1, messages=600, connected=2)
    r = redis_server.client()
    a, b = r.hgetall(keys.replica_stats_key("a")), r.hgetall(keys.replica_stats_key("b"))
    assert (a[keys.F_MESSAGES], a[keys.F_WS_CONNECTED]) == ("600", "2")
    assert (b[keys.F_MESSAGES], b[keys.F_WS_CONNECTED]) == ("7", "1")
    assert b[keys.messages_field("BTC")] == "7"
    assert r.hget(keys.replica_lag_key("b"), keys.LAG_COUNT_FIELD) == "7"
    for replica in ("a", "b"):
        beat = keys.replica_heartbeat_key(replica)
        assert set(r.hkeys(beat)) == set(keys.HEARTBEAT_FIELDS)
        assert 0 < r.pttl(beat) <= 15_000
        assert 0 < r.ttl(keys.replica_stats_key(replica)) <= keys.REPLICA_RETENTION_SECONDS
    assert r.zrange(keys.INGEST_REPLICAS, 0, -1, withscores=True) == [("b", now + 0.5), ("a", now + 1)]
    # Named replicas leave the single-node keys alone: nobody overwrites them in turn.
    assert not r.exists(keys.INGEST_HEARTBEAT, keys.STATS_LAG)
    assert set(r.hkeys(keys.STATS_GLOBAL)) == {keys.F_LAST_UPDATE}


async def test_last_update_is_the_newest_of_any_replica_and_never_goes_back(
        store: Store, redis_server: RedisServer) -> None:
    now = time.time()
    r = redis_server.client()
    await report(store, "a", now=now, last_update=now - 1, messages=1)
    await report(store, "b", now=now, last_update=now - 30, messages=1)  # lagging replica writes later
    assert r.hget(keys.STATS_GLOBAL, keys.F_LAST_UPDATE) == str(int(now - 1))
    assert float(r.hget(keys.coin_stats_key("BTC"), keys.F_COIN_LAST_UPDATE)) == now - 1
    await report(store, "b", now=now + 1, last_update=now + 0.5, messages=2)
    assert float(r.hget(keys.coin_stats_key("BTC"), keys.F_COIN_LAST_UPDATE)) == now + 0.5
    # A field holding garbage (or absent) takes the value; a coin nobody wrote gets none.
    r.hset(keys.STATS_GLOBAL, keys.F_LAST_UPDATE, "garbage")
    await report(store, "a", now=now + 2, last_update=now - 1, messages=2)
    assert r.hget(keys.STATS_GLOBAL, keys.F_LAST_UPDATE) == str(int(now - 1))
    assert r.hget(keys.coin_stats_key("ETH"), keys.F_COIN_LAST_UPDATE) is None


async def test_the_default_replica_also_writes_the_single_node_layout(
        store: Store, redis_server: RedisServer) -> None:
    now = time.time()
    await report(store, keys.DEFAULT_REPLICA, now=now, last_update=now - 1, messages=42)
    r = redis_server.client()
    legacy = r.hgetall(keys.STATS_GLOBAL)
    own = r.hgetall(keys.replica_stats_key(keys.DEFAULT_REPLICA))
    assert legacy == own  # the same counters, under the old name too
    assert legacy[keys.F_MESSAGES] == "42"
    assert r.hget(keys.coin_stats_key("BTC"), keys.F_COIN_MESSAGES) == "42"
    assert r.hget(keys.STATS_LAG, keys.LAG_COUNT_FIELD) == "42"
    assert 0 < r.pttl(keys.INGEST_HEARTBEAT) <= 15_000


async def test_a_replica_silent_for_the_retention_is_pruned_by_the_others(
        store: Store, redis_server: RedisServer) -> None:
    now = time.time()
    r = redis_server.client()
    r.zadd(keys.INGEST_REPLICAS, {"gone": now - keys.REPLICA_RETENTION_SECONDS - 5,
                                  "recent": now - keys.REPLICA_RETENTION_SECONDS + 60})
    await report(store, "a", now=now, last_update=now, messages=1)
    assert r.zrange(keys.INGEST_REPLICAS, 0, -1) == ["recent", "a"]


async def test_two_processes_under_one_replica_name_count_a_conflict(
        store: Store, redis_server: RedisServer) -> None:
    from ingest.coalescer import Coalescer
    from ingest.lag import LagHistogram
    from ingest.pressure import MemoryPressure
    from ingest.reporter import Reporter
    from ingest.writer import Writer

    def reporter(started_at: float) -> Reporter:
        counters = Counters(coins=("BTC",), started_at=started_at)
        pressure = MemoryPressure(threshold_bytes=2**30, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
        writer = Writer(store=store, coalescer=Coalescer(), counters=counters, pressure=pressure,
                        flush_interval=0.1, retry_max=1.0)
        return Reporter(store=store, writer=writer, counters=counters, lag=LagHistogram(), pressure=pressure,
                        connection_state=ConnectionState, interval=1.0, heartbeat_ttl=15.0, replica="b")

    now = time.time()
    alone, first, second = reporter(now - 300), reporter(now - 60), reporter(now - 30)
    # One process reporting again and again, after a predecessor's heartbeat: no conflict.
    for _ in range(3):
        assert await alone.report() is True
    assert await first.report() is True  # a restart under the same name takes the heartbeat over
    assert await first.report() is True
    assert alone.counters.errors[errors.REPLICA_CONFLICT] == 0
    assert first.counters.errors[errors.REPLICA_CONFLICT] == 0
    # A second process under the same name: each sees the other's heartbeat where its own was.
    assert await second.report() is True
    assert await first.report() is True
    assert await second.report() is True
    assert first.counters.errors[errors.REPLICA_CONFLICT] == 1
    assert second.counters.errors[errors.REPLICA_CONFLICT] == 1
    r = redis_server.client()
    assert r.hget(keys.replica_stats_key("b"), keys.error_field(errors.REPLICA_CONFLICT)) == "1"


def test_the_prometheus_pair_keeps_the_ingest_replica_label_on_alerts() -> None:
    """The HA Prometheus pair's own label must not be ``replica``: an external label never
    replaces a label a series has, and the alert labeldrop would strip IngestReplicaDown's."""
    import re

    import yaml

    from scripts.promconfig.prometheus_config import render_ha_configs

    configs = render_ha_configs()
    assert len(configs) == 2
    for path, text in configs.items():
        doc = yaml.safe_load(text)
        assert "replica" not in doc["global"]["external_labels"], path
        for relabel in doc["alerting"]["alert_relabel_configs"]:
            assert not re.fullmatch(relabel["regex"], "replica"), path


# --- a changed INGEST_WORKERS leaves no names behind ----------------------------------------------

def test_the_names_an_ingest_no_longer_runs_are_its_own_of_another_worker_count() -> None:
    listed = ["main", "main-w0", "main-w1", "main-w2", "other", "other-w0", "main-x", "mainw1", "main-w",
              "main-w1-w0"]
    assert retired_replicas("main", 2, listed) == ["main", "main-w2"]
    assert retired_replicas("main", 1, listed) == ["main-w0", "main-w1", "main-w2"]
    assert retired_replicas("main", 3, listed) == ["main"]
    assert retired_replicas("other", 1, listed) == ["other-w0"]


def test_the_single_process_or_worker_0_tidies_and_knows_the_ingests_name() -> None:
    settings = load_settings({"INGEST_REPLICA": "eu-1"})
    assert retiring(settings, None) == ("eu-1", 1)
    worker0 = dataclasses.replace(settings, ingest_replica="eu-1-w0", ingest_workers=1)
    assert retiring(worker0, WorkerShare(0, 3)) == ("eu-1", 3)
    worker1 = dataclasses.replace(settings, ingest_replica="eu-1-w1", ingest_workers=1)
    assert retiring(worker1, WorkerShare(1, 3)) is None


async def test_worker_0_forgets_the_dead_names_of_the_former_worker_count_and_only_those(
        store: Store, redis_server: RedisServer) -> None:
    from ingest.coalescer import Coalescer
    from ingest.lag import LagHistogram
    from ingest.pressure import MemoryPressure
    from ingest.reporter import RETIRE_EVERY, Reporter
    from ingest.writer import Writer

    now = time.time()
    r = redis_server.client()
    # Before: one process ("main"), then three workers; a sibling still running; an unrelated replica.
    for name in ("main", "main-w1", "main-w2", "main-w3", "other"):
        await report(store, name, now=now - 30, last_update=now - 30, messages=5)
    for gone in ("main", "main-w2", "other"):
        r.delete(keys.replica_heartbeat_key(gone))  # their heartbeats expired: the processes are gone
    clock = [100.0]
    counters = Counters(coins=("BTC",), started_at=now)
    pressure = MemoryPressure(threshold_bytes=2**30, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
    writer = Writer(store=store, coalescer=Coalescer(), counters=counters, pressure=pressure,
                    flush_interval=0.1, retry_max=1.0)
    reporter = Reporter(store=store, writer=writer, counters=counters, lag=LagHistogram(), pressure=pressure,
                        connection_state=ConnectionState, interval=1.0, heartbeat_ttl=15.0, replica="main-w0",
                        retire=("main", 2), clock=lambda: clock[0])
    assert await reporter.report() is True
    # main and main-w2 are forgotten with their stats; main-w3 still heartbeats (a worker in its stop
    # grace), main-w1 is a current sibling, "other" is not this ingest's.
    assert sorted(r.zrange(keys.INGEST_REPLICAS, 0, -1)) == ["main-w0", "main-w1", "main-w3", "other"]
    assert not r.exists(keys.replica_stats_key("main-w2"), keys.replica_lag_key("main-w2"))
    assert r.exists(keys.replica_stats_key("main-w3"))
    r.delete(keys.replica_heartbeat_key("main-w3"))  # it stopped
    assert await reporter.report() is True
    assert "main-w3" in r.zrange(keys.INGEST_REPLICAS, 0, -1)  # not asked again before RETIRE_EVERY
    clock[0] += RETIRE_EVERY
    assert await reporter.report() is True
    assert sorted(r.zrange(keys.INGEST_REPLICAS, 0, -1)) == ["main-w0", "main-w1", "other"]
    assert counters.errors[errors.REDIS_ERROR] == 0
