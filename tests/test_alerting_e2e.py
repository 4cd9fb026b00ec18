"""End to end: a silent exchange pages through the real chain, and the page resolves.

simulator -> ingest -> Redis -> exporter and api, scraped every second by a real Prometheus
with the project's rules, which notifies a real Alertmanager with the project's routing,
which posts to a webhook receiver here. The rules are rendered from the same
prometheus/thresholds.yml as the committed ones, with every ``for:`` scaled down (1/30) and
the no-data threshold at 10 s instead of 5 minutes, so the test takes a minute, not an hour;
Alertmanager's timers are scaled the same way.

Scenario: a healthy stack stays quiet (only the always-firing Watchdog, the dead-man's switch,
is active, and it reaches only its own receiver); the simulator goes silent (tickers stop, pings are
still answered); the critical NoDataFlowing alert reaches the webhook through the critical
route; tickers resume; the webhook receives its resolution.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.promconfig import (
    load_thresholds,
    write_local_alertmanager_config,
    write_local_config,
    write_rule_files,
)
from tests.fixtures_components import IngestHandle
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import (
    LOOPBACK,
    AlertmanagerServer,
    ManagedProcess,
    PrometheusServer,
    RedisServer,
    WebhookReceiver,
    free_port,
    http_ok,
    python_env,
    repo_root,
    wait_until,
)

COINS = ("BTC", "ETH")
DURATION_SCALE = 1 / 30
NO_DATA_SECONDS = 10
#: How long a healthy stack is watched for alerts: longer than every scaled `for:` up to 10m.
QUIET_SECONDS = 25


def _query(prometheus: PrometheusServer, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant vector query, at Prometheus' now or at ``at`` (epoch seconds)."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    url = f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
    return result


def _epoch(rfc3339: str) -> float:
    """Alertmanager's timestamps (nanosecond precision, Z) as epoch seconds."""
    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp() + float(f"0.{frac or 0}")


def _now(prometheus: PrometheusServer) -> float:
    """Prometheus' clock (the one its samples are stamped with)."""
    return float(_query(prometheus, "vector(time())")[0]["value"][1])


def _firing(prometheus: PrometheusServer) -> list[str]:
    return sorted(r["metric"]["alertname"] for r in _query(prometheus, 'ALERTS{alertstate="firing"}'))


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def stack(
    tmp_path: Path, redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
    ingest_factory: Callable[..., IngestHandle], webhook: WebhookReceiver,
) -> Iterator[tuple[SimulatorHandle, PrometheusServer]]:
    """The whole chain on loopback; yields the simulator (to break) and Prometheus (to ask)."""
    sim = simulator_factory(coins=COINS, instruments_per_coin=20, push_interval=0.5)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim, coins=COINS)
    exporter_port, api_port = free_port(), free_port()
    env = python_env(REDIS_URL=redis_server.url, BYBIT_COINS=",".join(COINS), EXPORTER_HOST=LOOPBACK,
                     EXPORTER_PORT=str(exporter_port), API_HOST=LOOPBACK, API_PORT=str(api_port),
                     INGEST_HEARTBEAT_TTL=ingest.env["INGEST_HEARTBEAT_TTL"], LOG_FORMAT="text")
    procs = [ManagedProcess([sys.executable, "-m", name], tmp_path / f"{name}.log", env=env,
                            cwd=str(repo_root())) for name in ("exporter", "api")]
    servers: list[PrometheusServer | AlertmanagerServer] = []
    try:
        for proc in procs:
            proc.start()
        ingest.wait_for_data(symbols=len(COINS) * 20)
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{exporter_port}/metrics"), timeout=30,
                   what="the exporter's /metrics")
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{api_port}/api/options/BTC"), timeout=30,
                   what="the API serving BTC")

        # The project's routing, posting to the webhook, timers scaled like the rules.
        am_dir = tmp_path / "alertmanager"
        alertmanager = AlertmanagerServer(am_dir, write_local_alertmanager_config(
            am_dir, webhook_url=webhook.url, timing_scale=0.1))
        servers.append(alertmanager)
        alertmanager.start()

        # The project's rules from the one source: the no-data threshold at 10 s, every for: / 30.
        thresholds = load_thresholds().with_overrides({
            "NoDataFlowing.threshold": NO_DATA_SECONDS, "CoinDataStale.threshold": NO_DATA_SECONDS,
        }).scaled(DURATION_SCALE)
        prom_dir = tmp_path / "prometheus"
        prom_dir.mkdir()
        write_rule_files(prom_dir / "rules", thresholds)
        prometheus = PrometheusServer(prom_dir, prom_dir / "prometheus.yml")
        write_local_config(prom_dir, exporter=f"{LOOPBACK}:{exporter_port}", api=f"{LOOPBACK}:{api_port}",
                           prometheus=f"{LOOPBACK}:{prometheus.port}",
                           alertmanager=f"{LOOPBACK}:{alertmanager.port}",
                           scrape_interval="1s", evaluation_interval="1s", rules_dir=prom_dir / "rules")
        servers.append(prometheus)
        prometheus.start()
        wait_until(lambda: len(_query(prometheus, "bybit_data_staleness_seconds < 5")) == len(COINS)
                   and len(_query(prometheus, "up == 1")) == 4,
                   timeout=30, what="Prometheus scraping all four targets with fresh data")
        yield sim, prometheus
    finally:
        for server in reversed(servers):
            server.stop()
        for proc in procs:
            proc.stop()


