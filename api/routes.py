"""The API's handlers. Each validates its input, reads through the cache and answers JSON.

Answers about options carry where they came from: ``X-Cache`` (``hit``, ``miss`` or
``stale``), ``Age`` (seconds since the data was read from Redis) and, when stale,
``Warning: 110 - "Response is Stale"``; the body says the same in ``cache``, ``stale``,
``as_of`` and ``staleness_seconds`` (now minus the newest ticker's arrival).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiohttp import web

from api import errors
from api.cache import STALE, Lookup
from api.context import ApiContext
from api.errors import ApiError
from api.records import CoinData, join
from api.store import RedisUnavailable
from api.streaming import json_parts, send_json
from api.validation import parse_coin, parse_coin_symbol, parse_filters

CONTEXT: Final = web.AppKey("context", ApiContext)
OPENAPI: Final = web.AppKey("openapi", bytes)

JSON: Final = "application/json"


def _t(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _provenance(found: Lookup[CoinData], now: float) -> tuple[dict[str, Any], dict[str, str]]:
    """Body fields and headers saying how old the data is and where it came from."""
    data = found.value
    newest = data.newest
    body: dict[str, Any] = {
        "generated_at": _t(now), "as_of": _t(data.fetched_at), "last_update": _t(newest),
        "staleness_seconds": _t(max(0.0, now - newest)) if newest is not None else None,
        "cache": found.result, "stale": found.result == STALE,
    }
    headers = {"X-Cache": found.result, "Age": str(int(found.age))}
    if found.result == STALE:
        headers["Warning"] = '110 - "Response is Stale"'
    return body, headers


def _gone(ctx: ApiContext) -> Callable[[], None]:
    return ctx.metrics.errors.labels("client_gone").inc


async def options(request: web.Request) -> web.StreamResponse:
    """``GET /api/options/{coin}``: the coin's options, filtered and paged."""
    ctx = request.app[CONTEXT]
    coin = parse_coin(request.match_info["coin"], ctx.settings.coins)
    filters = parse_filters(list(request.query.items()))
    found = await ctx.lookup(coin)
    data = found.value
    page, total = filters.select(data.options, data.by_expiry)
    # The whole list is shared by every request of the cache period: never joined again.
    whole = len(page) == len(data.options)
    page_json = data.all_json if whole else join(page)
    provenance, headers = _provenance(found, time.time())
    head = {"coin": coin, "count": len(page), "total": total, **provenance, "filters": filters.as_json()}
    return await send_json(request, json_parts(head, "options", page_json), headers=headers,
                           on_gone=_gone(ctx), deflated=(None, data.all_deflated if whole else None, None))


async def option(request: web.Request) -> web.StreamResponse:
    """``GET /api/options/{coin}/{symbol}``: one option."""
    ctx = request.app[CONTEXT]
    coin = parse_coin(request.match_info["coin"], ctx.settings.coins)
    parsed = parse_coin_symbol(request.match_info["symbol"], coin)
    if request.query:
        raise ApiError(400, errors.UNKNOWN_PARAMETER, "this route takes no query parameters")
    found = await ctx.lookup(coin)
    record = found.value.by_symbol.get(parsed.symbol)
    if record is None:
        raise ApiError(404, errors.UNKNOWN_SYMBOL, f"{parsed.symbol} is not tracked (not listed, or no "
                       "ticker received yet)")
    provenance, headers = _provenance(found, time.time())
    head = {"coin": coin, "symbol": parsed.symbol, **provenance}
    return await send_json(request, json_parts(head, "option", record.json), headers=headers,
                           on_gone=_gone(ctx))


async def coins(request: web.Request) -> web.Response:
    """``GET /api/coins``: each configured coin with its option count and freshness."""
    ctx = request.app[CONTEXT]
    if request.query:
        raise ApiError(400, errors.UNKNOWN_PARAMETER, "this route takes no query parameters")
    results = await asyncio.gather(*(ctx.lookup(c) for c in ctx.settings.coins), return_exceptions=True)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for coin, result in zip(ctx.settings.coins, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        provenance, _ = _provenance(result, now)
        del provenance["generated_at"]
        rows.append({"coin": coin, "count": len(result.value.options), **provenance})
    return web.Response(body=orjson.dumps({"generated_at": _t(now), "coins": rows}), content_type=JSON)


async def healthz(_request: web.Request) -> web.Response:
    """Alive: the process answers HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis answers and the ingest wrote within ``API_READY_MAX_STALENESS``."""
    ctx = request.app[CONTEXT]
    limit = ctx.settings.api_ready_max_staleness
    try:
        newest = await ctx.store.freshness(ctx.settings.coins)
    except RedisUnavailable as exc:
        ctx.metrics.errors.labels(exc.kind).inc()
        return _ready(False, f"redis unavailable ({exc.kind})", None, limit)
    if newest is None:
        return _ready(False, "no ticker has been written yet", None, limit)
    staleness = max(0.0, time.time() - newest)
    if staleness > limit:
        return _ready(False, f"newest data is {staleness:.0f} s old (limit {limit:g} s)", staleness, limit)
    return _ready(True, "ok", staleness, limit)


def _ready(ready: bool, reason: str, staleness: float | None, limit: float) -> web.Response:
    body = {"ready": ready, "reason": reason, "staleness_seconds": _t(staleness),
            "max_staleness_seconds": limit}
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the API's own metrics, in the format the scraper asks for."""
    body, content_type = request.app[CONTEXT].metrics.render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI 3 description of every route."""
    return web.Response(body=request.app[OPENAPI], content_type=JSON)
