"""Pytest plugin: the project's own components as real subprocesses (the ingest worker).

``ingest_factory(redis_url=..., simulator=..., env={...})`` starts ``python -m ingest``
on loopback against a Redis and a simulator (or any Bybit-like URLs) and returns an
:class:`IngestHandle`; every ingest started is stopped at teardown. The defaults
shorten the ingest's timers (1 s pings, 3 s data timeout, 2 s backoff cap...) so tests
see reconnects and refreshes in seconds; ``env`` overrides any knob.

Other components' tests use it to get real data into Redis::

    def test_something(redis_server, simulator, ingest_factory):
        ingest = ingest_factory(redis_url=redis_server.url, simulator=simulator)
        ingest.wait_for_data()
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from common import keys
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import ManagedProcess, python_env, repo_root, wait_until

#: Timers short enough for tests to watch failures and recoveries happen.
FAST_ENV: dict[str, str] = {
    "INGEST_PING_INTERVAL": "1",
    "INGEST_PING_TIMEOUT": "2",
    "INGEST_DATA_TIMEOUT": "3",
    "INGEST_BACKOFF_CAP": "2",
    "INGEST_BACKOFF_RESET_AFTER": "5",
    "INGEST_CIRCUIT_RECOVERY": "2",
    "INGEST_REFRESH_INTERVAL": "2",
    "INGEST_STATS_INTERVAL": "0.5",
    "INGEST_HEARTBEAT_TTL": "5",
    "INGEST_REST_TIMEOUT": "3",
    "INGEST_REST_BACKOFF_MAX": "1",
    "INGEST_REST_BAN_PAUSE": "1",
    "INGEST_REDIS_RETRY_MAX": "0.5",
    "INGEST_SUBSCRIBE_DELAY": "0.02",
    "LOG_FORMAT": "text",
}


class IngestHandle:
    """A running ``python -m ingest``: its environment, log, signals and exit code."""

    def __init__(self, *, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.redis_url = env.get("REDIS_URL", "")
        self._proc = ManagedProcess([sys.executable, "-m", "ingest"], log_path, env=env, cwd=str(repo_root()))

    def start(self) -> None:
        self._proc.start()

    @property
    def pid(self) -> int:
        assert self._proc.proc is not None
        return self._proc.proc.pid

    @property
    def running(self) -> bool:
        return self._proc.running

    def signal(self, sig: int) -> None:
        self._proc.signal(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        return self._proc.stop(timeout)

    def kill(self) -> None:
        self._proc.kill()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit code (fails the test on timeout)."""
        assert self._proc.proc is not None
        try:
            return self._proc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ingest still running after {timeout}s; log:\n{self.log_text()[-3000:]}") \
                from None

    def log_text(self) -> str:
        return self._proc.log_text()

    def redis(self) -> Any:
        """A synchronous redis-py client (decode_responses) on the ingest's Redis."""
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)

    def stats(self) -> dict[str, str]:
        """The ingest's ``stats:global`` hash (empty until its first stats write)."""
        with self.redis() as r:
            result: dict[str, str] = r.hgetall(keys.STATS_GLOBAL)
        return result

    @property
    def replica(self) -> str:
        """The ingest's replica name (``INGEST_REPLICA``, or the default)."""
        return self.env.get("INGEST_REPLICA") or keys.DEFAULT_REPLICA

    def replica_stats(self) -> dict[str, str]:
        """The ingest's own ``stats:replica:<name>`` hash (empty until its first stats write)."""
        with self.redis() as r:
            result: dict[str, str] = r.hgetall(keys.replica_stats_key(self.replica))
        return result

    def wait_for_data(self, *, symbols: int = 1, timeout: float = 30.0) -> None:
        """Wait until at least ``symbols`` option hashes have been written."""
        def enough() -> bool:
            if not self.running:
                raise AssertionError(f"ingest exited early; log:\n{self.log_text()[-3000:]}")
            return int(self.replica_stats().get(keys.F_REDIS_WRITES, "0")) >= symbols

        wait_until(enough, timeout=timeout, interval=0.2, what=f"{symbols} option hashes from the ingest")


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[Callable[..., IngestHandle]]:
    """Start ingest workers: ``factory(*, redis_url, simulator=None, coins=None, env=None, fast=True)``."""
    handles: list[IngestHandle] = []

    def factory(*, redis_url: str, simulator: SimulatorHandle | None = None,
                coins: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                fast: bool = True) -> IngestHandle:
        overrides: dict[str, str] = dict(FAST_ENV) if fast else {}
        overrides["REDIS_URL"] = redis_url
        if simulator is not None:
            overrides["BYBIT_WS_URL"] = simulator.ws_url
            overrides["BYBIT_REST_URL"] = simulator.rest_url
        if coins is not None:
            overrides["BYBIT_COINS"] = ",".join(coins)
        overrides.update(env or {})
        handle = IngestHandle(env=python_env(**overrides), log_path=tmp_path / f"ingest-{len(handles)}.log")
        handles.append(handle)
        handle.start()
        return handle

    try:
        yield factory
    finally:
        for handle in handles:
            handle.stop()


