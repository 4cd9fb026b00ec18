"""The ingest's cost at Bybit's maximum push rate, against a floor and the naive baseline (issue 14).

    .venv/bin/python -m bench.bench_maxrate [--quick] [--rates 1,5,10] [--seconds S] [--rounds N]
                                             [--baseline-rev REV | --no-release]
                                             [--flush-intervals 0.25]

Bybit pushes every option ticker at most every 100 ms; a busy market approaches 2,000 symbols x
10 = 20,000 frames/s, delivered as many small socket reads, not one burst per second. The
simulator's ``--pacing spread`` produces exactly that: each symbol once per ``--push-interval``,
the symbols spread evenly over the interval, one frame per socket write.

For each rate (pushes per symbol per second) one simulator runs, and the consumers take turns
against it, each for the same window (one at a time: on a 2-core machine, consumers running side
by side would mostly measure each other):

- ``ingest``: ``python -m ingest`` with a real Redis (started through this module's
  ``watched-ingest`` mode, which only adds an event-loop stall watcher to the same entry point);
- ``naive``: the baseline of :mod:`bench.bench_ingest`, the seed's shape (``json.loads`` per
  message, one awaited ``HSET`` per message), on as many connections as the ingest opens;
- ``floor``: a bare receive loop on the ingest's WebSocket library that only counts frames
  (it reads the ``ts`` of one frame in 100 for its lag): the issue's floor, what receiving costs
  through the library's own API;
- ``release`` (unless ``--no-release``): the ingest as of ``--baseline-rev``, extracted with
  ``git archive``, for before/after figures from the same run;
- ``floor-cb``: the floor of the ingest's own read path (frames counted by
  :class:`ingest.wsread.TickerConnection`: plain data frames read by its own loop in
  ``data_received``, every other frame by websockets; no ``recv()``);
- ``ingest-pure`` (when the C scanner ``ingest._scan`` is built; not in ``--quick``): this
  checkout's ingest with ``INGEST_NATIVE_SCAN=0``, its pure-Python fast path, so the scanner's
  gain is a ratio of one run;
- ``ingest-unheld`` (not in ``--quick``): this checkout's ingest with ``INGEST_READ_HOLD=0``,
  reading every socket as bytes arrive, so what holding reads saves is a ratio of one run too;
- ``ingest-uvloop`` (when ``uvloop`` is installed, unless ``--no-uvloop``): the ingest on uvloop's
  event loop, to see whether it would help.
- ``floor-picows`` (when ``picows`` is installed; not in ``--quick``): the floor on picows' C frame
  parser, to see what that read path would buy.
- ``ingest@<s>s`` (``--flush-intervals s,...``): the ingest with ``INGEST_FLUSH_INTERVAL=s``, what
  an operator trades by flushing less often (fewer writes, older tickers in Redis between flushes).

Then the burst: :mod:`bench.bench_ingest`'s firehose (pre-rendered frames as fast as TCP takes
them) against the ingest, the release ingest and the floor.

Per consumer: frames/s received, CPU share of one core and CPU µs per frame (/proc or
``process_time`` over the window), RSS at the end, exchange-to-Redis lag p50/p99 (exchange
``ts`` to the moment the ticker is readable in Redis: for the ingest a sampler polls 200 symbols'
``ts`` every 10 ms, so add up to ~10 ms of sampling; the naive consumer measures after its
``HSET`` returns; the floor's is exchange to receipt), for the ingests the age p99 of what Redis
holds (now - ``ts`` of the sampled hashes, every 50 ms), and the longest event-loop stall (a
10 ms timer's overshoot), and the Redis server's CPU over the window. Absolute figures on a
shared machine drift 2-3x between runs; the verdicts are ratios within one run. With
``--rounds N`` every consumer is measured N times per feed (every other round in reverse order):
the table gives the median of each figure, the ratios the median of the rounds' ratios and their
range, so one noisy window cannot decide a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import redis
import redis.asyncio as aredis
from websockets.asyncio.client import ClientConnection, connect

from bench.bench_ingest import SYMBOLS, at_stats_write, stat
from bench.measure import cpu_seconds, pct, rss_bytes
from common import keys
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    RedisServer,
    free_port,
    http_ok,
    python_env,
    repo_root,
    wait_until,
)

RATES: Final = (1, 5, 10)
#: The release measured as "today's ingest": the last commit before issue 14's changes.
BASELINE_REV: Final = "97dfaa3"
#: The seed's target for one container: under 20 % of a core.
CPU_TARGET: Final = 0.20
STALL_PERIOD: Final = 0.01
LAG_SAMPLE: Final = 200
LAG_POLL: Final = 0.01
AGE_EVERY: Final = 5  # the stored tickers' age is sampled every 50 ms (lag: every 10 ms)
FLOOR_LAG_EVERY: Final = 100
MAX_TOPICS, MAX_CHARS = 2000, 21000  # Bybit's per-connection limits (the ingest's defaults)
CONSUMERS: Final = ("ingest", "ingest-pure", "ingest-unheld", "ingest-uvloop", "release", "naive", "floor",
                    "floor-cb", "floor-picows")


# --- the event-loop stall watcher (runs inside each consumer) ---------------------------------------

async def watch_stalls(path: Path, period: float = STALL_PERIOD) -> None:
    """Append ``<epoch second> <longest stall ms>`` to ``path`` once a second.

    A stall is how late a ``period`` timer fires: the time some callback held the loop.
    """
    loop = asyncio.get_running_loop()
    worst, second = 0.0, int(time.time())
    with path.open("a", buffering=1) as out:
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            worst = max(worst, loop.time() - before - period)
            now = int(time.time())
            if now != second:
                out.write(f"{second} {worst * 1000:.1f}\n")
                worst, second = 0.0, now


def max_stall_ms(path: Path, start: float, end: float) -> float:
    """The longest stall the watcher wrote for the whole seconds within [start, end]."""
    worst = 0.0
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            second, ms = line.split()
            if start <= int(second) and int(second) + 1 <= end:
                worst = max(worst, float(ms))
    return worst


def watched_ingest(stall_file: Path, *, uvloop: bool = False) -> int:
    """``python -m ingest`` (the same entry point, settings from the environment) plus the watcher.

    ``uvloop``: the same on uvloop's event loop (``uvloop`` installed), to see what it would buy.
    """
    import ingest.app
    from ingest.__main__ import main as ingest_main

    if uvloop:
        # Not a dependency of the project: only measured where someone installed it.
        importlib.import_module("uvloop").install()

    real_main = ingest.app.main

    async def main(*args: Any, **kwargs: Any) -> None:
        watcher = asyncio.create_task(watch_stalls(stall_file))
        try:
            await real_main(*args, **kwargs)
        finally:
            watcher.cancel()

    ingest.app.main = main
    return ingest_main([])


# --- floor and naive consumers (their own processes) ------------------------------------------------

def discover(rest_url: str, coins: Sequence[str]) -> list[str]:
    """Every streamed symbol (Trading or Delivering), from instruments-info, cursors sent back as given."""
    symbols: list[str] = []
    for coin in coins:
        cursor = ""
        while True:
            url = f"{rest_url}/v5/market/instruments-info?category=option&baseCoin={coin}&limit=1000"
            if cursor:
                url += f"&cursor={cursor}"
            with urllib.request.urlopen(url, timeout=10) as answer:
                doc = json.loads(answer.read())
            items = doc["result"]["list"]
            symbols += [i["symbol"] for i in items if i.get("status", "Trading") in ("Trading", "Delivering")]
            cursor = doc["result"].get("nextPageCursor") or ""
            if not cursor or not items:
                break
    return symbols


def shards(symbols: Sequence[str]) -> list[list[str]]:
    """The ingest's own shard plan: as many connections as it opens for these symbols."""
    from ingest.sharding import ShardPlan

    plan = ShardPlan(max_topics=MAX_TOPICS, max_chars=MAX_CHARS)
    plan.add(symbols)
    return [sorted(s.symbols) for s in plan.shards]


