"""The rules generator: thresholds.yml is validated, overrides and scaling derive variants, and
placeholders never render a rule that compares against nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import load_thresholds, render_rule_files
from scripts.promconfig.durations import format_duration, parse_duration
from scripts.promconfig.placeholders import PlaceholderError, fill, promql_number
from scripts.promconfig.rules import rule_groups
from scripts.promconfig.thresholds import THRESHOLDS_FILE, ThresholdError, parse_thresholds
from tests.servers import python_env, repo_root


def committed_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(THRESHOLDS_FILE.read_text(encoding="utf-8"))
    return doc


def alert_rule(files: dict[str, str], name: str) -> dict[str, Any]:
    for text in files.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name:
                    return dict(rule)
    raise AssertionError(f"{name} not rendered")


# --- durations and numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds", "canonical"), [
    ("0s", 0, "0s"), ("0", 0, "0s"), ("90s", 90, "1m30s"), ("1h30m", 5400, "1h30m"), ("3d", 259200, "3d"),
    ("500ms", 0.5, "500ms"), ("1w", 604800, "7d"), ("2h0m", 7200, "2h"),
])
def test_prometheus_durations_read_and_write_back(text: str, seconds: float, canonical: str) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == canonical


@pytest.mark.parametrize("bad", ["", "5", "5 m", "m5", "1.5h", "-5m", "5min"])
def test_malformed_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_numbers_render_as_promql_reads_them_back() -> None:
    assert promql_number(300.0) == "300"
    assert promql_number(0.05) == "0.05"
    assert promql_number(14.4) == "14.4"
    assert promql_number(209715200.0) == "209715200"
    assert float(promql_number(1 / 3)) == 1 / 3


def test_placeholders_fill_numbers_percentages_durations_and_sizes() -> None:
    values: dict[str, float | str] = {"t": 0.9, "s": 300.0, "b": 209715200.0, "h": "4h"}
    assert fill("x > [[t]] ([[t|percent]])", values, where="w") == "x > 0.9 (90%)"
    assert fill("[[s|duration]] [[b|bytes]] [[h]] [[h|seconds]]", values, where="w") == "5m 200MiB 4h 14400"
    assert fill("{{ $value | humanize }} x[5m]", values, where="w") == "{{ $value | humanize }} x[5m]"


@pytest.mark.parametrize(("template", "message"), [
    ("x > [[missing]]", "not a parameter"), ("[[t|nope]]", "unknown filter"), ("[[h|percent]]", "duration"),
    ("x > [[ t ]]", "malformed"),
])
def test_a_bad_placeholder_is_an_error_not_an_empty_string(template: str, message: str) -> None:
    with pytest.raises(PlaceholderError, match=message):
        fill(template, {"t": 1.0, "h": "4h"}, where="test")


# --- thresholds.yml ----------------------------------------------------------------------------------------


def test_the_committed_thresholds_are_the_seeds() -> None:
    t = load_thresholds()
    assert t.alert("NoDataFlowing").number("threshold") == 300
    assert [t.alert(a).number("threshold") for a in
            ("RedisMemoryElevated", "RedisMemoryHigh", "RedisMemoryCritical")] == [0.5, 0.7, 0.9]
    assert [t.alert(a).number("threshold") for a in
            ("WebSocketReconnectsElevated", "WebSocketReconnectsHigh")] == [20, 60]
    assert t.alert("WebSocketReconnectFailing").number("threshold") == 10
    assert t.alert("ApiLatencyHigh").number("threshold") == 2
    assert t.alert("ApiErrorRateHigh").number("threshold") == 0.05
    assert dict(t.slo.objectives) == {"api_availability": 0.999, "ingest_uptime": 0.995,
                                      "data_freshness": 0.99}
    assert t.slo.windows == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    assert [(b.factor, b.long, b.short) for b in t.slo.page] == [(14.4, "1h", "5m"), (6, "6h", "30m")]


def test_an_override_changes_one_value_and_the_rendered_rule() -> None:
    t = load_thresholds().with_overrides({"NoDataFlowing.threshold": "10", "NoDataFlowing.for": "5s"})
    assert t.alert("NoDataFlowing").number("threshold") == 10
    rule = alert_rule(render_rule_files(t), "NoDataFlowing")
    assert rule["expr"] == "min by (job) (bybit_data_staleness_seconds) > 10"
    assert rule["for"] == "5s"
    assert "10s" in rule["annotations"]["summary"]
    assert load_thresholds().alert("NoDataFlowing").number("threshold") == 300  # the source is untouched


@pytest.mark.parametrize("bad", [{"NoSuchAlert.threshold": 1}, {"NoDataFlowing.nope": 1},
                                 {"NoDataFlowing.threshold": "high"}, {"NoDataFlowing.for": "soon"}])
def test_an_unknown_or_malformed_override_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ThresholdError):
        load_thresholds().with_overrides(bad)


def test_scaling_shortens_every_for_and_nothing_else() -> None:
    base = load_thresholds()
    fast = base.scaled(0.01)
    assert fast.alert("RedisMemoryElevated").duration("for") == "18s"   # 30m
    assert fast.alert("NoDataFlowing").duration("for") == "600ms"       # 1m
    assert fast.slo.page_for == "1s200ms"
    assert fast.alert("RedisMemoryWillFill").duration("horizon") == "4h"
    assert fast.alert("NoDataFlowing").number("threshold") == 300
    assert fast.slo.windows == base.slo.windows
    with pytest.raises(ThresholdError):
        base.scaled(0)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["alerts"]["RedisMemoryHigh"].pop("for"), "needs a `for`"),
    (lambda d: d["alerts"]["RedisMemoryHigh"].update(threshold="lots"), "expected a number"),
    (lambda d: d["alerts"]["RedisMemoryHigh"].update(threshold=True), "expected a number"),
    (lambda d: d["alerts"]["RedisMemoryHigh"].update({"for": "10 minutes"}), "duration"),
    (lambda d: d["slo"]["objectives"].update(api_availability=99.9), r"ratio in \(0, 1\)"),
    (lambda d: d["slo"]["page"][0].update(short="2h"), "must be shorter"),
    (lambda d: d["slo"].pop("period"), "keys must be"),
    (lambda d: d.update(extra={}), "top-level keys"),
])
def test_a_malformed_thresholds_file_is_refused_with_the_key_named(edit: Any, message: str) -> None:
    doc = committed_doc()
    edit(doc)
    with pytest.raises(ThresholdError, match=message):
        parse_thresholds(doc)


def test_a_threshold_no_rule_uses_or_an_alert_without_a_rule_is_an_error() -> None:
    doc = committed_doc()
    doc["alerts"]["RedisMemoryHigh"]["treshold"] = 0.8
    with pytest.raises(ThresholdError, match="used by no rule"):
        rule_groups(parse_thresholds(doc))
    doc = committed_doc()
    doc["alerts"]["RedisMemoryHuge"] = {"threshold": 0.99, "for": "1m"}
    with pytest.raises(ThresholdError, match="unknown alerts"):
        rule_groups(parse_thresholds(doc))
    doc = committed_doc()
    del doc["alerts"]["RedisMemoryHigh"]
    with pytest.raises(ThresholdError, match="no entry for alert RedisMemoryHigh"):
        rule_groups(parse_thresholds(doc))


def test_slo_burn_rate_alerts_follow_the_workbook_policy() -> None:
    rule = alert_rule(render_rule_files(), "ApiAvailabilityBudgetBurnFast")
    expr = " ".join(rule["expr"].split())
    assert 'slo:bybit_error_budget:burn_rate1h{slo="api_availability"} > 14.4 and' in expr
    assert 'slo:bybit_error_budget:burn_rate5m{slo="api_availability"} > 14.4' in expr
    assert 'slo:bybit_error_budget:burn_rate6h{slo="api_availability"} > 6 and' in expr
    assert rule["labels"]["severity"] == "critical"
    slow = alert_rule(render_rule_files(), "IngestUptimeBudgetBurnSlow")
    assert 'burn_rate3d{slo="ingest_uptime"} > 1' in slow["expr"]
    assert slow["labels"]["severity"] == "warning"


# --- CLI --------------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.promconfig", *args], capture_output=True, text=True,
                          cwd=repo_root(), env=python_env(), timeout=60, check=False)


def test_cli_check_passes_on_the_committed_files() -> None:
    done = _cli("check")
    assert done.returncode == 0, done.stderr


def test_cli_rules_writes_overridden_and_scaled_rules(tmp_path: Path) -> None:
    done = _cli("rules", "--out", str(tmp_path), "--set", "CoinDataStale.threshold=15",
                "--duration-scale", "0.1")
    assert done.returncode == 0, done.stderr
    files = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.yml")}
    assert set(files) == {"recording.yml", "alerts.yml", "slo.yml", "watchdog.yml"}
    rule = alert_rule(files, "CoinDataStale")
    assert rule["expr"] == "bybit_data_staleness_seconds > 15"
    assert rule["for"] == "6s"


def test_cli_names_a_bad_override_and_exits_2(tmp_path: Path) -> None:
    done = _cli("rules", "--out", str(tmp_path), "--set", "CoinDataStale=15")
    assert done.returncode == 2
    assert "ALERT.KEY=VALUE" in done.stderr
