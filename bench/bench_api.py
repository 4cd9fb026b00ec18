"""API latency under load: ``python -m api`` against a naive handler, same Redis, same run.

Seeds a throwaway redis-server on loopback with 1,000 BTC options (plus a few ETH/SOL),
starts the real API (``python -m api``, default 1 s cache) and a naive API (no cache: per
request ``SMEMBERS`` then one ``HGETALL`` round trip per option, ``json.dumps``) as
subprocesses, and drives both from this process with aiohttp:

- the seed's checks: a burst of 100 concurrent requests (all must succeed) and 100
  sequential requests (average must be < 0.5 s);
- 100 clients polling once a second each (open loop, ~100 requests/s): p50/p99;
- 100 clients back to back (closed loop): throughput and p50/p99, full answer and a
  filtered one (one expiry's calls).

Clients ask for gzip, as curl --compressed, requests, browsers and aiohttp do by default; the
time is to the answer's last byte on the wire, and the cost of decoding it (on the client's
CPU) is measured once and printed apart. The API's full-answer scenarios are repeated with
clients that accept plain JSON only. KiB is what crossed the wire per answer.

    .venv/bin/python -m bench.bench_api [--options 1000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import redis
from aiohttp import web

from bench.measure import pct, rss_mib, start_http_server
from common import keys
from tests.fixtures_readers import Layout, make_symbols
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    RedisServer,
)

CLIENTS = 100


# --- the naive baseline ---------------------------------------------------------------------

def naive_app(redis_url: str) -> web.Application:
    """What a first version would do: no cache, one round trip per option, json.dumps."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url, decode_responses=True)

    async def options(request: web.Request) -> web.Response:
        coin = request.match_info["coin"]
        out = []
        for symbol in sorted(map(str, await client.smembers(keys.coin_index_key(coin)))):
            fields = await client.hgetall(keys.option_key(symbol))
            if fields:
                out.append({"symbol": symbol, **fields})
        return web.Response(text=json.dumps({"coin": coin, "count": len(out), "options": out}),
                            content_type="application/json")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/api/options/{coin}", options)
    app.router.add_get("/healthz", healthz)
    return app


def serve_naive(port: int, redis_url: str) -> None:
    web.run_app(naive_app(redis_url), host=LOOPBACK, port=port, access_log=None, print=None)


# --- load -----------------------------------------------------------------------------------

#: What the client says it accepts: ``gzip`` is what curl --compressed, requests, browsers and
#: aiohttp send by default; ``identity`` is a client that takes plain JSON only.
ENCODINGS = ("gzip", "identity")


def session_for(encoding: str, limit: int = 100) -> aiohttp.ClientSession:
    """A client session asking for ``encoding``.

    gzip answers are read to their last byte but not decoded here: 100 real clients decode on
    their own 100 CPUs, while this one process would decode all of them on one core and
    measure itself (:func:`decode_cost` reports that cost per answer separately).
    """
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit),
                                 headers={"Accept-Encoding": encoding}, auto_decompress=False)


async def decode_cost(url: str, repeats: int = 20) -> tuple[float, float]:
    """(median seconds to gunzip one full answer on this CPU, compression ratio)."""
    async with session_for("gzip") as session, session.get(url) as resp:
        raw = await resp.read()
        assert resp.headers.get("Content-Encoding") == "gzip", "the API did not gzip the full answer"
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        plain = gzip.decompress(raw)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(plain) / len(raw)


#: Status recorded for a request that got no HTTP answer (refused, reset, timed out).
NO_ANSWER = 0
#: Requests that got no answer, by exception type, over the whole run.
FAILURES: Counter[str] = Counter()


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, int, int]:
    """(seconds to the answer's last byte, status, bytes on the wire); status 0 when none came.

    A failed request is a result to count, not a reason to abandon the run.
    """
    started = time.perf_counter()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            body = await resp.read()
            size = int(resp.headers.get("Content-Length", len(body)))
            return time.perf_counter() - started, resp.status, size
    except (aiohttp.ClientError, TimeoutError) as exc:
        FAILURES[type(exc).__name__] += 1
        return time.perf_counter() - started, NO_ANSWER, 0


