"""The fuzz drill: one command that finds nothing wrong with the product, and checks that can fail.

The short run drives all three targets (frames in-process, frames over a WebSocket into
``python -m ingest`` + redis-server, hostile requests to ``python -m api`` under ``MONITOR``).
The other tests break one thing on purpose — a decoder that raises, one that invents an error
type, a stored hash that differs, an API that writes — and check the drill says so.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bench.drill_fuzz import run, universe
from bench.fuzz.api_inputs import ApiResult, MonitorLog
from bench.fuzz.cases import Case, cases
from bench.fuzz.inprocess import InProcessTarget
from bench.fuzz.runner import drive
from bench.fuzz.table import failures
from bench.fuzz.wire import Model, _corrupted
from common import errors, keys
from ingest import frames
from tests.servers import RedisServer, python_env, repo_root

pytestmark = pytest.mark.slow

#: A live push of Bybit's option ticker (see tests/data/bybit/README.md).
LIVE_CAPTURE = Path(__file__).parent / "data" / "bybit" / "ws_ticker_option_empty_book_roq.json"


def test_a_short_run_of_every_target_passes_with_inputs_counted(tmp_path: Path) -> None:
    findings = run(examples=250, seconds=30, seed=7, targets=("frames", "wire", "api"), workdir=tmp_path)
    assert failures(findings) == []
    assert findings.frames is not None
    assert findings.wire is not None
    assert findings.api is not None
    assert findings.frames.inputs == 250
    assert findings.frames.outcomes["accepted"] > 0
    assert findings.frames.outcomes["rejected"] > 0
    assert findings.frames.canonical > 0  # the connection's fast path stored some of them
    assert findings.wire.ingest_running
    assert findings.wire.reconnected  # the oversize frame closed the socket; the ingest came back
    assert findings.wire.corrupted == []
    assert findings.wire.errors_counted["frame_too_large"] == 1
    assert findings.wire.messages_counted == findings.wire.accepted_expected > 0
    assert all(status < 500 for status in findings.api.statuses)
    assert findings.api.commands_seen > 0  # MONITOR really watched the API's reads


def test_the_command_prints_the_table_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.drill_fuzz", "--examples", "60", "--seconds", "20",
         "--targets", "frames,api"],
        capture_output=True, text=True, timeout=120, env=python_env(), cwd=str(repo_root()), check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "| frames in-process" in done.stdout
    assert "| API paths and queries" in done.stdout
    assert "Verdict: **pass**" in done.stdout


def _target(*, native: bool = True) -> InProcessTarget:
    u = universe()
    return InProcessTarget(u, coin_of={s: s.split("-", 1)[0] for s in u.owned}, native=native)


def test_an_exception_escaping_the_decoder_is_counted_as_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    real = frames.decode

    def fragile(raw: bytes | str, *, owned: frozenset[str], now_ms: int) -> frames.Frame:
        if isinstance(raw, bytes) and raw[:1] != b"{":
            raise ValueError("not an object")
        return real(raw, owned=owned, now_ms=now_ms)

    monkeypatch.setattr(frames, "decode", fragile)
    target = _target()
    drive(cases(target.universe), target, examples=200, seconds=30, seed=3)
    assert target.tally.crashes["ValueError"] > 0
    assert any("exceptions escaped" in line for line in failures_of(target))


def test_a_rejection_outside_the_fixed_error_types_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = frames.decode

    def inventive(raw: bytes | str, *, owned: frozenset[str], now_ms: int) -> frames.Frame:
        frame = real(raw, owned=owned, now_ms=now_ms)
        if isinstance(frame, frames.Rejected) and frame.error == "bad_json":
            return frames.Rejected("json_is_bad", frame.detail)
        return frame

    monkeypatch.setattr(frames, "decode", inventive)
    target = _target()
    drive(cases(target.universe), target, examples=200, seconds=30, seed=4)
    assert target.tally.unlisted["json_is_bad"] > 0
    assert target.tally.mismatches  # and the outcome is not the one the rules predict


def test_a_connection_that_stores_what_decode_rejects_is_reported() -> None:
    """The target runs the connection's own handler: widen what that connection owns (as a
    subscription bug would) and its tickers of unsubscribed symbols are caught, on both paths."""
    u = universe()
    target = InProcessTarget(u, coin_of={s: s.split("-", 1)[0] for s in u.owned + u.unowned})
    target.connection.subs.add(u.unowned)
    capture = orjson.loads(LIVE_CAPTURE.read_bytes())
    for symbol in u.unowned:
        doc = {**capture, "topic": f"tickers.{symbol}", "ts": int(time.time() * 1000) - 50,
               "data": {**capture["data"], "symbol": symbol}}
        raw = orjson.dumps(doc)  # Bybit's own shape: the fast path
        spaced = raw.replace(b'{"id"', b'{ "id"', 1)  # the same push, not compact: decode's path
        for frame in (raw, spaced):
            target(Case("symbol_unsubscribed", frame, errors=frozenset({errors.UNSUBSCRIBED_SYMBOL})))
    assert target.tally.errors[errors.UNSUBSCRIBED_SYMBOL] == 2 * len(u.unowned)  # decode's verdict
    assert target.tally.connection_mismatches == {
        "fast path accepted a rejected frame": len(u.unowned),
        "accepted a rejected frame": len(u.unowned),
        "counted another error": 2 * len(u.unowned)}
    assert any("did other than decode decided" in line for line in failures_of(target))


@pytest.mark.parametrize("native", [True, False], ids=["C scanner", "pure path"])
def test_a_fast_path_that_stores_other_bytes_is_reported(monkeypatch: pytest.MonkeyPatch,
                                                        native: bool) -> None:
    from ingest.canonical import Scan, native_scan
    from ingest.resp import hset_canonical as real

    def lossy(key: bytes, data: bytes, ts: int, recv_ms: int) -> bytes:
        return real(key, data, ts, recv_ms + 1)  # a recv_ts off by a millisecond

    def lossy_scanner() -> Scan:
        scan = native_scan()
        assert scan is not None
        return lambda raw, recv_ms: scan(raw, recv_ms + 1)

    if native:  # what the connection's fast path renders with
        monkeypatch.setattr("ingest.connection.native_scan", lossy_scanner)
    else:
        monkeypatch.setattr("ingest.coalescer.hset_canonical", lossy)
    target = _target(native=native)
    drive(cases(target.universe), target, examples=200, seconds=30, seed=6)
    assert target.tally.canonical_mismatches == target.tally.canonical > 0
    assert target.tally.resp_mismatches == 0 or target.tally.resp_mismatches == target.tally.canonical
    assert any("fast path stored" in line for line in failures_of(target))


def failures_of(target: InProcessTarget) -> list[str]:
    from bench.fuzz.table import Findings

    return failures(Findings(frames=target.tally, wire=None, api=None))


def test_a_stored_hash_that_differs_from_the_last_accepted_push_is_corruption(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        symbol = universe().owned[0]
        data = {"symbol": symbol, "markPrice": "7.5", "lastPrice": "7"}
        ts = int(time.time() * 1000)
        model = Model()
        model.feed(Case("valid", orjson.dumps({}), symbol=symbol, ts=ts, stored=data))
        blank = dict.fromkeys(frames.TICKER_FIELDS, "")
        good = {**blank, **data, keys.F_OPTION_TS: str(ts), keys.F_OPTION_RECV_TS: str(ts + 3)}
        r = server.client()
        r.hset(keys.option_key(symbol), mapping=good)

        async def check() -> list[str]:
            import redis.asyncio as aredis

            client = aredis.Redis.from_url(server.url, decode_responses=True)
            try:
                return await _corrupted(client, model)
            finally:
                await client.aclose()

        assert asyncio.run(check()) == []
        r.hset(keys.option_key(symbol), "bidPrice", "5")  # a value the last push did not carry
        found = asyncio.run(check())
        assert len(found) == 1
        assert symbol in found[0]
    finally:
        server.stop()


def test_monitor_flags_writes_patterns_and_keys_outside_the_layout() -> None:
    log = MonitorLog("127.0.0.1", 0)
    log.commands = [["SMEMBERS", "options:BTC"], ["HGETALL", "option:BTC-27DEC26-100000-C"],
                    ["HSET", "option:BTC-27DEC26-100000-C", "x", "1"], ["KEYS", "option:*"],
                    ["HGETALL", "option:*"], ["SMEMBERS", "options:XRP"]]
    result = ApiResult()
    log.check(result)
    assert result.commands_seen == 6
    assert result.writes == {"HSET": 1}
    assert result.patterns == {"KEYS": 1}
    assert result.foreign_keys == ["HGETALL 'option:*'", "SMEMBERS 'options:XRP'"]


def test_a_c_scanner_that_judges_otherwise_than_the_pure_path_is_reported() -> None:
    target = _target()
    assert target.scan is not None, "scripts/setup.sh builds the C scanner"
    target.scan = lambda raw, recv_ms: None  # refuses Bybit's own frames too
    drive(cases(target.universe), target, examples=200, seconds=30, seed=6)
    assert 0 < target.tally.scanner_mismatches < target.tally.scanner_checked == target.tally.inputs
    assert any("otherwise than the pure fast path" in line for line in failures_of(target))


def test_the_drill_runs_the_c_scanner_and_checks_it_on_every_input() -> None:
    target = _target()
    drive(cases(target.universe), target, examples=100, seconds=30, seed=6)
    assert target.tally.scanner == "native"
    assert target.tally.scanner_checked == target.tally.inputs > 0
    assert target.tally.scanner_mismatches == 0
    assert failures_of(target) == []
