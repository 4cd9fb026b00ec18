"""Two API replicas behind Debian's HAProxy with deploy/haproxy/haproxy.cfg, all real processes."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures_readers import Layout, ServiceHandle
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    RedisServer,
    binary_or_skip,
    free_port,
    repo_root,
    wait_until,
)

CONFIG = repo_root() / "deploy" / "haproxy" / "haproxy.cfg"


class Balancer:
    """``haproxy -db -f deploy/haproxy/haproxy.cfg`` with its addresses from the environment."""

    def __init__(self, workdir: Path, api_a: str, api_b: str) -> None:
        self.port, self.stats_port = free_port(), free_port()
        self.env = {**os.environ, "HAPROXY_BIND": f"{LOOPBACK}:{self.port}",
                    "HAPROXY_STATS_BIND": f"{LOOPBACK}:{self.stats_port}", "API_A": api_a, "API_B": api_b}
        self.proc = ManagedProcess([binary_or_skip("haproxy"), "-db", "-f", str(CONFIG)],
                                   workdir / "haproxy.log", env=self.env)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def servers(self) -> dict[str, str]:
        """Server name -> status (UP, DOWN, ...) from the stats page's CSV."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.stats_port}/stats;csv", timeout=2) as resp:
            rows = csv.DictReader(io.StringIO(resp.read().decode().lstrip("# ")))
            return {r["svname"]: r["status"] for r in rows if r["pxname"] == "api"
                    and r["svname"] not in ("FRONTEND", "BACKEND")}


@pytest.fixture
def two_apis(layout: Layout, api_factory: Callable[..., ServiceHandle],
             redis_server: RedisServer) -> tuple[ServiceHandle, ServiceHandle]:
    layout.healthy(now=time.time(), coins=("BTC",))
    return (api_factory(redis_url=redis_server.url, coins=("BTC",)),
            api_factory(redis_url=redis_server.url, coins=("BTC",)))


@pytest.fixture
def balancer(tmp_path: Path, two_apis: tuple[ServiceHandle, ServiceHandle]) -> Iterator[Balancer]:
    a, b = (h.url.removeprefix("http://") for h in two_apis)
    lb = Balancer(tmp_path, a, b)
    lb.proc.start()
    try:
        wait_until(lambda: lb.servers() == {"api-a": "UP", "api-b": "UP"}, timeout=15,
                   what="HAProxy to see both API replicas ready")
        yield lb
    finally:
        lb.proc.stop()


def test_the_shipped_config_is_valid_for_the_installed_haproxy(tmp_path: Path) -> None:
    env = {**os.environ, "HAPROXY_BIND": ":5001", "HAPROXY_STATS_BIND": ":8404",
           "API_A": "api-a:5001", "API_B": "api-b:5001"}
    done = subprocess.run([binary_or_skip("haproxy"), "-c", "-f", str(CONFIG)], env=env, check=False,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_requests_are_spread_over_both_replicas_and_the_balancer_exports_metrics(balancer: Balancer) -> None:
    for _ in range(10):
        with urllib.request.urlopen(balancer.url + "/api/options/BTC", timeout=5) as resp:
            assert resp.status == 200
    with urllib.request.urlopen(f"http://{LOOPBACK}:{balancer.stats_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    served = {line.split('server="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines()
              if line.startswith("haproxy_server_http_responses_total{") and 'code="2xx"' in line
              and 'proxy="api"' in line}
    assert served.get("api-a", 0) >= 4
    assert served.get("api-b", 0) >= 4


@pytest.mark.slow
def test_losing_one_api_replica_mid_traffic_fails_no_client_request(
        balancer: Balancer, two_apis: tuple[ServiceHandle, ServiceHandle]) -> None:
    outcomes: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(balancer.url + "/api/options/BTC", timeout=5) as resp:
                    outcomes.append(resp.status)
            except urllib.error.HTTPError as exc:
                outcomes.append(exc.code)
            except OSError:
                outcomes.append(0)
            time.sleep(0.01)

    clients = [threading.Thread(target=poll) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        time.sleep(1.0)
        two_apis[0].process.kill()  # SIGKILL: in-flight requests on it die with it
        wait_until(lambda: balancer.servers()["api-a"].startswith("DOWN"), timeout=10,
                   what="HAProxy to mark the killed replica down")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in clients:
            t.join(10)
    failed = [s for s in outcomes if s != 200]
    assert len(outcomes) > 100
    assert failed == [], f"{len(failed)} of {len(outcomes)} requests failed: {sorted(set(failed))}"
    assert balancer.servers()["api-b"] == "UP"
