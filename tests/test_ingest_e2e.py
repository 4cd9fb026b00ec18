"""The ingest worker end to end: simulator -> python -m ingest -> redis-server, all real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from common import errors, keys
from common.symbols import parse_symbol
from tests.fixtures_components import (
    IngestHandle,
    keys_outside_layout,
    quiesce,
    signal_and_time_exit,
    truth_mismatches,
)
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, python_env, repo_root, wait_until

COINS = ("BTC", "ETH", "SOL")


def all_symbols(sim: SimulatorHandle) -> dict[str, str]:
    return {s: coin for coin, symbols in sim.instruments().items() for s in symbols}


def wait_for_truth(ingest: IngestHandle, sim: SimulatorHandle, timeout: float = 20.0) -> None:
    truth = sim.truth()
    assert truth, "the simulator sent nothing"
    with ingest.redis() as r:
        wait_until(lambda: not truth_mismatches(r, truth), timeout=timeout, interval=0.25,
                   what="Redis to hold exactly the simulator's last tickers")


@pytest.mark.slow
def test_every_instrument_ends_up_in_redis_with_the_values_sent_last(
        redis_server: RedisServer, simulator: SimulatorHandle,
        ingest_factory: Callable[..., IngestHandle]) -> None:
    listed = all_symbols(simulator)
    assert len(listed) >= 2000
    ingest = ingest_factory(redis_url=redis_server.url, simulator=simulator)
    ingest.wait_for_data(symbols=len(listed), timeout=60)
    quiesce(simulator)
    truth = simulator.truth()
    assert set(truth) == set(listed)
    wait_for_truth(ingest, simulator)

    r = redis_server.client()
    # The comparison can fail: one changed field is seen.
    some = next(iter(listed))
    r.hset(keys.option_key(some), "markPrice", "-1")
    assert truth_mismatches(r, {some: truth[some]})
    for coin in COINS:
        assert r.smembers(keys.coin_index_key(coin)) == {s for s, c in listed.items() if c == coin}
        coin_stats = r.hgetall(keys.coin_stats_key(coin))
        assert int(coin_stats[keys.F_COIN_TRACKED]) == sum(1 for c in listed.values() if c == coin)
        assert int(coin_stats[keys.F_COIN_MESSAGES]) > 0
        assert float(coin_stats[keys.F_COIN_LAST_UPDATE]) > 1.6e9
    ttl = r.ttl(keys.option_key(next(iter(listed))))
    assert 86000 < ttl <= 86400
    assert keys_outside_layout(r, COINS) == []

    stats = ingest.stats()
    assert stats[keys.F_LAST_UPDATE].isdigit()
    assert int(stats[keys.F_MESSAGES]) >= len(listed)
    assert int(stats[keys.F_WS_CONNECTIONS]) == 3  # ~2,000 topics of ~30 chars: the 21,000-char cap binds
    assert int(stats[keys.F_REST_REQUESTS]) >= 3
    assert sum(int(stats[keys.messages_field(c)]) for c in COINS) == int(stats[keys.F_MESSAGES])
    assert all(stats[keys.error_field(t)] == "0" for t in errors.ERROR_TYPES
               if t not in (errors.DATA_TIMEOUT, errors.WS_CLOSED))  # silence may trip the data timeout
    heartbeat = r.hgetall(keys.INGEST_HEARTBEAT)
    assert int(heartbeat[keys.F_HB_PID]) == ingest.pid
    assert 0 < int(heartbeat[keys.F_HB_RSS_BYTES]) < 200 * 2**20
    assert float(heartbeat[keys.F_HB_CPU_SECONDS]) > 0
    assert 0 < r.ttl(keys.INGEST_HEARTBEAT) <= 5
    lag = r.hgetall(keys.STATS_LAG)
    assert int(lag[keys.LAG_COUNT_FIELD]) == int(lag[keys.LAG_INF_FIELD]) >= len(listed)
    assert int(lag[keys.lag_bucket_field(keys.LAG_BUCKETS[-1])]) <= int(lag[keys.LAG_COUNT_FIELD])


def test_sigterm_flushes_closes_and_exits_0_within_5_seconds(
        redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
        ingest_factory: Callable[..., IngestHandle]) -> None:
    sim = simulator_factory(instruments_per_coin=40, push_interval=0.2)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim)
    ingest.wait_for_data(symbols=120)
    wait_until(lambda: sim.state()["counters"]["connections_open"] == 1, timeout=10, what="one connection")
    code, took = signal_and_time_exit(ingest, signal.SIGTERM)
    assert code == 0, ingest.log_text()[-2000:]
    assert took < 5.0
    wait_until(lambda: sim.state()["counters"]["connections_open"] == 0, timeout=5, what="socket closed")
    assert "stopped" in ingest.log_text()


def test_sigint_also_exits_0(redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
                             ingest_factory: Callable[..., IngestHandle]) -> None:
    sim = simulator_factory(instruments_per_coin=10)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim)
    ingest.wait_for_data(symbols=30)
    code, took = signal_and_time_exit(ingest, signal.SIGINT)
    assert code == 0
    assert took < 5.0


def test_stats_heartbeat_and_indexes_name_only_configured_coins(
        redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
        ingest_factory: Callable[..., IngestHandle]) -> None:
    sim = simulator_factory(instruments_per_coin=20)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim, coins=("ETH",))
    ingest.wait_for_data(symbols=20)
    r = redis_server.client()
    indexed = r.smembers(keys.coin_index_key("ETH"))
    assert len(indexed) == 20
    assert all((p := parse_symbol(s)) is not None and p.base == "ETH" for s in indexed)
    assert not r.exists(keys.coin_index_key("BTC"))
    assert keys_outside_layout(r, ("ETH",)) == []
    assert keys.messages_field("ETH") in ingest.stats()
    assert keys.messages_field("BTC") not in ingest.stats()


def test_help_lists_the_knobs_and_exits_0() -> None:
    done = subprocess.run([sys.executable, "-m", "ingest", "--help"], capture_output=True, text=True,
                          env=python_env(), cwd=str(repo_root()), timeout=30, check=False)
    assert done.returncode == 0
    for knob in ("REDIS_URL", "BYBIT_WS_URL", "BYBIT_REST_URL", "BYBIT_COINS", "INGEST_PING_INTERVAL",
                 "--config"):
        assert knob in done.stdout


@pytest.mark.parametrize(("env", "config", "message"), [
    ({"INGEST_PING_INTERVAL": "soon"}, None, "INGEST_PING_INTERVAL"),
    ({"BYBIT_COINS": "btc,???"}, None, "BYBIT_COINS"),
    ({"BYBIT_WS_URL": "http://not-a-websocket"}, None, "BYBIT_WS_URL"),
    ({"REDIS_URL": "localhost:6379"}, None, "REDIS_URL"),
    ({"BYBIT_REST_URL": "api.bybit.com"}, None, "BYBIT_REST_URL"),
    ({}, "unknown_knob: 1\n", "unknown key"),
])
def test_a_bad_configuration_exits_2_with_a_message_naming_it(
        tmp_path: Path, env: dict[str, str], config: str | None, message: str) -> None:
    argv = [sys.executable, "-m", "ingest"]
    if config is not None:
        path = tmp_path / "ingest.yml"
        path.write_text(config)
        argv += ["--config", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, env=python_env(**env), cwd=str(repo_root()),
                          timeout=30, check=False)
    assert done.returncode == 2
    assert message in done.stderr


def test_a_yaml_config_file_configures_the_worker(
        tmp_path: Path, redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
        ingest_factory: Callable[..., IngestHandle]) -> None:
    sim = simulator_factory(instruments_per_coin=15, coins=("SOL",))
    path = tmp_path / "ingest.yml"
    path.write_text(f"redis_url: {redis_server.url}\nBYBIT_WS_URL: {sim.ws_url}\nrest_url: {sim.rest_url}\n"
                    "coins: [SOL]\n")
    ingest = ingest_factory(redis_url="", env={"TRACKER_CONFIG": str(path)})
    ingest.redis_url = redis_server.url
    ingest.wait_for_data(symbols=15)
    assert len(redis_server.client().smembers(keys.coin_index_key("SOL"))) == 15
