"""The C scanner (ingest/_scan.c) against the pure fast path it replaces (ingest/canonical.py).

What a user would notice if it broke: a frame the pure path refuses being stored (or the other
way round), a stored hash with other bytes than the pure path writes, a crash or a leak on hostile
exchange input, or an ingest that silently runs without the scanner it was built with.

The reference is :func:`ingest.canonical.pure_scan`: ``CANONICAL.fullmatch`` and
:func:`ingest.resp.hset_canonical`, themselves checked against the exact decoder in
tests/test_ingest_canonical.py. Every frame here is scanned by both and the results compared
whole: the verdict, the symbol, the ``ts`` and every byte of the ``HSET``.
"""

from __future__ import annotations

import gc
import importlib
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.canonical import NATIVE_MISSING, Scan, native_scan, pure_scan, scanner_in_use
from ingest.frames import TICKER_FIELDS
from simulator import malformed
from tests.test_ingest_canonical import DOCS, LIVE, LIVE_SYMBOL, frame_of, restamped, unconnected
from tests.test_simulator_model import _market

RECV_MS = 1_764_000_000_123


@pytest.fixture(scope="module")
def scan() -> Scan:
    found = native_scan()
    assert found is not None, (
        f"{NATIVE_MISSING}: scripts/setup.sh builds it (needs a C compiler and Python's headers)")
    return found


def same(scan: Scan, raw: bytes, recv_ms: int = RECV_MS) -> bool:
    """Both scanners give the same result for ``raw``; returns whether they matched it."""
    want = pure_scan(raw, recv_ms)
    got = scan(raw, recv_ms)
    assert got == want, (raw[:300], got, want)
    return got is not None


def test_the_setup_built_the_scanner_and_the_ingest_says_it_uses_it() -> None:
    assert NATIVE_MISSING is None, f"{NATIVE_MISSING}: run scripts/setup.sh"
    assert scanner_in_use(True) == "native"
    assert scanner_in_use(False) == "pure (INGEST_NATIVE_SCAN off)"


# --- real frames ---------------------------------------------------------------------------------

def test_the_live_capture_and_the_compacted_docs_example_are_scanned_as_the_pure_path_does(
        scan: Scan) -> None:
    assert same(scan, LIVE)
    symbol, ts, command = scan(LIVE, RECV_MS) or ("", 0, b"")
    assert (symbol, ts) == (LIVE_SYMBOL, 1682247012340)
    assert command.startswith(b"*56\r\n$4\r\nHSET\r\n$26\r\noption:BTC-28APR23-30000-C\r\n$6\r\nsymbol\r\n")
    assert command.endswith(b"\r\n$7\r\nrecv_ts\r\n$13\r\n1764000000123\r\n")
    assert not same(scan, DOCS)  # pretty-printed on the page: the exact decoder decides it
    assert same(scan, orjson.dumps(orjson.loads(DOCS)))


def test_every_push_of_the_simulator_is_scanned_as_the_pure_path_does(scan: Scan) -> None:
    market, symbols = _market(coins=("BTC", "SOL"))
    for n, symbol in enumerate(symbols):
        assert same(scan, frame_of(symbol, 1_700_000_000_000 + n, market.quote(symbol).data))


def test_every_malformed_kind_of_the_simulator_is_judged_as_the_pure_path_judges_it(scan: Scan) -> None:
    market, symbols = _market(coins=("BTC",))
    push = malformed.Push(symbol=symbols[0], seq=3, ts_ms=1_764_000_000_000,
                          data=market.quote(symbols[0]).data, other_symbol=symbols[1])
    matched = [kind for kind in malformed.KINDS if same(scan, malformed.render(kind, push))]
    assert matched == ["ts_zero", "ts_year_3000"]  # Bybit's shape; the connection's ts check refuses them


# --- the edges of Bybit's shape, one at a time -----------------------------------------------------

def edited(old: bytes, new: bytes) -> bytes:
    assert LIVE.count(old) == 1, old
    return LIVE.replace(old, new)