async def burst(url: str, n: int, encoding: str = "gzip") -> list[tuple[float, int, int]]:
    async with session_for(encoding, n) as session:
        return list(await asyncio.gather(*(timed_get(session, url) for _ in range(n))))


async def sequential(url: str, n: int, encoding: str = "gzip") -> list[tuple[float, int, int]]:
    async with session_for(encoding) as session:
        return [await timed_get(session, url) for _ in range(n)]


async def open_loop(url: str, clients: int, seconds: float,
                    encoding: str = "gzip") -> list[tuple[float, int, int]]:
    """Each client asks once per second (staggered), whatever the answers' speed."""
    results: list[tuple[float, int, int]] = []
    async with session_for(encoding, clients) as session:
        async def client(offset: float) -> None:
            await asyncio.sleep(offset)
            deadline = time.perf_counter() + seconds
            next_at = time.perf_counter()
            while next_at < deadline:
                results.append(await timed_get(session, url))
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

        async with asyncio.TaskGroup() as group:
            for i in range(clients):
                group.create_task(client(i / clients))
    return results


async def closed_loop(url: str, clients: int, seconds: float,
                      encoding: str = "gzip") -> tuple[list[tuple[float, int, int]], float]:
    results: list[tuple[float, int, int]] = []
    async with session_for(encoding, clients) as session:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                results.append(await timed_get(session, url))

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(client())
        elapsed = time.perf_counter() - started
    return results, elapsed



Results = list[tuple[float, int, int]]  # (seconds, status, body bytes) per request


def row(name: str, server: str, results: Results, elapsed: float | None, rss: float | None) -> str:
    times = [t for t, _, _ in results]
    ok = sum(1 for _, s, _ in results if s == 200)
    size = statistics.fmean(n for _, _, n in results) / 1024
    rate = f"{len(results) / elapsed:9,.0f}" if elapsed else f"{'':>9}"
    memory = f"{rss:7.0f}" if rss is not None else f"{'-':>7}"
    return (f"{name:<34} {server:<6} {len(results):>6} {ok:>6} {size:7.0f} {rate} "
            f"{statistics.fmean(times) * 1000:9.1f} {pct(times, 0.5) * 1000:8.1f} "
            f"{pct(times, 0.99) * 1000:8.1f} {max(times) * 1000:8.1f} {memory}")


async def run(api_url: str, naive_url: str, *, seconds: float, naive_seconds: float, expiry: str,
              api_rss: Callable[[], float]) -> tuple[list[str], dict[str, dict[str, Results]]]:
    """Every scenario against both servers; the API's RSS after each of its phases."""
    lines = []
    full, filtered = "/api/options/BTC", f"/api/options/BTC?expiry={expiry}&type=C"
    measured: dict[str, dict[str, Results]] = {}
    decode, ratio = await decode_cost(api_url + full)
    lines.append(f"(a gzip answer: {ratio:.1f}x smaller than plain JSON; gunzip on the client "
                 f"{decode * 1000:.1f} ms on this CPU, not in the times below)")
    for server, base, length in (("api", api_url, seconds), ("naive", naive_url, naive_seconds)):
        def rss(server: str = server) -> float | None:
            return api_rss() if server == "api" else None

        await sequential(base + full, 3)  # warm connections and caches
        runs = measured[server] = {}
        runs["burst"] = await burst(base + full, CLIENTS)
        lines.append(row("seed: 100 concurrent (burst)", server, runs["burst"], None, rss()))
        runs["sequential"] = await sequential(base + full, 100)
        lines.append(row("seed: 100 sequential", server, runs["sequential"], None, rss()))
        runs["open"] = await open_loop(base + full, CLIENTS, length)
        lines.append(row("100 clients x 1 req/s, full", server, runs["open"], None, rss()))
        runs["closed"], elapsed = await closed_loop(base + full, CLIENTS, length)
        lines.append(row("100 clients back to back, full", server, runs["closed"], elapsed, rss()))
        if server == "api":
            results, elapsed = await closed_loop(base + filtered, CLIENTS, length)
            lines.append(row("100 clients back to back, filtered", server, results, elapsed, rss()))
            # The same load from clients that do not accept gzip: 700 KiB per answer on the wire.
            runs["burst_identity"] = await burst(base + full, CLIENTS, "identity")
            lines.append(row("seed: 100 concurrent, identity", server, runs["burst_identity"], None, rss()))
            runs["open_identity"] = await open_loop(base + full, CLIENTS, length, "identity")
            lines.append(row("100 clients x 1 req/s, identity", server, runs["open_identity"], None, rss()))
            runs["closed_identity"], elapsed = await closed_loop(base + full, CLIENTS, length, "identity")
            lines.append(row("100 back to back, full, identity", server, runs["closed_identity"], elapsed,
                             rss()))
    return lines, measured





