"""Run the exporter until SIGTERM or SIGINT, then close the listener and Redis cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from common.config import Settings
from common.http_log import SERVER_LOGGER, MalformedRequestFilter
from exporter.server import ERRORS, build_app
from exporter.snapshot import MALFORMED_REQUEST

log = logging.getLogger("exporter")


async def run(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (by default: until SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = build_app(settings)
    errors = app[ERRORS]

    def refused() -> None:
        errors[MALFORMED_REQUEST] += 1

    # Client-malformed requests: one throttled line each instead of aiohttp's traceback.
    quiet = MalformedRequestFilter(refused)
    server_log = logging.getLogger(SERVER_LOGGER)
    server_log.addFilter(quiet)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.exporter_host, settings.exporter_port)
        await site.start()
        log.info("exporter listening", extra={
            "host": settings.exporter_host, "port": settings.exporter_port, "coins": list(settings.coins)})
        await stop.wait()
        log.info("exporter stopping")
    finally:
        await runner.cleanup()
        server_log.removeFilter(quiet)


def serve(settings: Settings) -> int:
    """Exit code: 0 after a clean stop, 1 when the port cannot be bound."""
    try:
        asyncio.run(run(settings))
    except OSError as exc:
        log.error("cannot listen", extra={
            "host": settings.exporter_host, "port": settings.exporter_port, "error": str(exc)})
        return 1
    return 0
