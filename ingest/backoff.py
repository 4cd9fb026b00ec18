"""Reconnect delays: the seed's exponential backoff with jitter (pure).

``delay = min(cap, base ** attempt)``, then ``delay += uniform(0.1, 0.3) * delay``. The
jitter spreads the reconnects of many connections (or many workers behind one IP) so
that a dropped exchange is not hit by a synchronised storm; Bybit counts new
connections per IP (500 per 5 minutes) and asks clients not to connect and disconnect
frequently. The random source is injected so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

JITTER: Final = (0.1, 0.3)
_MAX_EXPONENT: Final = 64  # 2**64 is past any sane cap; keeps the arithmetic small


class Backoff:
    """Delays for consecutive attempts; :meth:`reset` after a healthy period."""

    def __init__(self, *, cap: float, base: float = 2.0,
                 uniform: Callable[[float, float], float] = random.uniform) -> None:
        if cap <= 0 or base < 1:
            raise ValueError("cap must be > 0 and base >= 1")
        self.cap = cap
        self.base = base
        self._uniform = uniform
        self.attempt = 0

    def peek(self, attempt: int | None = None) -> float:
        """The delay (before jitter) of ``attempt`` (default: the next one)."""
        n = self.attempt if attempt is None else attempt
        return float(min(self.cap, self.base ** min(n, _MAX_EXPONENT)))

    def next_delay(self, *, at_cap: bool = False) -> float:
        """The delay before the next attempt, jitter included; counts the attempt.

        ``at_cap`` skips the exponential climb (used once the attempts are past the
        configured maximum: from then on every attempt waits the cap).
        """
        delay = self.cap if at_cap else self.peek()
        delay += self._uniform(*JITTER) * delay
        self.attempt += 1
        return delay

    def forgive(self, steps: int) -> None:
        """Take ``steps`` off the attempt count (a connection was healthy for a while)."""
        self.attempt = max(0, self.attempt - max(0, steps))

    def reset(self) -> None:
        """Start again from the first step (the connection proved healthy)."""
        self.attempt = 0
