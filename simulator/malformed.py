"""Malformed ticker frames: every way a push can be wrong that a client must survive.

Each kind replaces one real push (the client sees it where a ticker for that symbol was due).
Kinds are handed out round-robin, so any run with at least ``len(KINDS)`` malformed frames
contains every kind. Numeric faults rotate over the numeric fields, so a validator that only
checks ``markPrice`` is caught too. None of this ever becomes the simulator's truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from simulator.market import TICKER_FIELDS

NUMERIC_FIELDS: Final = tuple(f for f in TICKER_FIELDS if f != "symbol")
YEAR_3000_MS: Final = 32_503_680_000_000
HOSTILE_SYMBOLS: Final = {
    "hostile_star": "*",
    "hostile_path": "../x",
    "hostile_wildcard": "BTC-*",
    "hostile_long": "BTC-" + "9" * 10_236,  # 10 kB
    "hostile_key_pattern": "option:*",
}


@dataclass(frozen=True, slots=True)
class Push:
    """The well-formed push a malformed frame replaces."""

    symbol: str
    seq: int
    ts_ms: int
    data: dict[str, str]
    other_symbol: str  # another listed symbol, for topic/symbol mismatches


def _doc(push: Push, *, topic_symbol: str | None = None, data: Any = None, ts: Any = None) -> dict[str, Any]:
    sym = push.symbol if topic_symbol is None else topic_symbol
    return {  # Bybit's key order, as in frames.ticker_frame: only the intended fault differs
        "id": f"tickers.{sym}-{push.seq}-{push.ts_ms}", "topic": f"tickers.{sym}",
        "ts": push.ts_ms if ts is None else ts, "data": dict(push.data) if data is None else data,
        "type": "snapshot",
    }


def _field(push: Push) -> str:
    return NUMERIC_FIELDS[push.seq % len(NUMERIC_FIELDS)]


def _with(push: Push, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(push.data)
    data[_field(push)] = value
    return _doc(push, data=data)


def _without(push: Push, name: str) -> dict[str, Any]:
    data = dict(push.data)
    del data[name]
    return _doc(push, data=data)


def _truncated(push: Push) -> bytes:
    whole = orjson.dumps(_doc(push))
    return whole[: len(whole) // 2]


def _no_data(push: Push) -> dict[str, Any]:
    doc = _doc(push)
    del doc["data"]
    return doc


def _hostile(symbol: str) -> Callable[[Push], dict[str, Any]]:
    def build(push: Push) -> dict[str, Any]:
        return _doc(push, topic_symbol=symbol, data={**push.data, "symbol": symbol})
    return build


_BUILDERS: Final[dict[str, Callable[[Push], dict[str, Any] | bytes]]] = {
    "truncated_json": _truncated,
    "missing_mark_price": lambda p: _without(p, "markPrice"),
    "missing_symbol": lambda p: _without(p, "symbol"),
    "missing_data": _no_data,
    "non_numeric": lambda p: _with(p, "abc"),
    "nan": lambda p: _with(p, "NaN"),
    "infinity": lambda p: _with(p, "Infinity"),
    "overflow": lambda p: _with(p, "1e999"),
    "null_value": lambda p: _with(p, None),
    "number_not_string": lambda p: _with(p, 123.45),
    "data_list": lambda p: _doc(p, data=[p.data]),
    **{kind: _hostile(sym) for kind, sym in HOSTILE_SYMBOLS.items()},
    "topic_mismatch": lambda p: _doc(p, data={**p.data, "symbol": p.other_symbol}),
    "ts_zero": lambda p: _doc(p, ts=0),
    "ts_negative": lambda p: _doc(p, ts=-p.ts_ms),
    "ts_year_3000": lambda p: _doc(p, ts=YEAR_3000_MS),
}
KINDS: Final[tuple[str, ...]] = tuple(_BUILDERS)


def render(kind: str, push: Push) -> bytes:
    """The malformed frame of ``kind`` standing in for ``push``."""
    built = _BUILDERS[kind](push)
    return built if isinstance(built, bytes) else orjson.dumps(built)
