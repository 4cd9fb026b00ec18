"""Rate-limit answers in each of the forms a Bybit client meets (sans-I/O).

- ``10006``: HTTP 200 with ``retCode 10006`` "Too many visits" and the ``X-Bapi-Limit*`` headers
  (Bybit's per-endpoint limit; the body as in the live capture ``rest_error_10006_issue.json``,
  whose ``retMsg`` has no "!" although the docs' fragment does);
- ``403``: HTTP 403 "access too frequent" (Bybit's IP limit; no JSON envelope);
- ``429``: HTTP 429 with ``Retry-After`` (what gateways and proxies send).
``cycle`` hands them out in that order, one per rate-limited call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import orjson

FORMS: Final = ("10006", "403", "429")
RATE_LIMIT_RET_CODE: Final = 10006
#: Bybit documents 600 requests per 5 s per IP for public market endpoints.
WINDOW_LIMIT: Final = 600
WINDOW_MS: Final = 5000


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """Status, headers and body of one HTTP answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def form_for(mode: str, index: int) -> str:
    """The form of the ``index``-th rate-limited call under ``mode``."""
    return FORMS[index % len(FORMS)] if mode == "cycle" else mode


def rate_limit_answer(form: str, *, now_ms: int) -> HttpAnswer:
    """The answer of ``form`` ("10006", "403" or "429") at ``now_ms``."""
    reset_ms = now_ms - now_ms % WINDOW_MS + WINDOW_MS
    if form == "10006":
        body = orjson.dumps({"retCode": RATE_LIMIT_RET_CODE, "retMsg": "Too many visits", "result": {},
                             "retExtInfo": {}, "time": now_ms})
        headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": str(WINDOW_LIMIT),
                   "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}
        return HttpAnswer(200, body, headers=headers)
    if form == "403":
        return HttpAnswer(403, b"403 Forbidden: access too frequent", content_type="text/plain")
    if form == "429":
        retry = max(1, (reset_ms - now_ms + 999) // 1000)
        return HttpAnswer(429, b"429 Too Many Requests", content_type="text/plain",
                          headers={"Retry-After": str(retry)})
    raise ValueError(f"unknown rate-limit form {form!r}")
