"""Coalesced tickers into Redis: one pipelined batch every flush interval, through outages.

Each flush takes the dirty symbols from the :class:`~ingest.coalescer.Coalescer` and
writes, in one round trip: per symbol ``HSET option:{SYMBOL}`` (Bybit's fields as
received, plus ``ts`` and ``recv_ts``), one ``SADD`` per coin for symbols not yet in its
index, and the deletions of delivered symbols.

A hash's ``EXPIRE`` (the TTL in force) goes with its first write and then at most once per
:func:`renewal_period` (a tenth of the TTL, at most a minute), not with every write: ``HSET``
keeps a key's TTL, and at Bybit's maximum push rate renewing a 24 h TTL 15,000 times a second
doubled the commands Redis executes and the replies the ingest reads. So a hash vanishes between
0.9 x TTL and TTL after its last write. Every event that can leave a hash without its TTL sends it
again at once: a resync (a restarted or emptied Redis), a change of the TTL in force, a refused
write. A hash deleted behind the writer's back gets its TTL back at its next renewal.

With ``monotonic`` (``INGEST_MONOTONIC_WRITES``, for two ingest replicas on one Redis) each
ticker goes through the Redis Function of :data:`ingest.resp.LIBRARY` instead of HSET+EXPIRE:
Redis skips a ticker older than the one it holds, so replicas cannot undo each other's newer
writes. The library is (re)loaded before the first write and after every resync, since a
restarted Redis (or a freshly promoted one without it) may not have it.

When Redis is unreachable the batch goes back to the coalescer (which keeps only the
newest ticker per symbol, so memory stays bounded), the writer stops trying every
flush and probes Redis with a growing pause (up to ``redis_retry_max``). When Redis
answers again, everything held is written — all of it, not only what changed during
the outage, because a restarted Redis is empty: the indexes are rebuilt too, and the
stats reporter rewrites the stats hashes with absolute values at its next interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final

from common import errors, keys
from common.logs import LogThrottle
from ingest import resp
from ingest.coalescer import Coalescer, Entry
from ingest.pressure import MemoryPressure
from ingest.stats import Counters
from ingest.store import WRITE_SLICE, RedisUnavailable, Store

log = logging.getLogger("ingest.writer")

#: Commands per round trip when a whole state is written (resync, TTL change):
#: large enough to be fast, small enough that one batch never holds Redis for long.
BATCH_COMMANDS: Final = 4000
_FIRST_RETRY: Final = 0.1
#: How long a flush waits after releasing the held reads (one turn of the event loop would do).
_READ_SETTLE: Final = 0.001
#: Longest time between two ``EXPIRE`` of one hash (seconds), whatever the TTL.
RENEWAL_MAX: Final = 60.0
_DUE: Final = float("-inf")  # the renewal time of a symbol not renewed yet: due now


def renewal_period(ttl: int) -> float:
    """Seconds between two ``EXPIRE`` of one hash: a tenth of ``ttl``, at most :data:`RENEWAL_MAX`."""
    return min(RENEWAL_MAX, ttl / 10)


class Writer:
    """Owns what Redis should hold and gets it there."""

    def __init__(self, *, store: Store, coalescer: Coalescer, counters: Counters, pressure: MemoryPressure,
                 flush_interval: float, retry_max: float, monotonic: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 before_flush: Callable[[], None] | None = None) -> None:
        self.store = store
        #: Called before each timed flush: :meth:`ingest.readhold.ReadHold.release`, so every frame
        #: that arrived before the flush is read in time for it.
        self.before_flush = before_flush
        self.coalescer = coalescer
        self.counters = counters
        self.pressure = pressure
        self.flush_interval = flush_interval
        self.retry_max = retry_max
        self.monotonic = monotonic
        self._library_loaded = False
        self._clock = clock
        self.indexed: dict[str, set[str]] = {}  # coin -> symbols known to be in its index
        self._to_delete: dict[str, str] = {}  # delivered symbol -> coin, until Redis has it gone
        self.up = True
        self._retry_delay = _FIRST_RETRY
        self._next_try = 0.0
        self._throttle = LogThrottle(period=30.0, burst=3, clock=clock)
        #: Each symbol's rendered ``EXPIRE`` for :attr:`_expire_ttl`: the same bytes at every
        #: renewal until the TTL in force changes (memory pressure), so rendered once.
        self._expires: dict[str, bytes] = {}
        self._expire_ttl = 0
        #: symbol -> clock time its next ``EXPIRE`` is due; absent: due with its next write.
        self._renew_at: dict[str, float] = {}

    # --- what Redis should hold ---------------------------------------------------------------
    def forget(self, removed: Mapping[str, Iterable[str]]) -> None:
        """Delivered symbols (coin -> symbols): drop them here, delete them in Redis."""
        for coin, delivered in removed.items():
            symbols = list(delivered)
            self.coalescer.remove(symbols)
            index = self.indexed.get(coin)
            for symbol in symbols:
                self._expires.pop(symbol, None)
                self._renew_at.pop(symbol, None)
                if index is not None:
                    index.discard(symbol)
                self._to_delete[symbol] = coin

    def resync(self, reason: str) -> None:
        """Redis lost its data (restart): write the whole state again, indexes included."""
        self.coalescer.mark_all_dirty()
        self.indexed.clear()
        self._renew_at.clear()
        self._library_loaded = False
        log.warning("rewriting the whole state to Redis", extra={
            "reason": reason, "symbols": len(self.coalescer)})

    def tracked(self, coin: str) -> int:
        return len(self.indexed.get(coin, ()))

    # --- the loop -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``flush_interval`` until ``stop``; the final flush is :meth:`flush`'s caller's."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(self.flush_interval):
                    await stop.wait()
            except TimeoutError:
                pass
            if not stop.is_set():
                if self.before_flush is not None:
                    self.before_flush()
                    # The event loop handles ready sockets before due timers: the released reads
                    # all run before this sleep ends.
                    await asyncio.sleep(_READ_SETTLE)
                await self.flush()

    async def flush(self) -> bool:
        """Write what is pending; False when Redis is (still) unavailable."""
        if not self.up:
            if self._clock() < self._next_try:
                return False
            if not await self._probe():
                return False
        batch = self.coalescer.take()
        deletes = dict(self._to_delete)
        if not batch and not deletes:
            return True
        try:
            failed = await self._write(batch, deletes)
        except RedisUnavailable as exc:
            self.coalescer.restore(batch)
            self._outage(exc)
            return False
        for symbol in deletes:
            self._to_delete.pop(symbol, None)
        if failed:
            self.coalescer.restore(failed)
        return True

    async def _write(self, batch: list[tuple[str, Entry]],
                     deletes: Mapping[str, str]) -> list[tuple[str, Entry]]:
        """One round trip; returns the entries whose commands Redis refused."""
        ttl = self.pressure.ttl
        if self.monotonic and not self._library_loaded:
            await self.store.load_library(resp.LIBRARY)
            self._library_loaded = True
        head: list[bytes] = []
        if deletes:
            head.append(resp.command("DEL", *(keys.option_key(s) for s in deletes)))
            by_coin: dict[str, list[str]] = {}
            for symbol, coin in deletes.items():
                by_coin.setdefault(coin, []).append(symbol)
            head.extend(resp.command("SREM", keys.coin_index_key(c), *s) for c, s in by_coin.items())
        first_ticker = len(head)
        new_in_index: dict[str, list[str]] = {}
        if ttl != self._expire_ttl:
            self._expires.clear()
            self._renew_at.clear()
            self._expire_ttl = ttl
        now = self._clock()
        renewed: list[str] = []  # symbols whose EXPIRE goes in this flush, right after their HSET

        def slices() -> Iterator[list[bytes]]:
            """The flush's commands, rendered one slice at a time as the store sends them."""
            expires, renew_at, prefix, guarded, indexed = (
                self._expires, self._renew_at, keys.OPTION_PREFIX, resp.guarded, self.indexed)
            monotonic, size, due = self.monotonic, WRITE_SLICE, _DUE
            out = head
            for symbol, entry in batch:
                if monotonic:  # the Redis Function renews the TTL itself
                    out.append(guarded(entry.command, entry.ts, ttl))
                else:
                    out.append(entry.command)
                    if renew_at.get(symbol, due) <= now:
                        expire = expires.get(symbol)
                        if expire is None:
                            expire = expires[symbol] = resp.expire(prefix + symbol, ttl)
                        out.append(expire)
                        renewed.append(symbol)
                index = indexed.get(entry.coin)
                if index is None or symbol not in index:
                    new_in_index.setdefault(entry.coin, []).append(symbol)
                if len(out) >= size:
                    yield out
                    out = []
            out.extend(resp.sadd(keys.coin_index_key(c), s) for c, s in new_in_index.items())
            yield out

        results = await self.store.execute_slices(slices())

        refused = {i for i, r in enumerate(results) if r is not None}
        failed: list[tuple[str, Entry]] = []
        if refused:
            first = results[min(refused)]
            if self.monotonic and any("function not found" in str(results[i]).lower() for i in refused):
                self._library_loaded = False  # Redis lost it (flushed, restarted): load it again
            self.counters.error(errors.REDIS_ERROR, len(refused))
            allowed, suppressed = self._throttle.allow("refused")
            if allowed:
                log.error("redis refused commands", extra={
                    "error_type": errors.REDIS_ERROR, "count": len(refused), "first": str(first)[:200],
                    "suppressed": suppressed})
            failed = self._refused_entries(batch, refused, first_ticker, set(renewed))
        first_sadd = first_ticker + len(batch) + len(renewed)
        renew_at, next_renewal = self._renew_at, now + renewal_period(ttl)
        for symbol in renewed:
            renew_at[symbol] = next_renewal
        written_entries = batch
        if failed:
            # A refused write may have met a key of another type or none at all: whatever
            # Redis holds for these symbols gets its EXPIRE again with their next write.
            gone = {symbol for symbol, _entry in failed}
            for symbol in gone:
                renew_at.pop(symbol, None)
            written_entries = [(symbol, entry) for symbol, entry in batch if symbol not in gone]
        latest: dict[str, float] = {}
        for _symbol, entry in written_entries:
            if entry.recv_ms > latest.get(entry.coin, 0):
                latest[entry.coin] = entry.recv_ms
        for n, (coin, symbols) in enumerate(new_in_index.items()):
            if first_sadd + n not in refused:
                self.indexed.setdefault(coin, set()).update(symbols)
        for coin, recv_ms in latest.items():
            self.counters.written(coin, recv_ms / 1000.0)
        self.counters.redis_writes += len(written_entries)
        self.counters.redis_flushes += 1
        return failed

    @staticmethod
    def _refused_entries(batch: list[tuple[str, Entry]], refused: set[int], first_ticker: int,
                         renewed: set[str]) -> list[tuple[str, Entry]]:
        """The entries of ``batch`` with a refused command: an ``HSET`` (or ``FCALL``), or the
        ``EXPIRE`` that follows it for the symbols in ``renewed``."""
        failed = []
        i = first_ticker
        for symbol, entry in batch:
            width = 2 if symbol in renewed else 1
            if i in refused or i + width - 1 in refused:
                failed.append((symbol, entry))
            i += width
        return failed

    # --- outages --------------------------------------------------------------------------------
    def _outage(self, exc: BaseException) -> None:
        self.counters.error(errors.REDIS_ERROR)
        if self.up:
            log.error("redis unavailable; holding the latest state in memory", extra={
                "error_type": errors.REDIS_ERROR, "error": str(exc)[:300],
                "pending": self.coalescer.pending})
            self._retry_delay = _FIRST_RETRY
        else:
            self._retry_delay = min(self.retry_max, self._retry_delay * 2)
        self.up = False
        self._next_try = self._clock() + self._retry_delay

    async def _probe(self) -> bool:
        try:
            await self.store.ping()
        except RedisUnavailable as exc:
            self._outage(exc)
            return False
        self.up = True
        log.info("redis is back", extra={"pending": self.coalescer.pending})
        self.resync("redis reconnected")
        return True

    async def apply_ttl(self, ttl: int) -> None:
        """EXPIRE every known option hash with ``ttl`` (memory pressure began or ended).

        Pipelined over the symbols the ingest holds — never KEYS or SCAN, whose cost grows
        with everything else in Redis.
        """
        symbols = list(self.coalescer.latest)
        for start in range(0, len(symbols), BATCH_COMMANDS):
            chunk = symbols[start:start + BATCH_COMMANDS]
            await self.store.execute([resp.expire(keys.OPTION_PREFIX + s, ttl) for s in chunk])
        log.info("applied option TTL", extra={"ttl_seconds": ttl, "symbols": len(symbols)})
