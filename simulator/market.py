"""The market model: an index random walk per coin and option tickers derived from it.

Pure and deterministic for a seed: ``step()`` moves every coin's index by a geometric random walk
and drifts its implied-volatility level; ``ticker()`` prices one instrument with Black-76 on the
expiry's forward (mark price, IV smile, greeks), quotes a bid/ask around the mark, and lets
occasional trades move last price, volume and open interest. A ticker is computed lazily, at most
once per step, so a push cycle only prices the symbols somebody subscribed to.

Values are strings, formatted as Bybit formats them: fixed decimals, no exponent, no trailing
zeros ("7.86976724", "0.4896", "0").

The market is uneven, as Bybit's is (captures show both): each instrument draws a profile once,
from the seed and its symbol, so it does not depend on listing order. A share of instruments has
an empty book side (``bidPrice``/``bidSize``/``bidIv`` all "0", or the same on the ask side):
more often far out of the money and for new listings. A share has never traded: ``lastPrice``,
``highPrice24h``, ``lowPrice24h``, ``openInterest``, ``volume24h``, ``turnover24h``,
``totalVolume``, ``totalTurnover`` and ``change24h`` are all "0" and stay so. Empty strings are
never sent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Final

import orjson

from simulator.listings import CoinSpec, Instrument, coin_spec
from simulator.pricing import black76

SECONDS_PER_YEAR: Final = 365.0 * 86400.0
#: Field order of a Bybit option ticker (WebSocket names).
TICKER_FIELDS: Final = (
    "symbol", "bidPrice", "bidSize", "bidIv", "askPrice", "askSize", "askIv", "lastPrice",
    "highPrice24h", "lowPrice24h", "markPrice", "indexPrice", "markPriceIv", "underlyingPrice",
    "openInterest", "turnover24h", "volume24h", "totalVolume", "totalTurnover", "delta", "gamma",
    "vega", "theta", "predictedDeliveryPrice", "change24h",
)
#: The REST ``/v5/market/tickers`` names of the fields whose names differ from the WebSocket's.
REST_FIELD_NAMES: Final = {
    "bidPrice": "bid1Price", "bidSize": "bid1Size", "bidIv": "bid1Iv", "askPrice": "ask1Price",
    "askSize": "ask1Size", "askIv": "ask1Iv", "markPriceIv": "markIv",
}
PREDICTED_DELIVERY_WINDOW_MS: Final = 30 * 60 * 1000  # Bybit shows it in the last 30 minutes
_TRADE_PROBABILITY: Final = 0.03
#: |delta| below this is "far out of the money": thin books, rarely traded.
FAR_OTM_DELTA: Final = 0.05
#: Chances, per instrument, of never having traded / of an empty bid side / of an empty ask side:
#: (ordinary, far out of the money, new listing).
NEVER_TRADED: Final = (0.10, 0.50, 1.0)
EMPTY_BID: Final = (0.04, 0.40, 0.50)
EMPTY_ASK: Final = (0.02, 0.10, 0.30)
_BASIS: Final = 0.05  # annual carry of the forward over the index


#: ``"%.<places>f"`` for every number of places a ticker uses: ``%`` with a ready format is a
#: third cheaper than an f-string whose precision is itself a field, and a ticker has 25 numbers.
_FIXED: Final = tuple(f"%.{places}f" for places in range(32))


def num(value: float, places: int) -> str:
    """``value`` with at most ``places`` decimals, trailing zeros dropped, never "-0"."""
    text = _FIXED[places] % value
    if places:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" or not text else text


def _decimals(step: str) -> int:
    return len(step.split(".")[1]) if "." in step else 0


@dataclass
class CoinState:
    """One coin's index and implied-volatility level."""

    spec: CoinSpec
    index: float
    iv_level: float


@dataclass
class Quote:
    """An instrument's ticker as of one market step, and its mutable trading statistics."""

    instrument: Instrument
    last: float = 0.0
    open24: float = 0.0
    high24: float = 0.0
    low24: float = 0.0
    open_interest: float = 0.0
    volume24: float = 0.0
    turnover24: float = 0.0
    total_volume: float = 0.0
    total_turnover: float = 0.0
    traded: bool = True  # False: never traded (last price, 24 h stats and open interest all "0")
    bid_side: bool = True  # False: nobody bids (bidPrice, bidSize, bidIv all "0")
    ask_side: bool = True  # False: nobody offers (askPrice, askSize, askIv all "0")
    step: int = -1
    data: dict[str, str] = field(default_factory=dict)
    data_json: bytes = b""
    #: The fields only a trade moves (lastPrice, highPrice24h, lowPrice24h, openInterest,
    #: turnover24h, volume24h, totalVolume, totalTurnover, change24h) as text: formatted again
    #: after a trade, not at every step (a third of a ticker's numbers). None: not formatted yet.
    trade_text: tuple[str, ...] | None = None


