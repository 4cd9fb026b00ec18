"""Everything a client sends, checked before it is used (pure).

Path parameters must name a configured coin and a well-formed symbol of that coin
(:mod:`common.symbols`); query parameters are a closed set, each bounded in length and
typed. Anything else is an :class:`~api.errors.ApiError` (400/404 with a JSON body) — no
user string ever reaches Redis, and none can make the API fail with a 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from api import errors
from api.errors import ApiError, quote
from api.records import OptionRecord, expiry_date
from common.symbols import MONTHS, ParsedSymbol, parse_symbol

#: Longest accepted query value; every legal value is far shorter.
MAX_VALUE_LEN: Final = 32
MAX_LIMIT: Final = 10_000
MAX_OFFSET: Final = 1_000_000
MAX_STRIKE_DIGITS: Final = 12
EXPIRY_RE: Final = re.compile(
    r"^(?:[1-9]|[12][0-9]|3[01])(?:" + "|".join(MONTHS) + r")[0-9]{2}$")
STRIKE_RE: Final = re.compile(rf"^[0-9]{{1,{MAX_STRIKE_DIGITS}}}(?:\.[0-9]{{1,8}})?$")
INT_RE: Final = re.compile(r"^[0-9]{1,7}$")
TYPES: Final = ("C", "P")

#: name -> what it means (the OpenAPI document is generated from these).
QUERY_PARAMETERS: Final[Mapping[str, str]] = {
    "expiry": "Only this expiry, as in the symbol: `27DEC26` (day without a leading zero).",
    "type": "`C` (calls) or `P` (puts).",
    "strike_min": f"Lowest strike, inclusive (decimal, up to {MAX_STRIKE_DIGITS} digits).",
    "strike_max": f"Highest strike, inclusive (decimal, up to {MAX_STRIKE_DIGITS} digits).",
    "limit": f"At most this many options (1..{MAX_LIMIT}).",
    "offset": f"Skip this many matching options first (0..{MAX_OFFSET}).",
}


@dataclass(frozen=True, slots=True)
class Filters:
    """The validated query of ``/api/options/{coin}``."""

    expiry: str | None = None
    kind: str | None = None
    strike_min: Decimal | None = None
    strike_max: Decimal | None = None
    limit: int | None = None
    offset: int = 0

    @property
    def empty(self) -> bool:
        return self == Filters()

    def matches(self, option: OptionRecord) -> bool:
        return ((self.expiry is None or option.expiry == self.expiry)
                and (self.kind is None or option.kind == self.kind)
                and (self.strike_min is None or option.strike >= self.strike_min)
                and (self.strike_max is None or option.strike <= self.strike_max))

    def select(self, options: Sequence[OptionRecord],
               by_expiry: Mapping[str, Sequence[OptionRecord]] | None = None,
               ) -> tuple[Sequence[OptionRecord], int]:
        """(the page of matching options, how many matched in all).

        Most requests ask for everything, or for one expiry: those are answered without
        testing each of the coin's options (``by_expiry`` groups them in advance); only the
        remaining predicates are tested per option.
        """
        candidates: Sequence[OptionRecord] = options
        if self.expiry is not None and by_expiry is not None:
            candidates = by_expiry.get(self.expiry, ())
        rest = Filters(expiry=None if by_expiry is not None else self.expiry, kind=self.kind,
                       strike_min=self.strike_min, strike_max=self.strike_max)
        matched = candidates if rest.empty else [o for o in candidates if rest.matches(o)]
        end = None if self.limit is None else self.offset + self.limit
        return matched[self.offset:end], len(matched)

    def as_json(self) -> dict[str, str | int]:
        """The filters in force, echoed in the answer (only those given)."""
        out: dict[str, str | int] = {}
        if self.expiry is not None:
            out["expiry"] = self.expiry
        if self.kind is not None:
            out["type"] = self.kind
        if self.strike_min is not None:
            out["strike_min"] = str(self.strike_min)
        if self.strike_max is not None:
            out["strike_max"] = str(self.strike_max)
        if self.limit is not None:
            out["limit"] = self.limit
        if self.offset:
            out["offset"] = self.offset
        return out


def _bad(name: str, value: str, expected: str) -> ApiError:
    return ApiError(400, errors.BAD_PARAMETER, f"query parameter {name}={quote(value)}: expected {expected}")


def _integer(name: str, value: str, low: int, high: int) -> int:
    if not INT_RE.fullmatch(value) or not low <= int(value) <= high:
        raise _bad(name, value, f"an integer from {low} to {high}")
    return int(value)


def _strike(name: str, value: str) -> Decimal:
    if not STRIKE_RE.fullmatch(value):
        raise _bad(name, value, "a non-negative decimal such as 95000 or 2.5")
    return Decimal(value)


def parse_filters(query: Sequence[tuple[str, str]]) -> Filters:
    """Validate the query string's (name, value) pairs, in order, repeats included."""
    seen: dict[str, str] = {}
    for name, value in query:
        if name not in QUERY_PARAMETERS:
            allowed = ", ".join(QUERY_PARAMETERS)
            raise ApiError(400, errors.UNKNOWN_PARAMETER,
                           f"unknown query parameter {quote(name)}; allowed: {allowed}")
        if name in seen:
            raise ApiError(400, errors.BAD_PARAMETER, f"query parameter {name} given more than once")
        if len(value) > MAX_VALUE_LEN:
            raise _bad(name, value, f"at most {MAX_VALUE_LEN} characters")
        seen[name] = value
    expiry = seen.get("expiry")
    if expiry is not None:
        expiry = expiry.upper()
        if not EXPIRY_RE.fullmatch(expiry) or expiry_date(expiry) is None:
            raise _bad("expiry", seen["expiry"], "an expiry such as 27DEC26")
    kind = seen.get("type")
    if kind is not None:
        kind = kind.upper()
        if kind not in TYPES:
            raise _bad("type", seen["type"], "C or P")
    strike_min = _strike("strike_min", seen["strike_min"]) if "strike_min" in seen else None
    strike_max = _strike("strike_max", seen["strike_max"]) if "strike_max" in seen else None
    if strike_min is not None and strike_max is not None and strike_min > strike_max:
        raise ApiError(400, errors.BAD_PARAMETER, "strike_min must not exceed strike_max")
    limit = _integer("limit", seen["limit"], 1, MAX_LIMIT) if "limit" in seen else None
    offset = _integer("offset", seen["offset"], 0, MAX_OFFSET) if "offset" in seen else 0
    return Filters(expiry=expiry, kind=kind, strike_min=strike_min, strike_max=strike_max,
                   limit=limit, offset=offset)


def parse_coin(raw: str, configured: Sequence[str]) -> str:
    """The configured coin named by ``raw`` (case-insensitive), else 404 ``unknown_coin``."""
    coin = raw.upper()
    if coin not in configured:
        raise ApiError(404, errors.UNKNOWN_COIN,
                       f"coin {quote(raw)} is not tracked; tracked coins: {', '.join(configured)}")
    return coin


def parse_coin_symbol(raw: str, coin: str) -> ParsedSymbol:
    """A well-formed symbol of ``coin`` (case-insensitive): 400 when malformed, 404 when another coin's."""
    parsed = parse_symbol(raw.upper())
    if parsed is None:
        raise ApiError(400, errors.BAD_SYMBOL,
                       f"{quote(raw)} is not an option symbol such as {coin}-27DEC26-100000-C")
    if parsed.base != coin:
        raise ApiError(404, errors.UNKNOWN_SYMBOL, f"{parsed.symbol} is not a {coin} option")
    return parsed
