"""Queries and panels more than one dashboard shows, each written once: where the alerts use a
recording rule the dashboards draw the same series, and the levels come from the alert tiers
(:mod:`scripts.healthcheck.tiers`)."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import gauge, timeseries

from common.config import Settings
from scripts.dashboards.parts import Unit, dial, graph, levels, per_second, q
from scripts.healthcheck import tiers
from scripts.healthcheck.tiers import Thresholds

MEMORY_RATIO: Final = "max(job:bybit_redis_memory:ratio)"
RECONNECTS_PER_HOUR: Final = "sum(job:bybit_ws_reconnects:increase1h)"
HEALTH_SCORE: Final = ":bybit_health:score"
#: Ingest replicas (label ``replica``): 1 while any is live (0, not nothing, when none is listed).
INGEST_ANY_UP: Final = "clamp_max(max(bybit_ingest_replicas_up), 1)"
INGEST_CPU: Final = "sum by (replica) (rate(bybit_ingest_cpu_seconds_total[$__rate_interval]))"
INGEST_RSS: Final = "max by (replica) (bybit_ingest_resident_memory_bytes)"
HEARTBEAT_AGE_BY_REPLICA: Final = "max by (replica) (bybit_ingest_heartbeat_age_seconds)"
API_ERROR_RATIO: Final = "max(job:bybit_api_requests:error_ratio_rate5m)"
LAG_P: Final = ("histogram_quantile({q}, sum by (le) "
                "(rate(bybit_message_lag_seconds_bucket[$__rate_interval])))")
#: Requests a client makes: Prometheus' scrapes and the probes are not the API's traffic.
API_CLIENT_ROUTES: Final = 'route!~"/metrics|/healthz|/readyz"'
#: What the API latency panels show while nobody calls the API (their queries return nothing).
NO_TRAFFIC: Final = "no traffic"

#: Ingest resident memory: the seed's 100 MB target (info) and the alert's level (warning).
INGEST_MEMORY: Final = Thresholds(info=tiers.PROCESS_MEMORY_TARGET_BYTES,
                                  warning=tiers.INGEST_MEMORY_BYTES.warning)
#: Ingest CPU per process: the seed's 20 % target (info) and the alert's level (warning).
INGEST_CPU_LEVELS: Final = Thresholds(info=tiers.PROCESS_CPU_TARGET_RATIO,
                                      warning=tiers.INGEST_CPU_RATIO.warning)
#: The heartbeat key expires this long after the ingest's last write: older is a dead ingest.
HEARTBEAT_AGE: Final = Thresholds(critical=Settings().heartbeat_ttl)
#: API p95: the seed's 500 ms target (info) and the alert's level (warning).
API_P95: Final = Thresholds(info=tiers.API_LATENCY_P95_TARGET_SECONDS,
                            warning=tiers.API_LATENCY_P95_SECONDS.warning)


def api_quantile(quantile: float, *, by: str = "", matchers: str = API_CLIENT_ROUTES) -> str:
    """The ``quantile`` of API response times per ``by``, only where there were requests.

    Without a request in the window every bucket's rate is 0 and ``histogram_quantile`` answers
    NaN, a value Grafana cannot draw (the panel goes blank); keeping only the series whose
    ``+Inf`` bucket (every request) has a rate makes the query empty instead, and the panel
    says "no traffic" (:data:`NO_TRAFFIC`).
    """
    bucket = "bybit_api_request_duration_seconds_bucket"
    every_request = 'le="+Inf"'
    buckets = f"{bucket}{{{matchers}}}" if matchers else bucket
    requests = f"{bucket}{{{matchers}, {every_request}}}" if matchers else f"{bucket}{{{every_request}}}"
    keep = f"le, {by}" if by else "le"
    group = f" by ({by})" if by else ""
    return (f"histogram_quantile({quantile:g}, sum by ({keep}) (rate({buckets}[$__rate_interval])))"
            f" and on ({by}) (sum{group} (rate({requests}[$__rate_interval])) > 0)")


def memory() -> gauge.Panel:
    return (dial("Redis memory (of capacity)", q(MEMORY_RATIO, "used")).unit(Unit.RATIO).min(0).max(1)
            .thresholds(levels(tiers.REDIS_MEMORY_RATIO))
            .description("used_memory / maxmemory (or the configured capacity). "
                         "INFO > 50 %, WARNING > 70 %, CRITICAL > 90 %."))


def staleness() -> timeseries.Panel:
    return (graph("Staleness per coin", q("bybit_data_staleness_seconds", "{{coin}}"),
                  alert=levels(Thresholds(info=tiers.FRESHNESS_TARGET_SECONDS,
                                          critical=tiers.STALENESS_SECONDS.critical)))
            .unit(Unit.SECONDS).span(8).min(0)
            .description("Seconds since each coin's newest ticker. Freshness target 30 s; "
                         "CRITICAL when no data for 5 minutes."))


def reconnects() -> timeseries.Panel:
    return (graph("WebSocket reconnects per hour", q(RECONNECTS_PER_HOUR, "reconnects / h"),
                  alert=levels(tiers.RECONNECTS_PER_HOUR)).span(8).min(0)
            .description("Successful re-connections in the trailing hour. INFO > 20/h, WARNING > 60/h."))


def errors() -> timeseries.Panel:
    return (graph("Errors by type", q(per_second("bybit_errors_total", "type"), "{{type}}"), stack=True)
            .unit(Unit.PER_SECOND).span(8).min(0)
            .description("Errors counted by the ingest, by the fixed error type (common/errors.py)."))


def api_latency() -> timeseries.Panel:
    return (graph("API response time", q(api_quantile(0.5), "p50"), q(api_quantile(0.95), "p95"),
                  q(api_quantile(0.99), "p99"), alert=levels(API_P95))
            .unit(Unit.SECONDS).min(0).no_value(NO_TRAFFIC)
            .description("Latency of the options API. Target p95 < 500 ms; WARNING when p95 > 2 s."))
