"""How the API listens: its port, its accept backlog, its parser limits, its error counter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aiohttp import web

from api.app import MAX_LINE_SIZE, build_app
from api.routes import CONTEXT
from common.config import Settings
from common.http_service import HttpService
from common.http_service import serve as serve_http

#: Connections the kernel queues before the API accepts them (capped by net.core.somaxconn).
#: aiohttp's default of 128 drops the SYNs of a burst of 1,000 clients, which then wait for
#: TCP's 1 s retransmission: the load drill's 10x round measured p99 1.05 s with it.
BACKLOG: Final = 1024


def _refused(app: web.Application) -> Callable[[], None]:
    return app[CONTEXT].metrics.errors.labels("malformed_request").inc


def service(settings: Settings) -> HttpService:
    """The API as an HTTP service (see :mod:`common.http_service` for start and stop)."""
    return HttpService(
        name="api", host=settings.api_host, port=settings.api_port,
        build_app=lambda: build_app(settings), refused_counter=_refused, backlog=BACKLOG,
        handler_args={"max_line_size": MAX_LINE_SIZE, "max_field_size": MAX_LINE_SIZE},
        log_context={"coins": list(settings.coins)},
    )


def serve(settings: Settings) -> int:
    """Run the API until SIGTERM/SIGINT. Exit code: 0 after a clean stop, 1 when the port is taken."""
    return serve_http(service(settings))
