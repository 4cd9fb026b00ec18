"""Cursor paging of ``instruments-info`` (sans-I/O).

The cursor is opaque to clients (as Bybit's is) and names the sort key of the last item handed
out, not an offset: instruments listed or delivered between two page requests then neither
shift items into a page twice nor make a client skip one that stayed listed.

Bybit hands its cursor out *already percent-encoded*: the text of ``nextPageCursor`` is
``0%2C500`` (live capture ``tests/data/bybit/rest_instruments_option_page_roq.json``), and the
server decodes the query once, so a client must put that text into the URL unchanged. One that
encodes it again sends ``0%252C500``, which decodes to ``0%2C500``: not a cursor. The ``percent``
style reproduces this trap: its cursor text is ``1%2C<token>``, and :func:`decode_cursor` (given
the value as the server decoded it) accepts ``1,<token>`` only. The ``plain`` style is the
simulator's older cursor, a bare URL-safe token that reads the same however often it is encoded.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
from collections.abc import Sequence
from typing import Final, TypeVar

import orjson

T = TypeVar("T")
SortKey = tuple[int, float, int, str]
_VERSION: Final = 1
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]+")
#: What a ``percent`` cursor decodes to before its token (the ``0,`` of Bybit's ``0,500``).
_PERCENT_HEAD: Final = f"{_VERSION},"


def encode_cursor(coin: str, key: SortKey, *, style: str = "percent") -> str:
    """The ``nextPageCursor`` text continuing after ``key`` (``style``: ``percent`` or ``plain``)."""
    raw = orjson.dumps([_VERSION, coin, list(key)])
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{_VERSION}%2C{token}" if style == "percent" else token


def decode_cursor(cursor: str, coin: str) -> SortKey | None:
    """The key a cursor names, or None when it is not one of ours (or belongs to another coin).

    ``cursor`` is the query value *after* the server's one percent-decoding: ``1,<token>`` for a
    ``percent`` cursor sent back unchanged, ``<token>`` for a ``plain`` one. Both styles are
    accepted whatever the current style, so switching it never strands a client mid-listing.
    """
    token = cursor.removeprefix(_PERCENT_HEAD)
    if not _TOKEN.fullmatch(token):  # e.g. "1%2C..." from a client that encoded the cursor again
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, cursor_coin, key = orjson.loads(raw)
        delivery, strike, put, settle = key
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        return None
    ok = (version == _VERSION and cursor_coin == coin and isinstance(delivery, int)
          and isinstance(strike, int | float) and isinstance(put, int) and isinstance(settle, str))
    return (delivery, float(strike), put, settle) if ok else None


def page(items: Sequence[T], keys: Sequence[SortKey], after: SortKey | None,
         limit: int) -> tuple[list[T], SortKey | None]:
    """Up to ``limit`` items after key ``after``; and the key to continue from (None at the end)."""
    start = 0 if after is None else bisect.bisect_right(keys, after)
    end = min(start + limit, len(items))
    chosen = list(items[start:end])
    return chosen, (keys[end - 1] if end < len(items) and chosen else None)
