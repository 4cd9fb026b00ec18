"""Generate the Grafana dashboards (grafana/dashboards/*.json) from typed Python.

Hand-edited dashboard JSON drifts: ids collide, a unit is forgotten, a threshold stops
matching the alert it mirrors. Here every panel is a few typed lines, the layout is computed,
the thresholds come from :mod:`scripts.healthcheck.tiers` (the alert tiers' numbers) and the
JSON is written sorted and stable, so a review reads the Python diff and the JSON follows.

    python -m scripts.gen_dashboards           # rewrite grafana/dashboards/*.json
    python -m scripts.gen_dashboards --check   # exit 1 when the committed JSON is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common.config import Settings
from scripts.healthcheck import tiers
from scripts.healthcheck.tiers import Thresholds

ROOT: Final = Path(__file__).resolve().parent.parent
OUT_DIR: Final = ROOT / "grafana" / "dashboards"
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
TAG: Final = "bybit-options-tracker"
SCHEMA_VERSION: Final = 39
GRID_WIDTH: Final = 24

# The alert tiers' colours: info blue, warning orange, critical red.
TIER_COLOURS: Final = {"ok": "green", "info": "blue", "warning": "orange", "critical": "red"}

# Units (Grafana unit ids): one per kind of quantity, used everywhere.
SECONDS: Final = "s"
BYTES: Final = "bytes"
PER_SECOND: Final = "ops"
RATIO: Final = "percentunit"
COUNT: Final = "short"
PERCENT: Final = "percent"
TIMESTAMP: Final = "dateTimeFromNow"


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression and the legend of its series."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True, slots=True)
class Floor:
    """Thresholds for a measurement where higher is better (availability, budget left, health):
    red below ``warning``, orange from ``warning``, green from ``target``."""

    warning: float
    target: float


@dataclass(frozen=True, slots=True)
class Panel:
    """A panel: what it shows, in which unit, coloured by which thresholds, how wide."""

    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | gauge | table | bargauge
    unit: str = COUNT
    description: str = ""
    thresholds: Thresholds | Floor | None = None
    width: int = 6
    height: int = 7
    decimals: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, colour)
    stack: bool = False
    time_from: str | None = None  # panel-specific time range, e.g. "7d" for trends
    no_value: str | None = None  # shown instead of "No data" when the queries return nothing


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]
    collapsed: bool = False


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    filename: str
    time_from: str = "now-6h"
    refresh: str = "30s"
    tags: tuple[str, ...] = field(default=(TAG,))


def q(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant)


def per_second(counter: str, by: str = "") -> str:
    """Per-second rate of a counter summed over series (``by`` keeps one label)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({counter}[$__rate_interval]))"


# --- rendering ----------------------------------------------------------------------------------------


def _thresholds(t: Thresholds | Floor | None) -> dict[str, Any]:
    if isinstance(t, Floor):
        return {"mode": "absolute", "steps": [
            {"color": TIER_COLOURS["critical"], "value": None},
            {"color": TIER_COLOURS["warning"], "value": t.warning},
            {"color": TIER_COLOURS["ok"], "value": t.target}]}
    steps: list[dict[str, Any]] = [{"color": TIER_COLOURS["ok"], "value": None}]
    if t is not None:
        for name, bound in (("info", t.info), ("warning", t.warning), ("critical", t.critical)):
            if bound is not None:
                steps.append({"color": TIER_COLOURS[name], "value": bound})
    return {"mode": "absolute", "steps": steps}


def _mappings(panel: Panel) -> list[dict[str, Any]]:
    if not panel.mappings:
        return []
    options = {value: {"text": text, "color": colour, "index": i}
               for i, (value, text, colour) in enumerate(panel.mappings)}
    return [{"type": "value", "options": options}]


