"""Where every accepted ticker goes: counted, its lag observed, rendered, coalesced (pure).

Called once per valid frame from the connections' read loops, so it does the least
possible: three counter bumps, one histogram observation, one RESP rendering, one dict store.
"""

from __future__ import annotations

from common.keys import OPTION_PREFIX
from ingest.coalescer import Coalescer
from ingest.frames import Ticker
from ingest.lag import LagHistogram
from ingest.resp import hset_ticker
from ingest.stats import Counters


class TickerSink:
    """Accepts validated tickers on behalf of all connections."""

    def __init__(self, *, coalescer: Coalescer, counters: Counters, lag: LagHistogram) -> None:
        self.coalescer = coalescer
        self.counters = counters
        self.lag = lag

    def accept(self, ticker: Ticker, coin: str, recv_ms: int) -> None:
        counters = self.counters
        counters.messages += 1
        counters.messages_by_coin[coin] += 1
        self.lag.observe((recv_ms - ticker.ts) / 1000.0)
        symbol, ts = ticker.symbol, ticker.ts
        if self.coalescer.is_stale(symbol, ts):
            self.coalescer.stale_dropped += 1
            return
        command = hset_ticker(OPTION_PREFIX + symbol, ticker.data, ts, recv_ms)
        self.coalescer.put(symbol, coin, ts, recv_ms, command)
