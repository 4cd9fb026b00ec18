"""Where every accepted ticker goes: counted, its lag observed, coalesced (pure).

Called once per valid frame from the connections' read loops, so it does the least
possible: three counter bumps, one histogram observation, one dict store. Rendering the
Redis command waits for the flush (:class:`~ingest.coalescer.Entry`), so a frame that a
newer one replaces before then costs nothing more.

A ticker that lacks some of Bybit's fields is written with those fields empty (the decoder's
"empty string stands for an absent value"): ``HSET`` only overwrites the fields it names, so
without the blanks a field of an older ticker would survive beside the newer ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ingest.coalescer import Coalescer
from ingest.frames import TICKER_FIELDS, Ticker
from ingest.lag import LagHistogram
from ingest.stats import Counters

_BLANK: Final[dict[str, str]] = dict.fromkeys(TICKER_FIELDS, "")
_COMPLETE: Final = len(TICKER_FIELDS)


def complete(data: Mapping[str, str]) -> Mapping[str, str]:
    """A decoded ticker's fields with every Bybit field there, those it lacks empty (what is stored).

    ``data`` holds only known fields (the decoder drops the rest), so it is complete when all
    are there.
    """
    return data if len(data) == _COMPLETE else {**_BLANK, **data}


class TickerSink:
    """Accepts validated tickers on behalf of all connections."""

    def __init__(self, *, coalescer: Coalescer, counters: Counters, lag: LagHistogram) -> None:
        self.coalescer = coalescer
        self.counters = counters
        self.lag = lag

    def accept(self, ticker: Ticker, coin: str, recv_ms: int) -> None:
        counters = self.counters
        counters.messages += 1
        counters.exact_tickers += 1
        counters.messages_by_coin[coin] += 1
        self.lag.observe((recv_ms - ticker.ts) / 1000.0)
        self.coalescer.put_ticker(ticker.symbol, coin, ticker.ts, recv_ms, complete(ticker.data))

    def accept_canonical(self, symbol: str, coin: str, ts: int, recv_ms: int, data: bytes) -> None:
        """A frame of Bybit's own shape (:mod:`ingest.canonical`): ``data`` is its object's bytes.

        Every field is there by that shape, so nothing needs blanking.
        """
        counters = self.counters
        counters.messages += 1
        counters.messages_by_coin[coin] += 1
        self.lag.observe((recv_ms - ts) / 1000.0)
        self.coalescer.put_ticker(symbol, coin, ts, recv_ms, data)

    def accept_rendered(self, symbol: str, coin: str, ts: int, recv_ms: int, command: bytes) -> None:
        """A frame of Bybit's own shape that the C scanner (:func:`ingest.canonical.native_scan`)
        matched and rendered: ``command`` is its ``HSET``, byte for byte what a flush would render."""
        counters = self.counters
        counters.messages += 1
        counters.messages_by_coin[coin] += 1
        self.lag.observe((recv_ms - ts) / 1000.0)
        self.coalescer.put(symbol, coin, ts, recv_ms, command)
