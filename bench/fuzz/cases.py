"""Exchange frames for fuzzing, each carrying the verdict the ingest's documented rules predict.

A :class:`Case` is the raw bytes of one WebSocket message plus what must happen to it. The
verdict comes from the rules in ``ingest/frames.py``'s docstring and docs/ingest.md (what a
ticker must satisfy before it may be stored), applied to the *mutation* that made the frame —
not from the ingest's code — so the drill can catch the code disagreeing with its own rules:

- accepted: ``stored`` holds exactly the known Bybit fields that must reach Redis (unknown
  fields dropped, values as received), under ``symbol``, with exchange time ``ts``;
- rejected: ``errors`` is the set of :data:`common.errors.ERROR_TYPES` members the rules allow
  (one member for a single violation; several when a frame breaks several rules, since the
  rules do not rank them);
- ``other``: a pong (not an error) or a subscribe answer (counted ``unknown_message`` by a
  connection that sent no such request).

A base frame is a well-formed ticker of a tracked symbol (values drawn as Bybit formats them);
mutations come in groups (envelope, symbol/topic, timestamp, data, fields, transport) and a
combined case takes at most one mutation per group, so no two mutations can cancel each
other out into a frame that is valid again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from hypothesis import strategies as st

from common import errors
from common.symbols import is_valid_symbol
from ingest.frames import REQUIRED_FIELDS, TICKER_FIELDS

NUMERIC: Final = tuple(f for f in TICKER_FIELDS if f != "symbol")
OPTIONAL: Final = tuple(f for f in NUMERIC if f not in REQUIRED_FIELDS)
KNOWN: Final = frozenset(TICKER_FIELDS)

#: Margins well past the documented bounds (1 h old, 5 min ahead), so clock drift between
#: generating a case and decoding it never turns a bad timestamp into a good one.
TOO_OLD_MS: Final = 3 * 3_600_000
TOO_NEW_MS: Final = 3_600_000
#: In-bounds spread of base frames' timestamps (older ones may be dropped as stale: allowed).
TS_SPREAD_MS: Final = 600_000

#: "A finite decimal as Bybit formats it", as docs/ingest.md states the rule: optional minus,
#: digits, optional fraction, optional exponent; ASCII only; bounded length (30 digits a part).
_ORACLE_DECIMAL: Final = re.compile(r"-?\d{1,30}(?:\.\d{1,30})?(?:[eE][-+]?\d{1,4})?", re.ASCII)

HOSTILE_NUMBERS: Final = (
    "NaN", "nan", "-NaN", "Infinity", "-Infinity", "inf", "-inf", "1e999", "-1e400", "1E99999", "0x1A",
    "1_000", " 1", "1 ", "+1", "1.", ".5", "\u0661\u0662\u0663", "\uff11\uff12", "1e", "--1", "1.2.3",
    "9" * 31, "1" + "0" * 400, "1,5", "\u00a01", "0\x00", "1\n", "\u00bd", "\u00b2", "-", "e5", "1e+",
    "0.1e-99999", "1" * 30 + "." + "1" * 31, "true", "null", "[]", "{}", "\"1\"", "1e308", "-0",
)
HOSTILE_SYMBOLS: Final = (
    "*", "?", "[a-z]", "BTC-*", "option:*", "BTC-27DEC26-100000-C*", "../x", "..%2Fx", "/etc/passwd",
    "BTC-27DEC26-100000-C\n", " BTC-27DEC26-100000-C", "btc-27dec26-100000-c", "BTC-27DEC26-100000-X",
    "BTC-32DEC26-100000-C", "BTC-27DEC26-100000-C-USD", "BTC-27DEC26--C", "BTC-27DEC26-1e5-C",
    "BTC-27DEC26-100000-C\x00", "BTC\u202e-27DEC26-100000-C", "BTC-27DEC26-\uff11-C", "KEYS *",
    "A" * 41, "B" * 10_000, "\U0001f600", "tickers.BTC-27DEC26-100000-C", "BTC-027DEC26-100000-C",
)
#: Placeholders replaced in the serialised bytes (orjson cannot emit these itself).
_RAW_MARK: Final = "@@raw@@"
#: Envelope keys an added key must not use: they route a frame (topic, op...) or are mutated
#: by their own group.
_ROUTING_KEYS: Final = frozenset({"topic", "ts", "data", "op", "success", "ret_msg", "type", "req_id"})


@dataclass(frozen=True, slots=True)
class Universe:
    """Who the ingest tracks: ``owned`` symbols (subscribed) and well-formed ``unowned`` ones."""

    owned: tuple[str, ...]
    unowned: tuple[str, ...]
    now_ms: int


@dataclass(frozen=True, slots=True)
class Case:
    """One message and its predicted fate (see the module docstring)."""

    kind: str
    raw: bytes
    binary: bool = False
    symbol: str | None = None
    ts: int | None = None
    stored: dict[str, str] | None = None
    errors: frozenset[str] = frozenset()
    other: str | None = None  # "pong" or "answer"

    @property
    def accepted(self) -> bool:
        return self.stored is not None


def oracle_decimal(value: str) -> bool:
    """The documented rule for a numeric field's non-empty value."""
    return _ORACLE_DECIMAL.fullmatch(value) is not None and math.isfinite(float(value))


