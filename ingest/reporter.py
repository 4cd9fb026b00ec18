"""Every stats interval: stats hashes, heartbeat, lag histogram, and a look at Redis itself.

Writes this replica's own ``stats:replica:<name>``, ``stats:lag:<name>`` and heartbeat
``ingest:heartbeat:<name>`` (with its TTL, so it vanishes when the ingest dies), all as
absolute values, its score in ``ingest:replicas`` (how readers find the replicas), and
raises the shared ``last_update`` fields to its newest write (never lowers them). Each
replica (``INGEST_REPLICA``) writes only its own hashes: two replicas writing one hash of
absolute counters would overwrite each other's totals every second. The replica named
``main`` (the default, a single-node deployment) also writes the single-node keys
(``stats:global``, ``stats:coin:<COIN>``, ``stats:lag``, ``ingest:heartbeat``) exactly as
before replicas existed. Then reads
Redis' ``INFO``: a new ``run_id`` means Redis restarted behind our back (possibly
without a single failed command), so the writer rewrites everything; ``used_memory``
against the threshold switches the short TTL on or off (:mod:`ingest.pressure`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Final

from common import errors, keys
from common.config import retired_replicas
from common.logs import LogThrottle
from ingest import process_stats
from ingest.lag import LagHistogram
from ingest.pressure import MemoryPressure
from ingest.stats import ConnectionState, Counters, coin_fields, global_fields, heartbeat_fields
from ingest.store import RedisUnavailable, Store
from ingest.writer import Writer

log = logging.getLogger("ingest.reporter")


#: Seconds between two looks for names this ingest reported under with another INGEST_WORKERS.
RETIRE_EVERY: Final = 60.0
#: :meth:`Reporter._watch_shape` looks at an interval's tickers only when there were this many...
SHAPE_MIN_TICKERS: Final = 1000
#: ...and speaks when more than this share of them took the exact decoder.
SHAPE_MAX_EXACT_SHARE: Final = 0.5


def exact_share(tickers: int, exact: int) -> float | None:
    """The share of an interval's tickers decoded the exact way, when it is worth a warning (else None)."""
    if tickers < SHAPE_MIN_TICKERS or exact <= tickers * SHAPE_MAX_EXACT_SHARE:
        return None
    return exact / tickers


