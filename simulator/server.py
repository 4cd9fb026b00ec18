"""Run the simulator: one aiohttp server (REST, WebSocket, control API) and its two clocks.

The push loop moves the market every ``model_interval`` and pushes every ``push_interval`` (all
symbols at once, or spread evenly over the interval with ``--pacing spread``); the housekeeping
loop applies connection timers. Both run in one TaskGroup next to the server and
stop on SIGINT/SIGTERM, after which open WebSockets get a "going away" close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Final

from aiohttp import WSCloseCode, web

from simulator import control, rest, ws
from simulator.appkeys import EXCHANGE, SOCKETS
from simulator.exchange import Exchange
from simulator.settings import SPREAD_TICK, SimulatorOptions

log = logging.getLogger("simulator")

HOUSEKEEPING_INTERVAL: Final = 0.1
SHUTDOWN_TIMEOUT: Final = 2.0


def build_app(exchange: Exchange) -> web.Application:
    app = web.Application()
    app[EXCHANGE] = exchange
    app[SOCKETS] = set()
    app.on_shutdown.append(_going_away)
    app.add_routes(rest.routes() + ws.routes() + control.routes())
    return app


async def _going_away(app: web.Application) -> None:
    """On shutdown, close every WebSocket with 1001 (going away); cut those that do not finish in time.

    A client that has stopped reading never sees the close frame, so the closing handshakes run
    concurrently under one deadline and whatever is left is aborted.
    """
    registered = app[SOCKETS]
    sockets = list(registered)
    try:
        async with asyncio.timeout(SHUTDOWN_TIMEOUT), asyncio.TaskGroup() as tg:
            for websocket in sockets:
                tg.create_task(websocket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"))
    except TimeoutError:
        exchange = app[EXCHANGE]
        cut = sum(1 for conn in list(exchange.connections.values()) if conn.abort())
        log.info("cut connections that did not close in time", extra={"count": cut})


async def push_loop(exchange: Exchange) -> None:
    """Move the market and push tickers on a fixed schedule (late cycles are skipped, not bunched)."""
    loop = asyncio.get_running_loop()
    interval = exchange.options.push_interval
    model_interval = exchange.options.model_interval
    last_model = loop.time()
    next_push = last_model + interval
    while True:
        await asyncio.sleep(max(next_push - loop.time(), 0.0))
        now = loop.time()
        if now - last_model >= model_interval * 0.999:
            # Nominal, not measured, time: the walk is then a function of the seed and the step count.
            exchange.step_market(model_interval)
            last_model = now
        exchange.push_cycle()
        next_push += interval
        if next_push < loop.time():
            next_push = loop.time() + interval


async def spread_push_loop(exchange: Exchange) -> None:
    """Push each subscribed symbol once per ``push_interval``, the symbols spread evenly over it.

    Every ``SPREAD_TICK`` the symbols whose share of the interval has come are pushed, so at
    2,000 symbols and Bybit's 100 ms a slice holds about 40 frames and the aiohttp writer puts
    each on the socket with its own write: the many small reads of a real busy stream, not one
    burst per cycle. The market moves at the start of a cycle (every ``model_interval``); a cycle
    that falls more than a whole interval behind is skipped, not bunched.
    """
    loop = asyncio.get_running_loop()
    interval = exchange.options.push_interval
    model_interval = exchange.options.model_interval
    last_model = cycle_start = loop.time()
    while True:
        if cycle_start - last_model >= model_interval * 0.999:
            exchange.step_market(model_interval)
            last_model = cycle_start
        schedule = exchange.start_cycle()
        count, sent = len(schedule), 0
        while True:
            phase = (loop.time() - cycle_start) / interval
            due = count if phase >= 1.0 else int(count * phase)
            if due > sent:
                exchange.push_symbols(schedule[sent:due])
                sent = due
            if phase >= 1.0:
                break
            await asyncio.sleep(SPREAD_TICK)
        cycle_start += interval
        if cycle_start + interval < loop.time():
            cycle_start = loop.time()


async def housekeeping_loop(exchange: Exchange) -> None:
    while True:
        exchange.housekeeping()
        await asyncio.sleep(HOUSEKEEPING_INTERVAL)


async def serve(options: SimulatorOptions) -> None:
    """Serve until SIGINT or SIGTERM."""
    exchange = Exchange(options)
    app = build_app(exchange)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    counts = {coin: len(exchange.listed(coin)) for coin in options.coins}
    log.info("simulator listening", extra={"host": options.host, "port": options.port, "instruments": counts,
                                           "push_interval": options.push_interval,
                                           "pacing": options.pacing, "seed": options.seed,
                                           "faults": exchange.faults.as_dict()})
    try:
        async with asyncio.TaskGroup() as tg:
            pushing = spread_push_loop if options.pacing == "spread" else push_loop
            tasks = [tg.create_task(pushing(exchange)), tg.create_task(housekeeping_loop(exchange))]
            await stop.wait()
            log.info("simulator stopping")
            for task in tasks:
                task.cancel()
    finally:
        await runner.cleanup()
