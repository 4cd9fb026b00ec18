"""The ingest and its Redis: restarts mid-stream, Redis absent at start, memory pressure.

Real redis-server (killed with SIGKILL and restarted empty on the same port), real
simulator, real ``python -m ingest``.
"""

from __future__ import annotations

from collections.abc import Callable

from common import errors, keys
from tests.fixtures_components import IngestHandle, quiesce, truth_mismatches
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, wait_until

SimFactory = Callable[..., SimulatorHandle]
IngestFactory = Callable[..., IngestHandle]
COINS = ("BTC", "ETH", "SOL")


def test_redis_killed_and_restarted_mid_stream_loses_nothing(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=50, push_interval=0.2)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim)
    ingest.wait_for_data(symbols=150)
    wait_until(lambda: int(ingest.stats().get(keys.F_MESSAGES, "0")) >= 600, timeout=20, what="600 messages")
    before = ingest.stats()

    redis_server.kill()
    # While Redis is away the worker keeps its sockets and keeps receiving.
    opened = sim.state()["counters"]["connections_total"]
    sent = sim.state()["counters"]["frames_sent"]
    wait_until(lambda: sim.state()["counters"]["frames_sent"] >= sent + 1500, timeout=20,
               what="two seconds of frames during the outage")
    assert ingest.running
    redis_server.start()  # empty: no persistence

    quiesce(sim)
    truth = sim.truth()
    r = redis_server.client()
    wait_until(lambda: not truth_mismatches(r, truth), timeout=20, interval=0.25,
               what="every symbol back with the truth's values")
    listed = sim.instruments()

    def indexes_rebuilt() -> bool:
        return all(r.smembers(keys.coin_index_key(c)) == set(listed[c]) for c in COINS)

    wait_until(indexes_rebuilt, timeout=5, what="every coin index rebuilt")
    wait_until(lambda: ingest.stats().get(keys.F_PENDING) == "0", timeout=5,
               what="stats rewritten, nothing pending")
    after = ingest.stats()
    # Counters are the worker's totals: neither reset by the empty Redis nor double counted.
    assert int(after[keys.F_MESSAGES]) >= int(before[keys.F_MESSAGES]) + 1500
    assert int(after[keys.F_MESSAGES]) == sum(int(after[keys.messages_field(c)]) for c in COINS)
    assert int(after[keys.error_field(errors.REDIS_ERROR)]) >= 1
    assert r.exists(keys.INGEST_HEARTBEAT)
    assert r.hget(keys.coin_stats_key("BTC"), keys.F_COIN_TRACKED) == "50"
    assert sim.state()["counters"]["connections_total"] == opened  # the sockets were never touched
    assert "redis is back" in ingest.log_text()


def test_a_worker_started_before_redis_waits_for_it(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=10, push_interval=0.2)
    redis_server.kill()
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim)
    wait_until(lambda: sim.state()["counters"]["subscriptions"] == 30, timeout=15,
               what="subscribed meanwhile")
    assert ingest.running
    redis_server.start()
    ingest.wait_for_data(symbols=30)
    quiesce(sim)
    truth = sim.truth()
    r = redis_server.client()
    wait_until(lambda: not truth_mismatches(r, truth), timeout=15, what="Redis equal to the truth")


def test_memory_pressure_shortens_option_ttls_and_relief_restores_them(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=20, push_interval=0.5)
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim,
                            env={"INGEST_OPTION_TTL": "7200", "INGEST_OPTION_TTL_PRESSURE": "600"})
    ingest.wait_for_data(symbols=60)
    r = redis_server.client()
    some = sim.instruments()["BTC"][0]
    assert r.ttl(keys.option_key(some)) > 7000
    quiesce(sim)  # no writes: only the pressure switch can change a TTL from here on

    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", str(int(used * 1.2)))  # 70 % of it is below what is used: pressure
    wait_until(lambda: ingest.stats().get(keys.F_MEMORY_PRESSURE) == "1", timeout=10, what="pressure on")
    assert ingest.stats()[keys.F_TTL_SECONDS] == "600"
    wait_until(lambda: 0 < r.ttl(keys.option_key(some)) <= 600, timeout=5, what="short TTL applied")
    assert all(0 < r.ttl(keys.option_key(s)) <= 600 for s in sim.instruments()["ETH"])

    r.config_set("maxmemory", "0")  # back to the fixed 400 MB threshold: no pressure
    wait_until(lambda: ingest.stats().get(keys.F_MEMORY_PRESSURE) == "0", timeout=10, what="pressure off")
    wait_until(lambda: r.ttl(keys.option_key(some)) > 7000, timeout=5, what="normal TTL applied again")
    assert ingest.stats()[keys.F_TTL_SECONDS] == "7200"
