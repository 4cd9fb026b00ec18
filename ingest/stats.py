"""The ingest's counters and connection state, rendered as the Redis stats hashes (pure).

Counters live in memory and are written as absolute values (``HSET`` of the totals,
never ``HINCRBY``): a Redis restart neither resets them nor makes a retried write count
twice, and the exporter turns them into Prometheus counters, whose resets Prometheus
already understands (an ingest restart).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from common import errors, keys


@dataclass
class ConnectionState:
    """What the connection pool reports for ``stats:global``."""

    desired: int = 0  # connections the shard plan needs
    connected: int = 0  # open and subscribed
    consecutive_failures: int = 0  # max over connections
    circuit_open: int = 0
    subscriptions: int = 0  # topics confirmed


@dataclass
class Counters:
    """Every total the ingest reports. Mutated in place by the components that count."""

    coins: tuple[str, ...]
    started_at: float = field(default_factory=time.time)
    messages: int = 0
    exact_tickers: int = 0  # of ``messages``, those not in Bybit's own shape (ingest.canonical): decoded
    messages_by_coin: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    connect_failures: int = 0
    rest_requests: int = 0
    rest_rate_limited: int = 0
    redis_writes: int = 0
    redis_flushes: int = 0
    last_update_by_coin: dict[str, float] = field(default_factory=dict)  # epoch s of newest write

    def error(self, error_type: str, n: int = 1) -> None:
        """Count errors of one type (anything outside the fixed set becomes ``other``)."""
        self.errors[errors.normalise(error_type)] += n

    def written(self, coin: str, recv_s: float) -> None:
        """A ticker of ``coin`` received at ``recv_s`` reached Redis."""
        if recv_s > self.last_update_by_coin.get(coin, 0.0):
            self.last_update_by_coin[coin] = recv_s

    @property
    def last_update(self) -> float:
        return max(self.last_update_by_coin.values(), default=0.0)


def global_fields(c: Counters, conn: ConnectionState, *, ttl: int, pressure: bool,
                  pending: int) -> dict[str, str]:
    """The ``stats:global`` hash (every field, zeros included, so readers never guess).

    Except ``last_update`` before this process has written a ticker: a restarted ingest must
    not overwrite its predecessor's time with 0, which readers take for "never" (the soak
    drill saw every coin's staleness jump to +Inf for a few seconds after each restart, and
    the no-data alerts go pending). The data in Redis is as old as the last write, whoever
    made it.
    """
    doc = {
        keys.F_MESSAGES: str(c.messages),
        keys.F_RECONNECTS: str(c.reconnects),
        keys.F_CONNECT_FAILURES: str(c.connect_failures),
        keys.F_WS_CONNECTIONS: str(conn.desired),
        keys.F_WS_CONNECTED: str(conn.connected),
        keys.F_CONSECUTIVE_FAILURES: str(conn.consecutive_failures),
        keys.F_CIRCUIT_OPEN: str(conn.circuit_open),
        keys.F_SUBSCRIPTIONS: str(conn.subscriptions),
        keys.F_REST_REQUESTS: str(c.rest_requests),
        keys.F_REST_RATE_LIMITED: str(c.rest_rate_limited),
        keys.F_TTL_SECONDS: str(ttl),
        keys.F_MEMORY_PRESSURE: "1" if pressure else "0",
        keys.F_REDIS_WRITES: str(c.redis_writes),
        keys.F_REDIS_FLUSHES: str(c.redis_flushes),
        keys.F_PENDING: str(pending),
        keys.F_STARTED_AT: repr(c.started_at),
    }
    if c.last_update > 0:
        doc[keys.F_LAST_UPDATE] = str(int(c.last_update))
    for coin in c.coins:
        doc[keys.messages_field(coin)] = str(c.messages_by_coin[coin])
    for error_type in errors.ERROR_TYPES:
        doc[keys.error_field(error_type)] = str(c.errors[error_type])
    return doc


def coin_fields(c: Counters, coin: str, tracked: int) -> dict[str, str]:
    """One coin's ``stats:coin:<COIN>`` hash (``last_update`` only once this process wrote the coin)."""
    doc = {
        keys.F_COIN_MESSAGES: str(c.messages_by_coin[coin]),
        keys.F_COIN_TRACKED: str(tracked),
    }
    if (updated := c.last_update_by_coin.get(coin, 0.0)) > 0:
        doc[keys.F_COIN_LAST_UPDATE] = repr(updated)
    return doc


def heartbeat_fields(*, now: float, pid: int, rss_bytes: int, cpu_seconds: float,
                     started_at: float) -> dict[str, str]:
    """The ``ingest:heartbeat`` hash: every field of :data:`common.keys.HEARTBEAT_FIELDS`."""
    return {keys.F_HB_TS: repr(now), keys.F_HB_PID: str(pid), keys.F_HB_RSS_BYTES: str(rss_bytes),
            keys.F_HB_CPU_SECONDS: repr(cpu_seconds), keys.F_HB_STARTED_AT: repr(started_at)}


def coins_of(symbols_by_coin: dict[str, set[str]], coins: Iterable[str]) -> dict[str, int]:
    """Tracked count per configured coin (0 for a coin with nothing indexed)."""
    return {coin: len(symbols_by_coin.get(coin, ())) for coin in coins}
