"""Bybit's own ticker frame, recognised in one regex match and written without being parsed (pure).

At Bybit's maximum push rate (every option every 100 ms, ~20,000 frames/s) parsing each frame
into a dict, checking it field by field and formatting its ``HSET`` from the dict cost ~10 µs of
the ingest's ~25 µs per frame. Almost every frame the exchange sends has the one shape its docs
and live captures show (``tests/data/bybit/ws_ticker_option_*.json``): compact JSON, envelope keys
``id, topic, ts, data, type``, the 25 fields of the option ticker in their documented order, every
value a plain decimal. :data:`CANONICAL` is that shape as one compiled pattern (~2 µs a frame, in
C): a frame it matches is valid by every rule of :func:`ingest.frames.decode` and would be stored
exactly as this module stores it. Anything else (another key order, whitespace, an exponent, a
missing or extra field, any error) is not matched and takes :func:`ingest.frames.decode`, which
decides exactly and names the error. So every frame is still validated; this only makes the
common one cheap.

The matched ``data`` object is then rendered as a Redis *inline command* (the RESP spec's
"Inline commands": arguments separated by spaces, double quotes allowed around each): the
object's own bytes with ``":"`` and ``","`` turned into ``" "`` are already the quoted field and
value arguments of ``HSET``, two ``bytes.replace`` calls instead of a length-prefixed bulk string
per field (~1.5 µs against ~4.8 µs). That is safe only because :data:`CANONICAL` admits nothing
in a value or a symbol but digits, capital letters, ``.`` and ``-``: no space, quote or backslash
can reach the line. Redis, Valkey and HAProxy in TCP mode pass inline commands as any other; a
proxy that speaks only RESP arrays (twemproxy, Envoy's Redis filter) would refuse them.
"""

from __future__ import annotations

import re
from typing import Final

from common import keys
from ingest.frames import PLAIN_DECIMAL, REQUIRED_FIELDS, TICKER_FIELDS

_DECIMAL: Final = PLAIN_DECIMAL.encode()
#: Characters of a JSON string with no escape, no control character and nothing outside ASCII.
_PLAIN_STRING: Final = rb"[\x20\x21\x23-\x5b\x5d-\x7e]{0,200}+"
#: Loose on purpose: only symbols this connection subscribed to (validated then) pass the caller.
_SYMBOL: Final = rb"[A-Z0-9][A-Z0-9.\-]{0,59}+"
#: A JSON integer without sign or leading zero, as ``orjson`` reads an ``int``.
_MILLIS: Final = rb"0|[1-9][0-9]{0,15}+"


def _pattern() -> bytes:
    fields = []
    for name in TICKER_FIELDS[1:]:
        value = b"(?:" + _DECIMAL + (b")" if name in REQUIRED_FIELDS else b")?+")
        fields.append(b',"' + name.encode() + b'":"' + value + b'"')
    return (rb'\{"id":"' + _PLAIN_STRING + rb'","topic":"tickers\.(' + _SYMBOL + rb')","ts":(' + _MILLIS
            + rb'),"data":(\{"symbol":"\1"' + b"".join(fields) + rb'\}),"type":"snapshot"\}')


#: Groups: 1 the symbol (topic and ``data.symbol``, the same by the back-reference), 2 ``ts``,
#: 3 the ``data`` object.
CANONICAL: Final = re.compile(_pattern())

_HSET: Final = b"HSET "
_TS: Final = f' "{keys.F_OPTION_TS}" "'.encode()
_RECV_TS: Final = f'" "{keys.F_OPTION_RECV_TS}" "'.encode()


def hset_line(key: bytes, data: bytes, ts: int, recv_ms: int) -> bytes:
    """``HSET key "symbol" "..." ... "ts" "<ts>" "recv_ts" "<recv_ms>"`` as one inline command.

    ``data`` is group 3 of a :data:`CANONICAL` match; ``key`` is ``option:{SYMBOL}``.
    """
    pairs = data[1:-1].replace(b'":"', b'" "').replace(b'","', b'" "')
    return b"%s%s %s%s%d%s%d\"\r\n" % (_HSET, key, pairs, _TS, ts, _RECV_TS, recv_ms)


def is_inline(command: bytes) -> bool:
    """True for a command of :func:`hset_line` (a RESP array starts with ``*``)."""
    return command.startswith(_HSET)


def guarded_line(hset: bytes, ts: int, ttl: int, function: bytes) -> bytes:
    """:func:`hset_line`'s command as ``FCALL <function> 1 key ts ttl <field value>...``."""
    key_end = hset.index(b" ", len(_HSET))
    return b"FCALL %s 1 %s %d %d%s" % (function, hset[len(_HSET):key_end], ts, ttl, hset[key_end:])
