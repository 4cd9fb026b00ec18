"""The alerting rules are valid, complete, tested by promtool, and in sync with their source.

promtool checks the committed rules and runs the unit tests in prometheus/tests/ (every alert
fires at the seed's thresholds with exact labels and annotations, stays silent just below,
resolves; the stack is quiet when healthy). The checks here make sure nothing can slip past
those: every alert carries its labels, annotations and an existing runbook, every metric is a
contract metric, every alert has a firing and a silent promtool case, the quiet cases list
every alert, and a moved threshold makes the promtool tests fail.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import load_thresholds, render_rule_files, stale_rule_files, write_rule_files
from scripts.promconfig.model import (
    ALERT_SEVERITIES,
    DEFAULT_RUNBOOK_BASE,
    HEARTBEAT_SEVERITY,
    SEVERITIES,
    runbook_url,
)
from scripts.promconfig.rules import all_alerts
from tests.servers import promtool, repo_root

ROOT = repo_root()
RULES = ROOT / "prometheus" / "rules"
TESTS = ROOT / "prometheus" / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_URL = re.compile(re.escape(DEFAULT_RUNBOOK_BASE) + r"(?P<name>[A-Za-z0-9]+)\.md")
#: Series Prometheus itself provides; every other name must be a contract metric or recorded.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset", "inf", "nan"}
#: Scenarios whose whole point is that nothing fires.
QUIET_FILES = ("quiet.yml", "quiet_restarts.yml")


def rule_docs() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(RULES.glob("*.yml"))]


def rules_of(kind: str) -> list[dict[str, Any]]:
    return [r for doc in rule_docs() for g in doc["groups"] for r in g["rules"] if kind in r]


def alert_names() -> list[str]:
    return [r["alert"] for r in rules_of("alert")]


def heartbeat_names() -> set[str]:
    """The always-firing dead-man's switch alerts (severity "none"): never silent, never a tier."""
    return {r["alert"] for r in rules_of("alert") if r["labels"]["severity"] == HEARTBEAT_SEVERITY}