def _targets(panel: Panel) -> list[dict[str, Any]]:
    targets = []
    for i, query in enumerate(panel.queries):
        target: dict[str, Any] = {
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + i),
            "range": not (query.instant or panel.kind == "table"),
            "instant": query.instant or panel.kind == "table",
        }
        if panel.kind == "table":
            target["format"] = "table"
        targets.append(target)
    return targets


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel.thresholds),
        "mappings": _mappings(panel),
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
    }
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.no_value is not None:
        defaults["noValue"] = panel.no_value
    if panel.minimum is not None:
        defaults["min"] = panel.minimum
    if panel.maximum is not None:
        defaults["max"] = panel.maximum
    options: dict[str, Any]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            # Thresholds drawn as dashed lines: the alert levels are visible on the graph.
            "thresholdsStyle": {"mode": "dashed" if panel.thresholds else "off"},
        }
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif panel.kind in {"stat", "gauge", "bargauge"}:
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "orientation": "auto"}
        if panel.kind == "stat":
            options |= {"colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                        "textMode": "auto"}
        else:
            options |= {"showThresholdMarkers": True, "showThresholdLabels": False}
    else:  # table
        options = {"showHeader": True, "cellHeight": "sm"}
    doc: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": _targets(panel),
    }
    if panel.kind == "table":
        doc["transformations"] = [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True, "alertstate": True}}}]
    if panel.time_from:
        doc["timeFrom"] = panel.time_from
    return doc


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, panels laid out row by row on the 24-column grid."""
    panels: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row in dashboard.rows:
        panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": row.collapsed,
                       "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": dashboard.refresh,
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True, "title": "Tracker dashboards",
                   "includeVars": True, "keepTime": True}],
        "templating": {"list": [{
            "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": [],
        }]},
        "panels": panels,
    }


def dump(dashboard: Dashboard) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline (reviewable diffs)."""
    return json.dumps(render(dashboard), indent=2, sort_keys=True) + "\n"


# --- the queries every dashboard shares -----------------------------------------------------------------

# Where the alerts use a recording rule, the dashboards draw the same series.
MEMORY_RATIO: Final = "max(job:bybit_redis_memory:ratio)"
RECONNECTS_PER_HOUR: Final = "sum(job:bybit_ws_reconnects:increase1h)"
#: Requests a client makes: Prometheus' scrapes and the probes are not the API's traffic.
API_CLIENT_ROUTES: Final = 'route!~"/metrics|/healthz|/readyz"'
#: What the API latency panels show while nobody calls the API (their queries return nothing).
NO_TRAFFIC: Final = "no traffic"


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


API_ERROR_RATIO: Final = "max(job:bybit_api_requests:error_ratio_rate5m)"
LAG_P = "histogram_quantile({q}, sum by (le) (rate(bybit_message_lag_seconds_bucket[$__rate_interval])))"
UP_MAPPINGS: Final = (("0", "DOWN", "red"), ("1", "UP", "green"))

HEALTH_SCORE: Final = ":bybit_health:score"
#: Ingest replicas (label ``replica``): 1 while any is live (0, not nothing, when none is listed).
INGEST_ANY_UP: Final = "clamp_max(max(bybit_ingest_replicas_up), 1)"
INGEST_CPU: Final = "sum by (replica) (rate(bybit_ingest_cpu_seconds_total[$__rate_interval]))"
INGEST_RSS: Final = "max by (replica) (bybit_ingest_resident_memory_bytes)"
HEARTBEAT_AGE_BY_REPLICA: Final = "max by (replica) (bybit_ingest_heartbeat_age_seconds)"
#: Ingest resident memory: the seed's 100 MB target (info) and the alert's level (warning).
INGEST_MEMORY: Final = Thresholds(info=tiers.PROCESS_MEMORY_TARGET_BYTES,
                                  warning=tiers.INGEST_MEMORY_BYTES.warning)
#: The heartbeat key expires this long after the ingest's last write: older is a dead ingest.
HEARTBEAT_AGE: Final = Thresholds(critical=Settings().heartbeat_ttl)


def _memory_panel(width: int = 6) -> Panel:
    return Panel("Redis memory (of capacity)", (q(MEMORY_RATIO, "used"),), kind="gauge", unit=RATIO,
                 thresholds=tiers.REDIS_MEMORY_RATIO, minimum=0, maximum=1, width=width,
                 description="used_memory / maxmemory (or the configured capacity). "
                             "INFO > 50 %, WARNING > 70 %, CRITICAL > 90 %.")


def _staleness_panel(width: int = 8) -> Panel:
    return Panel("Staleness per coin", (q("bybit_data_staleness_seconds", "{{coin}}"),), unit=SECONDS,
                 thresholds=Thresholds(info=tiers.FRESHNESS_TARGET_SECONDS,
                                       critical=tiers.STALENESS_SECONDS.critical),
                 width=width, minimum=0,
                 description="Seconds since each coin's newest ticker. Freshness target 30 s; "
                             "CRITICAL when no data for 5 minutes.")


