"""One connection's subscribe/unsubscribe bookkeeping (ingest/subscriptions.py).

Answers are built both by hand (each documented form) and by the simulator's own
sans-I/O subscription book, so the client and the simulated exchange are checked
against each other without a socket.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.frames import CommandAnswer, decode
from ingest.subscriptions import SIZE_MEMORY, SUBSCRIBE, UNSUBSCRIBE, Request, Subscriptions
from simulator import frames as sim_frames
from simulator.subscriptions import SubscriptionBook


def syms(n: int, coin: str = "BTC") -> list[str]:
    return [f"{coin}-27DEC26-{1000 + i}-C" for i in range(n)]


def topics(symbols: list[str] | tuple[str, ...]) -> list[str]:
    return [f"tickers.{s}" for s in symbols]


def op_answer(req: Request, success: bool, ret_msg: str = "") -> CommandAnswer:
    return CommandAnswer(req.req_id, req.op, success, ret_msg, None, None)


def resp_answer(req: Request, ok: list[str], failed: list[str], ret_msg: str = "") -> CommandAnswer:
    return CommandAnswer(req.req_id, None, not failed, ret_msg, tuple(topics(ok)), tuple(topics(failed)))


def connected(symbols: list[str], chunk: int = 10, retries: int = 3) -> Subscriptions:
    s = Subscriptions(name="ws0", chunk=chunk, max_retries=retries)
    s.add(symbols)
    s.on_connected()
    return s


def test_a_new_socket_subscribes_every_wanted_symbol_in_chunks() -> None:
    s = connected(syms(25), chunk=10)
    sizes = []
    while (req := s.next_request(0.0)) is not None:
        assert req.op == SUBSCRIBE
        assert req.args == topics(req.symbols)
        sizes.append(len(req.symbols))
    assert sizes == [10, 10, 5]
    assert s.in_flight == 3
    assert not s.settled


def test_success_in_the_op_form_confirms_the_whole_request() -> None:
    s = connected(syms(5))
    req = s.next_request(0.0)
    assert req is not None
    result = s.on_answer(op_answer(req, True))
    assert result is not None
    assert not result.failed
    assert s.confirmed == set(syms(5))
    assert s.settled


def test_command_resp_partial_failure_confirms_some_and_retries_the_rest() -> None:
    s = connected(syms(4))
    req = s.next_request(0.0)
    assert req is not None
    result = s.on_answer(resp_answer(req, syms(4)[:3], syms(4)[3:], "error:Invalid symbol"))
    assert result is not None
    assert result.failed
    assert result.retrying == syms(4)[3:]
    assert s.confirmed == set(syms(4)[:3])
    retry = s.next_request(1.0)
    assert retry is not None
    assert retry.symbols == tuple(syms(4)[3:])


def test_a_topic_that_keeps_failing_is_parked_after_the_retries() -> None:
    s = connected(syms(1), retries=2)
    for expected in (["retrying"], ["retrying"], ["parked"]):
        req = s.next_request(0.0)
        assert req is not None
        reason = "error:Invalid symbol,topic:tickers." + syms(1)[0]
        result = s.on_answer(resp_answer(req, [], syms(1), reason))
        assert result is not None
        assert [k for k in ("retrying", "parked") if getattr(result, k)] == expected
    assert s.next_request(0.0) is None
    assert s.parked == set(syms(1))
    assert s.settled
    assert s.retry_parked() == 1
    assert s.next_request(0.0) is not None


def test_an_op_form_failure_naming_topics_fails_only_those() -> None:
    s = connected(syms(4))
    req = s.next_request(0.0)
    assert req is not None
    bad, already = syms(4)[0], syms(4)[1]
    msg = f"error:Invalid symbol,topic:tickers.{bad}; error:already subscribed,topic:tickers.{already}"
    result = s.on_answer(op_answer(req, False, msg))
    assert result is not None
    assert result.failed
    assert not result.split
    assert result.retrying == [bad]
    assert s.confirmed == set(syms(4)) - {bad}


def test_an_op_form_failure_naming_only_already_subscribed_topics_is_a_success() -> None:
    s = connected(syms(2))
    req = s.next_request(0.0)
    assert req is not None
    result = s.on_answer(op_answer(req, False, f"error:already subscribed,topic:tickers.{syms(2)[0]}"))
    assert result is not None
    assert not result.failed
    assert s.confirmed == set(syms(2))


def test_a_cut_short_failure_message_retries_the_topics_it_did_not_name() -> None:
    s = connected(syms(15), chunk=15)
    req = s.next_request(0.0)
    assert req is not None
    named = "; ".join(f"error:Invalid symbol,topic:tickers.{x}" for x in syms(15)[:10])
    result = s.on_answer(op_answer(req, False, named + "; and 5 more"))
    assert result is not None
    assert sorted(result.retrying) == sorted(syms(15))
    assert not s.confirmed


def test_a_request_rejected_as_a_whole_is_split_and_later_requests_are_smaller() -> None:
    s = connected(syms(40), chunk=20)
    req = s.next_request(0.0)
    assert req is not None
    assert len(req.symbols) == 20
    result = s.on_answer(op_answer(req, False, "error:too many args in one request (20 > 8)"))
    assert result is not None
    assert result.split
    assert result.failed
    assert s.chunk == 10
    again = s.next_request(0.0)
    assert again is not None
    assert len(again.symbols) == 10


def test_requests_accepted_whole_grow_the_chunk_back_to_its_configured_size() -> None:
    # The chaos drill: rejections halved the chunk to 1; once they ended, 700 topics went one per
    # request (~70 s at 0.1 s apart), on that socket and every later one.
    s = connected(syms(300), chunk=64)
    while True:  # everything refused, down to a single topic
        req = s.next_request(0.0)
        assert req is not None
        s.on_answer(op_answer(req, False, f"error:too many args in one request ({len(req.symbols)} > 0)"))
        if len(req.symbols) == 1:
            break
    sizes = []
    while (req := s.next_request(0.0)) is not None:
        sizes.append(len(req.symbols))
        s.on_answer(op_answer(req, True))
    assert sizes[:7] == [1, 2, 4, 8, 16, 32, 64]
    assert max(sizes) == s.chunk == 64
    assert s.confirmed == set(syms(300))


def test_a_real_size_limit_is_remembered_for_a_minute_then_probed_again() -> None:
    s = connected(syms(400), chunk=32)
    sent: list[tuple[float, int, bool]] = []
    now = 0.0
    while (req := s.next_request(now)) is not None:
        accepted = len(req.symbols) <= 7  # the exchange's limit on one request
        sent.append((now, len(req.symbols), accepted))
        s.on_answer(op_answer(req, True) if accepted else
                    op_answer(req, False, f"error:too many args in one request ({len(req.symbols)} > 7)"))
        now += 1.0
    assert s.confirmed == set(syms(400))
    rejected = [(t, n) for t, n, ok in sent if not ok]
    assert [n for _, n in rejected[:2]] == [32, 16]
    # After learning, requests stay at the largest size that fits; a bigger one is tried again
    # only once SIZE_MEMORY has passed since the last rejection.
    later = [t for t, _ in rejected[2:]]
    assert all(b - a >= SIZE_MEMORY for a, b in itertools.pairwise(later))
    assert sum(1 for _, n, ok in sent if ok and n == 7) > 40


def test_a_single_topic_rejected_as_a_whole_counts_an_attempt() -> None:
    s = connected(syms(1), retries=1)
    for _ in range(2):
        req = s.next_request(0.0)
        assert req is not None
        s.on_answer(op_answer(req, False, "error:args count would exceed 2000 per connection"))
    assert s.parked == set(syms(1))


def test_an_unanswered_request_times_out_and_is_retried() -> None:
    s = connected(syms(3))
    req = s.next_request(0.0)
    assert req is not None
    assert s.expire(5.0, 10.0) == []
    results = s.expire(10.0, 10.0)
    assert len(results) == 1
    assert results[0].failed
    assert results[0].retrying == syms(3)
    assert s.on_answer(op_answer(req, True)) is None  # the late answer matches nothing now


def test_symbols_added_while_connected_are_subscribed_and_removed_ones_unsubscribed() -> None:
    s = connected(syms(3))
    req = s.next_request(0.0)
    assert req is not None
    s.on_answer(op_answer(req, True))
    s.add(syms(5)[3:])
    s.remove(syms(1))
    unsub = s.next_request(0.0)
    assert unsub is not None
    assert unsub.op == UNSUBSCRIBE
    assert unsub.symbols == tuple(syms(1))
    sub = s.next_request(0.0)
    assert sub is not None
    assert sub.op == SUBSCRIBE
    assert sub.symbols == tuple(syms(5)[3:])
    s.on_answer(op_answer(unsub, True))
    s.on_answer(op_answer(sub, True))
    assert s.confirmed == set(syms(5)[1:])
    assert s.wanted == set(syms(5)[1:])


def test_removing_a_symbol_not_yet_sent_sends_nothing_for_it() -> None:
    s = Subscriptions(name="ws0", chunk=10)
    s.add(syms(2))
    s.on_connected()
    s.remove(syms(1))
    req = s.next_request(0.0)
    assert req is not None
    assert req.op == SUBSCRIBE
    assert req.symbols == tuple(syms(2)[1:])
    assert s.next_request(0.0) is None


def test_a_symbol_delivered_while_its_subscribe_is_in_flight_is_unsubscribed_and_not_confirmed() -> None:
    s = connected(syms(2))
    req = s.next_request(0.0)
    assert req is not None
    s.remove(syms(1))
    s.on_answer(op_answer(req, True))
    assert s.confirmed == set(syms(2)[1:])
    unsub = s.next_request(0.0)
    assert unsub is not None
    assert unsub.op == UNSUBSCRIBE


def test_nothing_is_sent_while_disconnected_and_a_new_socket_resubscribes_everything() -> None:
    s = connected(syms(3))
    req = s.next_request(0.0)
    assert req is not None
    s.on_answer(op_answer(req, True))
    s.on_disconnected()
    assert s.confirmed == set()
    s.add(syms(4)[3:])
    assert s.next_request(0.0) is None
    s.on_connected()
    req = s.next_request(0.0)
    assert req is not None
    assert set(req.symbols) == set(syms(4))


# --- against the simulator's exchange-side book ------------------------------------------------

def exchange_answer(book: SubscriptionBook, req: Request, *, style: str, listed: set[str],
                    reject_over: int | None) -> CommandAnswer:
    if req.op == SUBSCRIBE:
        outcome = book.subscribe(req.args, listed=lambda s: s in listed, reject_over=reject_over)
    else:
        outcome = book.unsubscribe(req.args)
    raw = sim_frames.subscription_answer(style=style, op=req.op, conn_id="c", req_id=req.req_id,
                                         outcome=outcome)
    answer = decode(raw, owned=set(), now_ms=0)
    assert isinstance(answer, CommandAnswer)
    return answer


def drive(s: Subscriptions, book: SubscriptionBook, **kw: Any) -> int:
    requests = 0
    while (req := s.next_request(0.0)) is not None:
        requests += 1
        assert requests < 10_000
        s.on_answer(exchange_answer(book, req, **kw))
    return requests


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=120), st.integers(min_value=1, max_value=200),
       st.sampled_from(["op", "command_resp"]), st.integers(min_value=0, max_value=5),
       st.one_of(st.none(), st.integers(min_value=1, max_value=100)))
def test_any_chunk_size_and_request_limit_converge_to_every_listed_symbol_subscribed(
        n: int, chunk: int, style: str, unlisted: int, reject_over: int | None) -> None:
    wanted = syms(n)
    listed = set(wanted[unlisted:])
    s = connected(wanted, chunk=chunk, retries=2)
    book = SubscriptionBook()
    drive(s, book, style=style, listed=listed, reject_over=reject_over)
    assert s.settled
    assert s.confirmed == listed
    assert {t.removeprefix("tickers.") for t in book.topics} == listed
    assert s.parked == set(wanted) - listed


def test_a_delivery_round_trip_leaves_the_exchange_holding_exactly_the_wanted_topics() -> None:
    wanted = syms(30)
    s = connected(wanted, chunk=7)
    book = SubscriptionBook()
    drive(s, book, style="op", listed=set(wanted), reject_over=None)
    s.remove(wanted[:12])
    s.add(syms(35)[30:])
    drive(s, book, style="op", listed=set(syms(35)), reject_over=None)
    assert {t.removeprefix("tickers.") for t in book.topics} == set(syms(35)[12:])
    assert s.confirmed == set(syms(35)[12:])


def test_the_subscribe_request_is_what_bybit_documents() -> None:
    s = connected(syms(2))
    req = s.next_request(0.0)
    assert req is not None
    wire = orjson.loads(orjson.dumps({"req_id": req.req_id, "op": req.op, "args": req.args}))
    assert wire == {"req_id": "ws0-1", "op": "subscribe", "args": topics(syms(2))}


# --- answers as Bybit's option stream really sends them: no req_id, no op, no ret_msg -----------

def bybit_resp(ok: list[str] | tuple[str, ...], failed: list[str] | tuple[str, ...] = ()) -> CommandAnswer:
    """The COMMAND_RESP form of Bybit's docs and live captures, decoded by the real decoder."""
    raw = orjson.dumps({"success": not failed, "conn_id": "d0b7b4c4-2a5a-4d8b-9d9c-1f3c2a4f5e6d",
                        "data": {"failTopics": topics(list(failed)), "successTopics": topics(list(ok))},
                        "type": "COMMAND_RESP"})
    answer = decode(raw, owned=set(), now_ms=0)
    assert isinstance(answer, CommandAnswer)
    assert answer.req_id is None
    return answer


