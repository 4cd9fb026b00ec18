"""One scrape's metric families, built from one :class:`~exporter.snapshot.Snapshot`.

Everything here is pure: the snapshot, the time and the settings in, families out. Values
that could mislead are left out rather than guessed:

- Redis unreachable (no snapshot): only ``bybit_redis_up 0`` and the exporter's own series —
  no Redis-derived value, cached or default, is presented as current.
- Ingest replicas: every replica listed in ``ingest:replicas`` (seen within a day) gets
  ``bybit_ingest_up{replica}`` and its heartbeat age, so a replica that died stays visible
  as down; only a live one (fresh heartbeat) exports its process series, counters, gauges
  and lag histogram, because a dead replica's last totals and connection state are not
  current. ``bybit_ingest_replicas_up`` (no label) is always exported: 0 when no replica is
  listed at all, which "no ingest writing" must catch.
- A live replica whose stats hash is absent (Redis restarted and it has not rewritten it
  yet): its counters are omitted, not reported as 0, because a dip to 0 and back reads as a
  counter reset and an increase the size of the whole total. When it exists, every error
  type is exported (missing ones as 0), so ``increase()`` works from the first scrape.
- A coin with no ticker yet: staleness ``+Inf`` (the coin is configured and has no data,
  which ``bybit_data_staleness_seconds > 300`` must catch) and no last-update timestamp.

Labels come only from the configured coins, :data:`common.errors.ERROR_TYPES` and replica
names that match :data:`common.keys.REPLICA_NAME_PATTERN`; a field in Redis with any other
name never becomes a label value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from common import errors, keys
from exporter.capacity import redis_capacity
from exporter.snapshot import FAILURE_TYPES, ReplicaSnapshot, Snapshot

_INF: Final = math.inf

#: (metric, field of stats:global, help) for the gauges copied from the ingest's stats.
_STATS_GAUGES: Final[tuple[tuple[str, str, str], ...]] = (
    ("bybit_ingest_pending_symbols", keys.F_PENDING, "Symbols the ingest holds waiting for Redis."),
    ("bybit_ingest_memory_pressure", keys.F_MEMORY_PRESSURE, "1 while the short option TTL is in force."),
    ("bybit_option_ttl_seconds", keys.F_TTL_SECONDS, "TTL currently applied to option hashes."),
    ("bybit_ws_connected", keys.F_WS_CONNECTED, "WebSocket connections open and subscribed."),
    ("bybit_ws_connections_desired", keys.F_WS_CONNECTIONS, "WebSocket connections the shard plan needs."),
    ("bybit_ws_consecutive_failures", keys.F_CONSECUTIVE_FAILURES,
     "Highest consecutive connection-failure count over the WebSocket connections."),
    ("bybit_ws_circuit_open", keys.F_CIRCUIT_OPEN, "WebSocket connections whose circuit breaker is open."),
    ("bybit_ws_subscriptions", keys.F_SUBSCRIPTIONS, "Ticker topics subscribed."),
)

#: (metric, field of stats:global, help) for the counters copied from the ingest's stats.
_STATS_COUNTERS: Final[tuple[tuple[str, str, str], ...]] = (
    ("bybit_ws_reconnects_total", keys.F_RECONNECTS, "Successful WebSocket re-connections after a drop."),
    ("bybit_ws_connect_failures_total", keys.F_CONNECT_FAILURES, "Failed WebSocket connection attempts."),
    ("bybit_rest_requests_total", keys.F_REST_REQUESTS, "REST calls the ingest made."),
    ("bybit_rest_rate_limited_total", keys.F_REST_RATE_LIMITED, "REST rate-limit answers received."),
    ("bybit_redis_writes_total", keys.F_REDIS_WRITES, "Option hashes the ingest wrote."),
)


@dataclass
class Values:
    """Reads numbers out of Redis hashes; remembers which fields held garbage."""

    bad: list[str] = field(default_factory=list)

    def number(self, mapping: Mapping[str, str], name: str, where: str) -> float | None:
        """The field as a finite float, ``None`` when absent or not a finite number."""
        raw = mapping.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.bad.append(f"{where}:{name}")
            return None
        return value


@dataclass(frozen=True, slots=True)
class ScrapeContext:
    """What a scrape needs besides the snapshot."""

    coins: Sequence[str]
    now: float  # epoch seconds
    heartbeat_max_age: float  # a heartbeat older than this means the ingest is down
    capacity_bytes: int  # REDIS_CAPACITY_BYTES


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def ingest_families(snap: Snapshot, ctx: ScrapeContext, values: Values) -> Iterator[Metric]:
    """Per replica: up, heartbeat age; for the live ones their process, counters, gauges and errors."""
    replicas = sorted(snap.replicas, key=lambda r: r.name)
    up = GaugeMetricFamily("bybit_ingest_up", "1 while the replica's heartbeat is fresh.", labels=["replica"])
    age = GaugeMetricFamily("bybit_ingest_heartbeat_age_seconds",
                            "Seconds since the replica's last heartbeat.", labels=["replica"])
    rss = GaugeMetricFamily("bybit_ingest_resident_memory_bytes",
                            "Ingest resident memory, from its heartbeat.", labels=["replica"])
    cpu = CounterMetricFamily("bybit_ingest_cpu_seconds_total",
                              "Ingest CPU seconds (user + system), from its heartbeat.", labels=["replica"])
    start = GaugeMetricFamily("bybit_ingest_start_time_seconds", "When the ingest started (epoch seconds).",
                              labels=["replica"])
    gauges = [(GaugeMetricFamily(name, doc, labels=["replica"]), stat)
              for name, stat, doc in _STATS_GAUGES]
    counters = [(CounterMetricFamily(name, doc, labels=["replica"]), stat)
                for name, stat, doc in _STATS_COUNTERS]
    errors_family = CounterMetricFamily("bybit_errors_total", "Errors the ingest counted, by type "
                                        "(fixed set, common/errors.py).", labels=["replica", "type"])
    alive = 0
    for replica in replicas:
        name, beat = replica.name, replica.heartbeat
        where = keys.replica_heartbeat_key(name)
        beat_ts = values.number(beat, keys.F_HB_TS, where)
        seen = beat_ts if beat_ts is not None else replica.seen_at
        beat_age = max(0.0, ctx.now - seen)
        live = beat_ts is not None and beat_age <= ctx.heartbeat_max_age
        up.add_metric([name], 1.0 if live else 0.0)
        age.add_metric([name], beat_age)
        if not live:
            continue
        alive += 1
        if (value := values.number(beat, keys.F_HB_RSS_BYTES, where)) is not None:
            rss.add_metric([name], value)
        if (value := values.number(beat, keys.F_HB_CPU_SECONDS, where)) is not None:
            cpu.add_metric([name], value)
        stats, stats_where = replica.stats, keys.replica_stats_key(name)
        started = values.number(beat, keys.F_HB_STARTED_AT, where)
        if started is None:
            started = values.number(stats, keys.F_STARTED_AT, stats_where)
        if started is not None:
            start.add_metric([name], started)
        for family, stat in gauges:
            if (value := values.number(stats, stat, stats_where)) is not None:
                family.add_metric([name], value)
        if not stats:
            continue
        for counter, stat in counters:
            counter.add_metric([name], values.number(stats, stat, stats_where) or 0.0)
        for error_type in errors.ERROR_TYPES:
            count = values.number(stats, keys.error_field(error_type), stats_where) or 0.0
            errors_family.add_metric([name, error_type], count)
    yield _gauge("bybit_ingest_replicas_up",
                 "Ingest replicas whose heartbeat is fresh (0: no replica is writing).", float(alive))
    yield up
    yield age
    families: list[Metric] = [rss, cpu, start, *(f for f, _s in gauges), *(f for f, _s in counters),
                              errors_family]
    yield from (family for family in families if family.samples)


def coin_families(snap: Snapshot, ctx: ScrapeContext, values: Values) -> Iterator[Metric]:
    """Per configured coin: messages, last update, staleness, symbols tracked."""
    messages = CounterMetricFamily("bybit_ws_messages_total",
                                   "Ticker frames the ingest replica accepted, by coin.",
                                   labels=["coin", "replica"])
    for replica in sorted(snap.replicas, key=lambda r: r.name):
        if replica.stats and _live(replica, ctx):
            where = keys.replica_stats_key(replica.name)
            for coin in ctx.coins:
                count = values.number(replica.stats, keys.messages_field(coin), where)
                if count is not None:
                    messages.add_metric([coin, replica.name], count)
    last = GaugeMetricFamily("bybit_data_last_update_timestamp_seconds",
                             "When the coin's newest ticker was written (epoch seconds).", labels=["coin"])
    staleness = GaugeMetricFamily("bybit_data_staleness_seconds",
                                  "Seconds since the coin's newest ticker (+Inf when it has none).",
                                  labels=["coin"])
    tracked = GaugeMetricFamily("bybit_options_tracked", "Symbols in the coin's index.", labels=["coin"])
    for coin in ctx.coins:
        coin_snap = snap.coins[coin]
        where = keys.coin_stats_key(coin)
        updated = values.number(coin_snap.stats, keys.F_COIN_LAST_UPDATE, where)
        if updated is not None and updated > 0:
            last.add_metric([coin], updated)
            staleness.add_metric([coin], max(0.0, ctx.now - updated))
        else:
            staleness.add_metric([coin], _INF)
        tracked.add_metric([coin], coin_snap.tracked)
    if messages.samples:
        yield messages
    yield last
    yield staleness
    yield tracked


def lag_family(snap: Snapshot, ctx: ScrapeContext, values: Values) -> Iterator[Metric]:
    """The exchange-lag histogram of each live replica that has written one.

    Buckets are read with the shared bounds; a missing or decreasing bucket takes the
    previous cumulative count, so the exposed histogram is always well formed.
    """
    family = HistogramMetricFamily("bybit_message_lag_seconds",
                                   "Ticker arrival time minus the frame's exchange timestamp.",
                                   labels=["replica"])
    for replica in sorted(snap.replicas, key=lambda r: r.name):
        if not _live(replica, ctx):
            continue
        lag, where = replica.lag, keys.replica_lag_key(replica.name)
        total = values.number(lag, keys.LAG_COUNT_FIELD, where)
        if total is None:
            continue
        buckets: list[tuple[str, float]] = []
        running = 0.0
        for bound in keys.LAG_BUCKETS:
            count = values.number(lag, keys.lag_bucket_field(bound), where)
            running = min(max(running, count if count is not None else running), total)
            buckets.append((repr(float(bound)), running))  # le="0.005", "1.0": Go's style
        buckets.append(("+Inf", total))
        total_sum = values.number(lag, keys.LAG_SUM_FIELD, where) or 0.0
        family.add_metric([replica.name], buckets, total_sum)
    if family.samples:
        yield family


def _live(replica: ReplicaSnapshot, ctx: ScrapeContext) -> bool:
    """The replica's heartbeat is present and fresh (garbage in it is counted by ingest_families)."""
    raw = replica.heartbeat.get(keys.F_HB_TS)
    try:
        beat_ts = float(raw) if raw is not None else math.nan
    except ValueError:
        return False
    return math.isfinite(beat_ts) and ctx.now - beat_ts <= ctx.heartbeat_max_age