@pytest.mark.slow
def test_a_silent_exchange_pages_critical_and_the_page_resolves(
    stack: tuple[SimulatorHandle, PrometheusServer], webhook: WebhookReceiver,
) -> None:
    sim, prometheus = stack

    # Healthy: from the moment every target is scraped (Prometheus' own start-up, up to 5 s
    # before its first scrape, is longer than some for: scaled by 1/30), watch for longer than
    # the scaled for: of every alert up to 10 minutes: nothing fires, the health score stays 100.
    start = _now(prometheus)
    end = start + QUIET_SECONDS
    wait_until(lambda: _now(prometheus) > end + 1, timeout=QUIET_SECONDS + 30, interval=0.5,
               what=f"{QUIET_SECONDS}s of a healthy stack")
    window = f"{QUIET_SECONDS}s"
    problems = 'ALERTS{alertstate="firing", alertname!="Watchdog"}'
    fired = _query(prometheus, f"count_over_time({problems}[{window}])", at=end)
    assert fired == [], f"alerts fired on a healthy stack: {[f['metric'] for f in fired]}"
    watchdog = 'ALERTS{alertstate="firing", alertname="Watchdog"}'
    heartbeat = _query(prometheus, f"min_over_time({watchdog}[{window}])", at=end)
    assert len(heartbeat) == 1, "the dead-man's switch fires all the time"
    health = _query(prometheus, f"min_over_time(:bybit_health:score[{window}])", at=end)
    assert [h["value"][1] for h in health] == ["100"]
    late = [a["labels"]["alertname"] for a in webhook.alerts()
            if _epoch(a["startsAt"]) >= start and a["labels"]["alertname"] != "Watchdog"]
    assert late == [], "a notification was sent for a healthy stack"

    # Tickers stop (pings are still answered): no data flows.
    sim.set_faults(silent=True)
    page = wait_until(lambda: webhook.find("NoDataFlowing", "firing"), timeout=60, interval=0.2,
                      what="the NoDataFlowing page at the webhook")
    assert page["labels"]["severity"] == "critical"
    assert page["labels"]["condition"] == "data_flow"
    assert page["receiver"] == "oncall-pager", "a critical alert takes the critical route"
    assert page["annotations"]["runbook_url"].endswith("/docs/runbooks/NoDataFlowing.md")
    assert page["annotations"]["summary"] == "No option data for any coin for more than 10s"

    # Tickers resume: the page resolves.
    sim.clear_faults()
    resolved = wait_until(lambda: webhook.find("NoDataFlowing", "resolved"), timeout=60, interval=0.2,
                          what="the NoDataFlowing resolution at the webhook")
    assert resolved["labels"]["severity"] == "critical"
    assert resolved["receiver"] == "oncall-pager"
    assert "NoDataFlowing" not in _firing(prometheus)
    # The heartbeat (if Prometheus' 1-minute re-send has delivered it yet: test_watchdog_e2e.py
    # waits for it) went to the dead-man's switch only, through the page and its resolution.
    assert {a["receiver"] for a in webhook.alerts() if a["labels"]["alertname"] == "Watchdog"} <= {
        "deadmans-switch"}, "the heartbeat reaches no receiver but the dead-man's switch"
    assert {a["labels"]["alertname"] for a in webhook.alerts() if a["receiver"] == "deadmans-switch"} <= {
        "Watchdog"}, "the dead-man's switch hears of nothing but the heartbeat"
