"""Every Redis read of the API, each bounded by the API's Redis timeout.

- :meth:`Store.coin_hashes`: ``SMEMBERS`` of the coin's index, then one pipelined
  ``HGETALL`` per member — two round trips, whatever the number of options. Only keys
  built by :mod:`common.keys` from configured coins and validated symbols are read.
- :meth:`Store.freshness`: the newest ``last_update`` of the ingest (global and per coin),
  one round trip, for ``/readyz``.

Connection-level failures and timeouts raise :class:`RedisUnavailable`; the cache then
serves a stale answer or the route answers 503.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import keys
from common.redisconn import SentinelTarget, connection_pool
from common.symbols import parse_symbol

#: Connections the API may hold; concurrent fetches of different coins and /readyz share them.
MAX_CONNECTIONS: Final = 8

TIMEOUT: Final = "redis_timeout"
CONNECTION: Final = "redis_connection"


class RedisUnavailable(Exception):
    """Redis could not be read in time; ``kind`` is :data:`TIMEOUT` or :data:`CONNECTION`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def make_redis(url: str, *, timeout: float, sentinel: SentinelTarget | None = None) -> Redis:
    """A client without hidden retries; a burst of reads queues for a connection within its timeout."""
    pool = connection_pool(
        url, sentinel, blocking=True, max_connections=MAX_CONNECTIONS, timeout=None, decode_responses=True,
        socket_connect_timeout=timeout, socket_timeout=None, retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return Redis(connection_pool=pool)


class Store:
    """The API's reads of the ingest's layout."""

    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self.redis = redis
        self.timeout = timeout

    async def coin_hashes(self, coin: str) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
        """((symbol, hash) for each indexed symbol of ``coin``, members refused or malformed).

        ``coin`` must be a configured coin. An index member that is not a well-formed
        symbol of the coin is not read (it would make a key out of unvalidated data); a
        hash Redis refuses to return (wrong type) is reported with them.
        """
        try:
            async with asyncio.timeout(self.timeout):
                members = await self.redis.smembers(keys.coin_index_key(coin))
                symbols: list[str] = []
                bad: list[str] = []
                for member in map(str, members):
                    parsed = parse_symbol(member)
                    (symbols if parsed is not None and parsed.base == coin else bad).append(member)
                if not symbols:
                    return [], bad
                pipe = self.redis.pipeline(transaction=False)
                for symbol in symbols:
                    pipe.hgetall(keys.option_key(symbol))
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except TimeoutError as exc:
            raise RedisUnavailable(TIMEOUT, f"{coin}: no answer within {self.timeout:g} s") from exc
        except RedisTimeoutError as exc:
            raise RedisUnavailable(TIMEOUT, f"{coin}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(CONNECTION, f"{coin}: {exc!r}") from exc
        out: list[tuple[str, dict[str, str]]] = []
        for symbol, reply in zip(symbols, replies, strict=True):
            if isinstance(reply, ResponseError):
                bad.append(symbol)
            elif isinstance(reply, RedisError):
                raise RedisUnavailable(CONNECTION, f"{coin}: {reply!r}")
            else:
                out.append((symbol, reply))
        return out, bad

    async def freshness(self, coins: Sequence[str]) -> float | None:
        """Epoch seconds of the ingest's newest write (global or any coin), ``None`` if never."""
        try:
            async with asyncio.timeout(self.timeout):
                pipe = self.redis.pipeline(transaction=False)
                pipe.hget(keys.STATS_GLOBAL, keys.F_LAST_UPDATE)
                for coin in coins:
                    pipe.hget(keys.coin_stats_key(coin), keys.F_COIN_LAST_UPDATE)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except TimeoutError as exc:
            raise RedisUnavailable(TIMEOUT, f"no answer within {self.timeout:g} s") from exc
        except RedisTimeoutError as exc:
            raise RedisUnavailable(TIMEOUT, str(exc)) from exc
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(CONNECTION, repr(exc)) from exc
        newest: float | None = None
        for reply in replies:
            if isinstance(reply, RedisError):
                if not isinstance(reply, ResponseError):
                    raise RedisUnavailable(CONNECTION, repr(reply))
                continue
            try:
                value = float(reply) if reply is not None else 0.0
            except ValueError:
                continue
            if math.isfinite(value) and value > 0 and (newest is None or value > newest):
                newest = value
        return newest
