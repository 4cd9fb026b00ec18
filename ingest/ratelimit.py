"""Adaptive pacing of REST calls, driven by Bybit's rate-limit answers (pure, injected clock).

The seed's rule: after a rate-limit answer pause ``initial`` seconds, multiply the pause
by ``factor`` for each further one, never beyond ``maximum``; each success relaxes the
pause by the same factor until it vanishes. On top of that the limiter honours what
Bybit says explicitly (v5/rate-limit):

- ``X-Bapi-Limit-Reset-Timestamp`` (ms) on a ``retCode 10006``/``10018`` answer, or on a
  success whose ``X-Bapi-Limit-Status`` (requests left in the window) is 0: no call
  before that instant (bounded by ``maximum``, so a bogus header cannot stall discovery);
- ``Retry-After`` (seconds) on HTTP 429, bounded the same way;
- HTTP 403 "access too frequent" means the IP is banned: Bybit asks clients to stop all
  HTTP traffic for at least 10 minutes, so the pause is ``ban_pause``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

#: Bybit's retCodes for "Too many visits" (endpoint limit) and the IP-level limit.
RATE_LIMIT_RET_CODES = frozenset({10006, 10018})


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class RestRateLimiter:
    """When the next REST call may go, given the answers of the previous ones."""

    def __init__(self, *, initial: float, factor: float, maximum: float, ban_pause: float,
                 clock: Callable[[], float] = time.time) -> None:
        if initial <= 0 or factor < 1 or maximum < initial or ban_pause <= 0:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, ban_pause > 0")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.ban_pause = ban_pause
        self._clock = clock  # wall clock: Bybit's reset timestamps are epoch ms
        self.pause = 0.0
        self._not_before = 0.0

    def wait_time(self) -> float:
        """Seconds to wait before the next call (0 when it may go now)."""
        return max(0.0, self._not_before - self._clock())

    def _hold_until(self, instant: float) -> None:
        now = self._clock()
        self._not_before = max(self._not_before, min(instant, now + self.maximum))

    def on_success(self, headers: Mapping[str, str] | None = None) -> None:
        """A call succeeded: relax the pause; respect an exhausted window announced in headers."""
        self.pause = self.pause / self.factor if self.pause / self.factor >= self.initial else 0.0
        if headers:
            remaining = _number(headers, "X-Bapi-Limit-Status")
            reset_ms = _number(headers, "X-Bapi-Limit-Reset-Timestamp")
            if remaining is not None and remaining <= 0 and reset_ms is not None:
                self._hold_until(reset_ms / 1000.0)

    def on_rate_limited(self, *, status: int, headers: Mapping[str, str] | None = None) -> float:
        """A rate-limit answer (retCode 10006/10018, HTTP 403 or 429): returns the wait now due."""
        now = self._clock()
        self.pause = self.initial if self.pause == 0 else min(self.maximum, self.pause * self.factor)
        self._not_before = max(self._not_before, now + self.pause)
        if status == 403:
            self._not_before = max(self._not_before, now + self.ban_pause)
        elif headers:
            reset_ms = _number(headers, "X-Bapi-Limit-Reset-Timestamp")
            if reset_ms is not None:
                self._hold_until(reset_ms / 1000.0)
            retry_after = _number(headers, "Retry-After")
            if retry_after is not None:
                self._hold_until(now + retry_after)
        return self.wait_time()
