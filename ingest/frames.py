"""Every frame of the option stream: parse, route, validate (sans-I/O).

One function, :func:`decode`, turns the raw bytes of a WebSocket message into exactly
one of :class:`Ticker` (a well-formed ticker of a symbol this connection asked for),
:class:`Pong`, :class:`CommandAnswer` (a subscribe/unsubscribe answer, in either of
Bybit's two forms) or :class:`Rejected` (with an error type from :mod:`common.errors`).
It never raises, whatever the bytes: a bad frame is a value the caller counts and
drops, so hostile input can never stop a connection.

What a ticker must satisfy before it may be stored:

- the envelope is a JSON object whose ``topic`` is ``"tickers." + data.symbol``;
- ``data.symbol`` is a well-formed option symbol (:mod:`common.symbols`) that this
  connection subscribed to;
- ``ts`` is an integer of milliseconds within sane bounds of now;
- every value in ``data`` is a string; every known numeric field parses as a finite
  decimal (an empty string stands for an absent value); ``symbol``, ``markPrice`` and
  ``lastPrice`` are present and non-empty.

Fields outside Bybit's documented option ticker are dropped, so the stored hash has a
bounded size and no field name chosen by whoever sits on the other end of the socket.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from common import errors
from common.symbols import is_valid_symbol

TOPIC_PREFIX: Final = "tickers."

#: Bybit's V5 option ticker fields (WebSocket names; websocket/public/ticker, "Option").
TICKER_FIELDS: Final[tuple[str, ...]] = (
    "symbol", "bidPrice", "bidSize", "bidIv", "askPrice", "askSize", "askIv", "lastPrice",
    "highPrice24h", "lowPrice24h", "markPrice", "indexPrice", "markPriceIv", "underlyingPrice",
    "openInterest", "turnover24h", "volume24h", "totalVolume", "totalTurnover", "delta", "gamma",
    "vega", "theta", "predictedDeliveryPrice", "change24h",
)
NUMERIC_FIELDS: Final[frozenset[str]] = frozenset(TICKER_FIELDS) - {"symbol"}
REQUIRED_FIELDS: Final[tuple[str, ...]] = ("symbol", "markPrice", "lastPrice")

#: A frame's ``ts`` may lag our clock by this much (a stale replay is not "now")...
MAX_TS_AGE_MS: Final = 3_600_000
#: ...and lead it by this much (clock skew between Bybit and this host).
MAX_TS_LEAD_MS: Final = 300_000

#: Decimal as Bybit formats it ("0", "-19.9115368", "0.514"); an exponent is tolerated,
#: then the value must also be finite ("1e999" is not). Length is bounded by the pattern.
_DECIMAL_RE: Final = r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,4})?"
_DECIMAL: Final = re.compile(_DECIMAL_RE)
#: Every numeric value of a frame, joined by NUL, each a decimal or empty: exactly what
#: :data:`_DECIMAL` accepts per value (possessive quantifiers never backtrack; each part of a
#: decimal starts with a different character). The reference for :data:`_FAST_JOINED`.
_DECIMAL_POSSESSIVE: Final = r"-?[0-9]{1,30}+(?:\.[0-9]{1,30}+)?+(?:[eE][-+]?[0-9]{1,4}+)?+"
_DECIMALS_JOINED: Final = re.compile(rf"(?:{_DECIMAL_POSSESSIVE})?+(?:\x00(?:{_DECIMAL_POSSESSIVE})?+)*+")
#: The hot path's form of the same check: plain decimals only (no exponent), so the frame's
#: values need no separate scan for "e"/"E" and the slow path decides the rare exponent form
#: exactly (finiteness included). Accepts exactly what :data:`_DECIMALS_JOINED` accepts minus
#: the exponent forms.
#: (``-?+``: possessive only for speed; a digit never matches ``-``, so ``-?`` accepts the same.)
#: Also the value pattern of :data:`ingest.canonical.CANONICAL`.
PLAIN_DECIMAL: Final = r"-?+[0-9]{1,30}+(?:\.[0-9]{1,30}+)?+"
_FAST_JOINED: Final = re.compile(rf"(?:{PLAIN_DECIMAL})?+(?:\x00(?:{PLAIN_DECIMAL})?+)*+")
_KNOWN_FIELDS: Final[frozenset[str]] = frozenset(TICKER_FIELDS)
_TOPIC_IN_TEXT: Final = re.compile(r"tickers\.[A-Za-z0-9.\-]{1,60}")
_DETAIL_MAX: Final = 80


class Ticker(NamedTuple):
    """A validated ticker: ``data`` holds only known fields, every value a string.

    A named tuple rather than a frozen dataclass: one is made per frame, and a frozen
    dataclass' ``__init__`` (``object.__setattr__`` per field) cost ~3 % of the ingest's CPU.
    """

    symbol: str
    ts: int  # exchange time, ms
    data: dict[str, str]


@dataclass(frozen=True, slots=True)
class Pong:
    """An answer to our application ping (option form ``op: pong`` or ``ret_msg: pong``)."""

    req_id: str | None


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """A subscribe/unsubscribe answer.

    ``success_topics``/``fail_topics`` are set only by the COMMAND_RESP form; the "op"
    form says only ``success`` and a free-text ``ret_msg`` (which, when it fails, usually
    names the failed topics — see :func:`topics_named`).
    """

    req_id: str | None
    op: str | None
    success: bool
    ret_msg: str
    success_topics: tuple[str, ...] | None
    fail_topics: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame that is dropped: ``error`` is one of :data:`common.errors.ERROR_TYPES`.

    ``detail`` is short and safe to log (bounded, never a whole hostile string);
    ``symbol`` is set when the frame named a well-formed symbol (e.g. one being
    unsubscribed, which the caller may choose not to count as an error).
    """

    error: str
    detail: str
    symbol: str | None = None