class Reporter:
    """Writes the ingest's health into Redis and watches Redis' identity and memory."""

    def __init__(self, *, store: Store, writer: Writer, counters: Counters, lag: LagHistogram,
                 pressure: MemoryPressure, connection_state: Callable[[], ConnectionState],
                 interval: float, heartbeat_ttl: float, replica: str = keys.DEFAULT_REPLICA,
                 retire: tuple[str, int] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.writer = writer
        self.counters = counters
        self.lag = lag
        self.pressure = pressure
        self.connection_state = connection_state
        self.interval = interval
        self.heartbeat_ttl = heartbeat_ttl
        self.replica = replica
        self.run_id: str | None = None
        self._throttle = LogThrottle(period=60.0, burst=2)
        self._wrote_heartbeat = False
        self._shape_mark = (counters.messages, counters.exact_tickers)
        #: (INGEST_REPLICA, INGEST_WORKERS) when this process tidies the names its ingest reported
        #: under with another worker count (the single process, or worker 0): :meth:`_retire`.
        self.retire = retire
        self._clock = clock
        self._next_retire = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.report()
            try:
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _check_replica_name(self) -> None:
        """Count and log another process writing this replica's heartbeat since our last write.

        Two replicas started with one ``INGEST_REPLICA`` write one heartbeat and one stats hash:
        they look like one replica, its counters jump between two totals, and the death of either
        goes unseen (no IngestReplicaDown). Nothing here can stop the other process; the error
        type ``replica_conflict`` makes it visible (``bybit_errors_total``, NewErrorType).
        """
        pid, started = await self.store.heartbeat_owner(self.replica)
        ours = (str(os.getpid()), repr(self.counters.started_at))
        if pid is None or (pid, started) == ours:
            return
        self.counters.error(errors.REPLICA_CONFLICT)
        allowed, suppressed = self._throttle.allow(errors.REPLICA_CONFLICT)
        if allowed:
            log.error("another process writes under this replica name: give each replica its own "
                      "INGEST_REPLICA", extra={"error_type": errors.REPLICA_CONFLICT, "replica": self.replica,
                                              "other_pid": pid, "other_started_at": started,
                                              "suppressed": suppressed})

    def _watch_shape(self) -> None:
        """Say so when most tickers stopped coming in Bybit's documented shape (once a minute at most).

        They are still validated and stored, by :func:`ingest.frames.decode`, but each then costs
        about twice the CPU (:mod:`ingest.canonical`): a change on Bybit's side (a new field, another
        key order) would otherwise show only as a CPU alert.
        """
        c = self.counters
        share = exact_share(c.messages - self._shape_mark[0], c.exact_tickers - self._shape_mark[1])
        self._shape_mark = (c.messages, c.exact_tickers)
        if share is None:
            return
        allowed, suppressed = self._throttle.allow("shape")
        if allowed:
            log.warning("most tickers are not in Bybit's documented shape: each takes the exact decoder, "
                        "at about twice the CPU (a new field or key order on Bybit's side?)",
                        extra={"exact_share": round(share, 3), "suppressed": suppressed})

    async def _retire(self) -> None:
        """Forget the names this ingest reported under before INGEST_WORKERS changed, once they are dead.

        Without it a lowered (or raised) worker count leaves the old names in ``ingest:replicas``,
        and IngestReplicaDown fires for them for a day. A name still heartbeating (the previous
        process in its stop grace) is kept until a later round. Every :data:`RETIRE_EVERY` s.
        """
        if self.retire is None or self._clock() < self._next_retire:
            return
        self._next_retire = self._clock() + RETIRE_EVERY
        candidates = retired_replicas(*self.retire, await self.store.replicas())
        forgotten, refused = await self.store.forget_replicas(candidates)
        if refused:
            self.counters.error(errors.REDIS_ERROR, len(refused))
            log.error("redis refused the tidying of former replica names", extra={
                "error_type": errors.REDIS_ERROR, "first": str(refused[0])[:200]})
        if forgotten:
            log.info("forgot the names this ingest reported under with another INGEST_WORKERS",
                     extra={"replicas": forgotten, "ingest_workers": self.retire[1]})

    async def report(self) -> bool:
        """One round: stats out, INFO in. False when Redis could not be reached."""
        self._watch_shape()
        try:
            counters, writer = self.counters, self.writer
            if self._wrote_heartbeat:
                await self._check_replica_name()
            now = time.time()
            refused = await self.store.write_stats(
                replica=self.replica, now=now, legacy=self.replica == keys.DEFAULT_REPLICA,
                global_doc=global_fields(counters, self.connection_state(), ttl=self.pressure.ttl,
                                         pressure=self.pressure.active, pending=writer.coalescer.pending),
                coin_docs={c: coin_fields(counters, c, writer.tracked(c)) for c in counters.coins},
                lag_doc=self.lag.fields(),
                heartbeat_doc=heartbeat_fields(now=now, pid=os.getpid(),
                                               rss_bytes=process_stats.rss_bytes(),
                                               cpu_seconds=process_stats.cpu_seconds(),
                                               started_at=self.counters.started_at),
                heartbeat_ttl=self.heartbeat_ttl)
            self._wrote_heartbeat = True
            await self._retire()
            info = await self.store.server_info()
        except RedisUnavailable as exc:
            # The writer counts the outage and owns the retry pace; only note it here.
            allowed, suppressed = self._throttle.allow("unavailable")
            if allowed:
                log.warning("stats not written: redis unavailable", extra={
                    "error_type": errors.REDIS_ERROR, "error": str(exc)[:300], "suppressed": suppressed})
            return False
        if refused:
            self.counters.error(errors.REDIS_ERROR, len(refused))
            log.error("redis refused stats writes", extra={
                "error_type": errors.REDIS_ERROR, "first": str(refused[0])[:200]})
        if self.run_id is not None and info.run_id != self.run_id:
            self.writer.resync("redis run_id changed (restart)")
        self.run_id = info.run_id
        if self.pressure.update(info.used_memory, info.maxmemory):
            log.warning("memory pressure changed", extra={
                "memory_pressure": self.pressure.active, "ttl_seconds": self.pressure.ttl,
                "used_memory": info.used_memory, "maxmemory": info.maxmemory})
            try:
                await self.writer.apply_ttl(self.pressure.ttl)
            except RedisUnavailable as exc:
                log.warning("TTL change not applied yet", extra={
                    "error_type": errors.REDIS_ERROR, "error": str(exc)[:300]})
                return False
        return True
