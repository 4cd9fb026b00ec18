"""INGEST_WORKERS: the ingest as several processes, each streaming a disjoint share of the symbols.

The unit tests pin the share (stable across interpreters, disjoint, complete) and the pool's
filtering; the end-to-end test runs ``python -m ingest`` with two workers against the simulator
and a real Redis: every topic subscribed exactly once across both, Redis equal to the
simulator's truth, each worker reporting as its own replica, a SIGKILLed worker restarted by
the supervisor, and SIGTERM stopping them all with exit 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from common import keys
from common.config import ConfigError, load_settings
from ingest.coalescer import Coalescer
from ingest.lag import LagHistogram
from ingest.pool import Pool
from ingest.sharding import WorkerShare
from ingest.sink import TickerSink
from ingest.stats import Counters
from tests.fixtures_components import IngestHandle, keys_outside_layout, quiesce, truth_mismatches
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, pid_alive, repo_root, wait_until

SimFactory = Callable[..., SimulatorHandle]
IngestFactory = Callable[..., IngestHandle]
SYMBOLS = [f"{coin}-{day}DEC26-{strike}-{kind}" for coin in ("BTC", "ETH", "SOL") for day in (5, 12, 26)
           for strike in range(1000, 60000, 1000) for kind in "CP"]


def test_every_symbol_has_exactly_one_owner_among_the_workers() -> None:
    for count in (1, 2, 3, 8):
        shares = [WorkerShare(i, count) for i in range(count)]
        owners = {s: [w.index for w in shares if w.owns(s)] for s in SYMBOLS}
        assert all(len(o) == 1 for o in owners.values()), f"{count} workers"
        sizes = [sum(1 for o in owners.values() if o == [i]) for i in range(count)]
        assert min(sizes) > len(SYMBOLS) / count / 2, f"lopsided shares {sizes}"


def test_the_share_is_the_same_in_every_interpreter() -> None:
    """Workers start at different times in fresh interpreters: a salted hash() would split badly."""
    here = [s for s in SYMBOLS if WorkerShare(1, 3).owns(s)]
    code = ("import sys; from ingest.sharding import WorkerShare; "
            "print('\\n'.join(s for s in sys.stdin.read().split() if WorkerShare(1, 3).owns(s)))")
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", code], input="\n".join(SYMBOLS), capture_output=True,
                              text=True, cwd=repo_root(), env={**os.environ, "PYTHONHASHSEED": seed},
                              check=True)
        assert done.stdout.split() == here


def test_a_share_that_does_not_exist_is_refused() -> None:
    for index, count in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="does not exist"):
            WorkerShare(index, count)


def _pool(share: WorkerShare) -> Pool:
    settings = load_settings(env={})
    counters = Counters(coins=("BTC",))
    sink = TickerSink(coalescer=Coalescer(), counters=counters, lag=LagHistogram())
    return Pool(settings=settings, sink=sink, counters=counters, stop=asyncio.Event(), share=share)


async def test_a_worker_s_pool_tracks_only_its_share() -> None:
    btc = {s for s in SYMBOLS if s.startswith("BTC")}
    pools = [_pool(WorkerShare(i, 2)) for i in range(2)]
    for p in pools:
        p.apply({"BTC": btc})
        assert set(p.coin_of) == {s for s in btc if p.share is not None and p.share.owns(s)}
    assert set(pools[0].coin_of) | set(pools[1].coin_of) == btc
    assert not set(pools[0].coin_of) & set(pools[1].coin_of)


async def test_the_empty_list_guard_judges_bybit_s_whole_answer_not_the_share() -> None:
    btc = sorted(s for s in SYMBOLS if s.startswith("BTC"))
    p = _pool(WorkerShare(0, 2))
    p.apply({"BTC": set(btc)})
    mine = set(p.coin_of)
    p.apply({"BTC": set()})  # Bybit answered nothing: a glitch, keep everything
    assert set(p.coin_of) == mine
    others = {s for s in btc if s not in mine}
    change = p.apply({"BTC": others})  # Bybit lists only the other worker's symbols now
    assert p.coin_of == {}
    assert change.removed == {"BTC": sorted(mine)}


@pytest.mark.parametrize(("env", "message"), [
    ({"INGEST_WORKERS": "0"}, "INGEST_WORKERS"),
    ({"INGEST_WORKERS": "9"}, "at most 8"),
    ({"INGEST_WORKERS": "two"}, "INGEST_WORKERS"),
    ({"INGEST_WORKERS": "2", "INGEST_REPLICA": "r" * 31}, "too long for INGEST_WORKERS=2"),
])
def test_bad_worker_settings_are_refused_with_the_knob_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def _heartbeat_pid(ingest: IngestHandle, replica: str) -> int:
    with ingest.redis() as r:
        return int(r.hget(keys.replica_heartbeat_key(replica), keys.F_HB_PID) or 0)


@pytest.mark.slow
def test_two_workers_share_the_feed_restart_when_killed_and_stop_together(
        redis_server: RedisServer, simulator_factory: SimFactory, ingest_factory: IngestFactory) -> None:
    sim = simulator_factory(instruments_per_coin=30, push_interval=0.2)
    # The same ingest ran before as one process, then with three workers: those names are dead.
    before = redis_server.client()
    before.zadd(keys.INGEST_REPLICAS, {"main": time.time() - 60, "main-w2": time.time() - 60})
    before.hset(keys.replica_stats_key("main-w2"), keys.F_SUBSCRIPTIONS, "9")
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim, env={"INGEST_WORKERS": "2"})
    workers = ("main-w0", "main-w1")
    wait_until(lambda: all(_heartbeat_pid(ingest, w) for w in workers), timeout=30,
               what="a heartbeat from each worker")
    # Worker 0 forgets them at its first report: IngestReplicaDown does not fire for them.
    wait_until(lambda: set(before.zrange(keys.INGEST_REPLICAS, 0, -1)) == set(workers), timeout=10,
               what="the former names forgotten")
    assert not before.exists(keys.replica_stats_key("main-w2"))
    assert "forgot the names this ingest reported under with another INGEST_WORKERS" in ingest.log_text()
    pids = {w: _heartbeat_pid(ingest, w) for w in workers}
    assert len(set(pids.values()) | {ingest.pid}) == 3, "two worker processes beside the supervisor"

    listed = {s for symbols in sim.instruments().values() for s in symbols}

    def subscribed(replica: str) -> int:
        with ingest.redis() as r:
            return int(r.hget(keys.replica_stats_key(replica), keys.F_SUBSCRIPTIONS) or 0)

    wait_until(lambda: sum(subscribed(w) for w in workers) == len(listed), timeout=30,
               what="every topic subscribed by one of the workers")
    assert all(subscribed(w) > 0 for w in workers), "both workers carry a share"
    assert sim.state()["counters"]["subscriptions"] == len(listed), "no topic subscribed twice"

    os.kill(pids["main-w0"], signal.SIGKILL)
    wait_until(lambda: _heartbeat_pid(ingest, "main-w0") not in (0, pids["main-w0"]), timeout=30,
               what="the killed worker restarted by the supervisor")
    assert "worker died; restarting" in ingest.log_text()
    assert _heartbeat_pid(ingest, "main-w1") == pids["main-w1"], "the other worker was left alone"
    wait_until(lambda: sim.state()["counters"]["subscriptions"] == len(listed), timeout=30,
               what="the restarted worker's topics subscribed again")
    # Pushes while it was down went to nobody: let a few cycles reach the restarted worker
    # before the feed stops (as test_ingest_faults' settle_and_compare does).
    cycles = sim.state()["counters"]["push_cycles"]
    wait_until(lambda: sim.state()["counters"]["push_cycles"] >= cycles + 3, timeout=10, what="3 push cycles")

    quiesce(sim)
    truth = sim.truth()
    assert set(truth) == listed
    with ingest.redis() as r:
        wait_until(lambda: not truth_mismatches(r, truth), timeout=20, interval=0.25,
                   what="Redis to equal the simulator's truth")
        assert keys_outside_layout(r, ("BTC", "ETH", "SOL")) == []
        assert r.scard(keys.coin_index_key("BTC")) == len(sim.instruments()["BTC"])

    live = [_heartbeat_pid(ingest, w) for w in workers]
    ingest.signal(signal.SIGTERM)
    assert ingest.wait(25) == 0
    assert not any(pid_alive(pid) for pid in live), "every worker stopped with the supervisor"
