"""Background refreshes of the cache, owned by one task group for the application's lifetime.

Why: when a coin's cached answer expires, the request that notices it would otherwise wait
for Redis (~20 ms for 1,000 options) — one request per coin per TTL, which is exactly the
p99 at 100 requests/s. Instead that request is answered with the previous data (at most
one TTL plus one read old) and the read runs here.

Structured: every refresh is a task of one :class:`asyncio.TaskGroup`, itself run by one
owner task that the application starts on startup and awaits on cleanup; stopping waits
for refreshes in flight (each bounded by the Redis timeout), leaving on an error cancels
them. A refresh that raises what it should have handled is logged and counted, and never
takes the group down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

log = logging.getLogger("api.refresher")


class Refresher:
    """``async with Refresher(on_bug) as r: r.spawn(coroutine)``."""

    def __init__(self, on_bug: Callable[[], None]) -> None:
        self._on_bug = on_bug
        self._group: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Refresher:
        self._owner = asyncio.create_task(self._own(), name="api-refresher")
        await self._ready.wait()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._stop.set()
        if self._owner is None:
            return
        if exc_type is not None:
            # Leaving on an error or a cancellation: do not wait for reads in flight.
            self._owner.cancel()
            await asyncio.wait([self._owner])
        else:
            await self._owner

    async def _own(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._ready.set()
                await self._stop.wait()
                self._group = None  # no new refreshes while the group drains
        finally:
            self._group = None

    @property
    def running(self) -> bool:
        return self._group is not None

    def spawn(self, coroutine: Coroutine[Any, Any, object]) -> bool:
        """Run ``coroutine`` in the group; False (and the coroutine closed) once stopping."""
        if self._group is not None:
            try:
                self._group.create_task(self._guarded(coroutine))
            except RuntimeError:
                # The group is shutting down (its owner was cancelled): the caller reads inline.
                log.debug("refresh not started: refresher shutting down")
            else:
                return True
        coroutine.close()
        return False

    async def _guarded(self, coroutine: Coroutine[Any, Any, object]) -> None:
        try:
            await coroutine
        except Exception:
            self._on_bug()
            log.exception("background refresh failed unexpectedly", extra={"error_type": "internal"})
