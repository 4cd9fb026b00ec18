"""The health check, the dashboards and the alert rules use the same tier numbers.

For every threshold in tracker_tools/healthcheck/tiers.py there must be an alert in
prometheus/rules/*.yml with that severity, about that measurement, comparing against that
number (as a ratio or a percentage). Recording rules an alert uses are expanded first, so an
alert on ``job:bybit_redis_memory:ratio`` counts as one about Redis memory.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.servers import repo_root
from tracker_tools.healthcheck import tiers
from tracker_tools.healthcheck.tiers import Thresholds

#: Measurement -> (a regex an alert's expanded expression matches, its thresholds).
MEASUREMENTS: dict[str, tuple[str, Thresholds]] = {
    "redis memory": (r"bybit_redis_memory", tiers.REDIS_MEMORY_RATIO),
    "reconnects per hour": (r"reconnects", tiers.RECONNECTS_PER_HOUR),
    "consecutive failures": (r"bybit_ws_consecutive_failures", tiers.CONSECUTIVE_FAILURES),
    "staleness": (r"bybit_data_staleness_seconds|bybit_data_last_update", tiers.STALENESS_SECONDS),
    "api latency": (r"bybit_api_request_duration_seconds", tiers.API_LATENCY_P95_SECONDS),
    "api errors": (r'bybit_api_requests_total[^)]*5xx|5xx[^)]*bybit_api_requests_total',
                   tiers.API_ERROR_RATIO),
}
NUMBER = re.compile(r"[<>]=?\s*\(?\s*(\d+(?:\.\d+)?(?:e[-+]?\d+)?)")


def load_rules() -> tuple[list[dict[str, Any]], dict[str, str]]:
    alerts: list[dict[str, Any]] = []
    records: dict[str, str] = {}
    for path in sorted((repo_root() / "prometheus").glob("rules/*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    alerts.append(rule)
                elif "record" in rule:
                    records[rule["record"]] = str(rule["expr"])
    return alerts, records


def expanded(expr: str, records: dict[str, str], depth: int = 3) -> str:
    """``expr`` followed by the expressions of the recording rules it uses (recursively)."""
    parts = [expr]
    if depth:
        for name, body in records.items():
            if re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr):
                parts.append(expanded(body, records, depth - 1))
    return "\n".join(parts)


def numbers(expr: str) -> set[float]:
    return {float(m.group(1)) for m in NUMBER.finditer(expr)}


def cases() -> list[tuple[str, str, float]]:
    out = []
    for measurement, (_pattern, thresholds) in MEASUREMENTS.items():
        for severity in ("info", "warning", "critical"):
            value = getattr(thresholds, severity)
            if value is not None:
                out.append((measurement, severity, float(value)))
    return out


def test_the_rules_define_alerts_in_all_three_tiers() -> None:
    alerts, _records = load_rules()
    assert {a.get("labels", {}).get("severity") for a in alerts} >= {"critical", "warning", "info"}


@pytest.mark.parametrize(("measurement", "severity", "value"), cases())
def test_each_tier_threshold_has_an_alert_with_the_same_number(
    measurement: str, severity: str, value: float,
) -> None:
    alerts, records = load_rules()
    pattern = MEASUREMENTS[measurement][0]
    candidates = [a for a in alerts if a.get("labels", {}).get("severity") == severity
                  and re.search(pattern, expanded(str(a["expr"]), records))]
    assert candidates, f"no {severity} alert about {measurement} in prometheus/rules/"
    accepted = {value, value * 100} if value <= 1 else {value}
    found = {n for a in candidates for n in numbers(expanded(str(a["expr"]), records))}
    assert found & accepted, (
        f"{severity} alerts about {measurement} ({[a['alert'] for a in candidates]}) compare against "
        f"{sorted(found)}, not {value} as tracker_tools/healthcheck/tiers.py says")


def test_number_extraction_reads_comparisons_only() -> None:
    assert numbers("max(x[5m]) / max(y) > 0.9 and rate(z[1h]) >= 60") == {0.9, 60.0}
    assert numbers("histogram_quantile(0.95, sum by (le) (rate(b[5m]))) > 2") == {2.0}
