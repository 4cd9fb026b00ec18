"""Bytes on the wire: ticker pushes and the answers of the public option stream.

A ticker frame is assembled from pre-rendered parts: the ``data`` object is serialised once per
market step (orjson) and every push only splices in its id and timestamp, so a push cycle to any
number of connections costs one small concatenation per symbol. Topics are built from listed
symbols (letters, digits, ``-`` and ``.``), which never need JSON escaping.
"""

from __future__ import annotations

from typing import Any

import orjson

from simulator.subscriptions import Outcome


def ticker_frame(topic: bytes, seq: int, ts_ms: int, data_json: bytes) -> bytes:
    """``{"id": "tickers.SYM-<seq>-<ts>", "topic": ..., "ts": ..., "type": "snapshot", "data": {...}}``."""
    ts = str(ts_ms).encode()
    return b"".join((
        b'{"id":"', topic, b"-", str(seq).encode(), b"-", ts, b'","topic":"', topic,
        b'","ts":', ts, b',"type":"snapshot","data":', data_json, b"}",
    ))


def subscription_answer(*, style: str, op: str, conn_id: str, req_id: Any, outcome: Outcome) -> bytes:
    """The answer to a subscribe/unsubscribe, in the option stream's "op" or COMMAND_RESP form."""
    if style == "command_resp":
        doc: dict[str, Any] = {
            "success": outcome.success, "ret_msg": outcome.reason, "conn_id": conn_id, "req_id": req_id,
            "data": {"failTopics": list(outcome.failed), "successTopics": list(outcome.succeeded)},
            "type": "COMMAND_RESP",
        }
    else:
        doc = {"success": outcome.success, "ret_msg": outcome.reason, "conn_id": conn_id, "req_id": req_id,
               "op": op}
    return orjson.dumps(doc)


def pong(*, conn_id: str, req_id: Any, now_ms: int) -> bytes:
    """The option stream's pong: ``{"req_id", "op": "pong", "args": ["<server ms>"], "conn_id"}``."""
    return orjson.dumps({"req_id": req_id, "op": "pong", "args": [str(now_ms)], "conn_id": conn_id})


def error_answer(*, conn_id: str, req_id: Any, op: Any, ret_msg: str) -> bytes:
    """A refused request (invalid JSON, unknown op): ``success: false`` and the reason."""
    doc = {"success": False, "ret_msg": ret_msg, "conn_id": conn_id, "req_id": req_id, "op": op}
    return orjson.dumps(doc)
