"""Target 1: fuzzed frames through the ingest's own per-frame handler, in this process.

Each case goes to the handler :meth:`ingest.connection.Connection._read` installs for every
message (``Connection._message_handler``) of a real, never connected :class:`Connection`: the
fast path of Bybit's own shape (:mod:`ingest.canonical`) or :func:`ingest.frames.decode`, then
the sink (counters, lag, coalescer) or the connection's handling of pongs, answers and
rejections (counting, throttled logging). What the handler did is read off its effects: the
message and error counters, the coalescer's entry and its rendered ``HSET``, the ping state.
The reference is :func:`ingest.frames.decode`, the exact validator, run on the same bytes at
the same instant (the connection's wall clock is the target's). Subscribe answers are also
replayed against a live :class:`~ingest.subscriptions.Subscriptions` with the request id of a
request it has in flight, so hostile answers reach its bookkeeping.

For each case it checks:

- nothing raises (a *crash*, counted by exception type, first examples kept);
- a rejection names a member of :data:`common.errors.ERROR_TYPES`;
- the outcome is the one the case's rules predict (:mod:`bench.fuzz.cases`): the stored
  fields and timestamp for an accepted ticker, an allowed error type for a rejected one;
- the handler did what the reference decided (*connection mismatches* otherwise): it stored
  exactly the tickers ``decode`` accepts and counted the error ``decode`` names for the rest,
  and answered a pong as a pong; a ticker it stored, whichever path took it, renders the
  ``HSET`` the exact path renders from the decoded ticker, byte for byte (a frame of Bybit's
  shape that the fast path took and that differs counts as a *fast path* mismatch);
- where the C scanner is built (:func:`ingest.canonical.native_scan`, the connection's fast path
  unless the target runs with ``native=False``), it decides and renders every input exactly as
  the pure fast path (:func:`ingest.canonical.pure_scan`) does (*scanner mismatches* otherwise);
- an accepted ticker's RESP command, read back by hiredis (an independent RESP parser), is
  exactly ``HSET option:<symbol> <field value>... ts <ts> recv_ts <recv>`` with every Bybit
  field once (those the ticker lacked empty, so no older value survives in the hash).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import hiredis

from bench.fuzz.cases import Case, Universe, oracle_decimal
from common import errors, keys
from common.config import load_settings
from common.symbols import is_valid_symbol
from ingest import frames, resp
from ingest.canonical import Scan, native_scan, pure_scan, scanner_in_use
from ingest.coalescer import Coalescer
from ingest.connection import Connection
from ingest.frames import REQUIRED_FIELDS, CommandAnswer, Pong, Rejected, Ticker
from ingest.lag import LagHistogram
from ingest.sink import TickerSink, complete
from ingest.stats import Counters
from ingest.subscriptions import Subscriptions

EXAMPLES_KEPT: Final = 5


@dataclass
class FrameTally:
    """Counts of target 1 (and, with ``errors`` from Redis, of target 2)."""

    inputs: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # accepted / rejected / pong / answer
    errors: Counter[str] = field(default_factory=Counter)  # rejections by error type
    crashes: Counter[str] = field(default_factory=Counter)  # exception type -> count
    unlisted: Counter[str] = field(default_factory=Counter)  # error types outside ERROR_TYPES
    mismatches: Counter[str] = field(default_factory=Counter)  # case kind -> outcome not as predicted
    resp_mismatches: int = 0
    canonical: int = 0  # frames the connection's fast path (Bybit's own shape) stored
    canonical_mismatches: int = 0  # ...whose HSET differs from the one decode's ticker renders
    scanner: str = ""  # which fast path the connection ran (ingest.canonical.scanner_in_use)
    scanner_checked: int = 0  # inputs the C scanner and the pure fast path both judged
    scanner_mismatches: int = 0  # ...with another verdict or other bytes
    connection_mismatches: Counter[str] = field(default_factory=Counter)  # what -> count
    answers_replayed: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def keep(self, line: str) -> None:
        if len(self.examples) < 3 * EXAMPLES_KEPT:
            self.examples.append(line[:400])


def _resp_matches(command: bytes, symbol: str, ticker: Ticker, recv_ms: int) -> bool:
    """The command is ``HSET option:<symbol>`` of every Bybit field (absent ones empty), ``ts``
    and ``recv_ts``, each field once — read back by hiredis, an independent RESP parser."""
    reader = hiredis.Reader()
    reader.feed(command)
    parsed = reader.gets()
    if not isinstance(parsed, list) or reader.gets() is not False:
        return False
    want = {name.encode(): b"" for name in frames.TICKER_FIELDS}
    want.update({name.encode(): value.encode() for name, value in ticker.data.items()})
    want[keys.F_OPTION_TS.encode()] = str(ticker.ts).encode()
    want[keys.F_OPTION_RECV_TS.encode()] = str(recv_ms).encode()
    pairs = parsed[2:]
    return (parsed[:2] == [b"HSET", keys.option_key(symbol).encode()] and len(pairs) == 2 * len(want)
            and dict(zip(pairs[::2], pairs[1::2], strict=True)) == want)


def _ticker_invariants(ticker: Ticker, owned: frozenset[str]) -> str | None:
    """What an accepted ticker breaks of the documented rules, or None."""
    if ticker.symbol not in owned or not is_valid_symbol(ticker.symbol):
        return f"symbol {ticker.symbol!r} not tracked"
    for name, value in ticker.data.items():
        if name not in frames.TICKER_FIELDS or type(value) is not str:
            return f"field {name!r}={value!r}"
        if name != "symbol" and value and not oracle_decimal(value):
            return f"{name}={value!r} is not a finite decimal"
    if any(not ticker.data.get(name) for name in REQUIRED_FIELDS):
        return "a required field is empty"
    return None


@dataclass
class Effects:
    """What one call of the connection's handler did, read off its counters and state."""

    accepted: int  # tickers handed to the sink
    fast: bool  # ...by the fast path (no decode)
    errors: Counter[str]  # errors counted, by type
    ponged: bool  # the outstanding ping was answered


