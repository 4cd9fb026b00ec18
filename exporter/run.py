"""How the exporter listens: its port and where it counts requests the HTTP parser refused."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from common.config import Settings
from common.http_service import HttpService
from common.http_service import serve as serve_http
from exporter.server import ERRORS, build_app
from exporter.snapshot import MALFORMED_REQUEST


def _refused(app: web.Application) -> Callable[[], None]:
    errors = app[ERRORS]

    def count() -> None:
        errors[MALFORMED_REQUEST] += 1

    return count


def service(settings: Settings) -> HttpService:
    """The exporter as an HTTP service (see :mod:`common.http_service` for start and stop)."""
    return HttpService(
        name="exporter", host=settings.exporter_host, port=settings.exporter_port,
        build_app=lambda: build_app(settings), refused_counter=_refused,
        log_context={"coins": list(settings.coins)},
    )


def serve(settings: Settings) -> int:
    """Run the exporter until SIGTERM/SIGINT. Exit code: 0 after a clean stop, 1 when the port is taken."""
    return serve_http(service(settings))