def promtool_tests() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, test case) for every case in prometheus/tests/*.yml."""
    for path in sorted(TESTS.glob("*.yml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            yield path.name, case


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (histogram suffixes folded into the family)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                             # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                            # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = m.group(0), text[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue  # a function or a keyword
        names.add(re.sub(r"_(bucket|sum|count)$", "", word) if word.startswith("bybit_") else word)
    return names


def contract_metrics() -> set[str]:
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    return set(re.findall(r"`(bybit_[a-z0-9_]+)`", text))


def fail_with(done: Any) -> str:
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


# --- promtool -----------------------------------------------------------------------------------


def test_promtool_accepts_the_rule_files() -> None:
    done = promtool("check", "rules", *sorted(str(p) for p in RULES.glob("*.yml")))
    assert done.returncode == 0, fail_with(done)
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("test_file", sorted(p.name for p in TESTS.glob("*.yml")))
def test_promtool_unit_tests_pass(test_file: str) -> None:
    done = promtool("test", "rules", test_file, cwd=TESTS)
    assert done.returncode == 0, fail_with(done)


def test_promtool_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    """The promtool cases pin the seed's numbers: 95 % instead of 90 % must break them."""
    moved = load_thresholds().with_overrides({"RedisMemoryCritical.threshold": 0.95})
    write_rule_files(tmp_path / "rules", moved)
    shutil.copytree(TESTS, tmp_path / "tests")
    done = promtool("test", "rules", "critical.yml", cwd=tmp_path / "tests")
    assert done.returncode != 0, "promtool tests still pass with a moved threshold"
    assert "RedisMemoryCritical" in done.stdout + done.stderr


# --- in sync with the source -------------------------------------------------------------------------


def test_committed_rules_are_exactly_what_the_generator_renders() -> None:
    assert stale_rule_files(RULES) == [], "run: python -m scripts.promconfig render"


def test_a_hand_edited_rule_file_is_reported_stale(tmp_path: Path) -> None:
    rendered = render_rule_files()
    write_rule_files(tmp_path)
    assert stale_rule_files(tmp_path, rendered) == []
    edited = tmp_path / "alerts.yml"
    edited.write_text(edited.read_text(encoding="utf-8").replace("> 0.9", "> 0.95", 1), encoding="utf-8")
    (tmp_path / "extra.yml").write_text("groups: []\n", encoding="utf-8")
    assert stale_rule_files(tmp_path, rendered) == ["alerts.yml", "extra.yml"]


def test_every_alert_in_the_rules_comes_from_the_catalogue() -> None:
    generated = {t.name for t, _p in all_alerts(load_thresholds())}
    assert sorted(alert_names()) == sorted(generated)
    assert len(alert_names()) == len(set(alert_names())), "alert names must be unique"


# --- every alert is complete ----------------------------------------------------------------------------


@pytest.mark.parametrize("rule", rules_of("alert"), ids=lambda r: r["alert"])
def test_every_alert_has_severity_condition_annotations_and_a_runbook(rule: dict[str, Any]) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in ALERT_SEVERITIES
    assert re.fullmatch(r"[a-z_]+", labels["condition"])
    assert set(annotations) == {"summary", "description", "value", "runbook_url"}
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert "[[" not in str(rule), "an unfilled threshold placeholder"
    m = RUNBOOK_URL.fullmatch(annotations["runbook_url"])
    assert m is not None, annotations["runbook_url"]
    assert m.group("name") == rule["alert"], annotations["runbook_url"]
    assert annotations["runbook_url"] == runbook_url(rule["alert"])
    assert (RUNBOOKS / f"{rule['alert']}.md").is_file(), f"docs/runbooks/{rule['alert']}.md is missing"


def test_descriptions_carry_the_current_value_where_there_is_one() -> None:
    """Alerts on a state (down, unreachable) say how long; every other one shows $value."""
    states = {r["alert"] for r in rules_of("alert") if r["annotations"]["value"] == "{{ $value }}"}
    for rule in rules_of("alert"):
        if rule["alert"] not in states:
            assert "$value" in rule["annotations"]["description"], rule["alert"]
    assert states == {"RedisDown", "ApiDown", "IngestDown", "IngestReplicaDown", "ExporterDown",
                      "AlertmanagerDown", "Watchdog"}


def test_the_three_tiers_and_the_predictor_are_all_present() -> None:
    severities = {r["labels"]["severity"] for r in rules_of("alert")}
    assert severities == {*SEVERITIES, HEARTBEAT_SEVERITY}
    predictive = {r["alert"] for r in rules_of("alert") if r["labels"].get("predictive") == "true"}
    assert predictive == {"RedisMemoryWillFill", "WebSocketReconnectsEscalating", "ErrorRateRising"}
    slo = {r["labels"]["slo"] for r in rules_of("alert") if "slo" in r["labels"]}
    assert slo == {"api_availability", "ingest_uptime", "data_freshness", "ws_reconnects"}


@pytest.mark.parametrize("name", sorted(p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md"))
def test_every_runbook_belongs_to_an_alert_and_has_the_standard_sections(name: str) -> None:
    assert name in alert_names(), f"docs/runbooks/{name}.md documents no alert"
    text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
    assert text.startswith(f"# {name}\n"), "a runbook starts with its alert's name"
    for section in ("Meaning", "Impact", "Diagnosis", "Mitigation", "Escalation", "Related"):
        assert re.search(rf"^## {section}\b", text, re.MULTILINE), f"{name}: no '## {section}' section"
    diagnosis = text.split("## Diagnosis", 1)[1].split("\n## ", 1)[0]
    assert "```" in diagnosis, f"{name}: the diagnosis gives exact commands in a code block"


# --- metrics ---------------------------------------------------------------------------------------------


def edge_metrics() -> set[str]:
    """The HAProxy series the rules may read: docs/CONTRACTS.md's load balancer table."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    section = text.split('Load balancer (`job="haproxy"`', 1)[1].split("\nLabel values", 1)[0]
    return set(re.findall(r"^\| `(haproxy_[a-z_]+)` \|", section, re.MULTILINE))


def test_every_metric_used_is_a_contract_metric_or_recorded_or_prometheus_own() -> None:
    assert edge_metrics(), "docs/CONTRACTS.md load balancer table not found"
    recorded = {r["record"] for r in rules_of("record")}
    known = contract_metrics() | recorded | PROMETHEUS_SERIES | edge_metrics()
    assert len(contract_metrics()) > 20, "docs/CONTRACTS.md metric table not found"
    unknown = {(r.get("alert") or r["record"], name)
               for r in rules_of("alert") + rules_of("record")
               for name in metric_names(str(r["expr"])) if name not in known}
    assert not unknown, f"not in docs/CONTRACTS.md nor a recording rule: {sorted(unknown)}"


def test_metric_name_extraction_skips_functions_labels_ranges_and_keywords() -> None:
    expr = ('histogram_quantile(0.95, sum by (job, le) (rate(bybit_api_request_duration_seconds_bucket'
            '{route="/x"}[5m]))) > 2 and x:y:z offset 1d unless on (job) up{job="api"} == bool 0')
    assert metric_names(expr) == {"bybit_api_request_duration_seconds", "x:y:z", "up"}


def test_recording_rules_are_named_level_metric_operations() -> None:
    for rule in rules_of("record"):
        assert re.fullmatch(r"[a-z_]*:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


# --- the promtool tests cover every alert -----------------------------------------------------------------


def _alert_tests() -> list[tuple[str, dict[str, Any]]]:
    return [(f, t) for f, case in promtool_tests() for t in case.get("alert_rule_test", [])]


@pytest.mark.parametrize("name", sorted(set(alert_names()) - heartbeat_names()))
def test_every_alert_has_a_firing_case_with_exact_annotations_and_a_silent_case(name: str) -> None:
    cases = [(f, t) for f, t in _alert_tests() if t["alertname"] == name]
    firing = [t for _f, t in cases if t["exp_alerts"]]
    assert firing, f"no promtool case where {name} fires"
    for test in firing:
        for alert in test["exp_alerts"]:
            assert set(alert["exp_annotations"]) == {"summary", "description", "value", "runbook_url"}
            assert alert["exp_labels"]["severity"] in SEVERITIES
    silent = [t for f, t in cases if not t["exp_alerts"] and f not in QUIET_FILES]
    assert silent, f"no promtool case where {name} stays silent (below its threshold or resolved)"


def test_the_dead_mans_switch_is_one_alert_that_fires_in_every_case_and_is_never_expected_silent() -> None:
    assert heartbeat_names() == {"Watchdog"}
    cases = [t for _f, t in _alert_tests() if t["alertname"] == "Watchdog"]
    assert len(cases) >= 3, "fires at the first evaluation, hours and days later, with targets down"
    assert min(str(t["eval_time"]) for t in cases) == "0m", "it must fire from the first evaluation"
    for test in cases:
        (alert,) = test["exp_alerts"]
        assert alert["exp_labels"] == {"severity": HEARTBEAT_SEVERITY, "condition": "watchdog"}
        assert set(alert["exp_annotations"]) == {"summary", "description", "value", "runbook_url"}
    (rule,) = [r for r in rules_of("alert") if r["alert"] == "Watchdog"]
    assert rule["expr"] == "vector(1)", "no scrape target to depend on"
    assert "for" not in rule, "no pending state: firing from the first evaluation"


def test_the_quiet_cases_load_the_tracker_rules_without_the_heartbeat() -> None:
    """Quiet means no alert at all (``count(ALERTS)`` is 0): the always-firing Watchdog stays out."""
    for name in QUIET_FILES:
        doc = yaml.safe_load((TESTS / name).read_text(encoding="utf-8"))
        loaded = {Path(f).name for f in doc["rule_files"]}
        assert loaded == {p.name for p in RULES.glob("*.yml")} - {"watchdog.yml"}, name


def test_every_quiet_case_lists_every_alert() -> None:
    everyone = set(alert_names()) - heartbeat_names()
    quiet = [(f, case) for f, case in promtool_tests() if f in QUIET_FILES]
    assert len(quiet) >= 4, "healthy stack, no maxmemory, restarts, coin removed"
    for f, case in quiet:
        listed = {t["alertname"] for t in case["alert_rule_test"]}
        assert listed == everyone, f"{f}: {case['name']} does not list {sorted(everyone - listed)}"
        assert all(not t["exp_alerts"] for t in case["alert_rule_test"])
        assert any(t["expr"].startswith("count(ALERTS)") for t in case["promql_expr_test"])


# --- docs/alerting.md --------------------------------------------------------------------------------------

ROUTE_OF = {"critical": "oncall-pager", "warning": "team", "info": "team-digest", "none": "deadmans-switch"}


def test_the_alerting_guide_has_a_true_row_for_every_alert() -> None:
    text = (ROOT / "docs" / "alerting.md").read_text(encoding="utf-8")
    tier = "critical|warning|info|none"
    row = re.compile(rf"^\| `([A-Za-z0-9]+)` \| ({tier}) \|.*\| ([0-9a-z]+) \| ([a-z-]+) \|$", re.MULTILINE)
    rows = {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in row.finditer(text)}
    for rule in rules_of("alert"):
        severity = rule["labels"]["severity"]
        assert rows.get(rule["alert"]) == (severity, rule.get("for", "0s"), ROUTE_OF[severity]), rule["alert"]
    assert set(rows) == set(alert_names())
