"""A stand-in for Bybit that answers only with messages shaped from the real captures.

The simulator is our own model of Bybit; this is deliberately not. Every message it sends is a
capture from ``tests/data/bybit/`` with only its variable parts replaced (symbol, topic, id, ts,
the topic lists of a subscribe answer, the page's items and cursor), so a client that passes
against it passes against the shapes Bybit really sends, whatever the simulator does:

- ``GET /v5/market/instruments-info``: pages shaped like the live capture
  ``rest_instruments_option_page_roq.json``, items from its first item, percent-encoded cursors
  ``0%2C<offset>`` that are honoured only when sent back unchanged (anything else gets the 10001
  body of ``rest_error_10001_roq.json``);
- WebSocket subscribe: ``ws_subscribe_option_command_resp_roq.json`` (COMMAND_RESP, no req_id, op
  or ret_msg), failed topics in ``failTopics``;
- ping: ``ws_pong_option_docs.json`` (``{"args": ["<ms>"], "op": "pong"}``);
- tickers: ``ws_ticker_option_docs.json`` and ``ws_ticker_option_empty_book_roq.json`` in turn,
  re-stamped (:func:`tests.bybit_corpus.restamp_ticker`), ten times a second.

It runs its own event loop in a thread, so synchronous tests can poll Redis while it serves.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.bybit_corpus import load, restamp_ticker
from tests.servers import LOOPBACK, free_port

TICKER_CAPTURES = ("ws_ticker_option_docs", "ws_ticker_option_empty_book_roq")
PUSH_INTERVAL = 0.1


@dataclass
class Listed:
    """One instrument of the replayed listing."""

    symbol: str
    status: str = "Trading"


@dataclass
class Recorded:
    """What the client did, for tests to assert on."""

    raw_queries: list[str] = field(default_factory=list)
    subscribe_requests: list[dict[str, Any]] = field(default_factory=list)
    pings: int = 0
    connections: int = 0
    tickers_sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # symbol -> last push


class ReplayExchange:
    """Bybit's option REST listing and public stream, replayed from captures."""

    def __init__(self, listing: list[Listed], *, page_size: int = 2) -> None:
        self.listing = listing
        self.page_size = page_size
        self.silent = False  # stop pushing tickers; pings are still answered
        self.fail_once: set[str] = set()  # topics whose first subscribe is refused in failTopics
        self.never_answer = False  # swallow subscribe requests (no answer at all)
        self.recorded = Recorded()
        self.rest_port = free_port()
        self.ws_port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="replay-exchange", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._lock = threading.Lock()

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.ws_port}/v5/public/option"

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("replay exchange did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, self.rest_port).start()
        async with serve(self._stream, LOOPBACK, self.ws_port):
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

    # --- REST -------------------------------------------------------------------------------
    async def _instruments(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_query_string
        with self._lock:
            self.recorded.raw_queries.append(raw)
        offset = 0
        raw_cursor = next((part.removeprefix("cursor=") for part in raw.split("&")
                           if part.startswith("cursor=")), "")
        if raw_cursor:
            # Bybit's cursor text is "0%2C<n>"; only the bytes it handed out are accepted.
            head, sep, tail = raw_cursor.partition("0%2C")
            if head or not sep or not tail.isdigit():
                return self._json(load("rest_error_10001_roq"))
            offset = int(tail)
        template = load("rest_instruments_option_page_roq")
        item_template = template["result"]["list"][0]
        page = self.listing[offset: offset + self.page_size]
        items = []
        for listed in page:
            item = copy.deepcopy(item_template)
            item["symbol"] = listed.symbol
            item["status"] = listed.status
            item["optionsType"] = "Call" if listed.symbol.split("-")[3] == "C" else "Put"
            items.append(item)
        end = offset + len(page)
        template["result"]["list"] = items
        template["result"]["nextPageCursor"] = f"0%2C{end}" if end < len(self.listing) else ""
        template["time"] = int(time.time() * 1000)
        return self._json(template)

    @staticmethod
    def _json(doc: Any) -> web.Response:
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    # --- WebSocket --------------------------------------------------------------------------
    async def _stream(self, ws: ServerConnection) -> None:
        with self._lock:
            self.recorded.connections += 1
        subscribed: dict[str, None] = {}
        pusher = asyncio.create_task(self._push(ws, subscribed))
        try:
            async for message in ws:
                doc = orjson.loads(message)
                if doc.get("op") == "ping":
                    with self._lock:
                        self.recorded.pings += 1
                    pong = load("ws_pong_option_docs")
                    pong["args"] = [str(int(time.time() * 1000))]
                    await ws.send(orjson.dumps(pong).decode())
                elif doc.get("op") == "subscribe":
                    with self._lock:
                        self.recorded.subscribe_requests.append(doc)
                    if self.never_answer:
                        continue
                    answer = load("ws_subscribe_option_command_resp_roq")
                    failed = [t for t in doc["args"] if t in self.fail_once]
                    self.fail_once.difference_update(failed)
                    ok = [t for t in doc["args"] if t not in failed]
                    answer["success"] = not failed
                    answer["data"] = {"failTopics": failed, "successTopics": ok}
                    for topic in ok:
                        subscribed[topic.removeprefix("tickers.")] = None
                    await ws.send(orjson.dumps(answer).decode())
        except ConnectionClosed:
            pass  # the client went away: the normal end of a connection
        finally:
            pusher.cancel()

    async def _push(self, ws: ServerConnection, subscribed: dict[str, None]) -> None:
        captures = [load(name) for name in TICKER_CAPTURES]
        while True:
            await asyncio.sleep(PUSH_INTERVAL)
            if self.silent:
                continue
            for n, symbol in enumerate(list(subscribed)):
                doc = restamp_ticker(captures[n % len(captures)], int(time.time() * 1000))
                old_symbol = doc["data"]["symbol"]
                doc["topic"] = f"tickers.{symbol}"
                doc["id"] = doc["id"].replace(old_symbol, symbol)
                doc["data"]["symbol"] = symbol
                with self._lock:
                    self.recorded.tickers_sent[symbol] = doc
                try:
                    await ws.send(orjson.dumps(doc).decode())
                except ConnectionClosed:
                    return
