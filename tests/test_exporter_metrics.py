"""The exporter's metrics against a real Redis holding the ingest's layout.

Each test seeds Redis the way the ingest writes it (tests.fixtures_readers.Layout), scrapes
a real exporter HTTP server and checks the exposition against docs/CONTRACTS.md.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from common import errors, keys
from common.config import Settings, load_settings
from exporter.server import build_app
from tests.fixtures_readers import Exposition, Layout, layout, make_symbols, parse_exposition, serve_app
from tests.servers import RedisServer, binary_or_skip, repo_root

__all__ = ["layout"]  # a fixture, imported until tests.fixtures_readers is a registered plugin

R = keys.DEFAULT_REPLICA  # the replica a single-node ingest (and the Layout) writes as
COINS = ("BTC", "ETH", "SOL")


def settings_for(redis_url: str, **env: str) -> Settings:
    return load_settings(env={"REDIS_URL": redis_url, "BYBIT_COINS": ",".join(COINS), **env})


def contract_metrics() -> dict[str, tuple[str, str]]:
    """name -> (type, labels) for every exporter metric in docs/CONTRACTS.md."""
    text = (repo_root() / "docs" / "CONTRACTS.md").read_text()
    section = text.split("Exporter (`job=\"exporter\"`)", 1)[1].split("\nAPI (", 1)[0]
    rows = re.findall(r"^\| `(bybit_[a-z_]+)` \| (\w+) \|([\w ]*)\|", section, re.MULTILINE)
    assert len(rows) >= 25, "the contract table was not found"
    return {name: (kind, labels.strip()) for name, kind, labels in rows}


class ScrapeResult:
    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text
        self.metrics = parse_exposition(text)


ExporterStarter = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def exporter_url(redis_server: RedisServer) -> ExporterStarter:
    """Factory: ``async with exporter_url(**env) as url`` runs an exporter on the test's Redis."""
    def start(**env: str) -> AbstractAsyncContextManager[str]:
        return serve_app(build_app(settings_for(redis_server.url, **env)))

    return start


async def scrape(url: str, *, limit: float = 5.0) -> ScrapeResult:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session, \
            session.get(url + "/metrics") as resp:
        return ScrapeResult(resp.status, await resp.text())


def family_labels(metrics: Exposition, name: str) -> set[str]:
    base = name.removesuffix("_total")
    out: set[str] = set()
    for (sample, labels) in metrics.samples:
        if sample == name or (sample.startswith(base + "_") and metrics.types.get(base) == "histogram"):
            out |= {k for k, _ in labels if k != "le"}
    return out


