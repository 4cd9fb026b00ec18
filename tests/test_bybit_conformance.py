"""The ingest against Bybit's real message shapes (tests/data/bybit/), not against our simulator.

Every capture goes through the real code: :func:`ingest.frames.decode` for WebSocket messages,
:mod:`common.symbols` for every symbol, :class:`ingest.subscriptions.Subscriptions` for the
subscribe answers; discovery reads the captured pages in tests/test_ingest_discovery.py. Then
``python -m ingest`` runs against :class:`tests.replay_exchange.ReplayExchange`, which answers only
with captures (variable parts replaced), into a real redis-server.

Captured ``ts`` values are years old: tickers are re-stamped here; the age rule is not relaxed
(a capture as published is shown to be rejected as stale).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from common import errors, keys
from common.symbols import is_valid_symbol, parse_symbol
from ingest.frames import CommandAnswer, Pong, Rejected, Ticker, decode
from ingest.subscriptions import SUBSCRIBE, Subscriptions
from tests.bybit_corpus import files, load, restamp_ticker
from tests.fixtures_components import IngestHandle
from tests.replay_exchange import Listed, ReplayExchange
from tests.servers import RedisServer, wait_until

NOW_MS = int(time.time() * 1000)


def raw(path: Path) -> bytes:
    """The capture's bytes as published (docs examples keep their indentation)."""
    return path.read_bytes()


def test_the_corpus_covers_every_message_kind_the_ingest_handles() -> None:
    for prefix in ("ws_ticker_option", "ws_subscribe_option", "ws_pong_option", "ws_subscribe_",
                   "ws_pong_", "rest_instruments_option", "rest_error_"):
        assert files(prefix), f"no capture for {prefix}"


# --- WebSocket captures through ingest.frames ------------------------------------------------------

@pytest.mark.parametrize("path", files("ws_ticker"), ids=lambda p: p.name)
def test_every_captured_ticker_is_accepted_with_every_value_as_sent(path: Path) -> None:
    doc = restamp_ticker(load(path.name), NOW_MS)
    symbol = doc["data"]["symbol"]
    frame = decode(orjson.dumps(doc), owned={symbol}, now_ms=NOW_MS)
    assert isinstance(frame, Ticker), frame
    assert frame.symbol == symbol
    assert frame.ts == NOW_MS
    assert frame.data == doc["data"]  # zeros of an empty book side included, nothing renamed


@pytest.mark.parametrize("path", files("ws_ticker"), ids=lambda p: p.name)
def test_a_capture_as_published_is_too_old_to_store(path: Path) -> None:
    """The age rule stands: only the re-stamped copy above is fresh."""
    symbol = load(path.name)["data"]["symbol"]
    frame = decode(raw(path), owned={symbol}, now_ms=NOW_MS)
    assert isinstance(frame, Rejected)
    assert frame.error == errors.BAD_TIMESTAMP


@pytest.mark.parametrize("path", files("ws_pong"), ids=lambda p: p.name)
def test_every_captured_pong_form_is_a_pong(path: Path) -> None:
    """Option ``{"args":[ms],"op":"pong"}``, spot/linear ``ret_msg: pong``, private with req_id,
    and the only numeric-args pong published (pre-V5)."""
    frame = decode(raw(path), owned=set(), now_ms=NOW_MS)
    assert isinstance(frame, Pong), frame


@pytest.mark.parametrize("path", files("ws_subscribe"), ids=lambda p: p.name)
def test_every_captured_subscribe_answer_is_an_answer_with_its_outcome(path: Path) -> None:
    doc = load(path.name)
    frame = decode(raw(path), owned=set(), now_ms=NOW_MS)
    assert isinstance(frame, CommandAnswer), frame
    assert frame.success is doc["success"]
    if doc.get("type") == "COMMAND_RESP":
        assert frame.req_id is None
        assert frame.success_topics == tuple(doc["data"]["successTopics"])
        assert frame.fail_topics == tuple(doc["data"]["failTopics"])
    else:
        assert frame.success_topics is None
        assert frame.ret_msg == doc.get("ret_msg", "")


