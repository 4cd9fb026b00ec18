"""The public option WebSocket ``/v5/public/option``: a thin shell around the exchange.

Per connection, two tasks: the reader hands each client message to the exchange; the writer
drains the connection's outbox onto the socket. A slow client only ever blocks its own writer
(aiohttp's writer waits for the socket to drain), never the push loop or other clients; its
backlog is bounded because the outbox conflates tickers per symbol.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import WSMsgType, web

from simulator.appkeys import EXCHANGE, SOCKETS
from simulator.connection import Connection
from simulator.exchange import Exchange

log = logging.getLogger("simulator.ws")

PATH: Final = "/v5/public/option"
MAX_MESSAGE_BYTES: Final = 1 << 20  # a full 2,000-topic subscribe is ~70 kB


async def _read(ws: web.WebSocketResponse, exchange: Exchange, conn: Connection) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            exchange.handle_message(conn, msg.data)
        elif msg.type == WSMsgType.ERROR:
            log.info("connection error", extra={"conn_id": conn.conn_id, "error": repr(ws.exception())})
            return


async def _write(ws: web.WebSocketResponse, exchange: Exchange, conn: Connection) -> None:
    outbox = conn.outbox
    while True:
        await outbox.wait()
        tickers = 0
        for frame, is_ticker in outbox.drain():
            await ws.send_frame(frame, WSMsgType.TEXT)
            tickers += is_ticker
        exchange.frames_written(conn, tickers)


async def option_stream(request: web.Request) -> web.StreamResponse:
    """Serve one client of the public option stream until it or the exchange hangs up."""
    exchange = request.app[EXCHANGE]
    ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    transport = request.transport

    def abort() -> None:
        if transport is not None:
            transport.abort()

    conn = exchange.open_connection(abort)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    log.info("connection opened", extra={"conn_id": conn.conn_id, "peer": request.remote})
    try:
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(_write(ws, exchange, conn))
            await _read(ws, exchange, conn)
            writer.cancel()
    except* ConnectionError as group:
        # Writing to a connection that is going away: the client left, was dropped or timed out.
        exchange.counters.send_errors += 1
        log.debug("write failed", extra={"conn_id": conn.conn_id, "error": repr(group.exceptions[0])})
    finally:
        sockets.discard(ws)
        exchange.close_connection(conn)
        log.info("connection closed", extra={"conn_id": conn.conn_id, "aborted": conn.aborted,
                                             "topics": len(conn.book.topics)})
    return ws


def routes() -> list[web.RouteDef]:
    return [web.get(PATH, option_stream)]
