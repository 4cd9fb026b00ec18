"""``python -m ingest --check``: the ingest against the configured exchange for a few seconds, no Redis.

Before deploying, a user with internet wants to know whether *this* worker, with *these*
settings, would be healthy against Bybit from *this* host: are the URLs right, does REST
discovery finish within the rate limits, are all topics confirmed, do pongs come back, does
every frame pass validation. A separate probe script would answer for itself, not for the
ingest, so the check runs the ingest's own parts — :class:`~ingest.discovery.Discovery`,
:class:`~ingest.pool.Pool` and its :class:`~ingest.connection.Connection` objects, the real
:class:`~ingest.sink.TickerSink` and :class:`~ingest.stats.Counters` — and leaves out only the
writer and the reporter (the Redis side), so it needs no Redis at all. The coalescer the sink
fills holds one entry per symbol, as in the worker, and is simply never flushed.

What the counters do not record is taken from thin subclasses that call the real code first
and only note what passed (the ingest has no observer hooks, and this is the only place that
needs them): which topics were ever confirmed or refused (a reconnect clears a connection's
own set), when each application ping left and its pong came back, the last connect failure
and the REST answers. The judging is pure (:mod:`ingest.verdict`).

The REST side counts into its own :class:`~ingest.stats.Counters`, so a malformed instrument
symbol (``bad_symbol`` from discovery) is not reported as a rejected frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Final, TextIO

import aiohttp
from websockets.asyncio.client import ClientConnection

from common.config import Settings
from ingest import frames
from ingest.coalescer import Coalescer
from ingest.connection import Connection
from ingest.discovery import Discovery, InstrumentsClient, RestError
from ingest.lag import LagHistogram
from ingest.pool import Pool
from ingest.ratelimit import RestRateLimiter
from ingest.sink import TickerSink
from ingest.stats import ConnectionState, Counters
from ingest.subscriptions import Result
from ingest.verdict import CheckReport, reasons, table, verdict_line

log = logging.getLogger("ingest.check")

CLOSE_GRACE: Final = 2.5  # sockets closing at the end (as the worker's shutdown)
#: A ping younger than this at the end is not judged: a pong takes one round trip, well under
#: a second even across continents, while the ping timeout (10 s) would leave a short check
#: unable to say anything about a ping sent at connect.
PONG_GRACE: Final = 2.0
LAG_SAMPLES: Final = 100_000  # lags kept for the quantiles (a uniform sample beyond that)
_DETAIL_MAX: Final = 200


def describe(exc: BaseException) -> str:
    """``Type: message``, bounded: what a user can act on (the library's ``repr`` buries it)."""
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_DETAIL_MAX]


class Probe:
    """What the check records beside the ingest's counters (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.confirmed: set[str] = set()  # symbols confirmed at least once
        self.refused: set[str] = set()  # symbols refused at least once
        self.pongs = 0
        self.rtts: list[float] = []
        self.lost_pings = 0  # outstanding when their socket died
        self._outstanding: dict[str, list[float]] = {}  # connection -> send times, oldest first
        self.connect_error = ""
        self.discovery_errors: dict[str, str] = {}  # coin -> last failure
        self.rate_limit_answers: Counter[str] = Counter()

    def subscribe_result(self, result: Result) -> None:
        self.confirmed.update(result.confirmed)
        if result.failed and not result.unanswered:
            self.refused.update(result.retrying)
            self.refused.update(result.parked)

    def ping_sent(self, conn: str) -> None:
        self._outstanding.setdefault(conn, []).append(self.clock())

    def pong(self, conn: str) -> None:
        pending = self._outstanding.get(conn)
        if pending:  # a pong nobody asked for (none outstanding) has no round trip
            self.rtts.append(self.clock() - pending.pop(0))
        self.pongs += 1

    def socket_closed(self, conn: str, *, judge: bool) -> None:
        """Pings of a socket that died were never answered; at the end they are judged by age."""
        if judge:
            self.lost_pings += len(self._outstanding.pop(conn, []))

    def pings(self, now: float, grace: float) -> int:
        """Pings that were answered or had ``grace`` seconds to be."""
        sent = [t for pending in self._outstanding.values() for t in pending]
        old_enough = sum(1 for t in sent if now - t >= grace)
        return self.pongs + self.lost_pings + old_enough


class SampledLag(LagHistogram):
    """The ingest's lag histogram, plus a bounded uniform sample of the lags for exact quantiles."""

    def __init__(self, *, keep: int = LAG_SAMPLES, rng: random.Random | None = None) -> None:
        super().__init__()
        self.keep = keep
        self.samples: list[float] = []
        self._rng = rng or random.Random(0)  # a sample, not a secret

    def observe(self, seconds: float) -> None:
        super().observe(seconds)
        seconds = max(seconds, 0.0)  # as the histogram: clock skew is not delay
        if len(self.samples) < self.keep:
            self.samples.append(seconds)
        elif (slot := self._rng.randrange(self.count)) < self.keep:
            self.samples[slot] = seconds


