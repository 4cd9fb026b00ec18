"""Recording rules that alerts and dashboards reuse, named ``level:metric:operations``.

Each rule aggregates to the ``job`` label (one exporter, one API today; several later
without a rename), over the ingest replicas too (label ``replica``: summed for totals, max'd
for "any replica"), except the health score, which sums up the whole stack. A NaN sample
would poison every ``avg_over_time`` over it for the length of the window, and reads as a
value: ratios record 0 on a quiet stack (no errors among no requests); the API latency
quantiles without requests, and the health score before Prometheus has scraped the stack,
record nothing, since 0 there would be a false reading (instant answers, everything down).
(The message-lag quantile still records NaN while no message arrives.)
"""

from __future__ import annotations

from typing import Final

from scripts.promconfig.model import RecordingRule, RuleGroup
from scripts.promconfig.placeholders import promql_number
from scripts.promconfig.thresholds import ThresholdSet

#: Smallest request rate divided by, so that "no requests" is an error ratio of 0, not NaN.
TINY_RATE: Final = "1e-12"


def api_error_ratio(window: str) -> str:
    """Share of API requests answered 5xx over ``window`` (0 without traffic)."""
    return f"""(
  sum by (job) (rate(bybit_api_requests_total{{status="5xx"}}[{window}]))
  or
  0 * sum by (job) (rate(bybit_api_requests_total[{window}]))
)
/
clamp_min(sum by (job) (rate(bybit_api_requests_total[{window}])), {TINY_RATE})"""


#: The HA deployment's load balancer (deploy/haproxy/haproxy.cfg): its scrape job and the
#: frontend that carries the clients' API requests.
EDGE_JOB: Final = "haproxy"
EDGE_FRONTEND: Final = "api"


def api_edge_error_ratio(window: str) -> str:
    """Share of the clients' requests HAProxy answered 5xx over ``window``, labelled ``job="api"``.

    What the clients saw: a replica's 503 that HAProxy retried on the other replica is not in it.
    """
    sel = f'job="{EDGE_JOB}",proxy="{EDGE_FRONTEND}"'
    return f"""label_replace(
  (
    sum by (job) (rate(haproxy_frontend_http_responses_total{{{sel},code="5xx"}}[{window}]))
    or
    0 * sum by (job) (rate(haproxy_frontend_http_requests_total{{{sel}}}[{window}]))
  )
  /
  clamp_min(sum by (job) (rate(haproxy_frontend_http_requests_total{{{sel}}}[{window}])), {TINY_RATE}),
  "job", "api", "job", ".*"
)"""


def api_client_error_ratio(window: str) -> str:
    """The availability SLI: measured at the load balancer where there is one, else at the API.

    Behind HAProxy the replicas' own 5xx overstate what clients see (a replica restarting with an
    empty cache during a Redis failover answers 503, HAProxy retries it on the other one and the
    client gets 200: the failover drill paged for that with no client error). The edge series is
    relabelled ``job="api"`` so that ``or`` keeps it instead of the replicas' ratio; without a
    scraped HAProxy (the single-node stack) the API's own ratio is the SLI, as before.
    """
    return f"(\n{api_edge_error_ratio(window)}\n)\nor\n(\n{api_error_ratio(window)}\n)"


def api_latency_p95(window: str) -> str:
    """p95 of API request durations over ``window``; no sample, rather than NaN, without requests.

    With no request in the window every bucket's rate is 0 and ``histogram_quantile`` answers
    NaN, which a recording rule would store as a value; the job's series is kept only where its
    ``+Inf`` bucket (every request) has a rate.
    """
    bucket = "bybit_api_request_duration_seconds_bucket"
    return (f"histogram_quantile(0.95, sum by (job, le) (rate({bucket}[{window}])))\n"
            "and on (job)\n"
            f'(sum by (job) (rate({bucket}{{le="+Inf"}}[{window}])) > 0)')


