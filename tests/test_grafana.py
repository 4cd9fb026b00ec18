"""The Grafana dashboards are generated, consistent, and every query is valid PromQL on real Prometheus.

The live-stack test (every panel returns data where the stack produces it) is in
tests/test_grafana_live.py; this file needs only an empty Prometheus.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import gen_dashboards
from tests.servers import PrometheusServer, repo_root

ROOT = repo_root()
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
UNITS = {"s", "bytes", "ops", "percent", "percentunit", "short", "dateTimeFromNow"}
TIER_COLOURS = {"green", "blue", "orange", "red"}
#: Series Prometheus makes itself; every other metric must be in the contracts or a recording rule.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan"}
#: Grafana's interval variables, replaced by fixed durations before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel


def all_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every query of every panel."""
    out = []
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for target in panel["targets"]:
                out.append((name, panel["title"], target["expr"]))
    return out


def for_prometheus(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (histogram suffixes folded into the family name)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(re.sub(r"_(bucket|sum|count)$", "", word) if word.endswith(
            ("_bucket", "_sum", "_count")) and word.startswith("bybit_") else word)
    return names


def contract_metrics() -> set[str]:
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    return set(re.findall(r"`(bybit_[a-z0-9_]+)`", text))


def recording_rules() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "prometheus").glob("rules/*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            names |= {r["record"] for r in group.get("rules", []) if "record" in r}
    return names


# --- generated and consistent ------------------------------------------------------------------------


def test_committed_json_is_exactly_what_the_generator_writes() -> None:
    assert gen_dashboards.stale() == [], "run: python -m scripts.gen_dashboards"
    assert {d.filename for d in gen_dashboards.DASHBOARDS} == set(load_dashboards())


def test_generator_check_mode_reports_a_hand_edited_dashboard(tmp_path: Path) -> None:
    gen_dashboards.write_all(tmp_path)
    assert gen_dashboards.stale(tmp_path) == []
    edited = tmp_path / "overview.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace('"s"', '"ms"', 1), encoding="utf-8")
    assert gen_dashboards.stale(tmp_path) == ["overview.json"]


def test_the_five_dashboards_exist_with_fixed_unique_uids() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == {"overview.json", "ingest.json", "api.json", "redis.json", "slo.json"}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


def test_every_panel_uses_the_datasource_variable() -> None:
    for name, dashboard in load_dashboards().items():
        variables = dashboard["templating"]["list"]
        assert variables[0]["name"] == "datasource", name
        assert variables[0]["type"] == "datasource", name
        assert variables[0]["query"] == "prometheus", name
        for panel in panels(dashboard):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    for name, dashboard in load_dashboards().items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0, (name, panel["title"])
            assert g["x"] + g["w"] <= 24, (name, panel["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{name}: {panel['title']} overlaps another panel"
            cells |= mine


def test_units_are_the_consistent_set_and_thresholds_use_the_tier_colours() -> None:
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["unit"] in UNITS, (name, panel["title"], defaults["unit"])
            steps = defaults["thresholds"]["steps"]
            assert steps[0]["value"] is None, (name, panel["title"])
            # Lower is better (green base) or, for availability-like panels, higher is (red base).
            assert steps[0]["color"] in {"green", "red"}, (name, panel["title"])
            assert {s["color"] for s in steps} <= TIER_COLOURS, (name, panel["title"])
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), (name, panel["title"])


def _steps(panel: dict[str, Any]) -> dict[str, float]:
    return {s["color"]: s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]}


def test_thresholds_mirror_the_alert_tiers() -> None:
    """Colours change exactly where prometheus/thresholds.yml (the alerting source) says."""
    alerts = yaml.safe_load((ROOT / "prometheus" / "thresholds.yml").read_text(encoding="utf-8"))["alerts"]

    def level(alert: str) -> float:
        return float(alerts[alert]["threshold"])

    by_title = {p["title"]: p for d in load_dashboards().values() for p in panels(d)}
    assert _steps(by_title["Redis memory (of capacity)"]) == {
        "blue": level("RedisMemoryElevated"), "orange": level("RedisMemoryHigh"),
        "red": level("RedisMemoryCritical")}
    assert _steps(by_title["WebSocket reconnects per hour"]) == {
        "blue": level("WebSocketReconnectsElevated"), "orange": level("WebSocketReconnectsHigh")}
    assert _steps(by_title["Staleness per coin"])["red"] == level("CoinDataStale")
    assert _steps(by_title["Consecutive failures"]) == {"red": level("WebSocketReconnectFailing")}
    assert _steps(by_title["Error ratio (5xx)"]) == {
        "orange": level("ApiErrorRateHigh"), "red": level("ApiAllRequestsFailing")}
    assert _steps(by_title["API response time"])["orange"] == level("ApiLatencyHigh")
    assert _steps(by_title["Resident memory"])["orange"] == level("IngestMemoryHigh")
    assert _steps(by_title["CPU"]) == {"blue": 0.2, "orange": level("IngestCpuHigh")}
    # The seed's numbers, so a change to the source is a deliberate one.
    assert _steps(by_title["Redis memory (of capacity)"]) == {"blue": 0.5, "orange": 0.7, "red": 0.9}


def test_objectives_turn_green_only_at_their_targets() -> None:
    by_title = {p["title"]: p for d in load_dashboards().values() for p in panels(d)}
    assert _steps(by_title["API availability"])["green"] == 0.999
    assert _steps(by_title["Ingest uptime"])["green"] == 0.995
    assert by_title["API availability"]["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"] == "red"


def test_overview_has_the_seed_rows_and_firing_alerts_by_tier() -> None:
    overview = load_dashboards()["overview.json"]
    rows = [p["title"] for p in overview["panels"] if p["type"] == "row"]
    assert rows == ["Alerts by tier", "Real-time", "Short-term", "Long-term"]
    exprs = [t["expr"] for p in panels(overview) for t in p["targets"]]
    for severity in ("critical", "warning", "info"):
        assert any(f'severity="{severity}"' in e and 'alertstate="firing"' in e for e in exprs), severity


def test_every_metric_used_is_in_the_contracts_or_a_recording_rule() -> None:
    known = contract_metrics() | recording_rules() | PROMETHEUS_SERIES
    assert len(contract_metrics()) > 20, "docs/CONTRACTS.md metric table not found"
    unknown = {(name, title, metric) for name, title, expr in all_queries()
               for metric in metric_names(for_prometheus(expr)) if metric not in known}
    assert not unknown, f"metrics not in docs/CONTRACTS.md nor a recording rule: {sorted(unknown)}"


def test_metric_name_extraction_ignores_functions_labels_and_keywords() -> None:
    expr = ('histogram_quantile(0.95, sum by (le) (rate(bybit_api_request_duration_seconds_bucket'
            '{route!~"/metrics"}[5m]))) / on(job) group_left up > bool 0 or vector(0)')
    assert metric_names(expr) == {"bybit_api_request_duration_seconds", "up"}


# --- provisioning ---------------------------------------------------------------------------------------


def test_datasource_provisioning_points_at_the_compose_prometheus_with_a_fixed_uid() -> None:
    doc = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] == "prometheus"
    assert source["isDefault"] is True


