"""The connection pool: one :class:`~ingest.connection.Connection` per shard of the plan.

The discovery loop hands it the instrument universe (coin -> symbols); the pool diffs
it against what it tracks, updates the :class:`~ingest.sharding.ShardPlan` and tells
only the affected connections what to subscribe or unsubscribe. New shards get new
connections; nothing existing reconnects. Connection tasks live in the pool's own
task group; on stop each closes its socket cleanly (code 1000), and whatever is still
waiting out a reconnect delay after ``grace`` seconds is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.config import Settings
from ingest.connection import Connection
from ingest.readhold import ReadHold
from ingest.sharding import ShardPlan, WorkerShare
from ingest.sink import TickerSink
from ingest.stats import ConnectionState, Counters

log = logging.getLogger("ingest.pool")


@dataclass(frozen=True, slots=True)
class Change:
    """What one universe update changed, by coin."""

    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


class Pool:
    """Shards symbols over connections and supervises them."""

    def __init__(self, *, settings: Settings, sink: TickerSink, counters: Counters,
                 stop: asyncio.Event, grace: float = 3.0, share: WorkerShare | None = None,
                 read_hold: ReadHold | None = None) -> None:
        self.settings = settings
        self.read_hold = read_hold
        #: With INGEST_WORKERS > 1, this process streams only the symbols its share owns.
        self.share = share
        self.sink = sink
        self.counters = counters
        self.stop = stop
        self.grace = grace
        self.plan = ShardPlan(max_topics=settings.max_topics_per_connection,
                              max_chars=settings.max_args_chars_per_connection)
        self.connections: list[Connection] = []
        self.coin_of: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None
        self.closed = asyncio.Event()

    def apply(self, universe: Mapping[str, set[str]]) -> Change:
        """Track exactly ``universe[coin]`` for each coin given (other coins stay as they are)."""
        change = Change()
        removed: list[str] = []
        added: list[str] = []
        for coin, listed in universe.items():
            current = {s for s, c in self.coin_of.items() if c == coin}
            if not listed and current:
                # Bybit never delists a whole coin's options at once; an empty answer is far
                # likelier a glitch than a fact, and acting on it would delete all the coin's data.
                log.warning("empty instrument list ignored", extra={"coin": coin, "tracked": len(current)})
                continue
            # After the empty-list guard, which judges Bybit's whole answer: a worker's share
            # of a coin with few instruments may be empty in earnest.
            share = self.share
            symbols = listed if share is None else {s for s in listed if share.owns(s)}
            gone = sorted(current - symbols)
            new = sorted(symbols - current)
            if gone:
                change.removed[coin] = gone
                removed += gone
            if new:
                change.added[coin] = new
                added += new
        for index, leaving in self.plan.remove(removed).items():
            self.connections[index].remove(leaving)
        for symbol in removed:
            del self.coin_of[symbol]
        for coin, joined in change.added.items():
            for symbol in joined:
                self.coin_of[symbol] = coin
        for index, joining in self.plan.add(added).items():
            while index >= len(self.connections):
                self._new_connection()
            self.connections[index].add(joining)
        # Each refresh gives topics that ran out of subscribe retries another chance.
        for conn in self.connections:
            if conn.subs.retry_parked():
                conn.wake()
        if not change.empty:
            log.info("instruments changed", extra={
                "added": {c: len(s) for c, s in change.added.items()},
                "removed": {c: len(s) for c, s in change.removed.items()},
                "tracked": len(self.coin_of), "connections": len(self.connections)})
        return change

    def _new_connection(self) -> None:
        conn = Connection(len(self.connections), settings=self.settings, sink=self.sink,
                          counters=self.counters, coin_of=self.coin_of, stop=self.stop,
                          read_hold=self.read_hold)
        self.connections.append(conn)
        if self._tg is not None:
            self._tasks.append(self._tg.create_task(conn.run(), name=conn.name))

    async def run(self) -> None:
        """Run every connection until the stop event; then close them all."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for conn in self.connections:
                    self._tasks.append(tg.create_task(conn.run(), name=conn.name))
                await self.stop.wait()
                closing = []
                for conn, task in zip(self.connections, self._tasks, strict=True):
                    if conn.has_socket:
                        conn.wake()  # it closes its socket with code 1000 and returns
                        closing.append(task)
                    else:
                        task.cancel()  # connecting or waiting out a delay: nothing to close
                if closing:
                    _done, pending = await asyncio.wait(closing, timeout=self.grace)
                    for task in pending:
                        task.cancel()
        finally:
            self._tg = None
            self.closed.set()

    def state(self) -> ConnectionState:
        """Connection figures for ``stats:global``."""
        return ConnectionState(
            desired=len(self.connections),
            connected=sum(1 for c in self.connections if c.open),
            consecutive_failures=max((c.policy.consecutive_failures for c in self.connections), default=0),
            circuit_open=sum(1 for c in self.connections if c.policy.circuit_open),
            subscriptions=sum(len(c.subs.confirmed) for c in self.connections),
        )
