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

Where the project's C scanner is built (``ingest/_scan.c``; ``scripts/setup.sh`` and the image
build it), :func:`native_scan` does the match and the render in one pass over the frame's bytes
(~0.7 µs a frame in-process, against ~2 µs for the match and ~4 µs a written hash for the render
here): the same verdict as :data:`CANONICAL` and the same bytes as
:func:`~ingest.resp.hset_canonical`, which ``tests/test_ingest_scan.py`` checks on captures, byte
edits and random frames. It renders every frame it matches, superseded or not: the render is
part of the same pass, cheaper than deciding which frames to skip. Without the C build (a machine
without a compiler) the pure path here runs, alike but slower; the ingest logs which one it uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from common.keys import OPTION_PREFIX
from ingest import resp
from ingest.frames import PLAIN_DECIMAL, REQUIRED_FIELDS, TICKER_FIELDS

try:
    from ingest._scan import Scanner
except ImportError as exc:  # built without a C compiler: the pure path below decides alike
    Scanner = None  # type: ignore[assignment,misc]  # the optional extension's absence
    NATIVE_MISSING: str | None = f"ingest._scan is not built ({exc})"
else:
    NATIVE_MISSING = None

#: ``scan(frame, recv_ms)``: ``(symbol, ts, HSET bytes)`` for a frame :data:`CANONICAL` matches,
#: else None.
Scan = Callable[[bytes | str, int], tuple[str, int, bytes] | None]

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


def native_scan(scanner_type: type[Scanner] | None = None) -> Scan | None:
    """The C scanner's ``scan``, set up with the field names and RESP pieces of this checkout.

    None when the extension is not built (:data:`NATIVE_MISSING` says why). Everything it must
    know (fields, required ones, the key prefix, the command's fixed parts) is passed from
    :mod:`ingest.frames`, :mod:`ingest.resp` and :mod:`common.keys`, so the C spells no contract.
    ``scanner_type``: another build of the same source (tests/test_ingest_scan_asan.py loads one
    made with AddressSanitizer).
    """
    kind = Scanner if scanner_type is None else scanner_type
    if kind is None:
        return None
    scanner = kind(
        head=resp.CANONICAL_HEAD,
        prefix=OPTION_PREFIX.encode(),
        keys=tuple(b',"%s":"' % name.encode() for name in TICKER_FIELDS),
        headers=resp.FIELD_HEADERS,
        required=tuple(name in REQUIRED_FIELDS for name in TICKER_FIELDS),
        ts_header=resp.TS_HEADER,
        recv_header=resp.RECV_TS_HEADER,
    )
    return scanner.scan


def scanner_in_use(enabled: bool) -> str:
    """Which fast path the connections run, for the ingest's start-up log line."""
    if not enabled:
        return "pure (INGEST_NATIVE_SCAN off)"
    return "native" if NATIVE_MISSING is None else "pure (ingest._scan not built)"


def pure_scan(raw: bytes | str, recv_ms: int) -> tuple[str, int, bytes] | None:
    """:func:`native_scan`'s result by :data:`CANONICAL` and :func:`~ingest.resp.hset_canonical`.

    The reference the C scanner is tested against; the ingest's pure path does not call it (it
    renders at the flush, so a superseded frame costs no render).
    """
    if type(raw) is not bytes:
        return None
    match = CANONICAL.fullmatch(raw)
    if match is None:
        return None
    symbol, ts_text, data = match.group(1, 2, 3)
    ts = int(ts_text)
    return symbol.decode(), ts, resp.hset_canonical(OPTION_PREFIX.encode() + symbol, data, ts, recv_ms)