class InProcessTarget:
    """Feeds cases to the ingest's per-frame handler and tallies what happened."""

    def __init__(self, universe: Universe, *, coin_of: dict[str, str], native: bool = True) -> None:
        self.universe = universe
        self.owned = frozenset(universe.owned)
        self.tally = FrameTally()
        self.counters = Counters(coins=tuple(sorted(set(coin_of.values()))))
        self.coalescer = Coalescer()
        self.sink = TickerSink(coalescer=self.coalescer, counters=self.counters, lag=LagHistogram())
        settings = load_settings(env={} if native else {"INGEST_NATIVE_SCAN": "0"})
        self.tally.scanner = scanner_in_use(settings.native_scan)
        #: The C scanner, checked against the pure fast path on every input (None: not built).
        self.scan: Scan | None = native_scan()
        self._now_ms = 0
        # A real connection object, never connected: its per-message handler is what runs.
        self.connection = Connection(0, settings=settings, sink=self.sink, counters=self.counters,
                                     coin_of=coin_of, stop=asyncio.Event(),
                                     wall=lambda: (self._now_ms + 0.5) / 1000)
        self.connection.subs.add(universe.owned)
        self.handler = self.connection._message_handler()
        self.coin_of = coin_of
        self._answer_symbols = universe.owned[:6]

    def __call__(self, case: Case) -> None:
        tally = self.tally
        tally.inputs += 1
        tally.kinds[case.kind] += 1
        try:
            self._check(case)
        except Exception as exc:  # noqa: BLE001 - an exception escaping the ingest's path is the finding
            tally.crashes[type(exc).__name__] += 1
            tally.keep(f"crash {type(exc).__name__}: {exc!r} on {case.kind} {case.raw[:200]!r}")

    def _mismatch(self, case: Case, got: str) -> None:
        self.tally.mismatches[case.kind] += 1
        want = ("accepted" if case.accepted else case.other) or f"rejected {sorted(case.errors)}"
        self.tally.keep(f"mismatch {case.kind}: want {want}, got {got}; frame {case.raw[:200]!r}")

    def _connection_mismatch(self, what: str, case: Case, detail: str) -> None:
        self.tally.connection_mismatches[what] += 1
        self.tally.keep(f"connection {what} ({detail}); frame {case.raw[:200]!r}"[:400])

    def _run_handler(self, raw: bytes) -> Effects:
        """One message through the connection's handler, as ``_read`` hands it over."""
        counters = self.counters
        self.coalescer.remove(list(self.coalescer.latest))  # each case on its own: no stale check
        messages, exact, errors_before = counters.messages, counters.exact_tickers, counters.errors.copy()
        self.connection._unanswered_ping_since = 0.0
        self.handler(raw)
        counted = counters.errors.copy()
        counted.subtract(errors_before)
        accepted = counters.messages - messages
        return Effects(accepted=accepted, fast=accepted > 0 and counters.exact_tickers == exact,
                       errors=+counted, ponged=self.connection._unanswered_ping_since is None)

    def _check(self, case: Case) -> None:
        now_ms = self._now_ms = int(time.time() * 1000)
        if self.scan is not None:
            self._check_scanner(case.raw, now_ms)
        frame = frames.decode(case.raw, owned=self.owned, now_ms=now_ms)  # the reference
        effects = self._run_handler(case.raw)
        tally = self.tally
        if type(frame) is Ticker:
            tally.outcomes["accepted"] += 1
            self._accepted(case, frame, effects, now_ms)
            return
        if effects.accepted:
            what = "fast path accepted a rejected frame" if effects.fast else "accepted a rejected frame"
            self._connection_mismatch(what, case, f"decode: {frame!r}"[:200])
        if isinstance(frame, Rejected):
            tally.outcomes["rejected"] += 1
            tally.errors[frame.error] += 1
            if frame.error not in errors.ERROR_TYPES:
                tally.unlisted[frame.error] += 1
            if frame.error not in case.errors:
                self._mismatch(case, f"rejected {frame.error} ({frame.detail})")
            if effects.errors != Counter({errors.normalise(frame.error): 1}):
                self._connection_mismatch("counted another error", case,
                                          f"{dict(effects.errors)} for {frame.error}")
        elif isinstance(frame, Pong):
            tally.outcomes["pong"] += 1
            if case.other != "pong":
                self._mismatch(case, "pong")
            if not effects.ponged or effects.errors:
                self._connection_mismatch("pong not taken", case, f"errors {dict(effects.errors)}")
        else:
            assert isinstance(frame, CommandAnswer)
            tally.outcomes["answer"] += 1
            if case.other != "answer":
                self._mismatch(case, "answer")
            # This connection has no request in flight: any answer is one to an unknown request.
            if effects.errors != Counter({errors.UNKNOWN_MESSAGE: 1}):
                self._connection_mismatch("answer miscounted", case, f"errors {dict(effects.errors)}")
            self._replay_answer(frame)

    def _check_scanner(self, raw: bytes, now_ms: int) -> None:
        assert self.scan is not None
        self.tally.scanner_checked += 1
        got, want = self.scan(raw, now_ms), pure_scan(raw, now_ms)
        if got != want:
            self.tally.scanner_mismatches += 1
            self.tally.keep(f"C scanner {'matched' if got else 'refused'} what the pure path "
                            f"{'matched' if want else 'refused'}, or rendered other bytes: {raw[:200]!r}")

    def _accepted(self, case: Case, ticker: Ticker, effects: Effects, now_ms: int) -> None:
        if not case.accepted:
            self._mismatch(case, f"accepted {ticker.symbol}")
        elif (ticker.symbol, ticker.ts, ticker.data) != (case.symbol, case.ts, case.stored):
            self._mismatch(case, f"accepted with different content {ticker.data!r}"[:300])
        broken = _ticker_invariants(ticker, self.owned)
        if broken is not None:
            self._mismatch(case, f"accepted a ticker that breaks the rules: {broken}")
        if ticker.symbol not in self.coin_of:
            return  # tracked by no coin here: the connection drops it
        entry = self.coalescer.latest.get(ticker.symbol)
        if effects.accepted != 1 or effects.errors or entry is None:
            self._connection_mismatch("did not store an accepted ticker", case,
                                      f"accepted {effects.accepted}, errors {dict(effects.errors)}")
            return
        if effects.fast:
            self.tally.canonical += 1
        want = resp.hset_ticker(keys.option_key(ticker.symbol), complete(ticker.data), ticker.ts, now_ms)
        if (entry.ts, entry.recv_ms) != (ticker.ts, now_ms) or entry.command != want:
            if effects.fast:
                self.tally.canonical_mismatches += 1
            else:
                self.tally.connection_mismatches["stored another HSET"] += 1
            self.tally.keep(f"HSET differs ({'fast' if effects.fast else 'exact'} path) for "
                            f"{case.raw[:200]!r}: {entry.command[:300]!r}"[:400])
        if not _resp_matches(entry.command, ticker.symbol, ticker, now_ms):
            self.tally.resp_mismatches += 1
            self.tally.keep(f"resp mismatch for {case.raw[:200]!r}: {entry.command[:300]!r}")

    def _replay_answer(self, answer: CommandAnswer) -> None:
        """The same answer, as if it answered a request in flight (hostile ret_msg/topics)."""
        subs = Subscriptions(name="fuzz", chunk=3)
        subs.add(self._answer_symbols)
        subs.on_connected()
        request = subs.next_request(0.0)
        assert request is not None
        subs.on_answer(dataclasses.replace(answer, req_id=request.req_id))
        self.tally.answers_replayed += 1
        while subs.next_request(1.0) is not None:
            pass
        subs.expire(100.0, 1.0)
        if not subs.confirmed <= subs.wanted:
            self.tally.mismatches["answer_bookkeeping"] += 1
            self.tally.keep(f"answer confirmed unwanted symbols: {answer!r}"[:400])


def quiet_logs(log_path: str) -> Callable[[], None]:
    """Send the ingest's throttled warnings to a file (formatted by the project's JSON formatter,
    so formatting hostile details is exercised too); returns the undo."""
    from common.logs import JsonFormatter

    handler = logging.FileHandler(log_path)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()

    return undo
