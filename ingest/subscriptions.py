"""One connection's subscriptions: what to send next and what each answer means (sans-I/O).

The connection owns a *wanted* set of symbols (its shard). On every new socket all of
them are subscribed again, in requests of at most ``chunk`` topics; while the socket
lives, symbols added to or removed from the shard become subscribe/unsubscribe
requests on that socket only. Answers are matched to what they answer by *topic*
first, because that is what Bybit's option stream gives: its answers carry no
``req_id``, ``op`` or ``ret_msg`` (docs 2023-2026 and live captures, see
``tests/data/bybit/SOURCES.md``):

- COMMAND_RESP form (``successTopics``/``failTopics``): exactly the topics it lists are
  confirmed or failed, whatever its ``req_id``; each is taken off the oldest request in
  flight that holds it. Topics of a request the answer does not list stay waiting.
- "op" form (no topic lists): matched by ``req_id`` when it has one, else to the oldest
  request in flight on the socket. ``success: true`` confirms the whole request;
  ``success: false`` names the failed topics in ``ret_msg`` when only some failed; a topic
  it calls "already subscribed" is in fact subscribed. When ``ret_msg`` names none of the
  request's topics, the request was rejected as a whole (too many args, args too long...).

A request rejected as a whole is split: its topics are queued again and the chunk
size is halved (down to 1), since Bybit bounds requests and connections by size; each
request accepted whole doubles it again, up to its configured size.
Other failures are retried ``max_retries`` times (counted each time); then the topic
is parked until the next reconnect or refresh, or until the connection retries its parked
topics (a fifth of the refresh interval, then doubling; :meth:`retry_parked`). Topics
still unanswered after the timeout are queued again and reported as *unanswered*, a
failure of their own (counted once per request, apart from topics the exchange refused).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from ingest.frames import TOPIC_PREFIX, CommandAnswer, topics_named

SUBSCRIBE: Final = "subscribe"
UNSUBSCRIBE: Final = "unsubscribe"
_MORE: Final = re.compile(r"\band \d+ more\b|\.\.\.")
#: Seconds a request size rejected as a whole caps the chunk's regrowth (then it is probed again).
SIZE_MEMORY: Final = 60.0


@dataclass(frozen=True, slots=True)
class Request:
    """One request on the wire."""

    req_id: str
    op: str
    symbols: tuple[str, ...]
    sent_at: float
    attempts: tuple[int, ...] = ()  # failed attempts so far, per symbol (subscribe only)

    @property
    def args(self) -> list[str]:
        return [TOPIC_PREFIX + s for s in self.symbols]


@dataclass(slots=True)
class Result:
    """What one answer (or timeout) changed."""

    confirmed: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)  # gave up until the next reconnect/refresh
    split: bool = False  # the request was rejected as a whole and will be resent smaller
    failed: bool = False  # the request did not fully succeed (counted as subscribe_failed)
    unanswered: bool = False  # no answer within the timeout (counted as subscribe_unanswered)
    reason: str = ""


@dataclass(slots=True)
class _InFlight:
    """A request on the wire and those of its symbols no answer has spoken of yet."""

    request: Request
    open: set[str]
    failed: bool = False


def _ordered_symbols(topics: Iterable[str]) -> list[str]:
    """Symbols of ``tickers.*`` topics, in the answer's order, each once."""
    n = len(TOPIC_PREFIX)
    return list(dict.fromkeys(t[n:] for t in topics if t.startswith(TOPIC_PREFIX)))