def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api")
    parser.add_argument("--options", type=int, default=1000, help="BTC options in Redis")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load phase (api)")
    parser.add_argument("--naive-seconds", type=float, default=3.0, help="length of each load phase (naive)")
    parser.add_argument("--serve-naive", nargs=2, metavar=("PORT", "REDIS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive:
        serve_naive(int(args.serve_naive[0]), args.serve_naive[1])
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    server = RedisServer(workdir)
    server.start()
    procs: list[ManagedProcess] = []
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        layout = Layout(client)
        now = time.time()
        symbols = make_symbols("BTC", args.options, seed=11)
        layout.options(symbols, now=now)
        layout.options(make_symbols("ETH", 50, seed=12) + make_symbols("SOL", 20, seed=13), now=now)
        layout.stats(**{keys.F_LAST_UPDATE: int(now)})
        expiry = max(set(s.split("-")[1] for s in symbols), key=lambda e: sum(e in s for s in symbols))
        api, api_url = start_http_server(lambda port: ([sys.executable, "-m", "api"], {
            "REDIS_URL": server.url, "API_HOST": LOOPBACK, "API_PORT": str(port), "LOG_FORMAT": "text"}),
            workdir / "api.log")
        procs.append(api)
        naive, naive_url = start_http_server(lambda port: (
            [sys.executable, "-m", "bench.bench_api", "--serve-naive", str(port), server.url], {}),
            workdir / "naive.log")
        procs.append(naive)
        lines, measured = asyncio.run(run(api_url, naive_url, seconds=args.seconds,
                                          naive_seconds=args.naive_seconds, expiry=expiry,
                                          api_rss=lambda: rss_mib(api)))
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
    print(f"GET /api/options/BTC with {args.options} BTC options in Redis; API cache TTL 1 s; "
          f"client and servers on one 2-core host, loopback")
    print(f"{'scenario':<34} {'server':<6} {'reqs':>6} {'ok':>6} {'KiB':>7} {'req/s':>9} {'mean ms':>9} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'RSS MiB':>7}")
    for line in lines:
        print(line)
    print("ratio naive/api (same run):")
    for scenario, label in (("burst", "burst mean"), ("sequential", "sequential mean"),
                            ("open", "1 req/s p99"), ("closed", "back to back p99")):
        api_times = [t for t, _, _ in measured["api"][scenario]]
        naive_times = [t for t, _, _ in measured["naive"][scenario]]
        if scenario in ("burst", "sequential"):
            ratio = statistics.fmean(naive_times) / statistics.fmean(api_times)
        else:
            ratio = pct(naive_times, 0.99) / pct(api_times, 0.99)
        print(f"  {label:<18} {ratio:8.0f}x")
    seq = statistics.fmean(t for t, _, _ in measured["api"]["sequential"])
    ok = all(s == 200 for _, s, _ in measured["api"]["burst"])
    open_p99 = pct([t for t, _, _ in measured["api"]["open"]], 0.99)
    burst_p99 = pct([t for t, _, _ in measured["api"]["burst"]], 0.99)
    print(f"seed checks: 100 concurrent all ok: {ok}; 100 sequential mean {seq * 1000:.1f} ms (< 500 ms: "
          f"{seq < 0.5}); goal p99 <= 25 ms at 100 concurrent clients: "
          f"1 req/s each {open_p99 * 1000:.1f} ms, "
          f"one burst of 100 {burst_p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()