class ProbedConnection(Connection):
    """A real :class:`Connection` that tells the probe about pings, pongs, answers and failures."""

    def __init__(self, index: int, *, probe: Probe, settings: Settings, sink: TickerSink,
                 counters: Counters, coin_of: Mapping[str, str], stop: asyncio.Event) -> None:
        super().__init__(index, settings=settings, sink=sink, counters=counters, coin_of=coin_of, stop=stop)
        self.probe = probe

    def _process_exception(self, exc: Exception) -> Exception | None:
        self.probe.connect_error = describe(exc)
        return super()._process_exception(exc)

    async def _session(self, ws: ClientConnection) -> None:
        try:
            await super()._session(ws)
        finally:
            self.probe.socket_closed(self.name, judge=not self.stop.is_set())

    async def _send(self, ws: ClientConnection, doc: dict[str, object]) -> None:
        if doc.get("op") == "ping":
            self.probe.ping_sent(self.name)
        await super()._send(ws, doc)

    def _other(self, frame: frames.Frame) -> None:
        if isinstance(frame, frames.Pong):
            self.probe.pong(self.name)
        super()._other(frame)

    def _report(self, result: Result) -> None:
        self.probe.subscribe_result(result)
        super()._report(result)


class CheckPool(Pool):
    """The real pool, whose connections are :class:`ProbedConnection` objects."""

    def __init__(self, *, probe: Probe, settings: Settings, sink: TickerSink, counters: Counters,
                 stop: asyncio.Event, grace: float) -> None:
        super().__init__(settings=settings, sink=sink, counters=counters, stop=stop, grace=grace)
        self.probe = probe

    def _new_connection(self) -> None:
        # Pool._new_connection with the probed class (the pool takes no connection factory).
        conn = ProbedConnection(len(self.connections), probe=self.probe, settings=self.settings,
                                sink=self.sink, counters=self.counters, coin_of=self.coin_of, stop=self.stop)
        self.connections.append(conn)
        if self._tg is not None:
            self._tasks.append(self._tg.create_task(conn.run(), name=conn.name))


class CheckInstrumentsClient(InstrumentsClient):
    """The real REST client; the probe keeps each coin's last failure and every rate-limit answer."""

    def __init__(self, session: aiohttp.ClientSession, *, probe: Probe, base_url: str,
                 limiter: RestRateLimiter, counters: Counters, page_limit: int, timeout: float) -> None:
        super().__init__(session, base_url=base_url, limiter=limiter, counters=counters,
                         page_limit=page_limit, timeout=timeout)
        self.probe = probe

    async def symbols(self, coin: str) -> set[str]:
        try:
            found = await super().symbols(coin)
        except RestError as exc:  # counted and logged by Discovery.fetch, which retries the coin
            cause = exc.__cause__
            failure = describe(cause) if isinstance(cause, Exception) else str(exc)[:_DETAIL_MAX]
            self.probe.discovery_errors[coin] = failure
            raise
        self.probe.discovery_errors.pop(coin, None)
        return found

    def _rate_limited(self, status: int, headers: Mapping[str, str], what: str) -> None:
        self.probe.rate_limit_answers[what] += 1
        super()._rate_limited(status, headers, what)


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {t: n for t, n in counts.items() if n}


