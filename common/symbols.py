"""Bybit option symbols: the one definition of a well-formed symbol and coin.

Both the ingest (validating exchange frames) and the API (validating path
parameters) use these, so a string that could be a Redis pattern, a path or a
10 kB blob never becomes part of a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: ``{BASE}-{DMMMYY}-{STRIKE}-{C|P}`` with an optional settle-coin suffix, e.g.
#: ``BTC-27DEC26-100000-C``, ``BTC-3JAN27-95000-P-USDT``, ``XRP-29NOV26-2.2-C``.
SYMBOL_RE: Final = re.compile(
    r"^(?P<base>[A-Z0-9]{2,10})-(?P<day>[1-9]|[12][0-9]|3[01])(?P<month>JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
    r"(?P<year>[0-9]{2})-(?P<strike>[0-9]{1,9}(?:\.[0-9]{1,8})?)-(?P<kind>[CP])(?:-(?P<settle>[A-Z]{3,5}))?$"
)
COIN_RE: Final = re.compile(r"^[A-Z0-9]{2,10}$")
MAX_SYMBOL_LEN: Final = 40

MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True, slots=True)
class ParsedSymbol:
    """The parts of a well-formed option symbol."""

    symbol: str
    base: str
    expiry: str  # e.g. "27DEC26", as it appears in the symbol
    strike: str  # as it appears in the symbol, e.g. "100000" or "2.2"
    kind: str  # "C" or "P"
    settle: str | None  # "USDT" for USDT-settled symbols, None for the plain form


def parse_symbol(symbol: object) -> ParsedSymbol | None:
    """Return the parts of ``symbol`` or ``None`` when it is not of Bybit's form."""
    if not isinstance(symbol, str) or len(symbol) > MAX_SYMBOL_LEN:
        return None
    m = SYMBOL_RE.fullmatch(symbol)
    if m is None:
        return None
    return ParsedSymbol(
        symbol=symbol,
        base=m["base"],
        expiry=f"{m['day']}{m['month']}{m['year']}",
        strike=m["strike"],
        kind=m["kind"],
        settle=m["settle"],
    )


def is_valid_symbol(symbol: object) -> bool:
    """True when ``symbol`` is of Bybit's option symbol form."""
    return parse_symbol(symbol) is not None


def is_valid_coin(coin: object) -> bool:
    """True when ``coin`` looks like a base coin (upper-case letters and digits)."""
    return isinstance(coin, str) and COIN_RE.fullmatch(coin) is not None
