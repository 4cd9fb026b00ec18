"""Overview: is data flowing, is the API answering, is anything about to break."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, table
from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import shared
from scripts.dashboards.parts import (
    TIER_COLOURS,
    UP_MAPPINGS,
    Unit,
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


def build() -> dm.Dashboard:
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
                  alert=levels(warning=tiers.PROCESS_CPU_TARGET_RATIO)).unit(Unit.RATIO).span(8).min(0)
            .description("CPU seconds per second of each ingest replica. Target < 20 % of a core."),
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

