"""Every dashboard query runs against a real Prometheus scraping a real stack, and returns data.

simulator -> ingest -> Redis -> exporter and api, scraped every second by a real Prometheus
loaded with the project's recording and alerting rules. Each panel query must evaluate
without error, and return series wherever the stack produces them; the few that legitimately
stay empty on a healthy, young stack are listed with the reason.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
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
from tests.test_grafana import all_queries, for_prometheus

ROOT = repo_root()
COINS = ("BTC", "ETH")

#: (dashboard, panel) -> why a healthy stack a minute old has no series for it.
MAY_BE_EMPTY = {
    ("overview.json", "Firing alerts"): "no alert fires on a healthy stack",
    ("overview.json", "Redis memory: capacity planning"):
        "its projection (predict_linear over a 5-minute-step subquery) needs two steps of history",
}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


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


@pytest.fixture
def live_prometheus(
    tmp_path: Path, redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
) -> Iterator[tuple[PrometheusServer, str]]:
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
    try:
        for proc in procs:
            proc.start()
        api = f"http://{LOOPBACK}:{api_port}"
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{exporter_port}/metrics"), timeout=30,
                   what="the exporter's /metrics")
        wait_until(lambda: _get_json(f"{api}/api/options/BTC").get("count", 0) > 0, timeout=90,
                   what="BTC options served by the API")
        prometheus = PrometheusServer(tmp_path, _prometheus_config(tmp_path, exporter_port, api_port))
        prometheus.start()
        yield prometheus, api
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in procs:
            proc.stop()


def _instant(prometheus: PrometheusServer, expr: str) -> dict[str, Any]:
    url = f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        doc: dict[str, Any] = _get_json(url)
    except urllib.error.HTTPError as exc:
        return {"status": "error", "error": exc.read().decode(errors="replace")}
    return doc


def test_panels_allowed_to_be_empty_exist() -> None:
    panels = {(dashboard, title) for dashboard, title, _expr in all_queries()}
    assert set(MAY_BE_EMPTY) <= panels


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_live_stack(
    live_prometheus: tuple[PrometheusServer, str],
) -> None:
    prometheus, api = live_prometheus

    def problems() -> tuple[list[str], list[str]]:
        # Client traffic while Prometheus scrapes, for the API latency panels: they show
        # "no traffic" (no series) when no request reached the API within their rate window.
        for coin in COINS:
            _get_json(f"{api}/api/options/{coin}")
        errors, empty = [], []
        for dashboard, title, expr in all_queries():
            doc = _instant(prometheus, for_prometheus(expr))
            if doc.get("status") != "success":
                errors.append(f"{dashboard} / {title}: {doc.get('error')}")
            elif not doc["data"]["result"] and (dashboard, title) not in MAY_BE_EMPTY:
                empty.append(f"{dashboard} / {title}: {expr}")
        return errors, empty

    # Rates need two scrapes, and recording rules one more evaluation on top: poll until every
    # query answers or the deadline passes, then report what still fails.
    deadline = time.monotonic() + 90
    errors, empty = problems()
    while (errors or empty) and time.monotonic() < deadline:
        time.sleep(1.0)
        errors, empty = problems()
    assert not errors, "queries Prometheus rejected:\n" + "\n".join(errors)
    assert not empty, "queries with no data from a live stack:\n" + "\n".join(empty)
