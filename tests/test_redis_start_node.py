"""deploy/redis/start-node.sh: a crashed primary restarted at once does not bring its old snapshot back.

Real redis-server and redis-sentinel processes on loopback. The primary's snapshot is older than
what it served; it is SIGKILLed and started again straight away, as Docker's restart policy and
``scripts/run``'s supervisor do. Started through start-node.sh it waits for Sentinel to promote
the replica and comes back as that replica, so the newest value survives everywhere. Started
plainly it came back as primary serving the snapshot, and the replica re-synced from it (the
failover drill's finding: 1,320 stored tickers went back 100 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from scripts.hastack import START_NODE
from tests.servers import LOOPBACK, ManagedProcess, binary_or_skip, free_port, wait_until

SERVICE = "tracker"


class Node:
    """One data node started through start-node.sh, on a fixed port and directory."""

    def __init__(self, workdir: Path, port: int, sentinel: int, *, follow: int | None = None) -> None:
        self.port = port
        self.dir = workdir
        workdir.mkdir()
        server = [binary_or_skip("redis-server"), "--port", str(port), "--bind", LOOPBACK,
                  "--dir", str(workdir), "--save", "", "--appendonly", "no"]
        if follow is not None:
            server += ["--replicaof", LOOPBACK, str(follow)]
        self.argv = ["sh", str(START_NODE), LOOPBACK, str(port), f"{LOOPBACK}:{sentinel}", SERVICE, "15",
                     str(workdir), "--", *server]
        self.proc = ManagedProcess(self.argv, workdir / "node.log")

    def client(self) -> Any:
        return redis.Redis(host=LOOPBACK, port=self.port, decode_responses=True, socket_timeout=1)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def role(self) -> str:
        return str(self.client().info("replication")["role"])


def _sentinel_primary(port: int) -> int | None:
    client = redis.Redis(host=LOOPBACK, port=port, decode_responses=True, socket_timeout=1)
    try:
        addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None
    return int(addr[1]) if addr else None


@pytest.mark.slow
def test_a_primary_restarted_at_once_comes_back_as_replica_of_the_promoted_node(tmp_path: Path) -> None:
    sentinel = free_port()
    primary = Node(tmp_path / "a", free_port(), sentinel)
    replica = Node(tmp_path / "b", free_port(), sentinel, follow=primary.port)
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind {LOOPBACK}\ndir {tmp_path}\n"
                    f"sentinel monitor {SERVICE} {LOOPBACK} {primary.port} 1\n"
                    f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                    f"sentinel failover-timeout {SERVICE} 3000\n")
    watcher = ManagedProcess([binary_or_skip("redis-server"), str(conf), "--sentinel"],
                             tmp_path / "sentinel.log")
    try:
        primary.proc.start()
        replica.proc.start()
        wait_until(lambda: primary.answers() and replica.answers(), timeout=15, what="both nodes up")
        watcher.start()
        wait_until(lambda: _sentinel_primary(sentinel) == primary.port, timeout=15, what="the sentinel")
        # The snapshot says 1; the primary then serves 2, which reaches the replica.
        primary.client().set("k", "1")
        primary.client().save()
        primary.client().set("k", "2")
        wait_until(lambda: replica.client().get("k") == "2", timeout=10, what="the replica to have k=2")
        wait_until(lambda: len(redis.Redis(port=sentinel, host=LOOPBACK).execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "REPLICAS", SERVICE)) == 1, timeout=15, what="the sentinel to know the replica")

        primary.proc.kill()
        primary.proc = ManagedProcess(primary.argv, primary.dir / "node.log")
        primary.proc.start()  # at once: before Sentinel even marks it down
        wait_until(lambda: _sentinel_primary(sentinel) == replica.port, timeout=30, interval=0.2,
                   what="Sentinel to promote the replica")
        wait_until(lambda: primary.answers() and primary.role() == "slave", timeout=30, interval=0.2,
                   what="the restarted node to come back as the new primary's replica")
        assert replica.client().get("k") == "2", "the newest value survived on the promoted node"
        wait_until(lambda: primary.client().get("k") == "2", timeout=15, what="the old primary to re-sync")
        assert "starting as its replica" in primary.proc.log_text()
    finally:
        watcher.stop()
        primary.proc.stop()
        replica.proc.stop()
