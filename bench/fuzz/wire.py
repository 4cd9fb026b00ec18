"""Target 2: fuzzed frames over a real WebSocket into ``python -m ingest`` and a real redis-server.

A small Bybit-like exchange (:class:`FuzzExchange`, in the drill's event loop) answers
``instruments-info`` with a fixed listing and the option WebSocket's ping and subscribe
requests; once the ingest has subscribed every listed symbol it plays a script of cases —
well-formed pushes interleaved with mutated ones, raw junk, pongs and stray answers, some as
binary frames, invalid UTF-8 as text frames. Then, to prove the connection survives even a
frame it must refuse outright, one frame larger than ``INGEST_MAX_FRAME_BYTES`` (the ingest
closes with 1009 and reconnects) followed by a fresh well-formed push of every symbol.

The model of what Redis must hold is the cases' own verdicts (:mod:`bench.fuzz.cases`): per
symbol, the last accepted push by the documented stale rule (a push older than the one held is
dropped), every Bybit field it lacked stored empty. At the end:

- *corruption*: symbols whose ``option:`` hash is not exactly that push's fields plus ``ts``
  (and a numeric ``recv_ts``) — must be 0;
- no key outside the documented layout, and no ``option:`` key of a symbol never accepted;
- ``messages`` equals the number of accepted pushes; each frame error type's count lies
  between the cases that must produce it and the cases that may;
- the ingest is still running.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Final

import orjson
import redis.asyncio as aredis
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bench.fuzz.cases import Case
from common import errors, keys
from ingest.frames import TICKER_FIELDS
from tests.fixtures_components import FAST_ENV, keys_outside_layout
from tests.servers import LOOPBACK, ManagedProcess, free_port, python_env, repo_root

#: The error types a frame can cause (as opposed to connection or upstream problems).
FRAME_ERRORS: Final = (errors.BAD_JSON, errors.BAD_TYPE, errors.MISSING_FIELD, errors.BAD_NUMBER,
                       errors.BAD_SYMBOL, errors.UNSUBSCRIBED_SYMBOL, errors.BAD_TIMESTAMP,
                       errors.TOPIC_MISMATCH, errors.FRAME_TOO_LARGE, errors.UNKNOWN_MESSAGE)
MAX_FRAME_BYTES: Final = 65_536
#: The hash of the latest ticker holds every Bybit field; those the ticker lacked are empty.
BLANK: Final = dict.fromkeys(TICKER_FIELDS, "")
WS_PATH: Final = "/v5/public/option"
SETTLE_TIMEOUT: Final = 30.0


@dataclass
class WireResult:
    """Target 2's figures."""

    inputs: int = 0
    sent_binary: int = 0
    oversize_sent: int = 0
    accepted_expected: int = 0
    messages_counted: int = 0
    errors_counted: Counter[str] = field(default_factory=Counter)
    errors_min: Counter[str] = field(default_factory=Counter)
    errors_max: Counter[str] = field(default_factory=Counter)
    corrupted: list[str] = field(default_factory=list)
    outside_layout: list[str] = field(default_factory=list)
    unexpected_options: list[str] = field(default_factory=list)
    ingest_running: bool = False
    reconnected: bool = False
    connections: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def counts_ok(self) -> bool:
        counted, low, high = self.errors_counted, self.errors_min, self.errors_max
        in_bounds = all(low[t] <= counted[t] <= high[t] for t in FRAME_ERRORS)
        return in_bounds and self.messages_counted == self.accepted_expected


