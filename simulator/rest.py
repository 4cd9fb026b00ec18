"""Bybit V5 market REST endpoints (thin aiohttp handlers over :class:`~simulator.exchange.Exchange`).

``/v5/market/time``, ``/v5/market/instruments-info`` and ``/v5/market/tickers`` with Bybit's
envelope ``{"retCode", "retMsg", "result", "retExtInfo", "time"}`` (keys in that order, as every
capture in ``tests/data/bybit/`` has them). A bad parameter is ``retCode 10001`` with HTTP 200, as
on Bybit. While the ``rest_rate_limit`` fault lasts, each call is answered with a rate limit
instead (see :mod:`simulator.ratelimit`).

Instrument items carry the keys of Bybit's documented option examples, in their order
(``rest_instruments_option_docs_2023.json`` and ``rest_instruments_option_usdt_docs.json``, which
adds ``displayName``). The docs' field table also names an integer ``symbolId`` for options, but no
example or capture shows where Bybit puts it, so it is not sent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import unquote

import orjson
from aiohttp import web

from common.symbols import is_valid_coin
from simulator.appkeys import EXCHANGE
from simulator.exchange import Exchange
from simulator.listings import STATUSES, Instrument
from simulator.paging import decode_cursor, encode_cursor
from simulator.ratelimit import HttpAnswer

PARAMS_ERROR: Final = 10001
DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 1000
DEFAULT_COIN: Final = "BTC"  # Bybit's default for instruments-info without baseCoin
DELIVERY_FEE_RATE: Final = "0.00015"  # every option capture shows this rate
MAX_PRICE: Final = "10000000"
_CATEGORIES: Final = ("spot", "linear", "inverse", "option")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ParamsError(ValueError):
    """A query parameter Bybit would refuse with retCode 10001."""


def envelope(result: dict[str, Any], *, now_ms: int, ret_code: int = 0, ret_msg: str = "OK") -> web.Response:
    body = orjson.dumps({"retCode": ret_code, "retMsg": ret_msg, "result": result, "retExtInfo": {},
                         "time": now_ms})
    return web.Response(body=body, content_type="application/json")


def http_answer(answer: HttpAnswer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type,
                        headers=answer.headers)


def _category(request: web.Request) -> None:
    category = request.query.get("category")
    if category is None or category == "":
        raise ParamsError("params error: category is required")
    if category not in _CATEGORIES:
        raise ParamsError(f"params error: category {category!r} is invalid")
    if category != "option":
        raise ParamsError("params error: only category=option is simulated")


def _coin(request: web.Request) -> str:
    coin = request.query.get("baseCoin") or DEFAULT_COIN
    if not is_valid_coin(coin):
        raise ParamsError("params error: baseCoin is invalid")
    return coin


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ParamsError(f"params error: limit must be an integer in [1, {MAX_LIMIT}]") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ParamsError(f"params error: limit must be an integer in [1, {MAX_LIMIT}]")
    return limit


def _status(request: web.Request) -> str | None:
    """The ``status`` filter: one of Bybit's statuses, or None (PreLaunch, Trading, Delivering)."""
    status = request.query.get("status")
    if status is None or status == "":
        return None
    if status not in STATUSES:
        raise ParamsError(f"params error: status must be one of {', '.join(STATUSES)}")
    return status


def raw_query_value(request: web.Request, name: str) -> str | None:
    """``name``'s value as the server reads it: from the raw query, percent-decoded exactly once.

    Spelled out rather than left to ``request.query`` because the cursor check depends on it: a
    client sending Bybit's cursor text ``1%2C...`` back unchanged puts ``%2C`` on the wire, which
    decodes to ``1,...``; one that encodes it again sends ``%252C``, which decodes to ``1%2C...``
    and is refused. (A literal ``,`` decodes to the same ``1,...`` and is accepted, as any server
    that decodes its query would.)
    """
    prefix = f"{name}="
    for part in request.rel_url.raw_query_string.split("&"):
        if part.startswith(prefix):
            return unquote(part[len(prefix):])
    return None


def _instrument_item(ins: Instrument, exchange: Exchange, now_ms: int) -> dict[str, Any]:
    spec = exchange.market.coins[ins.coin].spec
    return {
        "symbol": ins.symbol, "status": ins.status(now_ms), "baseCoin": ins.coin, "quoteCoin": ins.quote,
        "settleCoin": ins.settle, "optionsType": "Call" if ins.call else "Put",
        "launchTime": str(ins.launch_ms), "deliveryTime": str(ins.delivery_ms),
        "deliveryFeeRate": DELIVERY_FEE_RATE,
        "priceFilter": {"minPrice": ins.tick_size, "maxPrice": MAX_PRICE, "tickSize": ins.tick_size},
        "lotSizeFilter": {"maxOrderQty": spec.max_order_qty, "minOrderQty": spec.min_order_qty,
                          "qtyStep": spec.qty_step},
        "displayName": ins.display_name,
    }


def _guarded(handler: Callable[[web.Request, Exchange], web.Response]) -> Handler:
    """Count the call, answer a rate limit while that fault lasts, turn ParamsError into 10001."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        exchange = request.app[EXCHANGE]
        limited = exchange.rest_call()
        if limited is not None:
            return http_answer(limited)
        try:
            return handler(request, exchange)
        except ParamsError as exc:
            exchange.rest_refused(request.path, str(exc))
            return envelope({}, now_ms=exchange.now_ms(), ret_code=PARAMS_ERROR, ret_msg=str(exc))
    return wrapped


def server_time(request: web.Request, exchange: Exchange) -> web.Response:
    ns = time.time_ns()
    return envelope({"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}, now_ms=exchange.now_ms())


def instruments_info(request: web.Request, exchange: Exchange) -> web.Response:
    _category(request)
    coin = _coin(request)
    limit = _limit(request)
    status = _status(request)
    symbol = request.query.get("symbol") or None
    if symbol is not None and "baseCoin" not in request.query:
        coin = exchange.coin_of(symbol) or coin
    cursor = raw_query_value(request, "cursor") or None
    after = None
    if cursor is not None:
        after = decode_cursor(cursor, coin)
        if after is None:
            raise ParamsError("params error: cursor is invalid")
    items, next_key = exchange.instruments_page(coin, after, limit, symbol=symbol, status=status)
    now_ms = exchange.now_ms()
    style = exchange.faults.cursor_style
    next_cursor = "" if next_key is None else encode_cursor(coin, next_key, style=style)
    result = {
        "category": "option",
        "nextPageCursor": next_cursor,
        "list": [_instrument_item(ins, exchange, now_ms) for ins in items],
    }
    return envelope(result, now_ms=now_ms)


def tickers(request: web.Request, exchange: Exchange) -> web.Response:
    """Option tickers of one ``baseCoin`` or one ``symbol``: Bybit requires one of the two for options."""
    _category(request)
    symbol = request.query.get("symbol") or None
    if symbol is None and not request.query.get("baseCoin"):
        raise ParamsError("params error: symbol or baseCoin must be passed for category=option")
    coin = _coin(request)
    if symbol is not None and "baseCoin" not in request.query:
        coin = exchange.coin_of(symbol) or coin
    rows = exchange.tickers(coin, symbol=symbol, expiry=request.query.get("expDate") or None)
    return envelope({"category": "option", "list": rows}, now_ms=exchange.now_ms())


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v5/market/time", _guarded(server_time)),
        web.get("/v5/market/instruments-info", _guarded(instruments_info)),
        web.get("/v5/market/tickers", _guarded(tickers)),
    ]
