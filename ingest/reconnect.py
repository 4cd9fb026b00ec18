"""The reconnect policy of one connection: backoff + circuit breaker + "never give up" (pure).

The WebSocket loop (:mod:`ingest.connection`) reports what happened — a connection was
established, a connect attempt failed, an established connection died — and asks
this object how long to wait. Policy and mechanism stay apart, as in the websockets
library (``process_exception`` decides, ``reconnect_delays`` paces): this object is
both answers, and it is testable with a fake clock and a fixed random source.

- Backoff: the seed's ``min(cap, 2**attempt)`` plus 10-30 % jitter. The attempt count
  starts again from zero once a connection has stayed up for ``reset_after`` seconds, and
  each quarter of that spent healthy takes one step off it: a connection that opens and
  dies every few seconds (a proxy that accepts and hangs up) backs off instead of
  spinning, while the seed's drops every 45-60 s keep the delay at the first steps. (The
  soak drill found that with a full reset only, each such drop doubled the delay up to
  the 300 s cap: minutes without data for that connection's symbols after every drop.)
- Delivered data bounds the wait: a connection that delivered tickers before it died proved
  that the exchange serves us; whatever killed it (pongs that never come back, a proxy's idle
  cut), its next attempt waits at most ``2 ** DELIVERED_MAX_STEP`` s (+ jitter). The chaos
  drill found that without this, a feed whose pongs are lost dies ~10 s after each connect,
  never counts as healthy, and backs off to the 300 s cap: ~10 s of data every 5 minutes.
  A connection that dies before any data still climbs to the cap; one that keeps dying
  after data reconnects at most every ~8-10 s, far under Bybit's 500 connections per 5
  minutes per IP.
- Breaker: ``failures`` consecutive failures without an established connection open it
  for ``recovery`` seconds; then one half-open probe.
- Never give up: past ``max_attempts`` the delay stays at the cap, and :attr:`stuck`
  says so (logged once, exported as the consecutive-failure count).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

from ingest.backoff import Backoff
from ingest.breaker import CircuitBreaker, State

#: Steps of the attempt count forgiven per ``reset_after`` of health (one per quarter of it).
DECAY_STEPS: Final = 4
#: After a connection that delivered data, the backoff resumes from at most this step (2**3 = 8 s).
DELIVERED_MAX_STEP: Final = 3


class ReconnectPolicy:
    """Decides the wait before each (re)connect attempt of one connection."""

    def __init__(self, *, cap: float, reset_after: float, max_attempts: int, circuit_failures: int,
                 circuit_recovery: float, clock: Callable[[], float] = time.monotonic,
                 uniform: Callable[[float, float], float] = random.uniform) -> None:
        self.backoff = Backoff(cap=cap, uniform=uniform)
        self.breaker = CircuitBreaker(failures=circuit_failures, recovery=circuit_recovery, clock=clock)
        self.reset_after = reset_after
        self.max_attempts = max_attempts
        self._clock = clock
        self._established_at: float | None = None
        self.established_count = 0
        self.failures_since_established = 0

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last established connection (0 while one is up)."""
        return self.failures_since_established

    @property
    def stuck(self) -> bool:
        """True once the attempts exceed ``max_attempts`` (it keeps trying at the cap)."""
        return self.backoff.attempt > self.max_attempts

    @property
    def circuit_open(self) -> bool:
        return self.breaker.state is State.OPEN

    def established(self) -> bool:
        """A connection is up and subscribed; returns True when it is a *re*-connection."""
        self._established_at = self._clock()
        self.established_count += 1
        self.failures_since_established = 0
        self.breaker.record_success()
        return self.established_count > 1

    def healthy_for(self) -> float:
        """Seconds the current connection has been up (0 when none is)."""
        return 0.0 if self._established_at is None else self._clock() - self._established_at

    def failed(self, *, delivered: bool = False) -> float:
        """A connect attempt failed or an established connection died: the wait before the next one.

        ``delivered``: the connection that died had delivered tickers. The wait is the larger
        of the backoff delay and the time until the breaker allows a probe.
        """
        if self._established_at is not None:
            healthy = self._clock() - self._established_at
            if healthy >= self.reset_after:
                self.backoff.reset()
            else:
                self.backoff.forgive(int(healthy * DECAY_STEPS / self.reset_after))
            if delivered:
                self.backoff.forgive(self.backoff.attempt - DELIVERED_MAX_STEP)
        self._established_at = None
        self.failures_since_established += 1
        self.breaker.record_failure()
        delay = self.backoff.next_delay(at_cap=self.backoff.attempt >= self.max_attempts)
        return max(delay, self.breaker.wait_time())