class Market:
    """Index walks per coin and lazily priced option tickers."""

    def __init__(self, coins: tuple[str, ...], *, seed: int, now_ms: int) -> None:
        self._seed = seed
        self._walk = random.Random(seed)
        self._trades = random.Random(seed ^ 0x5EED)
        self.coins: dict[str, CoinState] = {}
        for coin in coins:
            spec = coin_spec(coin)
            self.coins[coin] = CoinState(spec=spec, index=spec.spot, iv_level=spec.atm_iv)
        self.step_no = 0
        self.now_ms = now_ms
        self._quotes: dict[str, Quote] = {}
        self._index_texts: dict[str, str] = {}  # coin -> its index as text, this step

    # --- the walk -------------------------------------------------------------------------
    def step(self, *, seconds: float, now_ms: int) -> None:
        """Advance every coin by ``seconds`` of market time; tickers reprice on next access."""
        years = max(seconds, 0.0) / SECONDS_PER_YEAR
        for state in self.coins.values():
            vol = state.spec.realised_vol
            shock = self._walk.gauss(0.0, 1.0)
            state.index *= math.exp(-0.5 * vol * vol * years + vol * math.sqrt(years) * shock)
            # IV level mean-reverts to the coin's norm with a little noise.
            drift = 0.05 * (state.spec.atm_iv - state.iv_level) + 0.002 * self._walk.gauss(0.0, 1.0)
            state.iv_level = min(max(state.iv_level + drift, 0.1), 3.0)
        self.step_no += 1
        self.now_ms = now_ms
        self._index_texts.clear()

    # --- instruments ----------------------------------------------------------------------
    def add(self, instrument: Instrument, *, fresh: bool = False) -> None:
        """Start quoting ``instrument``; ``fresh``: a new listing (thin book, never traded)."""
        quote = Quote(instrument=instrument)
        priced = self._price(instrument)
        kind = 2 if fresh else (1 if abs(priced.delta) < FAR_OTM_DELTA else 0)
        # One draw per instrument from the seed and its symbol: independent of listing order.
        rng = random.Random(f"{self._seed}:{instrument.symbol}")
        quote.traded = rng.random() >= NEVER_TRADED[kind]
        quote.bid_side = rng.random() >= EMPTY_BID[kind]
        quote.ask_side = rng.random() >= EMPTY_ASK[kind]
        if quote.traded:
            tick = float(instrument.tick_size)
            seed_price = max(round(priced.price / tick) * tick, tick)
            quote.last = quote.open24 = quote.high24 = quote.low24 = seed_price
            index = self.coins[instrument.coin].index
            quote.open_interest = round(rng.uniform(0.01, 300), 2)
            quote.volume24 = round(rng.uniform(0, 50), 2)
            quote.turnover24 = quote.volume24 * index
            quote.total_volume = quote.volume24 + round(rng.uniform(1, 500))
            quote.total_turnover = quote.total_volume * index
        self._quotes[instrument.symbol] = quote

    def remove(self, symbol: str) -> None:
        """Stop quoting ``symbol`` (delivered)."""
        self._quotes.pop(symbol, None)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._quotes

    def quote(self, symbol: str) -> Quote:
        """The instrument's ticker as of the current step (priced now if it is stale)."""
        quote = self._quotes[symbol]
        if quote.step != self.step_no:
            self._reprice(quote)
        return quote

    # --- pricing --------------------------------------------------------------------------
    def _years(self, instrument: Instrument) -> float:
        return max(instrument.delivery_ms - self.now_ms, 0) / 1000.0 / SECONDS_PER_YEAR

    def _vol(self, instrument: Instrument, forward: float, years: float) -> float:
        """A smile: ATM level, a put skew and convexity in log-moneyness per sqrt(time)."""
        years = max(years, 1.0 / 365.0)
        m = math.log(instrument.strike / forward) / math.sqrt(years)
        m = min(max(m, -4.0), 4.0)
        level = self.coins[instrument.coin].iv_level * (1.0 + 0.15 / (1.0 + 12.0 * years))
        return max(level * (1.0 - 0.06 * m + 0.04 * m * m), 0.05)

    def _price(self, instrument: Instrument) -> _Priced:
        years = self._years(instrument)
        forward = self.coins[instrument.coin].index * math.exp(_BASIS * years)
        vol = self._vol(instrument, forward, years)
        g = black76(forward=forward, strike=instrument.strike, years=years, vol=vol, call=instrument.call)
        return _Priced(forward=forward, vol=vol, price=g.price, delta=g.delta, gamma=g.gamma,
                       vega=g.vega, theta=g.theta)

    def _index_text(self, coin: CoinState) -> str:
        """The coin's index as text, formatted once per step (every ticker of the coin shows it)."""
        text = self._index_texts.get(coin.spec.coin)
        if text is None:
            text = self._index_texts[coin.spec.coin] = num(coin.index, coin.spec.index_decimals)
        return text

    @staticmethod
    def _trade_text(quote: Quote, places: int) -> tuple[str, ...]:
        """The fields only a trade moves, as text, in :data:`TICKER_FIELDS` order."""
        text = quote.trade_text
        if text is None:
            change = (quote.last - quote.open24) / quote.open24 if quote.open24 > 0 else 0.0
            text = quote.trade_text = (
                num(quote.last, places), num(quote.high24, places), num(quote.low24, places),
                num(quote.open_interest, 2), num(quote.turnover24, 4), num(quote.volume24, 2),
                num(quote.total_volume, 0), num(quote.total_turnover, 0), num(change, 8))
        return text

    def _reprice(self, quote: Quote) -> None:
        ins = quote.instrument
        coin = self.coins[ins.coin]
        p = self._price(ins)
        tick = float(ins.tick_size)
        places = _decimals(ins.tick_size)
        half_spread = max(tick, p.price * 0.03)
        bid = math.floor((p.price - half_spread) / tick) * tick
        ask = max(math.ceil((p.price + half_spread) / tick) * tick, tick)
        rng = self._trades
        if quote.traded and rng.random() < _TRADE_PROBABILITY:
            qty = round(rng.uniform(0.01, 5.0), 2)
            quote.last = max(round(p.price / tick) * tick, tick)
            quote.high24 = max(quote.high24, quote.last)
            quote.low24 = min(quote.low24, quote.last)
            quote.volume24 += qty
            quote.total_volume += qty
            quote.turnover24 += qty * coin.index
            quote.total_turnover += qty * coin.index
            quote.open_interest = max(quote.open_interest + rng.choice((-qty, qty)), 0.0)
            quote.trade_text = None
        iv_per_price = 1.0 / (p.vega * 100.0) if p.vega > 1e-9 else 0.0
        has_bid = quote.bid_side and bid >= tick
        has_ask = quote.ask_side
        # IV of the quotes; a tiny vega (deep in or out of the money) would make it absurd: cap the gap.
        bid_iv = p.vol - min((p.price - bid) * iv_per_price, 0.3 * p.vol) if has_bid else 0.0
        ask_iv = p.vol + min((ask - p.price) * iv_per_price, 0.3 * p.vol) if iv_per_price else p.vol * 1.3
        if not has_ask:
            ask_iv = 0.0
        near_delivery = ins.delivery_ms - self.now_ms <= PREDICTED_DELIVERY_WINDOW_MS
        index = self._index_text(coin)
        last, high, low, open_interest, turnover, volume, total_volume, total_turnover, change = (
            self._trade_text(quote, places))
        data = {
            "symbol": ins.symbol,
            "bidPrice": num(bid, places) if has_bid else "0",
            "bidSize": num(rng.uniform(0.1, 50.0), 2) if has_bid else "0",
            "bidIv": num(bid_iv, 4),
            "askPrice": num(ask, places) if has_ask else "0",
            "askSize": num(rng.uniform(0.1, 50.0), 2) if has_ask else "0",
            "askIv": num(ask_iv, 4),
            "lastPrice": last,
            "highPrice24h": high,
            "lowPrice24h": low,
            "markPrice": num(p.price, 8),
            "indexPrice": index,
            "markPriceIv": num(p.vol, 4),
            "underlyingPrice": num(p.forward, coin.spec.index_decimals),
            "openInterest": open_interest,
            "turnover24h": turnover,
            "volume24h": volume,
            "totalVolume": total_volume,
            "totalTurnover": total_turnover,
            "delta": num(p.delta, 8),
            "gamma": num(p.gamma, 8),
            "vega": num(p.vega, 8),
            "theta": num(p.theta, 8),
            "predictedDeliveryPrice": index if near_delivery else "0",
            "change24h": change,
        }
        quote.data = data
        quote.data_json = orjson.dumps(data)
        quote.step = self.step_no


@dataclass(frozen=True, slots=True)
class _Priced:
    forward: float
    vol: float
    price: float
    delta: float
    gamma: float
    vega: float
    theta: float


def rest_ticker(data: dict[str, str]) -> dict[str, str]:
    """A WebSocket ticker's fields under the REST ``/v5/market/tickers`` names (bid1Price, markIv...)."""
    return {REST_FIELD_NAMES.get(name, name): value for name, value in data.items()}
