"""Latest ticker per symbol, and which ones Redis has not seen yet (pure).

Option tickers are snapshots: a newer one makes an older, unwritten one worthless. So
the ingest keeps exactly one entry per symbol — the newest — and a set of "dirty"
symbols changed since the last successful write. A flush writes each dirty symbol
once, however many frames arrived for it; while Redis is down, frames keep replacing
entries and nothing queues up. Memory is bounded by the number of tracked symbols,
never by the length of an outage.

The entries of every symbol stay after they are written: after a Redis restart (an
empty Redis), :meth:`mark_all_dirty` lets the next flush write the whole state again.

An entry arrives as the validated ticker dict and is rendered as its Redis command (one
~1 kB bytes object, see :mod:`ingest.resp`) only when a flush first asks for it: a frame
replaced before the next flush is never rendered (under a burst most are), and once written
the entry keeps the bytes instead of the dict of 25 strings (a third of the memory, nothing
for the allocator to fragment).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from common.keys import OPTION_PREFIX
from ingest.resp import hset_canonical, hset_ticker


class Entry:
    """A symbol's newest ticker and when it was made and received; :attr:`command` is its HSET."""

    __slots__ = ("_command", "_data", "_symbol", "coin", "recv_ms", "ts")

    # Positional on purpose: one is made per frame, and keyword arguments cost more.
    def __init__(self, coin: str, ts: int, recv_ms: int, command: bytes | None,  # noqa: PLR0917
                 data: Mapping[str, str] | bytes | None = None, symbol: str = "") -> None:
        self.coin = coin
        self.ts = ts  # exchange ms
        self.recv_ms = recv_ms  # arrival ms
        self._command = command
        self._data = data
        self._symbol = symbol

    @property
    def command(self) -> bytes:
        """``HSET option:{SYMBOL} ...``, rendered on first use (then the ticker is dropped).

        From a validated dict, or from the ``data`` bytes of a frame of Bybit's own shape
        (:mod:`ingest.canonical`); the same bytes either way.
        """
        command = self._command
        if command is None:
            data = self._data
            assert data is not None
            key = OPTION_PREFIX + self._symbol
            if isinstance(data, bytes):
                command = hset_canonical(key.encode(), data, self.ts, self.recv_ms)
            else:
                command = hset_ticker(key, data, self.ts, self.recv_ms)
            self._command = command
            self._data = None
        return command

    def __repr__(self) -> str:
        return f"Entry(coin={self.coin!r}, ts={self.ts}, recv_ms={self.recv_ms})"


class Coalescer:
    """symbol -> newest :class:`Entry`, plus the dirty set."""

    def __init__(self) -> None:
        self.latest: dict[str, Entry] = {}
        self._dirty: dict[str, None] = {}
        self.stale_dropped = 0  # frames older than the entry they would replace

    def __len__(self) -> int:
        return len(self.latest)

    @property
    def pending(self) -> int:
        """Symbols changed since their last successful write."""
        return len(self._dirty)

    def is_stale(self, symbol: str, ts: int) -> bool:
        """True when a newer ticker (by exchange ``ts``) than ``ts`` is already held."""
        current = self.latest.get(symbol)
        return current is not None and ts < current.ts

    def put(self, symbol: str, coin: str, ts: int, recv_ms: int, command: bytes) -> bool:
        """Keep this rendered ticker unless a newer one (by exchange ``ts``) is already held."""
        current = self.latest.get(symbol)
        if current is not None and ts < current.ts:
            self.stale_dropped += 1
            return False
        self.latest[symbol] = Entry(coin, ts, recv_ms, command)
        self._dirty[symbol] = None
        return True

    def put_ticker(self, symbol: str, coin: str, ts: int, recv_ms: int,
                   data: Mapping[str, str] | bytes) -> bool:
        """Keep this validated ticker (rendered at its flush) unless a newer one is already held.

        ``data``: the validated dict, or the ``data`` object's bytes of a frame that matched
        :data:`ingest.canonical.CANONICAL`. The per-frame path: one dict lookup, one small
        object, two dict stores.
        """
        current = self.latest.get(symbol)
        if current is not None and ts < current.ts:
            self.stale_dropped += 1
            return False
        self.latest[symbol] = Entry(coin, ts, recv_ms, None, data, symbol)
        self._dirty[symbol] = None
        return True

    def take(self) -> list[tuple[str, Entry]]:
        """The dirty entries, now clean; give them back with :meth:`restore` if the write fails."""
        if not self._dirty:
            return []
        latest = self.latest
        batch = [(symbol, latest[symbol]) for symbol in self._dirty]
        self._dirty = {}
        return batch

    def restore(self, batch: Iterable[tuple[str, Entry]]) -> None:
        """A write failed: mark its symbols dirty again (newer entries stay newer)."""
        for symbol, _entry in batch:
            if symbol in self.latest:
                self._dirty[symbol] = None

    def mark_all_dirty(self) -> None:
        """Redis lost its data (restart): everything must be written again."""
        self._dirty = dict.fromkeys(self.latest)

    def remove(self, symbols: Iterable[str]) -> None:
        """Forget delivered symbols."""
        for symbol in symbols:
            self.latest.pop(symbol, None)
            self._dirty.pop(symbol, None)
