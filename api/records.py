"""A coin's options as the API serves them, built once per Redis read (pure).

Each option hash becomes one JSON object: the parts of its symbol (``symbol``, ``expiry``,
``expiry_date``, ``strike``, ``type``, ``settle``) followed by every field of the hash
exactly as stored — Bybit's ticker fields are strings (``"0"`` stays ``"0"``, ``""`` stays
``""``) and so are the ingest's ``ts``/``recv_ts`` (milliseconds): nothing is converted,
so the API can never disagree with the exchange by a rounding. Each object is serialised
once, here, with orjson; a request only joins the pre-serialised objects it selects.

Options are sorted by expiry date, strike, type (C before P) and settle coin, so answers
are stable and filters can stop early.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import orjson

from api.compression import Deflated
from common import keys
from common.symbols import MONTHS, parse_symbol

#: Bybit's plain option symbols settle in USDC; USDT-settled ones carry a ``-USDT`` suffix.
DEFAULT_SETTLE: Final = "USDC"
#: Names the API derives from the symbol; a stored field of the same name is left out.
DERIVED: Final = frozenset({"symbol", "expiry", "expiry_date", "strike", "type", "settle"})


@dataclass(frozen=True, slots=True)
class OptionRecord:
    """One option: what filters need, and its JSON object ready to send."""

    symbol: str
    expiry: str  # as in the symbol, e.g. "27DEC26"
    expiry_date: dt.date
    strike: Decimal
    kind: str  # "C" or "P"
    settle: str
    recv_ms: int | None  # the ingest's arrival time of this ticker
    json: bytes

    @property
    def sort_key(self) -> tuple[dt.date, Decimal, str, str]:
        return (self.expiry_date, self.strike, self.kind, self.settle)


@dataclass(frozen=True, slots=True)
class CoinData:
    """Everything one Redis read of a coin produced."""

    coin: str
    options: tuple[OptionRecord, ...]  # sorted by :attr:`OptionRecord.sort_key`
    fetched_at: float  # epoch seconds of the read
    skipped: tuple[str, ...] = ()  # index members that were not a well-formed option of this coin
    by_symbol: Mapping[str, OptionRecord] = field(default_factory=dict)
    by_expiry: Mapping[str, tuple[OptionRecord, ...]] = field(default_factory=dict)  # in answer order
    all_json: bytes = b"[]"  # every option, as a JSON array
    all_deflated: Deflated | None = None  # all_json deflated once for gzip answers
    newest: float | None = None  # epoch seconds of the newest ticker (max recv_ts)


def expiry_date(code: str) -> dt.date | None:
    """``27DEC26`` -> 2026-12-27 (``None`` for a day the month does not have, e.g. 31FEB26)."""
    day, month, year = code[:-5], code[-5:-2], code[-2:]
    try:
        return dt.date(2000 + int(year), MONTHS.index(month) + 1, int(day))
    except ValueError:
        return None


def build_record(symbol: str, stored: Mapping[str, str]) -> OptionRecord | None:
    """The record of one option hash; ``None`` when the symbol is not well formed."""
    parsed = parse_symbol(symbol)
    if parsed is None:
        return None
    date = expiry_date(parsed.expiry)
    if date is None:
        return None
    settle = parsed.settle or DEFAULT_SETTLE
    doc: dict[str, str] = {
        "symbol": symbol, "expiry": parsed.expiry, "expiry_date": date.isoformat(),
        "strike": parsed.strike, "type": parsed.kind, "settle": settle,
    }
    for name, value in stored.items():
        if name not in DERIVED:
            doc[name] = value
    raw_recv = stored.get(keys.F_OPTION_RECV_TS, "")
    recv_ms = int(raw_recv) if raw_recv.isdigit() else None
    return OptionRecord(symbol=symbol, expiry=parsed.expiry, expiry_date=date, strike=Decimal(parsed.strike),
                        kind=parsed.kind, settle=settle, recv_ms=recv_ms, json=orjson.dumps(doc))


def build_records(coin: str, hashes: Iterable[tuple[str, Mapping[str, str]]]) -> tuple[
        list[OptionRecord], list[str]]:
    """(records, skipped symbols) from (symbol, stored hash) pairs; empty hashes (expired) are dropped.

    A member that is not a well-formed option of ``coin`` is skipped and reported: the index
    is data, and data is validated before it is served.
    """
    records: list[OptionRecord] = []
    skipped: list[str] = []
    for symbol, stored in hashes:
        if not stored:
            continue  # expired or delivered between the index read and the hash read
        parsed = parse_symbol(symbol)
        record = build_record(symbol, stored) if parsed is not None and parsed.base == coin else None
        if record is None:
            skipped.append(symbol)
        else:
            records.append(record)
    return records, skipped


def build_coin_data(coin: str, hashes: Iterable[tuple[str, Mapping[str, str]]], *,
                    fetched_at: float) -> CoinData:
    """:func:`build_records` then :func:`assemble`, in one go."""
    records, skipped = build_records(coin, hashes)
    return assemble(coin, records, skipped, fetched_at=fetched_at)


def assemble(coin: str, records: list[OptionRecord], skipped: list[str], *, fetched_at: float) -> CoinData:
    """Sort the records and pre-serialise the whole list."""
    records.sort(key=lambda r: r.sort_key)
    stamps = [r.recv_ms for r in records if r.recv_ms is not None]
    groups: dict[str, list[OptionRecord]] = {}
    for record in records:
        groups.setdefault(record.expiry, []).append(record)
    return CoinData(coin=coin, options=tuple(records), fetched_at=fetched_at, skipped=tuple(skipped),
                    by_symbol={r.symbol: r for r in records}, all_json=join(records),
                    by_expiry={e: tuple(g) for e, g in groups.items()},
                    newest=max(stamps) / 1000.0 if stamps else None)


def join(records: Iterable[OptionRecord]) -> bytes:
    """A JSON array of the records' pre-serialised objects."""
    return b"[" + b",".join(r.json for r in records) + b"]"
