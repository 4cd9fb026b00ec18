"""The exchange core without sockets: pushes, truth, faults and timers on injected clocks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from simulator import malformed
from simulator.connection import Connection
from simulator.exchange import Exchange
from simulator.faults import Faults
from simulator.settings import SimulatorOptions

START = 1_800_000_000.0  # 2027-01-15, a Friday


class Clock:
    """Wall and monotonic time that move only when a test says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def wall(self) -> float:
        return START + self.t

    def mono(self) -> float:
        return self.t


def _exchange(clock: Clock, **faults: Any) -> Exchange:
    options = SimulatorOptions(coins=("BTC", "ETH"), instruments_per_coin=20, seed=5,
                               idle_timeout=600.0, faults=Faults().updated(faults))
    return Exchange(options, wall=clock.wall, monotonic=clock.mono)


class Client:
    """A connection whose outbox the test reads."""

    def __init__(self, exchange: Exchange) -> None:
        self.aborts = 0
        self.exchange = exchange
        self.conn: Connection = exchange.open_connection(self._abort)

    def _abort(self) -> None:
        self.aborts += 1

    def send(self, doc: Any) -> None:
        self.exchange.handle_message(self.conn, orjson.dumps(doc))

    def frames(self) -> list[bytes]:
        return [frame for frame, _ in self.conn.outbox.drain()]

    def docs(self) -> list[Any]:
        out = []
        for frame in self.frames():
            try:
                out.append(orjson.loads(frame))
            except orjson.JSONDecodeError:
                out.append(frame)
        return out


def _subscribe(client: Client, symbols: list[str]) -> dict[str, Any]:
    client.send({"req_id": "s", "op": "subscribe", "args": [f"tickers.{s}" for s in symbols]})
    answer: dict[str, Any] = client.docs()[-1]
    return answer


def test_one_push_cycle_sends_the_same_frame_to_every_subscriber_and_records_it_as_truth() -> None:
    clock = Clock()
    ex = _exchange(clock)
    btc = [i.symbol for i in ex.listed("BTC")][:3]
    a, b = Client(ex), Client(ex)
    assert _subscribe(a, btc)["success"]
    assert _subscribe(b, btc[:1])["success"]
    clock.t = 1.0
    assert ex.push_cycle() == 4
    frames_a = {orjson.loads(f)["topic"]: f for f in a.frames()}
    frames_b = {orjson.loads(f)["topic"]: f for f in b.frames()}
    assert frames_a[f"tickers.{btc[0]}"] == frames_b[f"tickers.{btc[0]}"]
    truth = ex.truth()
    assert set(truth) == set(btc)
    for symbol in btc:
        doc = orjson.loads(frames_a[f"tickers.{symbol}"])
        assert truth[symbol] == {"ts": doc["ts"], "data": doc["data"]}
    assert ex.truth("ETH") == {}


def test_malformed_pushes_never_change_the_truth_and_cover_every_kind() -> None:
    clock = Clock()
    ex = _exchange(clock)
    symbols = [i.symbol for i in ex.listed("BTC")][:4]
    client = Client(ex)
    _subscribe(client, symbols)
    ex.push_cycle()
    client.frames()
    before = ex.truth()
    ex.set_faults({"malformed_ratio": 1.0})
    for _ in range(len(malformed.KINDS)):
        clock.t += 1
        ex.step_market(1)
        ex.push_cycle()
    assert ex.truth() == before
    assert set(ex.counters.malformed_by_kind) == set(malformed.KINDS)
    assert ex.counters.malformed_sent == len(malformed.KINDS) * len(symbols)


def test_silent_pushes_nothing_but_pings_are_still_answered() -> None:
    clock = Clock()
    ex = _exchange(clock, silent=True)
    client = Client(ex)
    _subscribe(client, [ex.listed("BTC")[0].symbol])
    assert ex.push_cycle() == 0
    client.send({"req_id": "p", "op": "ping"})
    (pong,) = client.docs()
    assert pong == {"args": [str(ex.now_ms())], "op": "pong"}  # the option pong: no req_id, no conn_id


