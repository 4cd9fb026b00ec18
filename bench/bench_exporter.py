"""Exporter scrape time against the number of options: ``python -m exporter`` vs a naive one.

Seeds a throwaway redis-server on loopback with the ingest's layout (stats, heartbeat, lag
histogram, per-coin stats and indexes) and N option hashes (2,000 then 20,000), and
scrapes, as Prometheus does (one keep-alive connection, one scrape after the other):

- the real exporter (``python -m exporter``): one pipelined round trip, independent of N;
- a naive exporter in the same run: it finds the options by ``SCAN MATCH option:*`` and
  reads each one's ``recv_ts`` (one round trip per option) to count and date them.

Reports p50/p99/mean scrape wall time seen by the client, and the ratio.

    .venv/bin/python -m bench.bench_exporter [--scrapes 400]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from aiohttp import web

from bench.measure import pct, rss_mib, start_http_server
from common import keys
from common.symbols import parse_symbol
from tests.fixtures_readers import Layout, make_symbols
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    RedisServer,
)

COINS = ("BTC", "ETH", "SOL")
SIZES = (2_000, 20_000)


def naive_app(redis_url: str) -> web.Application:
    """The exporter one writes first: walk the keyspace, one read per option."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url, decode_responses=True)

    async def metrics(_request: web.Request) -> web.Response:
        tracked = dict.fromkeys(COINS, 0)
        newest = dict.fromkeys(COINS, 0.0)
        async for key in client.scan_iter(match=keys.OPTION_PREFIX + "*", count=1000):
            parsed = parse_symbol(key.removeprefix(keys.OPTION_PREFIX))
            if parsed is None or parsed.base not in tracked:
                continue
            tracked[parsed.base] += 1
            recv = await client.hget(key, keys.F_OPTION_RECV_TS)
            if recv:
                newest[parsed.base] = max(newest[parsed.base], int(recv) / 1000)
        stats = await client.hgetall(keys.STATS_GLOBAL)
        now = time.time()
        lines = [f'bybit_options_tracked{{coin="{c}"}} {n}' for c, n in tracked.items()]
        lines += [f'bybit_data_staleness_seconds{{coin="{c}"}} {now - t}' for c, t in newest.items()]
        lines += [f"bybit_ws_reconnects_total {stats.get(keys.F_RECONNECTS, 0)}"]
        return web.Response(text="\n".join(lines) + "\n")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def scrape_times(url: str, scrapes: int, budget: float) -> list[float]:
    """Sequential scrapes over one keep-alive connection, stopping early after ``budget`` s."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    times: list[float] = []
    deadline = time.perf_counter() + budget
    try:
        for _ in range(scrapes):
            started = time.perf_counter()
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
            times.append(time.perf_counter() - started)
            if resp.status != 200 or b"bybit_options_tracked" not in body:
                raise SystemExit(f"bad scrape from {url}: {resp.status} {body[:200]!r}")
            if time.perf_counter() > deadline:
                break
    finally:
        conn.close()
    return times






def seed(client: redis.Redis, options: int) -> None:
    client.flushall()
    layout = Layout(client)
    now = time.time()
    layout.healthy(now=now, coins=COINS, per_coin=0)
    per_coin = options // len(COINS)
    for i, coin in enumerate(COINS):
        count = per_coin + (options - per_coin * len(COINS) if i == 0 else 0)
        layout.options(make_symbols(coin, count, seed=100 + i), now=now)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_exporter")
    parser.add_argument("--scrapes", type=int, default=400, help="scrapes of the real exporter per size")
    parser.add_argument("--serve-naive", nargs=2, metavar=("PORT", "REDIS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive:
        web.run_app(naive_app(args.serve_naive[1]), host=LOOPBACK, port=int(args.serve_naive[0]),
                    access_log=None, print=None)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    server = RedisServer(workdir)
    server.start()
    procs: list[ManagedProcess] = []
    rows: list[tuple[int, str, list[float]]] = []
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        exporter, ours = start_http_server(lambda port: ([sys.executable, "-m", "exporter"], {
            "REDIS_URL": server.url, "EXPORTER_HOST": LOOPBACK, "EXPORTER_PORT": str(port),
            "BYBIT_COINS": ",".join(COINS), "LOG_FORMAT": "text"}), workdir / "exporter.log")
        procs.append(exporter)
        naive_proc, naive = start_http_server(lambda port: (
            [sys.executable, "-m", "bench.bench_exporter", "--serve-naive", str(port), server.url], {}),
            workdir / "naive.log")
        procs.append(naive_proc)
        for size in SIZES:
            seed(client, size)
            scrape_times(ours, 20, 10)  # warm up
            rows.append((size, "exporter", scrape_times(ours, args.scrapes, 30)))
            rows.append((size, "naive", scrape_times(naive, 30, 12)))
        rss = rss_mib(procs[0])
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
    print("scrape wall time seen by the client (one keep-alive connection, sequential scrapes), "
          "redis-server on loopback, 2-core host")
    print(f"{'options':>8} {'exporter':<9} {'scrapes':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for size, name, times in rows:
        print(f"{size:>8,} {name:<9} {len(times):>7} {pct(times, 0.5) * 1000:8.2f} "
              f"{pct(times, 0.99) * 1000:8.2f} {statistics.fmean(times) * 1000:8.2f}")
    for size in SIZES:
        ours_t = next(t for s, n, t in rows if s == size and n == "exporter")
        naive_t = next(t for s, n, t in rows if s == size and n == "naive")
        print(f"ratio naive/exporter at {size:,} options: p50 {pct(naive_t, 0.5) / pct(ours_t, 0.5):,.0f}x, "
              f"p99 {pct(naive_t, 0.99) / pct(ours_t, 0.99):,.0f}x")
    print(f"python -m exporter resident memory after the run: {rss:.1f} MiB")


if __name__ == "__main__":
    main()
