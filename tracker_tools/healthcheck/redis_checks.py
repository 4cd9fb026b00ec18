"""Health read from Redis: each ingest replica's heartbeat and counters, each coin's freshness, memory.

Two pipelined round trips read everything (:func:`read_snapshot`): the replicas listed in
``ingest:replicas`` with the per-coin stats and ``INFO memory``, then each replica's heartbeat
and stats. The checks are pure functions of that snapshot and the current time, so each tier
boundary is easy to reason about, and they follow the alerts: no replica live is critical
(``IngestDown``), one replica down while another writes is a warning (``IngestReplicaDown``).
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
class Replica:
    """One ingest replica listed in ``ingest:replicas``: its last-seen score and its hashes."""

    name: str
    seen_at: float
    heartbeat: Mapping[str, str]
    stats: Mapping[str, str]

    @property
    def live(self) -> bool:
        """Its heartbeat key exists: it expires INGEST_HEARTBEAT_TTL after the replica's last write."""
        return _float(self.heartbeat, keys.F_HB_TS) is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the checks need, read from Redis at one moment."""

    replicas: tuple[Replica, ...]
    coins: Mapping[str, Mapping[str, str]]
    memory: Mapping[str, Any]

    @property
    def live(self) -> tuple[Replica, ...]:
        return tuple(r for r in self.replicas if r.live)


def _listed(client: redis.Redis, coins: Sequence[str]) -> tuple[list[tuple[str, float]], list[Any]]:
    pipe = client.pipeline(transaction=False)
    pipe.zrevrangebyscore(keys.INGEST_REPLICAS, "+inf", time.time() - keys.REPLICA_RETENTION_SECONDS,
                          start=0, num=keys.MAX_REPLICAS, withscores=True)
    for coin in coins:
        pipe.hgetall(keys.coin_stats_key(coin))
    pipe.info("memory")
    results = pipe.execute()
    listed = [(str(name), float(score)) for name, score in results[0] if keys.is_valid_replica(str(name))]
    return sorted(listed), results[1:]


def read_snapshot(client: redis.Redis, coins: Sequence[str]) -> Snapshot:
    """The replicas, their heartbeats and stats, per-coin stats and INFO memory, in two round trips."""
    listed, rest = _listed(client, coins)
    pipe = client.pipeline(transaction=False)
    for name, _seen in listed:
        pipe.hgetall(keys.replica_heartbeat_key(name))
        pipe.hgetall(keys.replica_stats_key(name))
    hashes = pipe.execute() if listed else []
    replicas = tuple(Replica(name=name, seen_at=seen, heartbeat=hashes[2 * i], stats=hashes[2 * i + 1])
                     for i, (name, seen) in enumerate(listed))
    return Snapshot(replicas=replicas, coins=dict(zip(coins, rest[:-1], strict=True)), memory=rest[-1])


def _float(mapping: Mapping[str, str], field: str) -> float | None:
    try:
        return float(mapping[field])
    except (KeyError, ValueError):
        return None


def _age(replica: Replica, now: float) -> float:
    beat = _float(replica.heartbeat, keys.F_HB_TS)
    return max(0.0, now - (beat if beat is not None else replica.seen_at))


def check_heartbeat(snap: Snapshot, now: float) -> Finding:
    """Is any ingest replica writing? Critical when none is (the ``IngestDown`` alert)."""
    live = snap.live
    if not live:
        listed = ", ".join(f"{r.name} {_age(r, now):.0f} s ago" for r in snap.replicas) or "none listed"
        return Finding("ingest_heartbeat", "critical", None, "s",
                       f"no ingest replica has a fresh heartbeat (last: {listed}): nothing writes")
    age = min(_age(r, now) for r in live)
    return Finding("ingest_heartbeat", "ok", age, "s",
                   f"{len(live)} of {len(snap.replicas)} ingest replicas live, newest heartbeat {age:.1f} s "
                   "ago")


def check_replicas(snap: Snapshot, now: float) -> list[Finding]:
    """One finding per listed replica: ok while live; down is a warning while another replica
    writes (``IngestReplicaDown``), critical when none does."""
    anyone = bool(snap.live)
    out = []
    for replica in snap.replicas:
        age = _age(replica, now)
        if replica.live:
            out.append(Finding(f"replica_{replica.name}", "ok", age, "s",
                               f"ingest replica {replica.name}: last heartbeat {age:.1f} s ago"))
            continue
        severity = "warning" if anyone else "critical"
        also = "another replica still writes" if anyone else "no replica writes"
        out.append(Finding(f"replica_{replica.name}", severity, age, "s",
                           f"ingest replica {replica.name} is down: last heartbeat {age:.0f} s ago ({also}); "
                           f"forget a removed one with ZREM {keys.INGEST_REPLICAS} {replica.name}"))
    return out


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
    """Re-connections in the last hour of one replica, from its counters alone.

    While the replica has run for less than an hour every re-connection it counted happened
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


