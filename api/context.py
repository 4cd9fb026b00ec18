"""What every handler shares: settings, the Redis store, the coin cache and the metrics.

:meth:`ApiContext.lookup` is the one way a handler gets a coin's options: through the
single-flight cache, counted by cache result, with a Redis failure turned into a 503
(``redis_unavailable``, ``Retry-After``) when no stale answer may be served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Final

from api import errors
from api.cache import Lookup, SingleFlightCache
from api.compression import MIN_SIZE, deflate_part
from api.errors import ApiError
from api.metrics import ApiMetrics
from api.records import CoinData, OptionRecord, assemble, build_records
from api.store import RedisUnavailable, Store
from common.config import Settings
from common.logs import LogThrottle

log = logging.getLogger("api")

#: Options turned into records between two yields to the event loop while a read is built.
BUILD_BATCH: Final = 100


@dataclass
class ApiContext:
    """One application's shared state (built by :func:`api.app.build_app`)."""

    settings: Settings
    store: Store
    metrics: ApiMetrics
    cache: SingleFlightCache[CoinData] = field(init=False)
    throttle: LogThrottle = field(default_factory=lambda: LogThrottle(period=60.0, burst=3))

    def __post_init__(self) -> None:
        self.cache = SingleFlightCache(self.load, ttl=self.settings.api_cache_ttl,
                                       stale_max=self.settings.api_stale_max,
                                       grace=self.settings.api_redis_timeout)

    async def load(self, coin: str) -> CoinData:
        """One read of ``coin`` from Redis (the cache calls this at most once per TTL)."""
        try:
            hashes, refused = await self.store.coin_hashes(coin)
        except RedisUnavailable as exc:
            self.metrics.errors.labels(exc.kind).inc()
            allowed, suppressed = self.throttle.allow(exc.kind)
            if allowed:
                log.warning("redis read failed", extra={
                    "coin": coin, "error_type": exc.kind, "error": exc.detail[:300],
                    "suppressed": suppressed})
            raise
        fetched_at = time.time()
        records: list[OptionRecord] = []
        malformed: list[str] = []
        for start in range(0, len(hashes), BUILD_BATCH):
            built, bad = build_records(coin, hashes[start:start + BUILD_BATCH])
            records += built
            malformed += bad
            await asyncio.sleep(0)  # let waiting requests through between batches (~1 ms each)
        data = assemble(coin, records, malformed, fetched_at=fetched_at)
        if len(data.all_json) >= MIN_SIZE:  # zlib releases the GIL: the loop keeps answering meanwhile
            deflated = await asyncio.to_thread(deflate_part, data.all_json)
            data = dataclasses.replace(data, all_deflated=deflated)
        skipped = len(refused) + len(data.skipped)
        if skipped:
            self.metrics.errors.labels("bad_data").inc(skipped)
            if self.throttle.allow("bad_data")[0]:
                log.warning("index members skipped", extra={
                    "coin": coin, "error_type": "bad_data", "count": skipped,
                    "examples": [s[:60] for s in (list(refused) + list(data.skipped))[:3]]})
        return data

    async def lookup(self, coin: str) -> Lookup[CoinData]:
        try:
            found = await self.cache.get(coin)
        except RedisUnavailable as exc:
            retry_after = str(max(1, math.ceil(self.settings.api_cache_ttl)))
            raise ApiError(503, errors.REDIS_UNAVAILABLE,
                           f"options of {coin} cannot be read from Redis now, and no recent answer is cached",
                           headers={"Retry-After": retry_after}) from exc
        self.metrics.cache.labels(found.result).inc()
        return found
