"""The ingest's in-memory state: coalescer, lag histogram, memory pressure, stats, RESP encoding."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import errors, keys
from ingest import resp
from ingest.coalescer import Coalescer
from ingest.frames import TICKER_FIELDS, Ticker
from ingest.lag import LagHistogram
from ingest.pressure import MemoryPressure
from ingest.sink import TickerSink
from ingest.stats import ConnectionState, Counters, coin_fields, global_fields, heartbeat_fields

A, B = "BTC-27DEC26-100000-C", "ETH-27DEC26-4000-P"


def cmd(mark: str) -> bytes:
    """A stand-in for a rendered HSET: the coalescer keeps whatever bytes it is given."""
    return f"markPrice={mark}".encode()


# --- coalescer ---------------------------------------------------------------------------------

def test_the_newest_ticker_per_symbol_wins_and_is_written_once() -> None:
    c = Coalescer()
    for i in range(100):
        c.put(A, "BTC", 1000 + i, 2000 + i, cmd(str(i)))
    c.put(B, "ETH", 5, 6, cmd("x"))
    batch = dict(c.take())
    assert set(batch) == {A, B}
    assert batch[A].command == cmd("99")
    assert batch[A].ts == 1099
    assert c.take() == []


def test_an_older_frame_never_replaces_a_newer_one() -> None:
    c = Coalescer()
    c.put(A, "BTC", 2000, 1, cmd("new"))
    assert c.put(A, "BTC", 1999, 2, cmd("old")) is False
    assert c.latest[A].command == cmd("new")
    assert c.stale_dropped == 1


def test_memory_is_one_entry_per_symbol_however_long_redis_is_away() -> None:
    c = Coalescer()
    for i in range(10_000):
        c.put(A if i % 2 else B, "BTC", i, i, cmd(str(i)))
    assert len(c) == 2
    assert c.pending == 2


def test_a_failed_write_is_restored_without_clobbering_newer_entries() -> None:
    c = Coalescer()
    c.put(A, "BTC", 1, 1, cmd("1"))
    batch = c.take()
    c.put(A, "BTC", 2, 2, cmd("2"))
    c.restore(batch)
    again = dict(c.take())
    assert again[A].command == cmd("2")


def test_after_a_redis_restart_everything_is_dirty_again() -> None:
    c = Coalescer()
    c.put(A, "BTC", 1, 1, b"")
    c.put(B, "ETH", 1, 1, b"")
    c.take()
    c.mark_all_dirty()
    assert {s for s, _ in c.take()} == {A, B}


def test_removed_symbols_are_forgotten_and_never_restored() -> None:
    c = Coalescer()
    c.put(A, "BTC", 1, 1, b"")
    batch = c.take()
    c.remove([A])
    c.restore(batch)
    assert c.take() == []
    assert len(c) == 0


# --- lag histogram -----------------------------------------------------------------------------

def test_lag_buckets_are_cumulative_with_le_semantics() -> None:
    h = LagHistogram()
    for seconds in (0.005, 0.006, 0.3, 1.0, 100.0):
        h.observe(seconds)
    fields = h.fields()
    assert fields[keys.lag_bucket_field(0.005)] == "1"
    assert fields[keys.lag_bucket_field(0.01)] == "2"
    assert fields[keys.lag_bucket_field(0.25)] == "2"
    assert fields[keys.lag_bucket_field(0.5)] == "3"
    assert fields[keys.lag_bucket_field(1.0)] == "4"
    assert fields[keys.lag_bucket_field(60.0)] == "4"
    assert fields[keys.LAG_INF_FIELD] == fields[keys.LAG_COUNT_FIELD] == "5"
    assert float(fields[keys.LAG_SUM_FIELD]) == pytest.approx(101.311)


def test_negative_lag_from_clock_skew_counts_as_zero() -> None:
    h = LagHistogram()
    h.observe(-3.0)
    assert h.sum == 0
    assert h.fields()[keys.lag_bucket_field(0.005)] == "1"


@given(st.lists(st.floats(min_value=-10, max_value=1e6, allow_nan=False), max_size=200))
def test_lag_histogram_is_monotonic_and_consistent(values: list[float]) -> None:
    h = LagHistogram()
    for v in values:
        h.observe(v)
    counts = [n for _, n in h.cumulative()]
    assert counts == sorted(counts)
    assert counts[-1] <= h.count == len(values)
    assert len(h.fields()) == len(keys.LAG_BUCKETS) + 3


# --- memory pressure ---------------------------------------------------------------------------

def pressure() -> MemoryPressure:
    return MemoryPressure(threshold_bytes=400, ratio=0.7, normal_ttl=86400, pressure_ttl=21600)


def test_pressure_switches_to_the_short_ttl_above_the_fixed_threshold_without_maxmemory() -> None:
    p = pressure()
    assert p.update(400, 0) is False
    assert p.ttl == 86400
    assert p.update(401, 0) is True
    assert p.ttl == 21600
    assert p.active


def test_pressure_uses_the_ratio_of_maxmemory_when_set() -> None:
    p = pressure()
    assert p.update(699, 1000) is False
    assert p.update(701, 1000) is True


def test_pressure_ends_only_below_the_hysteresis_band() -> None:
    p = pressure()
    p.update(500, 0)
    assert p.update(361, 0) is False
    assert p.ttl == 21600
    assert p.update(359, 0) is True
    assert p.ttl == 86400


# --- stats ---------------------------------------------------------------------------------------

def test_every_global_stats_field_of_the_contract_is_written_including_zero_errors() -> None:
    c = Counters(coins=("BTC", "ETH"))
    c.written("BTC", 1700000000.0)
    c.error(errors.BAD_JSON, 3)
    c.error("something new")
    doc = global_fields(c, ConnectionState(desired=3, connected=2), ttl=86400, pressure=False, pending=7)
    for name in (keys.F_LAST_UPDATE, keys.F_MESSAGES, keys.F_RECONNECTS, keys.F_CONNECT_FAILURES,
                 keys.F_WS_CONNECTIONS, keys.F_WS_CONNECTED, keys.F_CONSECUTIVE_FAILURES, keys.F_CIRCUIT_OPEN,
                 keys.F_SUBSCRIPTIONS, keys.F_REST_REQUESTS, keys.F_REST_RATE_LIMITED, keys.F_TTL_SECONDS,
                 keys.F_MEMORY_PRESSURE, keys.F_REDIS_WRITES, keys.F_REDIS_FLUSHES, keys.F_PENDING,
                 keys.F_STARTED_AT, keys.messages_field("BTC"), keys.messages_field("ETH")):
        assert name in doc, name
    assert doc[keys.error_field(errors.BAD_JSON)] == "3"
    assert doc[keys.error_field(errors.OTHER)] == "1"
    assert all(keys.error_field(t) in doc for t in errors.ERROR_TYPES)
    assert doc[keys.F_WS_CONNECTED] == "2"
    assert doc[keys.F_PENDING] == "7"
    assert all(isinstance(v, str) for v in doc.values())


def test_last_update_is_integer_seconds_globally_and_float_per_coin() -> None:
    c = Counters(coins=("BTC", "ETH"))
    c.written("BTC", 1700000000.75)
    c.written("ETH", 1700000001.5)
    c.written("BTC", 1600000000.0)  # older: ignored
    doc = global_fields(c, ConnectionState(), ttl=1, pressure=True, pending=0)
    assert doc[keys.F_LAST_UPDATE] == "1700000001"
    assert doc[keys.F_MEMORY_PRESSURE] == "1"
    assert float(coin_fields(c, "BTC", 5)[keys.F_COIN_LAST_UPDATE]) == 1700000000.75
    assert coin_fields(c, "BTC", 5)[keys.F_COIN_TRACKED] == "5"


def test_a_restarted_ingest_leaves_the_last_update_alone_until_its_own_first_write() -> None:
    # The previous process's time stays in Redis (HSET touches only the fields it names):
    # writing 0 would make fresh data look as if no ticker had ever arrived.
    c = Counters(coins=("BTC", "ETH"))
    assert keys.F_LAST_UPDATE not in global_fields(c, ConnectionState(), ttl=1, pressure=False, pending=0)
    assert keys.F_COIN_LAST_UPDATE not in coin_fields(c, "BTC", 0)
    c.written("BTC", 1700000000.75)
    assert global_fields(c, ConnectionState(), ttl=1, pressure=False, pending=0)[keys.F_LAST_UPDATE] \
        == "1700000000"
    assert keys.F_COIN_LAST_UPDATE in coin_fields(c, "BTC", 0)
    assert keys.F_COIN_LAST_UPDATE not in coin_fields(c, "ETH", 0)


def test_the_heartbeat_has_the_documented_fields() -> None:
    doc = heartbeat_fields(now=1.5, pid=42, rss_bytes=1024, cpu_seconds=0.25, started_at=1.0)
    assert set(doc) == set(keys.HEARTBEAT_FIELDS)


def test_the_sink_counts_observes_lag_renders_and_coalesces() -> None:
    c = Counters(coins=("BTC",))
    co = Coalescer()
    lag = LagHistogram()
    sink = TickerSink(coalescer=co, counters=c, lag=lag)
    sink.accept(Ticker(A, 1_000, {"symbol": A}), "BTC", 1_250)
    sink.accept(Ticker(A, 999, {"symbol": A, "markPrice": "old"}), "BTC", 1_300)  # older: counted, not kept
    assert c.messages == 2
    assert c.messages_by_coin["BTC"] == 2
    assert co.stale_dropped == 1
    blanks = dict.fromkeys(TICKER_FIELDS, "")
    assert co.latest[A].command == resp.hset_ticker(keys.option_key(A), {**blanks, "symbol": A}, 1_000, 1_250)
    assert lag.count == 2
    assert lag.sum == pytest.approx(0.25 + 0.301)
    assert co.latest[A].recv_ms == 1_250


def test_a_ticker_lacking_fields_blanks_them_so_no_older_value_survives_in_the_hash() -> None:
    """Found by the fuzz drill: HSET overwrites only the fields it names."""
    co = Coalescer()
    sink = TickerSink(coalescer=co, counters=Counters(coins=("BTC",)), lag=LagHistogram())
    full = {name: "1" for name in TICKER_FIELDS} | {"symbol": A}
    sink.accept(Ticker(A, 1_000, full), "BTC", 1_001)
    assert co.latest[A].command == resp.hset_ticker(keys.option_key(A), full, 1_000, 1_001)
    sink.accept(Ticker(A, 2_000, {"symbol": A, "markPrice": "2", "lastPrice": "3"}), "BTC", 2_001)
    cmd = parse(co.latest[A].command)[0]
    fields = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert fields == {**{n.encode(): b"" for n in TICKER_FIELDS}, b"symbol": A.encode(), b"markPrice": b"2",
                      b"lastPrice": b"3", keys.F_OPTION_TS.encode(): b"2000",
                      keys.F_OPTION_RECV_TS.encode(): b"2001"}


# --- RESP encoding -----------------------------------------------------------------------------

def parse(raw: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(raw)
    out = []
    while (item := reader.gets()) is not False:
        out.append(item)
    return out


@pytest.mark.parametrize("extra", ["plain", "é", "日本"])
def test_the_option_hset_is_a_well_formed_resp_array_with_both_timestamps(extra: str) -> None:
    data = {"symbol": A, "markPrice": "7.5", "otherField": extra}
    cmd = parse(resp.hset_ticker(keys.option_key(A), data, 123, 456))
    assert cmd == [[b"HSET", keys.option_key(A).encode(), b"symbol", A.encode(), b"markPrice", b"7.5",
                    b"otherField", extra.encode(), keys.F_OPTION_TS.encode(), b"123",
                    keys.F_OPTION_RECV_TS.encode(), b"456"]]


def test_expire_sadd_and_generic_commands_encode() -> None:
    raw = resp.expire("k", 60) + resp.sadd("s", [A, B]) + resp.command("DEL", b"x", 5)
    assert parse(raw) == [[b"EXPIRE", b"k", b"60"], [b"SADD", b"s", A.encode(), B.encode()],
                          [b"DEL", b"x", b"5"]]
