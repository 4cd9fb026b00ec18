"""The exporter shows each ingest replica: up or down, and the live ones' series under their label.

A real exporter app on a real Redis holding the layout two ingest replicas write
(tests/fixtures_readers.py). With real ``python -m ingest`` processes and Prometheus:
tests/test_ingest_replicas_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from common import keys
from common.config import load_settings
from exporter.server import build_app
from tests.fixtures_readers import Exposition, Layout, layout, parse_exposition, serve_app
from tests.servers import RedisServer

__all__ = ["layout"]

COINS = ("BTC", "ETH")
Starter = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def exporter_url(redis_server: RedisServer) -> Starter:
    def start(**env: str) -> AbstractAsyncContextManager[str]:
        settings = load_settings(env={"REDIS_URL": redis_server.url, "BYBIT_COINS": ",".join(COINS),
                                      "INGEST_HEARTBEAT_TTL": "15", **env})
        return serve_app(build_app(settings))

    return start


async def scrape(url: str) -> Exposition:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
            session.get(url + "/metrics") as resp:
        assert resp.status == 200
        return parse_exposition(await resp.text())


def replica(layout: Layout, name: str, *, now: float, messages: int, connected: int = 2) -> None:
    """What a live replica writes: heartbeat, stats (with per-coin messages), lag histogram."""
    layout.heartbeat(ts=now, rss_bytes=10_000_000 + messages, replica=name)
    layout.stats(name, **{keys.F_WS_CONNECTED: connected, keys.F_WS_CONNECTIONS: 2,
                                  keys.F_RECONNECTS: messages // 10, keys.messages_field("BTC"): messages})
    layout.lag([0.01] * messages, replica=name)


async def test_two_live_replicas_are_exported_each_under_its_label(
    layout: Layout, exporter_url: Starter,
) -> None:
    now = time.time()
    replica(layout, "a", now=now, messages=50)
    replica(layout, "b", now=now - 1, messages=30, connected=1)
    async with exporter_url() as url:
        m = await scrape(url)
    assert m.value("bybit_ingest_replicas_up") == 2
    assert m.label_values("bybit_ingest_up", "replica") == {"a", "b"}
    assert m.value("bybit_ingest_up", replica="a") == m.value("bybit_ingest_up", replica="b") == 1
    assert m.value("bybit_ws_messages_total", replica="a", coin="BTC") == 50
    assert m.value("bybit_ws_messages_total", replica="b", coin="BTC") == 30
    assert m.value("bybit_ws_connected", replica="b") == 1
    assert m.value("bybit_ws_reconnects_total", replica="a") == 5
    assert m.value("bybit_message_lag_seconds_count", replica="b") == 30
    assert m.value("bybit_ingest_resident_memory_bytes", replica="a") == 10_000_050
    for name in ("bybit_ws_connected", "bybit_errors_total", "bybit_redis_writes_total",
                 "bybit_message_lag_seconds_count", "bybit_ingest_cpu_seconds_total"):
        assert m.label_values(name, "replica") == {"a", "b"}, name


async def test_a_dead_replica_is_down_with_its_age_and_without_its_stale_series(
    layout: Layout, exporter_url: Starter,
) -> None:
    now = time.time()
    replica(layout, "a", now=now, messages=50)
    replica(layout, "b", now=now - 40, messages=30, connected=0)  # its last heartbeat, 40 s ago
    layout.client.delete(keys.replica_heartbeat_key("b"))  # expired; still listed
    async with exporter_url() as url:
        m = await scrape(url)
    assert m.value("bybit_ingest_replicas_up") == 1
    assert m.value("bybit_ingest_up", replica="b") == 0
    assert 40 <= m.value("bybit_ingest_heartbeat_age_seconds", replica="b") < 60
    # Its last totals and "0 connected" are not current: they would keep connection alerts firing.
    for name in ("bybit_ws_connected", "bybit_ws_messages_total", "bybit_ws_reconnects_total",
                 "bybit_errors_total", "bybit_message_lag_seconds_count",
                 "bybit_ingest_resident_memory_bytes"):
        assert m.label_values(name, "replica") == {"a"}, name


async def test_a_frozen_replica_whose_key_has_not_expired_is_down(
    layout: Layout, exporter_url: Starter,
) -> None:
    now = time.time()
    replica(layout, "a", now=now, messages=50)
    layout.heartbeat(ts=now - 60, ttl=600, replica="b")
    async with exporter_url() as url:
        m = await scrape(url)
    assert m.value("bybit_ingest_up", replica="b") == 0
    assert m.value("bybit_ingest_replicas_up") == 1


async def test_hostile_members_never_become_labels_and_the_list_is_bounded(
    layout: Layout, exporter_url: Starter,
) -> None:
    now = time.time()
    replica(layout, "a", now=now, messages=5)
    hostile = 'x"} 1\nbybit_evil 1 #'
    layout.client.zadd(keys.INGEST_REPLICAS, {hostile: now, "UPPER": now, "old": now - 2 * 86400})
    for i in range(keys.MAX_REPLICAS + 4):
        layout.client.zadd(keys.INGEST_REPLICAS, {f"r{i:02d}": now - 100 - i})
    async with exporter_url() as url:
        m = await scrape(url)
    listed = m.label_values("bybit_ingest_up", "replica")
    assert not {"UPPER", "old"} & listed
    assert "bybit_evil" not in m.names()
    # The newest MAX_REPLICAS members are read (the two invalid ones among them are skipped).
    assert listed == {"a", *(f"r{i:02d}" for i in range(keys.MAX_REPLICAS - 3))}
    assert m.value("bybit_exporter_errors_total", type="bad_value") == 2
    assert m.value("bybit_ingest_replicas_up") == 1