def _reconnects_panel(width: int = 8) -> Panel:
    return Panel("WebSocket reconnects per hour", (q(RECONNECTS_PER_HOUR, "reconnects / h"),),
                 unit=COUNT, thresholds=tiers.RECONNECTS_PER_HOUR, width=width, minimum=0,
                 description="Successful re-connections in the trailing hour. INFO > 20/h, WARNING > 60/h.")


def _errors_panel(width: int = 8) -> Panel:
    return Panel("Errors by type", (q(per_second("bybit_errors_total", "type"),
                                      "{{type}}"),), unit=PER_SECOND, width=width, stack=True, minimum=0,
                 description="Errors counted by the ingest, by the fixed error type (common/errors.py).")


def _api_latency_panel(width: int = 6) -> Panel:
    return Panel("API response time", (q(api_quantile(0.5), "p50"), q(api_quantile(0.95), "p95"),
                                       q(api_quantile(0.99), "p99")),
                 unit=SECONDS, width=width, minimum=0, no_value=NO_TRAFFIC,
                 thresholds=Thresholds(info=tiers.API_LATENCY_P95_TARGET_SECONDS,
                                       warning=tiers.API_LATENCY_P95_SECONDS.warning),
                 description="Latency of the options API. Target p95 < 500 ms; WARNING when p95 > 2 s.")


def _alerts_by_tier_panels() -> tuple[Panel, ...]:
    panels = []
    for severity in ("critical", "warning", "info"):
        panels.append(Panel(
            f"Firing {severity}",
            (q(f'count(ALERTS{{alertstate="firing", severity="{severity}"}}) or vector(0)', severity),),
            kind="stat", unit=COUNT, width=4, height=5, decimals=0,
            thresholds=Thresholds(**{severity: 0.5}), mappings=(("0", "none", TIER_COLOURS["ok"]),),
            description=f"Alerts of tier {severity} firing now (Prometheus' ALERTS series)."))
    panels.append(Panel("Firing alerts", (q('ALERTS{alertstate="firing"}', instant=True),), kind="table",
                        width=12, height=5, description="Every firing alert with its labels."))
    return tuple(panels)


# --- dashboards -------------------------------------------------------------------------------------------

OVERVIEW: Final = Dashboard(
    uid="bybit-overview",
    title="Bybit Options Tracker / Overview",
    description="Is data flowing, is the API answering, is anything about to break: the seed's "
                "real-time, short-term and long-term views, and the alerts firing by tier.",
    filename="overview.json",
    rows=(
        Row("Alerts by tier", _alerts_by_tier_panels()),
        Row("Real-time", (
            Panel("Ingest", (q(INGEST_ANY_UP, "ingest"),), kind="stat", width=3,
                  mappings=UP_MAPPINGS, thresholds=Thresholds(), decimals=0,
                  description="UP while at least one ingest replica's heartbeat is fresh."),
            Panel("WebSocket connections", (q("sum(bybit_ws_connected)", "connected"),
                                            q("sum(bybit_ws_connections_desired)", "desired")),
                  kind="stat", width=3, decimals=0,
                  description="Connections open and subscribed, against those the shard plan needs."),
            Panel("Messages / s", (q(per_second("bybit_ws_messages_total", "coin"),
                                     "{{coin}}"),), unit=PER_SECOND, width=6, stack=True, minimum=0,
                  description="Ticker frames accepted per second, by coin."),
            _api_latency_panel(),
            _memory_panel(),
        )),
        Row("Short-term", (
            _reconnects_panel(),
            _errors_panel(),
            _staleness_panel(),
            Panel("Ingest CPU", (q(INGEST_CPU, "{{replica}}"),),
                  unit=RATIO, width=8, minimum=0,
                  thresholds=Thresholds(warning=tiers.PROCESS_CPU_TARGET_RATIO),
                  description="CPU seconds per second of each ingest replica. Target < 20 % of a core."),
            Panel("Ingest memory", (q(INGEST_RSS, "{{replica}}"),), unit=BYTES, width=8,
                  minimum=0, thresholds=INGEST_MEMORY,
                  description="Resident memory of each ingest replica. Target < 100 MB."),
            Panel("Targets up", (q("up", "{{job}}"),), kind="stat", width=8, decimals=0,
                  mappings=UP_MAPPINGS, thresholds=Thresholds(),
                  description="Prometheus' scrape of each job: exporter, api, prometheus, alertmanager."),
        )),
        Row("Long-term", (
            Panel("Health score", (q(HEALTH_SCORE, "health"),), kind="gauge", unit=PERCENT, width=6,
                  minimum=0, maximum=100,
                  thresholds=Floor(warning=66, target=99), description=(
                      "Share of health checks passing: ingest up, Redis up, data fresher than 30 s, "
                      "Redis memory under 70 %, all connections up, exporter and API scraped. "
                      "No value until Prometheus has scraped the exporter and the API.")),
            Panel("Message rate trend",
                  (q("sum(rate(bybit_ws_messages_total[1h]))", "messages / s (1h avg)"),),
                  unit=PER_SECOND, width=6, minimum=0, time_from="7d",
                  description="Hourly average of accepted ticker frames per second over a week."),
            Panel("Options tracked", (q("sum by (coin) (bybit_options_tracked)", "{{coin}}"),), width=6,
                  stack=True, time_from="7d", minimum=0,
                  description="Symbols in each coin's index: new expiries list daily, delivered ones go."),
            Panel("Redis memory: capacity planning", (
                q("max(bybit_redis_memory_used_bytes)", "used"),
                q("predict_linear(max(bybit_redis_memory_used_bytes)[6h:5m], 7 * 86400)", "in 7 days"),
                q("max(bybit_redis_memory_max_bytes)", "capacity"),
            ), unit=BYTES, width=6, minimum=0, time_from="7d",
                  description="Used memory, its linear projection a week ahead, and the capacity."),
        )),
    ),
)

