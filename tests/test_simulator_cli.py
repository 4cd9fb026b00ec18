"""``python -m simulator`` as a program: flags, refusals, restarts on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.fixtures_simulator import SimulatorHandle
from tests.servers import LOOPBACK, python_env, repo_root

Factory = Callable[..., SimulatorHandle]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulator", *args], capture_output=True, text=True,
                          env=python_env(), cwd=repo_root(), timeout=60, check=False)


def test_help_documents_every_flag() -> None:
    done = run("--help")
    assert done.returncode == 0
    for flag in ("--port", "--host", "--coins", "--instruments-per-coin", "--push-interval", "--seed",
                 "--drop-every", "--no-pong", "--reject-subscribe-over", "--malformed-ratio",
                 "--rest-rate-limit", "--rest-rate-limit-mode", "--silent", "--response-style",
                 "--pong-style", "--cursor-style", "--idle-timeout", "--log-level", "--log-format",
                 "/control/"):
        assert flag in done.stdout, flag
    assert "100 ms" in done.stdout or "0.1 s" in done.stdout


@pytest.mark.parametrize("args", [
    ("--push-interval", "0.001"), ("--coins", "BTC,*"), ("--malformed-ratio", "2"),
    ("--rest-rate-limit-mode", "418"), ("--drop-every", "0"), ("--instruments-per-coin", "0"),
    ("--response-style", "json"), ("--pong-style", "op"), ("--cursor-style", "base64"),
    ("--idle-timeout", "-1"),
])
def test_bad_flags_exit_2_with_a_usage_message(args: tuple[str, ...]) -> None:
    done = run("--port", "1", *args)
    assert done.returncode == 2, done.stderr
    assert "usage" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_exits_1_with_a_message() -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        done = run("--port", str(busy.getsockname()[1]), "--instruments-per-coin", "2")
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
    assert "Traceback" not in done.stderr


def test_restarts_on_the_same_port_with_a_fresh_exchange(simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=10)
    sim.set_faults(silent=True)
    before = sim.instruments()
    sim.stop()
    assert not sim.running
    sim.start()
    assert sim.instruments() == before
    assert sim.state()["faults"]["silent"] is False
    assert sim.state()["config"]["port"] == sim.port


def test_the_same_day_and_flags_give_the_same_listing(simulator_factory: Factory) -> None:
    one = simulator_factory(coins=("ETH", "XRP"), instruments_per_coin=50, seed=1)
    two = simulator_factory(coins=("ETH", "XRP"), instruments_per_coin=50, seed=2)
    assert one.instruments() == two.instruments()
    assert len(one.instruments()["XRP"]) == 50


def test_state_reports_config_faults_and_counters(simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=4, push_interval=0.5, seed=9,
                            extra_args=["--no-pong", "--malformed-ratio", "0.5", "--response-style", "op",
                                        "--pong-style", "spot", "--cursor-style", "plain"])
    with urllib.request.urlopen(sim.rest_url + "/control/state", timeout=5) as resp:
        state = json.loads(resp.read())
    assert state["config"]["push_interval"] == 0.5
    assert state["config"]["seed"] == 9
    assert state["config"]["coins"] == ["BTC", "ETH", "SOL"]
    assert state["faults"]["no_pong"] is True
    assert state["faults"]["malformed_ratio"] == 0.5
    assert (state["faults"]["response_style"], state["faults"]["pong_style"],
            state["faults"]["cursor_style"]) == ("op", "spot", "plain")
    for counter in ("connections_open", "frames_sent", "pings_answered", "subscribe_requests", "rest_calls",
                    "rate_limits_sent"):
        assert state["counters"][counter] == 0
    assert state["counters"]["instruments"] == {"BTC": 4, "ETH": 4, "SOL": 4}
    sim.clear_faults()
    faults = sim.state()["faults"]
    assert faults["no_pong"] is False
    assert faults["malformed_ratio"] == 0.0
    # Answer forms are kept from start-up, not reset to Bybit's defaults.
    assert (faults["response_style"], faults["pong_style"], faults["cursor_style"]) == ("op", "spot", "plain")


async def test_sigterm_closes_websockets_with_going_away_and_exits_0(simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=5, push_interval=0.1)
    async with connect(sim.ws_url, max_queue=None) as ws:
        args = [f"tickers.{s}" for s in sim.instruments()["BTC"]]
        await ws.send(json.dumps({"op": "subscribe", "args": args}))
        await ws.recv()
        code = await asyncio.to_thread(sim.stop)
        with contextlib.suppress(ConnectionClosedOK):  # an abnormal close would fail the test
            while True:
                await ws.recv()
        assert ws.close_code == 1001
    assert code == 0
