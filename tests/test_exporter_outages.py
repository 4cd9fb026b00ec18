"""The exporter when Redis or the ingest is gone: fast answers that say so, never stale values.

Redis is really killed (SIGKILL) or really paused (``CLIENT PAUSE``), the ingest is
"dead" because its heartbeat is absent or old — the states production sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
import redis

from common import keys
from common.config import load_settings
from exporter.server import build_app
from tests.fixtures_readers import Exposition, Layout, layout, parse_exposition, serve_app
from tests.servers import RedisServer

__all__ = ["layout"]

COINS = ("BTC", "ETH")
R = keys.DEFAULT_REPLICA
#: Series that can only come from Redis: none may appear when Redis was not read.
REDIS_DERIVED = (
    "bybit_ingest_up", "bybit_ingest_replicas_up", "bybit_ingest_heartbeat_age_seconds",
    "bybit_data_staleness_seconds",
    "bybit_data_last_update_timestamp_seconds", "bybit_options_tracked", "bybit_ws_reconnects_total",
    "bybit_errors_total", "bybit_redis_memory_used_bytes", "bybit_redis_memory_max_bytes",
    "bybit_redis_keys", "bybit_message_lag_seconds_count", "bybit_ws_connected",
)

Starter = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def exporter_url(redis_server: RedisServer) -> Starter:
    def start(**env: str) -> AbstractAsyncContextManager[str]:
        settings = load_settings(env={"REDIS_URL": redis_server.url, "BYBIT_COINS": ",".join(COINS),
                                      "EXPORTER_REDIS_TIMEOUT": "0.5", **env})
        return serve_app(build_app(settings))

    return start


async def scrape(url: str, *, limit: float = 5.0) -> tuple[int, Exposition]:
    """One scrape; the client gives up after ``limit`` seconds (a hang fails the test)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session, \
            session.get(url + "/metrics") as resp:
        return resp.status, parse_exposition(await resp.text())


async def test_with_redis_killed_a_scrape_says_redis_is_down_and_serves_no_redis_values(
    layout: Layout, redis_server: RedisServer, exporter_url: Starter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    async with exporter_url() as url:
        status, before = await scrape(url)
        assert status == 200
        assert before.value("bybit_redis_up") == 1
        assert before.value("bybit_ingest_up", replica=R) == 1
        redis_server.kill()
        status, after = await scrape(url)
    assert status == 200
    assert after.value("bybit_redis_up") == 0
    for name in REDIS_DERIVED:
        assert name not in after.names(), f"{name} served without reading Redis"
    assert after.value("bybit_exporter_errors_total", type="redis_connection") == 1
    assert after.value("bybit_exporter_scrape_duration_seconds") >= 0


async def test_with_redis_paused_a_scrape_answers_within_its_timeout_then_recovers(
    layout: Layout, redis_server: RedisServer, exporter_url: Starter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    pause_ms = 8000
    async with exporter_url() as url:
        assert (await scrape(url))[1].value("bybit_redis_up") == 1  # a pooled connection exists
        layout.client.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        paused_at = time.monotonic()
        # The exporter gives Redis 0.5 s; a hang would run into this 4 s client limit.
        status, during = await scrape(url, limit=4.0)
        assert time.monotonic() - paused_at < pause_ms / 1000, "the answer must come while Redis is paused"
        assert status == 200
        assert during.value("bybit_redis_up") == 0
        assert during.value("bybit_exporter_errors_total", type="redis_timeout") >= 1
        for name in REDIS_DERIVED:
            assert name not in during.names(), name
        # Once Redis answers again, the next scrapes read it afresh (no poisoned connection).
        patient = redis.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=30)
        # Blocks until the pause ends (in a thread: the exporter shares this event loop).
        await asyncio.to_thread(patient.hset, keys.replica_stats_key(R), keys.F_RECONNECTS, 77)
        patient.close()

        async def recovered() -> Exposition:
            while True:
                _, m = await scrape(url)
                if m.value("bybit_redis_up") == 1:
                    return m
                await asyncio.sleep(0.1)

        after = await asyncio.wait_for(recovered(), timeout=15)
    assert after.value("bybit_ws_reconnects_total", replica=R) == 77
    assert after.value("bybit_options_tracked", coin="BTC") == 5


async def test_after_redis_restarts_empty_the_exporter_reads_it_again(
    layout: Layout, redis_server: RedisServer, exporter_url: Starter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    async with exporter_url() as url:
        await scrape(url)
        redis_server.restart()
        status, m = await scrape(url)
        if m.value("bybit_redis_up") == 0:  # the pooled connection died with the old server
            status, m = await scrape(url)
    assert status == 200
    assert m.value("bybit_redis_up") == 1
    assert m.value("bybit_ingest_replicas_up") == 0  # an empty Redis lists no replica
    assert "bybit_ingest_up" not in m.names()
    assert m.value("bybit_options_tracked", coin="BTC") == 0
    assert "bybit_ws_reconnects_total" not in m.names()


async def test_without_a_heartbeat_the_ingest_is_down_and_staleness_keeps_growing(
    layout: Layout, exporter_url: Starter,
) -> None:
    now = time.time()
    layout.healthy(now=now, coins=COINS)
    layout.client.delete(keys.replica_heartbeat_key(R))  # expired; still listed in ingest:replicas
    layout.client.zadd(keys.INGEST_REPLICAS, {R: now - 30})
    layout.coin_stats("BTC", last_update=now - 400)
    async with exporter_url() as url:
        _, first = await scrape(url)
        assert first.value("bybit_ingest_up", replica=R) == 0
        assert first.value("bybit_ingest_replicas_up") == 0
        assert 30 <= first.value("bybit_ingest_heartbeat_age_seconds", replica=R) < 60  # since its last one
        assert "bybit_ws_reconnects_total" not in first.names()  # a dead replica's totals are not current
        assert "bybit_ingest_resident_memory_bytes" not in first.names()
        assert first.value("bybit_data_staleness_seconds", coin="BTC") > 300  # the alert's threshold

        async def grown() -> Exposition:
            while True:
                _, m = await scrape(url)
                if m.value("bybit_data_staleness_seconds", coin="BTC") > \
                        first.value("bybit_data_staleness_seconds", coin="BTC"):
                    return m
                await asyncio.sleep(0.05)

        later = await asyncio.wait_for(grown(), timeout=10)
    assert later.value("bybit_ingest_up", replica=R) == 0
    assert later.value("bybit_data_last_update_timestamp_seconds", coin="BTC") == pytest.approx(now - 400)


async def test_a_heartbeat_older_than_its_ttl_means_the_ingest_is_down(
    layout: Layout, exporter_url: Starter,
) -> None:
    now = time.time()
    layout.healthy(now=now, coins=COINS)
    layout.heartbeat(ts=now - 60, ttl=600)  # e.g. a frozen ingest whose key has not expired yet
    async with exporter_url(INGEST_HEARTBEAT_TTL="15") as url:
        _, m = await scrape(url)
    assert m.value("bybit_ingest_up", replica=R) == 0
    assert 60 <= m.value("bybit_ingest_heartbeat_age_seconds", replica=R) < 120
