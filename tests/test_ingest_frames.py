"""Frame parsing, routing and validation (ingest/frames.py): what may be stored, what is dropped."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import errors
from common.symbols import is_valid_symbol
from ingest.frames import (
    MAX_TS_AGE_MS,
    MAX_TS_LEAD_MS,
    TICKER_FIELDS,
    CommandAnswer,
    Pong,
    Rejected,
    Ticker,
    decode,
    is_decimal,
    topics_named,
)

NOW = 1_700_000_000_000
SYMBOL = "BTC-27DEC26-100000-C"
OTHER = "ETH-27DEC26-4000-P"
OWNED = frozenset({SYMBOL, OTHER})

DATA: dict[str, str] = {
    "symbol": SYMBOL, "bidPrice": "0", "bidSize": "0", "bidIv": "0", "askPrice": "10", "askSize": "5.1",
    "askIv": "0.514", "lastPrice": "10", "highPrice24h": "25", "lowPrice24h": "5",
    "markPrice": "7.86976724", "indexPrice": "16823.73", "markPriceIv": "0.4896",
    "underlyingPrice": "16815.1", "openInterest": "49.85", "turnover24h": "446802.8473",
    "volume24h": "26.55", "totalVolume": "86", "totalTurnover": "1437431", "delta": "0.047831",
    "gamma": "0.00021453", "vega": "0.81351067", "theta": "-19.9115368",
    "predictedDeliveryPrice": "0", "change24h": "-0.33333334",
}


def frame(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": f"tickers.{SYMBOL}-1-{NOW}", "topic": f"tickers.{SYMBOL}", "ts": NOW,
                           "type": "snapshot", "data": copy.deepcopy(DATA)}
    doc.update(changes)
    return doc


def with_data(**changes: Any) -> dict[str, Any]:
    doc = frame()
    for name, value in changes.items():
        if value is ...:
            del doc["data"][name]
        else:
            doc["data"][name] = value
    return doc


def run(doc: Any, owned: frozenset[str] = OWNED) -> Any:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return decode(raw, owned=owned, now_ms=NOW)


def rejected_as(doc: Any, error_type: str, owned: frozenset[str] = OWNED) -> Rejected:
    result = run(doc, owned)
    assert isinstance(result, Rejected), result
    assert result.error == error_type, result
    return result


# --- tickers that are stored -------------------------------------------------------------------

def test_a_documented_ticker_is_accepted_with_every_field_as_received() -> None:
    result = run(frame())
    assert result == Ticker(SYMBOL, NOW, DATA)


def test_a_text_frame_decodes_like_bytes() -> None:
    assert decode(orjson.dumps(frame()).decode(), owned=OWNED, now_ms=NOW) == Ticker(SYMBOL, NOW, DATA)


def test_empty_strings_stand_for_absent_optional_values() -> None:
    result = run(with_data(bidIv="", predictedDeliveryPrice=""))
    assert isinstance(result, Ticker)
    assert result.data["bidIv"] == ""


def test_a_ticker_without_optional_fields_is_accepted() -> None:
    minimal = {"symbol": SYMBOL, "markPrice": "1.5", "lastPrice": "1"}
    assert run(frame(data=minimal)) == Ticker(SYMBOL, NOW, minimal)


def test_unknown_fields_are_dropped_so_the_stored_hash_stays_bounded() -> None:
    result = run(with_data(attackerField="1", **{"x" * 500: "2"}))
    assert isinstance(result, Ticker)
    assert set(result.data) == set(TICKER_FIELDS)


def test_exponent_notation_is_accepted_when_finite() -> None:
    result = run(with_data(gamma="2.1E-7"))
    assert isinstance(result, Ticker)
    assert result.data["gamma"] == "2.1E-7"


@pytest.mark.parametrize("ts", [NOW - MAX_TS_AGE_MS, NOW + MAX_TS_LEAD_MS])
def test_timestamps_at_the_bounds_are_accepted(ts: int) -> None:
    assert isinstance(run(frame(ts=ts)), Ticker)


# --- tickers that are dropped, by reason -------------------------------------------------------

@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b'{"topic": "tickers.X"', b"nan"])
def test_bytes_that_are_not_json_are_bad_json(raw: bytes) -> None:
    rejected_as(raw, errors.BAD_JSON)


@pytest.mark.parametrize("doc", [[], 1, "x", None, [frame()]])
def test_json_that_is_not_an_object_is_bad_json(doc: Any) -> None:
    rejected_as(doc, errors.BAD_JSON)


def test_missing_data_is_a_missing_field() -> None:
    doc = frame()
    del doc["data"]
    rejected_as(doc, errors.MISSING_FIELD)


def test_data_that_is_a_list_is_a_bad_type() -> None:
    rejected_as(frame(data=[DATA]), errors.BAD_TYPE)


@pytest.mark.parametrize("name", ["symbol", "markPrice", "lastPrice"])
def test_each_required_field_must_be_present(name: str) -> None:
    rejected_as(with_data(**{name: ...}), errors.MISSING_FIELD)


@pytest.mark.parametrize("name", ["markPrice", "lastPrice"])
def test_a_required_price_must_not_be_empty(name: str) -> None:
    rejected_as(with_data(**{name: ""}), errors.MISSING_FIELD)


@pytest.mark.parametrize("name", [f for f in TICKER_FIELDS if f != "symbol"])
@pytest.mark.parametrize("value", ["abc", "NaN", "nan", "Infinity", "-inf", "1e999", " 1", "1 ", "1_000",
                                   "0x10", "1.2.3", "--1", "+1", "1,5", "٣"])
def test_every_numeric_field_must_be_a_finite_decimal(name: str, value: str) -> None:
    rejected_as(with_data(**{name: value}), errors.BAD_NUMBER)


@pytest.mark.parametrize("value", [None, 123.45, 7, True, [], {}])
def test_every_value_must_be_a_string(value: Any) -> None:
    rejected_as(with_data(markPrice=value), errors.BAD_TYPE)
    rejected_as(with_data(delta=value), errors.BAD_TYPE)


def test_a_non_string_value_of_an_unknown_field_is_a_bad_type() -> None:
    rejected_as(with_data(extra=None), errors.BAD_TYPE)


def test_a_non_string_symbol_is_a_bad_type() -> None:
    rejected_as(with_data(symbol=12), errors.BAD_TYPE)


@pytest.mark.parametrize("hostile", ["*", "../x", "BTC-*", "option:*", "BTC-" + "9" * 10_236,
                                     "btc-27dec26-1-c",
                                     SYMBOL + "\n", "", "tickers.BTC"])
def test_hostile_symbols_are_bad_symbols_and_never_reach_a_key(hostile: str) -> None:
    doc = frame(topic=f"tickers.{hostile}")
    doc["data"]["symbol"] = hostile
    result = run(doc)
    assert isinstance(result, Rejected)
    assert result.error in (errors.BAD_SYMBOL, errors.MISSING_FIELD)
    assert result.symbol is None
    assert len(result.detail) < 200  # logged: never the whole hostile string


def test_topic_and_symbol_must_agree() -> None:
    result = rejected_as(with_data(symbol=OTHER), errors.TOPIC_MISMATCH)
    assert result.symbol == OTHER


def test_a_usdt_symbol_does_not_match_the_topic_of_its_plain_twin() -> None:
    usdt = SYMBOL + "-USDT"
    rejected_as(with_data(symbol=usdt), errors.TOPIC_MISMATCH, owned=frozenset({SYMBOL, usdt}))


def test_a_well_formed_symbol_of_another_connection_is_unsubscribed() -> None:
    result = rejected_as(frame(), errors.UNSUBSCRIBED_SYMBOL, owned=frozenset({OTHER}))
    assert result.symbol == SYMBOL


@pytest.mark.parametrize("ts", [0, -NOW, 32_503_680_000_000, NOW - MAX_TS_AGE_MS - 1,
                                NOW + MAX_TS_LEAD_MS + 1])
def test_absurd_timestamps_are_bad_timestamps(ts: int) -> None:
    rejected_as(frame(ts=ts), errors.BAD_TIMESTAMP)


@pytest.mark.parametrize("ts", [None, "1700000000000", 1.7e12, True])
def test_a_timestamp_must_be_an_integer(ts: Any) -> None:
    rejected_as(frame(ts=ts), errors.BAD_TIMESTAMP)


def test_a_missing_timestamp_is_a_bad_timestamp() -> None:
    doc = frame()
    del doc["ts"]
    rejected_as(doc, errors.BAD_TIMESTAMP)


@pytest.mark.parametrize("topic", ["orderbook.1.BTC", 5, "publicTrade.BTC"])
def test_other_topics_are_unknown_messages(topic: Any) -> None:
    rejected_as(frame(topic=topic), errors.UNKNOWN_MESSAGE)


def test_a_message_without_topic_or_op_is_unknown() -> None:
    rejected_as({"hello": "world"}, errors.UNKNOWN_MESSAGE)


# --- routing: pongs and command answers --------------------------------------------------------

def test_the_option_stream_pong_is_a_pong() -> None:
    pong = {"req_id": "ws0-ping", "op": "pong", "args": ["1675418560633"], "conn_id": "c"}
    assert run(pong) == Pong("ws0-ping")


def test_the_spot_style_pong_is_a_pong() -> None:
    assert run({"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"}) == Pong(None)


def test_the_op_form_subscribe_answer_is_a_command_answer() -> None:
    result = run({"success": False, "ret_msg": "error:x", "conn_id": "c", "req_id": "ws0-1",
                  "op": "subscribe"})
    assert result == CommandAnswer("ws0-1", "subscribe", False, "error:x", None, None)


def test_the_command_resp_form_carries_its_topic_lists() -> None:
    result = run({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "ws0-2", "type": "COMMAND_RESP",
                  "data": {"successTopics": [f"tickers.{SYMBOL}", 5], "failTopics": []}})
    assert result == CommandAnswer("ws0-2", None, True, "", (f"tickers.{SYMBOL}",), ())


def test_an_answer_with_a_non_boolean_success_counts_as_failure() -> None:
    result = run({"success": "yes", "req_id": "r", "op": "subscribe"})
    assert isinstance(result, CommandAnswer)
    assert result.success is False


def test_topics_named_reads_exact_tokens_with_their_clause() -> None:
    named = topics_named(f"error:already subscribed,topic:tickers.{SYMBOL}; "
                         f"error:Invalid symbol,topic:tickers.{SYMBOL}-USDT")
    assert named == {f"tickers.{SYMBOL}": f"error:already subscribed,topic:tickers.{SYMBOL}",
                     f"tickers.{SYMBOL}-USDT": f" error:Invalid symbol,topic:tickers.{SYMBOL}-USDT"}


# --- properties --------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    decode(raw, owned=OWNED, now_ms=NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*TICKER_FIELDS, "extra"]), json_values, max_size=30),
       st.one_of(st.integers(), json_values), json_values)
def test_arbitrary_ticker_shaped_json_never_raises_and_only_valid_data_passes(
        data: dict[str, Any], ts: Any, topic_tail: Any) -> None:
    topic = f"tickers.{data.get('symbol')}" if isinstance(topic_tail, bool) else topic_tail
    doc = {"topic": topic if isinstance(topic, str) else f"tickers.{SYMBOL}", "ts": ts, "data": data}
    # The stdlib encoder: it also writes integers beyond 64 bits, which orjson must then survive.
    raw = json.dumps(doc).encode()
    result = decode(raw, owned=OWNED | {str(data.get("symbol"))}, now_ms=NOW)
    if isinstance(result, Ticker):
        assert is_valid_symbol(result.symbol)
        assert set(result.data) <= set(TICKER_FIELDS)
        assert all(isinstance(v, str) for v in result.data.values())
        assert all(v == "" or is_decimal(v) for k, v in result.data.items() if k != "symbol")
        assert result.data["markPrice"]
        assert result.data["lastPrice"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(TICKER_FIELDS[1:]),
                       st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,6})?([eE]-?[0-9]{1,3})?", fullmatch=True)
                       | st.sampled_from(["", "NaN", "inf", "1e999", "x"]), max_size=24))
def test_the_fast_path_and_the_field_by_field_path_agree(values: dict[str, str]) -> None:
    data = {"symbol": SYMBOL, "markPrice": "1", "lastPrice": "1", **values}
    fast = decode(orjson.dumps(frame(data=data)), owned=OWNED, now_ms=NOW)
    # With an unknown field present the decoder always takes the field-by-field path.
    slow = decode(orjson.dumps(frame(data={**data, "zzz": "1"})), owned=OWNED, now_ms=NOW)
    expected_ok = all(v == "" or is_decimal(v) for k, v in data.items() if k != "symbol") \
        and bool(data["markPrice"]) and bool(data["lastPrice"])
    assert isinstance(fast, Ticker) == expected_ok
    assert isinstance(slow, Ticker) == expected_ok
    if isinstance(fast, Ticker) and isinstance(slow, Ticker):
        assert fast.data == slow.data
    elif isinstance(fast, Rejected) and isinstance(slow, Rejected):
        assert fast.error == slow.error


def test_is_decimal_accepts_bybit_formats_only() -> None:
    for good in ("0", "10", "-19.9115368", "0.00021453", "1437431", "2.1e-7", "5E3"):
        assert is_decimal(good), good
    for bad in ("", "-", ".5", "5.", "1e", "1e99999", "NaN", "Infinity", "1e400"):
        assert not is_decimal(bad), bad


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.text(alphabet="0123456789.-+eE x", max_size=40), min_size=1, max_size=8))
def test_the_one_regex_per_frame_accepts_exactly_what_the_per_value_pattern_accepts(
        values: list[str]) -> None:
    # Syntax only: finiteness ("1e999") is checked separately whenever an exponent is present.
    from ingest.frames import _DECIMAL, _DECIMALS_JOINED

    per_value = all(v == "" or _DECIMAL.fullmatch(v) is not None for v in values)
    assert (_DECIMALS_JOINED.fullmatch("\x00".join(values)) is not None) == per_value