def test_dashboard_provider_reads_the_directory_compose_mounts() -> None:
    doc = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/tracker.yml").read_text())
    (provider,) = doc["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/overview.json"


# --- every query parses on a real Prometheus -------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prometheus-empty")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n", encoding="utf-8")
    server = PrometheusServer(workdir, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def query_status(base: str, expr: str) -> tuple[int, str]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_a_broken_query_is_rejected_by_prometheus(empty_prometheus: PrometheusServer) -> None:
    status, body = query_status(empty_prometheus.url, "sum(rate(bybit_ws_messages_total[5m])")
    assert status == 400
    assert "parse error" in body


def test_every_panel_query_parses_on_real_prometheus(empty_prometheus: PrometheusServer) -> None:
    failures = []
    for name, title, expr in all_queries():
        status, body = query_status(empty_prometheus.url, for_prometheus(expr))
        if status != 200:
            failures.append(f"{name} / {title}: {status} {body[:200]}")
    assert not failures, "\n".join(failures)


# --- API latency panels without traffic ----------------------------------------------------------------

#: Every panel drawing API response times (their queries read bybit_api_request_duration_seconds).
LATENCY_PANELS = {
    ("overview.json", "API response time"),
    ("api.json", "API response time"),
    ("api.json", "p95 by route"),
    ("slo.json", "API p95 vs target"),
}


def latency_queries() -> list[tuple[str, str, str]]:
    return [(name, title, expr) for name, title, expr in all_queries()
            if "bybit_api_request_duration_seconds" in expr]


def test_every_api_latency_panel_says_no_traffic_when_its_queries_return_nothing() -> None:
    assert {(name, title) for name, title, _e in latency_queries()} == LATENCY_PANELS
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            if (name, panel["title"]) in LATENCY_PANELS:
                assert panel["fieldConfig"]["defaults"].get("noValue") == "no traffic", (name, panel["title"])


def _latency_case(name: str, *, clients: str, scrapes: str = "0+4x20", at: str = "15m",
                  counts: dict[str, int]) -> dict[str, Any]:
    """A promtool case: ``clients`` and ``scrapes`` are the request counters of the options
    route and of /metrics; ``counts`` the series each panel should show at ``at``."""
    bucket = "bybit_api_request_duration_seconds_bucket"

    def series(route: str, le: str, values: str) -> dict[str, str]:
        labels = f'job="api",instance="api:5001",route="{route}",method="GET",le="{le}"'
        return {"series": f"{bucket}{{{labels}}}", "values": values}

    inputs = [series("/metrics", le, scrapes) for le in ("0.01", "0.5", "+Inf")]
    inputs += [series("/api/options/{coin}", "0.01", "0x20"),
               series("/api/options/{coin}", "0.5", clients),
               series("/api/options/{coin}", "+Inf", clients)]
    # count(...) counts NaN samples too: a query answering NaN shows up as one more series.
    tests = [{"expr": f"count({for_latency_test(expr)}) or vector(0)", "eval_time": at,
              "exp_samples": [{"labels": "{}", "value": counts[title]}]}
             for _n, title, expr in latency_queries()]
    # And the series there are hold numbers (NaN >= 0 is false).
    tests += [{"expr": f"count(({for_latency_test(expr)}) >= 0) or vector(0)", "eval_time": at,
               "exp_samples": [{"labels": "{}", "value": counts[title]}]}
              for _n, title, expr in latency_queries()]
    return {"name": name, "interval": "1m", "input_series": inputs, "promql_expr_test": tests}


def for_latency_test(expr: str) -> str:
    """The panel query with Grafana's rate interval as the recording rules' window (5m)."""
    return expr.replace("$__rate_interval", "5m")


def test_api_latency_queries_return_no_series_rather_than_nan_while_nobody_calls_the_api(
        tmp_path: Path) -> None:
    """promtool evaluates every latency panel query (and the recording rule the SLO panel reads)."""
    from tests.servers import promtool

    # The recording rule behind the SLO panel counts every route, Prometheus' scrapes included.
    scrapes_only = {"API response time": 0, "p95 by route": 1, "API p95 vs target": 1}
    with_clients = {"API response time": 1, "p95 by route": 2, "API p95 vs target": 1}
    nothing = {"API response time": 0, "p95 by route": 0, "API p95 vs target": 0}
    doc = {
        "rule_files": [str(ROOT / "prometheus" / "rules" / "recording.yml")],
        "evaluation_interval": "1m",
        "tests": [
            _latency_case("nobody calls the API; Prometheus scrapes /metrics", clients="100x20",
                          counts=scrapes_only),
            _latency_case("clients call the API", clients="0+30x20", counts=with_clients),
            _latency_case("clients stopped 10 minutes ago", clients="0+30x5 150x15", counts=scrapes_only),
            _latency_case("not one request in the window", clients="100x20", scrapes="0+4x5 20x15",
                          counts=nothing),
        ],
    }
    path = tmp_path / "latency.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    done = promtool("test", "rules", path.name, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