def test_no_pong_ignores_pings_until_cleared() -> None:
    ex = _exchange(Clock(), no_pong=True)
    client = Client(ex)
    client.send({"op": "ping"})
    assert client.docs() == []
    ex.clear_faults()
    client.send({"op": "ping"})
    (pong,) = client.docs()
    assert pong["op"] == "pong"
    assert pong["args"][0].isdigit()
    assert ex.counters.pings_received == 2
    assert ex.counters.pings_answered == 1


def test_drop_every_cuts_each_connection_between_n_and_1_33n_seconds() -> None:
    clock = Clock()
    ex = _exchange(clock, drop_every=10.0)
    clients = [Client(ex) for _ in range(20)]
    ex.housekeeping()  # arms the timers
    clock.t = 9.99
    ex.housekeeping()
    assert all(c.aborts == 0 for c in clients)
    deadlines = sorted(c.conn.drop_at or 0 for c in clients)
    assert deadlines[0] >= 10.0
    assert deadlines[-1] <= 13.3
    assert len(set(deadlines)) == len(deadlines)  # independent jitter
    clock.t = 13.31
    ex.housekeeping()
    assert all(c.aborts == 1 for c in clients)
    assert ex.counters.drops_scheduled == 20


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    clock = Clock()
    ex = _exchange(clock)
    idle, chatty = Client(ex), Client(ex)
    clock.t = 599
    chatty.send({"op": "ping"})
    clock.t = 601
    ex.housekeeping()
    assert idle.aborts == 1
    assert chatty.aborts == 0


def test_delivered_symbols_stop_pushing_vanish_from_truth_and_cannot_be_subscribed() -> None:
    clock = Clock()
    ex = _exchange(clock)
    symbols = [i.symbol for i in ex.listed("ETH")][:2]
    client = Client(ex)
    _subscribe(client, symbols)
    ex.push_cycle()
    client.frames()
    assert ex.deliver(symbols=[symbols[0], "ETH-1JAN99-1-C"]) == [symbols[0]]
    clock.t = 1
    ex.push_cycle()
    assert [orjson.loads(f)["data"]["symbol"] for f in client.frames()] == [symbols[1]]
    assert symbols[0] not in ex.truth()
    assert symbols[0] not in [i.symbol for i in ex.listed("ETH")]
    assert not Client(ex).exchange.is_listed(symbols[0])
    again = _subscribe(Client(ex), [symbols[0]])
    assert not again["success"]
    assert again["data"]["failTopics"] == [f"tickers.{symbols[0]}"]


def test_deliver_by_coin_takes_the_nearest_expiry_first() -> None:
    ex = _exchange(Clock())
    nearest = min(i.delivery_ms for i in ex.listed("BTC"))
    before = len(ex.listed("BTC"))
    delivered = ex.deliver(coin="BTC", count=2)
    assert len(delivered) == 2
    assert all(s not in [i.symbol for i in ex.listed("BTC")] for s in delivered)
    assert len(ex.listed("BTC")) == before - 2
    assert min(i.delivery_ms for i in ex.listed("BTC")) >= nearest


def test_a_few_prelaunch_instruments_are_listed_on_top_and_start_trading_at_their_launch() -> None:
    clock = Clock()
    ex = _exchange(clock)
    now = ex.now_ms()
    pre = ex.prelaunched("BTC")
    assert len(pre) == 2  # 20 trading instruments per coin -> 2 PreLaunch
    assert len(ex.traded("BTC")) == 20
    assert {i.status(now) for i in ex.listed("BTC")} == {"PreLaunch", "Trading"}
    assert {i.symbol for i in pre}.isdisjoint(i.symbol for i in ex.traded("BTC"))
    page, _ = ex.instruments_page("BTC", None, 1000, status="PreLaunch")
    assert page == pre
    page, _ = ex.instruments_page("BTC", None, 1000, status="Trading")
    assert page == ex.traded("BTC")
    assert ex.instruments_page("BTC", None, 1000, status="Closed") == ([], None)
    clock.t = (pre[0].launch_ms - now) / 1000
    assert ex.prelaunched("BTC") == []
    assert {i.symbol for i in pre} <= {i.symbol for i in ex.traded("BTC")}


