"""``python -m exporter`` as operators run it: serves, stops cleanly, refuses bad config."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.fixtures_readers import Layout, ServiceHandle, exporter_factory, layout, parse_exposition
from tests.servers import LOOPBACK, RedisServer, free_port, python_env, repo_root

__all__ = ["exporter_factory", "layout"]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_the_exporter_process_serves_metrics_read_from_redis_and_stops_on_sigterm(
    layout: Layout, redis_server: RedisServer, exporter_factory: Callable[..., ServiceHandle],
) -> None:
    layout.healthy(now=time.time(), coins=("BTC", "ETH"), per_coin=4)
    exporter = exporter_factory(redis_url=redis_server.url, coins=("BTC", "ETH"))
    status, text = get(exporter.url + "/metrics")
    assert status == 200
    metrics = parse_exposition(text)
    assert metrics.value("bybit_redis_up") == 1
    assert metrics.value("bybit_options_tracked", coin="ETH") == 4
    assert get(exporter.url + "/healthz")[0] == 200
    assert exporter.stop() == 0
    assert "Traceback" not in exporter.log_text()


def run_exporter(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          env=python_env(**env), cwd=repo_root(), timeout=60, check=False)


def test_a_bad_config_file_value_exits_2_naming_the_knob(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("exporter_redis_timeout: soon\n")
    done = run_exporter(tmp_path, "--config", str(config))
    assert done.returncode == 2
    assert "EXPORTER_REDIS_TIMEOUT" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_already_in_use_exits_1_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        port = free_port()
        taken.bind((LOOPBACK, port))
        taken.listen()
        done = run_exporter(tmp_path, EXPORTER_HOST=LOOPBACK, EXPORTER_PORT=str(port),
                            REDIS_URL="redis://127.0.0.1:1/0", LOG_FORMAT="text")
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_request_is_refused_with_one_log_line_and_counted(
    redis_server: RedisServer, exporter_factory: Callable[..., ServiceHandle],
) -> None:
    exporter = exporter_factory(redis_url=redis_server.url, coins=("BTC",))
    host, port = exporter.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /metrics?" + b"A" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(64).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    _, text = get(exporter.url + "/metrics")
    assert parse_exposition(text).value("bybit_exporter_errors_total", type="malformed_request") == 1
    log = exporter.log_text()
    assert "malformed request refused" in log
    assert "Traceback" not in log
