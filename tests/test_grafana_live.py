"""Every dashboard query runs against a real Prometheus scraping a real stack, and returns data.

simulator -> ingest -> Redis -> exporter and API (called by a small polling client), scraped
every second by a real Prometheus loaded with the project's recording and alerting rules.

Every dashboard under grafana/ is read the way Grafana reads it: panels at the top level and
inside rows (a collapsed row carries its panels in its own ``panels`` list), every target of
every panel, and every template variable's query (``label_values``, ``query_result``,
``metrics``, ``label_names``), evaluated first so its values can be substituted. Grafana's
built-in variables (``$__rate_interval``, ``$__interval``, ``$__range`` and their ``_ms``/``_s``
forms) and every template variable (``$v``, ``${v}``, ``${v:format}``, ``[[v]]``) are replaced
before Prometheus sees a query; a reference left over fails the test instead of reaching
Prometheus. Each panel target is evaluated as Grafana does (``instant`` -> /api/v1/query, else
/api/v1/query_range over ``$__range`` with step ``$__interval``). Any query error fails, and so
does a result with no sample that Grafana could draw (no series, or only NaN), unless the
query is listed in :data:`MAY_BE_EMPTY` with the reason.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures_simulator import SimulatorHandle
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    PrometheusServer,
    RedisServer,
    free_port,
    http_ok,
    python_env,
    repo_root,
    wait_until,
)

ROOT = repo_root()
GRAFANA_DIR = ROOT / "grafana"
COINS = ("BTC", "ETH")



def _scrape_seconds() -> int:
    """The provisioned data source's ``timeInterval`` (Prometheus' scrape interval), in seconds."""
    (path,) = sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml"))
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    (source,) = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    value = str(source["jsonData"]["timeInterval"])
    m = re.fullmatch(r"(\d+)([sm])", value)
    assert m, f"{path}: timeInterval {value!r}"
    return int(m[1]) * (60 if m[2] == "m" else 1)


#: Grafana's built-in variables and what they stand for here. A dashboard's time range is 1 h
#: wide; the interval is the step Grafana picks for it on a typical panel; the rate interval is
#: Grafana's max($__interval + scrape interval, 4 x scrape interval), the scrape interval being
#: the provisioned data source's timeInterval.
_INTERVAL = 15
BUILTIN_SECONDS = {"__rate_interval": max(_INTERVAL + _scrape_seconds(), 4 * _scrape_seconds()),
                   "__interval": _INTERVAL, "__range": 3600}
RANGE_SECONDS = BUILTIN_SECONDS["__range"]
STEP_SECONDS = BUILTIN_SECONDS["__interval"]

#: (dashboard, panel title or "$variable") -> why a healthy stack a minute old has no series for it.
MAY_BE_EMPTY = {
    ("overview.json", "Firing alerts"): "only while alerts fire (a healthy stack fires none)",
    ("overview.json", "Redis memory: capacity planning"):
        "its projection (predict_linear over a 5-minute-step subquery) needs two steps of history",
}

#: A variable reference Grafana would have replaced: $name, ${name}, ${name:fmt}, [[name]].
VARIABLE_REF = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")


@dataclass(frozen=True)
class Query:
    """One query Grafana sends to Prometheus for a dashboard."""

    dashboard: str
    title: str  # the panel's title, or "$name" for a template variable
    ref: str  # the target's refId, or the variable's query text
    expr: str
    instant: bool


@dataclass(frozen=True)
class Variable:
    """A template variable: its name, type and query (None when its values are fixed)."""

    name: str
    type: str
    query: str | None
    values: tuple[str, ...]  # fixed values (custom, constant, interval, textbox)
    multi: bool
    regex: str


def load_dashboards(directory: Path = GRAFANA_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON under ``directory`` (any depth), by file name."""
    out = {}
    for path in sorted(directory.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "panels" in doc:
            assert path.name not in out, f"two dashboards named {path.name} under {directory}"
            out[path.name] = doc
    return out


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel that queries, at the top level and inside rows (collapsed rows nest theirs)."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from walk_panels(panel.get("panels", []))
        else:
            yield panel
            yield from walk_panels(panel.get("panels", []))


def _query_text(raw: Any) -> str | None:
    """A variable's query: a string in older dashboards, ``{"query": ...}`` in newer ones."""
    if isinstance(raw, dict):
        raw = raw.get("query")
    return raw if isinstance(raw, str) and raw.strip() else None


def variables(dashboard: dict[str, Any]) -> list[Variable]:
    """The dashboard's template variables in order (a variable may use those before it)."""
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        kind = var.get("type", "")
        if kind in ("datasource", "adhoc"):
            continue  # selects a data source / adds label filters: no query text of its own
        query = _query_text(var.get("query")) if kind == "query" else None
        if kind == "query" and query is None:
            query = _query_text(var.get("definition"))
        values: tuple[str, ...] = ()
        if kind != "query":
            options = [o.get("value") for o in var.get("options", [])
                       if o.get("value") not in (None, "$__all")]
            text = _query_text(var.get("query")) or ""
            values = tuple(str(v) for v in options) or tuple(v.strip() for v in text.split(",") if v.strip())
        out.append(Variable(var["name"], kind, query, values, bool(var.get("multi") or var.get("includeAll")),
                            var.get("regex") or ""))
    return out


def panel_queries(name: str, dashboard: dict[str, Any]) -> list[Query]:
    """Every target of every panel, with its refId and whether Grafana runs it as an instant query."""
    out = []
    for panel in walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue  # Grafana does not run a hidden target
            out.append(Query(name, panel.get("title", ""), target.get("refId", ""), target["expr"],
                             bool(target.get("instant")) and not target.get("range")))
    return out


def all_panel_queries() -> list[Query]:
    return [q for name, d in load_dashboards().items() for q in panel_queries(name, d)]


def _builtins() -> dict[str, str]:
    out = {}
    for name, seconds in BUILTIN_SECONDS.items():
        if seconds % 3600 == 0:
            out[name] = f"{seconds // 3600}h"
        else:
            out[name] = f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
        out[name + "_ms"] = str(seconds * 1000)
    out["__range_s"] = str(BUILTIN_SECONDS["__range"])
    return out


def _format(values: tuple[str, ...], fmt: str | None, multi: bool) -> str:
    """A variable's values as Grafana's Prometheus data source writes them into a query.

    A single-value variable goes in as it is; a multi-value one (or ``:regex``) as an escaped
    regex alternation, ``(a|b)``; ``:pipe`` and ``:csv``/``:raw``/``:text`` join the raw values.
    """
    if fmt == "pipe":
        return "|".join(values)
    if fmt in ("csv", "raw", "text"):
        return ",".join(values)
    if fmt is None and not multi:
        return values[0]
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(expr: str, values: dict[str, tuple[str, ...]], multi: dict[str, bool] | None = None) -> str:
    """``expr`` with Grafana's built-ins and the template variables in ``values`` replaced.

    A reference to anything else is left in place, for :func:`unsubstituted` to report.
    """
    multi = multi or {}
    builtins = _builtins()

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        fmt = m.group(2) or m.group(5)
        if name in builtins:
            return builtins[name]
        if values.get(name):
            return _format(values[name], fmt, multi.get(name, False))
        return m.group(0)

    return VARIABLE_REF.sub(replace, expr)


def unsubstituted(expr: str) -> list[str]:
    """Variable references still in ``expr`` (Prometheus would reject or misread them)."""
    return [m.group(0) for m in VARIABLE_REF.finditer(expr)]


# --- Prometheus' HTTP API ---------------------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _api(prometheus_url: str, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    url = f"{prometheus_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        doc: dict[str, Any] = _get_json(url)
    except urllib.error.HTTPError as exc:
        return {"status": "error", "error": exc.read().decode(errors="replace")}
    return doc


def _drawable(result: list[dict[str, Any]]) -> bool:
    """True when a result holds a sample Grafana can draw: a series with a value that is not NaN."""
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(not math.isnan(float(value)) for _ts, value in samples):
            return True
    return False


def evaluate(prometheus_url: str, query: Query, expr: str, now: float) -> tuple[str | None, bool]:
    """(error or None, has drawable data) for one panel query, sent as Grafana sends it."""
    if query.instant:
        doc = _api(prometheus_url, "/api/v1/query", [("query", expr), ("time", f"{now:.3f}")])
    else:
        doc = _api(prometheus_url, "/api/v1/query_range", [
            ("query", expr), ("start", f"{now - RANGE_SECONDS:.3f}"), ("end", f"{now:.3f}"),
            ("step", str(STEP_SECONDS))])
    if doc.get("status") != "success":
        return str(doc.get("error")), False
    return None, _drawable(doc["data"]["result"])


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.+)\)\s*$", re.S)
_METRICS = re.compile(r"^\s*metrics\((?P<regex>.*)\)\s*$", re.S)
_LABEL_NAMES = re.compile(r"^\s*label_names\(\s*\)\s*$")


