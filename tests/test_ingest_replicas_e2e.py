"""Two ingest replicas end to end: each under its label, one lost is a warning, both lost is critical.

simulator -> two ``python -m ingest`` (``INGEST_REPLICA`` a and b, monotonic writes, one
Redis) -> exporter, scraped every second by a real Prometheus with the project's rules
(every ``for:`` scaled by 1/30, as tests/test_alerting_e2e.py does). SIGKILL of replica b:
once its heartbeat TTL has passed the exporter shows one replica up, b down and none of b's
other series; the data stays fresh; Prometheus fires ``IngestReplicaDown{replica="b"}`` and
never ``IngestDown`` nor any other critical alert. SIGKILL of a too: ``IngestDown`` fires and
``IngestReplicaDown`` resolves.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.promconfig import load_thresholds, write_local_config, write_rule_files
from tests.fixtures_components import IngestHandle
from tests.fixtures_readers import Exposition, parse_exposition
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

COINS = ("BTC", "ETH")
PER_COIN = 20
DURATION_SCALE = 1 / 30  # IngestDown's and IngestReplicaDown's 2m become 4 s


def query(prometheus: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
    return result


def firing(prometheus: PrometheusServer) -> dict[str, list[dict[str, str]]]:
    """alertname -> the label sets of its firing alerts."""
    out: dict[str, list[dict[str, str]]] = {}
    for r in query(prometheus, 'ALERTS{alertstate="firing", alertname!="Watchdog"}'):
        out.setdefault(r["metric"]["alertname"], []).append(r["metric"])
    return out


def now(prometheus: PrometheusServer) -> float:
    """Prometheus' clock (the one its samples are stamped with)."""
    return float(query(prometheus, "vector(time())")[0]["value"][1])


def scrape(url: str) -> Exposition:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return parse_exposition(resp.read().decode())


@pytest.fixture
def stack(
    tmp_path: Path, redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
    ingest_factory: Callable[..., IngestHandle],
) -> Iterator[tuple[dict[str, IngestHandle], str, PrometheusServer]]:
    """Replicas a and b streaming one simulator into one Redis, the exporter, Prometheus."""
    sim = simulator_factory(coins=COINS, instruments_per_coin=PER_COIN, push_interval=0.5)
    replicas = {name: ingest_factory(redis_url=redis_server.url, simulator=sim, coins=COINS,
                                     env={"INGEST_REPLICA": name, "INGEST_MONOTONIC_WRITES": "true"})
                for name in ("a", "b")}
    ttl = replicas["a"].env["INGEST_HEARTBEAT_TTL"]
    exporter_port = free_port()
    exporter_url = f"http://{LOOPBACK}:{exporter_port}"
    exporter = ManagedProcess(
        [sys.executable, "-m", "exporter"], tmp_path / "exporter.log", cwd=str(repo_root()),
        env=python_env(REDIS_URL=redis_server.url, BYBIT_COINS=",".join(COINS), EXPORTER_HOST=LOOPBACK,
                       EXPORTER_PORT=str(exporter_port), INGEST_HEARTBEAT_TTL=ttl, LOG_FORMAT="text"))
    prometheus: PrometheusServer | None = None
    try:
        exporter.start()
        for handle in replicas.values():
            handle.wait_for_data(symbols=len(COINS) * PER_COIN)
        wait_until(lambda: http_ok(exporter_url + "/metrics"), timeout=30, what="the exporter's /metrics")
        prom_dir = tmp_path / "prometheus"
        prom_dir.mkdir()
        write_rule_files(prom_dir / "rules", load_thresholds().scaled(DURATION_SCALE))
        prometheus = PrometheusServer(prom_dir, prom_dir / "prometheus.yml")
        # No Alertmanager: the rules' verdicts are asked of Prometheus (routing: test_alertmanager.py).
        write_local_config(prom_dir, exporter=f"{LOOPBACK}:{exporter_port}",
                           api=f"{LOOPBACK}:{free_port()}", prometheus=f"{LOOPBACK}:{prometheus.port}",
                           alertmanager=f"{LOOPBACK}:{free_port()}", scrape_interval="1s",
                           evaluation_interval="1s", rules_dir=prom_dir / "rules")
        prometheus.start()
        wait_until(lambda: query(prometheus, "bybit_ingest_replicas_up == 2") != []
                   and "ExporterDown" not in firing(prometheus), timeout=30,
                   what="Prometheus scraping two live replicas, past its own start-up")
        yield replicas, exporter_url, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.stop()


@pytest.mark.slow
def test_one_replica_lost_is_a_warning_naming_it_and_both_lost_is_critical(
    stack: tuple[dict[str, IngestHandle], str, PrometheusServer],
) -> None:
    replicas, exporter_url, prometheus = stack

    m = scrape(exporter_url)
    assert m.value("bybit_ingest_replicas_up") == 2
    for name in ("a", "b"):
        assert m.value("bybit_ingest_up", replica=name) == 1
        assert m.value("bybit_ws_connected", replica=name) >= 1
        for coin in COINS:
            assert m.value("bybit_ws_messages_total", replica=name, coin=coin) >= PER_COIN
    assert m.label_values("bybit_ws_subscriptions", "replica") == {"a", "b"}
    # No API is running (its alerts are not this test's business); every ingest alert is quiet.
    assert not {"IngestDown", "IngestReplicaDown"} & set(firing(prometheus)), "a healthy pair alerted"

    killed_at = now(prometheus)
    replicas["b"].kill()  # SIGKILL: no goodbye, its heartbeat just stops

    def b_down() -> Exposition | None:
        m = scrape(exporter_url)
        return m if m.get("bybit_ingest_up", replica="b") == 0 else None

    m = wait_until(b_down, timeout=30, what="replica b down after its heartbeat TTL")
    assert m.value("bybit_ingest_replicas_up") == 1
    assert m.value("bybit_ingest_up", replica="a") == 1
    ttl = float(replicas["a"].env["INGEST_HEARTBEAT_TTL"])
    assert m.value("bybit_ingest_heartbeat_age_seconds", replica="b") >= ttl
    for name in ("bybit_ws_connected", "bybit_ws_messages_total", "bybit_errors_total",
                 "bybit_message_lag_seconds_count", "bybit_ingest_resident_memory_bytes"):
        assert m.label_values(name, "replica") == {"a"}, name

    def replica_down_alert() -> list[dict[str, str]] | None:
        return firing(prometheus).get("IngestReplicaDown")

    alerts = wait_until(replica_down_alert, timeout=30, interval=0.5, what="IngestReplicaDown firing")
    assert [(a["replica"], a["severity"]) for a in alerts] == [("b", "warning")]
    # The other replica keeps the data fresh: nothing critical, now or at any time since b died.
    for coin in COINS:
        assert scrape(exporter_url).value("bybit_data_staleness_seconds", coin=coin) < 5
    since = f"{int(now(prometheus) - killed_at) + 1}s"
    critical = query(prometheus, f'count_over_time(ALERTS{{severity="critical", job="exporter"}}[{since}])')
    assert critical == [], f"a critical alert for one replica lost: {[c['metric'] for c in critical]}"

    replicas["a"].kill()

    def ingest_down() -> dict[str, list[dict[str, str]]] | None:
        alerts = firing(prometheus)
        return alerts if "IngestDown" in alerts and "IngestReplicaDown" not in alerts else None

    alerts = wait_until(ingest_down, timeout=40, interval=0.5, what="IngestDown taking over")
    assert [a["severity"] for a in alerts["IngestDown"]] == ["critical"]
    assert scrape(exporter_url).value("bybit_ingest_replicas_up") == 0
