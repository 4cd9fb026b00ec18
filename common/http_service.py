"""Serve an aiohttp application until SIGTERM or SIGINT, then stop cleanly.

The exporter and the API run the same way: handlers for SIGTERM (what ``docker stop``
sends) and SIGINT set a stop event; the listener opens; on stop the runner stops
accepting, lets requests in flight finish and runs the application's cleanup hooks
(which close its Redis client). Requests too malformed for aiohttp's parser are logged
as one throttled line each and counted by the component (:mod:`common.http_log`). A port
that cannot be bound ends the process with exit code 1 and one log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from common.http_log import SERVER_LOGGER, MalformedRequestFilter

#: aiohttp's own default accept backlog.
DEFAULT_BACKLOG: Final = 128


@dataclass(frozen=True, slots=True)
class HttpService:
    """What differs between the HTTP components: where they listen and what they serve."""

    name: str  # logger name and first word of the "<name> listening" / "<name> stopping" lines
    host: str
    port: int
    build_app: Callable[[], web.Application]  # called inside the running loop
    #: Given the built application, the function that counts one request refused by the parser.
    refused_counter: Callable[[web.Application], Callable[[], None]]
    backlog: int = DEFAULT_BACKLOG
    #: Keyword arguments of aiohttp's request handler (e.g. ``max_line_size``).
    handler_args: Mapping[str, Any] = field(default_factory=dict)
    #: Extra fields of the "listening" log line (e.g. the configured coins).
    log_context: Mapping[str, Any] = field(default_factory=dict)


async def run(service: HttpService, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set; without one, until SIGTERM or SIGINT (the process's own run)."""
    log = logging.getLogger(service.name)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    app = service.build_app()
    quiet = MalformedRequestFilter(service.refused_counter(app))
    server_log = logging.getLogger(SERVER_LOGGER)
    server_log.addFilter(quiet)
    runner = web.AppRunner(app, access_log=None, **service.handler_args)
    await runner.setup()
    try:
        await web.TCPSite(runner, service.host, service.port, backlog=service.backlog).start()
        log.info(f"{service.name} listening",
                 extra={"host": service.host, "port": service.port, **service.log_context})
        await stop.wait()
        log.info(f"{service.name} stopping")
    finally:
        await runner.cleanup()
        server_log.removeFilter(quiet)


def serve(service: HttpService) -> int:
    """Exit code: 0 after a clean stop, 1 when the port cannot be bound."""
    try:
        asyncio.run(run(service))
    except OSError as exc:
        logging.getLogger(service.name).error(
            "cannot listen", extra={"host": service.host, "port": service.port, "error": str(exc)})
        return 1
    return 0
