"""The five dashboards, one function each (overview, ingest, api, redis, slo), written with the
panel factories of :mod:`.parts` and the shared panels of :mod:`.shared`."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import shared
from scripts.dashboards.parts import (
    TIER_COLOURS,
    UP_MAPPINGS,
    Unit,
    bars,
    dashboard,
    dial,
    floor,
    graph,
    levels,
    mappings,
    per_second,
    q,
    row,
    single,
    table_rows,
)
from scripts.healthcheck import tiers


def firing(severity: str) -> stat.Panel:
    return (single(f"Firing {severity}",
                   q(f'count(ALERTS{{alertstate="firing", severity="{severity}"}}) or vector(0)', severity))
            .span(4).height(5).decimals(0).thresholds(levels(**{severity: 0.5}))
            .mappings(mappings(("0", "none", TIER_COLOURS["ok"])))
            .description(f"Alerts of tier {severity} firing now (Prometheus' ALERTS series)."))


def firing_alerts() -> table.Panel:
    return (table_rows("Firing alerts", q('ALERTS{alertstate="firing"}', instant=True),
                       hide=("Time", "Value", "__name__", "alertstate"))
            .span(12).height(5).description("Every firing alert with its labels."))


def overview() -> dm.Dashboard:
    """Overview: is data flowing, is the API answering, is anything about to break."""
    return dashboard(
        "bybit-overview", "Bybit Options Tracker / Overview",
        "Is data flowing, is the API answering, is anything about to break: the seed's "
        "real-time, short-term and long-term views, and the alerts firing by tier.",
        row("Alerts by tier", firing("critical"), firing("warning"), firing("info"), firing_alerts()),
        row("Real-time",
            single("Ingest", q(shared.INGEST_ANY_UP, "ingest")).span(3).decimals(0)
            .mappings(mappings(*UP_MAPPINGS))
            .description("UP while at least one ingest replica's heartbeat is fresh."),
            single("WebSocket connections", q("sum(bybit_ws_connected)", "connected"),
                   q("sum(bybit_ws_connections_desired)", "desired")).span(3).decimals(0)
            .description("Connections open and subscribed, against those the shard plan needs."),
            graph("Messages / s", q(per_second("bybit_ws_messages_total", "coin"), "{{coin}}"), stack=True)
            .unit(Unit.PER_SECOND).min(0).description("Ticker frames accepted per second, by coin."),
            shared.api_latency(),
            shared.memory()),
        row("Short-term",
            shared.reconnects(),
            shared.errors(),
            shared.staleness(),
            graph("Ingest CPU", q(shared.INGEST_CPU, "{{replica}}"),
                  alert=levels(shared.INGEST_CPU_LEVELS)).unit(Unit.RATIO).span(8).min(0)
            .description("CPU seconds per second of each ingest process (replica or INGEST_WORKERS worker). "
                         "Target < 20 % of a core; IngestCpuHigh (warning) above 80 %."),
            graph("Ingest memory", q(shared.INGEST_RSS, "{{replica}}"),
                  alert=levels(shared.INGEST_MEMORY)).unit(Unit.BYTES).span(8).min(0)
            .description("Resident memory of each ingest replica. Target < 100 MB."),
            single("Targets up", q("up", "{{job}}")).span(8).decimals(0).mappings(mappings(*UP_MAPPINGS))
            .description("Prometheus' scrape of each job: exporter, api, prometheus, alertmanager.")),
        row("Long-term",
            dial("Health score", q(shared.HEALTH_SCORE, "health")).unit(Unit.PERCENT).min(0).max(100)
            .thresholds(floor(warning=66, target=99))
            .description("Share of health checks passing: ingest up, Redis up, data fresher than 30 s, "
                         "Redis memory under 70 %, all connections up, exporter and API scraped. "
                         "No value until Prometheus has scraped the exporter and the API."),
            graph("Message rate trend", q("sum(rate(bybit_ws_messages_total[1h]))", "messages / s (1h avg)"))
            .unit(Unit.PER_SECOND).min(0).time_from("7d")
            .description("Hourly average of accepted ticker frames per second over a week."),
            graph("Options tracked", q("sum by (coin) (bybit_options_tracked)", "{{coin}}"), stack=True)
            .min(0).time_from("7d")
            .description("Symbols in each coin's index: new expiries list daily, delivered ones go."),
            graph("Redis memory: capacity planning",
                  q("max(bybit_redis_memory_used_bytes)", "used"),
                  q("predict_linear(max(bybit_redis_memory_used_bytes)[6h:5m], 7 * 86400)", "in 7 days"),
                  q("max(bybit_redis_memory_max_bytes)", "capacity"))
            .unit(Unit.BYTES).min(0).time_from("7d")
            .description("Used memory, its linear projection a week ahead, and the capacity.")),
    )


def ingest() -> dm.Dashboard:
    """Ingest: replicas, connections, subscriptions, message flow and lag, errors, writes, the process."""
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
                  alert=levels(shared.INGEST_CPU_LEVELS)).unit(Unit.RATIO).span(8).min(0)
            .description("CPU seconds per second of each ingest process: one process uses at most one "
                         "core. Target < 20 %; IngestCpuHigh (warning) above 80 %: set INGEST_WORKERS."),
            graph("Resident memory", q(shared.INGEST_RSS, "{{replica}}"),
                  alert=levels(shared.INGEST_MEMORY)).unit(Unit.BYTES).span(8).min(0),
            single("Heartbeat age", q(shared.HEARTBEAT_AGE_BY_REPLICA, "{{replica}}")).unit(Unit.SECONDS)
            .span(4).thresholds(levels(shared.HEARTBEAT_AGE)),
            single("Pending symbols", q("sum(bybit_ingest_pending_symbols)", "pending")).span(4).decimals(0)
            .description("Symbols held in memory waiting for Redis (grows while Redis is down).")),
    )


def api() -> dm.Dashboard:
    """API: traffic, errors, latency and the response cache."""
    return dashboard(
        "bybit-api", "Bybit Options Tracker / API",
        "The options API: traffic, errors, latency and its response cache.",
        row("Traffic",
            single("API scraped", q('max(up{job="api"})', "api")).span(4).decimals(0)
            .mappings(mappings(*UP_MAPPINGS)),
            graph("Requests / s by status", q(per_second("bybit_api_requests_total", "status"), "{{status}}"),
                  stack=True).unit(Unit.PER_SECOND).span(10).min(0),
            graph("Requests / s by route", q(per_second("bybit_api_requests_total", "route"), "{{route}}"),
                  stack=True).unit(Unit.PER_SECOND).span(10).min(0),
            graph("Error ratio (5xx)", q(shared.API_ERROR_RATIO, "5xx"), alert=levels(tiers.API_ERROR_RATIO))
            .unit(Unit.RATIO).span(12).min(0)
            .description("Share of requests answered 5xx over 5 minutes. WARNING above 5 %."),
            graph("Cache results", q(per_second("bybit_api_cache_requests_total", "result"), "{{result}}"),
                  stack=True).unit(Unit.PER_SECOND).span(12).min(0)
            .description("hit: served from the response cache; miss: one Redis read; "
                         "stale: served old while Redis fails.")),
        row("Latency",
            shared.api_latency().span(12),
            graph("p95 by route", q(shared.api_quantile(0.95, by="route", matchers=""), "{{route}}"),
                  alert=levels(shared.API_P95)).unit(Unit.SECONDS).span(12).min(0).no_value(shared.NO_TRAFFIC)),
    )


def redis() -> dm.Dashboard:
    """Redis: reachability, memory against capacity, keys, TTL policy, write load."""
    return dashboard(
        "bybit-redis", "Bybit Options Tracker / Redis",
        "The store: reachability, memory against capacity, keys, TTL policy, write load.",
        row("State",
            single("Redis reachable", q("max(bybit_redis_up)", "redis")).span(4).decimals(0)
            .mappings(mappings(*UP_MAPPINGS)),
            shared.memory().span(5),
            single("maxmemory set", q("max(bybit_redis_maxmemory_configured)", "configured")).span(5)
            .decimals(0).mappings(mappings(("0", "NO (host memory)", "orange"), ("1", "YES", "green"))),
            single("Memory pressure TTL", q("max(bybit_ingest_memory_pressure)", "pressure")).span(5)
            .decimals(0).mappings(mappings(("0", "normal TTL", "green"), ("1", "short TTL", "orange"))),
            single("Option TTL", q("max(bybit_option_ttl_seconds)", "ttl")).span(5).unit(Unit.SECONDS)),
        row("Memory and keys",
            graph("Memory used vs capacity", q("max(bybit_redis_memory_used_bytes)", "used"),
                  q("max(bybit_redis_memory_max_bytes)", "capacity")).unit(Unit.BYTES).span(12).min(0),
            graph("Memory ratio", q(shared.MEMORY_RATIO, "used / capacity"),
                  alert=levels(tiers.REDIS_MEMORY_RATIO)).unit(Unit.RATIO).span(12).min(0).max(1),
            graph("Keys", q("max(bybit_redis_keys)", "keys")).span(8).min(0),
            graph("Writes / s", q(per_second("bybit_redis_writes_total"), "option writes"))
            .unit(Unit.PER_SECOND).span(8).min(0),
            graph("Exporter scrape duration", q("max(bybit_exporter_scrape_duration_seconds)", "scrape"))
            .unit(Unit.SECONDS).span(8).min(0).description("Time one exporter scrape spends reading Redis.")),
    )


#: The SLOs of prometheus/rules/slo.yml (label ``slo``), with what each one measures.
SLOS: Final = (
    ("api_availability", "API availability", "requests not answered 5xx"),
    ("ingest_uptime", "Ingest uptime", "time with a fresh ingest heartbeat"),
    ("data_freshness", "Data freshness", "coin-time with a ticker younger than 30 s"),
    ("ws_reconnects", "Reconnect budget", "fewer than 20 WebSocket reconnections an hour"),
)


def burn_rate(slo: str, title: str, meaning: str) -> timeseries.Panel:
    return (graph(f"Burn rate: {title}",
                  *(q(f'max(slo:bybit_error_budget:burn_rate{w}{{slo="{slo}"}})', w)
                    for w in ("5m", "1h", "6h", "1d")),
                  alert=levels(info=1, warning=tiers.BURN_RATE_TICKET, critical=tiers.BURN_RATE_PAGE))
            .span(12).min(0)
            .description(f"How fast the {title} SLO ({meaning}) spends its 30-day error budget: "
                         f"1 spends it in exactly 30 days. Pages above {tiers.BURN_RATE_PAGE:g} "
                         f"(fast windows), tickets above {tiers.BURN_RATE_TICKET:g} (slow windows)."))


def slo() -> dm.Dashboard:
    """SLOs: the seed's success metrics as objectives, their error budgets and burn rates."""
    return dashboard(
        "bybit-slo", "Bybit Options Tracker / SLOs",
        "The seed's success metrics as SLOs (prometheus/rules/slo.yml): API availability 99.9 %, "
        "ingest uptime 99.5 %, data fresh (< 30 s) 99 % of the time, < 20 reconnects/h; "
        "error budgets, burn rates, and the targets without an alert (API p95, memory, CPU).",
        row("Objectives (30 days)",
            single("API availability", q('sum(increase(bybit_api_requests_total{status!="5xx"}[30d])) '
                                         "/ sum(increase(bybit_api_requests_total[30d]))", "availability"))
            .unit(Unit.RATIO).decimals(3)
            .thresholds(floor(warning=tiers.UPTIME_TARGET, target=tiers.API_AVAILABILITY_TARGET))
            .description("Share of requests not answered 5xx. Target 99.9 %."),
            single("Ingest uptime", q("max(avg_over_time(job:bybit_ingest_up:max[30d]))", "uptime"))
            .unit(Unit.RATIO).decimals(3)
            .thresholds(floor(warning=0.99, target=tiers.UPTIME_TARGET))
            .description("Share of time with a fresh heartbeat of at least one ingest replica. "
                         "Target 99.5 %."),
            single("Data fresh", q("avg_over_time(job:bybit_data_fresh:ratio[30d])", "fresh"))
            .unit(Unit.RATIO).decimals(3).thresholds(floor(warning=0.95, target=tiers.FRESHNESS_OBJECTIVE))
            .description("Share of coin-time whose newest ticker was younger than 30 s. Target 99 %."),
            bars("Error budget left",
                 *(q(f'max(slo:bybit_error_budget:remaining{{slo="{slo}"}})', title)
                   for slo, title, _m in SLOS))
            .unit(Unit.RATIO).min(0).max(1).thresholds(floor(warning=0.25, target=0.5))
            .description("Share of each SLO's 30-day error budget still unspent.")),
        row("Burn rates", *(burn_rate(slo, title, meaning) for slo, title, meaning in SLOS)),
        row("Targets",
            graph("Freshness vs target", q("max(bybit_data_staleness_seconds)", "worst coin"),
                  alert=levels(warning=tiers.FRESHNESS_TARGET_SECONDS)).unit(Unit.SECONDS).min(0),
            # The recording rule has no sample without requests (never NaN): see recording.py.
            graph("API p95 vs target", q("max(job:bybit_api_request_duration_seconds:p95_rate5m)", "p95"),
                  alert=levels(shared.API_P95)).unit(Unit.SECONDS).min(0).no_value(shared.NO_TRAFFIC),
            graph("Reconnects per hour vs target", q(shared.RECONNECTS_PER_HOUR, "reconnects / h"),
                  alert=levels(tiers.RECONNECTS_PER_HOUR)).span(12).min(0),
            graph("Ingest memory vs target", q(shared.INGEST_RSS, "{{replica}}"),
                  alert=levels(shared.INGEST_MEMORY)).unit(Unit.BYTES).min(0),
            graph("Ingest CPU vs target",
                  q("sum by (replica) (rate(bybit_ingest_cpu_seconds_total[5m]))", "{{replica}}"),
                  alert=levels(shared.INGEST_CPU_LEVELS)).unit(Unit.RATIO).min(0)),
        time_from="now-7d", refresh="1m",
    )
