"""Option listings: an expiry calendar and strike ladders around spot, as Bybit lists them.

Pure: the current time and the spot price come in as arguments. Per coin the calendar holds
dailies (the next 3 days), weeklies (Fridays), monthlies (last Friday of a month) and quarterlies
(last Friday of Mar/Jun/Sep/Dec), all delivered at 08:00 UTC. Strikes sit at "nice" steps around
spot, wider for later expiries. The nearest expiries are also listed USDT-settled
(``BTC-3JAN27-95000-C-USDT``). Instruments come out of an endless generator ordered by interest
(at the money first, round-robin over expiries), so "the first K" is a realistic listing of any
size and listing more later just continues the ladders further out of the money.

Statuses follow Bybit's ``instruments-info`` for options, which by default lists ``PreLaunch``,
``Trading`` and ``Delivering`` instruments: an instrument is PreLaunch before its ``launchTime``
(listed, not trading yet: the next expiry after the dailies, launching at the next 08:00 UTC),
Delivering in the last :data:`DELIVERING_WINDOW_MS` before its delivery, Trading in between; once
delivered it leaves the listing (``Closed`` instruments are never listed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from common.symbols import MONTHS

DELIVERY_HOUR_UTC: Final = 8
#: Expiries closer than this to "now" are not listed: nothing vanishes under a test run at 07:59.
MIN_TIME_TO_EXPIRY: Final = dt.timedelta(hours=1)
DAILIES: Final = 3
WEEKLIES: Final = 4
MONTHLIES: Final = 3
QUARTERLIES: Final = 2
USDT_EXPIRIES: Final = 4  # the nearest expiries are listed twice: USDC-settled and USDT-settled
#: PreLaunch instruments listed per coin on top of the trading ones: at most this many, and at
#: most a tenth of them (tiny test listings have none).
PRELAUNCH_PER_COIN: Final = 4
#: An instrument is "Delivering" this long before its delivery time (the window in which Bybit
#: also publishes ``predictedDeliveryPrice``); it keeps pushing tickers until it is delivered.
DELIVERING_WINDOW_MS: Final = 30 * 60 * 1000
#: Bybit's instrument statuses (v5 enum). ``Closed`` instruments are never listed here.
STATUSES: Final = ("PreLaunch", "Trading", "Delivering", "Closed")
#: Statuses whose instruments quote and trade: what a client streams.
TRADED_STATUSES: Final = frozenset({"Trading", "Delivering"})
_FRIDAY: Final = 4
_NICE_MANTISSAS: Final = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))


@dataclass(frozen=True, slots=True)
class CoinSpec:
    """What an exchange would configure per base coin."""

    coin: str
    spot: float  # starting index price
    realised_vol: float  # annualised volatility of the index random walk
    atm_iv: float  # at-the-money implied volatility
    min_order_qty: str
    qty_step: str
    max_order_qty: str
    index_decimals: int


COIN_SPECS: Final[dict[str, CoinSpec]] = {
    "BTC": CoinSpec("BTC", 95_000.0, 0.50, 0.52, "0.01", "0.01", "10000", 2),
    "ETH": CoinSpec("ETH", 3_500.0, 0.65, 0.66, "0.1", "0.1", "100000", 2),
    "SOL": CoinSpec("SOL", 180.0, 0.80, 0.82, "1", "1", "500000", 3),
    "XRP": CoinSpec("XRP", 2.2, 0.85, 0.88, "10", "10", "5000000", 4),
    "DOGE": CoinSpec("DOGE", 0.35, 0.90, 0.95, "100", "100", "50000000", 5),
    "MNT": CoinSpec("MNT", 1.0, 0.85, 0.90, "10", "10", "5000000", 4),
}
#: Default listing sizes: about 2,000 instruments over BTC, ETH and SOL.
DEFAULT_INSTRUMENTS: Final[dict[str, int]] = {"BTC": 700, "ETH": 700, "SOL": 600}
DEFAULT_INSTRUMENTS_OTHER: Final = 300


def coin_spec(coin: str) -> CoinSpec:
    """The spec of ``coin``; unknown coins get a generic one priced at 100."""
    spec = COIN_SPECS.get(coin)
    return spec if spec is not None else CoinSpec(coin, 100.0, 0.8, 0.85, "1", "1", "1000000", 3)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One listed option, with everything ``instruments-info`` reports about it."""

    symbol: str
    coin: str
    strike: float
    strike_text: str
    call: bool
    settle: str  # "USDC" or "USDT"
    expiry_code: str  # "27DEC26"
    delivery_ms: int
    launch_ms: int
    tick_size: str

    @property
    def quote(self) -> str:
        return "USDT" if self.settle == "USDT" else "USD"

    @property
    def display_name(self) -> str:
        """``displayName``: ``BTCUSDT-27MAR26-70000-P`` for USDT-settled (Bybit's docs example).

        For USDC-settled options no source shows the value; the simulator sends "".
        """
        if self.settle != "USDT":
            return ""
        return f"{self.coin}USDT-{self.expiry_code}-{self.strike_text}-{'C' if self.call else 'P'}"

    def status(self, now_ms: int) -> str:
        """PreLaunch before launchTime, Delivering in the last half hour, else Trading."""
        if now_ms < self.launch_ms:
            return "PreLaunch"
        if self.delivery_ms - now_ms <= DELIVERING_WINDOW_MS:
            return "Delivering"
        return "Trading"

    @property
    def sort_key(self) -> tuple[int, float, int, str]:
        """Order of the REST listing: expiry, strike, call before put, USDC before USDT."""
        return (self.delivery_ms, self.strike, 0 if self.call else 1, self.settle)


