"""Requests too malformed to reach the application: one throttled line each, not a traceback.

aiohttp's HTTP parser refuses such requests itself (400: request line over the limit, bad
header, not HTTP at all) and logs each with a full traceback on ``aiohttp.server`` at
ERROR. Those are the client's errors, not ours, and a client could fill the log with
them; this filter turns them into a WARNING line without traceback (the exception's class
name as ``error_type``), throttled, and counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

from common.logs import LogThrottle

SERVER_LOGGER: Final = "aiohttp.server"


class MalformedRequestFilter(logging.Filter):
    """Rewrites aiohttp's records about client-malformed requests; ``on_refused`` counts each."""

    def __init__(self, on_refused: Callable[[], None], *, throttle: LogThrottle | None = None) -> None:
        super().__init__()
        self._on_refused = on_refused
        self._throttle = throttle or LogThrottle(period=60.0, burst=3)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self._on_refused()
        kind = type(exc).__name__
        allowed, suppressed = self._throttle.allow(kind)
        if not allowed:
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "malformed request refused by the HTTP parser", ()
        record.exc_info, record.exc_text = None, None
        record.error_type = kind
        record.status = exc.code
        record.detail = str(exc.message)[:120]
        record.suppressed = suppressed
        return True
