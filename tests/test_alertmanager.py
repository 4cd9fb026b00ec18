"""Alertmanager: the config is valid, each tier reaches its receiver, a critical silences the
lower tiers of its condition on a real Alertmanager, no secret is committed, the templates
read well, and the loopback variant keeps the routing while sending nothing off the machine."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import render_local_alertmanager_config, write_local_alertmanager_config
from scripts.promconfig.alertmanager_config import ALERTMANAGER_FILE
from tests.servers import LOOPBACK, AlertmanagerServer, amtool, repo_root, wait_until

ROOT = repo_root()
TEMPLATES = ROOT / "alertmanager" / "templates"
SECRET_KEYS = re.compile(r"(password|secret|token|api_key|credentials|routing_key|service_key)",
                         re.IGNORECASE)


def source() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ALERTMANAGER_FILE.read_text(encoding="utf-8"))
    return doc


def routes() -> dict[str, dict[str, Any]]:
    """Severity -> its child route."""
    out = {}
    for route in source()["route"]["routes"]:
        (matcher,) = route["matchers"]
        out[re.fullmatch(r'severity="(\w+)"', matcher).group(1)] = route  # type: ignore[union-attr]
    return out


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar in a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")
    else:
        yield path, node


def check_config(path: Path) -> None:
    done = amtool("check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# --- the committed config ----------------------------------------------------------------------------------


def test_amtool_accepts_the_committed_config() -> None:
    check_config(ALERTMANAGER_FILE)


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=critical", "alertname=NoDataFlowing", "condition=data_flow"], "oncall-pager"),
    (["severity=warning", "alertname=RedisMemoryHigh", "condition=redis_memory"], "team"),
    (["severity=info", "alertname=NewErrorType", "condition=errors"], "team-digest"),
    (["alertname=SomethingWithoutSeverity"], "team"),
])
def test_each_tier_routes_to_its_receiver(labels: list[str], receiver: str) -> None:
    done = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}",
                  f"--verify.receivers={receiver}", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_critical_pages_at_once_warning_repeats_hourly_info_is_a_working_hours_digest() -> None:
    r = routes()
    assert r["critical"]["group_wait"] == "10s"
    assert r["critical"]["repeat_interval"] == "30m"
    assert r["warning"]["repeat_interval"] == "1h"
    assert r["info"]["group_interval"] == "6h"
    assert r["info"]["active_time_intervals"] == ["working-hours"]
    (interval,) = [t for t in source()["time_intervals"] if t["name"] == "working-hours"]
    assert interval["time_intervals"][0]["weekdays"] == ["monday:friday"]
    receivers = {x["name"]: x for x in source()["receivers"]}
    assert {"webhook_configs", "email_configs"} <= set(receivers["oncall-pager"])
    assert set(receivers["team-digest"]) == {"name", "email_configs"}, "info is low priority: mail only"
    for name in ("oncall-pager", "team"):
        for kind in ("webhook_configs", "email_configs"):
            assert all(c["send_resolved"] for c in receivers[name][kind]), (name, kind)


def test_no_secret_is_committed_only_files_under_run_secrets() -> None:
    files = []
    for path, value in walk(source()):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEYS.search(key):
            assert key.endswith("_file"), f"{path} holds a secret inline; use a *_file key"
            files.append(value)
        if isinstance(value, str) and "://" in value:
            assert "@" not in value.split("://", 1)[1].split("/", 1)[0], f"{path}: credentials in a URL"
    assert files, "the receivers need their credentials from files"
    assert all(str(f).startswith("/run/secrets/") for f in files), files


def test_every_template_the_receivers_use_is_defined() -> None:
    used = set(re.findall(r'template "([^"]+)"', ALERTMANAGER_FILE.read_text(encoding="utf-8")))
    defined = set(re.findall(r'define "([^"]+)"', "".join(
        p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.tmpl"))))
    assert used, "the receivers use the notification templates"
    assert used <= defined, used - defined


# --- templates ---------------------------------------------------------------------------------------------


def template_data(status: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "RedisMemoryCritical", "severity": "critical", "condition": "redis_memory",
                   "job": "exporter"},
        "annotations": {
            "summary": "Redis memory above 90% of capacity",
            "description": "Redis uses 91% of its capacity (critical above 90%). <b>not markup</b>",
            "value": "91%",
            "runbook_url": "https://github.com/bybit-options-tracker/bybit-options-tracker/blob/main/docs/"
                           "runbooks/RedisMemoryCritical.md"},
        "startsAt": "2026-01-02T03:04:05Z",
        "endsAt": "2026-01-02T04:05:06Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x", "fingerprint": "0123456789abcdef",
    }
    return {"receiver": "oncall-pager", "status": status, "alerts": [alert],
            "groupLabels": {"alertname": "RedisMemoryCritical", "condition": "redis_memory"},
            "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093"}


def render(tmp_path: Path, name: str, status: str, kind: str = "text") -> str:
    data = tmp_path / f"{status}.json"
    data.write_text(json.dumps(template_data(status)), encoding="utf-8")
    done = amtool("template", "render", f"--template.glob={TEMPLATES}/*.tmpl",
                  f'--template.text={{{{ template "{name}" . }}}}', f"--template.data={data}",
                  f"--template.type={kind}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_subject_says_tier_and_summary_and_when_it_is_resolved(tmp_path: Path) -> None:
    assert render(tmp_path, "bybit.email.subject", "firing").strip() == (
        "[CRITICAL] Redis memory above 90% of capacity")
    assert render(tmp_path, "bybit.email.subject", "resolved").strip() == (
        "[CRITICAL] RESOLVED: Redis memory above 90% of capacity")


def test_the_text_body_has_tier_summary_description_value_runbook_and_start(tmp_path: Path) -> None:
    text = render(tmp_path, "bybit.email.text", "firing")
    assert "FIRING: 1" in text
    assert "[CRITICAL] RedisMemoryCritical" in text
    assert "Redis uses 91% of its capacity" in text
    assert "Value:   91%" in text
    assert "Runbook: https://github.com/bybit-options-tracker/" in text
    assert "Since:   2026-01-02 03:04:05 UTC" in text
    resolved = render(tmp_path, "bybit.email.text", "resolved")
    assert "RESOLVED: 1" in resolved
    assert "(resolved 2026-01-02 04:05:06 UTC)" in resolved


def test_the_html_body_links_the_runbook_and_escapes_values(tmp_path: Path) -> None:
    html = render(tmp_path, "bybit.email.html", "firing", kind="html")
    assert '<a href="https://github.com/bybit-options-tracker/' in html
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html
    assert "Value: <b>91%</b>" in html


# --- the loopback variant --------------------------------------------------------------------------------


def test_the_local_variant_keeps_routes_and_inhibition_and_posts_only_to_loopback(tmp_path: Path) -> None:
    hook = f"http://{LOOPBACK}:9/hook"
    path = write_local_alertmanager_config(tmp_path, webhook_url=hook)
    check_config(path)
    local = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert local["route"] == source()["route"]
    assert local["inhibit_rules"] == source()["inhibit_rules"]
    assert not any(k.startswith("smtp_") for k in local["global"])
    assert local["templates"] == [str(TEMPLATES / "*.tmpl")]
    urls = [v for _p, v in walk(local) if isinstance(v, str) and "://" in v]
    assert urls, "every receiver posts to the webhook"
    assert set(urls) == {hook}
    assert [r["name"] for r in local["receivers"]] == [r["name"] for r in source()["receivers"]]


def test_the_local_variant_without_a_webhook_sends_nowhere_and_scales_timers(tmp_path: Path) -> None:
    text = render_local_alertmanager_config(timing_scale=0.01)
    local = yaml.safe_load(text)
    assert all(set(r) == {"name"} for r in local["receivers"])
    critical = next(r for r in local["route"]["routes"] if r["matchers"] == ['severity="critical"'])
    assert critical["group_wait"] == "1s"        # 10s scaled, floored at 1s
    assert critical["repeat_interval"] == "18s"  # 30m
    path = tmp_path / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    check_config(path)


# --- inhibition on a real Alertmanager ---------------------------------------------------------------------


def _alert(name: str, severity: str, condition: str, job: str = "exporter", **labels: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"labels": {"alertname": name, "severity": severity, "condition": condition, "job": job, **labels},
            "annotations": {"summary": name},
            "startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(hours=1)).isoformat()}


def _request(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def test_a_critical_silences_the_lower_tiers_of_its_condition_and_nothing_else(tmp_path: Path) -> None:
    """Each inhibition rule on its own ``job``, so that one rule cannot hide another's absence."""
    alerts = [
        # severity: a critical silences warning and info of its condition, a warning silences info
        _alert("RedisMemoryCritical", "critical", "redis_memory"),
        _alert("RedisMemoryHigh", "warning", "redis_memory"),
        _alert("RedisMemoryElevated", "info", "redis_memory"),
        _alert("WebSocketReconnectsHigh", "warning", "ws_reconnects"),
        _alert("WebSocketReconnectsElevated", "info", "ws_reconnects"),
        _alert("ApiLatencyTrendRising", "info", "api_latency"),
        # cause over symptom, per job
        _alert("NoDataFlowing", "critical", "data_flow", job="a"),
        _alert("CoinDataStale", "critical", "data_flow", job="a", coin="BTC"),
        _alert("IngestDown", "critical", "ingest", job="b"),
        _alert("CoinDataStale", "critical", "data_flow", job="b", coin="BTC"),
        _alert("IngestDown", "critical", "ingest", job="c"),
        _alert("NoDataFlowing", "critical", "data_flow", job="c"),
        _alert("RedisDown", "critical", "redis", job="d"),
        _alert("IngestDown", "critical", "ingest", job="d"),
        # a threshold critical silences the SLO burn alerts of its condition, not other SLOs
        _alert("IngestUptimeBudgetBurnFast", "critical", "ingest", slo="ingest_uptime"),
        _alert("ApiAvailabilityBudgetBurnFast", "critical", "api_availability", slo="api_availability"),
    ]
    expect_inhibited = {
        ("RedisMemoryHigh", "exporter"), ("RedisMemoryElevated", "exporter"),
        ("WebSocketReconnectsElevated", "exporter"), ("CoinDataStale", "a"), ("CoinDataStale", "b"),
        ("NoDataFlowing", "c"), ("IngestDown", "d"), ("IngestUptimeBudgetBurnFast", "exporter"),
    }
    server = AlertmanagerServer(tmp_path, write_local_alertmanager_config(tmp_path))
    server.start()
    try:
        _request(f"{server.url}/api/v2/alerts", alerts)
        seen: list[set[tuple[str, str]]] = []

        def settled() -> bool:
            # The inhibitor learns source alerts asynchronously: poll until it has them all.
            held = _request(f"{server.url}/api/v2/alerts")
            seen.append({(a["labels"]["alertname"], a["labels"]["job"]) for a in held
                         if a["status"]["inhibitedBy"]})
            return len(held) == len(alerts) and seen[-1] == expect_inhibited

        try:
            wait_until(settled, timeout=15, what="Alertmanager's inhibition to settle")
        except AssertionError as exc:
            pytest.fail(f"{exc}: inhibited {sorted(seen[-1])}, expected {sorted(expect_inhibited)}")
    finally:
        server.stop()
