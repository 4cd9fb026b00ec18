"""The API's error answers: one JSON shape for every failure, and the fixed error codes.

Every non-2xx answer is ``{"error": {"code": ..., "message": ...}}`` with a code from
:data:`CODES`, so clients branch on the code and people read the message. Messages never
echo more than a short, printable prefix of what the client sent.
"""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

NOT_FOUND: Final = "not_found"  # no such route
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
UNKNOWN_COIN: Final = "unknown_coin"
BAD_SYMBOL: Final = "bad_symbol"
UNKNOWN_SYMBOL: Final = "unknown_symbol"
BAD_PARAMETER: Final = "bad_parameter"
UNKNOWN_PARAMETER: Final = "unknown_parameter"
BAD_REQUEST: Final = "bad_request"
REDIS_UNAVAILABLE: Final = "redis_unavailable"
INTERNAL_ERROR: Final = "internal_error"

CODES: Final[tuple[str, ...]] = (
    NOT_FOUND, METHOD_NOT_ALLOWED, UNKNOWN_COIN, BAD_SYMBOL, UNKNOWN_SYMBOL, BAD_PARAMETER,
    UNKNOWN_PARAMETER, BAD_REQUEST, REDIS_UNAVAILABLE, INTERNAL_ERROR,
)

#: How much of a client's string a message may quote.
QUOTE_MAX: Final = 40


class ApiError(Exception):
    """An answer other than 2xx, raised by a handler and rendered by the error middleware."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def quote(value: str) -> str:
    """A client's string made safe and short for a message: ``'BTC'`` or ``'AAAA…' (10240 chars)``."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in value[:QUOTE_MAX])
    if len(value) > QUOTE_MAX:
        return f"{shown!r}… ({len(value)} chars)"
    return repr(shown)


def error_response(status: int, code: str, message: str, *,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