def live_reconnects_per_hour(snap: Snapshot, now: float) -> float | None:
    """Summed over the live replicas (each holds its own connections), as the alerts sum them."""
    rates = [rate for r in snap.live if (rate := reconnects_per_hour(r.stats, now)) is not None]
    return sum(rates) if rates else None


def check_reconnects(rate: float | None, *, sampled_over: float | None = None) -> Finding:
    if rate is None:
        return Finding("ws_reconnects", "critical", None, "per_hour",
                       f"no live ingest replica has a {keys.F_RECONNECTS} counter in "
                       f"{keys.replica_stats_key('<replica>')}: no ingest has written stats")
    how = f"measured over {sampled_over:g} s" if sampled_over else "from the counters since start"
    return Finding("ws_reconnects", tiers.RECONNECTS_PER_HOUR.classify(rate), rate, "per_hour",
                   f"{rate:.1f} reconnects/h ({how}); info > {tiers.RECONNECTS_PER_HOUR.info:g}, "
                   f"warning > {tiers.RECONNECTS_PER_HOUR.warning:g}")


def check_connections(snap: Snapshot) -> list[Finding]:
    """Consecutive failures (worst live replica) and connections up (summed over live replicas)."""
    live = snap.live
    failures = max((_float(r.stats, keys.F_CONSECUTIVE_FAILURES) or 0.0 for r in live), default=0.0)
    connected = sum(_float(r.stats, keys.F_WS_CONNECTED) or 0.0 for r in live)
    desired = sum(_float(r.stats, keys.F_WS_CONNECTIONS) or 0.0 for r in live)
    severity = tiers.CONSECUTIVE_FAILURES.classify(failures)
    limit = tiers.CONSECUTIVE_FAILURES.critical
    out = [Finding("ws_consecutive_failures", severity, failures, "count",
                   f"{failures:g} failed attempts in a row (critical > {limit:g})")]
    up = "ok" if connected >= desired else "info"
    out.append(Finding("ws_connections", up, connected, "count",
                       f"{connected:g} of {desired:g} WebSocket connections open and subscribed "
                       f"({len(live)} live replicas)"))
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
    rate = sampled_rate if sampled_rate is not None else live_reconnects_per_hour(snap, now)
    if snap.live:
        reconnects = check_reconnects(rate, sampled_over=sampled_over if sampled_rate is not None else None)
    else:  # said once, by ingest_heartbeat: no live replica has counters to judge
        reconnects = Finding("ws_reconnects", "info", None, "per_hour", "no live ingest replica to count")
    return [
        check_heartbeat(snap, now),
        *check_replicas(snap, now),
        *check_staleness(snap, now),
        reconnects,
        *check_connections(snap),
        check_memory(snap, capacity_bytes),
    ]


def sample_reconnects(client: redis.Redis, seconds: float) -> float | None:
    """Current re-connection rate per hour: the live replicas' counters' increase over ``seconds``,
    extrapolated (a replica that restarts meanwhile counts from its new total, never negative)."""
    def totals() -> dict[str, float]:
        snap = read_snapshot(client, ())
        return {r.name: value for r in snap.live if (value := _float(r.stats, keys.F_RECONNECTS)) is not None}

    first = totals()
    start = time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    second = totals()
    if not first or not second:
        return None
    elapsed = time.monotonic() - start
    increase = sum(max(0.0, value - first.get(name, value)) for name, value in second.items())
    return increase / elapsed * HOUR