class FuzzExchange:
    """``instruments-info`` and the option stream on one port; plays scripts to the subscriber."""

    def __init__(self, listing: dict[str, list[str]]) -> None:
        self.listing = listing
        self.wanted = {s for symbols in listing.values() for s in symbols}
        self.current: ServerConnection | None = None
        self.ready = asyncio.Event()  # the current connection holds every listed symbol
        self.gone = asyncio.Event()  # the current connection closed
        self.connections = 0

    def process_request(self, _connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        coin = query.get("baseCoin", ["BTC"])[0]
        items = [{"symbol": s, "status": "Trading", "baseCoin": coin} for s in self.listing.get(coin, [])]
        body = orjson.dumps({"retCode": 0, "retMsg": "OK", "time": int(time.time() * 1000),
                             "result": {"category": "option", "list": items, "nextPageCursor": ""}})
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(HTTPStatus.OK.value, "OK", headers, body)

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.current = ws
        self.gone.clear()
        subscribed: set[str] = set()
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                op = msg.get("op")
                if op == "ping":
                    await ws.send(orjson.dumps({"req_id": msg.get("req_id"), "op": "pong",
                                                "args": [str(int(time.time() * 1000))]}).decode())
                elif op in ("subscribe", "unsubscribe"):
                    topics = {a.removeprefix("tickers.") for a in msg.get("args", [])}
                    if op == "subscribe":
                        subscribed |= topics
                    else:
                        subscribed -= topics
                    await ws.send(orjson.dumps({"success": True, "ret_msg": "", "conn_id": "fuzz",
                                                "req_id": msg.get("req_id"), "op": op}).decode())
                    if subscribed >= self.wanted:
                        self.ready.set()
        except ConnectionClosed:
            pass  # the ingest closed it (e.g. 1009 after the oversize frame): it reconnects
        finally:
            if self.current is ws:
                self.current = None
                self.ready.clear()
                self.gone.set()

    async def connection(self) -> ServerConnection:
        """The current connection once it has subscribed everything (the caller bounds the wait)."""
        while True:
            await self.ready.wait()
            if self.current is not None:
                return self.current

    async def play(self, cases: Sequence[Case]) -> int:
        """Send ``cases`` in order on the current connection; binary frames counted."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            ws = await self.connection()
        binary = 0
        for case in cases:
            if case.binary:
                binary += 1
                await ws.send(case.raw)
            else:
                await ws.send(case.raw, text=True)  # bytes as a text frame, invalid UTF-8 included
        return binary


class Model:
    """What Redis must hold: per symbol, the push the documented stale rule keeps."""

    def __init__(self) -> None:
        self.latest: dict[str, Case] = {}
        self.accepted = 0
        self.errors_min: Counter[str] = Counter()
        self.errors_max: Counter[str] = Counter()

    def feed(self, case: Case) -> None:
        if case.accepted:
            assert case.symbol is not None
            assert case.ts is not None
            self.accepted += 1
            held = self.latest.get(case.symbol)
            if held is None or (held.ts is not None and case.ts >= held.ts):
                self.latest[case.symbol] = case
        elif case.other == "answer":  # answers no request of this connection
            self.errors_min[errors.UNKNOWN_MESSAGE] += 1
            self.errors_max[errors.UNKNOWN_MESSAGE] += 1
        elif case.errors:
            if len(case.errors) == 1:
                self.errors_min[next(iter(case.errors))] += 1
            for error_type in case.errors:
                self.errors_max[error_type] += 1


def fresh_pushes(symbols: Sequence[str], now_ms: int) -> list[Case]:
    """One well-formed push per symbol, newer than anything in the script."""
    out = []
    for i, symbol in enumerate(symbols):
        data = {"symbol": symbol, "markPrice": f"{100 + i}.5", "lastPrice": "99", "bidPrice": "0",
                "askPrice": "101", "delta": "0.5", "theta": "-1.25"}
        ts = now_ms + 1
        raw = orjson.dumps({"topic": f"tickers.{symbol}", "ts": ts, "type": "snapshot", "data": data})
        out.append(Case("valid", raw, symbol=symbol, ts=ts, stored=data))
    return out


def oversize_frame(symbol: str, now_ms: int) -> bytes:
    """A push larger than the ingest's frame limit (it must close, count and reconnect)."""
    pad = "9" * (MAX_FRAME_BYTES + 1024)
    data = {"symbol": symbol, "markPrice": pad}
    return orjson.dumps({"topic": f"tickers.{symbol}", "ts": now_ms, "data": data})


async def _stats(r: aredis.Redis) -> dict[str, str]:
    doc = await r.hgetall(keys.STATS_GLOBAL)
    return {str(k): str(v) for k, v in doc.items()}


async def _wait_counts(r: aredis.Redis, *, messages: int, frame_errors: int) -> dict[str, str]:
    """Poll the ingest's stats until it has counted at least this much (or the deadline)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    stats: dict[str, str] = {}
    while time.monotonic() < deadline:
        stats = await _stats(r)
        counted = sum(int(stats.get(keys.error_field(t), 0)) for t in FRAME_ERRORS)
        if int(stats.get(keys.F_MESSAGES, 0)) >= messages and counted >= frame_errors:
            break
        await asyncio.sleep(0.1)
    return stats


async def _corrupted(r: aredis.Redis, model: Model) -> list[str]:
    """Symbols whose hash is not exactly their model push (after polling up to the deadline)."""
    deadline = time.monotonic() + 10.0
    while True:
        bad: list[str] = []
        pipe = r.pipeline(transaction=False)
        symbols = sorted(model.latest)
        for symbol in symbols:
            pipe.hgetall(keys.option_key(symbol))
        for symbol, stored in zip(symbols, await pipe.execute(), strict=True):
            case = model.latest[symbol]
            assert case.stored is not None
            got = dict(stored)
            recv = got.pop(keys.F_OPTION_RECV_TS, "")
            want = {**BLANK, **case.stored, keys.F_OPTION_TS: str(case.ts)}
            if got != want or not recv.isdigit():
                diff = {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want))
                        if got.get(k) != want.get(k)}
                bad.append(f"{symbol}: {dict(list(diff.items())[:3])}")
        if not bad or time.monotonic() > deadline:
            return bad
        await asyncio.sleep(0.2)


async def run_wire(cases: Sequence[Case], *, listing: dict[str, list[str]], redis_url: str,
                   workdir: Path) -> WireResult:
    """Play ``cases`` (then the oversize frame and a fresh round) to a real ingest; check Redis."""
    started = time.monotonic()
    result = WireResult(inputs=len(cases) + 1)
    exchange = FuzzExchange(listing)
    port = free_port()
    symbols = sorted(exchange.wanted)
    coins = sorted(listing)
    env = {**FAST_ENV, "REDIS_URL": redis_url, "BYBIT_COINS": ",".join(coins),
           "BYBIT_WS_URL": f"ws://{LOOPBACK}:{port}{WS_PATH}", "BYBIT_REST_URL": f"http://{LOOPBACK}:{port}",
           "INGEST_DATA_TIMEOUT": "120", "INGEST_MAX_FRAME_BYTES": str(MAX_FRAME_BYTES), "LOG_FORMAT": "json"}
    ingest = ManagedProcess([sys.executable, "-m", "ingest"], workdir / "ingest-wire.log",
                            env=python_env(**env), cwd=str(repo_root()))
    r = aredis.Redis.from_url(redis_url, decode_responses=True)
    model = Model()
    for case in cases:
        model.feed(case)
    try:
        async with serve(exchange.handler, LOOPBACK, port, process_request=exchange.process_request,
                         compression=None, max_size=2**20):
            ingest.start()
            result.sent_binary = await exchange.play(cases)
            await _wait_counts(r, messages=model.accepted, frame_errors=sum(model.errors_min.values()))
            # The frame it must refuse outright: the ingest closes (1009), counts it and reconnects.
            async with asyncio.timeout(SETTLE_TIMEOUT):
                first = await exchange.connection()
            await first.send(oversize_frame(symbols[0], int(time.time() * 1000)), text=True)
            result.oversize_sent = 1
            model.errors_min[errors.FRAME_TOO_LARGE] += 1
            model.errors_max[errors.FRAME_TOO_LARGE] += 1
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await exchange.gone.wait()
            fresh = fresh_pushes(symbols, int(time.time() * 1000) + 5_000)
            await exchange.play(fresh)
            result.reconnected = exchange.connections >= 2
            for case in fresh:
                model.feed(case)
            await _wait_counts(r, messages=model.accepted, frame_errors=sum(model.errors_min.values()))
            result.corrupted = await _corrupted(r, model)
            stats = await _stats(r)
            result.outside_layout = await asyncio.to_thread(_outside_layout, redis_url, coins)
            option_keys = {k async for k in r.scan_iter(match=keys.OPTION_PREFIX + "*", count=1000)}
            result.unexpected_options = sorted(k for k in option_keys
                                               if k[len(keys.OPTION_PREFIX):] not in model.latest)
            result.ingest_running = ingest.running
            result.connections = exchange.connections
    finally:
        ingest.stop()
        await r.aclose()
    result.accepted_expected = model.accepted
    result.messages_counted = int(stats.get(keys.F_MESSAGES, 0))
    result.errors_counted = Counter({k[len(keys.ERRORS_FIELD_PREFIX):]: int(v) for k, v in stats.items()
                                     if k.startswith(keys.ERRORS_FIELD_PREFIX) and int(v)})
    result.errors_min, result.errors_max = model.errors_min, model.errors_max
    result.seconds = time.monotonic() - started
    return result


def _outside_layout(redis_url: str, coins: Sequence[str]) -> list[str]:
    import redis

    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        found: list[str] = keys_outside_layout(client, coins)
    return found


def listing_of(symbols: Sequence[str]) -> dict[str, list[str]]:
    """coin -> its symbols (the exchange's listing)."""
    out: dict[str, list[str]] = {}
    for symbol in symbols:
        out.setdefault(symbol.split("-", 1)[0], []).append(symbol)
    return out
