"""``python -m ingest --check``: the verdict a user gets against a healthy and a faulty exchange.

Every case runs the real command as a subprocess against the real simulator on loopback, with
``REDIS_URL`` pointing at a port nothing listens on: the check must never need Redis. One
simulator (5 instruments per coin, 2 coins, fast pushes) serves the whole module; each test
clears its faults and sets its own through ``/control/faults``. ``INGEST_REST_PAGE_LIMIT=3``
makes discovery follow cursors, and a 1 s ping interval gives each check several pings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import errors
from ingest.check import Probe
from ingest.verdict import FRAME_ERRORS, CheckReport, reasons
from tests.fixtures_simulator import SimulatorHandle, simulator_argv
from tests.servers import free_port, python_env, repo_root, wait_until

COINS = ("BTC", "ETH")
PER_COIN = 5
TOPICS = PER_COIN * len(COINS)
SECONDS = "3"


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    port = free_port()
    argv = simulator_argv(port=port, coins=COINS, instruments_per_coin=PER_COIN, push_interval=0.2,
                          seed=7, extra_args=())
    handle = SimulatorHandle(port=port, argv=argv, log_path=tmp_path_factory.mktemp("sim") / "simulator.log")
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sim(exchange: SimulatorHandle) -> SimulatorHandle:
    """The shared simulator, healthy and answering in Bybit's forms."""
    exchange.clear_faults()
    return exchange


def check_env(sim: SimulatorHandle, **overrides: str) -> dict[str, str]:
    return python_env(**{
        "BYBIT_REST_URL": sim.rest_url, "BYBIT_WS_URL": sim.ws_url, "BYBIT_COINS": ",".join(COINS),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "INGEST_REST_PAGE_LIMIT": "3", "INGEST_PING_INTERVAL": "1", "INGEST_PING_TIMEOUT": "1.5",
        "LOG_FORMAT": "text", **overrides,
    })


def run_check(sim: SimulatorHandle, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", "--check", "--seconds", SECONDS, *args],
        env=check_env(sim, **env), cwd=str(repo_root()), capture_output=True, text=True, timeout=60,
        check=False)


def row(out: str, name: str) -> str:
    """The value of one table row (``name`` padded in the first column)."""
    for line in out.splitlines():
        if line.startswith(name + " "):
            return line[len(name):].strip()
    raise AssertionError(f"no row {name!r} in:\n{out}")


def verdict(result: subprocess.CompletedProcess[str]) -> str:
    last = (result.stdout.strip().splitlines() or [""])[-1]
    assert last.startswith("VERDICT: "), f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return last


def failed_with(sim: SimulatorHandle, *texts: str, faults: dict[str, Any] | None = None,
                **env: str) -> subprocess.CompletedProcess[str]:
    """Run the check under ``faults``; it must exit 1 with a verdict naming every text."""
    if faults:
        sim.set_faults(**faults)
    result = run_check(sim, **env)
    line = verdict(result)
    assert result.returncode == 1, result.stdout + result.stderr
    assert line.startswith("VERDICT: FAIL — ")
    for text in texts:
        assert text in line, f"{text!r} not in {line!r}"
    return result


def test_healthy_exchange_passes_without_redis(sim: SimulatorHandle) -> None:
    result = run_check(sim)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict(result) == "VERDICT: OK"
    out = result.stdout
    assert row(out, "instruments") == "BTC 5, ETH 5 (10 in all)"
    assert row(out, "topics") == f"{TOPICS} confirmed, 0 failed, 0 unanswered (of {TOPICS})"
    assert row(out, "frames rejected") == "0"
    assert row(out, "connection errors") == "none"
    tickers = row(out, "tickers")
    assert int(tickers.split()[0].replace(",", "")) >= TOPICS  # every symbol pushes every 0.2 s
    assert f"{TOPICS} of {TOPICS} symbols quoted" in tickers
    assert row(out, "pong round trip").startswith("p50 ")
    assert "ms" in row(out, "exchange lag")
    # Progress on stderr while it waits: the start line, then one every second for a 3 s check.
    progress = [line for line in result.stderr.splitlines() if line.startswith("check: ")]
    assert "Redis is not used" in progress[0]
    assert len(progress) >= 3, result.stderr


@pytest.mark.parametrize("form", [
    {"response_style": "op"}, {"response_style": "command_resp_echo"},
    {"pong_style": "echo"}, {"pong_style": "spot"}, {"cursor_style": "plain"},
], ids=lambda form: "-".join(f"{k}={v}" for k, v in form.items()))
def test_every_answer_form_bybit_uses_passes(sim: SimulatorHandle, form: dict[str, str]) -> None:
    sim.set_faults(**form)
    result = run_check(sim)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict(result) == "VERDICT: OK"


def test_malformed_frames_fail_naming_their_error_types(sim: SimulatorHandle) -> None:
    result = failed_with(sim, "frames rejected: ", faults={"malformed_ratio": 0.5})
    rejected = row(result.stdout, "frames rejected")
    named = {part.split()[0] for part in rejected.split(", ")}
    assert rejected != "0"
    assert named <= set(FRAME_ERRORS), rejected


def test_a_silent_stream_fails(sim: SimulatorHandle) -> None:
    result = failed_with(sim, "no ticker in 3 s (silent stream)", faults={"silent": True})
    assert row(result.stdout, "topics") == f"{TOPICS} confirmed, 0 failed, 0 unanswered (of {TOPICS})"


def test_pings_without_pongs_fail(sim: SimulatorHandle) -> None:
    failed_with(sim, "no pong answered", faults={"no_pong": True})