ID = b'"id":"' + orjson.loads(LIVE)["id"].encode() + b'"'
EDGES = [
    # (frame, whether Bybit's shape admits it)
    (edited(ID, b'"id":"' + b"x" * 200 + b'"'), True),
    (edited(ID, b'"id":"' + b"x" * 201 + b'"'), False),
    (edited(ID, b'"id":""'), True),
    (edited(ID, b'"id":"a\\"b"'), False),  # an escape: the exact decoder reads it
    (edited(ID, b'"id":"\x1f"'), False),
    (edited(b'"ts":1682247012340', b'"ts":0'), True),
    (edited(b'"ts":1682247012340', b'"ts":01682247012340'), False),
    (edited(b'"ts":1682247012340', b'"ts":9999999999999999'), True),  # 16 digits
    (edited(b'"ts":1682247012340', b'"ts":10000000000000000'), False),  # 17
    (edited(b'"ts":1682247012340', b'"ts":-1682247012340'), False),
    (edited(b'"ts":1682247012340', b'"ts":1682247012340.0'), False),
    (edited(b'"ts":1682247012340', b'"ts":"1682247012340"'), False),
    (LIVE.replace(LIVE_SYMBOL.encode(), b"B" * 60), True),
    (LIVE.replace(LIVE_SYMBOL.encode(), b"B" * 61), False),
    (LIVE.replace(LIVE_SYMBOL.encode(), b"-BTC"), False),
    (LIVE.replace(LIVE_SYMBOL.encode(), b"btc-1"), False),
    (LIVE.replace(b'"symbol":"BTC-28APR23-30000-C"', b'"symbol":"BTC-28APR23-30000-P"'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":""'), True),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"-0.5"'), True),  # optional: empty is a value
    (edited(b'"lastPrice":"', b'"lastPrice":"x'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"' + b"1" * 30 + b"." + b"2" * 30 + b'"'), True),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"' + b"1" * 31 + b'"'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"1.' + b"2" * 31 + b'"'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"1."'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":".5"'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"-"'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":"1e5"'), False),
    (edited(b'"bidPrice":"0"', b'"bidPrice":0'), False),
    (edited(b'"type":"snapshot"', b'"type":"delta"'), False),
    (LIVE + b" ", False),
    (LIVE + b"\x00", False),
    (LIVE[:-1], False),
    (b"", False),
    (b"{", False),
]


@pytest.mark.parametrize(("raw", "admitted"), EDGES, ids=range(len(EDGES)))
def test_each_edge_of_bybits_shape_is_decided_as_the_pattern_decides_it(
        scan: Scan, raw: bytes, admitted: bool) -> None:
    assert same(scan, raw) is admitted


def test_an_empty_required_value_is_refused(scan: Scan) -> None:
    for name in ("markPrice", "lastPrice"):
        doc = orjson.loads(LIVE)
        doc["data"][name] = ""
        assert not same(scan, orjson.dumps(doc)), name


def test_every_prefix_of_the_capture_is_refused_without_reading_past_its_end(scan: Scan) -> None:
    """A frame cut anywhere: each prefix is its own bytes object, so a read past the end would
    touch memory that is not the frame's (and the verdict could differ from the pattern's)."""
    for end in range(len(LIVE)):
        assert scan(LIVE[:end], RECV_MS) is None
        same(scan, LIVE[:end] + b'"}', RECV_MS)


def test_what_is_not_bytes_is_left_to_the_exact_decoder(scan: Scan) -> None:
    assert scan(LIVE.decode(), RECV_MS) is None  # a text frame handed over as str
    assert scan(bytearray(LIVE), RECV_MS) is None  # type: ignore[arg-type]  # what callers never pass
    assert scan(memoryview(LIVE), RECV_MS) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("recv_ms", [0, 1, 9, 10, 99_999, -1, -1_764_000_000_000, 2**63 - 1, -(2**63)])
def test_the_arrival_time_is_written_as_python_writes_it(scan: Scan, recv_ms: int) -> None:
    assert same(scan, LIVE, recv_ms)


def test_an_arrival_time_beyond_64_bits_is_an_error_not_a_wrong_hash(scan: Scan) -> None:
    with pytest.raises(OverflowError):
        scan(LIVE, 2**63)


# --- random frames -------------------------------------------------------------------------------

plain = st.from_regex(r"-?[0-9]{1,31}(\.[0-9]{0,31})?", fullmatch=True)
odd = st.sampled_from(["", "1e5", "1.", ".5", "-", "--1", "1-", "0x1", " 1", "\"", "\\", "é", "+1"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(plain, odd), min_size=len(TICKER_FIELDS) - 1, max_size=len(TICKER_FIELDS) - 1),
       st.integers(min_value=0, max_value=10**17))
def test_random_values_are_scanned_as_the_pure_path_scans_them(values: list[str], ts: int) -> None:
    scan = native_scan()
    assert scan is not None
    data = {"symbol": LIVE_SYMBOL, **dict(zip(TICKER_FIELDS[1:], values, strict=True))}
    same(scan, frame_of(LIVE_SYMBOL, ts, data))


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=0, max_value=len(LIVE) - 1), st.binary(min_size=0, max_size=4),
       st.integers(min_value=0, max_value=4))
def test_a_byte_edit_anywhere_in_the_capture_is_scanned_as_the_pure_path_scans_it(
        at: int, insert: bytes, cut: int) -> None:
    scan = native_scan()
    assert scan is not None
    same(scan, LIVE[:at] + insert + LIVE[at + cut:])


# --- no leak, no misuse ----------------------------------------------------------------------------

def test_scanning_keeps_no_memory(scan: Scan) -> None:
    frames = [LIVE, DOCS, LIVE[:100], edited(b'"bidPrice":"0"', b'"bidPrice":"x"')]
    for raw in frames * 100:
        scan(raw, RECV_MS)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):
            for raw in frames:
                scan(raw, RECV_MS)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after 80,000 scans"


def test_a_scanner_built_wrong_says_what_is_wrong() -> None:
    scanner_type: Any = importlib.import_module("ingest._scan").Scanner  # called wrongly on purpose
    good = {"head": b"h", "prefix": b"p", "keys": (b"k",), "headers": (b"h",), "required": (True,),
            "ts_header": b"t", "recv_header": b"r"}
    with pytest.raises(TypeError, match="keys"):
        scanner_type(**{**good, "keys": ("k",)})
    with pytest.raises(ValueError, match="same 1 to 64 fields"):
        scanner_type(**{**good, "headers": (b"a", b"b")})
    with pytest.raises(ValueError, match="same 1 to 64 fields"):
        scanner_type(**{**good, "keys": (), "headers": (), "required": ()})
    with pytest.raises(TypeError):
        scanner_type(**{**good, "head": "h"})
    bare = scanner_type.__new__(scanner_type)
    with pytest.raises(TypeError, match="not initialised"):
        bare.scan(LIVE, RECV_MS)
    built = scanner_type(**good)
    with pytest.raises(TypeError, match="already initialised"):
        built.__init__(**good)
    with pytest.raises(TypeError, match="2 arguments"):
        built.scan(LIVE)


# --- the connection runs it, and INGEST_NATIVE_SCAN=0 turns it off -----------------------------------

def test_both_paths_of_the_connection_store_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes | str] = []
    real = native_scan

    def counting() -> Scan | None:
        inner = real()
        assert inner is not None

        def scan(raw: bytes | str, recv_ms: int) -> tuple[str, int, bytes] | None:
            calls.append(raw)
            return inner(raw, recv_ms)
        return scan

    monkeypatch.setattr("ingest.connection.native_scan", counting)
    raw = restamped(LIVE)
    now = time.time()
    commands = []
    for native in (True, False):
        on_message, counters, coalescer = unconnected([LIVE_SYMBOL], native=native, wall=lambda: now)
        on_message(raw)  # the same arrival time for both
        assert counters.messages == 1
        assert counters.exact_tickers == 0
        commands.append(coalescer.latest[LIVE_SYMBOL].command)
    assert len(calls) == 1  # the native path ran once, the INGEST_NATIVE_SCAN=0 one never
    assert commands[0] == commands[1]


def test_the_c_source_spells_no_field_name() -> None:
    """The field names, the key prefix and the RESP pieces come from Python (one place each)."""
    source = (Path(__file__).parents[1] / "ingest" / "_scan.c").read_text(encoding="utf-8")
    for name in TICKER_FIELDS[1:]:
        assert f'\\"{name}\\"' not in source, name
    assert "option:" not in source.replace("the option key's prefix: option:", "")
