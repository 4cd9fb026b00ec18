"""Redis commands as RESP bytes, for the one hot write path (pure).

redis-py packs each argument in Python (~30 µs for an option's HSET of 27 fields);
the ingest writes thousands of option hashes a second, so it renders the RESP of its
``HSET``/``EXPIRE``/``SADD`` itself (~3.5 µs) and hands redis-py's connection the whole
batch in one write (:mod:`ingest.store`). The encoding is the documented RESP2 array
of bulk strings; the field-name headers of Bybit's known ticker fields are rendered
once at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from common import keys
from ingest.frames import TICKER_FIELDS


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


_FIELD_HEADERS: Final[dict[str, bytes]] = {name: _bulk(name.encode()) for name in TICKER_FIELDS}
#: Each known field's header, led by the CRLF that ends the bulk before it (the key or a value).
_FIELD_HEADERS_CRLF: Final[dict[str, str]] = {name: f"\r\n${len(name)}\r\n{name}\r\n"
                                              for name in TICKER_FIELDS}
#: ``$<n>\r\n`` for every value length a validated ticker can have (longer ones take the slow path).
_LENGTHS: Final[list[str]] = [f"${n}\r\n" for n in range(256)]
_TS: Final = _bulk(keys.F_OPTION_TS.encode())
_RECV_TS: Final = _bulk(keys.F_OPTION_RECV_TS.encode())
_TS_TEXT: Final = f"${len(keys.F_OPTION_TS)}\r\n{keys.F_OPTION_TS}\r\n"
_RECV_TS_TEXT: Final = f"${len(keys.F_OPTION_RECV_TS)}\r\n{keys.F_OPTION_RECV_TS}\r\n"
_HSET: Final = _bulk(b"HSET")
_EXPIRE: Final = _bulk(b"EXPIRE")


def _encode(arg: str | bytes | int) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, int):
        return str(arg).encode()
    return arg.encode()


def command(*args: str | bytes | int) -> bytes:
    """Any command: ``command("SADD", key, member)``."""
    parts = [b"*%d\r\n" % len(args)]
    parts.extend(_bulk(_encode(a)) for a in args)
    return b"".join(parts)


def hset_ticker(key: str, data: Mapping[str, str], ts: int, recv_ms: int) -> bytes:
    """``HSET key <field value>... ts <ts> recv_ts <recv_ms>`` for one option hash.

    Validated tickers are ASCII (decimal strings, option symbols) with Bybit's field names, so
    the command is formatted as text and encoded once, bulk lengths being character counts.
    Each field is three pre-made or given strings (its header, which also ends the previous
    bulk, the value's ``$len`` line, the value), joined in one call: about half the cost of
    formatting each pair. Anything else (an unknown field name, a value of 256 characters or
    more, a non-ASCII value: the encoded length differs) is rendered byte by byte instead.
    """
    headers, lengths = _FIELD_HEADERS_CRLF, _LENGTHS
    try:
        body = "".join([part for n, v in data.items() for part in (headers[n], lengths[len(v)], v)])
    except (KeyError, IndexError):
        return _hset_bytes(key, data, ts, recv_ms)
    t1, t2 = str(ts), str(recv_ms)
    text = (f"*{2 + 2 * len(data) + 4}\r\n$4\r\nHSET\r\n${len(key)}\r\n{key}{body}"
            f"\r\n{_TS_TEXT}${len(t1)}\r\n{t1}\r\n{_RECV_TS_TEXT}${len(t2)}\r\n{t2}\r\n")
    raw = text.encode()
    if len(raw) == len(text):
        return raw
    return _hset_bytes(key, data, ts, recv_ms)


_BULK_LENGTHS: Final[list[bytes]] = [line.encode() for line in _LENGTHS]
#: Each ticker field's header, led by the CRLF that ends the bulk before it (also ingest/_scan.c's).
FIELD_HEADERS: Final[tuple[bytes, ...]] = tuple(header.encode() for header in _FIELD_HEADERS_CRLF.values())
#: One slot per (header, ``$len`` line, value) of the 25 fields, headers filled in.
_CANONICAL_SLOTS: Final[list[bytes]] = [b""] * (3 * len(TICKER_FIELDS))
_CANONICAL_SLOTS[0::3] = FIELD_HEADERS
#: The fixed parts of a canonical ticker's ``HSET``: its head, and the ``ts``/``recv_ts`` headers.
CANONICAL_HEAD: Final = b"*%d\r\n" % (2 + 2 * len(TICKER_FIELDS) + 4) + _HSET
TS_HEADER: Final = b"\r\n" + _TS
RECV_TS_HEADER: Final = b"\r\n" + _RECV_TS


def hset_canonical(key: bytes, data: bytes, ts: int, recv_ms: int) -> bytes:
    """:func:`hset_ticker`'s bytes, from the ``data`` object of a frame of Bybit's own shape.

    ``data`` is group 3 of an :data:`ingest.canonical.CANONICAL` match: every field of
    :data:`~ingest.frames.TICKER_FIELDS` once, in that order, each value a plain decimal (or the
    symbol) between double quotes with no quote inside. So splitting at the quotes puts the
    values at every fourth place, and the command is three C-level slice assignments and a join
    (~4 µs) with no dict and no per-field Python call. RESP and not Redis' inline form, although
    that is three times cheaper to render: Redis parses an inline argument one character at a
    time, and an option's inline ``HSET`` cost it 24 µs against 11 µs for the RESP one (measured
    2026-12-02), which lengthened every flush and the exchange-to-Redis lag.
    """
    values = data.split(b'"')[3::4]
    slots = _CANONICAL_SLOTS.copy()
    lengths = _BULK_LENGTHS
    slots[1::3] = [lengths[len(v)] for v in values]
    slots[2::3] = values
    t, r = b"%d" % ts, b"%d" % recv_ms
    slots.append(b"%s$%d\r\n%s%s$%d\r\n%s\r\n" % (TS_HEADER, len(t), t, RECV_TS_HEADER, len(r), r))
    return b"%s$%d\r\n%s%s" % (CANONICAL_HEAD, len(key), key, b"".join(slots))


def _hset_bytes(key: str, data: Mapping[str, str], ts: int, recv_ms: int) -> bytes:
    parts = [b"*%d\r\n" % (2 + 2 * len(data) + 4), _HSET, _bulk(key.encode())]
    headers = _FIELD_HEADERS
    for name, value in data.items():
        header = headers.get(name)
        parts.append(header if header is not None else _bulk(name.encode()))
        parts.append(_bulk(value.encode()))
    parts += (_TS, _bulk(b"%d" % ts), _RECV_TS, _bulk(b"%d" % recv_ms))
    return b"".join(parts)


def expire(key: str, seconds: int) -> bytes:
    return b"*3\r\n" + _EXPIRE + _bulk(key.encode()) + _bulk(b"%d" % seconds)


def sadd(key: str, members: Iterable[str]) -> bytes:
    return command("SADD", key, *members)


#: The Redis Functions library that makes ticker writes monotonic (``INGEST_MONOTONIC_WRITES``):
#: a write whose exchange ``ts`` is older than the stored one is skipped, atomically, inside Redis.
#: Two ingest replicas writing the same symbols can then never replace a newer ticker with an
#: older one, whatever order their batches arrive in. Equal ``ts`` overwrites (the same frame).
LIBRARY_NAME: Final = "bybit_tracker"
PUT_TICKER: Final = "bybit_tracker_put_ticker"
LIBRARY: Final = f"""#!lua name={LIBRARY_NAME}
local function put_ticker(keys, args)
  local stored = redis.call('HGET', keys[1], '{keys.F_OPTION_TS}')
  if stored and tonumber(stored) > tonumber(args[1]) then
    return 0
  end
  redis.call('HSET', keys[1], unpack(args, 3))
  redis.call('EXPIRE', keys[1], args[2])
  return 1
end
redis.register_function{{function_name='{PUT_TICKER}', callback=put_ticker}}
"""
_PUT_TICKER: Final = PUT_TICKER.encode()
_FCALL_HEAD: Final = _bulk(b"FCALL") + _bulk(_PUT_TICKER) + _bulk(b"1")
_HSET_HEAD_LEN: Final = len(_HSET)


def guarded(hset: bytes, ts: int, ttl: int) -> bytes:
    """The ``HSET`` of :func:`hset_ticker` as ``FCALL put_ticker 1 key ts ttl <field value>...``.

    Spliced from the rendered command (header, key bulk, pairs) rather than rendered again, so the
    guard costs one bytes join per write on top of the script's run in Redis.
    """
    count_end = hset.index(b"\r\n")
    count = int(hset[1:count_end])
    key_start = count_end + 2 + _HSET_HEAD_LEN
    key_len_end = hset.index(b"\r\n", key_start)
    key_end = key_len_end + 2 + int(hset[key_start + 1:key_len_end]) + 2
    return b"".join((b"*%d\r\n" % (count + 4), _FCALL_HEAD, hset[key_start:key_end],
                     _bulk(b"%d" % ts), _bulk(b"%d" % ttl), hset[key_end:]))
