"""The ingest under every fault the simulator can inject: it keeps running and the data stays right.

Each test starts a small simulator (tens of instruments per coin, fast pushes), switches
one fault on, watches the worker cope (counters, reconnects), switches it off and then
requires Redis to hold exactly the simulator's last well-formed tickers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import errors, keys
from tests.fixtures_components import (
    IngestHandle,
    keys_outside_layout,
    quiesce,
    signal_and_time_exit,
    truth_mismatches,
)
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, free_port, wait_until

SimFactory = Callable[..., SimulatorHandle]
IngestFactory = Callable[..., IngestHandle]
COINS = ("BTC", "ETH", "SOL")


def counter(ingest: IngestHandle, field: str) -> int:
    return int(ingest.stats().get(field, "0"))


def errors_of(ingest: IngestHandle, error_type: str) -> int:
    return counter(ingest, keys.error_field(error_type))


def all_connected(ingest: IngestHandle) -> bool:
    stats = ingest.stats()
    wanted = int(stats.get(keys.F_WS_CONNECTIONS, "0"))
    return wanted > 0 and int(stats.get(keys.F_WS_CONNECTED, "-1")) == wanted


def settle_and_compare(ingest: IngestHandle, sim: SimulatorHandle, *, timeout: float = 20.0) -> None:
    """Faults off, every connection back, pushes received, pushes paused: Redis == truth."""
    sim.clear_faults()
    wait_until(lambda: all_connected(ingest), timeout=timeout, what="every connection subscribed again")
    cycles = sim.state()["counters"]["push_cycles"]
    wait_until(lambda: sim.state()["counters"]["push_cycles"] >= cycles + 3, timeout=10, what="3 push cycles")
    quiesce(sim)
    truth = sim.truth()
    listed = {s for symbols in sim.instruments().values() for s in symbols}
    assert set(truth) == listed
    with ingest.redis() as r:
        wait_until(lambda: not truth_mismatches(r, truth), timeout=timeout, interval=0.25,
                   what="Redis to equal the simulator's truth")
        assert keys_outside_layout(r, COINS) == []
    assert ingest.running


def start(sim_factory: SimFactory, ingest_factory: IngestFactory, redis_server: RedisServer, *,
          per_coin: int = 30, sim_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
          **sim_kw: Any) -> tuple[SimulatorHandle, IngestHandle]:
    sim = sim_factory(instruments_per_coin=per_coin, push_interval=0.2, extra_args=sim_args, **sim_kw)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim, env=env)
    ingest.wait_for_data(symbols=per_coin * len(sim_kw.get("coins", COINS)))
    return sim, ingest


def test_connections_dropped_every_few_seconds_reconnect_and_resubscribe_only_themselves(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    # 20 topics per connection: 90 symbols need 5 connections, each subscribed in one request.
    sim, ingest = start(simulator_factory, ingest_factory, redis_server,
                        env={"INGEST_MAX_TOPICS_PER_CONNECTION": "20"})
    assert counter(ingest, keys.F_WS_CONNECTIONS) == 5
    sim.set_faults(drop_every=1.5)
    wait_until(lambda: counter(ingest, keys.F_RECONNECTS) >= 6, timeout=30, what="six reconnects")
    assert errors_of(ingest, errors.WS_CLOSED) >= 6
    settle_and_compare(ingest, sim)
    c = sim.state()["counters"]
    # One subscribe request per connection ever opened: no connection resubscribed for another.
    assert c["subscribe_requests"] == c["connections_total"]
    assert c["subscribe_failures"] == 0


def test_a_connection_whose_pings_go_unanswered_is_replaced(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim, ingest = start(simulator_factory, ingest_factory, redis_server)
    opened = sim.state()["counters"]["connections_total"]
    sim.set_faults(no_pong=True)
    wait_until(lambda: errors_of(ingest, errors.PONG_TIMEOUT) >= 1, timeout=15, what="a pong timeout")
    wait_until(lambda: sim.state()["counters"]["connections_total"] > opened, timeout=15,
               what="a replacement connection")
    settle_and_compare(ingest, sim)


def test_subscribe_requests_rejected_for_size_are_split_until_they_fit(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim, ingest = start(simulator_factory, ingest_factory, redis_server, per_coin=40,
                        sim_args=("--reject-subscribe-over", "7"))
    assert errors_of(ingest, errors.SUBSCRIBE_FAILED) >= 1
    assert counter(ingest, keys.F_SUBSCRIPTIONS) == 120
    assert sim.state()["counters"]["subscriptions"] == 120
    settle_and_compare(ingest, sim)


def test_the_older_command_resp_answer_form_is_understood(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    """COMMAND_RESP with ret_msg and req_id echoed (the simulator's form before issue 11), split for size."""
    sim, ingest = start(simulator_factory, ingest_factory, redis_server,
                        sim_args=("--response-style", "command_resp_echo", "--reject-subscribe-over", "25"))
    wait_until(lambda: counter(ingest, keys.F_SUBSCRIPTIONS) == 90, timeout=10, what="90 topics confirmed")
    assert errors_of(ingest, errors.SUBSCRIBE_FAILED) >= 1
    settle_and_compare(ingest, sim)


def test_malformed_and_hostile_frames_are_counted_and_never_stored(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim, ingest = start(simulator_factory, ingest_factory, redis_server)
    sim.set_faults(malformed_ratio=0.3)
    expected = (errors.BAD_JSON, errors.MISSING_FIELD, errors.BAD_NUMBER, errors.BAD_TYPE, errors.BAD_SYMBOL,
                errors.TOPIC_MISMATCH, errors.BAD_TIMESTAMP)
    wait_until(lambda: all(errors_of(ingest, t) > 0 for t in expected), timeout=20,
               what=f"every malformed kind counted: {expected}")
    kinds = sim.state()["counters"]["malformed_by_kind"]
    assert {"hostile_star", "hostile_path", "hostile_long", "hostile_key_pattern"} <= set(kinds)
    with ingest.redis() as r:
        assert keys_outside_layout(r, COINS) == []
    assert ingest.running
    settle_and_compare(ingest, sim)
    assert "frame dropped" in ingest.log_text()


def test_rest_rate_limits_of_every_form_are_waited_out(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    # Six answers at start: 10006 (with X-Bapi headers), 403, 429, twice each; then three during a refresh.
    sim, ingest = start(simulator_factory, ingest_factory, redis_server, sim_args=("--rest-rate-limit", "6"))
    assert counter(ingest, keys.F_REST_RATE_LIMITED) == 6
    assert errors_of(ingest, errors.REST_RATE_LIMITED) == 6
    assert sim.state()["counters"]["rate_limits_by_form"] == {"10006": 2, "403": 2, "429": 2}
    sim.set_faults(rest_rate_limit=3)
    wait_until(lambda: counter(ingest, keys.F_REST_RATE_LIMITED) == 9, timeout=15, what="3 more rate limits")
    requests = counter(ingest, keys.F_REST_REQUESTS)
    wait_until(lambda: counter(ingest, keys.F_REST_REQUESTS) >= requests + 3, timeout=15,
               what="a refresh after the rate limits")
    assert errors_of(ingest, errors.REST_ERROR) == 0
    settle_and_compare(ingest, sim)


def test_new_listings_are_subscribed_and_delivered_ones_deleted_without_reconnecting(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim, ingest = start(simulator_factory, ingest_factory, redis_server)
    opened = sim.state()["counters"]["connections_total"]
    new = sim.list_new("BTC", 5)
    gone = sim.deliver("ETH", count=4)
    r = redis_server.client()
    wait_until(lambda: all(r.exists(keys.option_key(s)) for s in new), timeout=15, what="new listings stored")
    wait_until(lambda: not any(r.exists(keys.option_key(s)) for s in gone), timeout=15,
               what="delivered options deleted")
    assert set(new) <= r.smembers(keys.coin_index_key("BTC"))
    assert not set(gone) & r.smembers(keys.coin_index_key("ETH"))
    assert r.smembers(keys.coin_index_key("ETH")) == set(sim.instruments()["ETH"])
    wait_until(lambda: r.hget(keys.coin_stats_key("ETH"), keys.F_COIN_TRACKED) == "26", timeout=5,
               what="ETH tracked count")
    assert sim.state()["counters"]["connections_total"] == opened
    assert counter(ingest, keys.F_RECONNECTS) == 0
    assert sim.state()["counters"]["unsubscribe_requests"] >= 1
    settle_and_compare(ingest, sim)
    assert errors_of(ingest, errors.UNSUBSCRIBED_SYMBOL) == 0


def test_a_silent_stream_is_declared_dead_and_the_stored_data_survives(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim, ingest = start(simulator_factory, ingest_factory, redis_server)
    sim.set_faults(silent=True)
    wait_until(lambda: errors_of(ingest, errors.DATA_TIMEOUT) >= 1, timeout=15, what="a data timeout")
    r = redis_server.client()
    assert len(r.smembers(keys.coin_index_key("BTC"))) == 30
    assert ingest.running
    settle_and_compare(ingest, sim)


def test_frames_above_the_size_limit_close_the_connection_and_are_counted(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=5, push_interval=0.2)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim,
                            env={"INGEST_MAX_FRAME_BYTES": "300"})
    wait_until(lambda: errors_of(ingest, errors.FRAME_TOO_LARGE) >= 2, timeout=20, what="frames too large")
    assert counter(ingest, keys.F_REDIS_WRITES) == 0
    assert ingest.running


def test_an_unreachable_exchange_opens_the_circuit_breaker_and_the_worker_keeps_trying(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=5)
    ingest = ingest_factory(redis_url=redis_server.url, env={
        "BYBIT_REST_URL": sim.rest_url, "BYBIT_WS_URL": f"ws://127.0.0.1:{free_port()}/v5/public/option",
        "INGEST_CIRCUIT_FAILURES": "2", "INGEST_CIRCUIT_RECOVERY": "60",
        "INGEST_MAX_RECONNECT_ATTEMPTS": "1"})
    wait_until(lambda: counter(ingest, keys.F_CIRCUIT_OPEN) == 1, timeout=20, what="an open circuit")
    stats = ingest.stats()
    assert int(stats[keys.F_CONSECUTIVE_FAILURES]) >= 2
    assert int(stats[keys.F_CONNECT_FAILURES]) == int(stats[keys.error_field(errors.WS_CONNECT)]) >= 2
    assert stats[keys.F_WS_CONNECTED] == "0"
    assert "forever" in ingest.log_text()
    assert ingest.running
    code, took = signal_and_time_exit(ingest)  # waiting out an open breaker does not delay the exit
    assert code == 0
    assert took < 5.0


def test_discovery_that_fails_at_start_is_retried_until_the_exchange_answers(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=10)
    sim.stop()
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim)
    wait_until(lambda: errors_of(ingest, errors.REST_ERROR) >= 3, timeout=20, what="failed discoveries")
    assert ingest.running
    sim.start()
    ingest.wait_for_data(symbols=30)


def test_rejected_subscriptions_are_retried_on_the_socket_long_before_the_next_refresh(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    # Every subscribe is refused until the fault clears: the topics run out of retries and are
    # parked. The refresh (every 60 s here) would retry them; the connection does so after 12 s.
    sim = simulator_factory(instruments_per_coin=10, push_interval=0.2,
                            extra_args=("--reject-subscribe-over", "0"))
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim,
                            env={"INGEST_REFRESH_INTERVAL": "60"})
    wait_until(lambda: "parked=30" in ingest.log_text(), timeout=30,
               what="every topic parked after its retries (the 'subscribed' line of the connection)")
    assert errors_of(ingest, errors.SUBSCRIBE_FAILED) >= 30
    assert counter(ingest, keys.F_SUBSCRIPTIONS) == 0
    started = sim.state()["counters"]["connections_total"]
    sim.clear_faults()
    wait_until(lambda: counter(ingest, keys.F_SUBSCRIPTIONS) == 30, timeout=40,
               what="every topic subscribed again, before the refresh at 60 s")
    assert sim.state()["counters"]["connections_total"] == started, ingest.log_text()  # same sockets
    assert "subscribing parked topics again" in ingest.log_text()
    settle_and_compare(ingest, sim)
