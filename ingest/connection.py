"""One WebSocket connection to Bybit's public option stream, kept alive for good.

The reconnect loop is the websockets library's own (``async for ws in connect(...)``);
the policy it consults is ours (:class:`~ingest.reconnect.ReconnectPolicy`):
``process_exception`` counts and logs a failed connect and never declares it fatal,
``reconnect_delays`` yields the policy's next delay (seed backoff, circuit breaker). A
socket that opened and later died goes through the same policy before the loop opens
the next one, so a connection that keeps dying backs off instead of spinning.

While a socket lives, two tasks share it:

- the reader validates every message, a frame of Bybit's own shape in one pass (the C scanner,
  or one pattern match: :mod:`ingest.canonical`), any other by :func:`ingest.frames.decode`,
  and hands tickers to the sink; answers and pongs update the connection's state; bad frames are counted by
  type and logged through a throttle. Complete (unfragmented) data frames do not wait for
  the reader task: :class:`~ingest.wsread.TickerConnection` reads them straight from each
  socket read in websockets' ``data_received`` and hands each one over at once, so a busy stream
  costs no parser generator, future, queue or task wake-up per message. The loop
  is free again after each socket read (at most 256 kB, a few milliseconds of frames), so the
  writer and the keeper never starve. Everything else (a fragmented message, frames before
  the handler is attached) still goes through websockets' queue to ``recv()``, and the
  reader task is what sees the socket close;
- the keeper sends the subscribe/unsubscribe requests of :class:`~ingest.subscriptions.Subscriptions`
  (``subscribe_delay`` apart), Bybit's application ping every ``ping_interval``, and
  declares the socket dead when no pong came within ``ping_timeout`` or no ticker within
  ``data_timeout`` (a silent stream whose pongs still flow).

The library's protocol-level ping runs too (same interval): it catches a dead TCP path
even when Bybit's application ping is not answered for other reasons. A drop here never
touches the other connections: each one resubscribes only its own shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import Final, cast

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common import errors
from common.config import Settings
from common.logs import LogThrottle
from ingest import frames
from ingest.canonical import CANONICAL, native_scan
from ingest.frames import Ticker
from ingest.readhold import ReadHold
from ingest.reconnect import ReconnectPolicy
from ingest.sink import TickerSink
from ingest.stats import Counters
from ingest.subscriptions import Result, Subscriptions
from ingest.wsread import TickerConnection

log = logging.getLogger("ingest.connection")

MESSAGE_TOO_BIG: Final = 1009  # close code websockets sends when a frame exceeds max_size
_CLOSE_TIMEOUT: Final = 2.0
_TICK: Final = 1.0  # the keeper's longest sleep when nothing is due
#: Parked topics are retried this many times per refresh interval at first (then less often).
PARKED_RETRIES_PER_REFRESH: Final = 5


class DeadConnection(Exception):
    """The keeper gave up on a socket (no pong, or no data); ``error_type`` says which."""

    def __init__(self, error_type: str, detail: str) -> None:
        super().__init__(f"{error_type}: {detail}")
        self.error_type = error_type


class Connection:
    """One shard's connection: subscriptions, keepalive, reconnects."""

    def __init__(self, index: int, *, settings: Settings, sink: TickerSink, counters: Counters,
                 coin_of: Mapping[str, str], stop: asyncio.Event,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, read_hold: ReadHold | None = None) -> None:
        self.index = index
        self.read_hold = read_hold  # holds this connection's reads between releases (INGEST_READ_HOLD)
        self.name = f"ws{index}"
        self.settings = settings
        self.sink = sink
        self.counters = counters
        self.coin_of = coin_of
        self.stop = stop
        self._clock = clock
        self._wall = wall  # epoch seconds: each frame's arrival time (recv_ts, the ts sanity check)
        self.subs = Subscriptions(name=self.name, chunk=settings.subscribe_chunk)
        self.policy = ReconnectPolicy(
            cap=settings.backoff_cap, reset_after=settings.backoff_reset_after,
            max_attempts=settings.max_reconnect_attempts, circuit_failures=settings.circuit_failures,
            circuit_recovery=settings.circuit_recovery, clock=clock)
        self.open = False  # socket up and its first subscribe round answered
        self.has_socket = False  # a socket is up (it must be closed cleanly at shutdown)
        self._wake = asyncio.Event()
        self._draining: set[str] = set()  # removed symbols whose last frames may still arrive
        self._next_delay = 0.0
        self._last_data = 0.0
        self._delivered = False  # the current socket delivered at least one ticker
        self._unanswered_ping_since: float | None = None
        self._stuck_reported = False
        self._last_error = errors.WS_CLOSED
        self._last_detail = ""
        self._close_recorded = False
        self._throttle = LogThrottle(period=10.0, burst=5)

    # --- shard changes (from the pool) ------------------------------------------------------------
    def add(self, symbols: Iterable[str]) -> None:
        symbols = list(symbols)
        self._draining.difference_update(symbols)
        self.subs.add(symbols)
        self._wake.set()

    def remove(self, symbols: Iterable[str]) -> None:
        symbols = list(symbols)
        self._draining.update(symbols)
        self.subs.remove(symbols)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # --- the reconnect loop ---------------------------------------------------------------------
    def _process_exception(self, exc: Exception) -> Exception | None:
        """A connect attempt failed: count, log, compute the wait. Never fatal."""
        self.counters.connect_failures += 1
        self.counters.error(errors.WS_CONNECT)
        self._next_delay = self.policy.failed()
        self._log_failure("connect failed", errors.WS_CONNECT, repr(exc))
        return None

    def _delays(self) -> Generator[float]:
        while True:
            yield self._next_delay

    def _log_failure(self, event: str, error_type: str, detail: str) -> None:
        extra = {"conn": self.name, "error_type": error_type, "detail": detail[:300],
                 "retry_in": round(self._next_delay, 2),
                 "consecutive_failures": self.policy.consecutive_failures,
                 "circuit": self.policy.breaker.state.value}
        if self.policy.stuck and not self._stuck_reported:
            self._stuck_reported = True
            log.error("connection keeps failing; retrying at the backoff cap, forever", extra={
                **extra, "attempts": self.policy.backoff.attempt})
        allowed, suppressed = self._throttle.allow(f"fail:{error_type}")
        if allowed:
            log.warning(event, extra={**extra, "suppressed": suppressed})

    async def run(self) -> None:
        """Connect, serve, reconnect — until the stop event."""
        s = self.settings
        connector = connect(
            s.ws_url, process_exception=self._process_exception, reconnect_delays=self._delays,
            open_timeout=s.ping_timeout, ping_interval=s.ping_interval, ping_timeout=s.ping_timeout,
            close_timeout=min(_CLOSE_TIMEOUT, s.ping_timeout), max_size=s.max_frame_bytes,
            compression=None, logger=logging.getLogger("websockets.client"),
            create_connection=TickerConnection,
        )
        # The library's reconnect iterator is an async generator: close it explicitly so the
        # socket it holds is closed (code 1000) when this loop ends, not at garbage collection.
        sockets = cast(AsyncGenerator[ClientConnection, None], aiter(connector))
        async with contextlib.aclosing(sockets):
            async for ws in sockets:
                if self.stop.is_set():
                    await ws.close()
                    break
                await self._session(ws)
                if self.stop.is_set():
                    break
                self._next_delay = self.policy.failed(delivered=self._delivered)
                self._log_failure("connection lost", self._last_error, self._last_detail)
                try:
                    async with asyncio.timeout(self._next_delay):
                        await self.stop.wait()
                except TimeoutError:
                    pass
                if self.stop.is_set():
                    break
        log.info("connection stopped", extra={"conn": self.name})

    # --- one socket -----------------------------------------------------------------------------
    async def _session(self, ws: ClientConnection) -> None:
        self.has_socket = True
        hold = self.read_hold if isinstance(ws, TickerConnection) else None
        if hold is not None:
            hold.hold(cast(TickerConnection, ws), self.name)
        try:
            await self._serve(ws)
        finally:
            self.has_socket = False
            if hold is not None:
                hold.unhold(cast(TickerConnection, ws))

    async def _serve(self, ws: ClientConnection) -> None:
        now = self._clock()
        self.subs.on_connected()
        self._draining.clear()
        self._last_data = now
        self._delivered = False
        self._unanswered_ping_since = None
        self._last_error, self._last_detail = errors.WS_CLOSED, ""
        self._close_recorded = False
        log.info("connected", extra={"conn": self.name, "topics": len(self.subs.wanted)})
        try:
            async with asyncio.TaskGroup() as tg:
                keeper = tg.create_task(self._keep(ws))
                await self._read(ws)
                keeper.cancel()
        except* DeadConnection as group:
            dead = group.exceptions[0]
            assert isinstance(dead, DeadConnection)
            self._last_error, self._last_detail = dead.error_type, str(dead)
            self._close_recorded = True
            self.counters.error(dead.error_type)
            await ws.close()
        except* ConnectionClosed as group:
            self._closed(group.exceptions[0])
        finally:
            self.subs.on_disconnected()
            self.open = False

    def _closed(self, exc: BaseException) -> None:
        """Record why the socket closed (counted only when it was not our own shutdown)."""
        if self.stop.is_set() or self._close_recorded:
            return
        self._close_recorded = True
        error_type = errors.WS_CLOSED
        detail = repr(exc)
        if isinstance(exc, ConnectionClosed):
            sent = exc.sent.code if exc.sent is not None else None
            rcvd = exc.rcvd.code if exc.rcvd is not None else None
            if sent == MESSAGE_TOO_BIG:
                error_type = errors.FRAME_TOO_LARGE
            detail = f"sent={sent} rcvd={rcvd} {exc.rcvd.reason[:100] if exc.rcvd is not None else ''}"
        self._last_error, self._last_detail = error_type, detail
        self.counters.error(error_type)

    async def _read(self, ws: ClientConnection) -> None:
        on_message = self._message_handler()
        if isinstance(ws, TickerConnection):
            ws.on_message = on_message
        try:
            while True:
                on_message(await ws.recv(decode=False))
        except ConnectionClosed as exc:
            self._closed(exc)
        finally:
            if isinstance(ws, TickerConnection):
                ws.on_message = None

    def _message_handler(self) -> Callable[[bytes | str], None]:
        """The per-message work, as one closure over everything it needs (called per frame).

        A frame of Bybit's own shape (:mod:`ingest.canonical`) of a symbol this connection owns,
        with a sane ``ts``, goes to the sink: rendered by the C scanner where it is built and
        ``INGEST_NATIVE_SCAN`` is on, else as the ``data`` object's bytes; every other frame (and
        any that fails one of those checks) is decided by :func:`ingest.frames.decode`.
        """
        decode, accept, wall, clock = frames.decode, self.sink.accept, self._wall, self._clock
        accept_canonical, canonical = self.sink.accept_canonical, CANONICAL.fullmatch
        accept_rendered = self.sink.accept_rendered
        owned, coin_of, other = self.subs.wanted, self.coin_of, self._other
        max_age, max_lead = frames.MAX_TS_AGE_MS, frames.MAX_TS_LEAD_MS
        scan = native_scan() if self.settings.native_scan else None

        def exact(raw: bytes | str, now_ms: int) -> None:
            frame = decode(raw, owned=owned, now_ms=now_ms)
            if type(frame) is Ticker:
                coin = coin_of.get(frame.symbol)
                if coin is not None:
                    self._last_data = clock()
                    self._delivered = True
                    accept(frame, coin, now_ms)
            else:
                other(frame)

        def on_message(raw: bytes | str) -> None:
            now_ms = int(wall() * 1000)
            match = canonical(raw) if type(raw) is bytes else None
            if match is not None:
                symbol_bytes, ts_text, data = match.group(1, 2, 3)
                symbol = symbol_bytes.decode()
                coin = coin_of.get(symbol)
                ts = int(ts_text)
                if coin is not None and symbol in owned and now_ms - max_age <= ts <= now_ms + max_lead:
                    self._last_data = clock()
                    self._delivered = True
                    accept_canonical(symbol, coin, ts, now_ms, data)
                    return
            exact(raw, now_ms)

        if scan is None:
            return on_message

        def on_message_native(raw: bytes | str) -> None:
            now_ms = int(wall() * 1000)
            hit = scan(raw, now_ms)
            if hit is not None:
                symbol, ts, command = hit
                coin = coin_of.get(symbol)
                if coin is not None and symbol in owned and now_ms - max_age <= ts <= now_ms + max_lead:
                    self._last_data = clock()
                    self._delivered = True
                    accept_rendered(symbol, coin, ts, now_ms, command)
                    return
            exact(raw, now_ms)

        return on_message_native

    def _other(self, frame: frames.Frame) -> None:
        if isinstance(frame, frames.Pong):
            self._unanswered_ping_since = None
        elif isinstance(frame, frames.CommandAnswer):
            result = self.subs.on_answer(frame)
            if result is None:
                self._rejected(errors.UNKNOWN_MESSAGE, f"answer to unknown request {frame.req_id!r}")
            else:
                self._report(result)
        elif isinstance(frame, frames.Rejected):
            if frame.symbol is not None and frame.symbol in self._draining:
                return  # a late frame of a delivered symbol: expected, not an error
            self._rejected(frame.error, frame.detail)

    def _rejected(self, error_type: str, detail: str) -> None:
        self.counters.error(error_type)
        allowed, suppressed = self._throttle.allow(f"frame:{error_type}")
        if allowed:
            log.warning("frame dropped", extra={"conn": self.name, "error_type": error_type,
                                                "detail": detail, "suppressed": suppressed})

    def _report(self, result: Result) -> None:
        if not result.failed:
            return
        error_type = errors.SUBSCRIBE_UNANSWERED if result.unanswered else errors.SUBSCRIBE_FAILED
        self.counters.error(error_type)
        allowed, suppressed = self._throttle.allow(error_type)
        if allowed:
            log.warning("subscribe unanswered" if result.unanswered else "subscribe failed", extra={
                "conn": self.name, "error_type": error_type, "reason": result.reason[:200],
                "confirmed": len(result.confirmed), "retrying": len(result.retrying),
                "parked": len(result.parked), "split": result.split, "chunk": self.subs.chunk,
                "suppressed": suppressed})

    async def _send(self, ws: ClientConnection, doc: dict[str, object]) -> None:
        await ws.send(orjson.dumps(doc).decode())

    async def _keep(self, ws: ClientConnection) -> None:
        s = self.settings
        clock = self._clock
        next_request = next_ping = clock()
        # Topics that ran out of subscribe retries are tried again on this socket, first after a
        # fifth of the refresh interval, then at doubling intervals up to it (the chaos drill:
        # waiting for the next refresh kept a rejected shard without data for up to 5 minutes).
        parked_every = s.refresh_interval / PARKED_RETRIES_PER_REFRESH
        next_parked = next_request + parked_every
        while True:
            if self.stop.is_set():
                await ws.close()
                return
            now = clock()
            if now >= next_request:
                request = self.subs.next_request(now)
                if request is not None:
                    await self._send(ws, {"req_id": request.req_id, "op": request.op, "args": request.args})
                    next_request = now + s.subscribe_delay
            for result in self.subs.expire(now, s.ping_timeout):
                self._report(result)
            if now >= next_parked:
                retried = self.subs.retry_parked()
                if retried:
                    log.info("subscribing parked topics again", extra={"conn": self.name, "topics": retried})
                    parked_every = min(parked_every * 2, s.refresh_interval)
                else:
                    parked_every = s.refresh_interval / PARKED_RETRIES_PER_REFRESH
                next_parked = now + parked_every
            if not self.open and self.subs.settled:
                self._established()
            if now >= next_ping:
                await self._send(ws, {"req_id": f"{self.name}-ping", "op": "ping"})
                if self._unanswered_ping_since is None:
                    self._unanswered_ping_since = now
                next_ping = now + s.ping_interval
            if self._unanswered_ping_since is not None and now - self._unanswered_ping_since > s.ping_timeout:
                silent_for = now - self._unanswered_ping_since
                raise DeadConnection(errors.PONG_TIMEOUT, f"no pong for {silent_for:.1f}s")
            expecting = self._delivered or bool(self.subs.confirmed)
            if not expecting:
                # Nothing subscribed, nothing to wait for: the data clock starts with the first
                # ticker or the first confirmation, whichever comes first (parked topics confirmed
                # later must not look overdue at once; an exchange whose answers we cannot read
                # must not hide a silent stream: its tickers arm the clock).
                self._last_data = now
            elif now - self._last_data > s.data_timeout:
                raise DeadConnection(errors.DATA_TIMEOUT, f"no ticker for {now - self._last_data:.1f}s")
            deadlines = [next_ping, now + _TICK, next_parked]
            if self._unanswered_ping_since is not None:
                deadlines.append(self._unanswered_ping_since + s.ping_timeout)
            if expecting:
                deadlines.append(self._last_data + s.data_timeout)
            if not self.subs.settled:
                deadlines.append(next_request)
            wait = max(0.0, min(deadlines) - clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait + 0.001):
                    await self._wake.wait()

    def _established(self) -> None:
        self.open = True
        self._last_data = self._clock()
        reconnect = self.policy.established()
        self._stuck_reported = False
        if reconnect:
            self.counters.reconnects += 1
        log.info("subscribed", extra={"conn": self.name, "topics": len(self.subs.confirmed),
                                      "parked": len(self.subs.parked), "reconnect": reconnect})