Frame = Ticker | Pong | CommandAnswer | Rejected


def _short(value: object) -> str:
    text = value if isinstance(value, str) else type(value).__name__
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def is_decimal(value: str) -> bool:
    """True for a finite decimal string as Bybit sends them (no NaN, no infinity, no spaces)."""
    if _DECIMAL.fullmatch(value) is None:
        return False
    if "e" in value or "E" in value:
        return math.isfinite(float(value))
    return True


def decode(raw: bytes | str, *, owned: Container[str], now_ms: int) -> Frame:
    """Classify one WebSocket message; see the module docstring. Never raises."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejected(errors.BAD_JSON, "not JSON")
    if type(doc) is not dict:
        return Rejected(errors.BAD_JSON, "not a JSON object")
    topic = doc.get("topic")
    if topic is not None:
        if type(topic) is str and topic.startswith(TOPIC_PREFIX):
            return _ticker(doc, topic, owned, now_ms)
        return Rejected(errors.UNKNOWN_MESSAGE, f"topic {_short(topic)}")
    op = doc.get("op")
    if op == "pong" or doc.get("ret_msg") == "pong":
        req_id = doc.get("req_id")
        return Pong(req_id if type(req_id) is str else None)
    if op in ("subscribe", "unsubscribe") or doc.get("type") == "COMMAND_RESP" or "success" in doc:
        return _answer(doc, op)
    return Rejected(errors.UNKNOWN_MESSAGE, f"op {_short(op)}" if op is not None else "no topic, no op")


def _ticker(doc: dict[str, Any], topic: str, owned: Container[str], now_ms: int) -> Frame:
    data = doc.get("data")
    if data is None:
        return Rejected(errors.MISSING_FIELD, "no data")
    if type(data) is not dict:
        return Rejected(errors.BAD_TYPE, f"data is {type(data).__name__}")
    symbol = data.get("symbol")
    if symbol is None or symbol == "":
        return Rejected(errors.MISSING_FIELD, "no symbol")
    if type(symbol) is not str:
        return Rejected(errors.BAD_TYPE, f"symbol is {type(symbol).__name__}")
    # Owned symbols were validated when they were subscribed: a hit skips the regex.
    if symbol not in owned:
        if not is_valid_symbol(symbol):
            return Rejected(errors.BAD_SYMBOL, f"symbol {_short(symbol)}")
        if len(topic) != len(TOPIC_PREFIX) + len(symbol) or not topic.endswith(symbol):
            return Rejected(errors.TOPIC_MISMATCH, f"topic {_short(topic)} data.symbol {symbol}", symbol)
        return Rejected(errors.UNSUBSCRIBED_SYMBOL, f"symbol {symbol}", symbol)
    if len(topic) != len(TOPIC_PREFIX) + len(symbol) or not topic.endswith(symbol):
        return Rejected(errors.TOPIC_MISMATCH, f"topic {_short(topic)} data.symbol {symbol}", symbol)
    ts = doc.get("ts")
    if type(ts) is not int:
        return Rejected(errors.BAD_TIMESTAMP, f"ts is {type(ts).__name__}", symbol)
    if not now_ms - MAX_TS_AGE_MS <= ts <= now_ms + MAX_TS_LEAD_MS:
        return Rejected(errors.BAD_TIMESTAMP, f"ts {ts} too far from now {now_ms}", symbol)
    if _KNOWN_FIELDS.issuperset(data):
        values = list(data.values())
        if next(iter(data)) == "symbol":  # Bybit's order: symbol first; its value is no number
            del values[0]
        else:
            values = [v for k, v in data.items() if k != "symbol"]
        try:
            joined = "\x00".join(values)
        except TypeError:  # a value is not a string: the slow path names it
            joined = None
        if joined is not None and _FAST_JOINED.fullmatch(joined) is not None:
            if not data.get("markPrice") or not data.get("lastPrice"):
                return Rejected(errors.MISSING_FIELD, "no markPrice or lastPrice", symbol)
            return Ticker(symbol, ts, data)
    return _fields(symbol, ts, data)


def _fields(symbol: str, ts: int, data: dict[str, Any]) -> Frame:
    """Field-by-field validation: names the first bad field, drops unknown ones."""
    unknown = False
    for name, value in data.items():
        if type(value) is not str:
            return Rejected(errors.BAD_TYPE, f"{_short(name)} is {type(value).__name__}", symbol)
        if name in NUMERIC_FIELDS:
            if value and not is_decimal(value):
                return Rejected(errors.BAD_NUMBER, f"{name}={_short(value)}", symbol)
        elif name != "symbol":
            unknown = True
    for name in REQUIRED_FIELDS:
        if not data.get(name):
            return Rejected(errors.MISSING_FIELD, f"no {name}", symbol)
    if unknown:
        data = {k: v for k, v in data.items() if k in _KNOWN_FIELDS}
    return Ticker(symbol, ts, data)


def _topics(value: object) -> tuple[str, ...] | None:
    if type(value) is not list:
        return None
    return tuple(t for t in value if type(t) is str)


def _answer(doc: dict[str, Any], op: object) -> CommandAnswer:
    req_id = doc.get("req_id")
    ret_msg = doc.get("ret_msg")
    data = doc.get("data")
    success_topics = fail_topics = None
    if type(data) is dict:
        success_topics = _topics(data.get("successTopics"))
        fail_topics = _topics(data.get("failTopics"))
    return CommandAnswer(
        req_id=req_id if type(req_id) is str else None,
        op=op if type(op) is str else None,
        success=doc.get("success") is True,
        ret_msg=ret_msg[:2000] if type(ret_msg) is str else "",
        success_topics=success_topics,
        fail_topics=fail_topics,
    )


def topics_named(ret_msg: str) -> dict[str, str]:
    """Topics a free-text answer names, each with the ``;``-separated clause naming it.

    Bybit's "op" form carries failures only in ``ret_msg``; reading which topics it names
    (exact tokens, so ``...-C`` is not mistaken for ``...-C-USDT``) tells a partial
    failure from a whole-request rejection.
    """
    named: dict[str, str] = {}
    for clause in ret_msg.split(";"):
        for topic in _TOPIC_IN_TEXT.findall(clause):
            named.setdefault(topic, clause)
    return named
