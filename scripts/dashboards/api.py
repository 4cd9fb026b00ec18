"""API: traffic, errors, latency and the response cache."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import shared
from scripts.dashboards.parts import (
    UP_MAPPINGS,
    Unit,
    dashboard,
    graph,
    levels,
    mappings,
    per_second,
    q,
    row,
    single,
)
from scripts.healthcheck import tiers


def build() -> dm.Dashboard:
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
