"""``/healthz`` (alive) and ``/readyz`` (Redis reachable and data fresh), and the API's ``/metrics``."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from common import keys
from tests.fixtures_readers import Layout, layout, parse_exposition, serve_api
from tests.servers import RedisServer, binary_or_skip

__all__ = ["layout"]


async def get(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def ready(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as resp:
        return resp.status, await resp.json()


async def test_ready_when_the_ingest_wrote_recently(layout: Layout, redis_server: RedisServer) -> None:
    now = time.time()
    layout.stats(**{keys.F_LAST_UPDATE: int(now) - 5})
    async with serve_api(redis_server.url, API_READY_MAX_STALENESS="60") as url:
        status, body = await ready(url)
    assert status == 200
    assert body["ready"] is True
    assert 4 <= body["staleness_seconds"] < 30


async def test_a_fresh_coin_is_enough_even_when_the_global_stamp_is_old(
    layout: Layout, redis_server: RedisServer,
) -> None:
    now = time.time()
    layout.stats(**{keys.F_LAST_UPDATE: int(now) - 500})
    layout.coin_stats("ETH", last_update=now - 2)
    async with serve_api(redis_server.url) as url:
        status, _ = await ready(url)
    assert status == 200


@pytest.mark.parametrize(("case", "reason"), [
    ("stale data", "old (limit 60 s)"),
    ("no data yet", "no ticker has been written yet"),
    ("redis down", "redis unavailable"),
])
async def test_not_ready_answers_503_with_the_reason(
    case: str, reason: str, layout: Layout, redis_server: RedisServer,
) -> None:
    now = time.time()
    if case == "stale data":
        layout.stats(**{keys.F_LAST_UPDATE: int(now) - 100})
        for coin in ("BTC", "ETH", "SOL"):
            layout.coin_stats(coin, last_update=now - 100)
    elif case == "no data yet":
        layout.stats()  # last_update 0: the ingest runs but has written nothing
    async with serve_api(redis_server.url, API_READY_MAX_STALENESS="60") as url:
        if case == "redis down":
            redis_server.kill()
        status, body = await ready(url)
        health, _, _ = await get(url + "/healthz")
    assert status == 503
    assert body["ready"] is False
    assert reason in body["reason"]
    assert health == 200  # alive all the same: restarting the API would not help


async def test_request_metrics_use_route_templates_status_classes_and_bounded_methods(
    layout: Layout, redis_server: RedisServer,
) -> None:
    layout.option("BTC-27DEC26-100000-C", ts_ms=int(time.time() * 1000))
    async with serve_api(redis_server.url) as url, aiohttp.ClientSession() as session:
        for path in ("/api/options/BTC", "/api/options/BTC", "/api/options/DOGE",
                     "/api/options/BTC/BTC-27DEC26-100000-C", "/no/such/path", "/healthz"):
            async with session.get(url + path) as resp:
                await resp.read()
        async with session.post(url + "/api/options/BTC") as resp:
            assert resp.status == 405
        async with session.request("PROPFIND", url + "/api/coins") as resp:
            assert resp.status == 405
        _, _, text = await get(url + "/metrics")
    m = parse_exposition(text)
    assert m.value("bybit_api_requests_total", route="/api/options/{coin}", status="2xx") == 2
    assert m.value("bybit_api_requests_total", route="/api/options/{coin}", status="4xx") == 1  # DOGE
    assert m.value("bybit_api_requests_total", route="/api/options/{coin}/{symbol}", status="2xx") == 1
    # No route matched the path (404) or the method (405): one bounded label value.
    assert m.value("bybit_api_requests_total", route="unmatched", status="4xx") == 3
    assert m.value("bybit_api_request_duration_seconds_count", route="/api/options/{coin}", method="GET") == 3
    assert m.value("bybit_api_request_duration_seconds_count", route="unmatched", method="other") == 2
    assert m.label_values("bybit_api_request_duration_seconds_count", "method") <= {"GET", "HEAD", "other"}
    assert not any("/no/such/path" in dict(labels).get("route", "") for _, labels in m.samples)
    bounds = m.label_values("bybit_api_request_duration_seconds_bucket", "le")
    assert {"0.025", "0.5", "2.0", "+Inf"} <= bounds
    assert m.label_values("bybit_api_cache_requests_total", "result") == {"hit", "miss", "stale"}
    assert not any(name.endswith("_created") for name in m.names())


async def test_the_api_metrics_pass_promtool_check_metrics(layout: Layout, redis_server: RedisServer) -> None:
    layout.option("BTC-27DEC26-100000-C", ts_ms=int(time.time() * 1000))
    async with serve_api(redis_server.url) as url:
        await get(url + "/api/options/BTC")
        await get(url + "/nope")
        _, headers, text = await get(url + "/metrics")
    assert headers["Content-Type"].startswith("text/plain")
    done = await asyncio.to_thread(subprocess.run, [binary_or_skip("promtool"), "check", "metrics"],
                                   input=text, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout
    assert done.stderr.strip() == "", done.stderr
