"""Health read from Redis: the ingest's heartbeat and counters, each coin's freshness, Redis memory.

One pipelined round trip reads everything (:func:`read_snapshot`); the checks are pure
functions of that snapshot and the current time, so each tier boundary is easy to reason about.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from common import keys
from tracker_tools.healthcheck import tiers
from tracker_tools.healthcheck.findings import Finding

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the checks need, read from Redis at one moment."""

    stats: Mapping[str, str]
    heartbeat: Mapping[str, str]
    coins: Mapping[str, Mapping[str, str]]
    memory: Mapping[str, Any]


def read_snapshot(client: redis.Redis, coins: Sequence[str]) -> Snapshot:
    """Read stats, heartbeat, per-coin stats and INFO memory in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.STATS_GLOBAL)
    pipe.hgetall(keys.INGEST_HEARTBEAT)
    for coin in coins:
        pipe.hgetall(keys.coin_stats_key(coin))
    pipe.info("memory")
    results = pipe.execute()
    return Snapshot(stats=results[0], heartbeat=results[1],
                    coins=dict(zip(coins, results[2:-1], strict=True)), memory=results[-1])


def _float(mapping: Mapping[str, str], field: str) -> float | None:
    try:
        return float(mapping[field])
    except (KeyError, ValueError):
        return None


def check_heartbeat(snap: Snapshot, now: float) -> Finding:
    beat = _float(snap.heartbeat, keys.F_HB_TS)
    if beat is None:
        return Finding("ingest_heartbeat", "critical", None, "s",
                       f"no heartbeat in Redis ({keys.INGEST_HEARTBEAT} expired): the ingest is not running")
    # The key expires INGEST_HEARTBEAT_TTL after the ingest's last write: present means alive.
    age = max(0.0, now - beat)
    return Finding("ingest_heartbeat", "ok", age, "s", f"last heartbeat {age:.1f} s ago")


def check_staleness(snap: Snapshot, now: float) -> list[Finding]:
    out = []
    for coin, stats in snap.coins.items():
        last = _float(stats, keys.F_COIN_LAST_UPDATE)
        name = f"staleness_{coin}"
        if last is None or last <= 0:  # the ingest writes 0 for a coin with no ticker yet
            out.append(Finding(name, "critical", None, "s", f"no {coin} ticker has ever been written"))
            continue
        age = max(0.0, now - last)
        severity = tiers.STALENESS_SECONDS.classify(age)
        if severity == "ok" and age > tiers.FRESHNESS_TARGET_SECONDS:
            target = tiers.FRESHNESS_TARGET_SECONDS
            detail = f"newest {coin} ticker {age:.0f} s old (freshness target {target:g} s)"
        else:
            detail = f"newest {coin} ticker {age:.1f} s old"
        out.append(Finding(name, severity, age, "s", detail))
    return out


def reconnects_per_hour(stats: Mapping[str, str], now: float) -> float | None:
    """Re-connections in the last hour, from the counters alone.

    While the ingest has run for less than an hour every re-connection it counted happened
    within the last hour, so the count itself is exact; after that, the average hourly rate
    since it started (use ``--sample`` for the current rate).
    """
    count = _float(stats, keys.F_RECONNECTS)
    started = _float(stats, keys.F_STARTED_AT)
    if count is None:
        return None
    if started is None or now - started <= HOUR:
        return count
    return count / ((now - started) / HOUR)


def check_reconnects(rate: float | None, *, sampled_over: float | None = None) -> Finding:
    if rate is None:
        return Finding("ws_reconnects", "critical", None, "per_hour",
                       f"{keys.STATS_GLOBAL} has no {keys.F_RECONNECTS} counter: "
                       "the ingest never wrote stats")
    how = f"measured over {sampled_over:g} s" if sampled_over else "from the counters since start"
    return Finding("ws_reconnects", tiers.RECONNECTS_PER_HOUR.classify(rate), rate, "per_hour",
                   f"{rate:.1f} reconnects/h ({how}); info > {tiers.RECONNECTS_PER_HOUR.info:g}, "
                   f"warning > {tiers.RECONNECTS_PER_HOUR.warning:g}")


def check_connections(snap: Snapshot) -> list[Finding]:
    failures = _float(snap.stats, keys.F_CONSECUTIVE_FAILURES) or 0.0
    connected = _float(snap.stats, keys.F_WS_CONNECTED) or 0.0
    desired = _float(snap.stats, keys.F_WS_CONNECTIONS) or 0.0
    severity = tiers.CONSECUTIVE_FAILURES.classify(failures)
    limit = tiers.CONSECUTIVE_FAILURES.critical
    out = [Finding("ws_consecutive_failures", severity, failures, "count",
                   f"{failures:g} failed attempts in a row (critical > {limit:g})")]
    up = "ok" if connected >= desired else "info"
    out.append(Finding("ws_connections", up, connected, "count",
                       f"{connected:g} of {desired:g} WebSocket connections open and subscribed"))
    return out


def memory_capacity(memory: Mapping[str, Any], configured: int) -> float:
    """Redis maxmemory, else the configured capacity, else the host's memory (as the exporter does)."""
    for candidate in (memory.get("maxmemory"), configured, memory.get("total_system_memory")):
        if candidate:
            return float(candidate)
    return 0.0


def check_memory(snap: Snapshot, capacity_bytes: int) -> Finding:
    used = float(snap.memory.get("used_memory", 0))
    capacity = memory_capacity(snap.memory, capacity_bytes)
    if capacity <= 0:
        return Finding("redis_memory", "info", None, "ratio",
                       f"used {used / 2**20:.0f} MiB, capacity unknown")
    ratio = used / capacity
    source = "maxmemory" if snap.memory.get("maxmemory") else "capacity (maxmemory not set)"
    return Finding("redis_memory", tiers.REDIS_MEMORY_RATIO.classify(ratio), ratio, "ratio",
                   f"used {used / 2**20:.0f} MiB of {capacity / 2**20:.0f} MiB {source}")


def evaluate(snap: Snapshot, *, now: float, capacity_bytes: int,
             sampled_rate: float | None = None, sampled_over: float | None = None) -> list[Finding]:
    rate = sampled_rate if sampled_rate is not None else reconnects_per_hour(snap.stats, now)
    return [
        check_heartbeat(snap, now),
        *check_staleness(snap, now),
        check_reconnects(rate, sampled_over=sampled_over if sampled_rate is not None else None),
        *check_connections(snap),
        check_memory(snap, capacity_bytes),
    ]


def sample_reconnects(client: redis.Redis, seconds: float) -> float | None:
    """Current re-connection rate per hour: the counter's increase over ``seconds``, extrapolated."""
    first = client.hget(keys.STATS_GLOBAL, keys.F_RECONNECTS)
    start = time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    second = client.hget(keys.STATS_GLOBAL, keys.F_RECONNECTS)
    if first is None or second is None:
        return None
    elapsed = time.monotonic() - start
    return max(0.0, float(second) - float(first)) / elapsed * HOUR
