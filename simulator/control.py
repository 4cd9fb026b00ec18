"""The control API under ``/control/``: state, faults, drops, listings, truth (JSON in and out).

Not part of Bybit's API: it is how tests, benchmarks and chaos drills steer the simulator and
read what it actually sent. Bad input is HTTP 400 with ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from common.symbols import is_valid_coin
from simulator.appkeys import EXCHANGE
from simulator.exchange import Exchange
from simulator.faults import FaultError

log = logging.getLogger("simulator.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """A control call with a body or parameter the simulator cannot act on."""


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object")
    return doc


def _coin(exchange: Exchange, value: Any) -> str:
    if not is_valid_coin(value) or value not in exchange.options.coins:
        raise BadRequest(f"coin must be one of {list(exchange.options.coins)}, got {value!r}")
    return str(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise BadRequest(f"count must be an integer in [1, 100000], got {value!r}")
    return value


def _handled(handler: Callable[[web.Request, Exchange], Awaitable[Any]]) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        exchange = request.app[EXCHANGE]
        try:
            return _json(await handler(request, exchange))
        except (BadRequest, FaultError) as exc:
            log.info("control call refused", extra={"path": request.path, "error": str(exc)})
            return _json({"error": str(exc)}, status=400)
    return wrapped


async def state(request: web.Request, exchange: Exchange) -> Any:
    return exchange.state()


async def set_faults(request: web.Request, exchange: Exchange) -> Any:
    return exchange.set_faults(await _body(request)).as_dict()


async def clear_faults(request: web.Request, exchange: Exchange) -> Any:
    return exchange.clear_faults().as_dict()


async def drop(request: web.Request, exchange: Exchange) -> Any:
    return {"dropped": exchange.drop_all()}


async def list_new(request: web.Request, exchange: Exchange) -> Any:
    body = await _body(request)
    coin = _coin(exchange, body.get("coin"))
    return {"symbols": exchange.list_new(coin, _count(body.get("count", 1)))}


async def deliver(request: web.Request, exchange: Exchange) -> Any:
    body = await _body(request)
    symbols = body.get("symbols")
    if symbols is not None:
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise BadRequest("symbols must be a list of strings")
        return {"symbols": exchange.deliver(symbols=symbols)}
    coin = _coin(exchange, body.get("coin"))
    return {"symbols": exchange.deliver(coin=coin, count=_count(body.get("count", 1)))}


async def truth(request: web.Request, exchange: Exchange) -> Any:
    coin = request.query.get("coin")
    return {"symbols": exchange.truth(_coin(exchange, coin) if coin is not None else None)}


async def instruments(request: web.Request, exchange: Exchange) -> Any:
    """``coins``: the Trading and Delivering symbols (what a client should stream, the set tests
    compare stored data with); ``prelaunch``: listed by REST but not trading yet."""
    coins = exchange.options.coins
    return {"coins": {coin: [i.symbol for i in exchange.traded(coin)] for coin in coins},
            "prelaunch": {coin: [i.symbol for i in exchange.prelaunched(coin)] for coin in coins}}


def routes() -> list[web.RouteDef]:
    return [
        web.get("/control/state", _handled(state)),
        web.post("/control/faults", _handled(set_faults)),
        web.post("/control/faults/clear", _handled(clear_faults)),
        web.post("/control/drop", _handled(drop)),
        web.post("/control/list", _handled(list_new)),
        web.post("/control/deliver", _handled(deliver)),
        web.get("/control/truth", _handled(truth)),
        web.get("/control/instruments", _handled(instruments)),
    ]