def test_instruments_are_delivering_in_their_last_half_hour_then_delivered() -> None:
    clock = Clock()
    ex = _exchange(clock)
    first = ex.listed("BTC")[0]
    clock.t = (first.delivery_ms - 30 * 60 * 1000 - ex.now_ms()) / 1000 + 1
    assert first.status(ex.now_ms()) == "Delivering"
    page, _ = ex.instruments_page("BTC", None, 1000, status="Delivering")
    assert first in page
    assert first in ex.traded("BTC")  # still quoting: clients keep streaming it
    clock.t += 30 * 60
    ex.housekeeping()
    assert not ex.is_listed(first.symbol)


def test_new_listings_have_never_traded() -> None:
    ex = _exchange(Clock())
    for symbol in ex.list_new("ETH", 5):
        data = ex.market.quote(symbol).data
        assert data["lastPrice"] == data["volume24h"] == data["openInterest"] == "0"


def test_rest_rate_limit_answers_k_calls_then_recovers() -> None:
    ex = _exchange(Clock(), rest_rate_limit=4)
    statuses = []
    for _ in range(5):
        answer = ex.rest_call()
        statuses.append(None if answer is None else answer.status)
    assert statuses == [200, 403, 429, 200, None]  # 10006 is HTTP 200 with retCode 10006
    assert ex.counters.rate_limits_by_form == {"10006": 2, "403": 1, "429": 1}
    assert ex.faults.rest_rate_limit == 0


def test_invalid_json_and_unknown_ops_get_an_error_answer() -> None:
    ex = _exchange(Clock())
    client = Client(ex)
    ex.handle_message(client.conn, "{not json")
    client.send(["a", "list"])
    client.send({"req_id": "x", "op": "trade"})
    answers = client.docs()
    assert [a["success"] for a in answers] == [False, False, False]
    assert "JSON" in answers[0]["ret_msg"]
    assert "object" in answers[1]["ret_msg"]
    assert answers[2]["req_id"] == "x"
    assert "trade" in answers[2]["ret_msg"]


def test_subscription_answers_default_to_bybits_option_command_resp() -> None:
    ex = _exchange(Clock())
    good = ex.listed("BTC")[0].symbol
    client = Client(ex)
    answer = _subscribe(client, [good, "BTC-1JAN99-1-C"])
    topics = {"failTopics": ["tickers.BTC-1JAN99-1-C"], "successTopics": [f"tickers.{good}"]}
    assert answer == {"success": False, "conn_id": client.conn.conn_id, "data": topics,
                      "type": "COMMAND_RESP"}


@pytest.mark.parametrize("style", ["op", "command_resp_echo"])
def test_subscription_answers_in_the_compat_styles_echo_req_id_and_reasons(style: str) -> None:
    ex = _exchange(Clock(), response_style=style)
    good = ex.listed("BTC")[0].symbol
    answer = _subscribe(Client(ex), [good, "BTC-1JAN99-1-C"])
    assert answer["success"] is False
    assert answer["req_id"] == "s"
    assert "tickers.BTC-1JAN99-1-C" in answer["ret_msg"]
    if style == "command_resp_echo":
        assert answer["type"] == "COMMAND_RESP"
        assert answer["data"] == {"failTopics": ["tickers.BTC-1JAN99-1-C"],
                                  "successTopics": [f"tickers.{good}"]}
    else:
        assert answer["op"] == "subscribe"
        assert "data" not in answer


def test_clearing_faults_keeps_the_answer_forms_chosen_at_start() -> None:
    ex = _exchange(Clock(), response_style="op", pong_style="echo", cursor_style="plain",
                   rest_rate_limit_mode="429")
    ex.set_faults({"response_style": "command_resp", "pong_style": "spot", "cursor_style": "percent",
                   "no_pong": True, "silent": True})
    faults = ex.clear_faults()
    assert (faults.response_style, faults.pong_style, faults.cursor_style, faults.rest_rate_limit_mode) == (
        "op", "echo", "plain", "429")
    assert not faults.no_pong
    assert not faults.silent


def test_closing_a_connection_forgets_its_subscriptions() -> None:
    ex = _exchange(Clock())
    client = Client(ex)
    _subscribe(client, [ex.listed("BTC")[0].symbol])
    ex.close_connection(client.conn)
    assert ex.push_cycle() == 0
    assert ex.state()["counters"]["connections_open"] == 0
