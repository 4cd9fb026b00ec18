"""The README's run command: the whole stack supervised on loopback, restarts, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scripts.localstack import Ports, RestartPolicy, monitoring_services, parse_args, shown_url
from tests.servers import PrometheusServer, free_port, pid_alive, python_env, repo_root, wait_until


def test_restart_policy_backs_off_on_crash_loops_and_forgives_healthy_runs() -> None:
    policy = RestartPolicy(first=1, cap=30, healthy_after=60)
    assert [policy.next_delay(ran_for=0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.next_delay(ran_for=120) == 1


def test_the_prometheus_page_the_local_stack_prints_answers_on_the_installed_prometheus(
    tmp_path: Path,
) -> None:
    """Debian's prometheus 2.x answers 404 on /alerts (its UI is /classic/alerts); v3 has no /classic."""
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    server = PrometheusServer(tmp_path, config)
    server.start()
    try:
        args = parse_args(["--var", str(tmp_path)])
        services = monitoring_services(args, Ports(prometheus=server.port), tmp_path)
        prometheus = next(s for s in services if s.name == "prometheus")
        url = asyncio.run(shown_url(prometheus))
        assert url.startswith(server.url + "/"), url
        assert url.endswith("/alerts"), url
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert (resp.status, resp.url) == (200, url)
    finally:
        server.stop()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_local_stack_serves_options_restarts_a_killed_ingest_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in
             ("redis", "simulator", "exporter", "api", "prometheus", "alertmanager")}
    argv = [sys.executable, "-m", "scripts.localstack", "--var", str(tmp_path), "--duration", "240"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    log = (tmp_path / "supervisor.log").open("wb")
    proc = subprocess.Popen(argv, cwd=repo_root(), env=python_env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    state_file = tmp_path / "localstack.json"
    try:
        api = f"http://127.0.0.1:{ports['api']}/api/options/BTC"
        body = wait_until(lambda: (d := _get_json(api)) and d.get("count", 0) > 100 and d,
                          timeout=90, what="BTC options served by the local stack's API")
        assert body["count"] > 100
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['exporter']}/metrics", timeout=2)
        # One series per ingest replica (`replica="main"` for the single stack's only one).
        assert re.search(rb"^bybit_ingest_up(\{[^}]*\})? 1\.0$", metrics.read(), re.MULTILINE)

        pids = json.loads(state_file.read_text())["pids"]
        assert set(pids) >= {"redis", "simulator", "ingest", "exporter", "api"}
        os.kill(pids["ingest"], signal.SIGKILL)
        wait_until(lambda: json.loads(state_file.read_text())["restarts"]["ingest"] == 1
                   and json.loads(state_file.read_text())["pids"].get("ingest") not in (None, pids["ingest"]),
                   timeout=30, what="the supervisor to restart the killed ingest")

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        final = json.loads(state_file.read_text())["pids"]
        alive = {n: p for n, p in {**pids, **final}.items() if pid_alive(p)}
        assert not alive, f"left running after Ctrl-C: {alive}"
    finally:
        if proc.poll() is None:  # a failure: the supervisor's own stop, so no child is orphaned
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        print((tmp_path / "supervisor.log").read_text()[-3000:])
