"""The exporter's HTTP side: ``/metrics`` (one Redis snapshot per scrape) and ``/healthz``.

A scrape reads Redis with redis.asyncio inside the handler, under the exporter's Redis
timeout, so the event loop never blocks and a slow or dead Redis costs a scrape at most
that timeout: the answer is then ``bybit_redis_up 0`` with status 200, never a 500 or a hang.
Each scrape renders a fresh :class:`~prometheus_client.CollectorRegistry` holding one
:class:`~exporter.collector.SnapshotCollector`; nothing is cached between scrapes, so no
old value can be served as fresh. The only state kept across scrapes is the exporter's own
error counts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from common.config import Settings
from common.logs import LogThrottle
from common.redisconn import sentinel_target
from exporter.collector import ScrapeContext, SnapshotCollector
from exporter.snapshot import BAD_VALUE, RESPONSE, RedisUnavailable, SnapshotReader, make_redis

log = logging.getLogger("exporter")

READER: Final = web.AppKey("reader", SnapshotReader)
SETTINGS: Final = web.AppKey("settings", Settings)
ERRORS: Final = web.AppKey("errors", Counter[str])
THROTTLE: Final = web.AppKey("throttle", LogThrottle)


async def metrics(request: web.Request) -> web.Response:
    """Read Redis once, build the families, render them in the format the scraper accepts."""
    app = request.app
    settings, errors, throttle = app[SETTINGS], app[ERRORS], app[THROTTLE]
    started = time.perf_counter()
    try:
        snapshot = await app[READER].read()
    except RedisUnavailable as exc:
        snapshot = None
        errors[exc.kind] += 1
        allowed, suppressed = throttle.allow(exc.kind)
        if allowed:
            log.warning("scrape without redis", extra={
                "error_type": exc.kind, "error": exc.detail[:300], "suppressed": suppressed,
                "redis_timeout": settings.exporter_redis_timeout})
    ctx = ScrapeContext(coins=settings.coins, now=time.time(), heartbeat_max_age=settings.heartbeat_ttl,
                        capacity_bytes=settings.redis_capacity_bytes)
    collector = SnapshotCollector(snapshot, ctx, exporter_errors=errors)
    if snapshot is not None and snapshot.refused:
        errors[RESPONSE] += len(snapshot.refused)
        if throttle.allow(RESPONSE)[0]:
            log.error("redis refused reads", extra={"error_type": RESPONSE, "keys": list(snapshot.refused)})
    if collector.bad_fields:
        errors[BAD_VALUE] += len(collector.bad_fields)
        if throttle.allow(BAD_VALUE)[0]:
            log.warning("non-numeric fields left out", extra={
                "error_type": BAD_VALUE, "fields": list(collector.bad_fields[:10])})
    # The duration covers the Redis read and the families; rendering them is a few hundred µs.
    collector.scrape_seconds = time.perf_counter() - started
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(registry), headers={"Content-Type": content_type})


async def healthz(_request: web.Request) -> web.Response:
    """The process answers HTTP (Redis' state is a metric, not a reason to restart us)."""
    return web.json_response({"status": "ok"})


def build_app(settings: Settings) -> web.Application:
    """The exporter application; its Redis client is closed on shutdown."""
    app = web.Application()
    app[SETTINGS] = settings
    app[ERRORS] = Counter()
    app[THROTTLE] = LogThrottle(period=60.0, burst=3)
    redis = make_redis(settings.redis_url, timeout=settings.exporter_redis_timeout,
                       sentinel=sentinel_target(settings))
    app[READER] = SnapshotReader(redis, coins=settings.coins, timeout=settings.exporter_redis_timeout)

    async def close_redis(_app: web.Application) -> None:
        await redis.aclose()

    app.on_cleanup.append(close_redis)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