def variable_values(prometheus_url: str, query: str, now: float) -> tuple[str | None, list[str]]:
    """(error or None, values) of a variable query, through the endpoint Grafana uses for it."""
    window = [("start", f"{now - RANGE_SECONDS:.3f}"), ("end", f"{now:.3f}")]
    if m := _LABEL_VALUES.match(query):
        match = [("match[]", m["match"])] if m["match"] else []
        doc = _api(prometheus_url, f"/api/v1/label/{m['label']}/values", match + window)
    elif m := _QUERY_RESULT.match(query):
        doc = _api(prometheus_url, "/api/v1/query", [("query", m["expr"]), ("time", f"{now:.3f}")])
        if doc.get("status") == "success":
            rows = []
            for series in doc["data"]["result"]:
                labels = ",".join(f'{k}="{v}"' for k, v in series["metric"].items() if k != "__name__")
                rows.append(f"{series['metric'].get('__name__', '')}{{{labels}}} {series['value'][1]} "
                            f"{series['value'][0] * 1000:.0f}")
            return None, rows
    elif m := _METRICS.match(query):
        doc = _api(prometheus_url, "/api/v1/label/__name__/values", window)
        if doc.get("status") == "success":
            return None, [v for v in doc["data"] if re.search(m["regex"], v)]
    elif _LABEL_NAMES.match(query):
        doc = _api(prometheus_url, "/api/v1/labels", window)
    else:  # a bare PromQL expression: Grafana runs it as query_result()
        return variable_values(prometheus_url, f"query_result({query})", now)
    if doc.get("status") != "success":
        return str(doc.get("error")), []
    return None, [str(v) for v in doc["data"]]


