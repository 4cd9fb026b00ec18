"""Bytes on the wire: ticker pushes and the answers of the public option stream.

A ticker frame is assembled from pre-rendered parts: the ``data`` object is serialised once per
market step (orjson) and every push only splices in its id and timestamp, so a push cycle to any
number of connections costs one small concatenation per symbol. Topics are built from listed
symbols (letters, digits, ``-`` and ``.``), which never need JSON escaping.

Key order follows Bybit's documented examples and live captures of the option stream (tests pin
it against ``tests/data/bybit/``): a ticker is ``id, topic, ts, data, type``; a subscribe answer is
``success, conn_id, data{failTopics, successTopics}, type``; a pong is ``args, op``. The other forms
exist only behind the ``response_style`` and ``pong_style`` compat switches.
"""

from __future__ import annotations

from typing import Any

import orjson

from simulator.subscriptions import Outcome


def ticker_frame(topic: bytes, seq: int, ts_ms: int, data_json: bytes) -> bytes:
    """``{"id": "tickers.SYM-<seq>-<ts>", "topic": ..., "ts": ..., "data": {...}, "type": "snapshot"}``."""
    ts = str(ts_ms).encode()
    return b"".join((
        b'{"id":"', topic, b"-", str(seq).encode(), b"-", ts, b'","topic":"', topic,
        b'","ts":', ts, b',"data":', data_json, b',"type":"snapshot"}',
    ))


def subscription_answer(*, style: str, op: str, conn_id: str, req_id: Any, outcome: Outcome) -> bytes:
    """The answer to a subscribe/unsubscribe in ``style`` (see :data:`simulator.faults.RESPONSE_STYLES`).

    ``command_resp`` (default, Bybit's option stream): no req_id, op or ret_msg; a client matches
    it to its request by the topics listed. A failure is ``success: false`` with the failed topics
    in ``failTopics`` (no capture shows a real failure; it keeps the same shape).
    """
    topics = {"failTopics": list(outcome.failed), "successTopics": list(outcome.succeeded)}
    doc: dict[str, Any]
    if style == "command_resp":
        doc = {"success": outcome.success, "conn_id": conn_id, "data": topics, "type": "COMMAND_RESP"}
    elif style == "command_resp_echo":
        doc = {"success": outcome.success, "ret_msg": outcome.reason, "conn_id": conn_id, "req_id": req_id,
               "data": topics, "type": "COMMAND_RESP"}
    else:
        doc = {"success": outcome.success, "ret_msg": outcome.reason, "conn_id": conn_id, "req_id": req_id,
               "op": op}
    return orjson.dumps(doc)


def pong(*, style: str, conn_id: str, req_id: Any, now_ms: int) -> bytes:
    """The answer to ``{"op": "ping"}`` in ``style`` (see :data:`simulator.faults.PONG_STYLES`).

    ``option`` (default): ``{"args": ["<server ms>"], "op": "pong"}``, the option stream's documented
    pong, with neither req_id nor conn_id.
    """
    if style == "echo":
        return orjson.dumps({"req_id": req_id, "op": "pong", "args": [str(now_ms)], "conn_id": conn_id})
    if style == "spot":
        return orjson.dumps({"success": True, "ret_msg": "pong", "conn_id": conn_id, "op": "ping"})
    return orjson.dumps({"args": [str(now_ms)], "op": "pong"})


def error_answer(*, conn_id: str, req_id: Any, op: Any, ret_msg: str) -> bytes:
    """A refused request (invalid JSON, unknown op): ``success: false`` and the reason.

    Bybit documents no answer for these on the option stream; this "op" form is ours.
    """
    doc = {"success": False, "ret_msg": ret_msg, "conn_id": conn_id, "req_id": req_id, "op": op}
    return orjson.dumps(doc)
