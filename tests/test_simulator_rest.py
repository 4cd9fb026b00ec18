"""The simulator's Bybit V5 REST endpoints, over HTTP against the real subprocess."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from common.symbols import parse_symbol
from tests.fixtures_simulator import SimulatorHandle

# Bybit's documented option item (tests/data/bybit/rest_instruments_option_usdt_docs.json), in its order.
INSTRUMENT_KEYS = ["symbol", "status", "baseCoin", "quoteCoin", "settleCoin", "optionsType", "launchTime",
                   "deliveryTime", "deliveryFeeRate", "priceFilter", "lotSizeFilter", "displayName"]
REST_TICKER_KEYS = ["symbol", "bid1Price", "bid1Size", "bid1Iv", "ask1Price", "ask1Size", "ask1Iv",
                    "lastPrice", "highPrice24h", "lowPrice24h", "markPrice", "indexPrice", "markIv",
                    "underlyingPrice", "openInterest", "turnover24h", "volume24h", "totalVolume",
                    "totalTurnover", "delta", "gamma", "vega", "theta", "predictedDeliveryPrice", "change24h"]


def get(sim: SimulatorHandle, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(sim.rest_url + path, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(sim: SimulatorHandle, path: str) -> dict[str, Any]:
    status, _, body = get(sim, path)
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


def all_pages(sim: SimulatorHandle, coin: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    cursor = ""
    pages = 0
    while True:
        # The cursor goes into the URL unchanged: Bybit's (and ours) is already percent-encoded.
        doc = get_json(sim, f"/v5/market/instruments-info?category=option&baseCoin={coin}&limit={limit}"
                            + (f"&cursor={cursor}" if cursor else ""))
        assert doc["retCode"] == 0, doc
        pages += 1
        assert len(doc["result"]["list"]) <= limit
        items += doc["result"]["list"]
        cursor = doc["result"]["nextPageCursor"]
        if not cursor:
            return items, pages


@pytest.fixture
def small_sim(simulator_factory: Callable[..., SimulatorHandle]) -> SimulatorHandle:
    return simulator_factory(instruments_per_coin=40, push_interval=0.1)


def test_every_answer_has_bybits_envelope(small_sim: SimulatorHandle) -> None:
    doc = get_json(small_sim, "/v5/market/time")
    assert set(doc) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert doc["retCode"] == 0
    assert doc["retMsg"] == "OK"
    assert doc["retExtInfo"] == {}
    assert isinstance(doc["time"], int)
    seconds, nanos = doc["result"]["timeSecond"], doc["result"]["timeNano"]
    assert isinstance(seconds, str)
    assert isinstance(nanos, str)
    assert int(nanos) // 1_000_000_000 == int(seconds)
    assert abs(int(seconds) * 1000 - doc["time"]) < 5000


def test_paging_reaches_every_default_instrument_once(simulator: SimulatorHandle) -> None:
    listed = simulator.instruments()
    prelaunch = simulator.prelaunch()
    assert 1900 <= sum(len(v) for v in listed.values()) <= 2100
    for coin, symbols in listed.items():
        assert len(prelaunch[coin]) == 4
        items, pages = all_pages(simulator, coin, 1000)
        got = [i["symbol"] for i in items]
        assert len(got) == len(set(got)) == len(symbols) + 4
        assert set(got) == set(symbols) | set(prelaunch[coin])
        assert pages == 1
    items, pages = all_pages(simulator, "BTC", 97)
    assert pages == -(-(len(listed["BTC"]) + 4) // 97)
    assert [i["symbol"] for i in items if i["status"] != "PreLaunch"] == listed["BTC"]
    assert [i["symbol"] for i in items if i["status"] == "PreLaunch"] == prelaunch["BTC"]


def test_instrument_items_carry_bybits_fields(small_sim: SimulatorHandle) -> None:
    items, _ = all_pages(small_sim, "ETH", 500)
    assert items
    for item in items:
        assert list(item) == INSTRUMENT_KEYS
        parsed = parse_symbol(item["symbol"])
        assert parsed is not None
        assert parsed.base == "ETH" == item["baseCoin"]
        assert item["optionsType"] == ("Call" if parsed.kind == "C" else "Put")
        if parsed.settle == "USDT":
            assert (item["quoteCoin"], item["settleCoin"]) == ("USDT", "USDT")
            middle = item["symbol"].removeprefix("ETH-").removesuffix("-USDT")
            assert item["displayName"] == f"ETHUSDT-{middle}"
        else:
            assert (item["quoteCoin"], item["settleCoin"]) == ("USD", "USDC")
            assert item["displayName"] == ""
        assert int(item["launchTime"]) < int(item["deliveryTime"])
        assert list(item["priceFilter"]) == ["minPrice", "maxPrice", "tickSize"]
        assert list(item["lotSizeFilter"]) == ["maxOrderQty", "minOrderQty", "qtyStep"]
        filters = (*item["priceFilter"].values(), *item["lotSizeFilter"].values())
        assert all(isinstance(v, str) for v in filters)
    statuses = {i["symbol"]: i["status"] for i in items}
    assert {s for s, status in statuses.items() if status == "PreLaunch"} == set(small_sim.prelaunch()["ETH"])
    assert {s for s, status in statuses.items() if status == "Trading"} == set(small_sim.instruments()["ETH"])


@pytest.mark.parametrize("status", ["PreLaunch", "Trading", "Delivering", "Closed"])
def test_the_status_parameter_filters_the_listing(small_sim: SimulatorHandle, status: str) -> None:
    doc = get_json(small_sim, f"/v5/market/instruments-info?category=option&baseCoin=SOL&status={status}")
    got = [i["symbol"] for i in doc["result"]["list"]]
    assert {i["status"] for i in doc["result"]["list"]} <= {status}
    expected = {"PreLaunch": small_sim.prelaunch()["SOL"], "Trading": small_sim.instruments()["SOL"]}
    assert got == expected.get(status, [])  # nothing is within 30 min of delivery; Closed is never listed


def test_without_base_coin_the_answer_is_btc(small_sim: SimulatorHandle) -> None:
    doc = get_json(small_sim, "/v5/market/instruments-info?category=option")
    assert {i["baseCoin"] for i in doc["result"]["list"]} == {"BTC"}
    assert len(doc["result"]["list"]) == 40 + 4  # trading and PreLaunch


def test_one_symbol_can_be_asked_for_without_its_coin(small_sim: SimulatorHandle) -> None:
    symbol = small_sim.instruments()["SOL"][7]
    doc = get_json(small_sim, f"/v5/market/instruments-info?category=option&symbol={symbol}")
    assert [i["symbol"] for i in doc["result"]["list"]] == [symbol]
    assert doc["result"]["nextPageCursor"] == ""


def test_an_unlisted_coin_has_no_instruments(small_sim: SimulatorHandle) -> None:
    doc = get_json(small_sim, "/v5/market/instruments-info?category=option&baseCoin=XRP")
    assert doc["retCode"] == 0
    assert doc["result"]["list"] == []
    assert doc["result"]["nextPageCursor"] == ""


@pytest.mark.parametrize("query", [
    "", "category=", "category=futures", "category=linear", "category=option&limit=0",
    "category=option&limit=1001", "category=option&limit=abc", "category=option&cursor=garbage",
    "category=option&baseCoin=b*", "category=option&baseCoin=ETH&cursor=WzEsIkJUQyIsWzEsMSwwLCIiXV0",
    "category=option&baseCoin=BTC&cursor=1%252CWzEsIkJUQyIsWzEsMSwwLCIiXV0", "category=option&status=Live",
])
def test_bad_parameters_answer_retcode_10001_with_http_200(small_sim: SimulatorHandle, query: str) -> None:
    status, _, body = get(small_sim, f"/v5/market/instruments-info?{query}")
    doc = json.loads(body)
    assert status == 200
    assert doc["retCode"] == 10001
    assert doc["retMsg"].startswith("params error")
    assert doc["result"] == {}
    assert "time" in doc


def test_limit_bounds_one_and_a_thousand_are_accepted(small_sim: SimulatorHandle) -> None:
    one = get_json(small_sim, "/v5/market/instruments-info?category=option&baseCoin=SOL&limit=1")
    assert len(one["result"]["list"]) == 1
    assert one["result"]["nextPageCursor"]
    thousand = get_json(small_sim, "/v5/market/instruments-info?category=option&baseCoin=SOL&limit=1000")
    assert len(thousand["result"]["list"]) == 40 + 4
    assert thousand["result"]["nextPageCursor"] == ""


def test_paging_survives_listings_and_deliveries_between_pages(small_sim: SimulatorHandle) -> None:
    first = get_json(small_sim, "/v5/market/instruments-info?category=option&baseCoin=BTC&limit=10")["result"]
    delivered = small_sim.deliver(symbols=[first["list"][-1]["symbol"]])
    new = small_sim.list_new("BTC", 4)
    rest: list[dict[str, Any]] = []
    cursor = first["nextPageCursor"]
    while cursor:
        page = get_json(small_sim, f"/v5/market/instruments-info?category=option&baseCoin=BTC&limit=10"
                                   f"&cursor={cursor}")["result"]
        rest += page["list"]
        cursor = page["nextPageCursor"]
    seen = [i["symbol"] for i in first["list"]] + [i["symbol"] for i in rest]
    assert len(seen) == len(set(seen))
    now_listed = set(small_sim.instruments()["BTC"])
    assert now_listed - set(seen) <= set(new)  # only new ones sorting before the cursor can be missed
    assert set(delivered) <= set(seen)


def test_tickers_endpoint_gives_every_listed_symbol_with_rest_field_names(small_sim: SimulatorHandle) -> None:
    doc = get_json(small_sim, "/v5/market/tickers?category=option&baseCoin=ETH")
    assert doc["retCode"] == 0
    assert list(doc["result"]) == ["category", "list"]
    assert doc["result"]["category"] == "option"
    rows = doc["result"]["list"]
    listed = small_sim.instruments()["ETH"] + small_sim.prelaunch()["ETH"]
    assert sorted(r["symbol"] for r in rows) == sorted(listed)
    for row in rows:
        assert list(row) == REST_TICKER_KEYS
        assert all(isinstance(v, str) and v != "" for v in row.values())
    one = rows[3]["symbol"]
    single = get_json(small_sim, f"/v5/market/tickers?category=option&symbol={one}")["result"]["list"]
    assert [r["symbol"] for r in single] == [one]
    bad = get_json(small_sim, "/v5/market/tickers?category=spot&baseCoin=ETH")
    assert bad["retCode"] == 10001


def test_option_tickers_need_a_base_coin_or_a_symbol(small_sim: SimulatorHandle) -> None:
    doc = get_json(small_sim, "/v5/market/tickers?category=option")
    assert doc["retCode"] == 10001
    assert "baseCoin" in doc["retMsg"]
    assert doc["result"] == {}
    assert small_sim.state()["counters"]["rest_params_errors"] == 1


def test_unknown_paths_are_404(small_sim: SimulatorHandle) -> None:
    assert get(small_sim, "/v5/market/orderbook?category=option")[0] == 404
    assert get(small_sim, "/v5/public/linear")[0] == 404


def test_rate_limit_fault_answers_each_bybit_form_then_recovers(small_sim: SimulatorHandle) -> None:
    small_sim.set_faults(rest_rate_limit=3)
    path = "/v5/market/instruments-info?category=option&baseCoin=BTC"
    status, headers, body = get(small_sim, path)
    assert status == 200
    doc = json.loads(body)
    assert doc["retCode"] == 10006
    assert doc["retMsg"] == "Too many visits"  # the live capture's text (the docs add a "!")
    assert headers["X-Bapi-Limit-Status"] == "0"
    assert int(headers["X-Bapi-Limit"]) > 0
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) >= doc["time"]
    status, _, body = get(small_sim, path)
    assert status == 403
    assert b"access too frequent" in body
    status, headers, _ = get(small_sim, "/v5/market/time")
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    assert get_json(small_sim, path)["retCode"] == 0
    counters = small_sim.state()["counters"]
    assert counters["rate_limits_sent"] == 3
    assert counters["rate_limits_by_form"] == {"10006": 1, "403": 1, "429": 1}


@pytest.mark.parametrize(("mode", "status"), [("10006", 200), ("403", 403), ("429", 429)])
def test_rate_limit_form_is_selectable(small_sim: SimulatorHandle, mode: str, status: int) -> None:
    small_sim.set_faults(rest_rate_limit=2, rest_rate_limit_mode=mode)
    assert [get(small_sim, "/v5/market/time")[0] for _ in range(3)] == [status, status, 200]
    assert small_sim.state()["counters"]["rate_limits_by_form"] == {mode: 2}


def test_control_api_refuses_bad_fault_changes_with_400(small_sim: SimulatorHandle) -> None:
    from tests.fixtures_simulator import SimulatorError

    with pytest.raises(SimulatorError, match="400"):
        small_sim.set_faults(malformed_ratio=3)
    with pytest.raises(SimulatorError, match="unknown fault"):
        small_sim.set_faults(typo=True)
    with pytest.raises(SimulatorError, match="400"):
        small_sim.list_new("DOGE", 1)
    assert small_sim.state()["faults"]["malformed_ratio"] == 0.0
