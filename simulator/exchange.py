"""The simulated exchange: listings, market, connections, faults, counters and the truth.

Sans-I/O: handlers and loops in :mod:`simulator.server` feed it client messages, clock ticks and
control calls; it answers into connection outboxes and returns plain values. Clocks and random
sources are injected, so every decision is reproducible in a unit test.

"Truth" is, per symbol, the last *well-formed* ticker frame handed to at least one subscribed
connection (its ``ts`` and ``data``). A frame is rendered once per push and the same bytes go to
every subscriber, so all of them see the same truth; malformed frames never change it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import orjson

from common.logs import LogThrottle
from simulator import frames, malformed
from simulator.connection import Connection
from simulator.faults import FORM_FAULTS, Faults
from simulator.listings import TRADED_STATUSES, Instrument, ListingGenerator, prelaunch_count
from simulator.market import Market, rest_ticker
from simulator.paging import SortKey, page
from simulator.ratelimit import HttpAnswer, form_for, rate_limit_answer
from simulator.settings import SimulatorOptions
from simulator.subscriptions import Outcome, symbol_of

log = logging.getLogger("simulator.exchange")

DROP_JITTER: Final = 1.33  # drop_every N drops each connection after N..1.33N seconds
_FIRST_SEQ: Final = 2_480_000_000  # Bybit's ticker ids carry a large sequence number


@dataclass
class Counters:
    """What the simulator did, for ``/control/state`` and for tests to assert on."""

    connections_total: int = 0
    messages_received: int = 0
    bad_requests: int = 0
    pings_received: int = 0
    pings_answered: int = 0
    pings_ignored: int = 0
    subscribe_requests: int = 0
    subscribe_failures: int = 0
    unsubscribe_requests: int = 0
    push_cycles: int = 0  # push-loop turns, including silent ones (tests wait on it)
    frames_pushed: int = 0  # ticker frames handed to connection outboxes
    frames_sent: int = 0  # ticker frames written to sockets
    frames_conflated: int = 0  # unsent tickers replaced by a newer one (slow clients)
    malformed_sent: int = 0  # malformed pushes rendered (each to every subscriber of its symbol)
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    send_errors: int = 0
    drops_requested: int = 0  # connections aborted by /control/drop
    drops_scheduled: int = 0  # connections aborted by the drop_every fault
    idle_closes: int = 0
    rest_calls: int = 0
    rest_params_errors: int = 0
    rate_limits_sent: int = 0
    rate_limits_by_form: dict[str, int] = field(default_factory=dict)
    instruments_listed: int = 0
    instruments_delivered: int = 0


class Exchange:
    """Bybit's public option market, in memory."""

    def __init__(self, options: SimulatorOptions, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.faults = options.faults
        self.counters = Counters()
        self._wall = wall
        self._monotonic = monotonic
        now = dt.datetime.fromtimestamp(wall(), dt.UTC)
        self.market = Market(options.coins, seed=options.seed, now_ms=self.now_ms())
        self._generators = {coin: ListingGenerator(coin, now=now) for coin in options.coins}
        self._by_coin: dict[str, dict[str, Instrument]] = {coin: {} for coin in options.coins}
        self._sorted: dict[str, tuple[list[Instrument], list[SortKey]]] = {}
        self.connections: dict[str, Connection] = {}
        self._subscribers: dict[str, dict[Connection, None]] = {}
        self._truth: dict[str, tuple[int, dict[str, str]]] = {}
        self._topics: dict[str, bytes] = {}
        self._seq = _FIRST_SEQ
        self._malformed_rng = random.Random(options.seed ^ 0xBAD)
        self._drop_rng = random.Random(options.seed ^ 0xD0)
        self._rate_limit_index = 0
        self._log_throttle = LogThrottle(period=10.0, burst=5, clock=monotonic)
        for coin in options.coins:
            count = options.instruments_for(coin)
            for ins in self._generators[coin].take(count):
                self._add(ins)
            # On top of the trading ones, as on Bybit: tomorrow's listing, not trading yet.
            for ins in self._generators[coin].prelaunch(prelaunch_count(count)):
                self._add(ins, fresh=True)

    # --- clocks -----------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self._wall() * 1000)

    def monotonic(self) -> float:
        return self._monotonic()

    # --- listings ---------------------------------------------------------------------------
    def _add(self, ins: Instrument, *, fresh: bool = False) -> None:
        self._by_coin[ins.coin][ins.symbol] = ins
        self._sorted.pop(ins.coin, None)
        self.market.add(ins, fresh=fresh)
        self._topics[ins.symbol] = f"tickers.{ins.symbol}".encode()

    def _remove(self, symbol: str) -> None:
        for coin, listed in self._by_coin.items():
            if listed.pop(symbol, None) is not None:
                self._sorted.pop(coin, None)
        self.market.remove(symbol)
        self._subscribers.pop(symbol, None)
        self._truth.pop(symbol, None)
        self._topics.pop(symbol, None)

    def is_listed(self, symbol: str) -> bool:
        return symbol in self.market

    def coin_of(self, symbol: str) -> str | None:
        for coin, listed in self._by_coin.items():
            if symbol in listed:
                return coin
        return None

    def listed(self, coin: str) -> list[Instrument]:
        """``coin``'s instruments in REST order (expiry, strike, call/put, settle coin), any status."""
        return self._sorted_listing(coin)[0]

    def traded(self, coin: str) -> list[Instrument]:
        """``coin``'s Trading and Delivering instruments in REST order: what a client streams."""
        now = self.now_ms()
        return [ins for ins in self.listed(coin) if ins.status(now) in TRADED_STATUSES]

    def prelaunched(self, coin: str) -> list[Instrument]:
        """``coin``'s PreLaunch instruments in REST order: listed, not trading yet."""
        now = self.now_ms()
        return [ins for ins in self.listed(coin) if ins.status(now) == "PreLaunch"]

    def _sorted_listing(self, coin: str) -> tuple[list[Instrument], list[SortKey]]:
        cached = self._sorted.get(coin)
        if cached is None:
            items = sorted(self._by_coin.get(coin, {}).values(), key=lambda i: i.sort_key)
            cached = (items, [i.sort_key for i in items])
            if coin in self._by_coin:
                self._sorted[coin] = cached
        return cached

    def instruments_page(self, coin: str, after: SortKey | None, limit: int, symbol: str | None = None,
                         status: str | None = None) -> tuple[list[Instrument], SortKey | None]:
        """One ``instruments-info`` page; ``status`` keeps only instruments in that status now.

        Without ``status`` every listed instrument qualifies: Bybit lists PreLaunch, Trading and
        Delivering options by default, and delivered (Closed) ones leave this listing.
        """
        items, keys = self._sorted_listing(coin)
        if symbol is not None:
            found = self._by_coin.get(coin, {}).get(symbol)
            items = [found] if found is not None else []
            keys = [found.sort_key] if found is not None else []
        if status is not None:
            now = self.now_ms()
            kept = [i for i, ins in enumerate(items) if ins.status(now) == status]
            items, keys = [items[i] for i in kept], [keys[i] for i in kept]
        return page(items, keys, after, limit)

    def list_new(self, coin: str, count: int) -> list[str]:
        """List ``count`` new instruments of ``coin`` (further strikes of the listed expiries)."""
        if coin not in self._generators:
            raise KeyError(coin)
        new = self._generators[coin].take(count, now_ms=self.now_ms())
        for ins in new:
            self._add(ins, fresh=True)
        self.counters.instruments_listed += len(new)
        log.info("listed instruments", extra={"coin": coin, "count": len(new)})
        return [ins.symbol for ins in new]

    def deliver(self, *, coin: str | None = None, count: int = 1,
                symbols: list[str] | None = None) -> list[str]:
        """Deliver ``symbols`` (the listed ones), or ``coin``'s ``count`` nearest-expiry instruments."""
        if symbols is not None:
            chosen = [s for s in dict.fromkeys(symbols) if self.is_listed(s)]
        elif coin is not None and coin in self._by_coin:
            chosen = [ins.symbol for ins in self.listed(coin)[:count]]
        else:
            raise KeyError(coin)
        for symbol in chosen:
            self._remove(symbol)
        self.counters.instruments_delivered += len(chosen)
        if chosen:
            log.info("delivered instruments", extra={"coin": coin, "count": len(chosen)})
        return chosen

    def deliver_expired(self) -> list[str]:
        """Deliver whatever has reached its delivery time (08:00 UTC), as Bybit does."""
        now = self.now_ms()
        expired = [ins.symbol for listed in self._by_coin.values() for ins in listed.values()
                   if ins.delivery_ms <= now]
        return self.deliver(symbols=expired) if expired else []

    # --- market -----------------------------------------------------------------------------
    def step_market(self, seconds: float) -> None:
        self.market.step(seconds=seconds, now_ms=self.now_ms())

    def tickers(self, coin: str, *, symbol: str | None = None,
                expiry: str | None = None) -> list[dict[str, str]]:
        """REST tickers of ``coin`` as of now (REST field names)."""
        out = []
        for ins in self.listed(coin):
            if (symbol is None or ins.symbol == symbol) and (expiry is None or ins.expiry_code == expiry):
                out.append(rest_ticker(self.market.quote(ins.symbol).data))
        return out

    def truth(self, coin: str | None = None) -> dict[str, dict[str, Any]]:
        """symbol -> {"ts", "data"} of the last well-formed frame pushed (listed symbols only)."""
        wanted = None if coin is None else self._by_coin.get(coin, {})
        return {sym: {"ts": ts, "data": data} for sym, (ts, data) in self._truth.items()
                if wanted is None or sym in wanted}

    # --- pushes -----------------------------------------------------------------------------
    def push_cycle(self) -> int:
        """Push every subscribed symbol's current ticker to its subscribers; returns frames queued."""
        self.counters.push_cycles += 1
        return self.push_symbols(list(self._subscribers))

    def start_cycle(self) -> list[str]:
        """Begin a paced cycle: count it and return its schedule, every symbol subscribed now."""
        self.counters.push_cycles += 1
        return list(self._subscribers)

    def push_symbols(self, symbols: list[str]) -> int:
        """Push the current ticker of each of ``symbols`` still subscribed; returns frames queued.

        A whole cycle pushes every subscribed symbol at once; a paced cycle (``--pacing spread``)
        calls this with successive slices of the cycle's schedule, so each symbol still goes out
        once per ``push_interval`` and its frame carries the time of its own slice.
        """
        if self.faults.silent or not symbols:
            return 0
        ts = self.now_ms()
        ratio = self.faults.malformed_ratio
        queued = 0
        by_symbol = self._subscribers
        for symbol in symbols:
            subscribers = by_symbol.get(symbol)
            if not subscribers:
                continue  # unsubscribed or delivered since the cycle's schedule was taken
            quote = self.market.quote(symbol)
            self._seq += 1
            if ratio > 0.0 and self._malformed_rng.random() < ratio:
                frame = self._malformed(symbol, quote.data, ts)
            else:
                frame = frames.ticker_frame(self._topics[symbol], self._seq, ts, quote.data_json)
                self._truth[symbol] = (ts, quote.data)
            for conn in subscribers:
                conn.outbox.ticker(symbol, frame)
            queued += len(subscribers)
        self.counters.frames_pushed += queued
        return queued

    def _malformed(self, symbol: str, data: dict[str, str], ts: int) -> bytes:
        kind = malformed.KINDS[self.counters.malformed_sent % len(malformed.KINDS)]
        self.counters.malformed_sent += 1
        by_kind = self.counters.malformed_by_kind
        by_kind[kind] = by_kind.get(kind, 0) + 1
        other = next((s for s in self._subscribers if s != symbol), None)
        if other is None:
            other = next((s for s in self.market_symbols() if s != symbol), symbol)
        push = malformed.Push(symbol=symbol, seq=self._seq, ts_ms=ts, data=data, other_symbol=other)
        return malformed.render(kind, push)

    def market_symbols(self) -> list[str]:
        return [s for listed in self._by_coin.values() for s in listed]

    # --- connections ------------------------------------------------------------------------
    def open_connection(self, abort: Callable[[], None]) -> Connection:
        conn = Connection(abort_transport=abort, opened_at=self.monotonic())
        self.connections[conn.conn_id] = conn
        self.counters.connections_total += 1
        return conn

    def close_connection(self, conn: Connection) -> None:
        self.connections.pop(conn.conn_id, None)
        for symbol in conn.book.symbols():
            subscribers = self._subscribers.get(symbol)
            if subscribers is not None:
                subscribers.pop(conn, None)
                if not subscribers:
                    del self._subscribers[symbol]
        self.counters.frames_conflated += conn.outbox.conflated

    def frames_written(self, conn: Connection, tickers: int) -> None:
        """The writer put ``tickers`` ticker frames on ``conn``'s socket."""
        self.counters.frames_sent += tickers
        conn.last_activity = self.monotonic()

    def drop_all(self) -> int:
        """Abort every connection now (clients see an abnormal close, 1006)."""
        dropped = sum(1 for conn in list(self.connections.values()) if conn.abort())
        self.counters.drops_requested += dropped
        log.info("dropped all connections", extra={"count": dropped})
        return dropped

    def housekeeping(self) -> None:
        """Apply connection timers (drop_every, idle timeout) and deliver expired instruments."""
        now = self.monotonic()
        every = self.faults.drop_every
        for conn in list(self.connections.values()):
            if conn.aborted:
                continue
            if now - conn.last_activity > self.options.idle_timeout:
                conn.abort()
                self.counters.idle_closes += 1
                log.info("closed idle connection", extra={"conn_id": conn.conn_id})
                continue
            if every is None:
                conn.drop_at = conn.drop_every = None
            elif conn.drop_at is None or conn.drop_every != every:
                conn.drop_every = every
                conn.drop_at = now + self._drop_rng.uniform(every, every * DROP_JITTER)
            elif now >= conn.drop_at:
                conn.abort()
                self.counters.drops_scheduled += 1
                log.info("dropped connection (drop_every)", extra={"conn_id": conn.conn_id})
        self.deliver_expired()

    # --- client messages --------------------------------------------------------------------
    def handle_message(self, conn: Connection, raw: str | bytes) -> None:
        """Act on one client message; answers go to ``conn.outbox``."""
        conn.last_activity = self.monotonic()
        self.counters.messages_received += 1
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._refuse(conn, "", "", "error:invalid request: not valid JSON")
            return
        if not isinstance(msg, dict):
            self._refuse(conn, "", "", "error:invalid request: expected a JSON object")
            return
        req_id = msg.get("req_id", "")
        op = msg.get("op")
        if op == "ping":
            self.counters.pings_received += 1
            if self.faults.no_pong:
                self.counters.pings_ignored += 1
                return
            conn.outbox.answer(frames.pong(style=self.faults.pong_style, conn_id=conn.conn_id, req_id=req_id,
                                           now_ms=self.now_ms()))
            self.counters.pings_answered += 1
        elif op == "subscribe":
            self.counters.subscribe_requests += 1
            outcome = conn.book.subscribe(msg.get("args"), listed=self.is_listed,
                                          reject_over=self.faults.reject_subscribe_over)
            for topic in outcome.succeeded:
                symbol = symbol_of(topic)
                if symbol is not None:
                    self._subscribers.setdefault(symbol, {})[conn] = None
            self._answer_subscription(conn, "subscribe", req_id, outcome)
        elif op == "unsubscribe":
            self.counters.unsubscribe_requests += 1
            outcome = conn.book.unsubscribe(msg.get("args"))
            for topic in outcome.succeeded:
                symbol = symbol_of(topic)
                subscribers = self._subscribers.get(symbol) if symbol is not None else None
                if subscribers is not None and symbol is not None:
                    subscribers.pop(conn, None)
                    if not subscribers:
                        del self._subscribers[symbol]
            self._answer_subscription(conn, "unsubscribe", req_id, outcome)
        else:
            shown = op if isinstance(op, str) and len(op) <= 40 else ""
            self._refuse(conn, req_id, shown, f"error:unknown op {shown!r}" if shown else "error:missing op")

    def _answer_subscription(self, conn: Connection, op: str, req_id: Any, outcome: Outcome) -> None:
        if not outcome.success:
            self.counters.subscribe_failures += 1
        conn.outbox.answer(frames.subscription_answer(
            style=self.faults.response_style, op=op, conn_id=conn.conn_id, req_id=req_id, outcome=outcome))

    def _refuse(self, conn: Connection, req_id: Any, op: Any, reason: str) -> None:
        self.counters.bad_requests += 1
        allowed, suppressed = self._log_throttle.allow("bad_request")
        if allowed:
            log.info("refused client request", extra={"conn_id": conn.conn_id, "reason": reason,
                                                      "suppressed": suppressed})
        conn.outbox.answer(frames.error_answer(conn_id=conn.conn_id, req_id=req_id, op=op, ret_msg=reason))

    # --- REST faults ------------------------------------------------------------------------
    def rest_call(self) -> HttpAnswer | None:
        """Count a REST call; the rate-limit answer to give instead, while that fault lasts."""
        self.counters.rest_calls += 1
        if self.faults.rest_rate_limit <= 0:
            return None
        self.faults = self.faults.updated({"rest_rate_limit": self.faults.rest_rate_limit - 1})
        form = form_for(self.faults.rest_rate_limit_mode, self._rate_limit_index)
        self._rate_limit_index += 1
        self.counters.rate_limits_sent += 1
        self.counters.rate_limits_by_form[form] = self.counters.rate_limits_by_form.get(form, 0) + 1
        return rate_limit_answer(form, now_ms=self.now_ms())

    def rest_refused(self, path: str, reason: str) -> None:
        """A REST call was answered retCode 10001 (a client bug worth seeing in the log)."""
        self.counters.rest_params_errors += 1
        allowed, suppressed = self._log_throttle.allow("rest_params")
        if allowed:
            log.info("refused REST call", extra={"path": path, "reason": reason, "suppressed": suppressed})

    # --- faults and state -------------------------------------------------------------------
    def set_faults(self, changes: dict[str, Any]) -> Faults:
        self.faults = self.faults.updated(changes)
        if "rest_rate_limit" in changes:
            self._rate_limit_index = 0
        log.info("faults changed", extra={"changes": changes, "faults": self.faults.as_dict()})
        return self.faults

    def clear_faults(self) -> Faults:
        """Every fault off; the answer forms (:data:`FORM_FAULTS`) go back to their start-up values.

        A form chosen at start is how this exchange speaks (e.g. a legacy client's test run), not
        a fault to heal, so clearing the faults of a drill must not switch it back to Bybit's.
        """
        start = self.options.faults
        self.faults = Faults(**{name: getattr(start, name) for name in FORM_FAULTS})
        self._rate_limit_index = 0
        log.info("faults cleared")
        return self.faults

    def state(self) -> dict[str, Any]:
        counters = asdict(self.counters)
        counters["frames_conflated"] += sum(c.outbox.conflated for c in self.connections.values())
        counters["connections_open"] = len(self.connections)
        counters["subscriptions"] = sum(len(c.book.topics) for c in self.connections.values())
        counters["instruments"] = {coin: len(listed) for coin, listed in self._by_coin.items()}
        return {"config": self.options.as_dict(), "faults": self.faults.as_dict(), "counters": counters,
                "time": self.now_ms()}
