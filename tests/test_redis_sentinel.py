"""Every component behind Redis Sentinel (common/redisconn.py), with real redis-server processes.

A primary, a replica and a sentinel (``redis-server --sentinel``, what Debian's redis-sentinel
runs) on loopback ports; the primary is SIGKILLed and Sentinel promotes the replica. No part of
the failover is ours: the tests show the components follow it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from api.store import make_redis as api_redis
from common import keys
from common.config import ConfigError, load_settings
from common.redisconn import SentinelTarget, sentinel_target
from exporter.snapshot import make_redis as exporter_redis
from ingest.store import make_redis as ingest_redis
from tests.fixtures_components import IngestHandle, quiesce, truth_mismatches
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import LOOPBACK, ManagedProcess, RedisServer, binary_or_skip, free_port, wait_until

SERVICE = "tracker"
CLOSED_URL = f"redis://{LOOPBACK}:1/0"  # in Sentinel mode REDIS_URL's host and port are not used


class AuthRedisServer(RedisServer):
    """A redis-server with ``requirepass``: its liveness probe accepts the NOAUTH answer."""

    def ping(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False


class SentinelSet:
    """A primary, one replica and one sentinel watching them (quorum 1, 1 s down-after).

    With ``password``, the data nodes and the sentinel all require it, as in production.
    """

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        (workdir / "primary").mkdir()
        (workdir / "replica").mkdir()
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.primary = AuthRedisServer(workdir / "primary", extra_args=auth)
        self.replica = AuthRedisServer(workdir / "replica", extra_args=auth)
        self.password = password
        self.port = free_port()
        self.workdir = workdir
        self._proc: ManagedProcess | None = None

    def start(self) -> None:
        self.primary.start()
        self.replica.extra_args += ["--replicaof", LOOPBACK, str(self.primary.port)]
        self.replica.start()
        conf = self.workdir / "sentinel.conf"  # sentinel rewrites its config: a file of its own
        auth = (f"requirepass {self.password}\nsentinel auth-pass {SERVICE} {self.password}\n"
                if self.password else "")
        conf.write_text(
            f"port {self.port}\nbind {LOOPBACK}\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} {LOOPBACK} {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n{auth}")
        self._proc = ManagedProcess([binary_or_skip("redis-server"), str(conf), "--sentinel"],
                                    self.workdir / "sentinel.log")
        self._proc.start()
        wait_until(lambda: self.replicas_known() >= 1, timeout=20, what="the sentinel to see the replica")

    def _ask(self, *args: str) -> Any:
        client = redis.Redis(host=LOOPBACK, port=self.port, decode_responses=True, socket_timeout=2,
                             password=self.password)
        try:
            return client.execute_command("SENTINEL", *args)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        finally:
            client.close()

    def replicas_known(self) -> int:
        found = self._ask("REPLICAS", SERVICE)
        return len(found) if isinstance(found, list) else 0

    def primary_port(self) -> int | None:
        addr = self._ask("GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(addr[1]) if addr else None

    def fail_over_by_killing_the_primary(self) -> float:
        """SIGKILL the primary; seconds until the sentinel names the replica instead."""
        start = time.monotonic()
        self.primary.kill()
        wait_until(lambda: self.primary_port() == self.replica.port, timeout=30, interval=0.1,
                   what="Sentinel to promote the replica")
        return time.monotonic() - start

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
        self.replica.stop()
        self.primary.stop()

    @property
    def target(self) -> SentinelTarget:
        return SentinelTarget(addresses=((LOOPBACK, self.port),), service=SERVICE)

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_SENTINELS": f"{LOOPBACK}:{self.port}", "REDIS_SENTINEL_SERVICE": SERVICE}


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    s = SentinelSet(tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.stop()


# --- configuration -----------------------------------------------------------------------------------

def test_sentinel_mode_is_off_by_default_and_each_knob_is_read() -> None:
    assert sentinel_target(load_settings({})) is None
    settings = load_settings({"REDIS_SENTINELS": "10.0.0.1:26379, [::1]:26380,10.0.0.1:26379",
                              "REDIS_SENTINEL_SERVICE": "md", "API_READ_REPLICAS": "true"})
    target = sentinel_target(settings, replica=settings.api_read_replicas)
    assert target == SentinelTarget(addresses=(("10.0.0.1", 26379), ("::1", 26380)), service="md",
                                    replica=True)


@pytest.mark.parametrize("bad", ["sentinel", "host:", ":26379", "host:port", "host:70000"])
def test_a_bad_sentinel_address_is_refused_at_start_naming_the_knob(bad: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        load_settings({"REDIS_SENTINELS": f"ok:26379,{bad}"})


# --- every component's client follows a failover ---------------------------------------------------

async def test_each_components_client_finds_the_primary_through_sentinel_and_follows_a_failover(
        sentinels: SentinelSet) -> None:
    clients = [ingest_redis(CLOSED_URL, timeout=2, sentinel=sentinels.target),
               exporter_redis(CLOSED_URL, timeout=2, sentinel=sentinels.target),
               api_redis(CLOSED_URL, timeout=2, sentinel=sentinels.target)]
    try:
        for n, client in enumerate(clients):
            await client.set(f"k{n}", "before")
        await asyncio.to_thread(sentinels.fail_over_by_killing_the_primary)

        async def written_after_failover(client: Any, key: str) -> None:
            deadline = time.monotonic() + 15
            while True:
                try:
                    await client.set(key, "after")
                    return
                except redis.RedisError:  # the old primary's connections fail once, then move
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)

        for n, client in enumerate(clients):
            await written_after_failover(client, f"k{n}")
        promoted = sentinels.replica.client()
        assert [promoted.get(f"k{n}") for n in range(3)] == ["after"] * 3
        assert promoted.info("replication")["role"] == "master"
    finally:
        for client in clients:
            await client.aclose()


async def test_the_credentials_of_redis_url_open_both_the_sentinels_and_the_data_nodes(
        tmp_path: Path) -> None:
    guarded = SentinelSet(tmp_path, password="s3cret")
    guarded.start()
    try:
        client = api_redis(f"redis://:s3cret@{LOOPBACK}:1/0", timeout=2, sentinel=guarded.target)
        try:
            await client.set("k", "v")
            assert await client.get("k") == "v"
        finally:
            await client.aclose()
        wrong = api_redis(f"redis://:wrong@{LOOPBACK}:1/0", timeout=2, sentinel=guarded.target)
        try:
            with pytest.raises(redis.RedisError):
                await wrong.get("k")
        finally:
            await wrong.aclose()
    finally:
        guarded.stop()


async def test_the_api_reads_from_a_replica_when_asked(sentinels: SentinelSet) -> None:
    sentinels.primary.client().set("seen", "from-primary")
    replica_target = SentinelTarget(addresses=sentinels.target.addresses, service=SERVICE, replica=True)
    client = api_redis(CLOSED_URL, timeout=2, sentinel=replica_target)
    try:
        wait_until(lambda: sentinels.replica.client().get("seen") == "from-primary", timeout=10,
                   what="replication")
        assert await client.get("seen") == "from-primary"
        info = await client.info("server")
        assert int(info["tcp_port"]) == sentinels.replica.port
    finally:
        await client.aclose()


@pytest.mark.slow
def test_the_ingest_loses_no_ticker_across_a_sentinel_failover(
        sentinels: SentinelSet, simulator_factory: Callable[..., SimulatorHandle],
        ingest_factory: Callable[..., IngestHandle]) -> None:
    sim = simulator_factory(instruments_per_coin=100, push_interval=0.2)
    ingest = ingest_factory(redis_url=CLOSED_URL, simulator=sim, env=sentinels.env)
    listed = sum(len(s) for s in sim.instruments().values())
    wait_until(lambda: len(sentinels.primary.client().keys(keys.OPTION_PREFIX + "*")) == listed,
               timeout=60, what="every option on the primary")
    took = sentinels.fail_over_by_killing_the_primary()
    promoted = sentinels.replica.client()
    writes_then = int(promoted.hget(keys.STATS_GLOBAL, keys.F_REDIS_WRITES) or 0)
    wait_until(lambda: int(promoted.hget(keys.STATS_GLOBAL, keys.F_REDIS_WRITES) or 0) > writes_then + listed,
               timeout=30, what="the ingest writing to the promoted replica")
    quiesce(sim)
    truth = sim.truth()
    wait_until(lambda: not truth_mismatches(promoted, truth), timeout=20, interval=0.25,
               what="the promoted replica to hold every last ticker")
    assert ingest.running
    print(f"failover took {took:.1f} s (sentinel down-after 1 s); 0 of {len(truth)} tickers lost")