def _apply_regex(values: list[str], regex: str) -> list[str]:
    """Grafana's variable regex: keep matching values, and the first capture group when there is one."""
    if not regex:
        return values
    pattern = re.compile(regex.strip("/"))
    out = []
    for value in values:
        if m := pattern.search(value):
            out.append(m.group(1) if m.groups() else value)
    return list(dict.fromkeys(out))


@dataclass
class Report:
    errors: list[str]
    empty: list[str]
    evaluated: int


def check_dashboards(prometheus_url: str, dashboards: dict[str, dict[str, Any]]) -> Report:
    """Evaluate every variable and panel query of ``dashboards``; report errors and unlisted empties."""
    errors: list[str] = []
    empty: list[str] = []
    evaluated = 0
    now = time.time()
    for name, dashboard in dashboards.items():
        resolved: dict[str, tuple[str, ...]] = {}
        multi: dict[str, bool] = {}
        for var in variables(dashboard):
            multi[var.name] = var.multi
            where = f"{name} / ${var.name}"
            if var.query is None:
                resolved[var.name] = var.values
                if not var.values:
                    errors.append(f"{where}: a {var.type} variable without a value")
                continue
            text = substitute(var.query, resolved, multi)
            if left := unsubstituted(text):
                errors.append(f"{where}: variable not substituted {left} in {var.query}")
                continue
            evaluated += 1
            error, values = variable_values(prometheus_url, text, now)
            values = _apply_regex(values, var.regex)
            if error is not None:
                errors.append(f"{where}: {error} ({text})")
            elif not values and (name, f"${var.name}") not in MAY_BE_EMPTY:
                empty.append(f"{where}: no value ({text})")
            resolved[var.name] = tuple(values)
        for query in panel_queries(name, dashboard):
            expr = substitute(query.expr, resolved, multi)
            where = f"{name} / {query.title} [{query.ref}]"
            if left := unsubstituted(expr):
                errors.append(f"{where}: variable not substituted {left} in {query.expr}")
                continue
            evaluated += 1
            error, has_data = evaluate(prometheus_url, query, expr, now)
            if error is not None:
                errors.append(f"{where}: {error}")
            elif not has_data and (name, query.title) not in MAY_BE_EMPTY:
                empty.append(f"{where}: {expr}")
    return Report(errors, empty, evaluated)


