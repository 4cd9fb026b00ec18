"""Loader for the Bybit V5 conformance corpus in ``tests/data/bybit/``.

The corpus holds real captures only (see ``tests/data/bybit/README.md``): tests read them through
this module and re-stamp their timestamps here, so no test is ever tempted to edit a capture to make
the code pass.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

__all__ = ["corpus_dir", "files", "load", "restamp_ticker"]


def corpus_dir() -> Path:
    """The folder that holds the captures, ``SOURCES.md`` and ``README.md``."""
    return Path(__file__).resolve().parent / "data" / "bybit"


def files(prefix: str = "") -> list[Path]:
    """Every capture whose name starts with ``prefix`` (e.g. ``"ws_ticker"``), sorted by name."""
    return sorted(p for p in corpus_dir().glob(f"{prefix}*.json") if p.is_file())


def load(name: str) -> Any:
    """The parsed JSON of one capture; ``name`` may omit the ``.json`` suffix."""
    path = corpus_dir() / (name if name.endswith(".json") else f"{name}.json")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def restamp_ticker(doc: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A deep copy of a ticker push with ``ts`` set to ``now_ms``.

    Bybit ends an option ticker's ``id`` with the same timestamp
    (``tickers.BTC-6JAN23-17500-C-2480334983-1672917511074``); that suffix is re-stamped too, so
    the copy stays self-consistent. The input is left untouched.
    """
    out = copy.deepcopy(doc)
    old_ts = out.get("ts")
    out["ts"] = now_ms
    msg_id = out.get("id")
    if isinstance(msg_id, str) and old_ts is not None:
        suffix = f"-{old_ts}"
        if msg_id.endswith(suffix):
            out["id"] = f"{msg_id[: -len(suffix)]}-{now_ms}"
    return out