async def test_a_healthy_ingest_is_exported_with_every_contract_metric_type_and_label(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    async with exporter_url() as url:
        result = await scrape(url)
    assert result.status == 200
    metrics = result.metrics
    for name, (kind, labels) in contract_metrics().items():
        family = name.removesuffix("_total") if kind == "counter" else name
        assert metrics.types.get(family) == kind, (name, metrics.types.get(family))
        expected = set(labels.split()) if labels else set()
        assert family_labels(metrics, name) == expected, name


async def test_values_are_those_the_ingest_wrote(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    now = time.time()
    layout.healthy(now=now, coins=COINS, per_coin=7)
    layout.stats(**{keys.F_RECONNECTS: 12, keys.F_CONNECT_FAILURES: 3, keys.F_WS_CONNECTIONS: 3,
                    keys.F_WS_CONNECTED: 2, keys.F_CIRCUIT_OPEN: 1, keys.F_REST_REQUESTS: 40,
                    keys.F_REST_RATE_LIMITED: 2, keys.F_REDIS_WRITES: 999, keys.F_PENDING: 17,
                    keys.F_MEMORY_PRESSURE: 1, keys.F_TTL_SECONDS: 21600, keys.F_SUBSCRIPTIONS: 21,
                    keys.F_CONSECUTIVE_FAILURES: 4, keys.error_field(errors.BAD_JSON): 5,
                    keys.error_field(errors.WS_CLOSED): 2, keys.messages_field("ETH"): 321})
    layout.coin_stats("ETH", last_update=now - 42.0)
    layout.heartbeat(ts=now - 2, rss_bytes=123_456_789, cpu_seconds=7.25, started_at=now - 3600)
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert m.value("bybit_ws_reconnects_total", replica=R) == 12
    assert m.value("bybit_ws_connect_failures_total", replica=R) == 3
    assert m.value("bybit_ws_connections_desired", replica=R) == 3
    assert m.value("bybit_ws_connected", replica=R) == 2
    assert m.value("bybit_ws_circuit_open", replica=R) == 1
    assert m.value("bybit_ws_consecutive_failures", replica=R) == 4
    assert m.value("bybit_ws_subscriptions", replica=R) == 21
    assert m.value("bybit_rest_requests_total", replica=R) == 40
    assert m.value("bybit_rest_rate_limited_total", replica=R) == 2
    assert m.value("bybit_redis_writes_total", replica=R) == 999
    assert m.value("bybit_ingest_pending_symbols", replica=R) == 17
    assert m.value("bybit_ingest_memory_pressure", replica=R) == 1
    assert m.value("bybit_option_ttl_seconds", replica=R) == 21600
    assert m.value("bybit_errors_total", replica=R, type=errors.BAD_JSON) == 5
    assert m.value("bybit_errors_total", replica=R, type=errors.WS_CLOSED) == 2
    assert m.value("bybit_ingest_up", replica=R) == 1
    assert 2 <= m.value("bybit_ingest_heartbeat_age_seconds", replica=R) < 60
    assert m.value("bybit_ingest_resident_memory_bytes", replica=R) == 123_456_789
    assert m.value("bybit_ingest_cpu_seconds_total", replica=R) == 7.25
    assert m.value("bybit_ingest_start_time_seconds", replica=R) == pytest.approx(now - 3600)
    assert m.value("bybit_ws_messages_total", replica=R, coin="ETH") == 321
    assert m.value("bybit_data_last_update_timestamp_seconds", coin="ETH") == pytest.approx(now - 42.0)
    assert 42 <= m.value("bybit_data_staleness_seconds", coin="ETH") < 100
    for coin in COINS:
        assert m.value("bybit_options_tracked", coin=coin) == 7  # SCARD of the coin's index
    assert m.value("bybit_redis_up") == 1
    assert m.value("bybit_redis_keys") == layout.client.dbsize()
    assert m.value("bybit_redis_memory_used_bytes") > 0
    assert m.value("bybit_exporter_scrape_duration_seconds") > 0


async def test_lag_histogram_has_the_shared_buckets_and_the_ingest_counts(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    layout.lag([0.003, 0.02, 0.02, 0.2, 1.2, 100.0])
    layout.heartbeat(ts=time.time())  # a live replica's histogram
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert m.types["bybit_message_lag_seconds"] == "histogram"
    bounds = {repr(float(b)) for b in keys.LAG_BUCKETS} | {"+Inf"}
    assert m.label_values("bybit_message_lag_seconds_bucket", "le") == bounds
    assert m.value("bybit_message_lag_seconds_bucket", replica=R, le="0.005") == 1
    assert m.value("bybit_message_lag_seconds_bucket", replica=R, le="0.025") == 3
    assert m.value("bybit_message_lag_seconds_bucket", replica=R, le="60.0") == 5
    assert m.value("bybit_message_lag_seconds_bucket", replica=R, le="+Inf") == 6
    assert m.value("bybit_message_lag_seconds_count", replica=R) == 6
    assert m.value("bybit_message_lag_seconds_sum", replica=R) == pytest.approx(101.443)


async def test_every_error_type_is_exported_from_the_first_scrape_even_when_missing_in_redis(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    layout.client.hset(keys.replica_stats_key(R), mapping={keys.F_RECONNECTS: 1})
    layout.heartbeat(ts=time.time())
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert m.label_values("bybit_errors_total", "type") == set(errors.ERROR_TYPES)
    assert all(m.value("bybit_errors_total", replica=R, type=t) == 0 for t in errors.ERROR_TYPES)
    assert m.value("bybit_ws_connect_failures_total", replica=R) == 0


async def test_strange_fields_in_redis_never_become_label_values(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    now = time.time()
    layout.healthy(now=now, coins=COINS)
    hostile = 'x"} 1\nbybit_evil 1 #'
    layout.client.hset(keys.replica_stats_key(R), mapping={
        keys.error_field("KeyError('symbol')"): 9, keys.error_field(hostile): 3,
        keys.messages_field("DOGE"): 50})
    layout.coin_stats("DOGE", last_update=now, messages=50)
    layout.client.sadd(keys.coin_index_key("DOGE"), "DOGE-1JAN27-1-C")
    async with exporter_url() as url:
        result = await scrape(url)
    m = result.metrics
    assert m.label_values("bybit_errors_total", "type") == set(errors.ERROR_TYPES)
    assert m.value("bybit_errors_total", replica=R, type=errors.OTHER) == 0  # ignored, not summed into other
    for name in ("bybit_ws_messages_total", "bybit_data_staleness_seconds", "bybit_options_tracked",
                 "bybit_data_last_update_timestamp_seconds"):
        assert m.label_values(name, "coin") == set(COINS), name
    assert "bybit_evil" not in m.names()
    assert "DOGE" not in result.text


async def test_a_configured_coin_without_data_is_infinitely_stale_and_has_no_timestamp(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    now = time.time()
    layout.healthy(now=now, coins=("BTC", "ETH"))
    layout.coin_stats("ETH", last_update=0.0)  # the ingest's "never" for a coin
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert math.isinf(m.value("bybit_data_staleness_seconds", coin="ETH"))
    assert math.isinf(m.value("bybit_data_staleness_seconds", coin="SOL"))  # no stats hash at all
    assert m.value("bybit_data_staleness_seconds", coin="BTC") < 60
    assert m.label_values("bybit_data_last_update_timestamp_seconds", "coin") == {"BTC"}
    assert m.value("bybit_options_tracked", coin="SOL") == 0


async def test_without_stats_the_ingest_counters_are_absent_rather_than_zero(
    redis_server: RedisServer, exporter_url: ExporterStarter,
) -> None:
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert m.value("bybit_redis_up") == 1
    assert m.value("bybit_ingest_replicas_up") == 0  # no replica listed: nobody writes
    absent = ("bybit_ingest_up", "bybit_ingest_heartbeat_age_seconds", "bybit_ws_reconnects_total",
              "bybit_errors_total", "bybit_redis_writes_total",
              "bybit_ws_connected", "bybit_ingest_resident_memory_bytes", "bybit_message_lag_seconds_count")
    for name in absent:
        assert name not in m.names(), name


async def test_fields_that_are_not_finite_numbers_are_left_out_and_counted(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    layout.client.hset(keys.replica_stats_key(R), mapping={keys.F_WS_CONNECTED: "two", keys.F_PENDING: "nan",
                                                   keys.F_RECONNECTS: "inf"})
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert m.get("bybit_ws_connected", replica=R) is None
    assert m.get("bybit_ingest_pending_symbols", replica=R) is None
    assert m.value("bybit_ws_reconnects_total", replica=R) == 0
    assert m.value("bybit_exporter_errors_total", type="bad_value") == 3
    assert m.value("bybit_ws_connections_desired", replica=R) == 1


async def test_a_key_of_the_wrong_type_is_counted_and_the_rest_still_exported(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    layout.client.delete(keys.replica_lag_key(R))
    layout.client.set(keys.replica_lag_key(R), "not a hash")
    async with exporter_url() as url:
        m = (await scrape(url)).metrics
    assert m.value("bybit_redis_up") == 1
    assert m.value("bybit_exporter_errors_total", type="redis_response") == 1
    assert "bybit_message_lag_seconds_count" not in m.names()
    assert m.value("bybit_ingest_up", replica=R) == 1


@pytest.mark.parametrize("state", ["healthy", "empty redis", "redis down"])
async def test_the_exposition_passes_promtool_check_metrics(
    state: str, layout: Layout, redis_server: RedisServer,
    exporter_url: ExporterStarter,
) -> None:
    if state == "healthy":
        layout.healthy(now=time.time(), coins=COINS)
    async with exporter_url() as url:
        if state == "redis down":
            redis_server.kill()
        result = await scrape(url)
    assert result.status == 200
    done = await asyncio.to_thread(
        subprocess.run, [binary_or_skip("promtool"), "check", "metrics"], input=result.text,
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout  # no lint remarks either
    assert done.stderr.strip() == "", done.stderr


async def test_openmetrics_is_served_when_the_scraper_asks_for_it(
    layout: Layout, exporter_url: ExporterStarter,
) -> None:
    layout.healthy(now=time.time(), coins=COINS)
    async with exporter_url() as url, aiohttp.ClientSession() as session, session.get(
            url + "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}) as resp:
        body = await resp.text()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    assert 'bybit_ws_reconnects_total{replica="main"} 0.0' in body


MEMORY_CASES: Mapping[str, tuple[str | None, str, float | None, int]] = {
    # case: (CONFIG SET maxmemory, REDIS_CAPACITY_BYTES, expected max (None: host memory), configured)
    "maxmemory set": ("300mb", "0", 300 * 2**20, 1),
    "maxmemory set wins over the knob": ("300mb", "1000000", 300 * 2**20, 1),
    "no maxmemory, capacity knob": (None, "1000000", 1_000_000, 0),
    "no maxmemory, no knob: host memory": (None, "0", None, 0),
}


@pytest.mark.parametrize("case", list(MEMORY_CASES))
async def test_redis_memory_capacity_falls_back_from_maxmemory_to_the_knob_to_host_memory(
    case: str, redis_server: RedisServer, exporter_url: ExporterStarter,
) -> None:
    maxmemory, knob, expected, configured = MEMORY_CASES[case]
    client = redis_server.client()
    client.config_set("maxmemory", maxmemory or "0")
    async with exporter_url(REDIS_CAPACITY_BYTES=knob) as url:
        m = (await scrape(url)).metrics
    if expected is None:
        expected = float(client.info("memory")["total_system_memory"])
    assert m.value("bybit_redis_memory_max_bytes") == expected
    assert m.value("bybit_redis_maxmemory_configured") == configured


def command_calls(client: object) -> dict[str, int]:
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@pytest.mark.parametrize("options", [10, 2000])
async def test_a_scrape_costs_the_same_few_commands_whatever_the_number_of_options(
    options: int, layout: Layout, exporter_url: ExporterStarter,
) -> None:
    now = time.time()
    layout.healthy(now=now, coins=COINS)
    layout.options(make_symbols("BTC", options, seed=9), now=now)
    async with exporter_url() as url:
        await scrape(url)  # connects (HELLO/CLIENT SETINFO...) once
        before = command_calls(layout.client)
        await scrape(url)
        after = command_calls(layout.client)
    spent = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    # The replica list, per coin (HGETALL stats:coin + SCARD), INFO memory, DBSIZE; then per replica
    # 3 hashes (heartbeat, stats, lag); never a key walk. (One more INFO is ours: the "before" one.)
    assert spent == {"zrevrangebyscore": 1, "hgetall": 3 + len(COINS), "scard": len(COINS), "dbsize": 1,
                     "info": 2}
    assert not {"keys", "scan", "smembers", "sscan"} & set(after)


async def test_healthz_answers_without_redis(
    redis_server: RedisServer, exporter_url: ExporterStarter,
) -> None:
    redis_server.kill()
    async with exporter_url() as url, aiohttp.ClientSession() as session, \
            session.get(url + "/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json()) == {"status": "ok"}