# --- what the reader covers, without servers ---------------------------------------------------------


def test_panels_allowed_to_be_empty_exist() -> None:
    known = {(q.dashboard, q.title) for q in all_panel_queries()}
    known |= {(name, f"${v.name}") for name, d in load_dashboards().items() for v in variables(d)}
    assert set(MAY_BE_EMPTY) <= known


def test_every_dashboard_under_grafana_is_read() -> None:
    on_disk = {p.name for p in GRAFANA_DIR.rglob("*.json")}
    assert set(load_dashboards()) == on_disk
    assert len(all_panel_queries()) >= 96


def test_every_builtin_variable_the_dashboards_use_is_replaced() -> None:
    for query in all_panel_queries():
        assert unsubstituted(substitute(query.expr, {})) == [], (query.dashboard, query.title, query.expr)


def test_reader_finds_panels_in_collapsed_rows_and_substitutes_template_variables() -> None:
    """A dashboard shaped as Grafana saves it: an open row, a collapsed row holding its panels, variables."""
    dashboard = {
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "coin", "type": "query", "query": {"query": "label_values(bybit_options_tracked, coin)"},
             "multi": True, "regex": ""},
            {"name": "quantile", "type": "custom", "query": "0.5,0.99", "options": []},
        ]},
        "panels": [
            {"type": "row", "title": "Open", "collapsed": False, "panels": []},
            {"type": "timeseries", "title": "Top", "targets": [
                {"refId": "A",
                 "expr": "sum(rate(bybit_ws_messages_total{coin=~\"$coin\"}[$__rate_interval]))"}]},
            {"type": "row", "title": "Closed", "collapsed": True, "panels": [
                {"type": "stat", "title": "Nested", "targets": [
                    {"refId": "A", "instant": True,
                     "expr": "histogram_quantile(${quantile}, x{coin=~\"${coin:regex}\"}[$__range_s]) "
                             "[[coin]] $__interval_ms"},
                    {"refId": "B", "hide": True, "expr": "hidden"}]}]},
        ],
    }
    queries = panel_queries("d.json", dashboard)
    assert [(q.title, q.ref, q.instant) for q in queries] == [("Top", "A", False), ("Nested", "A", True)]
    assert [(v.name, v.query, v.values, v.multi) for v in variables(dashboard)] == [
        ("coin", "label_values(bybit_options_tracked, coin)", (), True),
        ("quantile", None, ("0.5", "0.99"), False)]
    values = {"coin": ("BTC", "ETH"), "quantile": ("0.5",)}
    multi = {"coin": True}
    assert substitute(queries[0].expr, values, multi) == \
        'sum(rate(bybit_ws_messages_total{coin=~"(BTC|ETH)"}[1m]))'
    assert substitute(queries[1].expr, values, multi) == \
        'histogram_quantile(0.5, x{coin=~"(BTC|ETH)"}[3600]) (BTC|ETH) 15000'
    assert unsubstituted(substitute(queries[0].expr, {})) == ["$coin"]
    assert unsubstituted(substitute(queries[1].expr, {"coin": ("BTC",)})) == ["${quantile}"]
    # A regex anchor in a label matcher is not a variable.
    assert unsubstituted('up{job=~"api$"}') == []