def redis_families(snap: Snapshot, ctx: ScrapeContext) -> Iterator[Metric]:
    """Redis' own state: memory, capacity, keys."""
    used = snap.memory.get("used_memory")
    if isinstance(used, int | float):
        yield _gauge("bybit_redis_memory_used_bytes", "Redis used_memory.", float(used))
    capacity = redis_capacity(snap.memory, configured_bytes=ctx.capacity_bytes)
    if capacity.bytes is not None:
        yield _gauge("bybit_redis_memory_max_bytes",
                     "Redis maxmemory; when 0, REDIS_CAPACITY_BYTES, else the host memory Redis reports.",
                     capacity.bytes)
    if snap.memory:
        yield _gauge("bybit_redis_maxmemory_configured", "1 when Redis has maxmemory set.",
                     1.0 if capacity.maxmemory_configured else 0.0)
    if snap.db_keys is not None:
        yield _gauge("bybit_redis_keys", "Keys in the Redis database.", float(snap.db_keys))


class SnapshotCollector:
    """A prometheus-client collector for one scrape: the snapshot's families, built once.

    ``snapshot is None`` means Redis could not be read: then only ``bybit_redis_up 0`` and
    the exporter's own series are exposed. The exporter's error counts are read at
    ``collect()`` time, so the failures found while building this scrape are included.
    ``bad_fields`` lists the Redis fields that held something other than a finite number
    (left out, counted by the caller).
    """

    def __init__(self, snapshot: Snapshot | None, ctx: ScrapeContext, *,
                 exporter_errors: Mapping[str, int]) -> None:
        values = Values()
        self._families: list[Metric] = [
            _gauge("bybit_redis_up", "1 when this scrape reached Redis.", 0.0 if snapshot is None else 1.0),
        ]
        if snapshot is not None:
            self._families += ingest_families(snapshot, ctx, values)
            self._families += coin_families(snapshot, ctx, values)
            self._families += lag_family(snapshot, ctx, values)
            self._families += redis_families(snapshot, ctx)
            values.bad += [f"{keys.INGEST_REPLICAS}:{name!r}" for name in snapshot.bad_replicas]
        self.bad_fields: tuple[str, ...] = tuple(values.bad)
        #: Set by the server once the families are built (the scrape's own cost).
        self.scrape_seconds = 0.0
        self._exporter_errors = exporter_errors

    def collect(self) -> Iterator[Metric]:
        yield from self._families
        yield _gauge("bybit_exporter_scrape_duration_seconds",
                     "Time this scrape took to read Redis and build its metrics.", self.scrape_seconds)
        failures = CounterMetricFamily("bybit_exporter_errors_total",
                                       "Scrapes that failed to read Redis, Redis fields that held no "
                                       "finite number, requests refused as malformed, by type.",
                                       labels=["type"])
        for kind in FAILURE_TYPES:
            failures.add_metric([kind], self._exporter_errors.get(kind, 0))
        yield failures
