"""SLOs: the seed's success metrics as objectives, their error budgets and burn rates."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import shared
from scripts.dashboards.parts import (
    Unit,
    bars,
    dashboard,
    floor,
    graph,
    levels,
    q,
    row,
    single,
)
from scripts.healthcheck import tiers

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


def build() -> dm.Dashboard:
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
                  alert=levels(warning=tiers.PROCESS_CPU_TARGET_RATIO)).unit(Unit.RATIO).min(0)),
        time_from="now-7d", refresh="1m",
    )
