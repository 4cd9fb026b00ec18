"""Two reads of Redis per scrape: everything the metrics need, in two pipelined round trips.

The cost of a scrape must not grow with the number of options, so nothing here touches
an option hash or walks a keyspace (no ``KEYS``, no ``SCAN``). The first round trip reads
the replicas listed in ``ingest:replicas`` (at most :data:`~common.keys.MAX_REPLICAS`, the
newest heartbeats, seen within the retention), per configured coin its stats hash and the
``SCARD`` of its index, ``INFO memory`` and ``DBSIZE`` (``3 + 2 * coins`` commands); the
second, per listed replica, its heartbeat, stats and lag hashes (``3 * replicas``; skipped
when none is listed). A member whose name is not a valid replica name is not read (it
could be anything a Redis user wrote) and is reported in ``bad_replicas``.

The whole read runs under ``asyncio.timeout``: a slow or absent Redis raises
:class:`RedisUnavailable` in bounded time, and the caller answers ``bybit_redis_up 0``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import keys
from common.redisconn import SentinelTarget, connection_pool

#: Connections one exporter may hold: concurrent scrapes (Prometheus HA pairs, a person
#: with curl) share them; a scrape that cannot get one waits inside its own timeout.
MAX_CONNECTIONS: Final = 4

#: Kinds of failure a read can end with (the ``type`` label of the exporter's own
#: error counter): a fixed set, whatever the exception says.
TIMEOUT: Final = "redis_timeout"
CONNECTION: Final = "redis_connection"
RESPONSE: Final = "redis_response"
BAD_VALUE: Final = "bad_value"
MALFORMED_REQUEST: Final = "malformed_request"  # refused by aiohttp's HTTP parser (common.http_log)
FAILURE_TYPES: Final[tuple[str, ...]] = (TIMEOUT, CONNECTION, RESPONSE, BAD_VALUE, MALFORMED_REQUEST)


class RedisUnavailable(Exception):
    """The snapshot could not be read in time; ``kind`` is one of :data:`FAILURE_TYPES`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CoinSnapshot:
    """One configured coin: its stats hash (may be empty) and the size of its index."""

    stats: Mapping[str, str]
    tracked: int


