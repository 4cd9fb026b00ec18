"""Black-Scholes on the forward (Black-76, zero rate): option price and greeks.

Pure functions, no state: the market model feeds them a forward, a strike, a time and a
volatility. Greeks follow the conventions exchanges quote (and Bybit's ticker shows): vega per
one volatility point (1 %), theta per calendar day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

MIN_YEARS: Final = 1.0 / (365.0 * 24 * 60)  # one minute: below this the option is its intrinsic value
_SQRT2: Final = math.sqrt(2.0)
_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and sensitivities of one option."""

    price: float
    delta: float
    gamma: float
    vega: float  # per 1 volatility point
    theta: float  # per calendar day


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def norm_pdf(x: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def black76(*, forward: float, strike: float, years: float, vol: float, call: bool) -> Greeks:
    """Price and greeks of a European option on ``forward`` (zero interest rate).

    ``years`` below one minute or a zero volatility give the intrinsic value with a step delta,
    so an option about to be delivered never produces a division by zero or a NaN.
    """
    if forward <= 0.0 or strike <= 0.0:
        raise ValueError(f"forward and strike must be positive (got {forward}, {strike})")
    sd = vol * math.sqrt(max(years, 0.0))
    if years < MIN_YEARS or sd <= 1e-12:
        intrinsic = max(forward - strike, 0.0) if call else max(strike - forward, 0.0)
        in_money = forward > strike if call else forward < strike
        delta = (1.0 if call else -1.0) if in_money else 0.0
        return Greeks(price=intrinsic, delta=delta, gamma=0.0, vega=0.0, theta=0.0)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    nd1 = norm_cdf(d1)
    call_price = forward * nd1 - strike * norm_cdf(d2)
    pdf = norm_pdf(d1)
    sqrt_t = math.sqrt(years)
    gamma = pdf / (forward * sd)
    vega = forward * pdf * sqrt_t / 100.0
    theta = -forward * pdf * vol / (2.0 * sqrt_t) / 365.0
    if call:
        return Greeks(price=max(call_price, 0.0), delta=nd1, gamma=gamma, vega=vega, theta=theta)
    put_price = call_price - forward + strike  # put-call parity at zero rate
    return Greeks(price=max(put_price, 0.0), delta=nd1 - 1.0, gamma=gamma, vega=vega, theta=theta)
