"""prometheus.yml: generated for compose, valid for promtool, the same source for loopback stacks,
and a real Prometheus loads it and evaluates every rule without an error."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from scripts.promconfig import COMPOSE_TARGETS, render_prometheus_config, write_local_config
from scripts.promconfig.prometheus_config import PROMETHEUS_FILE
from tests.servers import LOOPBACK, PrometheusServer, free_port, promtool, python_env, repo_root, wait_until

ROOT = repo_root()
JOBS = ("exporter", "api", "prometheus", "alertmanager")


def targets_of(config: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            out.setdefault(job["job_name"], []).extend(static["targets"])
    return out


def alertmanagers_of(config: dict[str, Any]) -> list[str]:
    return [t for am in config["alerting"]["alertmanagers"]
            for s in am["static_configs"] for t in s["targets"]]


def local_config(tmp_path: Path, **kwargs: Any) -> Path:
    return write_local_config(
        tmp_path, exporter=f"{LOOPBACK}:{free_port()}", api=f"{LOOPBACK}:{free_port()}",
        prometheus=f"{LOOPBACK}:9090", alertmanager=f"{LOOPBACK}:{free_port()}", **kwargs)


def test_the_committed_prometheus_yml_is_the_compose_rendering() -> None:
    assert PROMETHEUS_FILE.read_text(encoding="utf-8") == render_prometheus_config(COMPOSE_TARGETS), (
        "prometheus/prometheus.yml is out of date: run python -m scripts.promconfig render")


def test_promtool_accepts_the_committed_config_and_resolves_its_rule_files() -> None:
    done = promtool("check", "config", str(PROMETHEUS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    rule_files = len(list((ROOT / "prometheus" / "rules").glob("*.yml")))
    assert f"SUCCESS: {rule_files} rule files found" in done.stdout


def test_jobs_and_targets_are_the_contract_names_and_ports() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    assert targets_of(config) == {"exporter": ["exporter:9108"], "api": ["api:5001"],
                                  "prometheus": ["localhost:9090"], "alertmanager": ["alertmanager:9093"]}
    assert alertmanagers_of(config) == ["alertmanager:9093"]
    assert config["rule_files"] == ["rules/*.yml"]


def test_the_local_variant_scrapes_loopback_and_reads_the_committed_rules(tmp_path: Path) -> None:
    path = local_config(tmp_path, scrape_interval="1s", evaluation_interval="1s")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    targets = targets_of(config)
    assert tuple(targets) == JOBS
    assert all(t.startswith(f"{LOOPBACK}:") for ts in targets.values() for t in ts)
    assert alertmanagers_of(config)[0].startswith(f"{LOOPBACK}:")
    assert config["rule_files"] == [str(ROOT / "prometheus" / "rules" / "*.yml")]
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cli_writes_a_config_for_any_targets(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.promconfig", "prometheus", "--out", str(tmp_path),
         "--exporter", "10.0.0.5:9108", "--api", "10.0.0.6:5001", "--prometheus", "127.0.0.1:9090",
         "--alertmanager", "10.0.0.7:9093", "--rules-dir", str(tmp_path / "rules")],
        capture_output=True, text=True, cwd=ROOT, env=python_env(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text(encoding="utf-8"))
    assert targets_of(config)["exporter"] == ["10.0.0.5:9108"]
    assert config["rule_files"] == [str(tmp_path / "rules" / "*.yml")]


def _rules_api(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=5) as resp:
        groups: list[dict[str, Any]] = json.loads(resp.read())["data"]["groups"]
    return groups


def test_a_real_prometheus_loads_every_rule_and_evaluates_each_without_error(tmp_path: Path) -> None:
    config = local_config(tmp_path, scrape_interval="1s", evaluation_interval="1s")
    prometheus = PrometheusServer(tmp_path, config)
    prometheus.start()
    try:
        def evaluated() -> list[dict[str, Any]] | None:
            rules = [r for g in _rules_api(prometheus.url) for r in g["rules"]]
            return rules if rules and all(r["health"] != "unknown" for r in rules) else None

        rules = wait_until(evaluated, timeout=30, what="every rule evaluated once")
        errors = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not errors, f"rules failing in Prometheus: {errors}"
        groups = {g["name"] for g in _rules_api(prometheus.url)}
        assert groups == {"bybit.recording", "bybit.critical", "bybit.warning", "bybit.info",
                          "bybit.predictive", "bybit.slo.recording", "bybit.slo.alerts", "bybit.watchdog"}
    finally:
        prometheus.stop()
