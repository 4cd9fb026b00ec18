"""The simulator's default answers against Bybit's real captures (``tests/data/bybit/``).

The simulator is the ingest's test fixture and demo source; if its shapes drift from Bybit's, the
ingest is tested against an exchange nobody runs. So every message kind the simulator sends by
default is diffed here against the captures of that kind: the same keys in the same order at
every level, the same JSON types (ints where Bybit has ints, numbers-as-strings without exponent
where Bybit has those), the same id/topic/conn_id/cursor patterns, and the values the captures
pin (the "0"s of an empty book side, an empty cursor on the last page, the 10006 text).

The shape checker is itself tested against the simulator's older forms (op-form subscribe
answers, echo pongs, the old ticker key order, plain cursors): each must be told apart from the
capture, so these tests fail if the simulator regresses to one of them by default.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from common.symbols import parse_symbol
from simulator import frames
from simulator.subscriptions import Outcome
from tests.bybit_corpus import load
from tests.fixtures_simulator import SimulatorHandle, simulator_argv
from tests.servers import free_port
from tests.test_simulator_stream import collect_until, open_stream, request, topics

COINS = ("BTC", "ETH", "SOL")
PER_COIN = 40
#: A number as Bybit writes it in a string: optional minus, digits, optional decimals; no exponent.
DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
MS = re.compile(r"[1-9][0-9]{12}")  # a millisecond timestamp in a string: 13 digits
BOOK = ("bidPrice", "bidSize", "bidIv", "askPrice", "askSize", "askIv")


# --- the shape checker --------------------------------------------------------------------------

def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


def shape_problems(got: Any, want: Any, path: str = "$") -> list[str]:
    """Where ``got`` differs in shape from the capture ``want`` (empty when it conforms).

    Objects: the same keys in the same order, compared recursively. Arrays: every element of
    ``got`` against the capture's first element (an empty capture array pins only the type).
    Scalars: the same JSON type (bool, int, float, str, null kept apart); a string the capture
    writes as a decimal number must be one too (no exponent, no "", no "NaN"), and a 13-digit
    millisecond string must be one too; an int the capture has as a ms timestamp must be one.
    """
    if _kind(got) != _kind(want):
        return [f"{path}: {_kind(got)} {got!r:.60} where the capture has {_kind(want)} {want!r:.60}"]
    if isinstance(want, dict):
        if list(got) != list(want):
            return [f"{path}: keys {list(got)} where the capture has {list(want)}"]
        return [p for key in want for p in shape_problems(got[key], want[key], f"{path}.{key}")]
    if isinstance(want, list):
        if not want:
            return []
        return [p for i, item in enumerate(got) for p in shape_problems(item, want[0], f"{path}[{i}]")]
    if isinstance(want, str):
        if MS.fullmatch(want) and not MS.fullmatch(got):
            return [f"{path}: {got!r} is not a ms timestamp like the capture's {want!r}"]
        if DECIMAL.fullmatch(want) and not DECIMAL.fullmatch(got):
            return [f"{path}: {got!r:.60} is not a decimal string like the capture's {want!r}"]
    if isinstance(want, int) and not isinstance(want, bool) and want > 10**12 and not 10**12 < got < 10**13:
        return [f"{path}: {got!r} is not a ms timestamp like the capture's {want!r}"]
    return []


def conforms(got: Any, capture: str) -> None:
    problems = shape_problems(got, load(capture))
    assert not problems, f"differs from {capture}:\n" + "\n".join(problems)


def hex_groups(conn_id: str) -> list[int]:
    """Lengths of the ``-``-separated lowercase hex groups of a conn_id ([] if it is not one)."""
    groups = conn_id.split("-")
    return [len(g) for g in groups] if all(re.fullmatch(r"[0-9a-f]+", g) for g in groups) else []


def _old_ticker_order(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("id", "topic", "ts", "type", "data")}


def test_the_checks_tell_the_simulators_older_forms_from_the_captures() -> None:
    """Each older default is caught, so a regression to it fails the tests below."""
    outcome = Outcome(("tickers.BTC-3JAN27-95000-C",), (), "")
    old_answer = orjson.loads(frames.subscription_answer(style="op", op="subscribe", conn_id="c", req_id="r",
                                                         outcome=outcome))
    echo_answer = orjson.loads(frames.subscription_answer(style="command_resp_echo", op="subscribe",
                                                          conn_id="c", req_id="r", outcome=outcome))
    old_pong = orjson.loads(frames.pong(style="echo", conn_id="c", req_id="r", now_ms=1_800_000_000_000))
    ticker = load("ws_ticker_option_docs")
    empty_iv = {**ticker, "data": {**ticker["data"], "bidIv": ""}}
    exponent = {**ticker, "data": {**ticker["data"], "gamma": "2.1e-4"}}
    for doc, capture in ((old_answer, "ws_subscribe_option_command_resp_docs"),
                         (echo_answer, "ws_subscribe_option_command_resp_docs"),
                         (old_pong, "ws_pong_option_docs"),
                         (_old_ticker_order(ticker), "ws_ticker_option_docs"),
                         ({**ticker, "ts": str(ticker["ts"])}, "ws_ticker_option_docs"),
                         (empty_iv, "ws_ticker_option_docs"),
                         (exponent, "ws_ticker_option_docs")):
        assert shape_problems(doc, load(capture)), (doc, capture)
    for capture in ("ws_ticker_option_docs", "ws_subscribe_option_command_resp_roq", "ws_pong_option_docs",
                    "rest_instruments_option_usdt_docs", "rest_tickers_option_docs", "rest_time_docs"):
        assert shape_problems(load(capture), load(capture)) == []
    item = load("rest_instruments_option_usdt_docs")["result"]["list"][0]
    without_display_name = {k: v for k, v in item.items() if k != "displayName"}
    assert shape_problems(without_display_name, item)
    linear_uuid = load("ws_subscribe_linear_op_docs")["conn_id"]  # the simulator's older conn_id form
    assert hex_groups(linear_uuid) != hex_groups(load("ws_subscribe_option_command_resp_docs")["conn_id"])


# --- one simulator with default answer forms, shared by the tests below ----------------------------

@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    """A simulator started with no form flags at all: what it says is its default."""
    port = free_port()
    argv = simulator_argv(port=port, coins=COINS, instruments_per_coin=PER_COIN, push_interval=0.1, seed=1,
                          extra_args=())
    handle = SimulatorHandle(port=port, argv=argv, log_path=tmp_path_factory.mktemp("sim") / "simulator.log")
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def get(sim: SimulatorHandle, path_and_query: str) -> tuple[int, Any]:
    """GET exactly this path and query (urllib sends the query bytes as given: nothing re-encoded)."""
    try:
        with urllib.request.urlopen(sim.rest_url + path_and_query, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ok(sim: SimulatorHandle, path_and_query: str) -> dict[str, Any]:
    """The whole answer of a call that must succeed (HTTP 200, retCode 0)."""
    status, doc = get(sim, path_and_query)
    assert status == 200
    assert isinstance(doc, dict)
    assert doc["retCode"] == 0, doc
    return doc


def instruments(sim: SimulatorHandle, query: str) -> dict[str, Any]:
    return ok(sim, f"/v5/market/instruments-info?category=option&{query}")


# --- REST -----------------------------------------------------------------------------------------

def test_server_time_is_shaped_like_the_docs(sim: SimulatorHandle) -> None:
    doc = ok(sim, "/v5/market/time")
    conforms(doc, "rest_time_docs")
    seconds, nanos = doc["result"]["timeSecond"], doc["result"]["timeNano"]
    assert re.fullmatch(r"[0-9]{10}", seconds)
    assert re.fullmatch(r"[0-9]{19}", nanos)
    assert int(nanos) // 10**9 == int(seconds)
    assert abs(doc["time"] - time.time() * 1000) < 10_000


@pytest.mark.parametrize("coin", COINS)
def test_instrument_pages_are_shaped_like_the_docs_examples(sim: SimulatorHandle, coin: str) -> None:
    doc = instruments(sim, f"baseCoin={coin}&limit=1000")
    assert doc["result"]["nextPageCursor"] == ""  # the last page, as in both docs examples
    usdc = [i for i in doc["result"]["list"] if i["settleCoin"] == "USDC"]
    usdt = [i for i in doc["result"]["list"] if i["settleCoin"] == "USDT"]
    assert usdc
    assert usdt
    conforms({**doc, "result": {**doc["result"], "list": usdt}}, "rest_instruments_option_usdt_docs")
    conforms({**doc, "result": {**doc["result"], "list": usdc}}, "rest_instruments_option_usdt_docs")
    older = load("rest_instruments_option_docs_2023")["result"]["list"][0]
    for item in usdc:
        # The 2023 USDC example has every key but displayName (added to the docs in 2025), same order.
        assert [k for k in item if k != "displayName"] == list(older)
        assert (item["quoteCoin"], item["settleCoin"], item["displayName"]) == ("USD", "USDC", "")
        assert not item["symbol"].endswith("-USDT")
    documented = load("rest_instruments_option_usdt_docs")["result"]["list"][0]
    assert documented["displayName"] == "BTCUSDT-27MAR26-70000-P"  # for BTC-27MAR26-70000-P-USDT
    for item in usdt:
        assert item["symbol"].endswith("-USDT")
        assert (item["quoteCoin"], item["settleCoin"]) == ("USDT", "USDT")
        middle = item["symbol"].removeprefix(f"{coin}-").removesuffix("-USDT")
        assert item["displayName"] == f"{coin}USDT-{middle}"
    for item in doc["result"]["list"]:
        assert parse_symbol(item["symbol"]) is not None
        assert item["baseCoin"] == coin
        assert item["deliveryFeeRate"] == documented["deliveryFeeRate"]
        assert int(item["launchTime"]) < int(item["deliveryTime"])


def test_a_middle_page_is_shaped_like_the_live_page_and_its_cursor_is_percent_escaped(
        sim: SimulatorHandle) -> None:
    doc = instruments(sim, "baseCoin=BTC&limit=2")
    conforms(doc, "rest_instruments_option_usdt_docs")
    # The live page (2023) predates displayName (docs 2025): compare the rest with it.
    older = [{k: v for k, v in i.items() if k != "displayName"} for i in doc["result"]["list"]]
    conforms({**doc, "result": {**doc["result"], "list": older}}, "rest_instruments_option_page_roq")
    captured = load("rest_instruments_option_page_roq")["result"]["nextPageCursor"]
    cursor = doc["result"]["nextPageCursor"]
    assert "%2C" in captured
    assert "%2C" in cursor  # handed out already percent-encoded, as Bybit's "0%2C500"
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", cursor)  # opaque: no raw "," "&" "=" or space


def test_a_cursor_sent_back_unchanged_pages_through_the_whole_listing(sim: SimulatorHandle) -> None:
    expected = sim.instruments()["ETH"] + sim.prelaunch()["ETH"]
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        doc = instruments(sim, "baseCoin=ETH&limit=7" + (f"&cursor={cursor}" if cursor else ""))
        pages += 1
        assert pages <= 100
        seen += [i["symbol"] for i in doc["result"]["list"]]
        cursor = doc["result"]["nextPageCursor"]
        if not cursor:
            break
    assert pages == -(-len(expected) // 7)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(expected)


def test_a_cursor_encoded_again_is_refused_with_10001(sim: SimulatorHandle) -> None:
    cursor = instruments(sim, "baseCoin=ETH&limit=7")["result"]["nextPageCursor"]
    double = quote(cursor, safe="")  # what a client does that percent-encodes the cursor text
    assert "%252C" in double
    query = f"category=option&baseCoin=ETH&limit=7&cursor={double}"
    status, doc = get(sim, f"/v5/market/instruments-info?{query}")
    assert status == 200
    assert doc["retCode"] == 10001
    assert "cursor" in doc["retMsg"]
    conforms(doc, "rest_error_10001_roq")


def test_the_listing_has_prelaunch_and_trading_instruments_and_status_filters_them(
        sim: SimulatorHandle) -> None:
    listing = instruments(sim, "baseCoin=SOL&limit=1000")["result"]["list"]
    statuses = {i["symbol"]: i["status"] for i in listing}
    assert set(statuses.values()) == {"PreLaunch", "Trading"}  # nothing is within 30 min of delivery
    prelaunch = [s for s, status in statuses.items() if status == "PreLaunch"]
    assert prelaunch == sim.prelaunch()["SOL"]
    assert 1 <= len(prelaunch) <= 4
    filtered = instruments(sim, "baseCoin=SOL&limit=1000&status=PreLaunch")["result"]["list"]
    assert [i["symbol"] for i in filtered] == prelaunch
    now_ms = time.time() * 1000
    assert all(int(i["launchTime"]) > now_ms for i in filtered)
    trading = instruments(sim, "baseCoin=SOL&limit=1000&status=Trading")["result"]["list"]
    assert [i["symbol"] for i in trading] == sim.instruments()["SOL"]


def test_tickers_are_shaped_like_the_docs_example(sim: SimulatorHandle) -> None:
    doc = ok(sim, "/v5/market/tickers?category=option&baseCoin=BTC")
    conforms(doc, "rest_tickers_option_docs")
    rows = doc["result"]["list"]
    assert len(rows) == len(sim.instruments()["BTC"]) + len(sim.prelaunch()["BTC"])
    one = rows[5]["symbol"]
    single = ok(sim, f"/v5/market/tickers?category=option&symbol={one}")
    conforms(single, "rest_tickers_option_docs")
    assert [r["symbol"] for r in single["result"]["list"]] == [one]


def test_tickers_without_base_coin_or_symbol_are_refused_with_10001(sim: SimulatorHandle) -> None:
    status, doc = get(sim, "/v5/market/tickers?category=option")
    assert status == 200
    assert doc["retCode"] == 10001
    conforms(doc, "rest_error_10001_roq")
    assert doc["result"] == {}
    assert doc["retExtInfo"] == {}


def test_the_10006_rate_limit_answer_is_the_captured_body(sim: SimulatorHandle) -> None:
    sim.set_faults(rest_rate_limit=1, rest_rate_limit_mode="10006")
    try:
        status, doc = get(sim, "/v5/market/time")
    finally:
        sim.clear_faults()
    captured = load("rest_error_10006_issue")
    assert status == 200
    conforms(doc, "rest_error_10006_issue")
    assert (doc["retCode"], doc["retMsg"], doc["result"]) == (captured["retCode"], captured["retMsg"], {})


# --- WebSocket ------------------------------------------------------------------------------------

@pytest.mark.parametrize("capture", ["ws_subscribe_option_command_resp_docs",
                                     "ws_subscribe_option_command_resp_roq"])
async def test_subscribe_answers_are_the_option_command_resp(sim: SimulatorHandle, capture: str) -> None:
    wanted = topics(sim.instruments()["BTC"][:3])
    async with open_stream(sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", wanted)
    conforms(answer, capture)
    assert answer["success"] is True
    assert answer["type"] == "COMMAND_RESP"
    assert answer["data"] == {"failTopics": [], "successTopics": wanted}
    assert hex_groups(answer["conn_id"]) == hex_groups(load(capture)["conn_id"]) == [16, 8, 8, 16, 8]


async def test_pongs_are_the_option_pong(sim: SimulatorHandle) -> None:
    async with open_stream(sim.ws_url) as ws:
        before = time.time() * 1000
        pong, _ = await request(ws, "ping")
    conforms(pong, "ws_pong_option_docs")
    assert pong["op"] == "pong"
    assert MS.fullmatch(pong["args"][0])
    assert abs(int(pong["args"][0]) - before) < 10_000


def _rest_rows(sim: SimulatorHandle) -> list[dict[str, str]]:
    return [row for coin in COINS
            for row in ok(sim, f"/v5/market/tickers?category=option&baseCoin={coin}")["result"]["list"]]


def _empty_book_candidates(sim: SimulatorHandle) -> tuple[list[str], list[str]]:
    """Symbols whose REST ticker shows no bid but an ask, and no book at all (new listings if needed).

    New listings have thin books (half of them no bid, a third no ask), so a few batches always
    turn up both kinds; the listing itself is seeded by date and symbol.
    """
    for _ in range(10):
        rows = _rest_rows(sim)
        bid_only = [r["symbol"] for r in rows if r["bid1Price"] == "0" and r["ask1Price"] != "0"]
        neither = [r["symbol"] for r in rows if r["bid1Price"] == "0" and r["ask1Price"] == "0"]
        if bid_only and neither:
            return bid_only[:5], neither[:5]
        sim.list_new("BTC", 40)
    raise AssertionError("no empty book sides in 400 new listings")


async def test_ticker_pushes_are_shaped_like_the_captures_with_their_zeros(sim: SimulatorHandle) -> None:
    no_bid, no_book = _empty_book_candidates(sim)
    ordinary = sim.instruments()["ETH"][:5]
    wanted = list(dict.fromkeys([*no_bid, *no_book, *ordinary]))
    async with open_stream(sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", topics(wanted))
        assert answer["success"] is True, answer
        last: dict[str, dict[str, Any]] = {}

        def every_symbol_pushed(doc: dict[str, Any]) -> bool:
            if "topic" in doc:
                last[doc["data"]["symbol"]] = doc
            return len(last) == len(wanted)

        await collect_until(ws, every_symbol_pushed, within=20)
    docs_capture, live_capture = load("ws_ticker_option_docs"), load("ws_ticker_option_empty_book_roq")
    now_ms = time.time() * 1000
    for symbol, push in last.items():
        conforms(push, "ws_ticker_option_docs")
        conforms(push, "ws_ticker_option_empty_book_roq")
        assert push["topic"] == f"tickers.{symbol}"
        assert re.fullmatch(rf"tickers\.{re.escape(symbol)}-[0-9]+-{push['ts']}", push["id"])
        assert abs(push["ts"] - now_ms) < 10_000
        assert push["type"] == "snapshot"
        data = push["data"]
        assert all(v != "" for v in data.values())
        for side in ("bid", "ask"):
            if data[f"{side}Price"] == "0":  # an empty side is all zeros, as in both captures
                assert data[f"{side}Size"] == data[f"{side}Iv"] == "0", data
    # The docs capture: the bid side "0", the ask side quoted.
    docs_zeros = [k for k in BOOK if docs_capture["data"][k] == "0"]
    assert docs_zeros == ["bidPrice", "bidSize", "bidIv"]
    assert [s for s in no_bid if all(last[s]["data"][k] == "0" for k in docs_zeros)
            and last[s]["data"]["askPrice"] != "0"]
    # The live capture: both sides "0".
    live_zeros = [k for k in BOOK if live_capture["data"][k] == "0"]
    assert live_zeros == list(BOOK)
    assert [s for s in no_book if all(last[s]["data"][k] == "0" for k in live_zeros)]
    assert all(last[s]["data"]["predictedDeliveryPrice"] == "0" for s in wanted)  # none delivers soon


# --- the compat forms, against the captures of the streams they come from ---------------------------

@pytest.mark.parametrize(("faults", "op", "capture"), [
    ({"response_style": "op"}, "subscribe", "ws_subscribe_linear_op_docs"),
    ({"pong_style": "echo"}, "ping", "ws_pong_private_docs"),
    ({"pong_style": "spot"}, "ping", "ws_pong_spot_docs"),
])
async def test_the_compat_forms_are_real_bybit_forms_of_other_streams(
        sim: SimulatorHandle, faults: dict[str, str], op: str, capture: str) -> None:
    sim.set_faults(**faults)
    try:
        async with open_stream(sim.ws_url) as ws:
            args = topics(sim.instruments()["SOL"][:1]) if op == "subscribe" else None
            answer, _ = await request(ws, op, args)
    finally:
        sim.clear_faults()
    conforms(answer, capture)
    assert sim.state()["faults"]["response_style"] == "command_resp"  # cleared back to the default
