"""A connection's outgoing frames: answers in order, tickers conflated per symbol.

Why conflate: option tickers are snapshots, so a newer frame for a symbol makes an unsent older
one worthless. Holding at most one unsent ticker per symbol bounds a slow client's backlog by
its subscription count; the push loop never waits for any client, and a slow client costs
memory bounded by what it subscribed to (plus one batch in flight), never an unbounded queue.
Answers (subscribe results, pongs, errors) are never conflated and go out ahead of tickers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator


class Outbox:
    """Frames waiting to be written to one connection."""

    def __init__(self) -> None:
        self._answers: deque[bytes] = deque()
        self._tickers: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self.conflated = 0  # unsent tickers replaced by a newer one

    def answer(self, frame: bytes) -> None:
        """Queue a reply frame (sent before any pending ticker)."""
        self._answers.append(frame)
        self._wake.set()

    def ticker(self, symbol: str, frame: bytes) -> None:
        """Queue ``symbol``'s newest ticker, replacing an unsent older one."""
        if symbol in self._tickers:
            self.conflated += 1
        self._tickers[symbol] = frame
        self._wake.set()

    def pending(self) -> int:
        return len(self._answers) + len(self._tickers)

    async def wait(self) -> None:
        """Return once something is queued."""
        while not self._answers and not self._tickers:
            self._wake.clear()
            await self._wake.wait()

    def drain(self) -> Iterator[tuple[bytes, bool]]:
        """Yield ``(frame, is_ticker)`` for everything queued now; answers queued meanwhile go first.

        The tickers of this batch are taken at once, so tickers queued while the batch is being
        written wait for the next batch (and may be conflated there).
        """
        batch = self._tickers
        self._tickers = {}
        for frame in batch.values():
            while self._answers:
                yield self._answers.popleft(), False
            yield frame, True
        while self._answers:
            yield self._answers.popleft(), False