# --- the live stack ---------------------------------------------------------------------------------


def _prometheus_config(workdir: Path, exporter_port: int, api_port: int) -> Path:
    rules = sorted(str(p) for p in (ROOT / "prometheus").glob("rules/*.yml"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": [
            {"job_name": "exporter", "static_configs": [{"targets": [f"{LOOPBACK}:{exporter_port}"]}]},
            {"job_name": "api", "static_configs": [{"targets": [f"{LOOPBACK}:{api_port}"]}]},
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class PollingClient:
    """A user's client: polls the API's routes a few times a second in a thread, counting answers.

    The API latency and traffic panels show "no traffic" (no series) when no request reached the
    API within their rate window, so requests must flow while Prometheus scrapes.
    """

    def __init__(self, api: str, interval: float = 0.25) -> None:
        self.api = api
        self.interval = interval
        self.answers: dict[int, int] = {}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="polling-client", daemon=True)

    def _paths(self) -> list[str]:
        paths = ["/api/coins", *(f"/api/options/{coin}" for coin in COINS)]
        try:
            listing = _get_json(f"{self.api}/api/options/{COINS[0]}")
            symbol = listing["options"][0]["symbol"]
            paths.append(f"/api/options/{COINS[0]}/{urllib.parse.quote(symbol)}")
        except (OSError, ValueError, KeyError, IndexError) as exc:
            print(f"polling client: no option symbol to poll ({exc!r})", file=sys.stderr)
        return paths

    def _run(self) -> None:
        paths = self._paths()
        while not self._stop.is_set():
            for path in paths:
                try:
                    with urllib.request.urlopen(self.api + path, timeout=5) as resp:
                        resp.read()
                        status = resp.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except OSError as exc:
                    self.failures += 1
                    print(f"polling client: {path}: {exc!r}", file=sys.stderr)
                    continue
                self.answers[status] = self.answers.get(status, 0) + 1
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def live_prometheus(
    tmp_path: Path, redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
) -> Iterator[tuple[PrometheusServer, PollingClient]]:
    """Prometheus scraping a running exporter and API fed by an ingest streaming from the simulator."""
    sim = simulator_factory(coins=COINS, instruments_per_coin=30, push_interval=0.5)
    exporter_port, api_port = free_port(), free_port()
    env = python_env(REDIS_URL=redis_server.url, BYBIT_WS_URL=sim.ws_url, BYBIT_REST_URL=sim.rest_url,
                     BYBIT_COINS=",".join(COINS), EXPORTER_HOST=LOOPBACK,
                     EXPORTER_PORT=str(exporter_port), API_HOST=LOOPBACK, API_PORT=str(api_port),
                     LOG_FORMAT="text")
    procs = [ManagedProcess([sys.executable, "-m", name], tmp_path / f"{name}.log", env=env, cwd=str(ROOT))
             for name in ("ingest", "exporter", "api")]
    prometheus: PrometheusServer | None = None
    client: PollingClient | None = None
    try:
        for proc in procs:
            proc.start()
        api = f"http://{LOOPBACK}:{api_port}"
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{exporter_port}/metrics"), timeout=30,
                   what="the exporter's /metrics")
        wait_until(lambda: _get_json(f"{api}/api/options/BTC").get("count", 0) > 0, timeout=90,
                   what="BTC options served by the API")
        client = PollingClient(api)
        client.start()
        prometheus = PrometheusServer(tmp_path, _prometheus_config(tmp_path, exporter_port, api_port))
        prometheus.start()
        yield prometheus, client
    finally:
        if client is not None:
            client.stop()
        if prometheus is not None:
            prometheus.stop()
        for proc in procs:
            proc.stop()


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_live_stack(
    live_prometheus: tuple[PrometheusServer, PollingClient],
) -> None:
    prometheus, client = live_prometheus
    dashboards = load_dashboards()
    expected = sum(len(panel_queries(n, d)) + sum(v.query is not None for v in variables(d))
                   for n, d in dashboards.items())

    # Rates need two scrapes, and recording rules one more evaluation on top: poll until every
    # query answers or the deadline passes, then report what still fails.
    started = time.monotonic()
    deadline = started + 90
    report = check_dashboards(prometheus.url, dashboards)
    while (report.errors or report.empty) and time.monotonic() < deadline:
        time.sleep(1.0)
        report = check_dashboards(prometheus.url, dashboards)
    print(f"{report.evaluated} queries of {len(dashboards)} dashboards evaluated; data for all after "
          f"{time.monotonic() - started:.1f} s; client answers {client.answers}, failures {client.failures}")
    assert report.evaluated == expected
    assert not report.errors, "queries Prometheus rejected:\n" + "\n".join(report.errors)
    assert not report.empty, "queries with no data from a live stack:\n" + "\n".join(report.empty)
    assert client.answers.get(200, 0) > 0, client.answers
    assert client.failures == 0, client.failures

    # The same check on a dashboard with what today's dashboards lack (template variables, a
    # collapsed row) and with each fault it must catch, against the same live Prometheus.
    probe = check_dashboards(prometheus.url, {"probe.json": PROBE_DASHBOARD})
    assert probe.evaluated == 7, probe  # 2 variables, 5 targets: hidden and unknown are not sent
    assert sorted(e.split(":")[0] for e in probe.errors) == [
        "probe.json / Broken [A]", "probe.json / Unknown variable [A]"], probe.errors
    assert "variable not substituted ['$nope']" in "\n".join(probe.errors)
    assert probe.empty == ['probe.json / Nothing [A]: bybit_options_tracked{coin="DOGE"}'], probe.empty


