"""Run the API until SIGTERM or SIGINT, then stop accepting, finish, and close Redis."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from api.app import MAX_LINE_SIZE, build_app
from api.routes import CONTEXT
from common.config import Settings
from common.http_log import SERVER_LOGGER, MalformedRequestFilter

log = logging.getLogger("api")

#: Connections the kernel queues before the API accepts them (capped by net.core.somaxconn).
#: aiohttp's default of 128 drops the SYNs of a burst of 1,000 clients, which then wait for
#: TCP's 1 s retransmission: the load drill's 10x round measured p99 1.05 s with it.
BACKLOG = 1024


async def run(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (by default: until SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = build_app(settings)
    refused = app[CONTEXT].metrics.errors.labels("malformed_request")
    quiet = MalformedRequestFilter(refused.inc)
    server_log = logging.getLogger(SERVER_LOGGER)
    server_log.addFilter(quiet)
    runner = web.AppRunner(app, access_log=None, max_line_size=MAX_LINE_SIZE, max_field_size=MAX_LINE_SIZE)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api_host, settings.api_port, backlog=BACKLOG).start()
        log.info("api listening", extra={"host": settings.api_host, "port": settings.api_port,
                                         "coins": list(settings.coins)})
        await stop.wait()
        log.info("api stopping")
    finally:
        await runner.cleanup()
        server_log.removeFilter(quiet)


def serve(settings: Settings) -> int:
    """Exit code: 0 after a clean stop, 1 when the port cannot be bound."""
    try:
        asyncio.run(run(settings))
    except OSError as exc:
        log.error("cannot listen", extra={"host": settings.api_host, "port": settings.api_port,
                                          "error": str(exc)})
        return 1
    return 0
