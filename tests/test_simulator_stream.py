"""The simulator's public option WebSocket, spoken to with the ``websockets`` client."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures_simulator import TICKER_FIELDS, SimulatorHandle, ticker_problem
from tests.servers import wait_until

Factory = Callable[..., SimulatorHandle]


def open_stream(url: str) -> connect:
    """A client connection whose receive queue is unbounded.

    websockets stops reading the socket once ``max_queue`` messages wait unread; a test that
    leaves while tickers still stream would then wait ``close_timeout`` (10 s) for a close frame
    stuck behind unread pushes. Reading everything keeps the closing handshake prompt.
    """
    return connect(url, max_queue=None)


async def collect_until(ws: ClientConnection, stop: Callable[[Any], bool],
                        within: float = 10.0) -> list[str | bytes]:
    """Every message up to and including the first JSON object for which ``stop`` is true."""
    seen: list[str | bytes] = []
    async with asyncio.timeout(within):
        while True:
            raw = await ws.recv()
            seen.append(raw)
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict) and stop(doc):
                return seen


async def request(ws: ClientConnection, op: str,
                  args: list[Any] | None = None) -> tuple[dict[str, Any], list[str | bytes]]:
    """Send ``op`` with a fresh req_id; its answer, and the messages that arrived before it.

    The answer is the first message that is not a ticker push: Bybit's option stream answers
    without a req_id (COMMAND_RESP, ``{"args", "op": "pong"}``), so answers are matched by order.
    The simulator answers a connection's requests in order, and these tests send one at a time.
    """
    msg: dict[str, Any] = {"req_id": uuid.uuid4().hex, "op": op}
    if args is not None:
        msg["args"] = args
    await ws.send(json.dumps(msg))
    seen = await collect_until(ws, lambda d: "topic" not in d)
    answer: dict[str, Any] = json.loads(seen[-1])
    return answer, seen[:-1]


async def server_ms(ws: ClientConnection) -> tuple[int, list[str | bytes]]:
    """The simulator's clock via a pong; everything it pushes later has a larger ts."""
    pong, before = await request(ws, "ping")
    return int(pong["args"][0]), before


def tickers_of(messages: list[str | bytes]) -> list[dict[str, Any]]:
    out = []
    for raw in messages:
        doc = json.loads(raw)
        if "topic" in doc:
            out.append(doc)
    return out


def topic_is(topic: str) -> Callable[[Any], bool]:
    return lambda doc: bool(doc.get("topic") == topic)


def topics(symbols: list[str]) -> list[str]:
    return [f"tickers.{s}" for s in symbols]


@pytest.fixture
def fast_sim(simulator_factory: Factory) -> SimulatorHandle:
    return simulator_factory(instruments_per_coin=30, push_interval=0.1)


#: The option stream's conn_id form (docs and live captures): hex groups of 16-8-8-16-8 digits.
OPTION_CONN_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{16}-[0-9a-f]{8}")


