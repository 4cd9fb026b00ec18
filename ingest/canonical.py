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

The matched ``data`` object is kept as bytes until a flush renders its ``HSET``
(:func:`ingest.resp.hset_canonical`, from the object's bytes, no parse): :data:`CANONICAL` admits
nothing in a value or a symbol but digits, capital letters, ``.`` and ``-``, so the values sit
between the object's quotes.
"""

from __future__ import annotations

import re
from typing import Final

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
