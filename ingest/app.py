"""The ingest worker: wires discovery, connections, writer and reporter, and shuts down cleanly.

Tasks (one task group, every task owned):

- discovery: instruments over REST at start (retried) and on the refresh timer;
- the pool: one WebSocket connection per shard;
- the writer: coalesced tickers to Redis every flush interval, through outages;
- the reporter: stats, heartbeat, lag histogram, memory pressure, restart detection.

SIGTERM/SIGINT set the stop event: connections close with code 1000, the writer makes
a final flush and the reporter a final stats write, each bounded so the process exits
0 well within 5 seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Final

import aiohttp

from common.config import Settings, worker_replica
from common.redisconn import sentinel_target
from ingest.canonical import NATIVE_MISSING, scanner_in_use
from ingest.coalescer import Coalescer
from ingest.discovery import Discovery, InstrumentsClient
from ingest.lag import LagHistogram
from ingest.pool import Pool
from ingest.pressure import MemoryPressure
from ingest.ratelimit import RestRateLimiter
from ingest.readhold import ReadHold
from ingest.reporter import Reporter
from ingest.sharding import WorkerShare
from ingest.sink import TickerSink
from ingest.stats import Counters
from ingest.store import RedisUnavailable, Store, make_redis
from ingest.writer import Writer

log = logging.getLogger("ingest")

REDIS_TIMEOUT: Final = 2.0  # one Redis round trip; an outage is declared after this
CLOSE_GRACE: Final = 2.5  # sockets closing at shutdown
FINAL_WRITE_TIMEOUT: Final = 1.0  # final flush and final stats, each


#: The cyclic collector's thresholds for a process that makes a few short-lived objects per frame
#: at up to 20,000 frames/s: the youngest generation collected every 10,000 allocations instead of
#: 700, the oldest rarely. With :func:`tune_gc`'s freeze, measured at 10 pushes per symbol per
#: second on 2,000 symbols (20 s, load ~5 on 2 cores): time in the collector 2.3 % -> 0.2 % of the
#: wall clock, longest pause 193 ms (a full collection over every module and class) -> 7 ms.
GC_THRESHOLDS: Final = (10_000, 50, 100)


def tune_gc() -> None:
    """Freeze what start-up made (modules, classes, settings) out of the collector's scans; raise
    its thresholds. Full collections then visit only what the running ingest holds, so they no
    longer stall the event loop for a whole collection of the interpreter (issue 14)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def retiring(settings: Settings, share: WorkerShare | None) -> tuple[str, int] | None:
    """(INGEST_REPLICA, INGEST_WORKERS) for the one process of an ingest that tidies its former names.

    The single process, or worker 0 of several (whose replica name is ``<INGEST_REPLICA>-w0``).
    """
    if share is None:
        return settings.ingest_replica, 1
    if share.index != 0:
        return None
    return settings.ingest_replica.removesuffix(worker_replica("", 0)), share.count


async def main(settings: Settings, *, stop: asyncio.Event | None = None,
               share: WorkerShare | None = None) -> None:
    """Run until ``stop`` is set (by default: until SIGTERM or SIGINT).

    ``share``: this process is one of several ingest workers (INGEST_WORKERS, ingest.workers)
    and streams only the symbols the share owns.
    """
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    tune_gc()
    counters = Counters(coins=settings.coins)
    coalescer = Coalescer()
    lag = LagHistogram()
    pressure = MemoryPressure(threshold_bytes=settings.memory_pressure_bytes,
                              ratio=settings.memory_pressure_ratio, normal_ttl=settings.option_ttl,
                              pressure_ttl=settings.option_ttl_pressure)
    redis = make_redis(settings.redis_url, timeout=REDIS_TIMEOUT, sentinel=sentinel_target(settings))
    store = Store(redis, timeout=REDIS_TIMEOUT)
    read_hold = ReadHold(interval=settings.read_hold, counters=counters)
    writer = Writer(store=store, coalescer=coalescer, counters=counters, pressure=pressure,
                    flush_interval=settings.flush_interval, retry_max=settings.redis_retry_max,
                    monotonic=settings.monotonic_writes, before_flush=read_hold.release)
    sink = TickerSink(coalescer=coalescer, counters=counters, lag=lag)
    pool = Pool(settings=settings, sink=sink, counters=counters, stop=stop, grace=CLOSE_GRACE, share=share,
                read_hold=read_hold)
    reporter = Reporter(store=store, writer=writer, counters=counters, lag=lag, pressure=pressure,
                        connection_state=pool.state, interval=settings.stats_interval,
                        heartbeat_ttl=settings.heartbeat_ttl, replica=settings.ingest_replica,
                        retire=retiring(settings, share))

    def on_universe(universe: dict[str, set[str]]) -> None:
        change = pool.apply(universe)
        if change.removed:
            writer.forget(change.removed)

    limiter = RestRateLimiter(initial=settings.rest_backoff_initial, factor=settings.rest_backoff_factor,
                              maximum=settings.rest_backoff_max, ban_pause=settings.rest_ban_pause)
    log.info("starting", extra={"coins": list(settings.coins), "replica": settings.ingest_replica,
                                "worker": f"{share.index + 1}/{share.count}" if share else "1/1",
                                "ws_url": settings.ws_url,
                                "rest_url": settings.rest_url,
                                "scanner": scanner_in_use(settings.native_scan)})
    if settings.native_scan and NATIVE_MISSING is not None:
        log.warning("native scanner not built: the pure-Python fast path runs (same results, more CPU)",
                    extra={"reason": NATIVE_MISSING})
    try:
        async with aiohttp.ClientSession() as session:
            client = InstrumentsClient(session, base_url=settings.rest_url, limiter=limiter,
                                       counters=counters, page_limit=settings.rest_page_limit,
                                       timeout=settings.rest_timeout)
            discovery = Discovery(client, coins=settings.coins, refresh_interval=settings.refresh_interval,
                                  retry_cap=settings.rest_backoff_max, on_universe=on_universe,
                                  counters=counters)
            async with asyncio.TaskGroup() as tg:
                discovering = tg.create_task(discovery.run(), name="discovery")
                connections = tg.create_task(pool.run(), name="pool")
                writing = tg.create_task(writer.run(stop), name="writer")
                reporting = tg.create_task(reporter.run(stop), name="reporter")
                releasing = tg.create_task(read_hold.run(stop), name="read-hold")
                await stop.wait()
                log.info("stopping")
                discovering.cancel()
                await connections
                await writing
                reporting.cancel()
                releasing.cancel()
        await _final_writes(writer, reporter)
    finally:
        await redis.aclose()
    log.info("stopped", extra={"messages": counters.messages, "redis_writes": counters.redis_writes})


async def _final_writes(writer: Writer, reporter: Reporter) -> None:
    """Last flush and stats after the sockets closed; bounded, never blocking the exit."""
    for what, step in (("final flush", writer.flush), ("final stats", reporter.report)):
        try:
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
                ok = await step()
        except (TimeoutError, RedisUnavailable) as exc:
            log.warning(f"{what} not completed", extra={"error": repr(exc)})
            continue
        if not ok:
            log.warning(f"{what} not completed", extra={"pending": writer.coalescer.pending})

