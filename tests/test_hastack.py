"""`scripts/run --ha`: the HA topology on loopback with the Debian packages, served through HAProxy."""

from __future__ import annotations

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
import redis

from common.config import Settings
from scripts.hastack import (
    SENTINEL_TEMPLATE,
    HaPorts,
    monitored_service,
    sentinel_config,
)
from scripts.localstack import parse_args
from tests.servers import binary_or_skip, pid_alive, python_env, repo_root, wait_until


def _settings(conf: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in conf.splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
            out.setdefault(key, []).append(" ".join(words[1:]))
    return out


def test_loopback_sentinels_run_the_shipped_settings_on_their_own_port_and_primary(tmp_path: Path) -> None:
    template = SENTINEL_TEMPLATE.read_text(encoding="utf-8")
    conf = _settings(sentinel_config(template, port=26999, primary=("127.0.0.1", 6999), workdir=tmp_path))
    shipped = _settings(template)
    assert conf["port"] == ["26999"]
    assert conf["bind"] == ["127.0.0.1"]
    assert conf["dir"] == [str(tmp_path)]
    assert conf["sentinel monitor"] == [f"monitor {Settings().redis_sentinel_service} 127.0.0.1 6999 2"]
    for key in ("sentinel down-after-milliseconds", "sentinel failover-timeout", "sentinel parallel-syncs",
                "sentinel resolve-hostnames"):
        assert conf[key] == shipped[key], key
    faster = _settings(sentinel_config(template, port=1, primary=("h", 2), workdir=tmp_path,
                                       down_after_ms=800, failover_timeout_ms=3000))
    assert faster["sentinel down-after-milliseconds"] == ["down-after-milliseconds tracker 800"]
    assert faster["sentinel failover-timeout"] == ["failover-timeout tracker 3000"]


def test_the_shipped_sentinels_watch_the_service_the_components_ask_for() -> None:
    template = SENTINEL_TEMPLATE.read_text(encoding="utf-8")
    assert monitored_service(template) == Settings().redis_sentinel_service


def test_plain_run_keeps_its_single_stack_and_ha_is_opt_in() -> None:
    assert not parse_args([]).ha
    assert parse_args(["--ha", "--any-ports"]).any_ports
    assert len(set(HaPorts().as_dict().values())) == len(HaPorts().as_dict()), "no port used twice"
    assert HaPorts().haproxy == Settings().api_port, "users keep calling :5001"


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_run_ha_serves_options_through_haproxy_with_both_replicas_streaming_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    for binary in ("redis-server", "haproxy", "prometheus"):
        binary_or_skip(binary)
    binary_or_skip("prometheus-alertmanager", "alertmanager")
    argv = [sys.executable, "-m", "scripts.localstack", "--ha", "--any-ports", "--var", str(tmp_path),
            "--duration", "300"]
    out = (tmp_path / "supervisor.log").open("wb")
    proc = subprocess.Popen(argv, cwd=repo_root(), env=python_env(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    var = tmp_path / "ha"
    try:
        wait_until(lambda: (var / "hastack.json").exists() and (var / "localstack.json").exists(),
                   timeout=30, what="the HA stack's state files")
        ports = json.loads((var / "hastack.json").read_text())["ports"]
        api = f"http://127.0.0.1:{ports['haproxy']}/api/options/BTC"
        body = wait_until(lambda: (d := _get_json(api)) and d.get("count", 0) > 100 and d,
                          timeout=120, what="BTC options served through HAProxy")
        assert body["count"] > 100
        assert not body["stale"]

        sentinel = redis.Redis(port=ports["sentinel_1"], decode_responses=True, socket_timeout=2)
        service = Settings().redis_sentinel_service
        addr = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)  # type: ignore[no-untyped-call]
        assert int(addr[1]) == ports["redis_a"]
        wait_until(lambda: len(sentinel.execute_command("SENTINEL", "REPLICAS", service)) == 1  # type: ignore[no-untyped-call]
                   and len(sentinel.execute_command("SENTINEL", "SENTINELS", service)) == 2,  # type: ignore[no-untyped-call]
                   timeout=60, what="sentinel-1 to know the replica and the two other sentinels")
        sentinel.close()

        sim = f"http://127.0.0.1:{ports['simulator']}/control"
        trading = sum(len(s) for s in _get_json(f"{sim}/instruments")["coins"].values())
        wait_until(lambda: _get_json(f"{sim}/state")["counters"]["subscriptions"] == 2 * trading, timeout=60,
                   what="both ingest replicas subscribed to every instrument")

        pids = json.loads((var / "localstack.json").read_text())["pids"]
        assert {"redis-a", "redis-b", "sentinel-3", "ingest-a", "ingest-b", "api-a", "api-b", "haproxy",
                "prometheus-b", "alertmanager-b"} <= set(pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        alive = {n: p for n, p in pids.items() if pid_alive(p)}
        assert not alive, f"left running after Ctrl-C: {alive}"
    finally:
        _stop_everything(proc, var / "localstack.json")
        out.close()
        print((tmp_path / "supervisor.log").read_text()[-3000:])


def _stop_everything(proc: subprocess.Popen[bytes], state_file: Path) -> None:
    """After a failure too: the supervisor's graceful stop, then SIGKILL of whatever it left.

    Its children run in sessions of their own, so killing the supervisor alone would orphan them.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if state_file.exists():
        for pid in json.loads(state_file.read_text())["pids"].values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_ha_guide_says_how_to_deploy_run_and_drill_it_and_names_files_that_exist() -> None:
    text = (repo_root() / "docs" / "high-availability.md").read_text(encoding="utf-8")
    for command in ("docker compose -f docker-compose.yml -f docker-compose.ha.yml up -d --build",
                    "scripts/run --ha", "python -m bench.drill_failover"):
        assert command in text, command
    for path in ("deploy/redis/start-node.sh", "deploy/redis/sentinel.conf", "deploy/haproxy/haproxy.cfg",
                 "docker-compose.ha.yml", "scripts/hastack.py", "tests/test_hastack.py",
                 "tests/test_drill_failover.py"):
        assert path in text, path
        assert (repo_root() / path).exists(), path
    assert "RELIABILITY.md#failover-ha" in text
    assert "## Failover (HA)" in (repo_root() / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")


def test_a_held_service_stays_down_after_a_kill_until_released(tmp_path: Path) -> None:
    """The failover drill's control of the supervisor: kill, hold down, release."""
    import asyncio

    from scripts.localstack import Service, Supervisor

    async def scenario() -> tuple[int | None, bool, int, int]:
        sup = Supervisor([Service("sleeper", ["sleep", "60"])], tmp_path)
        running = asyncio.create_task(sup.run())
        while "sleeper" not in sup.pids():  # noqa: ASYNC110 - the child starts in the supervisor's task
            await asyncio.sleep(0.05)
        first = sup.pids()["sleeper"]
        sup.hold("sleeper")
        killed = sup.kill("sleeper")
        await asyncio.sleep(2.5)  # longer than the first restart delay (1 s): a restart would show
        held_down = "sleeper" not in sup.pids()
        sup.release("sleeper")
        while "sleeper" not in sup.pids():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        second = sup.pids()["sleeper"]
        sup.stop()
        await running
        assert killed == first
        return killed, held_down, first, second

    async def bounded() -> tuple[int | None, bool, int, int]:
        async with asyncio.timeout(30):
            return await scenario()

    killed, held_down, first, second = asyncio.run(bounded())
    assert killed is not None
    assert held_down, "a held service must not be restarted"
    assert second != first, "released: started again"


def test_the_ha_guide_lists_the_default_ports_scripts_run_ha_uses() -> None:
    text = (repo_root() / "docs" / "high-availability.md").read_text(encoding="utf-8")
    table = text[text.index("Default loopback ports of `scripts/run --ha`"):]
    table = table[:table.index("\n\n", table.index("| process |"))]
    listed = {int(p) for p in re.findall(r"\b(\d{4,5})\b", table)}
    assert listed == set(HaPorts().as_dict().values())