def test_an_answer_without_req_id_confirms_exactly_the_topics_it_lists() -> None:
    s = connected(syms(25), chunk=10)
    reqs = [s.next_request(0.0) for _ in range(3)]
    assert all(r is not None for r in reqs)
    result = s.on_answer(bybit_resp(syms(25)[:10]))
    assert result is not None
    assert not result.failed
    assert s.confirmed == set(syms(25)[:10])
    assert s.in_flight == 2
    for start, end in ((10, 20), (20, 25)):
        assert s.on_answer(bybit_resp(syms(25)[start:end])) is not None
    assert s.confirmed == set(syms(25))
    assert s.settled


def test_one_answer_may_confirm_topics_of_several_requests() -> None:
    s = connected(syms(6), chunk=3)
    assert s.next_request(0.0) is not None
    assert s.next_request(0.0) is not None
    result = s.on_answer(bybit_resp(syms(6)[2:5]))  # the end of one request, the start of the next
    assert result is not None
    assert sorted(result.confirmed) == sorted(syms(6)[2:5])
    assert s.in_flight == 2
    s.on_answer(bybit_resp([syms(6)[0], syms(6)[1], syms(6)[5]]))
    assert s.settled
    assert s.confirmed == set(syms(6))


def test_topics_an_answer_never_speaks_of_are_retried_and_reported_unanswered_once() -> None:
    s = connected(syms(4))
    req = s.next_request(0.0)
    assert req is not None
    s.on_answer(bybit_resp(syms(4)[:3]))
    assert s.expire(5.0, 10.0) == []
    results = s.expire(10.0, 10.0)
    assert len(results) == 1
    assert results[0].unanswered
    assert results[0].failed
    assert results[0].retrying == syms(4)[3:]
    again = s.next_request(11.0)
    assert again is not None
    assert again.symbols == tuple(syms(4)[3:])
    assert s.confirmed == set(syms(4)[:3])


