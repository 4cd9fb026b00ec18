"""Typed keys of the aiohttp application: the exchange every handler serves, the open sockets."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from simulator.exchange import Exchange

EXCHANGE: Final = web.AppKey("exchange", Exchange)
#: Open WebSockets, so shutdown can tell each client it is going away (close code 1001).
SOCKETS: Final = web.AppKey[set[web.WebSocketResponse]]("sockets")