def parse_or_none(raw: bytes) -> tuple[bool, Any]:
    """(parsed, value): whether ``raw`` is JSON at all (the parser's word, used for raw splices)."""
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None


# --- value strategies -------------------------------------------------------------------------

plain_decimals: Final = st.one_of(
    st.sampled_from(["0", "0.0", "-19.9115368", "7.86976724", "16823.73"]),
    st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{1,8})?", fullmatch=True),
)
decimals: Final = st.one_of(plain_decimals, st.sampled_from(["1e-5", "2E3"]))
json_scalars: Final = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
json_junk: Final = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
non_string_json: Final = json_junk.filter(lambda v: not isinstance(v, str))
safe_text: Final = st.text(st.characters(codec="utf-8"), max_size=60)
non_ascii_text: Final = st.text(st.characters(min_codepoint=0x80, codec="utf-8"),
                                min_size=1, max_size=30)


@st.composite
def base_doc(draw: st.DrawFn, universe: Universe) -> tuple[str, dict[str, Any]]:
    """A well-formed ticker push of one tracked symbol: (symbol, envelope)."""
    symbol = draw(st.sampled_from(universe.owned))
    data: dict[str, Any] = {"symbol": symbol}
    # Most pushes as Bybit sends them (plain decimals: the connection's fast path); some with an
    # exponent somewhere (valid too, decided by the exact path).
    values = plain_decimals if draw(st.integers(min_value=0, max_value=3)) else decimals
    for name in NUMERIC:
        data[name] = draw(values)
    ts = universe.now_ms - draw(st.integers(min_value=0, max_value=TS_SPREAD_MS))
    # Bybit's key order (tests/data/bybit/ws_ticker_option_*.json): a push that keeps it has the
    # shape the connection's fast path (ingest.canonical) recognises, so both paths get fuzzed.
    return symbol, {"id": f"tickers.{symbol}-{ts}", "topic": f"tickers.{symbol}", "ts": ts,
                    "data": data, "type": "snapshot"}


# --- mutations: each edits the envelope in place and says what the rules now predict -------

Doc = dict[str, Any]
Splices = dict[str, bytes]  # placeholder -> raw JSON text to put in its place
Verdict = tuple[str, frozenset[str]]  # (label, allowed error types; empty = still valid)
Mutation = Callable[[st.DrawFn, Doc, Universe, Splices], Verdict]


def _data(doc: Doc) -> dict[str, Any] | None:
    data = doc.get("data")
    return data if isinstance(data, dict) else None


def _one(error: str) -> frozenset[str]:
    return frozenset({error})


NONE: Final = frozenset[str]()