@dataclass
class Tally:
    """What a consumer counted; the window's figures are differences of two snapshots."""

    frames: int = 0
    lags_ms: list[float] = field(default_factory=list)
    measuring: bool = False

    def receive_lag(self, raw: bytes) -> None:
        """Note the lag from the frame's exchange ``ts`` to now (a frame without one is skipped).

        The floors call it for one frame in :data:`FLOOR_LAG_EVERY`, counting each frame inline (no
        call per frame: the floor is what nothing can undercut).
        """
        at = raw.find(b'"ts":')
        if at >= 0:
            with contextlib.suppress(ValueError):
                self.lags_ms.append(time.time() * 1000 - int(raw[at + 5:raw.find(b",", at)]))


def subscribe_requests(symbols: Sequence[str]) -> list[str]:
    """Bybit's subscribe requests for ``symbols``' tickers, 200 topics each."""
    return [json.dumps({"op": "subscribe", "args": [f"tickers.{s}" for s in symbols[i:i + 200]],
                        "req_id": str(i)}) for i in range(0, len(symbols), 200)]


async def _subscribe(ws: ClientConnection, symbols: Sequence[str]) -> None:
    for request in subscribe_requests(symbols):
        await ws.send(request)


async def floor_loop(ws_url: str, symbols: Sequence[str], tally: Tally) -> None:
    """Receive and count; every 100th frame, read its ``ts`` for the receive lag."""
    async with connect(ws_url, max_size=2**22, compression=None) as ws:
        await _subscribe(ws, symbols)
        recv = ws.recv
        while True:
            raw = await recv(decode=False)
            tally.frames += 1
            if tally.frames % FLOOR_LAG_EVERY == 0 and tally.measuring:
                tally.receive_lag(raw)


async def floor_callback_loop(ws_url: str, symbols: Sequence[str], tally: Tally) -> None:
    """The floor of the ingest's own read path: frames counted in websockets' ``data_received``.

    The same :class:`ingest.wsread.TickerConnection` the ingest reads with, its handler
    only counting (and reading the ``ts`` of one frame in 100, as :func:`floor_loop` does).
    """
    from ingest.wsread import TickerConnection

    def count(raw: bytes) -> None:
        tally.frames += 1
        if tally.frames % FLOOR_LAG_EVERY == 0 and tally.measuring:
            tally.receive_lag(raw)

    async with connect(ws_url, max_size=2**22, compression=None, create_connection=TickerConnection) as ws:
        assert isinstance(ws, TickerConnection)
        ws.on_message = count
        await _subscribe(ws, symbols)
        while True:
            await ws.recv(decode=False)  # answers before the handler was set; the close