INGEST: Final = Dashboard(
    uid="bybit-ingest",
    title="Bybit Options Tracker / Ingest",
    description="The ingest worker: connections, subscriptions, message flow and lag, errors, writes.",
    filename="ingest.json",
    rows=(
        # HA: each ingest replica (label replica, INGEST_REPLICA) heartbeats on its own; one down
        # while another writes is IngestReplicaDown (warning), none writing is IngestDown.
        Row("Replicas", (
            Panel("Replicas up", (q("max(bybit_ingest_replicas_up)", "up"),), kind="stat", width=4,
                  decimals=0, thresholds=Floor(warning=1, target=1), description=(
                      "Ingest replicas with a fresh heartbeat. 0: nothing writes (IngestDown); fewer "
                      "than deployed: a replica is down (IngestReplicaDown).")),
            Panel("Heartbeat age by replica", (q(HEARTBEAT_AGE_BY_REPLICA, "{{replica}}"),), unit=SECONDS,
                  width=10, minimum=0, thresholds=HEARTBEAT_AGE, description=(
                      "Seconds since each replica's last heartbeat; a replica that stopped is shown (its "
                      "age growing) for a day after it did.")),
            Panel("Messages / s by replica", (q(per_second("bybit_ws_messages_total", "replica"),
                                                "{{replica}}"),), unit=PER_SECOND, width=10, minimum=0,
                  description="Ticker frames each replica accepted per second (each streams every symbol)."),
        )),
        Row("Connections", (
            Panel("Connected vs desired", (q("sum(bybit_ws_connected)", "connected"),
                                           q("sum(bybit_ws_connections_desired)", "desired")),
                  width=8, minimum=0, decimals=0),
            Panel("Consecutive failures", (q("max(bybit_ws_consecutive_failures)", "failures"),),
                  width=4, kind="stat", decimals=0, thresholds=tiers.CONSECUTIVE_FAILURES,
                  description="Highest run of failed attempts over connections. CRITICAL above 10."),
            Panel("Circuits open", (q("max(bybit_ws_circuit_open)", "open"),), kind="stat", width=4,
                  decimals=0, thresholds=Thresholds(warning=0.5),
                  description="Connections whose circuit breaker is open (waiting before a probe)."),
            Panel("Subscriptions", (q("sum(bybit_ws_subscriptions)", "topics"),), kind="stat", width=4,
                  decimals=0),
            Panel("Uptime", (q("time() - max(bybit_ingest_start_time_seconds)", "uptime"),), kind="stat",
                  width=4, unit=SECONDS),
            _reconnects_panel(width=12),
            Panel("Connection attempts", (
                q(per_second("bybit_ws_reconnects_total"), "reconnects"),
                q(per_second("bybit_ws_connect_failures_total"), "failures")),
                unit=PER_SECOND, width=12, minimum=0),
        )),
        Row("Data flow", (
            Panel("Messages / s by coin", (q(per_second("bybit_ws_messages_total", "coin"),
                                             "{{coin}}"),), unit=PER_SECOND, width=8, stack=True, minimum=0),
            Panel("Exchange lag", (q(LAG_P.format(q=0.5), "p50"), q(LAG_P.format(q=0.95), "p95"),
                                   q(LAG_P.format(q=0.99), "p99")), unit=SECONDS, width=8, minimum=0,
                  thresholds=Thresholds(info=tiers.FRESHNESS_TARGET_SECONDS),
                  description="Arrival time minus the frame's exchange timestamp."),
            _staleness_panel(),
            Panel("Last update", (q("bybit_data_last_update_timestamp_seconds * 1000", "{{coin}}"),),
                  kind="stat", unit=TIMESTAMP, width=8),
            Panel("Options tracked", (q("bybit_options_tracked", "{{coin}}"),), kind="stat", width=8,
                  decimals=0),
            Panel("Redis writes / s", (q(per_second("bybit_redis_writes_total"), "writes"),),
                  unit=PER_SECOND, width=8, minimum=0),
        )),
        Row("Errors and upstream", (
            _errors_panel(width=12),
            Panel("REST calls", (q(per_second("bybit_rest_requests_total"), "requests"),
                                 q(per_second("bybit_rest_rate_limited_total"), "rate limited")),
                  unit=PER_SECOND, width=12, minimum=0),
        )),
        Row("Process", (
            Panel("CPU", (q(INGEST_CPU, "{{replica}}"),), unit=RATIO,
                  width=8, minimum=0, thresholds=Thresholds(warning=tiers.PROCESS_CPU_TARGET_RATIO)),
            Panel("Resident memory", (q(INGEST_RSS, "{{replica}}"),), unit=BYTES, width=8,
                  minimum=0, thresholds=INGEST_MEMORY),
            Panel("Heartbeat age", (q(HEARTBEAT_AGE_BY_REPLICA, "{{replica}}"),), unit=SECONDS, width=4,
                  kind="stat", thresholds=HEARTBEAT_AGE),
            Panel("Pending symbols", (q("sum(bybit_ingest_pending_symbols)", "pending"),), width=4,
                  kind="stat", decimals=0,
                  description="Symbols held in memory waiting for Redis (grows while Redis is down)."),
        )),
    ),
)