def test_refused_topics_fail_with_how_many(sim: SimulatorHandle) -> None:
    result = failed_with(sim, f"{TOPICS} of {TOPICS} topics never confirmed ({TOPICS} refused",
                         f"({errors.SUBSCRIBE_FAILED})", faults={"reject_subscribe_over": 0})
    assert row(result.stdout, "tickers").startswith("0 ")


def test_refusals_the_ingest_recovered_from_still_fail(sim: SimulatorHandle) -> None:
    # Requests of more than 2 topics are refused: the ingest splits them and gets every topic,
    # but a worker meeting this in production would count subscribe_failed, so the check says so.
    result = failed_with(sim, "subscribe refused", faults={"reject_subscribe_over": 2})
    assert row(result.stdout, "topics").startswith(f"{TOPICS} confirmed")


def test_dropped_connections_fail(sim: SimulatorHandle) -> None:
    failed_with(sim, "connection dropped", f"({errors.WS_CLOSED})", faults={"drop_every": 1.0})


@pytest.mark.parametrize(("mode", "answer"), [("10006", "retCode 10006"), ("429", "HTTP 429")])
def test_rest_rate_limits_fail_naming_the_answer(sim: SimulatorHandle, mode: str, answer: str) -> None:
    failed_with(sim, "rate limited", answer, faults={"rest_rate_limit": 1, "rest_rate_limit_mode": mode})


def test_an_ip_ban_leaves_discovery_unfinished(sim: SimulatorHandle) -> None:
    # HTTP 403 is Bybit's IP ban: the ingest stops REST for INGEST_REST_BAN_PAUSE (600 s).
    result = failed_with(sim, "REST discovery of BTC, ETH not finished in 3 s: rate limited (HTTP 403)",
                         faults={"rest_rate_limit": 1, "rest_rate_limit_mode": "403"})
    assert row(result.stdout, "instruments").startswith("BTC not discovered, ETH not discovered")


def test_unreachable_rest_fails_with_the_connect_error(sim: SimulatorHandle) -> None:
    failed_with(sim, "REST discovery failed for BTC, ETH: ClientConnectorError",
                BYBIT_REST_URL=f"http://127.0.0.1:{free_port()}")


def test_unreachable_stream_fails_with_the_connect_error(sim: SimulatorHandle) -> None:
    failed_with(sim, f"{TOPICS} of {TOPICS} topics never confirmed", "could not connect",
                "ConnectionRefusedError", BYBIT_WS_URL=f"ws://127.0.0.1:{free_port()}/v5/public/option")


def test_a_coin_without_options_fails(sim: SimulatorHandle) -> None:
    failed_with(sim, "DOGE: no trading option listed (check BYBIT_COINS)", BYBIT_COINS="BTC,DOGE")


def test_a_bad_url_is_a_configuration_error(sim: SimulatorHandle) -> None:
    result = run_check(sim, BYBIT_WS_URL="http://127.0.0.1:1/v5/public/option")
    assert result.returncode == 2
    assert "configuration error: BYBIT_WS_URL" in result.stderr
    assert "VERDICT" not in result.stdout


def test_seconds_without_check_is_refused(sim: SimulatorHandle) -> None:
    result = subprocess.run([sys.executable, "-m", "ingest", "--seconds", "3"], env=check_env(sim),
                            cwd=str(repo_root()), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "--seconds only applies to --check" in result.stderr


def test_ctrl_c_ends_the_check_early_with_the_table(sim: SimulatorHandle, tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ingest", "--check", "--seconds", "60"],
                                env=check_env(sim), cwd=str(repo_root()), stdout=subprocess.PIPE,
                                stderr=err, text=True)
    try:
        wait_until(lambda: f"topics {TOPICS}/{TOPICS} confirmed" in stderr.read_text(), timeout=20,
                   what="a progress line with every topic confirmed")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + stderr.read_text()
    assert "(interrupted)" in row(out, "duration")
    assert out.strip().splitlines()[-1] == "VERDICT: OK"


# --- the judging itself (pure), for cases the simulator cannot stage -------------------------------

def healthy_report(**changes: Any) -> CheckReport:
    base: dict[str, Any] = {
        "ws_url": "wss://x", "rest_url": "https://x", "coins": COINS, "seconds": 20.0, "elapsed": 20.0,
        "instruments": {"BTC": 5, "ETH": 5}, "rest_requests": 2, "connections": 1, "open_connections": 1,
        "topics": TOPICS, "confirmed": TOPICS, "tickers": 500, "tickers_by_coin": {"BTC": 250, "ETH": 250},
        "quoted": TOPICS, "pings": 1, "pongs": 1, "pong_rtts": (0.05,), "lags": (0.1, 0.2),
    }
    return CheckReport(**{**base, **changes})


def test_rate_limits_met_before_discovery_finished_still_fail() -> None:
    report = healthy_report(rest_errors={errors.REST_RATE_LIMITED: 2},
                            rate_limit_answers={"retCode 10006": 2})
    assert reasons(report) == ["REST rate limited 2 times (retCode 10006 x2)"]


def test_one_coin_silent_while_the_other_streams_fails_naming_it() -> None:
    report = healthy_report(tickers_by_coin={"BTC": 500})
    assert reasons(report) == ["no ETH ticker in 20 s"]


def test_a_ping_sent_just_before_the_end_is_not_judged() -> None:
    now = [100.0]
    probe = Probe(clock=lambda: now[0])
    probe.ping_sent("ws0")
    now[0] = 101.0
    probe.ping_sent("ws0")  # 1 s old at the end: its pong may still be on the way
    now[0] = 102.0
    assert probe.pings(now[0], grace=2.0) == 1
    assert reasons(healthy_report(pings=1, pongs=0)) == ["no pong answered (1 ping sent)"]
