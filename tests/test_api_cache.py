"""The response cache: one Redis read per coin per TTL however many clients, stale-on-error.

The first group drives :class:`api.cache.SingleFlightCache` directly with a plain async
loader and a hand-moved clock (the policy alone); the second proves the same against the
real API and a real Redis, counting Redis' own ``INFO commandstats``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from api.cache import HIT, MISS, STALE, SingleFlightCache
from api.refresher import Refresher
from api.store import CONNECTION, RedisUnavailable
from tests.fixtures_readers import Layout, layout, make_symbols, parse_exposition, serve_api
from tests.servers import RedisServer

__all__ = ["layout"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Counts loads; fails while ``failing``; can be held until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.finished = asyncio.Event()

    async def __call__(self, key: str) -> str:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.finished.set()
        if self.failing:
            raise RedisUnavailable(CONNECTION, "down")
        return f"{key}#{self.calls}"

    def reset_events(self) -> None:
        self.started.clear()
        self.finished.clear()


def make_cache(loader: Loader, clock: Clock) -> SingleFlightCache[str]:
    return SingleFlightCache(loader, ttl=1.0, stale_max=30.0, grace=0.5, clock=clock)


async def test_a_fresh_value_is_served_from_memory_and_an_expired_one_is_read_again() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    first = await cache.get("BTC")
    assert (first.value, first.result) == ("BTC#1", MISS)
    clock.now += 0.9
    second = await cache.get("BTC")
    assert (second.value, second.result) == ("BTC#1", HIT)
    assert second.age == pytest.approx(0.9)
    clock.now += 0.2
    assert (await cache.get("BTC")).result == MISS
    assert loader.calls == 2
    assert (await cache.get("ETH")).value == "ETH#3"  # keys are independent


async def test_concurrent_requests_without_a_value_share_one_read() -> None:
    loader, clock = Loader(), Clock()
    loader.gate = asyncio.Event()
    cache = make_cache(loader, clock)
    waiting = [asyncio.ensure_future(cache.get("BTC")) for _ in range(100)]
    await asyncio.sleep(0)
    loader.gate.set()
    results = await asyncio.gather(*waiting)
    assert loader.calls == 1
    assert {r.value for r in results} == {"BTC#1"}
    assert sorted(r.result for r in results) == [HIT] * 99 + [MISS]


async def test_during_a_refresh_other_requests_get_the_previous_value_at_once() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    await cache.get("BTC")
    clock.now += 1.2  # expired, within ttl + grace
    loader.gate = asyncio.Event()
    leader = asyncio.ensure_future(cache.get("BTC"))
    await asyncio.sleep(0)
    follower = await cache.get("BTC")  # does not wait for the gate
    assert (follower.value, follower.result) == ("BTC#1", HIT)
    loader.gate.set()
    assert (await leader).value == "BTC#2"


async def test_a_failed_read_serves_the_last_value_marked_stale_until_stale_max() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    await cache.get("BTC")
    loader.failing = True
    clock.now += 5
    stale = await cache.get("BTC")
    assert (stale.value, stale.result) == ("BTC#1", STALE)
    assert stale.age == pytest.approx(5)
    clock.now += 26  # 31 s after the last good read: past stale_max
    with pytest.raises(RedisUnavailable):
        await cache.get("BTC")


async def test_after_a_failure_redis_is_not_asked_again_before_one_ttl() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    loader.failing = True
    with pytest.raises(RedisUnavailable):
        await cache.get("BTC")
    for _ in range(50):
        with pytest.raises(RedisUnavailable):
            await cache.get("BTC")
    assert loader.calls == 1
    loader.failing = False
    clock.now += 1.0
    assert (await cache.get("BTC")).result == MISS
    assert loader.calls == 2


async def test_a_cancelled_leader_releases_its_followers() -> None:
    loader, clock = Loader(), Clock()
    loader.gate = asyncio.Event()
    cache = make_cache(loader, clock)
    leader = asyncio.ensure_future(cache.get("BTC"))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(cache.get("BTC"))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(RedisUnavailable):
        await follower
    loader.gate.set()
    assert (await cache.get("BTC")).result == MISS  # the next request reads again


async def test_in_steady_traffic_the_refresh_runs_in_the_background_and_nobody_waits() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    async with Refresher(on_bug=lambda: None) as refresher:
        cache.spawn = refresher.spawn
        await cache.get("BTC")
        clock.now += 1.1  # expired, previous read recent
        loader.gate = asyncio.Event()
        loader.reset_events()
        during = await cache.get("BTC")  # returns although the read is held
        assert (during.value, during.result) == ("BTC#1", HIT)
        await loader.started.wait()  # the read runs in the background
        assert (await cache.get("BTC")).value == "BTC#1"  # no second read while one runs
        loader.gate.set()
        await loader.finished.wait()
        assert (await cache.get("BTC")).value == "BTC#2"
    assert loader.calls == 2


async def test_an_idle_key_is_read_inline_rather_than_served_old() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    async with Refresher(on_bug=lambda: None) as refresher:
        cache.spawn = refresher.spawn
        await cache.get("BTC")
        clock.now += 10  # far beyond ttl + grace
        found = await cache.get("BTC")
    assert (found.value, found.result) == ("BTC#2", MISS)


async def test_stopping_the_refresher_waits_for_refreshes_in_flight() -> None:
    loader, clock = Loader(), Clock()
    cache = make_cache(loader, clock)
    refresher = Refresher(on_bug=lambda: None)
    async with refresher:
        cache.spawn = refresher.spawn
        await cache.get("BTC")
        clock.now += 1.1
        loader.gate = asyncio.Event()
        await cache.get("BTC")
        asyncio.get_running_loop().call_soon(loader.gate.set)
    assert cache.peek("BTC") == "BTC#2"  # the read finished before the exit returned
    assert not refresher.running
    assert refresher.spawn(asyncio.sleep(0)) is False


async def test_leaving_the_refresher_on_an_error_cancels_refreshes_in_flight() -> None:
    held = asyncio.Event()  # never set: a refresh that would block forever
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await held.wait()

    refresher = Refresher(on_bug=lambda: None)

    async def fail_while_a_refresh_is_stuck() -> None:
        async with refresher:
            refresher.spawn(stuck())
            await started.wait()
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_while_a_refresh_is_stuck()
    assert not refresher.running


async def test_a_refresh_that_fails_unexpectedly_is_counted_and_the_group_survives() -> None:
    bugs: list[int] = []
    counted = asyncio.Event()

    def on_bug() -> None:
        bugs.append(1)
        counted.set()

    async def broken() -> None:
        raise KeyError("a bug")

    async with Refresher(on_bug=on_bug) as refresher:
        assert refresher.spawn(broken())
        await counted.wait()
        assert refresher.running
        done = asyncio.Event()

        async def fine() -> None:
            done.set()

        assert refresher.spawn(fine())
        await done.wait()
    assert bugs == [1]


# --- against a real Redis ------------------------------------------------------------------


def calls(layout: Layout, command: str) -> int:
    stats: dict[str, Any] = layout.client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], Any]:
    async with session.get(url) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_a_hundred_concurrent_requests_cost_one_redis_read(
    layout: Layout, redis_server: RedisServer,
) -> None:
    symbols = make_symbols("BTC", 300, seed=3)
    layout.options(symbols, now=time.time())
    async with serve_api(redis_server.url, API_CACHE_TTL="30") as url, aiohttp.ClientSession() as session:
        before_smembers, before_hgetall = calls(layout, "smembers"), calls(layout, "hgetall")
        answers = await asyncio.gather(*(fetch(session, url + "/api/options/BTC") for _ in range(100)))
        after_smembers, after_hgetall = calls(layout, "smembers"), calls(layout, "hgetall")
        _, _, metrics_text = await fetch_text(session, url + "/metrics")
    assert all(status == 200 for status, _, _ in answers)
    assert {len(body["options"]) for _, _, body in answers} == {300}
    assert after_smembers - before_smembers == 1
    assert after_hgetall - before_hgetall == 300
    metrics = parse_exposition(metrics_text)
    assert metrics.value("bybit_api_cache_requests_total", result="miss") == 1
    assert metrics.value("bybit_api_cache_requests_total", result="hit") == 99


async def fetch_text(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], str]:
    async with session.get(url) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_a_change_in_redis_is_served_after_one_ttl_at_one_read_per_ttl(
    layout: Layout, redis_server: RedisServer,
) -> None:
    now_ms = int(time.time() * 1000)
    layout.option("BTC-27DEC26-100000-C", ts_ms=now_ms)
    async with serve_api(redis_server.url, API_CACHE_TTL="0.2") as url, aiohttp.ClientSession() as session:
        _, _, first = await fetch(session, url + "/api/options/BTC")
        layout.option("BTC-27DEC26-90000-C", ts_ms=now_ms)
        reads_before, started = calls(layout, "smembers"), time.monotonic()

        async def updated() -> Any:
            while True:
                _, _, body = await fetch(session, url + "/api/options/BTC")
                if body["count"] == 2:
                    return body
                await asyncio.sleep(0.05)

        second = await asyncio.wait_for(updated(), timeout=10)
        reads, elapsed = calls(layout, "smembers") - reads_before, time.monotonic() - started
    assert first["count"] == 1
    assert second["count"] == 2
    assert 1 <= reads <= elapsed / 0.2 + 2  # polled every 50 ms, read at most once per TTL


async def test_with_redis_killed_the_last_answer_is_served_marked_stale_then_503(
    layout: Layout, redis_server: RedisServer,
) -> None:
    layout.options(make_symbols("BTC", 20, seed=4), now=time.time())
    async with serve_api(redis_server.url, API_CACHE_TTL="0.1", API_STALE_MAX="1.5") as url, \
            aiohttp.ClientSession() as session:
        status, _, fresh = await fetch(session, url + "/api/options/BTC")
        assert status == 200
        redis_server.kill()

        async def answer_after_ttl() -> tuple[int, dict[str, str], Any]:
            while True:
                result = await fetch(session, url + "/api/options/BTC")
                if result[1].get("X-Cache") != "hit":
                    return result
                await asyncio.sleep(0.02)

        status, headers, stale = await asyncio.wait_for(answer_after_ttl(), timeout=10)
        assert status == 200
        assert headers["X-Cache"] == "stale"
        assert headers["Warning"] == '110 - "Response is Stale"'
        assert stale["stale"] is True
        assert stale["cache"] == "stale"
        assert stale["options"] == fresh["options"]

        async def unavailable() -> tuple[int, dict[str, str], Any]:
            while True:
                result = await fetch(session, url + "/api/options/BTC")
                if result[0] != 200:
                    return result
                assert result[1]["X-Cache"] == "stale"
                await asyncio.sleep(0.05)

        status, headers, body = await asyncio.wait_for(unavailable(), timeout=10)
        _, _, metrics_text = await fetch_text(session, url + "/metrics")
    assert status == 503
    assert body["error"]["code"] == "redis_unavailable"
    assert headers["Retry-After"] == "1"
    metrics = parse_exposition(metrics_text)
    assert metrics.value("bybit_api_cache_requests_total", result="stale") >= 1
    assert metrics.value("bybit_api_errors_total", type="redis_connection") >= 1


async def test_without_any_cached_answer_a_dead_redis_is_503_and_tried_once_per_ttl(
    redis_server: RedisServer,
) -> None:
    redis_server.kill()
    async with serve_api(redis_server.url, API_CACHE_TTL="60") as url, aiohttp.ClientSession() as session:
        results = [await fetch(session, url + "/api/options/ETH") for _ in range(20)]
        _, _, metrics_text = await fetch_text(session, url + "/metrics")
    assert {status for status, _, _ in results} == {503}
    assert {body["error"]["code"] for _, _, body in results} == {"redis_unavailable"}
    assert parse_exposition(metrics_text).value("bybit_api_errors_total", type="redis_connection") == 1


async def test_with_redis_paused_the_stale_answer_comes_within_the_redis_timeout(
    layout: Layout, redis_server: RedisServer,
) -> None:
    layout.options(make_symbols("SOL", 5, seed=5), now=time.time())
    async with serve_api(redis_server.url, API_CACHE_TTL="0.1", API_REDIS_TIMEOUT="0.3") as url, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=4)) as session:
        await fetch(session, url + "/api/options/SOL")
        layout.client.execute_command("CLIENT", "PAUSE", 8000, "ALL")
        paused_at = time.monotonic()

        async def stale() -> tuple[int, dict[str, str], Any]:
            while True:
                result = await fetch(session, url + "/api/options/SOL")
                if result[1]["X-Cache"] == "stale":
                    return result
                await asyncio.sleep(0.02)

        status, _, body = await asyncio.wait_for(stale(), timeout=4)
        assert time.monotonic() - paused_at < 8, "served while Redis was still paused"
    assert status == 200
    assert body["count"] == 5