API: Final = Dashboard(
    uid="bybit-api",
    title="Bybit Options Tracker / API",
    description="The options API: traffic, errors, latency and its response cache.",
    filename="api.json",
    rows=(
        Row("Traffic", (
            Panel("API scraped", (q('max(up{job="api"})', "api"),), kind="stat", width=4,
                  mappings=UP_MAPPINGS, thresholds=Thresholds(), decimals=0),
            Panel("Requests / s by status", (q(per_second("bybit_api_requests_total", "status"),
                                               "{{status}}"),),
                  unit=PER_SECOND, width=10, stack=True, minimum=0),
            Panel("Requests / s by route", (q(per_second("bybit_api_requests_total", "route"),
                                              "{{route}}"),),
                  unit=PER_SECOND, width=10, stack=True, minimum=0),
            Panel("Error ratio (5xx)", (q(API_ERROR_RATIO, "5xx"),), unit=RATIO, width=12, minimum=0,
                  thresholds=tiers.API_ERROR_RATIO,
                  description="Share of requests answered 5xx over 5 minutes. WARNING above 5 %."),
            Panel("Cache results", (q(per_second("bybit_api_cache_requests_total", "result"),
                                      "{{result}}"),), unit=PER_SECOND, width=12, stack=True, minimum=0,
                  description="hit: served from the response cache; miss: one Redis read; "
                              "stale: served old while Redis fails."),
        )),
        Row("Latency", (
            _api_latency_panel(width=12),
            Panel("p95 by route", (q(api_quantile(0.95, by="route", matchers=""), "{{route}}"),),
                  unit=SECONDS, width=12, minimum=0, no_value=NO_TRAFFIC,
                  thresholds=Thresholds(info=tiers.API_LATENCY_P95_TARGET_SECONDS,
                                        warning=tiers.API_LATENCY_P95_SECONDS.warning)),
        )),
    ),
)