async def floor_picows_loop(ws_url: str, symbols: Sequence[str], tally: Tally) -> None:
    """The floor on picows (a C frame parser): frames counted in its ``on_ws_frame`` callback.

    Not a dependency: measured where someone installed picows, to see what the read path the
    issue suggests would buy against the ingest's own (``floor-cb``).
    """
    picows: Any = importlib.import_module("picows")

    class Counting(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            tally.frames += 1
            if tally.frames % FLOOR_LAG_EVERY == 0 and tally.measuring:
                tally.receive_lag(frame.get_payload_as_bytes())

    transport, _ = await picows.ws_connect(Counting, ws_url, max_frame_size=2**22)
    for request in subscribe_requests(symbols):
        transport.send(picows.WSMsgType.TEXT, request.encode())
    await transport.wait_disconnected()


async def naive_loop(ws_url: str, redis_url: str, symbols: Sequence[str], tally: Tally) -> None:
    """:func:`bench.bench_ingest.naive_consumer`'s shape, per shard, with the exchange-to-Redis lag."""
    r = aredis.Redis.from_url(redis_url)
    try:
        async with connect(ws_url, max_size=2**22, compression=None) as ws:
            await _subscribe(ws, symbols)
            while True:
                msg = json.loads(await ws.recv())
                if "topic" not in msg:
                    continue
                data = msg["data"]
                await r.hset(f"option:{data['symbol']}", mapping=data)
                tally.frames += 1
                if tally.measuring:
                    tally.lags_ms.append(time.time() * 1000 - msg["ts"])
    finally:
        await r.aclose()


async def run_consumer(kind: str, *, rest_url: str, ws_url: str, redis_url: str, coins: Sequence[str],
                       warmup: float, seconds: float, stall_file: Path) -> dict[str, float]:
    """Run ``kind`` for ``warmup`` + ``seconds``; the window's figures."""
    symbols = discover(rest_url, coins)
    tally = Tally()
    loops: list[Coroutine[Any, Any, None]]
    if kind == "floor":
        loops = [floor_loop(ws_url, s, tally) for s in shards(symbols)]
    elif kind == "floor-cb":
        loops = [floor_callback_loop(ws_url, s, tally) for s in shards(symbols)]
    elif kind == "floor-picows":
        loops = [floor_picows_loop(ws_url, s, tally) for s in shards(symbols)]
    else:
        loops = [naive_loop(ws_url, redis_url, s, tally) for s in shards(symbols)]
    tasks = [asyncio.create_task(c) for c in loops]
    tasks.append(asyncio.create_task(watch_stalls(stall_file)))
    await asyncio.sleep(warmup)
    for task in tasks:
        if task.done():
            task.result()  # a consumer that died says why
    tally.measuring = True
    server = redis.Redis.from_url(redis_url)
    f0, c0, t0, w0, r0 = tally.frames, time.process_time(), time.monotonic(), time.time(), redis_cpu(server)
    await asyncio.sleep(seconds)
    f1, c1, t1, w1, r1 = tally.frames, time.process_time(), time.monotonic(), time.time(), redis_cpu(server)
    lags = list(tally.lags_ms)
    dt = t1 - t0
    return {"frames_s": (f1 - f0) / dt, "cpu": (c1 - c0) / dt, "rss": float(rss_bytes(os.getpid())),
            "lag_p50": pct(lags, 0.5), "lag_p99": pct(lags, 0.99),
            "stall_ms": max_stall_ms(stall_file, w0, w1), "redis_cpu": (r1 - r0) / dt}


def redis_cpu(r: redis.Redis) -> float:
    """CPU seconds the Redis server has used (user + system), from ``INFO cpu``."""
    info: dict[str, Any] = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def consume_and_exit(kind: str, *, out: Path, **kw: Any) -> None:
    """Run the consumer, write its figures to ``out`` and exit the process at once.

    No clean close: it would wait behind the server's backlog (a saturated naive consumer is
    seconds behind, and cancelling its tasks hangs in the close handshake). The sockets go with
    the process.
    """
    result = await run_consumer(kind, stall_file=out.with_suffix(".stalls"), **kw)
    _write_and_exit(out, result)


def _write_and_exit(out: Path, result: dict[str, float]) -> None:
    out.write_text(json.dumps(result))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --- measuring the ingest from outside -------------------------------------------------------------

_READ_TS: Final = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) or false end
return out
"""


class LagSampler:
    """Polls a sample of option hashes' ``ts``; each change seen is a write, its lag now - ts.

    The lag only sees the tickers that were written. How old what Redis holds is, which is what a
    reader gets, is :attr:`ages_ms`: now - ts of every sampled hash, every :data:`AGE_EVERY`-th
    poll. A longer flush interval writes fewer, fresher-at-write tickers (a lower lag) while the
    stored ones grow older between flushes (a higher age).
    """

    def __init__(self, r: redis.Redis, symbols: Sequence[str]) -> None:
        step = max(1, len(symbols) // LAG_SAMPLE)
        self.symbols = list(symbols)[::step][:LAG_SAMPLE]
        self.r = r
        self.lags_ms: list[float] = []
        self.ages_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last: dict[str, bytes] = {}
        # One script call per poll: a redis-py pipeline of 200 HGETs every 10 ms cost the bench
        # process a third of a core, on the same 2 cores as the feed and the consumer it measures.
        read_ts = self.r.register_script(_READ_TS)
        names = [keys.option_key(s) for s in self.symbols]
        polls = 0
        while not self._stop.is_set():
            values = read_ts(keys=names, args=[keys.F_OPTION_TS])
            now_ms = time.time() * 1000
            polls += 1
            if polls % AGE_EVERY == 0:
                self.ages_ms.extend(now_ms - int(v) for v in values if v is not None)
            for s, v in zip(self.symbols, values, strict=True):
                if v is not None and v != last.get(s):
                    if s in last:  # the first value seen may be old: only changes are writes
                        self.lags_ms.append(now_ms - int(v))
                    last[s] = v
            self._stop.wait(LAG_POLL)


@contextmanager
def started(argv: list[str], log: Path, env: dict[str, str],
            cwd: Path | None = None) -> Iterator[ManagedProcess]:
    """``argv`` running in ``cwd`` (default: this checkout, which ``python -m`` puts first on sys.path)."""
    proc = ManagedProcess(argv, log, env=env, cwd=str(cwd or repo_root()))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def ingest_env(redis_url: str, *, ws_url: str, rest_url: str, coins: Sequence[str],
               release: Path | None, flush_interval: float | None = None,
               native: bool = True, held: bool = True) -> dict[str, str]:
    """The environment of an ingest under measurement (``release``: its tree first on PYTHONPATH;
    ``flush_interval``: its ``INGEST_FLUSH_INTERVAL``, else the default; ``native=False``:
    ``INGEST_NATIVE_SCAN=0``; ``held=False``: ``INGEST_READ_HOLD=0``)."""
    path = f"{release}{os.pathsep}{repo_root()}" if release is not None else str(repo_root())
    env = python_env(REDIS_URL=redis_url, BYBIT_WS_URL=ws_url, BYBIT_REST_URL=rest_url,
                     BYBIT_COINS=",".join(coins), LOG_FORMAT="json", LOG_LEVEL="WARNING", PYTHONPATH=path)
    if flush_interval is not None:
        env["INGEST_FLUSH_INTERVAL"] = f"{flush_interval:g}"
    if not native:
        env["INGEST_NATIVE_SCAN"] = "0"
    if not held:
        env["INGEST_READ_HOLD"] = "0"
    return env


def flush_consumer(seconds: float) -> str:
    """The name of the ingest measured with ``INGEST_FLUSH_INTERVAL=seconds`` (``--flush-intervals``)."""
    return f"ingest@{seconds:g}s"


def flushing_every(consumer: str) -> float | None:
    """The flush interval of a :func:`flush_consumer` name, else None."""
    match = re.fullmatch(r"ingest@([0-9.]+)s", consumer)
    return float(match.group(1)) if match else None


def check_imports_from(tree: Path, env: dict[str, str]) -> None:
    """Fail loudly unless a Python started in ``tree`` with ``env`` imports the ingest of ``tree``."""
    probe = subprocess.run([sys.executable, "-c", "import ingest; print(ingest.__file__)"], cwd=tree, env=env,
                           capture_output=True, text=True, check=True)
    if not probe.stdout.strip().startswith(str(tree)):
        raise RuntimeError(f"the release tree {tree} does not shadow this checkout's ingest: "
                           f"{probe.stdout!r}")


def release_tree(workdir: Path, rev: str, repo: Path) -> Path:
    """``ingest/`` and ``common/`` as of ``rev`` (git archive of ``repo``), to put first on PYTHONPATH."""
    out = workdir / f"release-{rev}"
    out.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "ingest", "common"], cwd=repo,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    return out


def measure_ingest(workdir: Path, redis_server: RedisServer, *, rest_url: str, ws_url: str,
                   coins: Sequence[str], symbols: Sequence[str], warmup: float, seconds: float,
                   release: Path | None = None, uvloop: bool = False,
                   flush_interval: float | None = None, native: bool = True,
                   held: bool = True) -> dict[str, float]:
    """The ingest (this checkout's, or ``release``'s) against the feed, measured from outside."""
    stall_file = workdir / f"stalls-{time.monotonic_ns()}.txt"
    env = ingest_env(redis_server.url, ws_url=ws_url, rest_url=rest_url, coins=coins, release=release,
                     flush_interval=flush_interval, native=native, held=held)
    argv = [sys.executable, "-m", "bench.bench_maxrate", "watched-ingest", "--stall-file", str(stall_file)]
    if uvloop:
        argv.append("--uvloop")
    r = redis_server.client()
    r.flushall()
    name = ("release" if release is not None else "ingest-uvloop" if uvloop
            else "ingest-pure" if not native else "ingest-unheld" if not held
            else "ingest" if flush_interval is None else flush_consumer(flush_interval))
    # The release runs in its own tree: ``python -m`` puts the working directory before PYTHONPATH,
    # so from this checkout it would import this checkout's ingest (as the runs before 2026-12-02 did).
    if release is not None:
        check_imports_from(release, env)
    with started(argv, workdir / f"{name}-{time.monotonic_ns()}.log", env, cwd=release) as proc:
        assert proc.proc is not None
        pid = proc.proc.pid
        wait_until(lambda: stat(r, keys.F_REDIS_WRITES) >= len(symbols) or None, timeout=60,
                   what=f"{name}: every symbol written once")
        time.sleep(warmup)
        with LagSampler(r, symbols) as sampler:
            m0, w0, c0, t0 = at_stats_write(r, pid)
            e0, r0 = time.time(), redis_cpu(r)
            time.sleep(max(seconds - 0.5, 0.5))
            m1, w1, c1, t1 = at_stats_write(r, pid)
            e1, r1 = time.time(), redis_cpu(r)
        rss = rss_bytes(pid)
        dt = t1 - t0
        lags, ages = sampler.lags_ms, sampler.ages_ms
    return {"frames_s": (m1 - m0) / dt, "cpu": (c1 - c0) / dt, "rss": float(rss),
            "lag_p50": pct(lags, 0.5), "lag_p99": pct(lags, 0.99), "age_p99": pct(ages, 0.99),
            "stall_ms": max_stall_ms(stall_file, e0, e1), "writes_s": (w1 - w0) / dt,
            "redis_cpu": (r1 - r0) / dt}


def measure_other(kind: str, workdir: Path, redis_server: RedisServer, *, rest_url: str, ws_url: str,
                  coins: Sequence[str], warmup: float, seconds: float) -> dict[str, float]:
    """``floor``, ``floor-cb`` or ``naive`` in its own process; its JSON result."""
    out = workdir / f"{kind}-{time.monotonic_ns()}.json"
    argv = [sys.executable, "-m", "bench.bench_maxrate", "consume", "--kind", kind, "--rest", rest_url,
            "--ws", ws_url, "--redis", redis_server.url, "--coins", ",".join(coins), "--warmup", str(warmup),
            "--seconds", str(seconds), "--out", str(out)]
    redis_server.client().flushall()
    done = subprocess.run(argv, cwd=repo_root(), env=python_env(), capture_output=True, text=True,
                          timeout=warmup + seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} consumer failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.read_text())
    return result


# --- feeds ----------------------------------------------------------------------------------------

@dataclass
class Feed:
    rest_url: str
    ws_url: str
    coins: tuple[str, ...]
    symbols: list[str]
    proc: ManagedProcess


@contextmanager
def simulator_feed(workdir: Path, rate: float, per_coin: int | None) -> Iterator[Feed]:
    port = free_port()
    argv = [sys.executable, "-m", "simulator", "--host", LOOPBACK, "--port", str(port),
            "--coins", "BTC,ETH,SOL", "--push-interval", f"{1 / rate:g}", "--pacing", "spread",
            "--seed", "1", "--log-format", "text", "--log-level", "WARNING"]
    if per_coin is not None:
        argv += ["--instruments-per-coin", str(per_coin)]
    base = f"http://{LOOPBACK}:{port}"
    with started(argv, workdir / f"simulator-{rate:g}.log", python_env()) as proc:
        wait_until(lambda: http_ok(base + "/control/state") or None, timeout=30, what="simulator")
        with urllib.request.urlopen(base + "/control/instruments", timeout=10) as answer:
            coins = json.loads(answer.read())["coins"]
        symbols = [s for listed in coins.values() for s in listed]
        yield Feed(base, f"ws://{LOOPBACK}:{port}/v5/public/option", ("BTC", "ETH", "SOL"), symbols, proc)


@contextmanager
def firehose_feed(workdir: Path, n: int) -> Iterator[Feed]:
    from bench.bench_ingest import firehose_symbols

    port = free_port()
    argv = [sys.executable, "-m", "bench.bench_ingest", "firehose", "--port", str(port), "--symbols", str(n)]
    with started(argv, workdir / "firehose.log", python_env()) as proc:
        base = f"http://{LOOPBACK}:{port}"
        wait_until(lambda: http_ok(base + "/v5/market/instruments-info?baseCoin=BTC") or None, timeout=30,
                   what="firehose")
        yield Feed(base, f"ws://{LOOPBACK}:{port}/v5/public/option", ("BTC",), firehose_symbols(n), proc)


# --- the run ----------------------------------------------------------------------------------------

@dataclass
class Row:
    feed: str  # "1/s", "5/s", "10/s", "burst"
    consumer: str
    frames_s: float
    cpu: float
    rss: float
    lag_p50: float
    lag_p99: float
    stall_ms: float
    feed_cpu: float = float("nan")
    writes_s: float = float("nan")  # option hashes written per second (the ingests only)
    redis_cpu: float = float("nan")  # the Redis server's CPU share over the window
    age_p99: float = float("nan")  # how old the stored tickers are, p99 ms (the ingests only)
    round: int = 0  # which pass over the consumers (--rounds)

    @property
    def us_per_frame(self) -> float:
        return self.cpu / self.frames_s * 1e6 if self.frames_s > 0 else float("nan")


def run_feed(name: str, feed: Feed, workdir: Path, redis_server: RedisServer, consumers: Sequence[str],
             warmup: float, seconds: float, release: Path | None, rounds: int = 1) -> list[Row]:
    """Each consumer in turn against the feed, ``rounds`` times (every other round in reverse
    order, so a drift of the machine's load over the run does not favour whoever goes first)."""
    rows = []
    turns = [(n, consumer) for n in range(rounds)
             for consumer in (consumers if n % 2 == 0 else list(reversed(consumers)))]
    for n, consumer in turns:
        label = f"{name:>6}" if rounds == 1 else f"{name:>6} r{n + 1}"
        c0, t0 = cpu_seconds(_pid(feed.proc)), time.monotonic()
        try:
            figures = _measure(consumer, feed, workdir, redis_server, warmup, seconds, release)
        except (AssertionError, RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            # One consumer that fails (it never wrote every symbol, it crashed) is a finding to
            # print, not a reason to lose the rest of the run.
            print(f"  {label} {consumer:<8} FAILED: {str(exc)[:300]}", file=sys.stderr, flush=True)
            nan = float("nan")
            rows.append(Row(name, f"{consumer} (failed)", nan, nan, nan, nan, nan, nan, round=n))
            continue
        feed_cpu = (cpu_seconds(_pid(feed.proc)) - c0) / (time.monotonic() - t0)
        rows.append(Row(name, consumer, feed_cpu=feed_cpu, round=n, **figures))
        print(f"  {label} {consumer:<8} {_cells(rows[-1])}", file=sys.stderr, flush=True)
    return rows


_INGESTS: Final = ("ingest", "ingest-pure", "ingest-unheld", "ingest-uvloop", "release")


def _measure(consumer: str, feed: Feed, workdir: Path, redis_server: RedisServer, warmup: float,
             seconds: float, release: Path | None) -> dict[str, float]:
    flush_interval = flushing_every(consumer)
    if consumer in _INGESTS or flush_interval is not None:
        return measure_ingest(workdir, redis_server, rest_url=feed.rest_url, ws_url=feed.ws_url,
                              coins=feed.coins, symbols=feed.symbols, warmup=warmup, seconds=seconds,
                              release=release if consumer == "release" else None,
                              uvloop=consumer == "ingest-uvloop", flush_interval=flush_interval,
                              native=consumer != "ingest-pure", held=consumer != "ingest-unheld")
    return measure_other(consumer, workdir, redis_server, rest_url=feed.rest_url, ws_url=feed.ws_url,
                         coins=feed.coins, warmup=warmup, seconds=seconds)


def _has(module: str) -> bool:
    """Whether an optional module (not a dependency of the project) is installed."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _pid(proc: ManagedProcess) -> int:
    assert proc.proc is not None
    return proc.proc.pid


def _cells(row: Row) -> str:
    return (f"{row.frames_s:>9,.0f} {row.cpu:>6.1%} {row.us_per_frame:>7.1f} {row.rss / 2**20:>6.1f} "
            f"{row.lag_p50:>7.1f} {row.lag_p99:>7.1f} {row.stall_ms:>7.1f}")


def ratios(rows: Sequence[Row], feed: str, top: str, bottom: str,
           figure: Callable[[Row], float] = lambda r: r.us_per_frame) -> list[float]:
    """``figure`` of ``top`` over ``bottom`` on ``feed``, one value per round that has both (each
    round's pair measured minutes apart at most, not a run apart)."""
    by = {(r.round, r.consumer): r for r in rows if r.feed == feed}
    out = []
    for n in sorted({n for n, _ in by}):
        if (n, top) in by and (n, bottom) in by:
            value = figure(by[(n, top)]) / figure(by[(n, bottom)])
            if math.isfinite(value):
                out.append(value)
    return out


def _spread(values: Sequence[float], digits: int) -> str:
    """``1.85x``, or with several rounds ``1.85x (1.68-2.19)``: the median and the range."""
    if not values:
        return "nanx"
    text = f"{statistics.median(values):.{digits}f}x"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}-{max(values):.{digits}f})"
    return text


def medians(rows: Sequence[Row]) -> list[Row]:
    """One row per feed and consumer: each figure the median of its rounds' (finite) values."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.feed, r.consumer), []).append(r)
    out = []
    for (feed, consumer), group in groups.items():
        figures: dict[str, float] = {}
        for name in ("frames_s", "cpu", "rss", "lag_p50", "lag_p99", "stall_ms", "feed_cpu", "writes_s",
                     "redis_cpu", "age_p99"):
            values = [v for r in group if math.isfinite(v := getattr(r, name))]
            figures[name] = statistics.median(values) if values else float("nan")
        out.append(Row(feed, consumer, figures["frames_s"], figures["cpu"], figures["rss"],
                       figures["lag_p50"], figures["lag_p99"], figures["stall_ms"], figures["feed_cpu"],
                       figures["writes_s"], figures["redis_cpu"], figures["age_p99"]))
    return out


def _flush_comparison(rows: Sequence[Row], every: Sequence[Row], feed: str, consumer: str) -> str:
    """One feed's line for an ``ingest@<s>s`` consumer: its µs/frame over the default ingest's,
    hashes written per frame, lag and age, side by side."""
    by = {r.consumer: r for r in rows if r.feed == feed}
    other, default = by.get(consumer), by.get("ingest")
    if other is None or default is None:
        return f"{feed}: no ingest row to compare with"

    def per_frame(r: Row) -> float:
        return r.writes_s / r.frames_s if r.frames_s > 0 else float("nan")

    text = (f"{feed}: µs/frame {_spread(ratios(every, feed, consumer, 'ingest'), 2)}, "
            f"hashes written per frame {per_frame(other):.2f} vs {per_frame(default):.2f}")
    if feed != "burst":
        text += (f", lag p99 {other.lag_p99:.0f} vs {default.lag_p99:.0f} ms, "
                 f"age p99 {other.age_p99:.0f} vs {default.age_p99:.0f} ms")
    return text


def report(rows: Sequence[Row], *, symbols: int, seconds: float, burst_symbols: int) -> str:
    out = io.StringIO()

    def p(line: str = "") -> None:
        out.write(line + "\n")

    load = os.getloadavg()
    rounds = 1 + max((r.round for r in rows), default=0)
    p(f"ingest at Bybit's maximum push rate (nproc={os.cpu_count()}, load {load[0]:.2f} {load[1]:.2f}, "
      f"{symbols} symbols, window {seconds:g} s, burst {burst_symbols} symbols"
      + (f", {rounds} rounds" if rounds > 1 else "") + ")")
    p()
    if rounds > 1:
        p(f"Each consumer measured {rounds} times against the same feed, every other round in reverse"
          " order. The table: the median of the rounds' figures; the ratios: the median of each"
          " round's ratio, the range in brackets.")
        p()
    every = rows
    rows = medians(rows)
    p("| feed | consumer | frames/s | CPU | µs/frame | RSS MiB | lag p50 ms | lag p99 ms | age p99 ms |"
      " max stall ms | feed CPU | writes/s | Redis CPU |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        # The firehose renews its frames' ts every 2 s: no exchange-to-Redis lag to speak of.
        lag = "- | -" if r.feed == "burst" else f"{r.lag_p50:.1f} | {r.lag_p99:.1f}"
        age = "-" if r.feed == "burst" or not math.isfinite(r.age_p99) else f"{r.age_p99:.1f}"
        writes = "-" if r.writes_s != r.writes_s else f"{r.writes_s:,.0f}"  # NaN: not an ingest
        p(f"| {r.feed} | {r.consumer} | {r.frames_s:,.0f} | {r.cpu:.1%} | {r.us_per_frame:.1f} | "
          f"{r.rss / 2**20:.1f} | {lag} | {age} | {r.stall_ms:.1f} | {r.feed_cpu:.0%} | {writes} |"
          f" {r.redis_cpu:.1%} |")
    p()
    p("Redis CPU: the Redis server's share of a core over the window; for the ingests it includes the"
      " lag sampler's polls (200 HGETs in one script every 10 ms, ~4 % of a core). Lag: exchange ts to"
      " written, for each ticker written; age: now - ts of what Redis holds (what a reader gets).")
    p()
    p("| feed | ingest/floor (µs/frame) | ingest/floor-cb (µs/frame) | naive/ingest (µs/frame) |"
      " release/ingest (µs/frame) | ingest CPU < 20 % |")
    p("|---|---:|---:|---:|---:|---|")
    for feed in dict.fromkeys(r.feed for r in rows):
        ours = next((r for r in rows if r.feed == feed and r.consumer == "ingest"), None)
        verdict = "n/a" if ours is None else ("yes" if ours.cpu < CPU_TARGET else "NO") + f" ({ours.cpu:.1%})"
        p(f"| {feed} | {_spread(ratios(every, feed, 'ingest', 'floor'), 2)}"
          f" | {_spread(ratios(every, feed, 'ingest', 'floor-cb'), 2)}"
          f" | {_spread(ratios(every, feed, 'naive', 'ingest'), 1)}"
          f" | {_spread(ratios(every, feed, 'release', 'ingest'), 2)} | {verdict} |")
    for other, what in (("ingest-pure", "The C scanner: the ingest's µs/frame with INGEST_NATIVE_SCAN=0"),
                        ("ingest-unheld", "Held reads: the ingest's µs/frame with INGEST_READ_HOLD=0")):
        gains = [f"{feed} {_spread(ratios(every, feed, other, 'ingest'), 2)}"
                 for feed in dict.fromkeys(r.feed for r in rows if r.consumer == other)]
        if gains:
            p()
            p(f"{what} ({other}) over the default's: " + ", ".join(gains))
    uv = [f"{feed} {_spread(ratios(every, feed, 'ingest-uvloop', 'ingest'), 2)}"
          for feed in dict.fromkeys(r.feed for r in rows if r.consumer == "ingest-uvloop")]
    if uv:
        p()
        p("uvloop: the ingest's µs/frame on uvloop over the default loop's: " + ", ".join(uv))
    for consumer in dict.fromkeys(r.consumer for r in rows if flushing_every(r.consumer) is not None):
        p()
        p(f"{consumer} (INGEST_FLUSH_INTERVAL={flushing_every(consumer):g}) against ingest (the default): "
          + "; ".join(_flush_comparison(rows, every, feed, consumer)
                      for feed in dict.fromkeys(r.feed for r in rows if r.consumer == consumer)))
    burst = {r.consumer: r for r in rows if r.feed == "burst"}
    if "ingest" in burst and "release" in burst:
        p()
        now, before = burst["ingest"].frames_s, burst["release"].frames_s
        gain = _spread(ratios(every, "burst", "ingest", "release", lambda r: r.frames_s), 2)
        p(f"burst: ingest {now:,.0f} frames/s vs release {before:,.0f} ({gain}); option hashes"
          f" written per frame: ingest {burst['ingest'].writes_s / now:.3f}, release"
          f" {burst['release'].writes_s / before:.3f}")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_maxrate")
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "consume", "watched-ingest"))
    parser.add_argument("--quick", action="store_true", help="300 symbols, 10/s and burst, 2 s windows")
    parser.add_argument("--rates", default=None, help="pushes per symbol per second (default 1,5,10)")
    parser.add_argument("--seconds", type=float, default=None, help="measuring window per consumer")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every consumer this many times per feed (medians and ranges)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="the release measured as 'release'")
    parser.add_argument("--no-release", action="store_true", help="leave the release ingest out")
    parser.add_argument("--repo", type=Path, default=None,
                        help="git repository to take --baseline-rev from (default: this checkout)")
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument("--consumers", default=None,
                        help=f"comma list, a subset of {','.join(CONSUMERS)} (default: all that apply)")
    parser.add_argument("--no-uvloop", action="store_true", help="leave the ingest-on-uvloop row out")
    parser.add_argument("--flush-intervals", default=None,
                        help="comma list of seconds: also measure the ingest with each as its "
                             "INGEST_FLUSH_INTERVAL (rows 'ingest@<s>s'), e.g. 0.25")
    parser.add_argument("--uvloop", action="store_true", help="watched-ingest: run on uvloop")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--write-docs", action="store_true",
                        help="replace the figures of docs/BENCHMARKS.md's maximum-rate section")
    # sub-modes
    parser.add_argument("--stall-file", type=Path)
    parser.add_argument("--kind", choices=("floor", "floor-cb", "floor-picows", "naive"))
    parser.add_argument("--rest")
    parser.add_argument("--ws")
    parser.add_argument("--redis")
    parser.add_argument("--coins", default="BTC,ETH,SOL")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    if args.mode == "watched-ingest":
        return watched_ingest(args.stall_file, uvloop=args.uvloop)
    if args.mode == "consume":
        asyncio.run(consume_and_exit(
            args.kind, rest_url=args.rest, ws_url=args.ws, redis_url=args.redis, coins=args.coins.split(","),
            warmup=args.warmup, seconds=args.seconds, out=args.out))
        return 1  # not reached

    quick = args.quick
    default_rates = [10.0] if quick else [float(r) for r in RATES]
    rates = [float(x) for x in args.rates.split(",")] if args.rates else default_rates
    seconds = args.seconds or (2.0 if quick else 10.0)
    warmup = 0.5 if quick else 2.0
    per_coin = 100 if quick else None
    burst_symbols = 300 if quick else SYMBOLS
    consumers = [c for c in CONSUMERS if not (c == "release" and (args.no_release or quick))
                 and not (c == "ingest-uvloop" and (args.no_uvloop or quick or not _has("uvloop")))
                 and not (c == "ingest-pure" and (quick or not _has("ingest._scan")))
                 and not (c == "ingest-unheld" and quick)
                 and not (c == "floor-picows" and (quick or not _has("picows")))]
    if args.consumers is not None:
        chosen = [c for c in args.consumers.split(",") if c]
        if not chosen or set(chosen) - set(CONSUMERS):
            parser.error(f"--consumers: a comma list from {','.join(CONSUMERS)}")
        consumers = [c for c in CONSUMERS if c in chosen]
    if args.flush_intervals is not None:
        # Imported here, not at the top: this module also runs as the release's ``watched-ingest``,
        # with the release's ``common`` first on the path, which may predate the name.
        from common.config import FLUSH_INTERVAL_MAX

        try:
            intervals = [float(x) for x in args.flush_intervals.split(",") if x]
        except ValueError:
            parser.error(f"--flush-intervals: a comma list of seconds, got {args.flush_intervals!r}")
        if not intervals or not all(0 < x <= FLUSH_INTERVAL_MAX for x in intervals):
            parser.error(f"--flush-intervals: seconds in (0, {FLUSH_INTERVAL_MAX:g}]"
                         " (INGEST_FLUSH_INTERVAL's range)")
        at = consumers.index("ingest") + 1 if "ingest" in consumers else 0
        consumers[at:at] = [flush_consumer(x) for x in intervals]
    workdir = Path(tempfile.mkdtemp(prefix="bench-maxrate-"))
    release = (None if "release" not in consumers
               else release_tree(workdir, args.baseline_rev, args.repo or repo_root()))
    (workdir / "redis").mkdir()
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    rows: list[Row] = []
    symbols = 0
    try:
        for rate in rates:
            with simulator_feed(workdir, rate, per_coin) as feed:
                symbols = len(feed.symbols)
                rows += run_feed(f"{rate:g}/s", feed, workdir, redis_server, consumers, warmup, seconds,
                                 release, args.rounds)
        if not args.no_burst:
            with firehose_feed(workdir, burst_symbols) as feed:
                burst = [c for c in consumers if c != "naive"]
                rows += run_feed("burst", feed, workdir, redis_server, burst, warmup, seconds, release,
                                 args.rounds)
    finally:
        redis_server.stop()
    text = report(rows, symbols=symbols, seconds=seconds, burst_symbols=burst_symbols)
    print(text)
    if args.write_docs:
        from bench.report import provenance, write_section

        body = f"{provenance(argv)}\n\n{text}"
        path = write_section("maxrate", "Ingest at Bybit's maximum push rate", body, doc="docs/BENCHMARKS.md")
        print(f"wrote {path}")
    if args.json is not None:
        doc = [asdict(r) | {"us_per_frame": r.us_per_frame} for r in rows]
        args.json.write_text(json.dumps(doc, indent=1))
    return 0

if __name__ == "__main__":
    sys.exit(main())