def test_a_failed_topic_without_req_id_is_retried_and_the_rest_confirmed() -> None:
    s = connected(syms(3))
    assert s.next_request(0.0) is not None
    result = s.on_answer(bybit_resp(syms(3)[:2], syms(3)[2:]))
    assert result is not None
    assert result.failed
    assert not result.unanswered
    assert not result.split
    assert result.retrying == syms(3)[2:]
    assert s.confirmed == set(syms(3)[:2])
    retry = s.next_request(1.0)
    assert retry is not None
    assert retry.symbols == tuple(syms(3)[2:])


def test_an_op_form_answer_without_req_id_answers_the_oldest_request_in_flight() -> None:
    s = connected(syms(4), chunk=2)
    first, second = s.next_request(0.0), s.next_request(0.0)
    assert first is not None
    assert second is not None
    docs_form = decode(orjson.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "",
                                     "op": "subscribe"}), owned=set(), now_ms=0)
    assert isinstance(docs_form, CommandAnswer)
    s.on_answer(docs_form)
    assert s.confirmed == set(first.symbols)
    s.on_answer(docs_form)
    assert s.confirmed == set(syms(4))
    assert s.settled
    assert s.on_answer(docs_form) is None  # nothing in flight: an answer to nothing


def test_a_late_confirmation_after_the_timeout_still_counts_and_a_repeat_refusal_is_harmless() -> None:
    s = connected(syms(2))
    assert s.next_request(0.0) is not None
    s.expire(10.0, 10.0)  # both re-queued
    late = s.on_answer(bybit_resp(syms(2)))
    assert late is not None
    assert s.confirmed == set(syms(2))
    assert s.next_request(11.0) is None  # nothing left to resend
    s2 = connected(syms(1))
    assert s2.next_request(0.0) is not None
    s2.expire(10.0, 10.0)
    resent = s2.next_request(11.0)
    assert resent is not None
    s2.on_answer(bybit_resp(syms(1)))  # the first request's answer, late
    repeat = s2.on_answer(bybit_resp([], syms(1)))  # the resend: "already subscribed"
    assert repeat is not None
    assert not repeat.failed
    assert s2.confirmed == set(syms(1))
    assert s2.settled


def test_an_unsubscribe_answered_without_req_id_drops_the_topics() -> None:
    s = connected(syms(3))
    assert s.next_request(0.0) is not None
    s.on_answer(bybit_resp(syms(3)))
    s.remove(syms(1))
    unsub = s.next_request(1.0)
    assert unsub is not None
    assert unsub.op == UNSUBSCRIBE
    result = s.on_answer(bybit_resp(syms(1)))
    assert result is not None
    assert not result.failed
    assert s.confirmed == set(syms(3)[1:])
    assert s.settled


def test_a_whole_request_refused_without_req_id_is_split() -> None:
    s = connected(syms(8), chunk=8)
    req = s.next_request(0.0)
    assert req is not None
    result = s.on_answer(bybit_resp([], syms(8)))
    assert result is not None
    assert result.split
    assert s.chunk == 4
