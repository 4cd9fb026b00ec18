"""A per-coin response cache with single-flight reads and stale-on-error.

Why: a coin's answer costs two Redis round trips and ~20 ms of parsing for 1,000 options;
a hundred clients polling every second must not multiply that by a hundred. So:

- **fresh** (younger than ``ttl``): served from memory (``hit``);
- **expired**: exactly one request (the leader) reads Redis (``miss``); every request for
  the same coin arriving meanwhile is served the previous answer when the previous read
  succeeded less than ``ttl + grace`` ago (a ``hit``, at most one read older than a fresh
  one), or else waits for the leader's result — one Redis read per coin per ``ttl``,
  however many clients;
- **Redis failing**: the previous answer is served while it is younger than
  ``stale_max`` (``stale``); after a failed read the next attempt waits ``ttl``, so an
  outage costs Redis one attempt per coin per ``ttl``, not one per request. With nothing
  recent enough, :class:`~api.store.RedisUnavailable` propagates (the route answers 503).

The leader reads inside its own request (no background task to own or leak); if it is
cancelled, its followers get the failure and retry on their next request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from api.store import CONNECTION, RedisUnavailable

T = TypeVar("T")

HIT: Final = "hit"
MISS: Final = "miss"
STALE: Final = "stale"
RESULTS: Final[tuple[str, ...]] = (HIT, MISS, STALE)


@dataclass(frozen=True, slots=True)
class Lookup(Generic[T]):
    """A cached value, how it was obtained, and its age (seconds since it was read)."""

    value: T
    result: str  # HIT, MISS or STALE
    age: float


@dataclass(slots=True)
class _Slot(Generic[T]):
    value: T | None = None
    read_at: float = 0.0  # clock() when ``value`` was read
    inflight: asyncio.Future[T] | None = None
    retry_at: float = 0.0  # no new read before this, after a failure
    error: RedisUnavailable | None = None


class SingleFlightCache(Generic[T]):
    """Values by key, read through ``load`` at most once per ``ttl`` per key."""

    def __init__(self, load: Callable[[str], Awaitable[T]], *, ttl: float, stale_max: float, grace: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``grace``: how long a read may take (the Redis timeout); see :meth:`get`."""
        self._load = load
        self.ttl = ttl
        self.grace = grace
        self.stale_max = stale_max
        self._clock = clock
        self._slots: dict[str, _Slot[T]] = {}

    async def get(self, key: str) -> Lookup[T]:
        slot = self._slots.setdefault(key, _Slot())
        now = self._clock()
        if slot.value is not None and now - slot.read_at < self.ttl:
            return Lookup(slot.value, HIT, now - slot.read_at)
        if slot.inflight is not None:
            if slot.value is not None and slot.error is None and now - slot.read_at < self.ttl + self.grace:
                return Lookup(slot.value, HIT, now - slot.read_at)  # a refresh is under way
            try:
                value = await asyncio.shield(slot.inflight)
            except RedisUnavailable as exc:
                return self._stale_or_raise(slot, exc)
            return Lookup(value, HIT, self._clock() - slot.read_at)
        if now < slot.retry_at and slot.error is not None:
            return self._stale_or_raise(slot, slot.error)
        return await self._lead(key, slot)

    async def _lead(self, key: str, slot: _Slot[T]) -> Lookup[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        slot.inflight = future
        try:
            value = await self._load(key)
        except RedisUnavailable as exc:
            slot.error = exc
            slot.retry_at = self._clock() + self.ttl
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            return self._stale_or_raise(slot, exc)
        except BaseException:
            # Cancelled (or a bug): release the followers; the next request reads again.
            future.set_exception(RedisUnavailable(CONNECTION, "the read was abandoned"))
            future.exception()
            raise
        finally:
            slot.inflight = None
        slot.value, slot.read_at, slot.error, slot.retry_at = value, self._clock(), None, 0.0
        future.set_result(value)
        return Lookup(value, MISS, 0.0)

    def _stale_or_raise(self, slot: _Slot[T], exc: RedisUnavailable) -> Lookup[T]:
        age = self._clock() - slot.read_at
        if slot.value is not None and age <= self.stale_max:
            return Lookup(slot.value, STALE, age)
        raise exc

    def peek(self, key: str) -> T | None:
        """The cached value of ``key`` whatever its age (for tests and diagnostics)."""
        slot = self._slots.get(key)
        return None if slot is None else slot.value