#: A dashboard as Grafana saves one, for the live test: a chained query variable, a custom one,
#: a collapsed row whose panels use them, a hidden target, and three faults (a query Prometheus
#: rejects, a reference to no variable, a query without data). Three targets and both variables have data.
PROBE_DASHBOARD: dict[str, Any] = {
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus"},
        {"name": "coin", "type": "query", "multi": True, "includeAll": True,
         "query": {"query": "label_values(bybit_options_tracked, coin)", "refId": "v"}},
        {"name": "job", "type": "query", "regex": "/(exp.*)/",
         "definition": 'label_values(up{job=~".+"}, job)', "query": 'label_values(up{job=~".+"}, job)'},
        {"name": "window", "type": "custom", "query": "5m,1h"},
    ]},
    "panels": [
        {"type": "row", "title": "Open", "collapsed": False, "panels": []},
        {"type": "timeseries", "title": "Messages", "targets": [
            {"refId": "A",
             "expr": 'sum by (coin) (rate(bybit_ws_messages_total{coin=~"$coin"}[$__rate_interval]))'},
            {"refId": "B", "hide": True, "expr": "this is not PromQL"}]},
        {"type": "row", "title": "Closed", "collapsed": True, "panels": [
            {"type": "stat", "title": "Tracked", "targets": [
                {"refId": "A", "instant": True,
                 "expr": 'sum(bybit_options_tracked{coin=~"${coin:regex}"}) and on () up{job="$job"}'},
                {"refId": "B", "expr": "max_over_time(up{job=\"[[job]]\"}[${window}])"}]},
            {"type": "stat", "title": "Broken",
             "targets": [{"refId": "A", "expr": "sum(rate(up[$__range]) by"}]},
            {"type": "stat", "title": "Unknown variable",
             "targets": [{"refId": "A", "expr": 'up{job="$nope"}'}]},
            {"type": "stat", "title": "Nothing",
             "targets": [{"refId": "A", "expr": 'bybit_options_tracked{coin="DOGE"}'}]},
        ]},
    ],
}
