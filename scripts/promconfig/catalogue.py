"""Every threshold alert of the tracker: the seed's three tiers and its failure predictor.

Expressions and annotations only; the numbers come from prometheus/thresholds.yml through
``[[key]]`` placeholders. The SLO burn-rate alerts are built in slo.py. Rules of thumb
followed here, so the stack stays quiet when healthy:

- counters only through ``rate``/``increase`` (a restarted component's counter reset is not
  an event);
- no ``absent()`` except for the exporter itself: a coin removed from the configuration makes
  its series vanish, and vanishing series must not alert;
- every ratio has a denominator guard (no capacity, no traffic: no alert);
- comparisons with "a day ago" (``offset``) stay silent until there is a day of history.
"""

from __future__ import annotations

from typing import Final

from scripts.promconfig.model import HEARTBEAT_SEVERITY, AlertTemplate

#: Rule group name -> the alerts it holds, in the order they render.
CATALOGUE: Final[dict[str, tuple[AlertTemplate, ...]]] = {
    "bybit.critical": (
        AlertTemplate(
            name="NoDataFlowing", severity="critical", condition="data_flow",
            expr="min by (job) (bybit_data_staleness_seconds) > [[threshold]]",
            summary="No option data for any coin for more than [[threshold|duration]]",
            description=(
                "The newest ticker of every coin is older than [[threshold|duration]] (the freshest is "
                "{{ $value | humanizeDuration }} old): no option data is flowing into Redis and the API "
                "serves stale prices."),
            value="duration"),
        AlertTemplate(
            name="CoinDataStale", severity="critical", condition="data_flow",
            expr="bybit_data_staleness_seconds > [[threshold]]",
            summary="No {{ $labels.coin }} option data for more than [[threshold|duration]]",
            description=(
                "The newest {{ $labels.coin }} ticker is {{ $value | humanizeDuration }} old (critical above "
                "[[threshold|duration]]): {{ $labels.coin }} options are not being updated."),
            value="duration"),
        AlertTemplate(
            name="RedisDown", severity="critical", condition="redis",
            expr="max by (job) (bybit_redis_up) == 0",
            summary="Redis is unreachable",
            description=(
                "The exporter has not reached Redis for [[for|duration]]: the ingest cannot store tickers "
                "and the API cannot read them."),
            value="state"),
        AlertTemplate(
            name="RedisMemoryCritical", severity="critical", condition="redis_memory",
            expr="job:bybit_redis_memory:ratio > [[threshold]]",
            summary="Redis memory above [[threshold|percent]] of capacity",
            description=(
                "Redis uses {{ $value | humanizePercentage }} of its capacity (critical above "
                "[[threshold|percent]]). At maxmemory it evicts option hashes; without maxmemory the host "
                "itself runs out of memory."),
            value="percent"),
        AlertTemplate(
            name="WebSocketReconnectFailing", severity="critical", condition="ws_reconnects",
            expr="max by (job, replica) (bybit_ws_consecutive_failures) > [[threshold]]",
            summary="WebSocket cannot reconnect: more than [[threshold]] attempts failed in a row",
            description=(
                "A connection of ingest replica {{ $labels.replica }} to the exchange's option stream has "
                "failed {{ $value }} consecutive attempts "
                "(critical above [[threshold]]); its share of the option symbols gets no updates."),
            value="number"),
        AlertTemplate(
            name="ApiDown", severity="critical", condition="api_availability",
            expr='up{job="api"} == 0',
            summary="The options API does not answer",
            description=(
                "Prometheus has failed to scrape the API at {{ $labels.instance }} for [[for|duration]]: "
                "users cannot fetch options data."),
            value="state"),
        AlertTemplate(
            name="ApiAllRequestsFailing", severity="critical", condition="api_availability",
            expr="job:bybit_api_requests:error_ratio_rate5m >= [[threshold]]",
            summary="The options API answers (almost) every request with 5xx",
            description=(
                "{{ $value | humanizePercentage }} of API requests over the last 5 minutes were answered "
                "5xx (critical at [[threshold|percent]] or more): the API is up but unusable."),
            value="percent"),
        # bybit_ingest_replicas_up, not max(bybit_ingest_up): it is 0 (not absent) when no replica is
        # listed at all, e.g. a Redis that restarted empty while every ingest is down.
        AlertTemplate(
            name="IngestDown", severity="critical", condition="ingest",
            expr="max by (job) (bybit_ingest_replicas_up) == 0",
            summary="No ingest replica is writing: every heartbeat is lost",
            description=(
                "No ingest replica has had a fresh heartbeat in Redis for [[for|duration]]: every ingest "
                "process is dead or stuck, and nothing writes option data."),
            value="state"),
        AlertTemplate(
            name="ExporterDown", severity="critical", condition="exporter",
            expr='up{job="exporter"} == 0 or absent(up{job="exporter"})',
            summary="The metrics exporter is down: the tracker is unmonitored",
            description=(
                "Prometheus has had no successful scrape of the exporter for [[for|duration]]. Every alert "
                "on ingest, data and Redis metrics is blind until it is back."),
            value="state"),
        # Found by the chaos drill: with Alertmanager stopped nothing covered it. This alert cannot
        # page through the Alertmanager it is about; it shows in Prometheus and on the dashboards,
        # and pages through an HA peer where there is one (runbook: add a dead-man's switch).
        AlertTemplate(
            name="AlertmanagerDown", severity="critical", condition="alerting",
            expr='up{job="alertmanager"} == 0',
            summary="Alertmanager does not answer: alerts are not being delivered",
            description=(
                "Prometheus has failed to scrape Alertmanager at {{ $labels.instance }} for "
                "[[for|duration]]: alerts still fire in Prometheus, but no notification reaches anyone."),
            value="state"),
    ),
    "bybit.warning": (
        AlertTemplate(
            name="WebSocketReconnectsHigh", severity="warning", condition="ws_reconnects",
            expr="job:bybit_ws_reconnects:increase1h > [[threshold]]",
            summary="More than [[threshold]] WebSocket reconnections in the last hour",
            description=(
                "{{ $value | humanize }} WebSocket re-connections in the last hour (warning above "
                "[[threshold]]/h): connections keep dropping, and each drop loses updates until it is back."),
            value="per_hour"),
        # Found by the soak/chaos drills: staleness is per coin (its freshest option), so a
        # connection that stays down while others carry the same coin hides behind their data.
        AlertTemplate(
            name="WebSocketConnectionDown", severity="warning", condition="ws_reconnects",
            expr="max by (job, replica) (bybit_ws_connections_desired - bybit_ws_connected) > [[threshold]]",
            summary="A WebSocket connection of the shard plan has been down for [[for|duration]]",
            description=(
                "{{ $value }} of ingest replica {{ $labels.replica }}'s WebSocket connections have not been "
                "up and subscribed for "
                "[[for|duration]]: the option symbols of their shards get no updates, although each coin "
                "can still look fresh through its other connections."),
            value="number"),
        AlertTemplate(
            name="RedisMemoryHigh", severity="warning", condition="redis_memory",
            expr="job:bybit_redis_memory:ratio > [[threshold]]",
            summary="Redis memory above [[threshold|percent]] of capacity",
            description=(
                "Redis uses {{ $value | humanizePercentage }} of its capacity (warning above "
                "[[threshold|percent]]). The ingest now writes option hashes with the short TTL."),
            value="percent"),
        AlertTemplate(
            name="ApiLatencyHigh", severity="warning", condition="api_latency",
            expr="job:bybit_api_request_duration_seconds:p95_rate5m > [[threshold]]",
            summary="API p95 response time above [[threshold|duration]]",
            description=(
                "95 % of API requests over the last 5 minutes took up to {{ $value | humanizeDuration }} "
                "(warning above [[threshold|duration]]; the target is 500ms)."),
            value="duration"),
        AlertTemplate(
            name="ApiErrorRateHigh", severity="warning", condition="api_availability",
            expr="job:bybit_api_requests:error_ratio_rate5m > [[threshold]]",
            summary="More than [[threshold|percent]] of API requests fail",
            description=(
                "{{ $value | humanizePercentage }} of API requests over the last 5 minutes were answered "
                "5xx (warning above [[threshold|percent]])."),
            value="percent"),
        AlertTemplate(
            name="IngestMemoryHigh", severity="warning", condition="ingest",
            expr="max by (job, replica) (bybit_ingest_resident_memory_bytes) > [[threshold]]",
            summary="Ingest memory above [[threshold|bytes]]",
            description=(
                "Ingest replica {{ $labels.replica }} holds {{ $value | humanize1024 }}B resident "
                "(warning above [[threshold|bytes]]; the target is 100MiB): a leak or a backlog waiting "
                "for Redis."),
            value="bytes"),
        # One asyncio process uses at most one core: near it, frames wait in the socket buffers and
        # the lag grows (the seed's "100 % CPU" symptom). Per process: INGEST_WORKERS' workers are
        # replicas of their own (<INGEST_REPLICA>-w<i>), and more workers is the remedy.
        AlertTemplate(
            name="IngestCpuHigh", severity="warning", condition="ingest",
            expr="max by (job, replica) (rate(bybit_ingest_cpu_seconds_total[5m])) > [[threshold]]",
            summary="Ingest process above [[threshold|percent]] of a core",
            description=(
                "Ingest replica {{ $labels.replica }} uses {{ $value | humanizePercentage }} of a core "
                "(warning above [[threshold|percent]]; the target is 20%). One process cannot use more "
                "than one core: near it, frames wait and the exchange lag grows. Spread the symbols "
                "over more processes with INGEST_WORKERS."),
            value="percent"),
        # HA: one of several ingest replicas stopped while another still writes. The data stays fresh
        # (no critical), but the next failure stops it. A replica is listed for a day after its last
        # heartbeat (common/keys.py); when none is left writing, IngestDown (critical) takes over.
        AlertTemplate(
            name="IngestReplicaDown", severity="warning", condition="ingest",
            expr=(
                "max by (job, replica) (bybit_ingest_up) == 0\n"
                "and on (job)\n"
                "max by (job) (bybit_ingest_replicas_up) > 0"),
            summary="Ingest replica {{ $labels.replica }} is down; another replica still writes",
            description=(
                "Ingest replica {{ $labels.replica }} has had no fresh heartbeat for [[for|duration]] while "
                "another replica still writes: the data stays fresh, but the ingest is no longer "
                "redundant and one more failure stops it."),
            value="state"),
        AlertTemplate(
            name="RestRateLimited", severity="warning", condition="rest",
            expr="job:bybit_rest_rate_limited:increase10m > [[threshold]]",
            summary="The exchange keeps rate-limiting the ingest's REST calls",
            description=(
                "{{ $value | humanize }} REST rate-limit answers in the last 10 minutes, and some in every "
                "10 minutes for [[for|duration]]: instrument discovery and refreshes are delayed."),
            value="number"),
    ),
    "bybit.info": (
        AlertTemplate(
            name="WebSocketReconnectsElevated", severity="info", condition="ws_reconnects",
            expr="job:bybit_ws_reconnects:increase1h > [[threshold]]",
            summary="More than [[threshold]] WebSocket reconnections in the last hour",
            description=(
                "{{ $value | humanize }} WebSocket re-connections in the last hour (info above "
                "[[threshold]]/h, the seed's target)."),
            value="per_hour"),
        AlertTemplate(
            name="RedisMemoryElevated", severity="info", condition="redis_memory",
            expr="job:bybit_redis_memory:ratio > [[threshold]]",
            summary="Redis memory above [[threshold|percent]] of capacity",
            description=(
                "Redis uses {{ $value | humanizePercentage }} of its capacity (info above "
                "[[threshold|percent]])."),
            value="percent"),
        AlertTemplate(
            name="NewErrorType", severity="info", condition="errors",
            expr=(
                "sum by (job, type) (increase(bybit_errors_total[10m])) > 0\n"
                "unless on (job, type)\n"
                "sum by (job, type) (increase(bybit_errors_total[1d] offset 10m)) > 0"),
            summary="A new kind of error appeared: {{ $labels.type }}",
            description=(
                "{{ $value | humanize }} errors of type {{ $labels.type }} in the last 10 minutes, and none "
                "in the day before."),
            value="number"),
        AlertTemplate(
            name="ApiLatencyTrendRising", severity="info", condition="api_latency",
            expr=(
                "job:bybit_api_request_duration_seconds:p95_rate1h\n"
                "  > [[factor]] * (job:bybit_api_request_duration_seconds:p95_rate1h offset 1d)\n"
                "and\n"
                "job:bybit_api_request_duration_seconds:p95_rate1h > [[min_seconds]]"),
            summary="API response times are degrading",
            description=(
                "API p95 over the last hour is {{ $value | humanizeDuration }}, more than [[factor]] times "
                "the same hour yesterday."),
            value="duration"),
        AlertTemplate(
            name="MessageLagTrendRising", severity="info", condition="data_flow",
            expr=(
                "job:bybit_message_lag_seconds:p95_rate1h\n"
                "  > [[factor]] * (job:bybit_message_lag_seconds:p95_rate1h offset 1d)\n"
                "and\n"
                "job:bybit_message_lag_seconds:p95_rate1h > [[min_seconds]]"),
            summary="Lag from the exchange is degrading",
            description=(
                "p95 of the exchange-to-ingest lag over the last hour is {{ $value | humanizeDuration }}, "
                "more than [[factor]] times the same hour yesterday."),
            value="duration"),
    ),
    "bybit.predictive": (
        AlertTemplate(
            name="RedisMemoryWillFill", severity="warning", condition="redis_memory",
            expr=(
                "predict_linear(bybit_redis_memory_used_bytes[6h], [[horizon|seconds]])\n"
                "  > on (job, instance)\n"
                "(bybit_redis_memory_max_bytes > 0)"),
            summary="Redis memory will reach capacity within [[horizon]]",
            description=(
                "At the growth of the last 6 hours Redis will use {{ $value | humanize1024 }}B in "
                "[[horizon]], more than its capacity."),
            value="bytes", extra_labels={"predictive": "true"}),
        AlertTemplate(
            name="WebSocketReconnectsEscalating", severity="warning", condition="ws_reconnects",
            expr=(
                "job:bybit_ws_reconnects:rate15m * 3600\n"
                "  > [[factor]] * 3600 * (job:bybit_ws_reconnects:rate6h offset 15m)\n"
                "and\n"
                "job:bybit_ws_reconnects:rate15m * 3600 > [[min_per_hour]]"),
            summary="WebSocket reconnections are escalating",
            description=(
                "WebSocket re-connections run at {{ $value | humanize }}/h over the last 15 minutes, more "
                "than [[factor]] times the rate of the 6 hours before: connection trouble is getting worse."),
            value="per_hour", extra_labels={"predictive": "true"}),
        AlertTemplate(
            name="ErrorRateRising", severity="info", condition="errors",
            expr=(
                "job:bybit_errors:rate1h * 3600\n"
                "  > [[factor]] * 3600 * (job:bybit_errors:rate6h offset 1h)\n"
                "and\n"
                "job:bybit_errors:rate1h * 3600 > [[min_per_hour]]"),
            summary="The ingest's error rate is rising",
            description=(
                "{{ $value | humanize }} errors/h over the last hour, more than [[factor]] times the rate "
                "of the 6 hours before."),
            value="per_hour", extra_labels={"predictive": "true"}),
    ),
}

#: The dead-man's switch, in a rule file of its own (prometheus/rules/watchdog.yml): it is about
#: the alerting pipeline, not the tracker, so the "quiet when healthy" cases, which load the
#: tracker's rule files, still mean "nothing fires". It always fires (``vector(1)`` needs no
#: scrape target, so it fires even when every target is down); Alertmanager forwards it every
#: minute to an external service that pages when it stops arriving: Prometheus dead, rules not
#: evaluated, Alertmanager dead or unable to send. AlertmanagerDown cannot cover the last two.
HEARTBEAT: Final[dict[str, tuple[AlertTemplate, ...]]] = {
    "bybit.watchdog": (
        AlertTemplate(
            name="Watchdog", severity=HEARTBEAT_SEVERITY, condition="watchdog",
            expr="vector(1)",
            summary="Dead-man's switch: the alerting pipeline is alive",
            description=(
                "Always firing, by design. Alertmanager forwards it every minute to an external "
                "dead-man's switch, which pages when it stops arriving: then Prometheus is not "
                "evaluating rules or Alertmanager is not delivering notifications."),
            value="state"),
    ),
}