def m_wrong_type(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    data[draw(st.sampled_from(NUMERIC))] = draw(non_string_json)
    return "field_wrong_type", _one(errors.BAD_TYPE)


def m_not_decimal(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    name = draw(st.sampled_from(NUMERIC))
    value = draw(st.one_of(st.sampled_from(HOSTILE_NUMBERS), safe_text,
                           st.from_regex(r"[-+ ]?[0-9.eE]{0,8}[ \n]?", fullmatch=True)))
    data[name] = value
    if value == "":
        return "field_not_decimal", _one(errors.MISSING_FIELD) if name in REQUIRED_FIELDS else NONE
    return "field_not_decimal", NONE if oracle_decimal(value) else _one(errors.BAD_NUMBER)


def m_unicode(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    data[draw(st.sampled_from(NUMERIC))] = draw(decimals) + draw(non_ascii_text)
    return "field_unicode", _one(errors.BAD_NUMBER)


def m_huge_string(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    digits = draw(st.integers(min_value=31, max_value=20_000))
    data[draw(st.sampled_from(NUMERIC))] = draw(st.sampled_from(["9" * digits, "0." + "1" * digits,
                                                                  "1e" + "9" * min(digits, 400)]))
    return "field_huge_string", _one(errors.BAD_NUMBER)


def m_missing_required(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    name = draw(st.sampled_from(REQUIRED_FIELDS))
    if draw(st.booleans()):
        del data[name]
    else:
        data[name] = ""
    return "field_missing_required", _one(errors.MISSING_FIELD)


def m_missing_optional(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    for name in draw(st.lists(st.sampled_from(OPTIONAL), min_size=1, max_size=5, unique=True)):
        if draw(st.booleans()):
            del data[name]
        else:
            data[name] = ""
    return "field_optional_absent", NONE


def m_extra_field(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    name = draw(safe_text.filter(lambda n: n not in KNOWN))
    if draw(st.booleans()):
        data[name] = draw(st.one_of(safe_text, st.sampled_from(["x" * 5000, "\x00", "option:*"])))
        return "field_extra", NONE
    data[name] = draw(non_string_json)
    return "field_extra_non_string", _one(errors.BAD_TYPE)


def m_nested(draw: st.DrawFn, doc: Doc, _u: Universe, splices: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    depth = draw(st.one_of(st.integers(min_value=2, max_value=1000),
                           st.integers(min_value=1020, max_value=5000)))
    opener = draw(st.sampled_from([b"[", b'{"a":']))
    closer = b"]" if opener == b"[" else b"}"
    mark = f"{_RAW_MARK}{len(splices)}"
    splices[mark] = opener * depth + b"1" + closer * depth
    data[draw(st.sampled_from(NUMERIC))] = mark
    return "field_nested_junk", _one(errors.BAD_TYPE)  # bad_json past the parser's depth: see build


def m_huge_number(draw: st.DrawFn, doc: Doc, _u: Universe, splices: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    digits = draw(st.integers(min_value=19, max_value=400))
    mark = f"{_RAW_MARK}{len(splices)}"
    splices[mark] = draw(st.sampled_from([b"9" * digits, b"-" + b"9" * digits, b"1e" + str(digits).encode()]))
    data[draw(st.sampled_from(NUMERIC))] = mark
    return "field_huge_number", _one(errors.BAD_TYPE)  # bad_json when it overflows a double: see build


def m_symbol_bad(draw: st.DrawFn, doc: Doc, u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    original = data["symbol"]
    value = draw(st.one_of(st.sampled_from(HOSTILE_SYMBOLS), safe_text,
                           st.sampled_from(u.owned).map(str.lower),
                           st.tuples(st.sampled_from(u.owned), st.sampled_from(["-", "X", "*", " ", "-C"]))
                           .map("".join)))
    data["symbol"] = value
    same_topic = draw(st.booleans())
    if same_topic:
        doc["topic"] = "tickers." + value
    if value == "":
        return "symbol_bad", _one(errors.MISSING_FIELD)
    if not is_valid_symbol(value):
        return "symbol_bad", _one(errors.BAD_SYMBOL)
    if value == original or (value in u.owned and same_topic):
        return "symbol_bad", NONE  # drew a valid tracked symbol consistent with its topic
    if same_topic:
        return "symbol_bad", _one(errors.UNSUBSCRIBED_SYMBOL)
    return "symbol_bad", frozenset({errors.TOPIC_MISMATCH, errors.UNSUBSCRIBED_SYMBOL})


def m_symbol_type(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    value = draw(non_string_json)
    data["symbol"] = value
    return "symbol_wrong_type", _one(errors.MISSING_FIELD if value is None else errors.BAD_TYPE)


def m_symbol_other(draw: st.DrawFn, doc: Doc, u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    other = draw(st.sampled_from(u.owned + u.unowned).filter(lambda s: s != data["symbol"]))
    data["symbol"] = other
    if other in u.owned:
        return "symbol_other_tracked", _one(errors.TOPIC_MISMATCH)
    return "symbol_other_tracked", frozenset({errors.TOPIC_MISMATCH, errors.UNSUBSCRIBED_SYMBOL})


def m_unsubscribed(draw: st.DrawFn, doc: Doc, u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    other = draw(st.sampled_from(u.unowned))
    data["symbol"] = other
    doc["topic"] = "tickers." + other
    return "symbol_unsubscribed", _one(errors.UNSUBSCRIBED_SYMBOL)


def m_topic_mismatch(draw: st.DrawFn, doc: Doc, u: Universe, _s: Splices) -> Verdict:
    data = _data(doc)
    assert data is not None
    symbol = data["symbol"]
    suffix = draw(st.one_of(st.sampled_from(u.owned + u.unowned), safe_text,
                            st.just(symbol + "-USDT"), st.just(symbol.lower()), st.just(symbol + " ")))
    if suffix == symbol:
        suffix += "x"
    doc["topic"] = "tickers." + suffix
    return "topic_mismatch", _one(errors.TOPIC_MISMATCH)


def m_topic_other(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0:
        doc["topic"] = draw(safe_text.filter(lambda t: not t.startswith("tickers.")))
    elif choice == 1:
        doc["topic"] = draw(st.sampled_from(["orderbook.1.BTC-27DEC26-100000-C", "TICKERS.BTC", "ticker",
                                             "publicTrade.BTC", " tickers.BTC-27DEC26-100000-C"]))
    elif choice == 2:
        doc["topic"] = draw(non_string_json)
    else:
        del doc["topic"]
    return "topic_other", _one(errors.UNKNOWN_MESSAGE)


def m_ts_bad(draw: st.DrawFn, doc: Doc, u: Universe, splices: Splices) -> Verdict:
    choice = draw(st.integers(min_value=0, max_value=5))
    now = u.now_ms
    if choice == 0:
        doc["ts"] = draw(non_string_json.filter(lambda v: type(v) is not int))
    elif choice == 1:
        doc["ts"] = draw(st.sampled_from([str(now), f"{now}.0", "", "now", "1e12"]))
    elif choice == 2:
        doc["ts"] = draw(st.one_of(st.integers(min_value=-(2**63), max_value=now - TOO_OLD_MS),
                                   st.integers(min_value=now + TOO_NEW_MS, max_value=2**64 - 1)))
    elif choice == 3:
        doc["ts"] = float(now)
    elif choice == 4:
        mark = f"{_RAW_MARK}{len(splices)}"
        splices[mark] = draw(st.sampled_from([b"9" * 25, b"-" + b"9" * 25, str(now).encode() + b"e0"]))
        doc["ts"] = mark
    else:
        del doc["ts"]
    return "ts_bad", _one(errors.BAD_TIMESTAMP)


def m_data_bad(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    if draw(st.booleans()):
        del doc["data"]
        return "data_bad", _one(errors.MISSING_FIELD)
    value = draw(json_junk.filter(lambda v: not isinstance(v, dict)))
    doc["data"] = value
    # As it goes on the wire: orjson writes a NaN or an infinity as null, which is "no data".
    sent = orjson.loads(orjson.dumps(value))
    return "data_bad", _one(errors.MISSING_FIELD if sent is None else errors.BAD_TYPE)


def m_envelope_extra(draw: st.DrawFn, doc: Doc, _u: Universe, _s: Splices) -> Verdict:
    if draw(st.booleans()):
        doc[draw(safe_text.filter(lambda k: k not in _ROUTING_KEYS and k != "id"))] = draw(json_junk)
    else:
        doc[draw(st.sampled_from(["id", "type"]))] = draw(json_junk.filter(lambda v: v != "COMMAND_RESP"))
    return "envelope_extra", NONE




#: Mutation groups, applied in this order; a combined case takes at most one from each, so
#: none undoes another (the symbol group runs first: the field group may remove the symbol,
#: the data group may replace ``data`` altogether).
GROUPS: Final[tuple[tuple[str, tuple[Mutation, ...]], ...]] = (
    ("symbol", (m_symbol_bad, m_symbol_type, m_symbol_other, m_unsubscribed, m_topic_mismatch,
                m_topic_other)),
    ("ts", (m_ts_bad,)),
    ("field", (m_wrong_type, m_not_decimal, m_unicode, m_huge_string, m_missing_required, m_missing_optional,
               m_extra_field, m_nested, m_huge_number)),
    ("envelope", (m_envelope_extra,)),
    ("data", (m_data_bad,)),
)
ALL_MUTATIONS: Final[tuple[Mutation, ...]] = tuple(m for _, group in GROUPS for m in group)


def _serialise(doc: Doc, splices: Splices) -> bytes:
    raw = orjson.dumps(doc)
    for mark, text in splices.items():
        raw = raw.replace(b'"' + mark.encode() + b'"', text)
    return raw


def _finish(kind: str, doc: Doc, raw: bytes, allowed: frozenset[str], *, binary: bool) -> Case:
    """The case for ``raw``: bytes that are not a JSON object are ``bad_json`` whatever else."""
    parsed, value = parse_or_none(raw)
    if not parsed or type(value) is not dict:
        return Case(kind, raw, binary, errors=_one(errors.BAD_JSON))
    if allowed:
        return Case(kind, raw, binary, errors=allowed)
    data = doc["data"]
    stored = {k: v for k, v in data.items() if k in KNOWN}
    return Case(kind, raw, binary, symbol=data["symbol"], ts=doc["ts"], stored=stored)


@st.composite
def tickers(draw: st.DrawFn, universe: Universe, *, mutations: int = 0) -> Case:
    """A ticker push: well-formed (``mutations=0``), one mutation, or one per chosen group."""
    _symbol, doc = draw(base_doc(universe))
    splices: Splices = {}
    labels: list[str] = []
    allowed: set[str] = set()
    if mutations == 1:
        chosen: list[Mutation] = [draw(st.sampled_from(ALL_MUTATIONS))]
    else:
        groups = draw(st.lists(st.sampled_from(GROUPS), min_size=min(mutations, 2),
                               max_size=mutations, unique_by=lambda g: g[0]))
        order = [name for name, _ in GROUPS]
        groups.sort(key=lambda g: order.index(g[0]))
        chosen = [draw(st.sampled_from(ms)) for _, ms in groups]
    for mutation in chosen:
        label, errs = mutation(draw, doc, universe, splices)
        labels.append(label)
        allowed |= errs
    kind = "valid" if not labels else ("+".join(labels) if len(labels) > 1 else labels[0])
    if len(labels) > 1:
        kind = "combined"
    raw = _serialise(doc, splices)
    binary = draw(st.integers(min_value=0, max_value=9)) == 0
    if not labels and draw(st.booleans()):
        raw += draw(st.sampled_from([b" ", b"\n", b"\t\r\n "]))  # whitespace after a document is JSON
    return _finish(kind, doc, raw, frozenset(allowed), binary=binary)


@st.composite
def broken_transport(draw: st.DrawFn, universe: Universe) -> Case:
    """A well-formed push broken on the way: truncated, invalid UTF-8, lone surrogate, trailing junk."""
    _symbol, doc = draw(base_doc(universe))
    raw = orjson.dumps(doc)
    how = draw(st.sampled_from(["truncated", "invalid_utf8", "lone_surrogate", "trailing_junk"]))
    if how == "truncated":
        raw = raw[:draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    elif how == "invalid_utf8":
        at = raw.index(b'"') + 1
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        raw = raw[:at] + bad + raw[at:]
    elif how == "lone_surrogate":
        at = raw.index(b'"') + 1
        raw = raw[:at] + draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud800\\u0041"])) + raw[at:]
    else:
        raw += draw(st.sampled_from([b"x", b"\x00", b"}", b",", b"{}", b"[]"]))
    return _finish(f"transport_{how}", doc, raw, frozenset(), binary=draw(st.booleans()))


_unroutable_keys = safe_text.filter(lambda k: k not in _ROUTING_KEYS)
_req_ids = st.one_of(st.text(max_size=30).map(lambda t: "fuzz-" + t), non_string_json)
_ret_msgs = st.one_of(safe_text, st.just("error:Invalid symbol,topic:tickers.BTC-27DEC26-100000-C"),
                      non_string_json).filter(lambda v: v != "pong")
_topic_lists = st.lists(st.one_of(safe_text.map(lambda t: "tickers." + t), non_string_json), max_size=5)


@st.composite
def other_messages(draw: st.DrawFn) -> Case:
    """Raw junk, JSON that is no object, unroutable objects, pongs and subscribe answers."""
    what = draw(st.sampled_from(["raw_bytes", "not_object", "unroutable", "pong", "answer"]))
    if what == "raw_bytes":
        raw = draw(st.binary(max_size=2000))
        parsed, value = parse_or_none(raw)
        if parsed and type(value) is dict:
            raw = b"\xff" + raw  # keep it junk (an object from random bytes is vanishingly rare)
        return Case("raw_bytes", raw, draw(st.booleans()), errors=_one(errors.BAD_JSON))
    if what == "not_object":
        value = draw(json_junk.filter(lambda v: not isinstance(v, dict)))
        return Case("json_not_object", orjson.dumps(value), errors=_one(errors.BAD_JSON))
    if what == "unroutable":
        doc = draw(st.dictionaries(_unroutable_keys, json_junk, max_size=6))
        return Case("json_unroutable", orjson.dumps(doc), errors=_one(errors.UNKNOWN_MESSAGE))
    if what == "pong":
        doc = {"req_id": draw(_req_ids), "args": draw(json_junk), "conn_id": draw(json_junk)}
        doc.update(draw(st.sampled_from([{"op": "pong"}, {"ret_msg": "pong", "success": True}])))
        return Case("pong", orjson.dumps(doc), other="pong")
    doc = {"req_id": draw(_req_ids), "ret_msg": draw(_ret_msgs), "conn_id": draw(json_junk)}
    doc.update(draw(st.sampled_from([{"op": "subscribe"}, {"op": "unsubscribe"}, {"type": "COMMAND_RESP"},
                                     {"success": False}])))
    if draw(st.booleans()):
        doc["success"] = draw(json_junk)
    if draw(st.booleans()):
        topics = st.one_of(_topic_lists, json_junk)
        doc["data"] = draw(st.one_of(json_junk, st.fixed_dictionaries(
            {"successTopics": topics, "failTopics": topics})))
    return Case("answer", orjson.dumps(doc), other="answer")


def cases(universe: Universe) -> st.SearchStrategy[Case]:
    """Every kind of message, weighted towards mutated tickers (the frames that could be stored)."""
    return st.one_of(
        tickers(universe), tickers(universe, mutations=1), tickers(universe, mutations=1),
        tickers(universe, mutations=1), tickers(universe, mutations=4), broken_transport(universe),
        other_messages(),
    )