def health_score(thresholds: ThresholdSet) -> str:
    """0-100: share of the stack's health checks passing; no sample before the stack is scraped.

    Once Prometheus has scraped the exporter and the API (``up`` exists for both, 0 when a
    scrape fails), an absent component counts as failing: an exporter that is down takes
    every metric it reports with it, and that is a score well below 100, not a gap. Before
    that first scrape (a new Prometheus, for one) there is nothing to score: ``vector(0)`` for
    every check would record 0, and ``min_over_time`` of the score would read 0 for as long as
    that sample stays in its window.
    """
    fresh = promql_number(thresholds.slo.data_freshness_seconds)
    memory = promql_number(thresholds.alert("RedisMemoryHigh").number("threshold"))
    checks = (
        "max(bybit_ingest_replicas_up) > bool 0",
        "max(bybit_redis_up)",
        f"max(bybit_data_staleness_seconds) < bool {fresh}",
        f"max(job:bybit_redis_memory:ratio) < bool {memory}",
        "sum(bybit_ws_connected) >= bool sum(bybit_ws_connections_desired)",
        'max(up{job="exporter"})',
        'max(up{job="api"})',
    )
    terms = "\n  + ".join(f"({check} or on () vector(0))" for check in checks)
    scraped = 'count(up{job="exporter"}) and on () count(up{job="api"})'
    return f"100 * (\n    {terms}\n) / {len(checks)}\nand on ()\n({scraped})"


def recording_group(thresholds: ThresholdSet) -> RuleGroup:
    rules = (
        # WebSocket reconnects: the seed's per-hour tiers, and the predictor's short and long rates.
        RecordingRule("job:bybit_ws_reconnects:increase1h",
                      "sum by (job) (increase(bybit_ws_reconnects_total[1h]))"),
        RecordingRule("job:bybit_ws_reconnects:rate15m",
                      "sum by (job) (rate(bybit_ws_reconnects_total[15m]))"),
        RecordingRule("job:bybit_ws_reconnects:rate6h",
                      "sum by (job) (rate(bybit_ws_reconnects_total[6h]))"),
        # Ingest replicas: 1 while any replica is live, 0 when none is (the uptime SLO's input).
        RecordingRule("job:bybit_ingest_up:max", "max by (job) (bybit_ingest_replicas_up > bool 0)"),
        # Message flow per coin, per ingest replica and in all (summed over replicas: two replicas
        # streaming the same symbols count each frame once each).
        RecordingRule("job_coin:bybit_ws_messages:rate5m",
                      "sum by (job, coin) (rate(bybit_ws_messages_total[5m]))"),
        RecordingRule("job_replica:bybit_ws_messages:rate5m",
                      "sum by (job, replica) (rate(bybit_ws_messages_total[5m]))"),
        RecordingRule("job:bybit_ws_messages:rate5m",
                      "sum by (job) (job_coin:bybit_ws_messages:rate5m)"),
        # Ingest errors (the predictor compares the last hour with the six before).
        RecordingRule("job:bybit_errors:rate1h", "sum by (job) (rate(bybit_errors_total[1h]))"),
        RecordingRule("job:bybit_errors:rate6h", "sum by (job) (rate(bybit_errors_total[6h]))"),
        RecordingRule("job:bybit_rest_rate_limited:increase10m",
                      "sum by (job) (increase(bybit_rest_rate_limited_total[10m]))"),
        # API traffic, errors, latency.
        RecordingRule("job:bybit_api_requests:rate5m",
                      "sum by (job) (rate(bybit_api_requests_total[5m]))"),
        RecordingRule("job:bybit_api_requests:error_ratio_rate5m", api_error_ratio("5m")),
        RecordingRule("job:bybit_api_request_duration_seconds:p95_rate5m", api_latency_p95("5m")),
        RecordingRule("job:bybit_api_request_duration_seconds:p95_rate1h", api_latency_p95("1h")),
        RecordingRule("job:bybit_message_lag_seconds:p95_rate1h",
                      "histogram_quantile(0.95, sum by (job, le) "
                      "(rate(bybit_message_lag_seconds_bucket[1h])))"),
        # Redis memory against capacity: maxmemory, or the exporter's fallback capacity when
        # maxmemory is 0 (REDIS_CAPACITY_BYTES or the host's memory); no ratio without a capacity.
        RecordingRule("job:bybit_redis_memory:ratio",
                      "max by (job) (bybit_redis_memory_used_bytes)\n"
                      "/\n"
                      "max by (job) (bybit_redis_memory_max_bytes > 0)"),
        RecordingRule(":bybit_health:score", health_score(thresholds)),
    )
    return RuleGroup("bybit.recording", tuple(r.render() for r in rules))
