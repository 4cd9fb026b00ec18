"""The simulator's spread pacing and ``python -m bench.bench_maxrate`` (issue 14).

The pacing tests talk to a real simulator over its WebSocket; the bench test runs the real bench in
``--quick`` mode and checks the report's shape and sanity, never its timings.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from bench.bench_maxrate import Row, main, report
from tests.fixtures_simulator import SimulatorHandle, ticker_problem
from tests.servers import python_env, repo_root

Factory = Callable[..., SimulatorHandle]
INTERVAL = 0.5
PER_COIN = 10


async def pushes(sim: SimulatorHandle, cycles: float) -> list[tuple[str, int, bytes]]:
    """(symbol, ts, raw frame) of every ticker received over ``cycles`` push intervals, after the first."""
    symbols = [s for listed in sim.instruments().values() for s in listed]
    out: list[tuple[str, int, bytes]] = []
    async with connect(sim.ws_url, max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [f"tickers.{s}" for s in symbols]}))
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + INTERVAL * (cycles + 1)
        while (left := end - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    raw = await ws.recv(decode=False)
            except TimeoutError:
                break
            doc = json.loads(raw)
            if "topic" in doc and loop.time() - start > INTERVAL:
                out.append((doc["data"]["symbol"], doc["ts"], raw))
    return out


def test_spread_pacing_pushes_each_symbol_once_per_interval_at_its_own_time(
        simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=PER_COIN, push_interval=INTERVAL,
                            extra_args=("--pacing", "spread"))
    assert sim.state()["config"]["pacing"] == "spread"
    frames = asyncio.run(pushes(sim, cycles=4))
    symbols = {s for listed in sim.instruments().values() for s in listed}
    assert {s for s, _, _ in frames} == symbols
    # Bybit's ticker shape, unchanged by the pacing.
    assert [p for _, _, raw in frames if (p := ticker_problem(raw)) is not None] == []
    by_symbol: dict[str, list[int]] = defaultdict(list)
    for symbol, ts, _ in frames:
        by_symbol[symbol].append(ts)
    # Each symbol about once per interval: 4 cycles give 3 to 5 frames (window edges), never a burst.
    assert all(3 <= len(ts) <= 5 for ts in by_symbol.values()), {s: len(t) for s, t in by_symbol.items()}
    # Spread: the symbols of one cycle carry many different send times (a whole cycle shares one).
    first_cycle = sorted(ts[0] for ts in by_symbol.values())
    assert len(set(first_cycle)) >= len(symbols) // 2


def test_cycle_pacing_is_still_the_default_one_time_per_cycle(simulator_factory: Factory) -> None:
    sim = simulator_factory(instruments_per_coin=PER_COIN, push_interval=INTERVAL)
    assert sim.state()["config"]["pacing"] == "cycle"
    frames = asyncio.run(pushes(sim, cycles=3))
    times = {ts for _, ts, _ in frames}
    assert len(times) <= 4  # one ts per cycle (3 cycles and a window edge)


def test_quick_bench_reports_every_consumer_ratio_and_verdict(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    argv = [sys.executable, "-m", "bench.bench_maxrate", "--quick", "--json", str(out)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=240, cwd=repo_root(),
                          env=python_env())
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    assert "| feed | consumer | frames/s | CPU | µs/frame | RSS MiB |" in report
    assert "| feed | ingest/floor (µs/frame) | ingest/floor-cb (µs/frame) | naive/ingest" in report
    rows = json.loads(out.read_text())
    seen = {(r["feed"], r["consumer"]) for r in rows}
    assert seen == {("10/s", "ingest"), ("10/s", "naive"), ("10/s", "floor"), ("10/s", "floor-cb"),
                    ("burst", "ingest"), ("burst", "floor"), ("burst", "floor-cb")}
    for r in rows:
        assert r["frames_s"] > 0, r
        assert 0 < r["cpu"] < 2.5, r  # a share of one core (two at most on this machine, plus noise)
        assert math.isfinite(r["us_per_frame"]), r
        assert r["us_per_frame"] > 0, r
        assert 10 * 2**20 < r["rss"] < 1024 * 2**20, r
        assert r["stall_ms"] >= 0, r
        assert r["redis_cpu"] >= 0, r
        if r["consumer"] in ("ingest", "naive") and r["feed"] != "burst":
            assert r["redis_cpu"] > 0, r  # both write every symbol: Redis works
        if r["feed"] != "burst":
            assert 0 <= r["lag_p50"] <= r["lag_p99"], r
        if r["consumer"] == "ingest" and r["feed"] != "burst":
            # What a reader of Redis gets: every stored ticker is at least a write's lag old.
            assert r["age_p99"] >= r["lag_p50"] > 0, r
        elif r["consumer"] != "ingest":
            assert math.isnan(r["age_p99"]), r  # only the ingests are read back from Redis
    ingest = next(r for r in rows if r["feed"] == "10/s" and r["consumer"] == "ingest")
    assert ingest["frames_s"] > 1000  # 300 symbols x 10/s = 3,000 pushed: the ingest kept most of them
    ratio_line = next(line for line in report.splitlines() if line.startswith("| 10/s |") and "x |" in line)
    assert ratio_line.count("x") >= 2
    assert "yes (" in ratio_line or "NO (" in ratio_line


def _row(consumer: str, cpu: float, n: int) -> Row:
    return Row("10/s", consumer, 20_000.0, cpu, 50 * 2**20, 80.0, 150.0, 30.0, round=n)


def test_rounds_report_median_figures_and_the_range_of_the_rounds_own_ratios() -> None:
    """Each round's ingest is divided by the same round's floor (measured minutes apart, not a run
    apart): the ratio is the median of those, 2.00x here, not the ratio of the medians (1.80x)."""
    rows = [_row("ingest", 0.40, 0), _row("floor", 0.20, 0),  # 2.00x
            _row("floor", 0.10, 1), _row("ingest", 0.30, 1),  # 3.00x (a quiet window for the floor)
            _row("ingest", 0.36, 2), _row("floor", 0.24, 2)]  # 1.50x
    text = report(rows, symbols=2000, seconds=10, burst_symbols=2000)
    assert "3 rounds" in text
    assert "| 10/s | ingest | 20,000 | 36.0% | 18.0 |" in text  # the median CPU, once
    assert "| 10/s | floor | 20,000 | 20.0% | 10.0 |" in text
    assert sum(line.startswith("| 10/s | ingest |") for line in text.splitlines()) == 1
    assert "| 10/s | 2.00x (1.50-3.00) |" in text
    assert "NO (36.0%)" in text


def test_one_round_reports_each_ratio_without_a_range() -> None:
    text = report([_row("ingest", 0.40, 0), _row("floor", 0.20, 0)], symbols=2000, seconds=10,
                  burst_symbols=2000)
    assert "rounds" not in text
    assert "| 10/s | 2.00x |" in text


def test_a_longer_flush_interval_is_reported_beside_the_default_with_writes_lag_and_age() -> None:
    def ingest(consumer: str, cpu: float, writes: float, lag99: float, age99: float) -> Row:
        return Row("10/s", consumer, 20_000.0, cpu, 50 * 2**20, 70.0, lag99, 30.0, writes_s=writes,
                   age_p99=age99)

    rows = [ingest("ingest", 0.30, 15_400.0, 124.0, 222.0),
            ingest("ingest@0.25s", 0.24, 7_200.0, 139.0, 368.0), _row("floor", 0.17, 0)]
    text = report(rows, symbols=2000, seconds=10, burst_symbols=2000)
    assert "| 10/s | ingest@0.25s | 20,000 | 24.0% | 12.0 | 50.0 | 70.0 | 139.0 | 368.0 |" in text
    assert "| 10/s | floor | 20,000 | 17.0% | 8.5 | 50.0 | 80.0 | 150.0 | - |" in text  # no age: not in Redis
    assert ("ingest@0.25s (INGEST_FLUSH_INTERVAL=0.25) against ingest (the default): 10/s: µs/frame 0.80x,"
            " hashes written per frame 0.36 vs 0.77, lag p99 139 vs 124 ms, age p99 368 vs 222 ms") in text


def test_flush_intervals_outside_the_ingests_range_are_refused_before_anything_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0.5", "0", "fast"):
        with pytest.raises(SystemExit) as exit_:
            main(["--flush-intervals", bad])
        assert exit_.value.code == 2
        assert "--flush-intervals" in capsys.readouterr().err


def test_the_bench_module_starts_under_the_release_tree_it_measures_as_release(tmp_path: Path) -> None:
    """The release's ingest runs as ``python -m bench.bench_maxrate watched-ingest`` with the
    release's ``ingest`` and ``common`` first on the path: the module must import there, or every
    ``release`` row fails (a module-level import of a name newer than the release did exactly that)."""
    from bench.bench_maxrate import BASELINE_REV, ingest_env, release_tree

    known = subprocess.run(["git", "cat-file", "-e", f"{BASELINE_REV}^{{commit}}"], cwd=repo_root(),
                           capture_output=True, check=False)
    if known.returncode != 0:
        pytest.skip(f"this clone lacks the release commit {BASELINE_REV} (shallow clone)")
    tree = release_tree(tmp_path, BASELINE_REV, repo_root())
    env = ingest_env("redis://127.0.0.1:1/0", ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1",
                     coins=["BTC"], release=tree)
    done = subprocess.run([sys.executable, "-m", "bench.bench_maxrate", "--help"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "watched-ingest" in done.stdout
