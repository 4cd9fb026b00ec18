"""The Bybit corpus is intact: every capture parses and is sourced, every source row has its file.

Only the corpus' own integrity is checked here; feeding the captures through the ingest and the
simulator is the job of those components' tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bybit_corpus import corpus_dir, files, load, restamp_ticker

_ROW = re.compile(r"^\|\s*([^|\s]+\.json)\s*\|([^|]*)\|([^|]*)\|([^|]*)\|\s*$")


def _source_rows() -> dict[str, tuple[str, str, str]]:
    """``file -> (what, source, notes)`` for every table row of SOURCES.md that names a .json file."""
    rows: dict[str, tuple[str, str, str]] = {}
    text = (corpus_dir() / "SOURCES.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match:
            name, what, source, notes = (g.strip() for g in match.groups())
            assert name not in rows, f"{name} is listed twice in SOURCES.md"
            rows[name] = (what, source, notes)
    return rows


def test_corpus_is_not_empty() -> None:
    assert files("ws_ticker"), "no WebSocket ticker capture"
    assert files("rest_instruments"), "no instruments-info capture"


@pytest.mark.parametrize("path", files(), ids=lambda p: p.name)
def test_every_capture_parses_as_json(path: Path) -> None:
    json.loads(path.read_text(encoding="utf-8"))


def test_every_capture_is_listed_with_a_source() -> None:
    rows = _source_rows()
    for path in files():
        assert path.name in rows, f"{path.name} has no row in SOURCES.md"
        what, source, _notes = rows[path.name]
        assert what, f"{path.name}: empty description in SOURCES.md"
        assert source, f"{path.name}: empty source in SOURCES.md"


def test_every_source_row_names_an_existing_capture() -> None:
    for name in _source_rows():
        assert (corpus_dir() / name).is_file(), f"SOURCES.md lists {name}, which does not exist"


def test_restamp_ticker_moves_ts_and_id_suffix_and_leaves_the_capture_alone() -> None:
    doc = load("ws_ticker_option_docs")
    fresh = restamp_ticker(doc, 1_900_000_000_123)
    assert fresh["ts"] == 1_900_000_000_123
    assert fresh["id"] == "tickers.BTC-6JAN23-17500-C-2480334983-1900000000123"
    assert fresh["data"] == doc["data"]
    assert doc["ts"] == 1672917511074
    assert doc["id"].endswith("-1672917511074")
