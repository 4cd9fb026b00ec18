"""Which connection subscribes which symbol, within Bybit's per-connection limits (pure).

Bybit's public option stream accepts at most 2,000 args per connection and at most
21,000 characters of args in total (ws/connect, "args limits"). A topic is
``tickers.<SYMBOL>`` (~28-33 characters), so with today's symbols the character budget
binds first (~700 topics per connection); with short symbols the count would. The plan
fills shards first-fit and never moves a symbol that already has a shard: a refresh
that lists or delivers instruments changes only the shards it touches, so no other
connection resubscribes (and none reconnects).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ingest.frames import TOPIC_PREFIX

_MIN_COST = len(TOPIC_PREFIX) + 1


@dataclass(frozen=True, slots=True)
class WorkerShare:
    """The symbols one of ``count`` ingest worker processes streams (INGEST_WORKERS).

    A stable hash (CRC-32 of the symbol, not Python's salted ``hash``) so that every worker,
    whenever it started, agrees on the owner of every symbol without talking to the others:
    the shares are disjoint and together cover the whole universe, and a listing change moves
    no existing symbol between workers.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count} does not exist")

    def owns(self, symbol: str) -> bool:
        return zlib.crc32(symbol.encode()) % self.count == self.index


def topic_of(symbol: str) -> str:
    return TOPIC_PREFIX + symbol


def topic_chars(symbol: str) -> int:
    """Characters ``symbol``'s topic adds to a connection's args."""
    return len(TOPIC_PREFIX) + len(symbol)


@dataclass
class Shard:
    """The symbols of one connection and the characters their topics take."""

    symbols: set[str] = field(default_factory=set)
    chars: int = 0


class ShardPlan:
    """Stable assignment of symbols to connections (shard ``i`` is connection ``i``)."""

    def __init__(self, *, max_topics: int, max_chars: int) -> None:
        if max_topics < 1 or max_chars < 1:
            raise ValueError("limits must be >= 1")
        self.max_topics = max_topics
        self.max_chars = max_chars
        self.shards: list[Shard] = []
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.shards)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._where

    def shard_of(self, symbol: str) -> int | None:
        return self._where.get(symbol)

    def _fits(self, shard: Shard, cost: int) -> bool:
        return len(shard.symbols) < self.max_topics and shard.chars + cost <= self.max_chars

    def add(self, symbols: Iterable[str]) -> dict[int, list[str]]:
        """Place new symbols (sorted, first fit); returns shard index -> symbols added to it.

        Indexes ``>= len(self)`` before the call are new shards (new connections). A
        symbol whose topic alone exceeds the character budget cannot be subscribed on any
        connection and raises :class:`ValueError` (well-formed symbols are far shorter).
        """
        added: dict[int, list[str]] = {}
        first_open = 0  # shards before this one cannot take even the shortest topic
        for symbol in sorted(set(symbols) - self._where.keys()):
            cost = topic_chars(symbol)
            if cost > self.max_chars:
                raise ValueError(f"topic of {symbol!r} exceeds the per-connection character budget")
            while first_open < len(self.shards) and not self._fits(self.shards[first_open], _MIN_COST):
                first_open += 1
            index = next((i for i in range(first_open, len(self.shards))
                          if self._fits(self.shards[i], cost)), None)
            if index is None:
                self.shards.append(Shard())
                index = len(self.shards) - 1
            shard = self.shards[index]
            shard.symbols.add(symbol)
            shard.chars += cost
            self._where[symbol] = index
            added.setdefault(index, []).append(symbol)
        return added

    def remove(self, symbols: Iterable[str]) -> dict[int, list[str]]:
        """Forget symbols; returns shard index -> symbols removed from it (shards stay)."""
        removed: dict[int, list[str]] = {}
        for symbol in sorted(set(symbols)):
            index = self._where.pop(symbol, None)
            if index is None:
                continue
            shard = self.shards[index]
            shard.symbols.discard(symbol)
            shard.chars -= topic_chars(symbol)
            removed.setdefault(index, []).append(symbol)
        return removed
