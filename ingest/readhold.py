"""Holding each connection's received bytes in the kernel until a batch of them is worth a read.

At Bybit's maximum push rate a connection gets a frame every ~150 µs, a TCP segment or two at a
time, and the event loop wakes for each: ``epoll_wait``, the transport's ``recv``, a bytes object,
the frame loop. Once the frames themselves are cheap (the C scanner), those wake-ups are the
largest part of the ingest's CPU (docs/BENCHMARKS.md, "What changed"). The kernel can keep a
socket's bytes until enough are queued: with ``SO_RCVLOWAT`` set, epoll reports the socket
readable only past that many bytes (Linux >= 4.18 also skips the wake-up itself).
:class:`ReadHold` sets that threshold as high as the kernel allows on each connection and drops it
to one byte (a *release*) every ``interval`` and just before each flush (the writer calls
:meth:`ReadHold.release`):

- every frame is still read before the flush that follows its arrival, so what Redis holds, and
  when, is what it was (the exchange-to-Redis lag and the age of the data do not change);
- a frame's arrival time (``recv_ts``, the exchange-lag histogram) is when it was read: at most
  ``interval`` (``INGEST_READ_HOLD``) after its bytes arrived;
- pongs, subscribe answers and close frames wait at most ``interval`` too; their timeouts are
  seconds. A closed connection (FIN, reset) is reported at once: the threshold holds data only.

After a released read the threshold goes up again only once the socket's queue is empty
(``FIONREAD``), so a stream faster than one read per release is read to its end, never stranded.
The kernel cuts a threshold above half of ``tcp_rmem``'s maximum to that, which is also the widest
window its receive-buffer autotuning reaches: holding does not narrow the TCP window.
"""

from __future__ import annotations

import asyncio
import logging

from common import errors
from ingest.stats import Counters
from ingest.wsread import TickerConnection

log = logging.getLogger("ingest.readhold")


class ReadHold:
    """The connections whose reads are held, released together every ``interval`` and on demand."""

    def __init__(self, *, interval: float, counters: Counters) -> None:
        self.interval = interval
        self.counters = counters
        self._held: dict[TickerConnection, str] = {}  # connection -> its name, for logs

    def hold(self, ws: TickerConnection, name: str) -> None:
        """Hold ``ws``'s reads from now on (nothing when holding is off or the socket is not TCP)."""
        if self.interval <= 0:
            return
        try:
            held = ws.hold_reads()
        except OSError as exc:  # setsockopt refused (a closed socket is not held: hold_reads checks)
            self._failed(name, "hold", exc)
            return
        if held:
            self._held[ws] = name

    def unhold(self, ws: TickerConnection) -> None:
        """``ws``'s session ended: forget it (its socket is closed or closing)."""
        self._held.pop(ws, None)

    def release(self) -> None:
        """Let every held connection read what its kernel queue holds now."""
        for ws, name in list(self._held.items()):
            try:
                ws.release_reads()
            except OSError as exc:
                self._held.pop(ws, None)
                self._failed(name, "release", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Release every ``interval`` until ``stop`` (nothing to do when holding is off)."""
        if self.interval <= 0:
            return
        while not stop.is_set():
            await asyncio.sleep(self.interval)
            self.release()

    def _failed(self, name: str, step: str, exc: OSError) -> None:
        self.counters.error(errors.OTHER)
        log.warning("read hold failed; the connection is no longer held", extra={
            "conn": name, "step": step, "error_type": errors.OTHER, "detail": repr(exc)[:200]})
