"""Ingest: connections, subscriptions, message flow and lag, errors, writes, the process."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import shared
from scripts.dashboards.parts import (
    Unit,
    dashboard,
    floor,
    graph,
    levels,
    per_second,
    q,
    row,
    single,
)
from scripts.healthcheck import tiers


def build() -> dm.Dashboard:
    return dashboard(
        "bybit-ingest", "Bybit Options Tracker / Ingest",
        "The ingest worker: connections, subscriptions, message flow and lag, errors, writes.",
        # HA: each ingest replica (label replica, INGEST_REPLICA) heartbeats on its own; one down
        # while another writes is IngestReplicaDown (warning), none writing is IngestDown.
        row("Replicas",
            single("Replicas up", q("max(bybit_ingest_replicas_up)", "up")).span(4).decimals(0)
            .thresholds(floor(warning=1, target=1))
            .description("Ingest replicas with a fresh heartbeat. 0: nothing writes (IngestDown); fewer "
                         "than deployed: a replica is down (IngestReplicaDown)."),
            graph("Heartbeat age by replica", q(shared.HEARTBEAT_AGE_BY_REPLICA, "{{replica}}"),
                  alert=levels(shared.HEARTBEAT_AGE)).unit(Unit.SECONDS).span(10).min(0)
            .description("Seconds since each replica's last heartbeat; a replica that stopped is shown (its "
                         "age growing) for a day after it did."),
            graph("Messages / s by replica",
                  q(per_second("bybit_ws_messages_total", "replica"), "{{replica}}"))
            .unit(Unit.PER_SECOND).span(10).min(0)
            .description("Ticker frames each replica accepted per second (each streams every symbol).")),
        row("Connections",
            graph("Connected vs desired", q("sum(bybit_ws_connected)", "connected"),
                  q("sum(bybit_ws_connections_desired)", "desired")).span(8).min(0).decimals(0),
            single("Consecutive failures", q("max(bybit_ws_consecutive_failures)", "failures")).span(4)
            .decimals(0).thresholds(levels(tiers.CONSECUTIVE_FAILURES))
            .description("Highest run of failed attempts over connections. CRITICAL above 10."),
            single("Circuits open", q("max(bybit_ws_circuit_open)", "open")).span(4).decimals(0)
            .thresholds(levels(warning=0.5))
            .description("Connections whose circuit breaker is open (waiting before a probe)."),
            single("Subscriptions", q("sum(bybit_ws_subscriptions)", "topics")).span(4).decimals(0),
            single("Uptime", q("time() - max(bybit_ingest_start_time_seconds)", "uptime")).span(4)
            .unit(Unit.SECONDS),
            shared.reconnects().span(12),
            graph("Connection attempts", q(per_second("bybit_ws_reconnects_total"), "reconnects"),
                  q(per_second("bybit_ws_connect_failures_total"), "failures"))
            .unit(Unit.PER_SECOND).span(12).min(0)),
        row("Data flow",
            graph("Messages / s by coin", q(per_second("bybit_ws_messages_total", "coin"), "{{coin}}"),
                  stack=True).unit(Unit.PER_SECOND).span(8).min(0),
            graph("Exchange lag", q(shared.LAG_P.format(q=0.5), "p50"), q(shared.LAG_P.format(q=0.95), "p95"),
                  q(shared.LAG_P.format(q=0.99), "p99"), alert=levels(info=tiers.FRESHNESS_TARGET_SECONDS))
            .unit(Unit.SECONDS).span(8).min(0)
            .description("Arrival time minus the frame's exchange timestamp."),
            shared.staleness(),
            single("Last update", q("bybit_data_last_update_timestamp_seconds * 1000", "{{coin}}"))
            .unit(Unit.TIMESTAMP).span(8),
            single("Options tracked", q("bybit_options_tracked", "{{coin}}")).span(8).decimals(0),
            graph("Redis writes / s", q(per_second("bybit_redis_writes_total"), "writes"))
            .unit(Unit.PER_SECOND).span(8).min(0)),
        row("Errors and upstream",
            shared.errors().span(12),
            graph("REST calls", q(per_second("bybit_rest_requests_total"), "requests"),
                  q(per_second("bybit_rest_rate_limited_total"), "rate limited"))
            .unit(Unit.PER_SECOND).span(12).min(0)),
        row("Process",
            graph("CPU", q(shared.INGEST_CPU, "{{replica}}"),
                  alert=levels(warning=tiers.PROCESS_CPU_TARGET_RATIO)).unit(Unit.RATIO).span(8).min(0),
            graph("Resident memory", q(shared.INGEST_RSS, "{{replica}}"),
                  alert=levels(shared.INGEST_MEMORY)).unit(Unit.BYTES).span(8).min(0),
            single("Heartbeat age", q(shared.HEARTBEAT_AGE_BY_REPLICA, "{{replica}}")).unit(Unit.SECONDS)
            .span(4).thresholds(levels(shared.HEARTBEAT_AGE)),
            single("Pending symbols", q("sum(bybit_ingest_pending_symbols)", "pending")).span(4).decimals(0)
            .description("Symbols held in memory waiting for Redis (grows while Redis is down).")),
    )
