"""What monotonic writes cost (INGEST_MONOTONIC_WRITES): the ingest's real writer, both ways, one run.

    .venv/bin/python -m bench.bench_monotonic [--symbols 2000] [--flushes 200] [--write-docs]

One real redis-server on loopback. The ingest's :class:`~ingest.writer.Writer` flushes every one
of ``--symbols`` real 25-field tickers (each one dirty, i.e. Bybit's maximum of a new ticker per
symbol per flush) ``--flushes`` times, first with plain ``HSET`` (the baseline; its ``EXPIRE`` goes
with a hash's first write and then once per renewal period, see :mod:`ingest.writer`), then
through the Redis Function that skips older tickers and renews the TTL with every write,
alternating rounds so drift in the machine affects both alike. Measured per mode: flush wall
time (p50), tickers written per second, Redis CPU per 1,000 tickers (``INFO cpu``) and the ingest
process' CPU per 1,000 tickers.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

import redis

from bench.report import provenance, write_section
from common import keys
from ingest import resp
from ingest.coalescer import Coalescer
from ingest.pressure import MemoryPressure
from ingest.stats import Counters
from ingest.store import Store, make_redis
from ingest.writer import Writer
from tests.bybit_corpus import load
from tests.servers import RedisServer

ROUNDS = 4


def tickers(n: int) -> list[tuple[str, dict[str, str]]]:
    """``n`` symbols with the fields of Bybit's documented option ticker."""
    data = load("ws_ticker_option_docs")["data"]
    out = []
    for i in range(n):
        symbol = f"BTC-27DEC30-{10000 + 100 * i}-{'C' if i % 2 else 'P'}"
        out.append((symbol, {**data, "symbol": symbol}))
    return out


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_mode(store: Store, client: redis.Redis, items: list[tuple[str, dict[str, str]]], *,
                   monotonic: bool, flushes: int, ts0: int) -> dict[str, float]:
    pressure = MemoryPressure(threshold_bytes=2**40, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)
    writer = Writer(store=store, coalescer=Coalescer(), counters=Counters(coins=("BTC",)),
                    pressure=pressure, flush_interval=0.1, retry_max=5.0, monotonic=monotonic)
    times: list[float] = []
    cpu_r0, cpu_p0 = redis_cpu(client), own_cpu()
    for f in range(flushes):
        ts = ts0 + f
        for symbol, data in items:  # rendering is the sink's job, done before the flush: not timed
            writer.coalescer.put(symbol, "BTC", ts, ts + 3,
                                 resp.hset_ticker(keys.option_key(symbol), data, ts, ts + 3))
        start = time.perf_counter()
        assert await writer.flush()
        times.append(time.perf_counter() - start)
    written = len(items) * flushes
    return {"p50_ms": statistics.median(times) * 1000, "per_s": written / sum(times),
            "redis_cpu_ms_per_1k": (redis_cpu(client) - cpu_r0) * 1e6 / written,
            "ingest_cpu_ms_per_1k": (own_cpu() - cpu_p0) * 1e6 / written,
            "errors": float(sum(writer.counters.errors.values()))}


async def main_async(args: argparse.Namespace) -> str:
    items = tickers(args.symbols)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            client = server.client()
            aio = make_redis(server.url, timeout=5.0)
            store = Store(aio, timeout=5.0)
            totals: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            ts0 = 1_800_000_000_000
            for round_ in range(ROUNDS):
                for monotonic in (False, True):
                    ts0 += args.flushes
                    totals[monotonic].append(await run_mode(
                        store, client, items, monotonic=monotonic, flushes=args.flushes // ROUNDS, ts0=ts0))
                print(f"round {round_ + 1}/{ROUNDS} done", flush=True)
            await aio.aclose()
        finally:
            server.stop()
    rows = []
    summary: dict[bool, dict[str, float]] = {}
    for monotonic in (False, True):
        runs = totals[monotonic]
        summary[monotonic] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    base, guarded = summary[False], summary[True]
    for name, key, fmt in (("flush of all symbols, p50 (ms)", "p50_ms", "{:.1f}"),
                           ("tickers written per second", "per_s", "{:,.0f}"),
                           ("Redis CPU per 1,000 tickers (ms)", "redis_cpu_ms_per_1k", "{:.2f}"),
                           ("ingest CPU per 1,000 tickers (ms)", "ingest_cpu_ms_per_1k", "{:.2f}")):
        ratio = guarded[key] / base[key] if base[key] else float("nan")
        rows.append(f"| {name} | {fmt.format(base[key])} | {fmt.format(guarded[key])} | {ratio:.2f}x |")
    return "\n".join([
        provenance(),
        "",
        f"{args.symbols:,} symbols, every one dirty in every flush (a new ticker per symbol per flush,",
        f"Bybit's maximum), {args.flushes} flushes per mode in {ROUNDS} alternating rounds;",
        "real redis-server.",
        f"Errors: baseline {base['errors']:.0f}, guarded {guarded['errors']:.0f}.",
        "",
        "| measure | HSET, EXPIRE per renewal (baseline) | monotonic FCALL | ratio |",
        "|---|---|---|---|",
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--flushes", type=int, default=200)
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/BENCHMARKS.md")
    args = parser.parse_args()
    body = asyncio.run(main_async(args))
    print(body)
    if args.write_docs:
        path = write_section("monotonic", "Monotonic writes (two ingest replicas)", body,
                             doc="docs/BENCHMARKS.md")
        print(f"written to {path}")


if __name__ == "__main__":
    main()
