"""``python -m api`` as operators run it: serves, stops cleanly, refuses bad config, logs sanely."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.fixtures_readers import Layout, ServiceHandle, api_factory, layout, parse_exposition
from tests.servers import LOOPBACK, RedisServer, free_port, python_env, repo_root

__all__ = ["api_factory", "layout"]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_api_process_serves_options_on_its_port_and_stops_on_sigterm(
    layout: Layout, redis_server: RedisServer, api_factory: Callable[..., ServiceHandle],
) -> None:
    layout.option("BTC-27DEC26-100000-C", ts_ms=int(time.time() * 1000))
    api = api_factory(redis_url=redis_server.url, coins=("BTC",))
    status, body = get(api.url + "/api/options/BTC")
    assert status == 200
    assert b'"symbol":"BTC-27DEC26-100000-C"' in body
    assert api.stop() == 0
    assert "api stopping" in api.log_text()
    assert "Traceback" not in api.log_text()


def test_a_request_too_long_for_the_parser_is_refused_with_one_log_line_and_counted(
    redis_server: RedisServer, api_factory: Callable[..., ServiceHandle],
) -> None:
    api = api_factory(redis_url=redis_server.url, coins=("BTC",))
    host, port = api.url.removeprefix("http://").split(":")
    for _ in range(2):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"GET /api/options/BTC?expiry=" + b"A" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(64).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    _, text = get(api.url + "/metrics")
    assert parse_exposition(text.decode()).value("bybit_api_errors_total", type="malformed_request") == 2
    log = api.log_text()
    assert log.count("malformed request refused") == 2
    assert "Traceback" not in log


def run_api(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api", *args], capture_output=True, text=True,
                          env=python_env(**env), cwd=repo_root(), timeout=60, check=False)


def test_a_bad_config_file_value_exits_2_naming_the_knob(tmp_path: Path) -> None:
    config = tmp_path / "api.yaml"
    config.write_text("API_CACHE_TTL: -1\n")
    done = run_api("--config", str(config))
    assert done.returncode == 2
    assert "API_CACHE_TTL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_already_in_use_exits_1_with_a_message() -> None:
    with socket.socket() as taken:
        port = free_port()
        taken.bind((LOOPBACK, port))
        taken.listen()
        done = run_api(API_HOST=LOOPBACK, API_PORT=str(port), REDIS_URL="redis://127.0.0.1:1/0",
                       LOG_FORMAT="text")
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
    assert "Traceback" not in done.stderr
