"""A per-coin response cache with single-flight reads and stale-on-error.

Why: a coin's answer costs two Redis round trips and ~20 ms of parsing for 1,000 options;
a hundred clients polling every second must not multiply that by a hundred. So:

- **fresh** (younger than ``ttl``): served from memory (``hit``);
- **expired**: exactly one read of Redis starts. When the previous read succeeded less
  than ``ttl + grace`` ago, that read runs in the background (:mod:`api.refresher`) and
  every request meanwhile is served the previous answer (a ``hit``, at most one read older
  than a fresh one) — in steady traffic no request waits for Redis. Otherwise (first
  request, idle coin, after a failure) the request that noticed reads inline (``miss``)
  and the others for the same coin wait for its result. Either way: one Redis read per
  coin per ``ttl``, however many clients;
- **Redis failing**: the previous answer is served while it is younger than
  ``stale_max`` (``stale``); after a failed read the next attempt waits ``ttl``, so an
  outage costs Redis one attempt per coin per ``ttl``, not one per request. With nothing
  recent enough, :class:`~api.store.RedisUnavailable` propagates (the route answers 503).

An inline reader that is cancelled releases its waiters with a failure; they retry on
their next request. Background reads are tasks of the refresher's task group, never
free-floating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

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
        #: Runs a refresh in the background (``api.refresher.Refresher.spawn``); without one,
        #: or when it declines, the request that finds the value expired reads inline.
        self.spawn: Callable[[Coroutine[Any, Any, None]], bool] | None = None

    async def get(self, key: str) -> Lookup[T]:
        slot = self._slots.setdefault(key, _Slot())
        now = self._clock()
        age = now - slot.read_at
        if slot.value is not None and age < self.ttl:
            return Lookup(slot.value, HIT, age)
        # The previous value, when its read succeeded and a refresh is due or under way.
        recent = slot.value is not None and slot.error is None and age < self.ttl + self.grace
        if slot.inflight is not None:
            if recent and slot.value is not None:
                return Lookup(slot.value, HIT, age)
            try:
                value = await asyncio.shield(slot.inflight)
            except RedisUnavailable as exc:
                return self._stale_or_raise(slot, exc)
            return Lookup(value, HIT, self._clock() - slot.read_at)
        if now < slot.retry_at and slot.error is not None:
            return self._stale_or_raise(slot, slot.error)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        slot.inflight = future
        if recent and slot.value is not None and self.spawn is not None \
                and self.spawn(self._refresh(key, slot, future)):
            return Lookup(slot.value, HIT, age)
        try:
            value = await self._read(key, slot, future)
        except RedisUnavailable as exc:
            return self._stale_or_raise(slot, exc)
        return Lookup(value, MISS, 0.0)

    async def _read(self, key: str, slot: _Slot[T], future: asyncio.Future[T]) -> T:
        """Load ``key`` into ``slot``; resolves ``future`` for whoever waits on it."""
        try:
            value = await self._load(key)
        except RedisUnavailable as exc:
            slot.error = exc
            slot.retry_at = self._clock() + self.ttl
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        except BaseException:
            # Cancelled (or a bug): release the followers; the next request reads again.
            future.set_exception(RedisUnavailable(CONNECTION, "the read was abandoned"))
            future.exception()
            raise
        finally:
            slot.inflight = None
        slot.value, slot.read_at, slot.error, slot.retry_at = value, self._clock(), None, 0.0
        future.set_result(value)
        return value

    async def _refresh(self, key: str, slot: _Slot[T], future: asyncio.Future[T]) -> None:
        """A background read: a failure is recorded in the slot (the loader logged and counted it)."""
        with contextlib.suppress(RedisUnavailable):
            await self._read(key, slot, future)

    def _stale_or_raise(self, slot: _Slot[T], exc: RedisUnavailable) -> Lookup[T]:
        age = self._clock() - slot.read_at
        if slot.value is not None and age <= self.stale_max:
            return Lookup(slot.value, STALE, age)
        raise exc

    def peek(self, key: str) -> T | None:
        """The cached value of ``key`` whatever its age (for tests and diagnostics)."""
        slot = self._slots.get(key)
        return None if slot is None else slot.value
