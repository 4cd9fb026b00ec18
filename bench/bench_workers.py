"""INGEST_WORKERS: the ingest as 1 and as N processes against the same paced feed, in one run.

    .venv/bin/python -m bench.bench_workers [--rate 10] [--workers 1,2] [--seconds 10] [--quick]

The feed is bench.bench_maxrate's: the simulator with ``--pacing spread`` pushing each of ~2,000
symbols ``--rate`` times a second, one frame per write. For each worker count the same
``python -m ingest`` runs against it with a real Redis; figures come from outside, per worker:
frames/s (its ``stats:replica:<name>`` messages), CPU share (its pid, from its heartbeat), RSS,
and exchange-to-Redis lag p50/p99 over a sample of symbols. What the answer to "when to turn it
on" needs: the busiest worker's share of a core (the one that saturates first), the total over
the workers (what the host pays), and whether every frame was taken.

On a 2-core machine the simulator takes most of a core at 10 pushes/s, so two workers compete
with it: read the ratios, and the busiest worker's share, not the absolute throughput.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.bench_maxrate import Feed, LagSampler, simulator_feed, started
from bench.measure import cpu_seconds, pct, rss_bytes
from common import keys
from common.config import worker_replica
from tests.servers import RedisServer, python_env, wait_until


@dataclass(frozen=True, slots=True)
class Row:
    workers: int
    frames_s: float
    cpu_total: float  # share of one core, all workers together
    cpu_busiest: float  # share of one core, the busiest worker
    rss_total_mib: float
    lag_p50_ms: float
    lag_p99_ms: float


def replica_names(workers: int) -> list[str]:
    return [keys.DEFAULT_REPLICA] if workers == 1 else [worker_replica(keys.DEFAULT_REPLICA, i)
                                                          for i in range(workers)]


def _messages(r: redis.Redis, names: list[str]) -> dict[str, int]:
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hget(keys.replica_stats_key(name), keys.F_MESSAGES)
    return {n: int(v or 0) for n, v in zip(names, pipe.execute(), strict=True)}


def _pids(r: redis.Redis, names: list[str]) -> dict[str, int]:
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hget(keys.replica_heartbeat_key(name), keys.F_HB_PID)
    return {n: int(v or 0) for n, v in zip(names, pipe.execute(), strict=True)}


def measure(workers: int, feed: Feed, redis_server: RedisServer, workdir: Path, *,
            warmup: float, seconds: float) -> Row:
    r = redis_server.client()
    r.flushall()
    names = replica_names(workers)
    env = python_env(REDIS_URL=redis_server.url, BYBIT_WS_URL=feed.ws_url, BYBIT_REST_URL=feed.rest_url,
                     BYBIT_COINS=",".join(feed.coins), LOG_FORMAT="json", LOG_LEVEL="WARNING",
                     INGEST_WORKERS=str(workers))
    argv = [sys.executable, "-m", "ingest"]
    with started(argv, workdir / f"ingest-{workers}.log", env):
        def written() -> bool:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.hget(keys.replica_stats_key(name), keys.F_REDIS_WRITES)
            return sum(int(v or 0) for v in pipe.execute()) >= len(feed.symbols)

        wait_until(written, timeout=90, what=f"{workers} worker(s): every symbol written once")
        time.sleep(warmup)
        pids = _pids(r, names)
        assert all(pids.values()), f"a worker without a heartbeat: {pids}"
        with LagSampler(r, feed.symbols) as sampler:
            m0, c0, t0 = _messages(r, names), {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
            time.sleep(seconds)
            m1, c1, t1 = _messages(r, names), {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
        rss = sum(rss_bytes(p) for p in pids.values())
    dt = t1 - t0
    shares = [(c1[n] - c0[n]) / dt for n in names]
    return Row(workers, frames_s=sum(m1[n] - m0[n] for n in names) / dt, cpu_total=sum(shares),
               cpu_busiest=max(shares), rss_total_mib=rss / 2**20,
               lag_p50_ms=pct(sampler.lags_ms, 0.5), lag_p99_ms=pct(sampler.lags_ms, 0.99))


def report(rows: list[Row], *, rate: float, symbols: int, seconds: float) -> str:
    lines = [f"ingest workers at {rate:g} pushes/symbol/s ({symbols:,} symbols, {symbols * rate:,.0f} "
             f"frames/s offered, window {seconds:g} s, {len(rows)} runs against one feed)", "",
             "| INGEST_WORKERS | frames/s | CPU, all workers | CPU, busiest worker | RSS MiB, all | "
             "lag p50 ms | lag p99 ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.workers} | {row.frames_s:,.0f} | {row.cpu_total:.1%} | {row.cpu_busiest:.1%} | "
                     f"{row.rss_total_mib:.1f} | {row.lag_p50_ms:.1f} | {row.lag_p99_ms:.1f} |")
    base = rows[0]
    for row in rows[1:]:
        lines.append("")
        lines.append(f"{row.workers} workers vs {base.workers}: busiest worker "
                     f"{row.cpu_busiest / base.cpu_busiest:.2f}x, all workers "
                     f"{row.cpu_total / base.cpu_total:.2f}x, frames/s {row.frames_s / base.frames_s:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0, help="pushes per symbol per second (default 10)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per count")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="100 symbols per coin, 3 s windows")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    if not counts or any(not 1 <= c <= 8 for c in counts):
        parser.error("--workers: counts between 1 and 8")
    per_coin = 100 if args.quick else None
    seconds = 3.0 if args.quick else args.seconds
    warmup = 1.0 if args.quick else args.warmup
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        workdir = Path(tmp)
        (workdir / "redis").mkdir()
        redis_server = RedisServer(workdir / "redis")
        redis_server.start()
        try:
            with simulator_feed(workdir, args.rate, per_coin) as feed:
                rows = []
                for count in counts:
                    rows.append(measure(count, feed, redis_server, workdir, warmup=warmup, seconds=seconds))
                    print(f"  {count} worker(s): {rows[-1]}", file=sys.stderr, flush=True)
        finally:
            redis_server.stop()
    print(report(rows, rate=args.rate, symbols=len(feed.symbols), seconds=seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