async def test_subscribe_is_answered_in_bybits_option_command_resp_form(fast_sim: SimulatorHandle) -> None:
    symbols = fast_sim.instruments()["BTC"][:5]
    async with open_stream(fast_sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", topics(symbols))
        assert list(answer) == ["success", "conn_id", "data", "type"]  # no req_id, op or ret_msg
        assert answer["success"] is True
        assert answer["data"] == {"failTopics": [], "successTopics": topics(symbols)}
        assert answer["type"] == "COMMAND_RESP"
        assert OPTION_CONN_ID.fullmatch(answer["conn_id"])
        pushed = tickers_of(await collect_until(ws, lambda d: d.get("data", {}).get("symbol") == symbols[-1]))
        assert {t["data"]["symbol"] for t in pushed} <= set(symbols)


async def test_the_compat_answer_forms_can_be_chosen_at_start_and_at_run_time(
        simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=10, push_interval=0.1, extra_args=["--response-style", "op"])
    symbols = sim.instruments()["ETH"][:2]
    async with open_stream(sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", [*topics(symbols), "tickers.ETH-1JAN20-1-C"])
        assert list(answer) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert answer["success"] is False
        assert "tickers.ETH-1JAN20-1-C" in answer["ret_msg"]
        sim.set_faults(response_style="command_resp_echo")
        answer, _ = await request(ws, "unsubscribe", topics(symbols))
        assert answer == {"success": True, "ret_msg": "", "conn_id": answer["conn_id"],
                          "req_id": answer["req_id"],
                          "data": {"failTopics": [], "successTopics": topics(symbols)},
                          "type": "COMMAND_RESP"}
        sim.clear_faults()
        assert sim.state()["faults"]["response_style"] == "op"  # the start-up form, not the default
        answer, _ = await request(ws, "subscribe", topics(symbols[:1]))
        assert answer["op"] == "subscribe"


async def test_unknown_symbols_and_topics_fail_while_valid_ones_still_stream(
        fast_sim: SimulatorHandle) -> None:
    good = fast_sim.instruments()["SOL"][0]
    bad = ["tickers.SOL-1JAN20-100-C", "orderbook.25.SOL-1JAN20-100-C", "tickers.*", "tickers."]
    async with open_stream(fast_sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", [f"tickers.{good}", *bad])
        assert answer["success"] is False
        assert answer["data"] == {"failTopics": bad, "successTopics": [f"tickers.{good}"]}
        await collect_until(ws, lambda d: d.get("topic") == f"tickers.{good}")


async def test_a_subscription_past_2000_args_fails_entirely(fast_sim: SimulatorHandle) -> None:
    symbols = fast_sim.instruments()["BTC"]
    async with open_stream(fast_sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", [f"tickers.{symbols[0]}"] * 2001)
        assert answer["success"] is False
        assert answer["data"] == {"failTopics": [f"tickers.{symbols[0]}"] * 2001, "successTopics": []}
        assert fast_sim.state()["counters"]["subscriptions"] == 0
        answer, _ = await request(ws, "subscribe", topics(symbols[:3]))
        assert answer["success"] is True


async def test_a_connection_may_hold_21000_characters_of_args_in_total(simulator: SimulatorHandle) -> None:
    listed = simulator.instruments()
    btc, eth = topics(listed["BTC"]), topics(listed["ETH"])
    async with open_stream(simulator.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", btc)  # ~19 kB of args
        assert answer["success"] is True, answer["data"]
        budget = 21000 - sum(map(len, btc))
        fits: list[str] = []
        for topic in eth:
            if sum(map(len, fits)) + len(topic) > budget:
                break
            fits.append(topic)
        over, _ = await request(ws, "subscribe", [*fits, eth[len(fits)]])
        assert over["success"] is False
        assert over["data"] == {"failTopics": [*fits, eth[len(fits)]], "successTopics": []}
        exact, _ = await request(ws, "subscribe", fits)
        assert exact["success"] is True, exact["data"]
    assert simulator.state()["counters"]["subscribe_failures"] == 1


async def test_unsubscribed_symbols_stop_streaming(fast_sim: SimulatorHandle) -> None:
    keep, drop = fast_sim.instruments()["ETH"][:2]
    async with open_stream(fast_sim.ws_url) as ws:
        await request(ws, "subscribe", topics([keep, drop]))
        await collect_until(ws, lambda d: d.get("topic") == f"tickers.{drop}")
        answer, _ = await request(ws, "unsubscribe", [f"tickers.{drop}", "tickers.ETH-1JAN20-1-C"])
        assert answer["success"] is False
        assert answer["data"] == {"failTopics": ["tickers.ETH-1JAN20-1-C"],
                                  "successTopics": [f"tickers.{drop}"]}
        since, _ = await server_ms(ws)
        later = tickers_of(await collect_until(
            ws, lambda d: d.get("topic") == f"tickers.{keep}" and d["ts"] > since + 250))
        assert not [t for t in later if t["topic"] == f"tickers.{drop}" and t["ts"] > since]


async def test_ping_is_answered_with_the_option_pong(fast_sim: SimulatorHandle) -> None:
    async with open_stream(fast_sim.ws_url) as ws:
        before = int(time.time() * 1000)
        await ws.send(json.dumps({"req_id": "hb-1", "op": "ping"}))
        pong = json.loads(await ws.recv())
        assert list(pong) == ["args", "op"]  # the option stream echoes neither req_id nor conn_id
        assert pong["op"] == "pong"
        assert abs(int(pong["args"][0]) - before) < 5000
        fast_sim.set_faults(pong_style="echo")
        await ws.send(json.dumps({"req_id": "hb-2", "op": "ping"}))
        echo = json.loads(await ws.recv())
        assert list(echo) == ["req_id", "op", "args", "conn_id"]
        assert echo["req_id"] == "hb-2"
        fast_sim.set_faults(pong_style="spot")
        await ws.send(json.dumps({"op": "ping"}))
        assert json.loads(await ws.recv()) == {"success": True, "ret_msg": "pong", "conn_id": echo["conn_id"],
                                               "op": "ping"}
    assert fast_sim.state()["counters"]["pings_answered"] == 3


async def test_invalid_json_and_unknown_ops_are_refused_and_the_connection_lives_on(
        fast_sim: SimulatorHandle) -> None:
    async with open_stream(fast_sim.ws_url) as ws:
        await ws.send("{oops")
        refused = json.loads(await ws.recv())
        assert refused["success"] is False
        assert "JSON" in refused["ret_msg"]
        answer, _ = await request(ws, "auth", ["key", 1, "sig"])
        assert answer["success"] is False
        assert "auth" in answer["ret_msg"]
        pong, _ = await request(ws, "ping")
        assert pong["op"] == "pong"


async def test_ticker_pushes_are_well_formed_bybit_snapshots(fast_sim: SimulatorHandle) -> None:
    symbols = fast_sim.instruments()["BTC"][:10] + fast_sim.instruments()["SOL"][-10:]
    async with open_stream(fast_sim.ws_url) as ws:
        await request(ws, "subscribe", topics(symbols))
        count = 0
        pushes: list[dict[str, Any]] = []

        def enough(doc: dict[str, Any]) -> bool:
            nonlocal count
            count += "topic" in doc
            return count >= 60

        messages = await collect_until(ws, enough)
    for raw in messages:
        assert ticker_problem(raw) is None, raw
        pushes.append(json.loads(raw))
    now = time.time() * 1000
    for push in pushes:
        assert tuple(push) == ("id", "topic", "ts", "data", "type")
        assert tuple(push["data"]) == TICKER_FIELDS
        symbol = push["data"]["symbol"]
        assert re.fullmatch(rf"tickers\.{re.escape(symbol)}-\d+-{push['ts']}", push["id"])
        assert abs(push["ts"] - now) < 10_000
    assert {p["data"]["symbol"] for p in pushes} == set(symbols)
    per_symbol: dict[str, list[int]] = {}
    for push in pushes:
        per_symbol.setdefault(push["data"]["symbol"], []).append(push["ts"])
    assert all(ts == sorted(ts) for ts in per_symbol.values())


async def test_truth_is_the_last_frame_each_client_received(fast_sim: SimulatorHandle) -> None:
    symbols = fast_sim.instruments()["ETH"][:15]
    async with open_stream(fast_sim.ws_url) as one, open_stream(fast_sim.ws_url) as two:
        received: dict[ClientConnection, list[str | bytes]] = {one: [], two: []}
        for ws, wanted in ((one, symbols), (two, symbols[:5])):
            await request(ws, "subscribe", topics(wanted))
        for ws, wanted in ((one, symbols), (two, symbols[:5])):
            # Pushes go out in subscription order: the last symbol's frame ends a full cycle.
            received[ws] += await collect_until(ws, topic_is(f"tickers.{wanted[-1]}"))
        fast_sim.set_faults(silent=True)

        def drained() -> bool:
            c = fast_sim.state()["counters"]
            return bool(c["frames_sent"] + c["frames_conflated"] == c["frames_pushed"])

        cycles = fast_sim.state()["counters"]["push_cycles"]
        wait_until(lambda: fast_sim.state()["counters"]["push_cycles"] > cycles + 1, what="a silent cycle")
        wait_until(drained, what="every pushed frame written")
        truth = fast_sim.truth("ETH")
        assert set(truth) == set(symbols)
        for ws, wanted in ((one, symbols), (two, symbols[:5])):
            _, before = await request(ws, "ping")  # everything written before the pong arrives first
            last: dict[str, dict[str, Any]] = {}
            for push in tickers_of(received[ws] + before):
                last[push["data"]["symbol"]] = {"ts": push["ts"], "data": push["data"]}
            assert set(last) == set(wanted)
            for symbol in wanted:
                assert last[symbol] == truth[symbol]


async def test_other_websocket_paths_are_404(fast_sim: SimulatorHandle) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with open_stream(fast_sim.ws_url.replace("/option", "/linear")):
            pass
    assert caught.value.response.status_code == 404


async def test_a_connection_with_no_ping_and_no_data_is_closed(simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=5, extra_args=["--idle-timeout", "0.5"])
    async with open_stream(sim.ws_url) as ws:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                await ws.recv()
    assert sim.state()["counters"]["idle_closes"] == 1


async def test_a_client_that_stops_reading_does_not_stall_the_others(simulator_factory: Factory) -> None:
    sim = simulator_factory(push_interval=0.1)
    btc = topics(sim.instruments()["BTC"])
    eth = sim.instruments()["ETH"][:3]
    # max_queue=1: websockets stops reading the socket as soon as one message waits unread.
    slow = await connect(sim.ws_url, max_queue=1)
    try:
        await slow.send(json.dumps({"op": "subscribe", "args": btc}))
        wait_until(lambda: sim.state()["counters"]["frames_conflated"] > 0, timeout=30,
                   what="the slow client's backlog being conflated")
        async with open_stream(sim.ws_url) as fast:
            await request(fast, "subscribe", topics(eth))
            since, _ = await server_ms(fast)
            fresh = 0

            def three_fresh_cycles(doc: dict[str, Any]) -> bool:
                nonlocal fresh
                fresh += doc.get("topic") == f"tickers.{eth[-1]}" and doc["ts"] > since
                return fresh >= 3

            await collect_until(fast, three_fresh_cycles)
    finally:
        slow.transport.abort()
    counters = sim.state()["counters"]
    assert counters["frames_conflated"] > 0
    assert counters["frames_sent"] < counters["frames_pushed"]
