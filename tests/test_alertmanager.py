"""Alertmanager: the config is valid, each tier reaches its receiver, the Watchdog reaches only
the dead-man's switch and no inhibition can mute it, a critical silences the lower tiers of its
condition on a real Alertmanager, no secret is committed, the templates read well, and the
loopback variant keeps the routing while sending nothing off the machine."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import render_local_alertmanager_config, write_local_alertmanager_config
from scripts.promconfig.alertmanager_config import ALERTMANAGER_FILE
from scripts.promconfig.durations import parse_duration
from scripts.promconfig.model import runbook_url
from tests.servers import LOOPBACK, AlertmanagerServer, amtool, python_env, repo_root, wait_until

ROOT = repo_root()
TEMPLATES = ROOT / "alertmanager" / "templates"
SECRET_KEYS = re.compile(r"(password|secret|token|api_key|credentials|routing_key|service_key)",
                         re.IGNORECASE)


def source() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ALERTMANAGER_FILE.read_text(encoding="utf-8"))
    return doc


WATCHDOG_LABELS = {"alertname": "Watchdog", "severity": "none", "condition": "watchdog"}
PAGING_RECEIVERS = {"oncall-pager", "team", "team-digest"}


def routes() -> dict[str, dict[str, Any]]:
    """Severity -> its child route (the tiers' routes; the Watchdog's matches its name)."""
    out = {}
    for route in source()["route"]["routes"]:
        (matcher,) = route["matchers"]
        m = re.fullmatch(r'severity="(\w+)"', matcher)
        if m is not None:
            out[m.group(1)] = route
    return out


def matches(matcher: str, labels: dict[str, str]) -> bool:
    """Whether one Alertmanager matcher (``name="v"``, ``!=``, ``=~``, ``!~``) matches ``labels``.

    Alertmanager anchors regular expressions and treats a missing label as the empty string.
    """
    m = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*', matcher)
    assert m is not None, f"cannot read matcher {matcher!r}"
    name, op, value = m.groups()
    actual = labels.get(name, "")
    if op in {"=", "!="}:
        return (actual == value) == (op == "=")
    return (re.fullmatch(value, actual) is not None) == (op == "=~")


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


# --- the dead-man's switch ----------------------------------------------------------------------------------


def test_the_watchdog_routes_to_the_dead_mans_switch_only() -> None:
    labels = [f"{k}={v}" for k, v in WATCHDOG_LABELS.items()]
    done = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}",
                  "--verify.receivers=deadmans-switch", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "deadmans-switch", "one receiver, and no paging one"
    # Even labelled like a page, the Watchdog stays on its route (it is matched by name, first).
    done = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}",
                  "alertname=Watchdog", "severity=critical", "condition=watchdog")
    assert done.stdout.strip() == "deadmans-switch", done.stdout + done.stderr


def test_the_watchdog_route_is_first_final_and_pings_every_minute() -> None:
    first = source()["route"]["routes"][0]
    assert first["matchers"] == ['alertname="Watchdog"']
    assert first["receiver"] == "deadmans-switch"
    assert first["continue"] is False
    assert first["group_interval"] == "1m"
    # Below group_interval, so that every group_interval tick re-sends (equal would be every 2m).
    assert parse_duration(first["repeat_interval"]) < parse_duration(first["group_interval"])
    assert not {"active_time_intervals", "mute_time_intervals"} & set(first), "it must never pause"
    receivers = {x["name"]: x for x in source()["receivers"]}
    switch = receivers["deadmans-switch"]
    assert set(switch) == {"name", "webhook_configs"}, "a heartbeat is a webhook ping, never a mail"
    (hook,) = switch["webhook_configs"]
    assert hook["url"].startswith("https://")
    assert ".example.com/" in hook["url"], "a placeholder to replace"
    other_urls = {c["url"] for n in PAGING_RECEIVERS for c in receivers[n].get("webhook_configs", [])}
    assert hook["url"] not in other_urls


def test_no_inhibition_rule_can_mute_the_watchdog() -> None:
    """The heartbeat must reach the switch whatever else fires: no rule's target matches it."""
    rules = source()["inhibit_rules"]
    assert rules
    for rule in rules:
        targets = rule["target_matchers"]
        assert not all(matches(m, WATCHDOG_LABELS) for m in targets), rule
    # The matcher reader itself: it does match what it should.
    assert matches('severity=~"warning|info"', {"severity": "info"})
    assert not matches('severity=~"warning|info"', {"severity": "infos"})
    assert matches('slo=""', {})
    assert not matches('slo=~".+"', {})
    assert matches('alertname!="Watchdog"', {"alertname": "ApiDown"})


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
            "runbook_url": runbook_url("RedisMemoryCritical")},  # as the rules render it
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
    assert f"Runbook: {runbook_url('RedisMemoryCritical')}\n" in text
    assert "Since:   2026-01-02 03:04:05 UTC" in text
    resolved = render(tmp_path, "bybit.email.text", "resolved")
    assert "RESOLVED: 1" in resolved
    assert "(resolved 2026-01-02 04:05:06 UTC)" in resolved


def test_the_html_body_links_the_runbook_and_escapes_values(tmp_path: Path) -> None:
    html = render(tmp_path, "bybit.email.html", "firing", kind="html")
    assert f'<a href="{runbook_url("RedisMemoryCritical")}">Runbook</a>' in html
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


def _promconfig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.promconfig", *args], capture_output=True, text=True,
                          timeout=60, cwd=repo_root(), env=python_env(), check=False)


def test_the_command_line_sends_the_committed_mails_to_a_given_relay_at_any_hour(tmp_path: Path) -> None:
    done = _promconfig("alertmanager", "--out", str(tmp_path), "--smarthost", f"{LOOPBACK}:1025",
                       "--always-active")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "alertmanager.yml"
    check_config(path)
    local = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert local["global"]["smtp_smarthost"] == f"{LOOPBACK}:1025"
    assert local["global"]["smtp_require_tls"] is False
    mailing = [r["name"] for r in source()["receivers"] if r.get("email_configs")]
    assert mailing, "the committed receivers send mail"
    by_name = {r["name"]: r for r in local["receivers"]}
    for name in mailing:
        committed = next(r for r in source()["receivers"] if r["name"] == name)
        recipients = [m["to"] for m in committed["email_configs"]]
        assert [m["to"] for m in by_name[name]["email_configs"]] == recipients
    limits = [p for p, _v in walk(local["route"]) if "time_intervals" in p]
    assert limits == []  # --always-active: no route waits for working hours


@pytest.mark.parametrize("relay", ["localhost", "127.0.0.1:", ":25", "127.0.0.1:smtp", "127.0.0.1:70000"])
def test_the_command_line_refuses_a_relay_that_is_not_host_and_port(tmp_path: Path, relay: str) -> None:
    done = _promconfig("alertmanager", "--out", str(tmp_path), "--smarthost", relay)
    assert done.returncode == 2
    assert "expected HOST:PORT" in done.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


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
        # the dead-man's switch, beside every source above: never inhibited
        _alert("Watchdog", "none", "watchdog"),
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
