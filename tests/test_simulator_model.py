"""The simulator's pure parts: listings, pricing, market, subscriptions, paging, faults, frames."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from urllib.parse import quote, unquote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.symbols import parse_symbol
from simulator import frames, malformed
from simulator.faults import FaultError, Faults
from simulator.listings import (
    DEFAULT_INSTRUMENTS,
    DELIVERING_WINDOW_MS,
    ListingGenerator,
    expiry_calendar,
    expiry_code,
    nice_step,
    prelaunch_count,
)
from simulator.market import TICKER_FIELDS, Market, num, rest_ticker
from simulator.outbox import Outbox
from simulator.paging import decode_cursor, encode_cursor, page
from simulator.pricing import black76
from simulator.ratelimit import form_for, rate_limit_answer
from simulator.subscriptions import MAX_ARGS, MAX_ARGS_CHARS, Outcome, SubscriptionBook

NOW = dt.datetime(2026, 12, 30, 7, 30, tzinfo=dt.UTC)  # a Wednesday, 30 min before delivery
DECIMAL_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _market(coins: tuple[str, ...] = ("BTC", "ETH", "SOL"), seed: int = 7) -> tuple[Market, list[str]]:
    market = Market(coins, seed=seed, now_ms=int(NOW.timestamp() * 1000))
    symbols = []
    for coin in coins:
        for ins in ListingGenerator(coin, now=NOW).take(DEFAULT_INSTRUMENTS.get(coin, 100)):
            market.add(ins)
            symbols.append(ins.symbol)
    return market, symbols


# --- listings -----------------------------------------------------------------------------------
def test_default_listing_is_about_2000_valid_unique_symbols_of_both_settle_forms() -> None:
    symbols = [i.symbol for coin, n in DEFAULT_INSTRUMENTS.items()
               for i in ListingGenerator(coin, now=NOW).take(n)]
    assert len(symbols) == 2000
    assert len(set(symbols)) == len(symbols)
    parsed = [parse_symbol(s) for s in symbols]
    assert all(p is not None for p in parsed), [s for s, p in zip(symbols, parsed, strict=True) if p is None]
    settles = {p.settle for p in parsed if p is not None}
    kinds = {p.kind for p in parsed if p is not None}
    assert settles == {None, "USDT"}
    assert kinds == {"C", "P"}


def test_symbols_never_have_a_leading_zero_day() -> None:
    gen = ListingGenerator("BTC", now=dt.datetime(2027, 1, 1, 9, tzinfo=dt.UTC))
    codes = {i.expiry_code for i in gen.take(400)}
    assert "2JAN27" in codes  # a single-digit day is written without padding
    assert not any(code.startswith("0") for code in codes)
    assert expiry_code(dt.date(2027, 1, 3)) == "3JAN27"


def test_calendar_has_dailies_weeklies_monthlies_and_quarterlies_at_0800_utc() -> None:
    expiries = expiry_calendar(NOW)
    assert all(e.hour == 8 and e.minute == 0 and e.tzinfo == dt.UTC for e in expiries)
    assert expiries == sorted(set(expiries))
    # 07:30 is within an hour of today's 08:00 delivery: the first daily is tomorrow.
    first_three = [e.date() for e in expiries[:3]]
    assert first_three == [dt.date(2026, 12, 31), dt.date(2027, 1, 1), dt.date(2027, 1, 2)]
    fridays = [e.date() for e in expiries if e.weekday() == 4]
    assert dt.date(2027, 1, 8) in fridays
    assert dt.date(2027, 1, 15) in fridays
    assert dt.date(2027, 1, 29) in fridays
    assert dt.date(2027, 2, 26) in fridays
    assert dt.date(2027, 6, 25) in fridays
    assert dt.date(2027, 9, 24) in fridays
    assert all(e - NOW >= dt.timedelta(hours=1) for e in expiries)


@pytest.mark.parametrize("coin", ["BTC", "ETH", "SOL", "XRP", "DOGE"])
def test_strikes_sit_around_spot_and_parse_for_every_coin(coin: str) -> None:
    gen = ListingGenerator(coin, now=NOW)
    instruments = gen.take(300)
    assert all(parse_symbol(i.symbol) is not None for i in instruments), coin
    strikes = [i.strike for i in instruments]
    assert min(strikes) < gen.spec.spot < max(strikes)
    assert all(s > 0 for s in strikes)
    first = instruments[0]
    assert abs(first.strike - gen.spec.spot) / gen.spec.spot < 0.01  # at the money comes first


def test_listing_more_continues_without_repeating_a_symbol() -> None:
    gen = ListingGenerator("ETH", now=NOW)
    first = {i.symbol for i in gen.take(100)}
    more = gen.take(50, now_ms=123)
    assert not first & {i.symbol for i in more}
    assert all(i.launch_ms == 123 for i in more)


def test_status_is_prelaunch_before_launch_delivering_in_the_last_half_hour_and_trading_between() -> None:
    ins = ListingGenerator("BTC", now=NOW).take(1)[0]
    assert ins.status(ins.launch_ms - 1) == "PreLaunch"
    assert ins.status(ins.launch_ms) == "Trading"
    assert ins.status(ins.delivery_ms - DELIVERING_WINDOW_MS - 1) == "Trading"
    assert ins.status(ins.delivery_ms - DELIVERING_WINDOW_MS) == "Delivering"
    assert ins.status(ins.delivery_ms - 1) == "Delivering"


def test_prelaunch_instruments_are_the_next_expiry_launching_at_the_next_0800() -> None:
    gen = ListingGenerator("ETH", now=NOW)
    trading = gen.take(100)
    pre = gen.prelaunch(4)
    now_ms = int(NOW.timestamp() * 1000)
    assert len({i.symbol for i in pre}) == 4
    assert not {i.symbol for i in pre} & {i.symbol for i in trading}
    assert {i.status(now_ms) for i in pre} == {"PreLaunch"}
    assert {i.status(now_ms) for i in trading} == {"Trading"}
    # 07:30: today's 08:00 is within the hour, so they launch tomorrow (a test run never sees the switch).
    assert {i.launch_ms for i in pre} == {int(dt.datetime(2026, 12, 31, 8, tzinfo=dt.UTC).timestamp() * 1000)}
    later = ListingGenerator("ETH", now=NOW - dt.timedelta(hours=2)).prelaunch(1)
    assert later[0].launch_ms == int(dt.datetime(2026, 12, 30, 8, tzinfo=dt.UTC).timestamp() * 1000)
    (expiry,) = {i.delivery_ms for i in pre}
    assert expiry not in {int(e.timestamp() * 1000) for e in gen.expiries}
    assert expiry > int(gen.expiries[2].timestamp() * 1000)  # after the three dailies
    assert all(parse_symbol(i.symbol) is not None and i.settle == "USDC" for i in pre)
    assert [prelaunch_count(n) for n in (5, 10, 39, 40, 700)] == [0, 1, 3, 4, 4]


def test_display_name_is_empty_for_usdc_and_bybits_form_for_usdt_settled() -> None:
    by_settle = {i.settle: i for i in ListingGenerator("BTC", now=NOW).take(4)}
    assert by_settle["USDC"].display_name == ""
    usdt = by_settle["USDT"]
    base = usdt.symbol.removesuffix("-USDT").removeprefix("BTC-")
    assert usdt.display_name == f"BTCUSDT-{base}"  # docs: BTC-27MAR26-70000-P-USDT -> BTCUSDT-27MAR26-70000-P


def test_nice_steps_are_one_two_two_and_a_half_or_five_times_a_power_of_ten() -> None:
    assert nice_step(475) == Decimal(500)
    assert nice_step(17.5) == Decimal(20)
    assert nice_step(0.011) == Decimal("0.02")
    assert nice_step(2.2) == Decimal("2.5")


# --- pricing ------------------------------------------------------------------------------------
@given(forward=st.floats(1e-3, 1e7), strike=st.floats(1e-3, 1e7), years=st.floats(0, 3),
       vol=st.floats(0, 5))
def test_black76_is_finite_and_obeys_put_call_parity(forward: float, strike: float, years: float,
                                                     vol: float) -> None:
    call = black76(forward=forward, strike=strike, years=years, vol=vol, call=True)
    put = black76(forward=forward, strike=strike, years=years, vol=vol, call=False)
    for g in (call, put):
        assert all(math.isfinite(x) for x in (g.price, g.delta, g.gamma, g.vega, g.theta))
        assert g.price >= 0
        assert g.gamma >= 0
        assert g.vega >= 0
        assert g.theta <= 0
    assert 0 <= call.delta <= 1
    assert -1 <= put.delta <= 0
    tolerance = 1e-6 * max(forward, strike)
    assert call.price - put.price == pytest.approx(forward - strike, rel=1e-6, abs=tolerance)


def test_black76_at_delivery_is_the_intrinsic_value() -> None:
    assert black76(forward=100, strike=90, years=0, vol=0.5, call=True).price == 10
    assert black76(forward=100, strike=90, years=0, vol=0.5, call=False).price == 0


# --- market -------------------------------------------------------------------------------------
def test_every_ticker_field_is_a_finite_decimal_string_like_bybits() -> None:
    market, symbols = _market()
    market.step(seconds=1, now_ms=int(NOW.timestamp() * 1000) + 1000)
    for symbol in symbols:
        data = market.quote(symbol).data
        assert tuple(data) == TICKER_FIELDS
        assert data["symbol"] == symbol
        for name, value in data.items():
            assert isinstance(value, str)
            if name != "symbol":
                assert DECIMAL_RE.match(value), (symbol, name, value)
                assert math.isfinite(float(value))
        bid, ask, mark = float(data["bidPrice"]), float(data["askPrice"]), float(data["markPrice"])
        assert bid == 0 or bid <= mark, (symbol, data)
        assert ask == 0 or mark <= ask, (symbol, data)


def test_some_books_are_one_sided_or_untraded_and_their_values_are_zeros_as_on_bybit() -> None:
    """Captures show a bid side of "0"s (docs) and both sides "0" (live): the market has both."""
    market, symbols = _market()
    market.step(seconds=1, now_ms=int(NOW.timestamp() * 1000) + 1000)
    datas = [market.quote(s).data for s in symbols]
    trade_fields = ("lastPrice", "highPrice24h", "lowPrice24h", "openInterest", "volume24h", "turnover24h",
                    "totalVolume", "totalTurnover", "change24h")
    no_bid = [d for d in datas if d["bidPrice"] == "0"]
    no_ask = [d for d in datas if d["askPrice"] == "0"]
    untraded = [d for d in datas if d["lastPrice"] == "0"]
    full = [d for d in datas if "0" not in (d["bidPrice"], d["askPrice"], d["lastPrice"])]
    for subset in (no_bid, no_ask, untraded):
        assert 0.01 * len(datas) < len(subset) < 0.5 * len(datas)
    assert [d for d in no_bid if d in no_ask]  # both sides empty, like the live capture
    assert len(full) > 0.4 * len(datas)
    assert all(d["bidSize"] == d["bidIv"] == "0" for d in no_bid)
    assert all(d["askSize"] == d["askIv"] == "0" for d in no_ask)
    assert all(d[f] == "0" for d in untraded for f in trade_fields)
    assert all(v != "" for d in datas for v in d.values())


def test_a_fresh_listing_has_never_traded() -> None:
    market = Market(("BTC",), seed=7, now_ms=int(NOW.timestamp() * 1000))
    new = ListingGenerator("BTC", now=NOW).take(30)
    for ins in new:
        market.add(ins, fresh=True)
    for ins in new:
        data = market.quote(ins.symbol).data
        assert (data["lastPrice"], data["volume24h"], data["openInterest"]) == ("0", "0", "0")
        assert float(data["markPrice"]) > 0


def test_the_same_seed_gives_the_same_market() -> None:
    a, symbols = _market(seed=3)
    b, _ = _market(seed=3)
    c, _ = _market(seed=4)
    for i in range(5):
        for m in (a, b, c):
            m.step(seconds=1, now_ms=int(NOW.timestamp() * 1000) + 1000 * i)
    picked = symbols[::97]
    assert [a.quote(s).data for s in picked] == [b.quote(s).data for s in picked]
    assert [a.quote(s).data for s in picked] != [c.quote(s).data for s in picked]


def test_the_index_walks_and_prices_follow_it() -> None:
    market, symbols = _market(coins=("BTC",))
    before = market.quote(symbols[0]).data
    for i in range(50):
        market.step(seconds=60, now_ms=int(NOW.timestamp() * 1000) + 60_000 * i)
    after = market.quote(symbols[0]).data
    assert after["indexPrice"] != before["indexPrice"]
    assert after["markPrice"] != before["markPrice"]
    assert 50_000 < float(after["indexPrice"]) < 200_000


def test_every_ticker_shows_its_latest_trade_and_the_index_of_its_own_step() -> None:
    """The fields only a trade moves are formatted once per trade, the index once per step:
    every ticker must still show the state it was priced from, never an older one."""
    market, symbols = _market(coins=("BTC", "SOL"))
    start = int(NOW.timestamp() * 1000)
    trades = 0
    for i in range(40):
        market.step(seconds=0.1, now_ms=start + 100 * i)
        for symbol in symbols[::7]:
            before = market._quotes[symbol].last, market._quotes[symbol].volume24
            quote = market.quote(symbol)
            data, places = quote.data, len(quote.instrument.tick_size.partition(".")[2])
            trades += (quote.last, quote.volume24) != before
            change = (quote.last - quote.open24) / quote.open24 if quote.open24 > 0 else 0.0
            assert (data["lastPrice"], data["highPrice24h"], data["lowPrice24h"], data["openInterest"],
                    data["turnover24h"], data["volume24h"], data["totalVolume"], data["totalTurnover"],
                    data["change24h"]) == (
                num(quote.last, places), num(quote.high24, places), num(quote.low24, places),
                num(quote.open_interest, 2), num(quote.turnover24, 4), num(quote.volume24, 2),
                num(quote.total_volume, 0), num(quote.total_turnover, 0), num(change, 8)), symbol
            coin = market.coins[quote.instrument.coin]
            assert data["indexPrice"] == num(coin.index, coin.spec.index_decimals)
    assert trades >= 20  # trades did happen between steps, so the cache was tested after them


def test_rest_tickers_use_bybits_rest_field_names_in_its_order() -> None:
    market, symbols = _market(coins=("SOL",))
    row = rest_ticker(market.quote(symbols[0]).data)
    assert list(row) == ["symbol", "bid1Price", "bid1Size", "bid1Iv", "ask1Price", "ask1Size", "ask1Iv",
                         "lastPrice", "highPrice24h", "lowPrice24h", "markPrice", "indexPrice", "markIv",
                         "underlyingPrice", "openInterest", "turnover24h", "volume24h", "totalVolume",
                         "totalTurnover", "delta", "gamma", "vega", "theta", "predictedDeliveryPrice",
                         "change24h"]


def test_numbers_are_written_without_exponent_or_negative_zero() -> None:
    assert num(1e-9, 8) == "0"
    assert num(-1e-12, 8) == "0"
    assert num(0.00021453, 8) == "0.00021453"
    assert num(95000.0, 2) == "95000"


# --- subscriptions ------------------------------------------------------------------------------
def _listed(symbol: str) -> bool:
    return symbol.startswith("BTC-")


def test_valid_topics_are_subscribed_even_when_others_in_the_request_fail() -> None:
    book = SubscriptionBook()
    out = book.subscribe(["tickers.BTC-1", "tickers.ETH-2", "orderbook.1.BTC-1", 5, "tickers.BTC-1"],
                         listed=_listed)
    assert out.succeeded == ("tickers.BTC-1",)
    assert set(out.failed) == {"tickers.ETH-2", "orderbook.1.BTC-1", "5", "tickers.BTC-1"}
    assert not out.success
    assert "Invalid symbol" in out.reason
    assert "handler not found" in out.reason
    assert "already subscribed" in out.reason
    again = book.subscribe(["tickers.BTC-1"], listed=_listed)
    assert not again.success
    assert "already subscribed" in again.reason
    assert list(book.topics) == ["tickers.BTC-1"]


def test_a_request_past_2000_args_fails_entirely() -> None:
    book = SubscriptionBook(max_chars=10**9)
    full = [f"tickers.BTC-{i}" for i in range(MAX_ARGS)]
    assert book.subscribe(full[:1500], listed=_listed).success
    out = book.subscribe([*full[1500:], "tickers.BTC-extra"], listed=_listed)
    assert not out.success
    assert "2000" in out.reason
    assert out.succeeded == ()
    assert len(book.topics) == 1500
    assert book.subscribe(full[1500:], listed=_listed).success
    assert len(book.topics) == MAX_ARGS


def test_a_request_past_21000_characters_of_args_fails_entirely() -> None:
    book = SubscriptionBook()
    topic_len = len("tickers.BTC-00000")
    n = MAX_ARGS_CHARS // topic_len
    topics = [f"tickers.BTC-{i:05d}" for i in range(n + 1)]
    assert book.subscribe(topics[:n], listed=_listed).success
    assert book.chars == n * topic_len <= MAX_ARGS_CHARS
    out = book.subscribe(topics[n:], listed=_listed)
    assert not out.success
    assert "21000" in out.reason
    assert len(book.topics) == n


def test_reject_over_fails_large_requests_only() -> None:
    book = SubscriptionBook()
    assert not book.subscribe([f"tickers.BTC-{i}" for i in range(6)], listed=_listed, reject_over=5).succeeded
    assert book.subscribe([f"tickers.BTC-{i}" for i in range(5)], listed=_listed, reject_over=5).success


def test_unsubscribe_frees_the_budget_and_fails_topics_not_held() -> None:
    book = SubscriptionBook()
    book.subscribe(["tickers.BTC-1", "tickers.BTC-2"], listed=_listed)
    out = book.unsubscribe(["tickers.BTC-1", "tickers.BTC-9"])
    assert out.succeeded == ("tickers.BTC-1",)
    assert out.failed == ("tickers.BTC-9",)
    assert book.chars == len("tickers.BTC-2")
    assert not book.subscribe("tickers.BTC-1", listed=_listed).success  # args must be a list


# --- paging -------------------------------------------------------------------------------------
def test_cursor_round_trips_and_rejects_foreign_or_garbage_cursors() -> None:
    key = (1795939200000, 95000.0, 1, "USDT")
    for style in ("percent", "plain"):
        received = unquote(encode_cursor("BTC", key, style=style))  # the server decodes the query once
        assert decode_cursor(received, "BTC") == key
        assert decode_cursor(received, "ETH") is None
        for bad in ("", "abc", "!!!", "W10", received[:-3], "1," + received[:-3]):
            assert decode_cursor(bad, "BTC") is None


def test_a_percent_cursor_is_accepted_sent_back_unchanged_and_refused_encoded_again() -> None:
    key = (1795939200000, 95000.0, 0, "USDC")
    text = encode_cursor("ETH", key)
    assert re.fullmatch(r"1%2C[A-Za-z0-9_-]+", text)  # like Bybit's 0%2C500: opaque, percent-escaped
    assert decode_cursor(unquote(text), "ETH") == key  # sent unchanged: %2C on the wire
    assert decode_cursor(unquote(quote(text, safe="")), "ETH") is None  # %252C on the wire
    plain = encode_cursor("ETH", key, style="plain")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", plain)
    assert decode_cursor(unquote(quote(plain, safe="")), "ETH") == key  # survives any encoding


def test_paging_by_key_neither_repeats_nor_skips_when_items_vanish() -> None:
    items = list(range(10))
    keys = [(i, 0.0, 0, "") for i in items]
    first, after = page(items, keys, None, 4)
    assert first == [0, 1, 2, 3]
    assert after == keys[3]
    del items[2], keys[2]  # delivered between two page requests
    second, after = page(items, keys, after, 4)
    assert second == [4, 5, 6, 7]
    last, after = page(items, keys, after, 4)
    assert last == [8, 9]
    assert after is None


# --- faults, rate limits, frames, outbox --------------------------------------------------------
def test_fault_changes_are_validated() -> None:
    faults = Faults().updated({"drop_every": 5, "no_pong": True, "malformed_ratio": 0.25})
    assert faults.drop_every == 5.0
    assert faults.no_pong
    assert faults.malformed_ratio == 0.25
    for bad in ({"typo": 1}, {"no_pong": 1}, {"malformed_ratio": 2}, {"drop_every": 0},
                {"rest_rate_limit": -1}, {"rest_rate_limit_mode": "418"}, {"response_style": "x"},
                {"pong_style": "op"}, {"cursor_style": "base64"},
                {"reject_subscribe_over": True}, {"drop_every": float("nan")}):
        with pytest.raises(FaultError):
            Faults().updated(bad)


def test_rate_limit_forms_cycle_and_carry_bybits_signals() -> None:
    assert [form_for("cycle", i) for i in range(4)] == ["10006", "403", "429", "10006"]
    assert form_for("429", 0) == "429"
    ten = rate_limit_answer("10006", now_ms=1_000_001)
    assert ten.status == 200
    assert orjson.loads(ten.body)["retCode"] == 10006
    assert ten.headers["X-Bapi-Limit-Status"] == "0"
    assert int(ten.headers["X-Bapi-Limit-Reset-Timestamp"]) > 1_000_001
    assert rate_limit_answer("403", now_ms=0).status == 403
    assert b"access too frequent" in rate_limit_answer("403", now_ms=0).body
    too_many = rate_limit_answer("429", now_ms=0)
    assert too_many.status == 429
    assert int(too_many.headers["Retry-After"]) >= 1


def test_ticker_frame_is_the_bybit_envelope_in_its_key_order() -> None:
    data = {"symbol": "BTC-3JAN27-95000-C", "markPrice": "1"}
    raw = frames.ticker_frame(b"tickers.BTC-3JAN27-95000-C", 42, 1700000000000, orjson.dumps(data))
    doc = orjson.loads(raw)
    assert doc == {
        "id": "tickers.BTC-3JAN27-95000-C-42-1700000000000", "topic": "tickers.BTC-3JAN27-95000-C",
        "ts": 1700000000000, "type": "snapshot", "data": data,
    }
    assert list(doc) == ["id", "topic", "ts", "data", "type"]


_MIXED = Outcome(("tickers.A",), ("tickers.B",), "error:Invalid symbol,topic:tickers.B")


@pytest.mark.parametrize(("style", "keys"), [
    ("command_resp", ["success", "conn_id", "data", "type"]),
    ("command_resp_echo", ["success", "ret_msg", "conn_id", "req_id", "data", "type"]),
    ("op", ["success", "ret_msg", "conn_id", "req_id", "op"]),
])
def test_subscription_answer_forms(style: str, keys: list[str]) -> None:
    doc = orjson.loads(frames.subscription_answer(style=style, op="subscribe", conn_id="c", req_id="r",
                                                  outcome=_MIXED))
    assert list(doc) == keys
    assert doc["success"] is False
    if "data" in doc:
        assert doc["data"] == {"failTopics": ["tickers.B"], "successTopics": ["tickers.A"]}
        assert list(doc["data"]) == ["failTopics", "successTopics"]


@pytest.mark.parametrize(("style", "expected"), [
    ("option", {"args": ["1700000000000"], "op": "pong"}),
    ("echo", {"req_id": "r", "op": "pong", "args": ["1700000000000"], "conn_id": "c"}),
    ("spot", {"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"}),
])
def test_pong_forms(style: str, expected: dict[str, object]) -> None:
    doc = orjson.loads(frames.pong(style=style, conn_id="c", req_id="r", now_ms=1700000000000))
    assert doc == expected
    assert list(doc) == list(expected)


def test_malformed_kinds_cover_the_brief_and_each_is_really_malformed() -> None:
    market, symbols = _market(coins=("BTC",))
    data = market.quote(symbols[0]).data
    push = malformed.Push(symbol=symbols[0], seq=3, ts_ms=1_800_000_000_000, data=data,
                          other_symbol=symbols[1])
    assert len(malformed.KINDS) == 20
    for kind in malformed.KINDS:
        raw = malformed.render(kind, push)
        assert raw != frames.ticker_frame(f"tickers.{symbols[0]}".encode(), 3, push.ts_ms, orjson.dumps(data))
        if kind == "truncated_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(raw)
    long_frame = orjson.loads(malformed.render("hostile_long", push))
    assert len(long_frame["data"]["symbol"]) >= 10_000


def test_outbox_sends_answers_first_and_keeps_only_the_newest_unsent_ticker() -> None:
    box = Outbox()
    box.ticker("A", b"a1")
    box.ticker("B", b"b1")
    box.ticker("A", b"a2")
    box.answer(b"pong")
    assert box.conflated == 1
    drained = box.drain()
    assert next(drained) == (b"pong", False)
    box.answer(b"late answer")  # queued while the batch is being written: goes out next
    box.ticker("A", b"a3")  # waits for the next batch
    assert list(drained) == [(b"late answer", False), (b"a2", True), (b"b1", True)]
    assert list(box.drain()) == [(b"a3", True)]
