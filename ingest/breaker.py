"""A circuit breaker per connection (pure, injected clock).

After ``failures`` consecutive failures the breaker opens: no attempt is made for
``recovery`` seconds, however short the backoff says the next delay is. Then it is
half-open: exactly one probe may go; its success closes the breaker, its failure
opens it again for another ``recovery`` seconds. This is what keeps a worker from
hammering an exchange that refuses it (the seed's 100 % CPU reconnect loop).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures; opens, waits, probes."""

    def __init__(self, *, failures: int, recovery: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or recovery <= 0:
            raise ValueError("failures must be >= 1 and recovery > 0")
        self.threshold = failures
        self.recovery = recovery
        self._clock = clock
        self.consecutive_failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self._clock() - self._opened_at >= self.recovery:
            return State.HALF_OPEN
        return State.OPEN

    def wait_time(self) -> float:
        """Seconds until an attempt is allowed (0 when closed or half-open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.recovery - self._clock())

    def record_success(self) -> None:
        """A connection was established: close the breaker and forget past failures."""
        self.consecutive_failures = 0
        self._opened_at = None

    def record_failure(self) -> bool:
        """Count a failure; return True when this one opened (or re-opened) the breaker."""
        self.consecutive_failures += 1
        state = self.state
        tripped = state is State.CLOSED and self.consecutive_failures >= self.threshold
        if state is State.HALF_OPEN or tripped:
            self._opened_at = self._clock()
            return True
        return False