@dataclass(frozen=True, slots=True)
class ReplicaSnapshot:
    """One ingest replica listed in ``ingest:replicas``: its hashes (empty when absent).

    ``seen_at`` is its score there: when it last heartbeated (epoch s), which outlives the
    heartbeat key itself so that a dead replica can still be shown as down.
    """

    name: str
    seen_at: float
    heartbeat: Mapping[str, str]
    stats: Mapping[str, str]
    lag: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Redis as one scrape saw it. An absent hash is an empty mapping.

    ``refused`` names the parts whose command Redis answered with an error (say, a key
    of the wrong type); they are empty here and counted by the caller. ``bad_replicas``
    holds members of ``ingest:replicas`` that are not valid replica names (not read).
    """

    taken_at: float  # wall clock (epoch s) when the answer arrived
    replicas: tuple[ReplicaSnapshot, ...]
    coins: Mapping[str, CoinSnapshot]
    memory: Mapping[str, Any]
    db_keys: int | None
    refused: tuple[str, ...] = ()
    bad_replicas: tuple[str, ...] = ()


def make_redis(url: str, *, timeout: float, sentinel: SentinelTarget | None = None) -> Redis:
    """A client that fails fast and never retries behind the caller's back.

    The blocking pool makes a burst of scrapes queue for a connection instead of failing
    with "too many connections"; the caller's ``asyncio.timeout`` bounds that wait.
    """
    pool = connection_pool(
        url, sentinel, blocking=True, max_connections=MAX_CONNECTIONS, timeout=None, decode_responses=True,
        socket_connect_timeout=timeout, socket_timeout=None, retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return Redis(connection_pool=pool)


class SnapshotReader:
    """Reads a :class:`Snapshot` of ``coins`` from ``redis`` within ``timeout`` seconds."""

    def __init__(self, redis: Redis, *, coins: Sequence[str], timeout: float) -> None:
        self.redis = redis
        self.coins = tuple(coins)
        self.timeout = timeout

    async def read(self) -> Snapshot:
        """Two pipelined round trips; :class:`RedisUnavailable` when Redis fails or is slow."""
        try:
            async with asyncio.timeout(self.timeout):
                pipe = self.redis.pipeline(transaction=False)
                oldest = time.time() - keys.REPLICA_RETENTION_SECONDS
                pipe.zrevrangebyscore(keys.INGEST_REPLICAS, "+inf", oldest, start=0, num=keys.MAX_REPLICAS,
                                      withscores=True)
                for coin in self.coins:
                    pipe.hgetall(keys.coin_stats_key(coin))
                    pipe.scard(keys.coin_index_key(coin))
                pipe.info("memory")
                pipe.dbsize()
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                listed, bad = self._listed(replies[0])
                per_replica: list[Any] = []
                if listed:
                    pipe = self.redis.pipeline(transaction=False)
                    for name, _seen in listed:
                        pipe.hgetall(keys.replica_heartbeat_key(name))
                        pipe.hgetall(keys.replica_stats_key(name))
                        pipe.hgetall(keys.replica_lag_key(name))
                    per_replica = await pipe.execute(raise_on_error=False)
        except TimeoutError as exc:
            raise RedisUnavailable(TIMEOUT, f"no answer within {self.timeout:g} s") from exc
        except RedisTimeoutError as exc:
            raise RedisUnavailable(TIMEOUT, str(exc)) from exc
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(CONNECTION, repr(exc)) from exc
        return self._assemble(replies, listed, bad, per_replica)

    @staticmethod
    def _listed(reply: Any) -> tuple[list[tuple[str, float]], list[str]]:
        """(valid replica names with their last-seen score, newest first; invalid members)."""
        if not isinstance(reply, list):
            return [], []  # an error reply: counted as refused by _assemble
        listed: list[tuple[str, float]] = []
        bad: list[str] = []
        for member, score in reply:
            name = str(member)
            if keys.is_valid_replica(name):
                listed.append((name, float(score)))
            else:
                bad.append(name[:64])
        return listed, bad

    def _assemble(self, replies: list[Any], listed: list[tuple[str, float]], bad: list[str],
                  per_replica: list[Any]) -> Snapshot:
        refused: list[str] = []
        names = [keys.INGEST_REPLICAS]
        for coin in self.coins:
            names += [keys.coin_stats_key(coin), keys.coin_index_key(coin)]
        names += ["INFO memory", "DBSIZE"]
        for name, _seen in listed:
            names += [keys.replica_heartbeat_key(name), keys.replica_stats_key(name),
                      keys.replica_lag_key(name)]
        for name, reply in zip(names, [*replies, *per_replica], strict=True):
            if isinstance(reply, ResponseError):
                refused.append(name)
            elif isinstance(reply, RedisError):
                # A connection-level failure surfaced per command: the whole read failed.
                raise RedisUnavailable(CONNECTION, f"{name}: {reply!r}")

        def mapping(reply: Any) -> Mapping[str, str]:
            return reply if isinstance(reply, dict) else {}

        def integer(reply: Any) -> int:
            return reply if isinstance(reply, int) else 0

        coins: dict[str, CoinSnapshot] = {}
        for i, coin in enumerate(self.coins):
            base = 1 + 2 * i
            coins[coin] = CoinSnapshot(stats=mapping(replies[base]), tracked=integer(replies[base + 1]))
        replicas = tuple(
            ReplicaSnapshot(name=name, seen_at=seen, heartbeat=mapping(per_replica[3 * i]),
                            stats=mapping(per_replica[3 * i + 1]), lag=mapping(per_replica[3 * i + 2]))
            for i, (name, seen) in enumerate(listed))
        memory, db_keys = replies[-2], replies[-1]
        return Snapshot(
            taken_at=time.time(),
            replicas=replicas,
            coins=coins,
            memory=memory if isinstance(memory, dict) else {},
            db_keys=db_keys if isinstance(db_keys, int) else None,
            refused=tuple(refused),
            bad_replicas=tuple(bad),
        )
