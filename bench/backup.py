"""Backup and restore throughput: pipelined DUMP/RESTORE (bybit-tracker backup) vs one command at a time.

Seeds a throwaway redis-server on loopback with option hashes shaped like Bybit tickers, then
times the backup tool's batched copy out and back against the naive loop (one DUMP, one
PEXPIRETIME, one RESTORE per key, each a round trip). Prints a table and the ratio.

    .venv/bin/python -m bench.backup [--options 20000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from common import keys
from tests.servers import free_port, wait_until
from tracker_tools.backup.redis_dump import KeyRecord, dump_keys, restore_keys

FIELDS = ("bidPrice", "bidSize", "bidIv", "askPrice", "askSize", "askIv", "lastPrice", "markPrice",
          "indexPrice", "markPriceIv", "underlyingPrice", "openInterest", "turnover24h", "volume24h",
          "delta", "gamma", "vega", "theta")


def seed(client: redis.Redis, n: int) -> None:
    rng = random.Random(1)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        symbol = f"BTC-27DEC26-{10000 + i * 10}-{'CP'[i % 2]}"
        pipe.hset(keys.option_key(symbol), mapping={f: f"{rng.random() * 1000:.4f}" for f in FIELDS})
        pipe.expire(keys.option_key(symbol), 86400)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def naive_dump(client: redis.Redis) -> list[KeyRecord]:
    out = []
    for key in client.scan_iter(count=500):
        dumped = client.dump(key)
        expire = client.pexpiretime(key)
        if dumped is not None:
            out.append(KeyRecord(key, dumped, None if expire == -1 else int(expire)))
    return out


def naive_restore(client: redis.Redis, records: list[KeyRecord]) -> None:
    for r in records:
        client.restore(r.key, r.expire_at_ms or 0, r.dump, replace=True, absttl=r.expire_at_ms is not None)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backup")
    parser.add_argument("--options", type=int, default=20000)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not installed (scripts/setup.sh)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=30)
        wait_until(client.ping, timeout=10, what="redis-server")
        seed(client, args.options)
        records: list[KeyRecord] = []
        t_dump = timed(lambda: records.extend(dump_keys(client)))
        t_naive_dump = timed(lambda: naive_dump(client))
        client.flushdb()
        t_restore = timed(lambda: restore_keys(client, records))
        client.flushdb()
        t_naive_restore = timed(lambda: naive_restore(client, records))
        assert client.dbsize() == args.options == len(records)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    n = args.options
    print(f"backup/restore of {n} option hashes (redis-server on loopback)")
    print(f"{'operation':<10} {'pipelined keys/s':>17} {'naive keys/s':>13} {'ratio':>6}")
    for name, fast, slow in (("dump", t_dump, t_naive_dump), ("restore", t_restore, t_naive_restore)):
        print(f"{name:<10} {n / fast:>17,.0f} {n / slow:>13,.0f} {slow / fast:>5.1f}x")


if __name__ == "__main__":
    main()
