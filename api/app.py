"""The API application: routes, middlewares (metrics outermost, then JSON errors), lifecycle.

Lifecycle: the cache's background refresher runs from startup to cleanup; Redis is closed
after the last refresh has finished.

Read-only: every route is GET (HEAD comes with it); any other method on a known path is a
405 JSON answer with ``Allow``, any unknown path a 404 JSON answer. An exception no
handler expected is logged with its traceback, counted (``bybit_api_errors_total{type=
"internal"}``) and answered 500 JSON — it is a bug, never a reaction to input.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import orjson
from aiohttp import web

from api import errors, routes, runbooks
from api.context import ApiContext
from api.errors import ApiError, error_response, quote
from api.metrics import ApiMetrics, metrics_middleware
from api.openapi import openapi_document
from api.refresher import Refresher
from api.store import Store, make_redis
from common.config import Settings
from common.redisconn import sentinel_target

log = logging.getLogger("api")

#: Request-line and header limits (aiohttp's default is 8,190 bytes): large enough that a
#: 10 kB hostile query reaches validation and gets a JSON 400, still bounded.
MAX_LINE_SIZE: Final = 16384

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def errors_middleware(ctx: ApiContext) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Turn every failure into the JSON error shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, headers=exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if isinstance(exc, web.HTTPMethodNotAllowed):
                allowed = ", ".join(sorted(exc.allowed_methods))
                return error_response(405, errors.METHOD_NOT_ALLOWED,
                                      f"method {quote(request.method)} not allowed; allowed: {allowed}",
                                      headers={"Allow": allowed})
            if exc.status == 404:
                return error_response(404, errors.NOT_FOUND, f"no route for {quote(request.path)}")
            return error_response(exc.status, errors.BAD_REQUEST, exc.reason)
        except Exception:
            ctx.metrics.errors.labels("internal").inc()
            log.exception("unhandled error", extra={"route": request.match_info.route.resource.canonical
                                                    if request.match_info.route.resource else None,
                                                    "error_type": "internal"})
            return error_response(500, errors.INTERNAL_ERROR, "internal error (logged)")

    return middleware


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def build_app(settings: Settings) -> web.Application:
    """The API application; its Redis client is closed on shutdown."""
    redis = make_redis(settings.redis_url, timeout=settings.api_redis_timeout,
                       sentinel=sentinel_target(settings, replica=settings.api_read_replicas))
    ctx = ApiContext(settings=settings, store=Store(redis, timeout=settings.api_redis_timeout),
                     metrics=ApiMetrics())
    app = web.Application(middlewares=[metrics_middleware(ctx.metrics), errors_middleware(ctx)])
    app[routes.CONTEXT] = ctx
    served_runbooks = runbooks.load_runbooks()
    app[runbooks.RUNBOOKS] = served_runbooks
    app[routes.OPENAPI] = orjson.dumps(openapi_document(settings, runbook_names=tuple(served_runbooks)))
    app.router.add_get("/api/options/{coin}", routes.options)
    app.router.add_get("/api/options/{coin}/{symbol}", routes.option)
    app.router.add_get("/api/coins", routes.coins)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/openapi.json", routes.openapi)
    app.router.add_get(runbooks.ROUTE, runbooks.runbook)
    app.on_response_prepare.append(_security_headers)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        """Background refreshes while serving; on shutdown, finish them, then close Redis."""
        async with Refresher(ctx.metrics.errors.labels("internal").inc) as refresher:
            ctx.cache.spawn = refresher.spawn
            try:
                yield
            finally:
                ctx.cache.spawn = None
        await redis.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app