def signal_and_time_exit(handle: IngestHandle, sig: int = signal.SIGTERM,
                         timeout: float = 10.0) -> tuple[int, float]:
    """Send ``sig`` and return (exit code, seconds it took to exit)."""
    started = time.monotonic()
    handle.signal(sig)
    code = handle.wait(timeout)
    return code, time.monotonic() - started


# --- assertions shared by tests that read what the ingest wrote --------------------------------

def stored_options(r: Any, symbols: Sequence[str]) -> dict[str, dict[str, str]]:
    """symbol -> its option hash (empty dict when absent), in one pipelined round trip."""
    pipe = r.pipeline(transaction=False)
    for symbol in symbols:
        pipe.hgetall(keys.option_key(symbol))
    return dict(zip(symbols, pipe.execute(), strict=True))


def truth_mismatches(r: Any, truth: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """symbol -> what differs between Redis and the simulator's truth (empty when they agree).

    The stored hash must be exactly the truth's fields and values plus ``ts`` (the frame's
    ``ts``) and ``recv_ts`` (an arrival time in ms).
    """
    problems: dict[str, str] = {}
    stored = stored_options(r, sorted(truth))
    for symbol, want in truth.items():
        got = dict(stored[symbol])
        if not got:
            problems[symbol] = "missing"
            continue
        recv = got.pop(keys.F_OPTION_RECV_TS, None)
        expected = {**want["data"], keys.F_OPTION_TS: str(want["ts"])}
        if recv is None or not recv.isdigit():
            problems[symbol] = f"recv_ts {recv!r}"
        elif got != expected:
            diff = {k: (got.get(k), expected.get(k))
                    for k in set(got) | set(expected) if got.get(k) != expected.get(k)}
            problems[symbol] = f"differs: {dict(list(diff.items())[:4])}"
    return problems


def keys_outside_layout(r: Any, coins: Sequence[str]) -> list[str]:
    """Every key in Redis that the documented layout (common/keys.py) does not allow."""
    from common.symbols import is_valid_symbol

    fixed = {keys.STATS_GLOBAL, keys.STATS_LAG, keys.INGEST_HEARTBEAT, keys.INGEST_REPLICAS}
    fixed |= {keys.coin_index_key(c) for c in coins} | {keys.coin_stats_key(c) for c in coins}
    per_replica = (keys.replica_heartbeat_key(""), keys.replica_stats_key(""), keys.replica_lag_key(""))
    bad = []
    for key in r.scan_iter(count=1000):
        if key in fixed:
            continue
        if any(key.startswith(p) and keys.is_valid_replica(key[len(p):]) for p in per_replica):
            continue
        if key.startswith(keys.OPTION_PREFIX) and is_valid_symbol(key[len(keys.OPTION_PREFIX):]):
            continue
        bad.append(key)
    return bad


def quiesce(simulator: SimulatorHandle) -> None:
    """Stop the simulator's pushes and wait until a push cycle has passed silently.

    After this, the simulator's truth no longer changes, so Redis can be compared with it
    once the ingest has flushed (poll with :func:`truth_mismatches`).
    """
    simulator.set_faults(silent=True)
    cycles = simulator.state()["counters"]["push_cycles"]
    wait_until(lambda: simulator.state()["counters"]["push_cycles"] >= cycles + 2, timeout=15,
               what="two silent push cycles")