REDIS: Final = Dashboard(
    uid="bybit-redis",
    title="Bybit Options Tracker / Redis",
    description="The store: reachability, memory against capacity, keys, TTL policy, write load.",
    filename="redis.json",
    rows=(
        Row("State", (
            Panel("Redis reachable", (q("max(bybit_redis_up)", "redis"),), kind="stat", width=4,
                  mappings=UP_MAPPINGS, thresholds=Thresholds(), decimals=0),
            _memory_panel(width=5),
            Panel("maxmemory set", (q("max(bybit_redis_maxmemory_configured)", "configured"),), kind="stat",
                  width=5, decimals=0, mappings=(("0", "NO (host memory)", "orange"), ("1", "YES", "green")),
                  thresholds=Thresholds()),
            Panel("Memory pressure TTL", (q("max(bybit_ingest_memory_pressure)", "pressure"),), kind="stat",
                  width=5, decimals=0, mappings=(("0", "normal TTL", "green"), ("1", "short TTL", "orange")),
                  thresholds=Thresholds()),
            Panel("Option TTL", (q("max(bybit_option_ttl_seconds)", "ttl"),), kind="stat", width=5,
                  unit=SECONDS),
        )),
        Row("Memory and keys", (
            Panel("Memory used vs capacity", (q("max(bybit_redis_memory_used_bytes)", "used"),
                                              q("max(bybit_redis_memory_max_bytes)", "capacity")),
                  unit=BYTES, width=12, minimum=0),
            Panel("Memory ratio", (q(MEMORY_RATIO, "used / capacity"),), unit=RATIO, width=12, minimum=0,
                  maximum=1, thresholds=tiers.REDIS_MEMORY_RATIO),
            Panel("Keys", (q("max(bybit_redis_keys)", "keys"),), width=8, minimum=0),
            Panel("Writes / s", (q(per_second("bybit_redis_writes_total"), "option writes"),),
                  unit=PER_SECOND, width=8, minimum=0),
            Panel("Exporter scrape duration", (q("max(bybit_exporter_scrape_duration_seconds)", "scrape"),),
                  unit=SECONDS, width=8, minimum=0,
                  description="Time one exporter scrape spends reading Redis."),
        )),
    ),
)

#: The SLOs of prometheus/rules/slo.yml (label ``slo``), with what each one measures.
SLOS: Final = (
    ("api_availability", "API availability", "requests not answered 5xx"),
    ("ingest_uptime", "Ingest uptime", "time with a fresh ingest heartbeat"),
    ("data_freshness", "Data freshness", "coin-time with a ticker younger than 30 s"),
    ("ws_reconnects", "Reconnect budget", "fewer than 20 WebSocket reconnections an hour"),
)
BURN_THRESHOLDS: Final = Thresholds(info=1, warning=tiers.BURN_RATE_TICKET, critical=tiers.BURN_RATE_PAGE)


def _burn_panel(slo: str, title: str, meaning: str) -> Panel:
    windows = ("5m", "1h", "6h", "1d")
    return Panel(f"Burn rate: {title}",
                 tuple(q(f'max(slo:bybit_error_budget:burn_rate{w}{{slo="{slo}"}})', w) for w in windows),
                 width=12, minimum=0, thresholds=BURN_THRESHOLDS,
                 description=f"How fast the {title} SLO ({meaning}) spends its 30-day error budget: "
                             f"1 spends it in exactly 30 days. Pages above {tiers.BURN_RATE_PAGE:g} "
                             f"(fast windows), tickets above {tiers.BURN_RATE_TICKET:g} (slow windows).")