class LiveCheck:
    """One run: the ingest's discovery and pool for ``seconds``, then a :class:`CheckReport`."""

    def __init__(self, settings: Settings, *, seconds: float, progress: TextIO = sys.stderr,
                 progress_every: float | None = None) -> None:
        self.settings = settings
        self.seconds = seconds
        self.progress = progress
        self.progress_every = progress_every or max(1.0, min(3.0, seconds / 4))
        self.stop = asyncio.Event()
        self.counters = Counters(coins=settings.coins)  # the stream's, as in the worker
        self.rest_counters = Counters(coins=settings.coins)
        self.coalescer = Coalescer()
        self.lag = SampledLag()
        self.probe = Probe()
        self.sink = TickerSink(coalescer=self.coalescer, counters=self.counters, lag=self.lag)
        self.pool = CheckPool(probe=self.probe, settings=settings, sink=self.sink, counters=self.counters,
                              stop=self.stop, grace=CLOSE_GRACE)
        self.known: set[str] = set()  # coins discovered
        self._started = time.monotonic()

    def on_universe(self, universe: dict[str, set[str]]) -> None:
        """As the worker's: the pool follows the listing (and the coalescer forgets delivered symbols)."""
        self.known.update(universe)
        change = self.pool.apply(universe)
        for symbols in change.removed.values():
            self.coalescer.remove(symbols)

    async def run(self, *, interrupt: asyncio.Event | None = None) -> CheckReport:
        """Run until ``seconds`` have passed or ``interrupt`` is set; never touches Redis."""
        s = self.settings
        interrupt = interrupt or asyncio.Event()
        limiter = RestRateLimiter(initial=s.rest_backoff_initial, factor=s.rest_backoff_factor,
                                  maximum=s.rest_backoff_max, ban_pause=s.rest_ban_pause)
        self._started = time.monotonic()
        self._say(f"checking {s.ws_url} (REST {s.rest_url}) for {self.seconds:g} s, "
                  f"coins {','.join(s.coins)}; Redis is not used")
        async with aiohttp.ClientSession() as session:
            client = CheckInstrumentsClient(session, probe=self.probe, base_url=s.rest_url, limiter=limiter,
                                            counters=self.rest_counters, page_limit=s.rest_page_limit,
                                            timeout=s.rest_timeout)
            discovery = Discovery(client, coins=s.coins, refresh_interval=s.refresh_interval,
                                  retry_cap=s.rest_backoff_max, on_universe=self.on_universe,
                                  counters=self.rest_counters)
            async with asyncio.TaskGroup() as tg:
                discovering = tg.create_task(discovery.run(), name="discovery")
                streaming = tg.create_task(self.pool.run(), name="pool")
                reporting = tg.create_task(self._report_progress(), name="progress")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.seconds):
                        await interrupt.wait()
                elapsed = time.monotonic() - self._started
                state = self.pool.state()  # before the sockets close
                pings = self.probe.pings(self.probe.clock(), min(PONG_GRACE, s.ping_timeout))
                self.stop.set()
                discovering.cancel()
                reporting.cancel()
                await streaming
        return self._report(elapsed=elapsed, interrupted=interrupt.is_set(), state=state, pings=pings)

    def _report(self, *, elapsed: float, interrupted: bool, state: ConnectionState,
                pings: int) -> CheckReport:
        s, coin_of, probe = self.settings, self.pool.coin_of, self.probe
        tracked = set(coin_of)
        by_coin = Counter(coin_of.values())
        return CheckReport(
            ws_url=s.ws_url, rest_url=s.rest_url, coins=s.coins, seconds=self.seconds, elapsed=elapsed,
            interrupted=interrupted,
            instruments={c: by_coin[c] for c in s.coins if c in self.known},
            discovery_errors={c: e for c, e in probe.discovery_errors.items() if c not in self.known},
            rest_requests=self.rest_counters.rest_requests,
            rest_errors=_nonzero(self.rest_counters.errors),
            rate_limit_answers=dict(probe.rate_limit_answers),
            connections=state.desired, open_connections=state.connected,
            reconnects=self.counters.reconnects, connect_error=probe.connect_error,
            topics=len(tracked), confirmed=len(probe.confirmed & tracked),
            refused=len((probe.refused - probe.confirmed) & tracked),
            tickers=self.counters.messages,
            tickers_by_coin={c: n for c in s.coins if (n := self.counters.messages_by_coin[c])},
            quoted=len(self.coalescer.latest.keys() & tracked),
            stream_errors=_nonzero(self.counters.errors),
            pings=pings, pongs=min(probe.pongs, pings), pong_rtts=tuple(probe.rtts),
            lags=tuple(self.lag.samples),
        )

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(self.progress_every)
            self._say(self._progress_line())

    def _progress_line(self) -> str:
        by_coin = Counter(self.pool.coin_of.values())
        listed = ", ".join(f"{c} {by_coin[c]}" if c in self.known else f"{c} …" for c in self.settings.coins)
        tracked = set(self.pool.coin_of)
        rejected = sum(self.counters.errors.values())
        return (f"{time.monotonic() - self._started:.0f}/{self.seconds:g} s: instruments {listed}; "
                f"{len(self.pool.connections)} connections; "
                f"topics {len(self.probe.confirmed & tracked):,}/{len(tracked):,} confirmed; "
                f"{self.counters.messages:,} tickers; {rejected:,} errors")

    def _say(self, line: str) -> None:
        print(f"check: {line}", file=self.progress, flush=True)


def run(settings: Settings, *, seconds: float, out: TextIO = sys.stdout) -> int:
    """The command: run the check, print the table and the verdict; exit 0 when OK, else 1.

    SIGINT/SIGTERM end the check early; the table then covers the time it ran.
    """
    async def main() -> CheckReport:
        interrupt = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, interrupt.set)
        return await LiveCheck(settings, seconds=seconds).run(interrupt=interrupt)

    report = asyncio.run(main())
    found = reasons(report)
    for line in table(report):
        print(line, file=out)
    print(verdict_line(found), file=out, flush=True)
    log.info("check finished", extra={"ok": not found, "reasons": found})
    return 0 if not found else 1
