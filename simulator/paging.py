"""Cursor paging of ``instruments-info`` (sans-I/O).

The cursor is opaque to clients (as Bybit's is) and names the sort key of the last item handed
out, not an offset: instruments listed or delivered between two page requests then neither
shift items into a page twice nor make a client skip one that stayed listed.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Sequence
from typing import Final, TypeVar

import orjson

T = TypeVar("T")
SortKey = tuple[int, float, int, str]
_VERSION: Final = 1


def encode_cursor(coin: str, key: SortKey) -> str:
    raw = orjson.dumps([_VERSION, coin, list(key)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, coin: str) -> SortKey | None:
    """The key a cursor names, or None when it is not one of ours (or belongs to another coin)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
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