SLO: Final = Dashboard(
    uid="bybit-slo",
    title="Bybit Options Tracker / SLOs",
    description="The seed's success metrics as SLOs (prometheus/rules/slo.yml): API availability 99.9 %, "
                "ingest uptime 99.5 %, data fresh (< 30 s) 99 % of the time, < 20 reconnects/h; "
                "error budgets, burn rates, and the targets without an alert (API p95, memory, CPU).",
    filename="slo.json",
    time_from="now-7d",
    refresh="1m",
    rows=(
        Row("Objectives (30 days)", (
            Panel("API availability", (q('sum(increase(bybit_api_requests_total{status!="5xx"}[30d])) '
                                         "/ sum(increase(bybit_api_requests_total[30d]))", "availability"),),
                  kind="stat", unit=RATIO, width=6, decimals=3,
                  thresholds=Floor(warning=tiers.UPTIME_TARGET, target=tiers.API_AVAILABILITY_TARGET),
                  description="Share of requests not answered 5xx. Target 99.9 %."),
            Panel("Ingest uptime", (q("max(avg_over_time(job:bybit_ingest_up:max[30d]))", "uptime"),),
                  kind="stat", unit=RATIO, width=6, decimals=3,
                  thresholds=Floor(warning=0.99, target=tiers.UPTIME_TARGET),
                  description="Share of time with a fresh heartbeat of at least one ingest replica. "
                              "Target 99.5 %."),
            Panel("Data fresh", (q("avg_over_time(job:bybit_data_fresh:ratio[30d])", "fresh"),), kind="stat",
                  unit=RATIO, width=6, decimals=3,
                  thresholds=Floor(warning=0.95, target=tiers.FRESHNESS_OBJECTIVE),
                  description="Share of coin-time whose newest ticker was younger than 30 s. Target 99 %."),
            Panel("Error budget left", tuple(q(f'max(slo:bybit_error_budget:remaining{{slo="{slo}"}})', title)
                                             for slo, title, _m in SLOS),
                  kind="bargauge", unit=RATIO, width=6, minimum=0, maximum=1,
                  thresholds=Floor(warning=0.25, target=0.5),
                  description="Share of each SLO's 30-day error budget still unspent."),
        )),
        Row("Burn rates", tuple(_burn_panel(slo, title, meaning) for slo, title, meaning in SLOS)),
        Row("Targets", (
            Panel("Freshness vs target", (q("max(bybit_data_staleness_seconds)", "worst coin"),), width=6,
                  unit=SECONDS, minimum=0, thresholds=Thresholds(warning=tiers.FRESHNESS_TARGET_SECONDS)),
            # The recording rule has no sample without requests (never NaN): see recording.py.
            Panel("API p95 vs target", (q("max(job:bybit_api_request_duration_seconds:p95_rate5m)", "p95"),),
                  width=6, unit=SECONDS, minimum=0, no_value=NO_TRAFFIC,
                  thresholds=Thresholds(info=tiers.API_LATENCY_P95_TARGET_SECONDS,
                                        warning=tiers.API_LATENCY_P95_SECONDS.warning)),
            Panel("Reconnects per hour vs target", (q(RECONNECTS_PER_HOUR, "reconnects / h"),), width=12,
                  minimum=0, thresholds=tiers.RECONNECTS_PER_HOUR),
            Panel("Ingest memory vs target", (q(INGEST_RSS, "{{replica}}"),), width=6,
                  unit=BYTES, minimum=0, thresholds=INGEST_MEMORY),
            Panel("Ingest CPU vs target", (q("sum by (replica) (rate(bybit_ingest_cpu_seconds_total[5m]))",
                                             "{{replica}}"),), width=6,
                  unit=RATIO, minimum=0, thresholds=Thresholds(warning=tiers.PROCESS_CPU_TARGET_RATIO)),
        )),
    ),
)

DASHBOARDS: Final[tuple[Dashboard, ...]] = (OVERVIEW, INGEST, API, REDIS, SLO)


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = out_dir / dashboard.filename
        path.write_text(dump(dashboard), encoding="utf-8")
        written.append(path)
    return written


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Names of dashboards whose committed JSON differs from what this module generates."""
    out = []
    for dashboard in DASHBOARDS:
        path = out_dir / dashboard.filename
        if not path.is_file() or path.read_text(encoding="utf-8") != dump(dashboard):
            out.append(dashboard.filename)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gen_dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the JSON is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            print(f"out of date: grafana/dashboards/{name} (run python -m scripts.gen_dashboards)",
                  file=sys.stderr)
        return 1 if out_of_date else 0
    for path in write_all():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