class Subscriptions:
    """Wanted, confirmed, in-flight and queued topics of one connection."""

    def __init__(self, *, name: str, chunk: int, max_retries: int = 3) -> None:
        if chunk < 1 or max_retries < 0:
            raise ValueError("chunk must be >= 1 and max_retries >= 0")
        self.name = name
        self.chunk = chunk
        self.max_chunk = chunk
        self._too_big: tuple[int, float] | None = None  # (smallest size rejected whole, when)
        self.max_retries = max_retries
        self.wanted: set[str] = set()
        self.confirmed: set[str] = set()
        self.parked: set[str] = set()
        self._to_subscribe: dict[str, int] = {}  # symbol -> attempts so far (ordered)
        self._to_unsubscribe: dict[str, None] = {}
        self._in_flight: dict[str, _InFlight] = {}  # by req_id, oldest first
        self._holders: dict[str, list[str]] = {}  # symbol -> req_ids of requests holding it, oldest first
        self._seq = itertools.count(1)
        self.connected = False

    # --- what the connection is asked to hold -----------------------------------------------
    def add(self, symbols: Iterable[str]) -> None:
        """Symbols newly assigned to this connection (subscribed now if connected)."""
        for symbol in symbols:
            if symbol in self.wanted:
                continue
            self.wanted.add(symbol)
            self._to_unsubscribe.pop(symbol, None)
            if self.connected:
                self._to_subscribe.setdefault(symbol, 0)

    def remove(self, symbols: Iterable[str]) -> None:
        """Symbols no longer assigned (delivered): unsubscribed if they were subscribed."""
        for symbol in symbols:
            if symbol not in self.wanted:
                continue
            self.wanted.discard(symbol)
            self.parked.discard(symbol)
            queued = self._to_subscribe.pop(symbol, None) is not None
            if self.connected and not queued:
                self._to_unsubscribe[symbol] = None

    def retry_parked(self) -> int:
        """Queue the topics that ran out of retries again; returns how many."""
        parked = [s for s in self.parked if s in self.wanted]
        self.parked.clear()
        if self.connected:
            for symbol in parked:
                self._to_subscribe.setdefault(symbol, 0)
        return len(parked)

    # --- socket lifecycle ---------------------------------------------------------------------
    def on_connected(self) -> None:
        """A new socket: nothing is subscribed on it yet; queue every wanted symbol."""
        self.connected = True
        self.confirmed.clear()
        self.parked.clear()
        self._in_flight.clear()
        self._holders.clear()
        self._to_unsubscribe.clear()
        self._to_subscribe = dict.fromkeys(sorted(self.wanted), 0)

    def on_disconnected(self) -> None:
        self.connected = False
        self.confirmed.clear()
        self._in_flight.clear()
        self._holders.clear()
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()

    @property
    def settled(self) -> bool:
        """Nothing queued and nothing waiting for an answer."""
        return not self._to_subscribe and not self._to_unsubscribe and not self._in_flight

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # --- requests ------------------------------------------------------------------------------
    def next_request(self, now: float) -> Request | None:
        """The next request to send (unsubscribes first), or None when nothing is queued."""
        if not self.connected:
            return None
        if self._to_unsubscribe:
            batch = list(itertools.islice(self._to_unsubscribe, self.chunk))
            for symbol in batch:
                del self._to_unsubscribe[symbol]
            op = UNSUBSCRIBE
            attempts: tuple[int, ...] = ()
        elif self._to_subscribe:
            batch = list(itertools.islice(self._to_subscribe, self.chunk))
            attempts = tuple(self._to_subscribe.pop(s) for s in batch)
            op = SUBSCRIBE
        else:
            return None
        request = Request(f"{self.name}-{next(self._seq)}", op, tuple(batch), now, attempts)
        self._in_flight[request.req_id] = _InFlight(request, set(batch))
        for symbol in batch:
            self._holders.setdefault(symbol, []).append(request.req_id)
        return request

    @staticmethod
    def _attempts(request: Request) -> dict[str, int]:
        return dict(zip(request.symbols, request.attempts, strict=True))

    def on_answer(self, answer: CommandAnswer) -> Result | None:
        """Apply an answer; None when it speaks of nothing this socket asked for (e.g. a stale one)."""
        if answer.success_topics or answer.fail_topics:
            return self._on_topics(answer)
        entry = self._match(answer.req_id)
        if entry is None:
            return None
        self._close(entry)
        return self._on_request(entry, answer)

    def _match(self, req_id: str | None) -> _InFlight | None:
        """The request an answer without topic lists is for: by ``req_id``, else the oldest."""
        if req_id:
            return self._in_flight.get(req_id)
        return next(iter(self._in_flight.values()), None)

    def _close(self, entry: _InFlight) -> None:
        req_id = entry.request.req_id
        self._in_flight.pop(req_id, None)
        for symbol in entry.open:
            holders = self._holders.get(symbol)
            if holders is not None and req_id in holders:
                holders.remove(req_id)
                if not holders:
                    del self._holders[symbol]
        entry.open.clear()

    def _take(self, symbol: str) -> _InFlight | None:
        """Answer ``symbol`` on the oldest request in flight holding it (closed when it was its last)."""
        holders = self._holders.get(symbol)
        if not holders:
            return None
        req_id = holders.pop(0)
        if not holders:
            del self._holders[symbol]
        entry = self._in_flight[req_id]
        entry.open.discard(symbol)
        if not entry.open:
            del self._in_flight[req_id]
        return entry

    def _on_topics(self, answer: CommandAnswer) -> Result | None:
        """A COMMAND_RESP answer: exactly the topics it lists, on whichever requests hold them."""
        result = Result(reason=answer.ret_msg)
        ok_topics = _ordered_symbols(answer.success_topics or ())
        good_set = set(ok_topics)
        bad_topics = [s for s in _ordered_symbols(answer.fail_topics or ()) if s not in good_set]
        already = {s for s, clause in _named(answer.ret_msg, set(bad_topics)).items()
                   if "already" in clause.lower()}
        spoken: dict[str, tuple[_InFlight, list[str], list[str]]] = {}
        matched = False
        for symbol, good in [(s, True) for s in ok_topics] + [(s, False) for s in bad_topics]:
            entry = self._take(symbol)
            if entry is None:
                matched |= self._unsolicited(symbol, good or symbol in already, result)
                continue
            matched = True
            _, oks, fails = spoken.setdefault(entry.request.req_id, (entry, [], []))
            (oks if good or symbol in already else fails).append(symbol)
        for entry, oks, refused in spoken.values():
            request = entry.request
            if request.op == UNSUBSCRIBE:
                self.confirmed.difference_update(oks)
                self.confirmed.difference_update(refused)
                result.failed |= bool(refused)
                continue
            attempts = self._attempts(request)
            self._confirm(oks, result)
            fails = [s for s in refused if s not in self.confirmed and s in self.wanted]
            whole = (not answer.success and not oks and len(fails) == len(request.symbols) > 1
                     and not _named(answer.ret_msg, set(fails)))
            if whole:
                self._split(request, fails, attempts, result)
            else:
                self._requeue(fails, attempts, result)
            entry.failed |= bool(fails)
            result.failed |= bool(fails)
            if request.req_id not in self._in_flight and not entry.failed:
                self._grow(request.sent_at)
        return result if matched else None

    def _unsolicited(self, symbol: str, good: bool, result: Result) -> bool:
        """A topic no request in flight holds (a late answer after a timeout): True if it is ours.

        A confirmation is the truth about the socket, late or not; a failure of a topic already
        confirmed is a repeat answered "already subscribed" and changes nothing.
        """
        if symbol not in self.wanted:
            return False
        if good and symbol not in self.confirmed:
            self._to_subscribe.pop(symbol, None)
            self._confirm([symbol], result)
        return good or symbol in self.confirmed

    def _confirm(self, symbols: Iterable[str], result: Result) -> None:
        for symbol in symbols:
            if symbol in self.wanted and symbol not in self.confirmed:
                self.confirmed.add(symbol)
                result.confirmed.append(symbol)

    def _split(self, request: Request, symbols: list[str], attempts: dict[str, int], result: Result) -> None:
        """Rejected for its size: resend the same topics in smaller requests (no attempt counted)."""
        self._too_big = (len(request.symbols), request.sent_at)
        self.chunk = max(1, min(self.chunk, len(request.symbols) // 2))
        result.split = True
        for symbol in symbols:
            self._to_subscribe[symbol] = attempts[symbol]
        result.retrying.extend(symbols)

    def _on_request(self, entry: _InFlight, answer: CommandAnswer) -> Result:
        """An "op" form answer, for the whole of one request."""
        request = entry.request
        if request.op == UNSUBSCRIBE:
            self.confirmed.difference_update(request.symbols)
            return Result(failed=not answer.success, reason=answer.ret_msg)
        attempts = self._attempts(request)
        ok, failed, whole = self._interpret(request, answer)
        result = Result(failed=bool(failed), reason=answer.ret_msg)
        live = [s for s in request.symbols if s in self.wanted]
        self._confirm([s for s in live if s in ok], result)
        retry = [s for s in live if s in failed]
        if whole and len(request.symbols) == 1:
            self._too_big = None  # even one topic is refused: not a size limit
        if whole and len(request.symbols) > 1:
            self._split(request, retry, attempts, result)
            return result
        self._requeue(retry, attempts, result)
        if not failed and not whole:
            self._grow(request.sent_at)
        return result

    def _grow(self, now: float) -> None:
        """Accepted whole: double the chunk towards its configured size.

        A split is a lesson about one moment, not forever (the chaos drill: after rejections
        ended, a connection left at 1 topic per request took ~70 s to subscribe 700 topics, on
        every reconnect after that). A size rejected in the last :data:`SIZE_MEMORY` seconds
        is not tried again meanwhile, so a real limit costs one failed request per minute.
        """
        grown = min(self.max_chunk, self.chunk * 2)
        if self._too_big is not None:
            size, when = self._too_big
            if now - when < SIZE_MEMORY:
                grown = min(grown, size - 1)
        self.chunk = max(self.chunk, grown)

    def _requeue(self, symbols: list[str], attempts: dict[str, int], result: Result) -> None:
        for symbol in symbols:
            tries = attempts.get(symbol, 0) + 1
            if tries > self.max_retries:
                self.parked.add(symbol)
                result.parked.append(symbol)
            else:
                self._to_subscribe[symbol] = tries
                result.retrying.append(symbol)

    @staticmethod
    def _interpret(request: Request, answer: CommandAnswer) -> tuple[set[str], set[str], bool]:
        """(confirmed, failed, rejected-as-a-whole) for the request's symbols, from an "op" answer."""
        mine = set(request.symbols)
        if answer.success:
            return mine, set(), False
        named = _named(answer.ret_msg, mine)
        if not named:
            return set(), mine, True
        already = {s for s, clause in named.items() if "already" in clause.lower()}
        failed = set(named) - already
        if _MORE.search(answer.ret_msg):
            # The message was cut short: topics it did not name may have failed too.
            # Resending them is safe, a subscribed one comes back "already subscribed".
            failed |= mine - set(named)
        return mine - failed, failed, False

    def expire(self, now: float, timeout: float) -> list[Result]:
        """Requests with topics unanswered for ``timeout`` seconds: those topics are queued again."""
        results = []
        for entry in list(self._in_flight.values()):
            request = entry.request
            if now - request.sent_at < timeout:
                continue
            unanswered = [s for s in request.symbols if s in entry.open]
            self._close(entry)
            result = Result(failed=True, unanswered=True, reason="no answer")
            if request.op == SUBSCRIBE:
                live = [s for s in unanswered if s in self.wanted and s not in self.confirmed]
                self._requeue(live, self._attempts(request), result)
            results.append(result)
        return results


def _named(ret_msg: str, mine: set[str]) -> dict[str, str]:
    n = len(TOPIC_PREFIX)
    return {t[n:]: clause for t, clause in topics_named(ret_msg).items() if t[n:] in mine}
