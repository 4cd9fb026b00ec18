"""Load drill: the seed's load test and regression check against the API, then at 10x; exporter scrapes.

The seed's week-4 checks were "100 concurrent requests to /api/options/BTC all succeed" and
"100 sequential requests average < 0.5 s". This drill runs both against the real API
(``python -m api``, 1,000 BTC options in a real redis-server), then the same at ten times the
count (1,000 concurrent connections in one burst, 1,000 sequential requests), and times the
real exporter's scrape at 2,000 and 20,000 options. Clients ask for gzip as real ones do
(see bench/bench_api.py for the protocol and the plain-JSON comparison). A request that gets
no answer (refused, reset, timed out) counts as an error; any error, or a mean over 0.5 s in
a sequential run, fails the drill (exit 1).

    .venv/bin/python -m bench.drill_load [--factor 10] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import bench_exporter
from bench.bench_api import FAILURES, Results, burst, sequential
from bench.measure import pct, rss_mib, start_http_server
from bench.report import RELIABILITY, provenance, write_section
from common import keys
from tests.fixtures_readers import Layout, make_symbols
from tests.servers import LOOPBACK, ManagedProcess, RedisServer

#: The seed's limit on the mean of its sequential run.
SEQUENTIAL_MEAN_LIMIT = 0.5
SEED_COUNT = 100


@dataclass(frozen=True)
class Outcome:
    """One scenario's figures and whether it met its bar."""

    name: str
    requests: int
    errors: int
    times: list[float]
    bar: str
    passed: bool

    def row(self) -> str:
        t = self.times
        return (f"| {self.name} | {self.requests:,} | {self.errors} | {statistics.fmean(t) * 1000:.1f} | "
                f"{pct(t, 0.5) * 1000:.1f} | {pct(t, 0.95) * 1000:.1f} | {pct(t, 0.99) * 1000:.1f} | "
                f"{max(t) * 1000:.1f} | {self.bar} | {'pass' if self.passed else 'FAIL'} |")


def judge(name: str, results: Results, *, sequential_run: bool) -> Outcome:
    times = [t for t, _, _ in results]
    errors = sum(1 for _, status, _ in results if status != 200)
    if sequential_run:
        mean = statistics.fmean(times)
        return Outcome(name, len(results), errors, times, "no error, mean < 500 ms",
                       errors == 0 and mean < SEQUENTIAL_MEAN_LIMIT)
    return Outcome(name, len(results), errors, times, "every request succeeds", errors == 0)


async def api_load(url: str, factor: int) -> list[Outcome]:
    path = url + "/api/options/BTC"
    await sequential(path, 3)  # warm the cache and the interpreter
    plan: list[tuple[str, Callable[[], Awaitable[Results]], bool]] = []
    for count, label in ((SEED_COUNT, "seed"), (SEED_COUNT * factor, f"{factor}x")):
        plan.append((f"{label}: {count:,} concurrent", functools.partial(burst, path, count), False))
        plan.append((f"{label}: {count:,} sequential", functools.partial(sequential, path, count), True))
    outcomes = []
    for name, run, is_sequential in plan:
        started = time.perf_counter()
        outcomes.append(judge(name, await run(), sequential_run=is_sequential))
        print(f"  {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return outcomes


def exporter_scrapes(redis_server: RedisServer, workdir: Path, scrapes: int,
                     sizes: list[int]) -> list[tuple[int, list[float]]]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    exporter, url = start_http_server(lambda port: ([sys.executable, "-m", "exporter"], {
        "REDIS_URL": redis_server.url, "EXPORTER_HOST": LOOPBACK, "EXPORTER_PORT": str(port),
        "BYBIT_COINS": ",".join(bench_exporter.COINS), "LOG_FORMAT": "text"}), workdir / "exporter.log")
    try:
        out = []
        for size in sizes:
            bench_exporter.seed(client, size)
            bench_exporter.scrape_times(url, 20, 10)  # warm up
            out.append((size, bench_exporter.scrape_times(url, scrapes, 30)))
            print(f"  exporter at {size:,} options: {len(out[-1][1])} scrapes", flush=True)
        return out
    finally:
        exporter.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drill_load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--options", type=int, default=1000, help="BTC options in Redis (default 1000)")
    parser.add_argument("--factor", type=int, default=10, help="the second round is this many times the "
                        "seed's 100 requests (default 10)")
    parser.add_argument("--scrapes", type=int, default=300, help="exporter scrapes per size (default 300)")
    parser.add_argument("--exporter-sizes", type=lambda v: [int(x) for x in v.split(",")],
                        default=list(bench_exporter.SIZES), metavar="N,N",
                        help="options in Redis for the scrape rounds (default 2000,20000)")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"replace the Load section of {RELIABILITY} with this run's figures")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="drill-load-"))
    server = RedisServer(workdir)
    server.start()
    api: ManagedProcess | None = None
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        now = time.time()
        layout = Layout(client)
        layout.options(make_symbols("BTC", args.options, seed=11), now=now)
        layout.options(make_symbols("ETH", 50, seed=12) + make_symbols("SOL", 20, seed=13), now=now)
        layout.stats(**{keys.F_LAST_UPDATE: int(now)})
        api, url = start_http_server(lambda port: ([sys.executable, "-m", "api"], {
            "REDIS_URL": server.url, "API_HOST": LOOPBACK, "API_PORT": str(port), "LOG_FORMAT": "text"}),
            workdir / "api.log")
        print(f"API load with {args.options:,} BTC options ({workdir})", flush=True)
        outcomes = asyncio.run(api_load(url, args.factor))
        api_rss = rss_mib(api)
        api_alive = api.running
        api.stop()
        api = None
        scrapes = exporter_scrapes(server, workdir, args.scrapes, args.exporter_sizes)
    finally:
        if api is not None:
            api.stop()
        server.stop()
    lines = [
        f"`GET /api/options/BTC`, {args.options:,} BTC options (704 KiB plain, ~157 KiB gzipped), "
        "client asking for gzip, one process on the same host; times to the answer's last byte.",
        "",
        "| scenario | requests | errors | mean ms | p50 ms | p95 ms | p99 ms | max ms | bar | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(o.row() for o in outcomes),
        "",
        f"API process after the run: {'running' if api_alive else 'EXITED'}, RSS {api_rss:.0f} MiB. "
        f"Requests without an answer: {dict(FAILURES) or 'none'}.",
        "",
        "Exporter scrape (`python -m exporter`, sequential scrapes on one keep-alive connection):",
        "",
        "| options in Redis | scrapes | p50 ms | p95 ms | p99 ms | max ms | target |",
        "|---|---|---|---|---|---|---|",
        *(f"| {size:,} | {len(t)} | {pct(t, 0.5) * 1000:.2f} | {pct(t, 0.95) * 1000:.2f} | "
          f"{pct(t, 0.99) * 1000:.2f} | {max(t) * 1000:.2f} | {'<= 10 ms' if size <= 2000 else '<= 25 ms'} |"
          for size, t in scrapes),
    ]
    passed = all(o.passed for o in outcomes) and api_alive
    body = "\n".join([provenance(argv), "", *lines])
    print("\n" + body)
    print(f"\nload drill: {'PASS' if passed else 'FAIL'}")
    if args.write_docs:
        print(f"wrote {write_section('load', 'Load', body)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