@pytest.mark.parametrize("name", ["ws_subscribe_option_command_resp_docs",
                                  "ws_subscribe_option_command_resp_roq"])
def test_the_option_streams_answer_confirms_exactly_the_topics_it_lists(name: str) -> None:
    """The captured option answer, with our topics in it, confirms them though it has no req_id."""
    symbols = [f"BTC-27DEC30-{k}0000-C" for k in range(1, 8)]
    subs = Subscriptions(name="t", chunk=4)
    subs.add(symbols)
    subs.on_connected()
    first, second = subs.next_request(0.0), subs.next_request(0.0)
    assert first is not None
    assert second is not None
    assert first.op == SUBSCRIBE
    for request in (second, first):  # answers may come in any order
        doc = load(name)
        doc["data"]["successTopics"] = request.args
        answer = decode(orjson.dumps(doc), owned=set(), now_ms=NOW_MS)
        assert isinstance(answer, CommandAnswer)
        result = subs.on_answer(answer)
        assert result is not None
        assert not result.failed
    assert subs.confirmed == set(symbols)
    assert subs.settled


# --- symbols ---------------------------------------------------------------------------------------

def _symbols_in(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "symbol" and isinstance(value, str):
                yield value
            else:
                yield from _symbols_in(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _symbols_in(value)


@pytest.mark.parametrize(
    "path", files("rest_instruments_option") + files("rest_tickers_option") + files("ws_ticker"),
    ids=lambda p: p.name)
def test_every_captured_option_symbol_is_well_formed(path: Path) -> None:
    found = list(_symbols_in(load(path.name)))
    assert found
    for symbol in found:
        parsed = parse_symbol(symbol)
        assert parsed is not None, symbol
        assert symbol.startswith(parsed.base + "-")
        assert is_valid_symbol(symbol)


# --- python -m ingest against captured shapes ------------------------------------------------------

LISTING = [
    Listed("BTC-27DEC30-90000-C"), Listed("BTC-27DEC30-90000-P"),
    Listed("BTC-27DEC30-100000-C", "PreLaunch"),  # listed, not quoting yet: not subscribed
    Listed("BTC-27DEC30-100000-P"), Listed("BTC-3JAN31-95000-C-USDT"),
    Listed("BTC-27DEC30-110000-C", "Delivering"),  # quotes until delivery: subscribed
    Listed("BTC-27DEC30-110000-P"),
]
STREAMED = {x.symbol for x in LISTING if x.status != "PreLaunch"}
IngestFactory = Callable[..., IngestHandle]
DATA_TIMEOUT = 3.0  # INGEST_DATA_TIMEOUT in tests.fixtures_components.FAST_ENV


@pytest.fixture
def exchange() -> Iterator[ReplayExchange]:
    ex = ReplayExchange(LISTING, page_size=2)
    ex.start()
    try:
        yield ex
    finally:
        ex.stop()


def start_ingest(factory: IngestFactory, redis: RedisServer, ex: ReplayExchange) -> IngestHandle:
    return factory(redis_url=redis.url, coins=("BTC",),
                   env={"BYBIT_WS_URL": ex.ws_url, "BYBIT_REST_URL": ex.rest_url,
                        "INGEST_DATA_TIMEOUT": str(DATA_TIMEOUT)})


def error_counts(stats: dict[str, str]) -> dict[str, int]:
    return {k[len(keys.ERRORS_FIELD_PREFIX):]: int(v) for k, v in stats.items()
            if k.startswith(keys.ERRORS_FIELD_PREFIX) and int(v)}


def wait_confirmed(ingest: IngestHandle, count: int, timeout: float = 20.0) -> None:
    def confirmed() -> bool:
        if not ingest.running:
            raise AssertionError(f"ingest exited; log:\n{ingest.log_text()[-3000:]}")
        return ingest.stats().get(keys.F_SUBSCRIPTIONS) == str(count)

    wait_until(confirmed, timeout=timeout, interval=0.2, what=f"{count} topics confirmed")


@pytest.mark.slow
def test_against_captured_shapes_every_topic_is_confirmed_stored_as_sent_and_nothing_counted(
        redis_server: RedisServer, exchange: ReplayExchange, ingest_factory: IngestFactory) -> None:
    ingest = start_ingest(ingest_factory, redis_server, exchange)
    wait_confirmed(ingest, len(STREAMED))
    ingest.wait_for_data(symbols=len(STREAMED) * 5)
    time.sleep(DATA_TIMEOUT + 1)  # long enough for a wrongly armed data timer to fire
    stats = ingest.stats()
    assert error_counts(stats) == {}, ingest.log_text()[-3000:]
    assert stats[keys.F_RECONNECTS] == "0"
    assert stats[keys.F_SUBSCRIPTIONS] == str(len(STREAMED))
    requests = exchange.recorded.subscribe_requests
    subscribed = {t.removeprefix("tickers.") for req in requests for t in req["args"]}
    assert subscribed == STREAMED
    # Every page after the first was asked for with the cursor exactly as handed out.
    cursors = [q.rpartition("cursor=")[2] for q in exchange.recorded.raw_queries[1:4]]
    assert cursors == ["0%2C2", "0%2C4", "0%2C6"]

    exchange.silent = True
    time.sleep(0.5)
    sent = {s: d for s, d in exchange.recorded.tickers_sent.items()}
    r = redis_server.client()

    def stored_as_sent() -> bool:
        for symbol, doc in sent.items():
            want = {**doc["data"], keys.F_OPTION_TS: str(doc["ts"])}
            got = r.hgetall(keys.option_key(symbol))
            got.pop(keys.F_OPTION_RECV_TS, None)
            if got != want:
                return False
        return True

    wait_until(stored_as_sent, timeout=5, what="Redis to hold each symbol's last captured-shape ticker")
    assert set(sent) == STREAMED
    assert any(doc["data"]["bidPrice"] == "0" for doc in sent.values())  # the empty-book capture


@pytest.mark.slow
def test_a_silent_stream_is_caught_within_the_data_timeout_while_pongs_still_flow(
        redis_server: RedisServer, exchange: ReplayExchange, ingest_factory: IngestFactory) -> None:
    ingest = start_ingest(ingest_factory, redis_server, exchange)
    wait_confirmed(ingest, len(STREAMED))
    ingest.wait_for_data(symbols=len(STREAMED))
    pings_before = exchange.recorded.pings
    exchange.silent = True
    silenced = time.monotonic()
    wait_until(lambda: int(ingest.stats().get(keys.error_field(errors.DATA_TIMEOUT), "0")) >= 1,
               timeout=DATA_TIMEOUT + 10, interval=0.1, what="data_timeout to be counted")
    caught_after = time.monotonic() - silenced
    assert caught_after >= DATA_TIMEOUT - 0.5  # not before the timeout...
    assert exchange.recorded.pings > pings_before  # ...and the pongs kept flowing meanwhile
    assert int(ingest.stats().get(keys.error_field(errors.PONG_TIMEOUT), "0")) == 0
    wait_until(lambda: exchange.recorded.connections >= 2, timeout=15, what="a reconnect")


@pytest.mark.slow
def test_a_topic_refused_in_fail_topics_is_retried_and_counted_once(
        redis_server: RedisServer, exchange: ReplayExchange, ingest_factory: IngestFactory) -> None:
    refused = "tickers.BTC-27DEC30-90000-P"
    exchange.fail_once = {refused}
    ingest = start_ingest(ingest_factory, redis_server, exchange)
    wait_confirmed(ingest, len(STREAMED), timeout=30)
    time.sleep(1.0)
    counted = error_counts(ingest.stats())
    assert counted == {errors.SUBSCRIBE_FAILED: 1}, ingest.log_text()[-3000:]
    asked = [t for req in exchange.recorded.subscribe_requests for t in req["args"]]
    assert asked.count(refused) == 2
    assert all(asked.count(t) == 1 for t in asked if t != refused)