def nice_step(raw: float) -> Decimal:
    """The smallest 1/2/2.5/5 x 10^k at or above ``raw`` (strike steps, tick sizes)."""
    if raw <= 0:
        raise ValueError(f"step must be positive, got {raw}")
    exp = Decimal(repr(raw)).adjusted()
    for power in (exp, exp + 1):
        for mantissa in _NICE_MANTISSAS:
            step = mantissa.scaleb(power)
            if step >= Decimal(repr(raw)):
                return step
    return Decimal(1).scaleb(exp + 2)  # unreachable: 10^(exp+1) >= raw always


def decimal_text(value: Decimal) -> str:
    """``Decimal`` as Bybit writes numbers in symbols: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def expiry_code(day: dt.date) -> str:
    """``27DEC26``; the day has no leading zero (``3JAN27``)."""
    return f"{day.day}{MONTHS[day.month - 1]}{day.year % 100:02d}"


def _delivery(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, DELIVERY_HOUR_UTC, tzinfo=dt.UTC)


def _last_friday(year: int, month: int) -> dt.date:
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    day = first_next - dt.timedelta(days=1)
    return day - dt.timedelta(days=(day.weekday() - _FRIDAY) % 7)


def expiry_calendar(now: dt.datetime) -> list[dt.datetime]:
    """Delivery times (08:00 UTC) of the listed expiries, nearest first, without duplicates."""
    earliest = now + MIN_TIME_TO_EXPIRY
    day = now.date()
    while _delivery(day) <= earliest:
        day += dt.timedelta(days=1)
    dates: set[dt.date] = {day + dt.timedelta(days=i) for i in range(DAILIES)}
    friday = day + dt.timedelta(days=(_FRIDAY - day.weekday()) % 7)
    dates.update(friday + dt.timedelta(weeks=i) for i in range(WEEKLIES))
    monthlies: list[dt.date] = []
    year, month = day.year, day.month
    while len(monthlies) < MONTHLIES:
        last = _last_friday(year, month)
        if last >= day:
            monthlies.append(last)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    dates.update(monthlies)
    quarterlies: list[dt.date] = []
    while len(quarterlies) < QUARTERLIES:
        if month % 3 == 0:
            last = _last_friday(year, month)
            if last > monthlies[-1]:
                quarterlies.append(last)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    dates.update(quarterlies)
    return [_delivery(d) for d in sorted(dates)]


def prelaunch_count(listed: int) -> int:
    """How many PreLaunch instruments come with ``listed`` trading ones (see PRELAUNCH_PER_COIN)."""
    return min(PRELAUNCH_PER_COIN, listed // 10)


def strike_step(spot: float, days: float) -> Decimal:
    """Strike spacing: tight for dailies, wider for later expiries (about 0.5 % .. 5 % of spot)."""
    if days <= 3:
        frac = 0.005
    elif days <= 35:
        frac = 0.01
    elif days <= 100:
        frac = 0.02
    else:
        frac = 0.05
    return nice_step(spot * frac)


def _strike_ladder(spot: float, step: Decimal) -> Iterator[Decimal]:
    """At the money, then alternately one step up and one down; never a strike <= 0."""
    atm = (Decimal(repr(spot)) / step).to_integral_value() * step
    if atm <= 0:
        atm = step
    yield atm
    for n in itertools.count(1):
        yield atm + n * step
        below = atm - n * step
        if below > 0:
            yield below


class ListingGenerator:
    """Endless, deterministic stream of a coin's instruments, most interesting first."""

    def __init__(self, coin: str, *, now: dt.datetime, spot: float | None = None,
                 usdt_expiries: int = USDT_EXPIRIES) -> None:
        self.spec = coin_spec(coin)
        self.coin = coin
        self._now_ms = int(now.timestamp() * 1000)
        self._spot = self.spec.spot if spot is None else spot
        self._tick = decimal_text(nice_step(self._spot * 5e-5))
        self.expiries = expiry_calendar(now)
        self._usdt = set(self.expiries[:usdt_expiries])
        self._now = now
        self._seen: set[str] = set()
        self._stream = self._generate(now)

    def _generate(self, now: dt.datetime) -> Iterator[Instrument]:
        ladders = []
        for expiry in self.expiries:
            days = (expiry - now).total_seconds() / 86400.0
            ladders.append((expiry, _strike_ladder(self._spot, strike_step(self._spot, days))))
        while True:  # one ring: the next strike of every expiry
            for expiry, ladder in ladders:
                strike = next(ladder)
                settles: Sequence[str] = ("USDC", "USDT") if expiry in self._usdt else ("USDC",)
                for settle in settles:
                    for call in (True, False):
                        yield self._instrument(expiry, strike, call, settle)

    def _instrument(self, expiry: dt.datetime, strike: Decimal, call: bool, settle: str) -> Instrument:
        code = expiry_code(expiry.date())
        text = decimal_text(strike)
        symbol = f"{self.coin}-{code}-{text}-{'C' if call else 'P'}"
        if settle == "USDT":
            symbol += "-USDT"
        delivery_ms = int(expiry.timestamp() * 1000)
        launch_ms = min(self._now_ms, delivery_ms - 86_400_000) // 3_600_000 * 3_600_000
        return Instrument(symbol=symbol, coin=self.coin, strike=float(strike), strike_text=text, call=call,
                          settle=settle, expiry_code=code, delivery_ms=delivery_ms, launch_ms=launch_ms,
                          tick_size=self._tick)

    def upcoming_expiry(self) -> dt.datetime:
        """The next expiry Bybit would list: the first day after the dailies not already listed."""
        listed = {e.date() for e in self.expiries}
        day = self.expiries[0].date() + dt.timedelta(days=DAILIES)
        while day in listed:
            day += dt.timedelta(days=1)
        return _delivery(day)

    def prelaunch(self, count: int) -> list[Instrument]:
        """``count`` instruments of :meth:`upcoming_expiry` (at the money first, USDC-settled) that
        launch at the next 08:00 UTC at least :data:`MIN_TIME_TO_EXPIRY` away (so a test run
        started at 07:59 still sees them PreLaunch): listed as PreLaunch until then."""
        expiry = self.upcoming_expiry()
        launch = _delivery(self._now.date())
        while launch < self._now + MIN_TIME_TO_EXPIRY:
            launch += dt.timedelta(days=1)
        days = (expiry - self._now).total_seconds() / 86400.0
        ladder = _strike_ladder(self._spot, strike_step(self._spot, days))
        out: list[Instrument] = []
        while len(out) < count:
            strike = next(ladder)
            for call in (True, False):
                ins = dataclasses.replace(self._instrument(expiry, strike, call, "USDC"),
                                          launch_ms=int(launch.timestamp() * 1000))
                if ins.symbol not in self._seen and len(out) < count:
                    self._seen.add(ins.symbol)
                    out.append(ins)
        return out

    def take(self, count: int, *, now_ms: int | None = None) -> list[Instrument]:
        """The next ``count`` instruments never handed out before (``now_ms`` stamps launchTime)."""
        out: list[Instrument] = []
        while len(out) < count:
            ins = next(self._stream)
            if ins.symbol in self._seen:
                continue
            self._seen.add(ins.symbol)
            if now_ms is not None:
                ins = dataclasses.replace(ins, launch_ms=now_ms)
            out.append(ins)
        return out
