"""Ingest benchmarks: throughput, CPU and memory on a realistic feed, reconnect recovery, Redis bytes.

    .venv/bin/python -m bench.bench_ingest [--quick]

Everything runs on loopback with real processes: redis-server, ``python -m ingest`` and either

- a *firehose* (this module, ``firehose`` sub-command, its own process): a Bybit-like server on
  one port that answers ``instruments-info`` and the option WebSocket, and after the subscribe
  answers writes pre-rendered ticker frames (2,000 symbols, each a real 25-field ticker) straight
  to the socket as fast as TCP takes them. Its cost per frame is a memcpy, so the ingest's own
  CPU is the bottleneck: the measured rate is what the ingest sustains, socket -> validation ->
  coalescing -> pipelined Redis writes, on its single core;
- or the simulator (``python -m simulator``, 2,000 instruments, one push per symbol per second:
  the realistic full feed).

Measured:

1. throughput: ticker frames accepted per second by ``python -m ingest`` from the firehose
   (``messages`` in stats:global over a window after a warm-up), the ingest's CPU over the same
   window (/proc/<pid>/stat), and option hashes written per second;
   baseline in the same run: the seed's shape, one client that ``json.loads`` each message and
   awaits one ``HSET`` per message (no coalescing, no pipelining), against the same firehose;
2. realistic feed: CPU share of one core and RSS of the ingest over a window with the simulator;
   Redis ``used_memory`` growth per tracked option;
3. reconnect recovery: the simulator drops every connection; from the moment the last connection
   reports "subscribed" again to the moment every symbol has a fresh ``recv_ts`` in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from bench.measure import cpu_seconds, rss_bytes
from common import keys
from tests.fixtures_simulator import SimulatorHandle, simulator_argv
from tests.servers import LOOPBACK, ManagedProcess, RedisServer, free_port, python_env, repo_root, wait_until

SYMBOLS = 2000


# --- the firehose (runs in its own process) -------------------------------------------------------

def firehose_symbols(n: int) -> list[str]:
    return [f"BTC-{1 + i % 28}DEC26-{10000 + i * 50}-{'CP'[i % 2]}" for i in range(n)]


def ticker(symbol: str, ts: int, i: int) -> bytes:
    data = {"symbol": symbol, "bidPrice": "0", "bidSize": "0", "bidIv": "0", "askPrice": f"{10 + i % 7}",
            "askSize": "5.1", "askIv": "0.514", "lastPrice": "10", "highPrice24h": "25", "lowPrice24h": "5",
            "markPrice": f"{7.86976724 + i / 1000:.8f}", "indexPrice": "16823.73", "markPriceIv": "0.4896",
            "underlyingPrice": "16815.1", "openInterest": "49.85", "turnover24h": "446802.8473",
            "volume24h": "26.55", "totalVolume": "86", "totalTurnover": "1437431", "delta": "0.047831",
            "gamma": "0.00021453", "vega": "0.81351067", "theta": "-19.9115368",
            "predictedDeliveryPrice": "0", "change24h": "-0.33333334"}
    # Bybit's key order (tests/data/bybit/ws_ticker_option_*.json), as the simulator writes it.
    return orjson.dumps({"id": f"tickers.{symbol}-{i}-{ts}", "topic": f"tickers.{symbol}", "ts": ts,
                         "data": data, "type": "snapshot"})


def encoded(frames: list[bytes], chunk: int = 64) -> list[bytes]:
    """Unmasked server-to-client WebSocket text frames, ready for the transport, ``chunk`` per write."""
    wire = [Frame(Opcode.TEXT, f).serialize(mask=False) for f in frames]
    return [b"".join(wire[i:i + chunk]) for i in range(0, len(wire), chunk)]


class Firehose:
    """instruments-info over HTTP and the option stream over WebSocket, on one port."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        coin = query.get("baseCoin", ["BTC"])[0]
        listed = self.symbols if coin == "BTC" else []
        items = [{"symbol": s, "status": "Trading", "baseCoin": "BTC"} for s in listed]
        body = orjson.dumps({"retCode": 0, "retMsg": "OK", "time": int(time.time() * 1000),
                             "result": {"category": "option", "list": items, "nextPageCursor": ""}})
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(HTTPStatus.OK.value, "OK", headers, body)

    async def handler(self, ws: ServerConnection) -> None:
        subscribed: list[str] = []
        blaster: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                if msg.get("op") == "ping":
                    await ws.send(orjson.dumps({"req_id": msg.get("req_id"), "op": "pong",
                                                "args": [str(int(time.time() * 1000))]}).decode())
                elif msg.get("op") == "subscribe":
                    subscribed += [a.removeprefix("tickers.") for a in msg.get("args", [])]
                    await ws.send(orjson.dumps({"success": True, "ret_msg": "", "conn_id": "f",
                                                "req_id": msg.get("req_id"), "op": "subscribe"}).decode())
                    if blaster is None:
                        blaster = asyncio.create_task(self.blast(ws, subscribed))
        finally:
            if blaster is not None:
                blaster.cancel()
                await asyncio.gather(blaster, return_exceptions=True)

    async def blast(self, ws: ServerConnection, subscribed: list[str]) -> None:
        transport = ws.transport
        await asyncio.sleep(0.2)  # let the other subscribe requests of this connection arrive
        i = 0
        while True:
            ts = int(time.time() * 1000)
            chunks = encoded([ticker(s, ts, i) for s in subscribed])
            renew = time.monotonic() + 2.0  # fresh timestamps every 2 s keep the lag realistic
            while time.monotonic() < renew:
                for chunk in chunks:
                    if transport.is_closing():
                        return
                    transport.write(chunk)
                    await ws.drain()  # the library's flow control: wait while the client is behind
            i += 1


async def run_firehose(port: int, n: int) -> None:
    hose = Firehose(firehose_symbols(n))
    async with serve(hose.handler, LOOPBACK, port, process_request=hose.process_request, compression=None,
                     max_size=2**22, write_limit=2**18):
        await asyncio.Future()


# --- measurement helpers ------------------------------------------------------------------------

def stat(r: redis.Redis, field: str) -> int:
    return int(r.hget(keys.STATS_GLOBAL, field) or 0)


@contextmanager
def ingest_process(workdir: Path, **env: str) -> Iterator[ManagedProcess]:
    proc = ManagedProcess([sys.executable, "-m", "ingest"], workdir / f"ingest-{time.monotonic_ns()}.log",
                          env=python_env(LOG_FORMAT="json", **env),
                          cwd=str(repo_root()))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def at_stats_write(r: redis.Redis, pid: int) -> tuple[int, int, float, float]:
    """(messages, writes, CPU seconds, time) just after the ingest's next stats write.

    The counters in Redis move once per stats interval: sampling right after a write keeps
    a window's figures from being off by up to a whole interval.
    """
    last = stat(r, keys.F_MESSAGES)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        messages = stat(r, keys.F_MESSAGES)
        if messages != last:
            return messages, stat(r, keys.F_REDIS_WRITES), cpu_seconds(pid), time.monotonic()
        time.sleep(0.002)
    raise RuntimeError("the ingest stopped writing stats")


def window(r: redis.Redis, pid: int, seconds: float) -> dict[str, float]:
    """Messages/s, writes/s and CPU share of ``pid`` over about ``seconds``."""
    m0, w0, c0, t0 = at_stats_write(r, pid)
    time.sleep(seconds - 0.5)
    m1, w1, c1, t1 = at_stats_write(r, pid)
    dt = t1 - t0
    return {"frames_s": (m1 - m0) / dt, "writes_s": (w1 - w0) / dt, "cpu": (c1 - c0) / dt}


# --- 1. throughput --------------------------------------------------------------------------------

async def naive_consumer(ws_url: str, redis_url: str, symbols: list[str], seconds: float) -> dict[str, float]:
    """The seed's shape: json.loads per message, one awaited HSET per message, nothing batched."""
    r = aredis.Redis.from_url(redis_url)
    count = 0
    t0 = c0 = 0.0
    async with connect(ws_url, max_size=2**22, compression=None) as ws:
        for i in range(0, len(symbols), 200):
            await ws.send(json.dumps({"op": "subscribe", "args": [f"tickers.{s}" for s in symbols[i:i + 200]],
                                      "req_id": str(i)}))
        deadline = None
        while True:
            msg = json.loads(await ws.recv())
            if "topic" not in msg:
                continue
            if deadline is None:
                t0, c0 = time.monotonic(), time.process_time()
                deadline = t0 + seconds
            data = msg["data"]
            await r.hset(f"option:{data['symbol']}", mapping=data)
            count += 1
            if time.monotonic() >= deadline:
                break
        # Measured before the close: closing waits for the server's close frame behind the backlog.
        dt = time.monotonic() - t0
        cpu = time.process_time() - c0
    await r.aclose()
    return {"frames_s": count / dt, "writes_s": count / dt, "cpu": cpu / dt}


def throughput(workdir: Path, redis_server: RedisServer, seconds: float) -> dict[str, dict[str, float]]:
    port = free_port()
    hose = ManagedProcess([sys.executable, "-m", "bench.bench_ingest", "firehose", "--port", str(port),
                           "--symbols", str(SYMBOLS)], workdir / "firehose.log", env=python_env(),
                          cwd=str(repo_root()))
    hose.start()
    ws_url, rest_url = f"ws://{LOOPBACK}:{port}/v5/public/option", f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: hose.running and _port_open(port), timeout=15, what="firehose")
        r = redis_server.client()
        with ingest_process(workdir, REDIS_URL=redis_server.url, BYBIT_WS_URL=ws_url, BYBIT_REST_URL=rest_url,
                            BYBIT_COINS="BTC") as ingest:
            assert ingest.proc is not None
            wait_until(lambda: stat(r, keys.F_MESSAGES) > 100_000, timeout=30, what="firehose flowing")
            time.sleep(1.0)
            ours = window(r, ingest.proc.pid, seconds)
            ours["rss"] = rss_bytes(ingest.proc.pid)
        r.flushall()
        naive = asyncio.run(naive_consumer(ws_url, redis_server.url, firehose_symbols(SYMBOLS), seconds))
    finally:
        hose.stop()
    return {"ingest": ours, "naive": naive}


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


# --- 2 and 3. realistic feed, Redis memory, reconnect recovery -----------------------------------

def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"event":"{event}"' in line:
            out.append(orjson.loads(line))
    return out


def realistic(workdir: Path, seconds: float) -> dict[str, float]:
    redis_server = RedisServer(workdir / "redis-real")
    (workdir / "redis-real").mkdir()
    redis_server.start()
    port = free_port()
    argv = simulator_argv(port=port, coins=("BTC", "ETH", "SOL"), instruments_per_coin=None,
                          push_interval=1.0, seed=1, extra_args=())
    sim = SimulatorHandle(port=port, argv=argv, log_path=workdir / "simulator.log")
    sim.start()
    out: dict[str, float] = {}
    try:
        r = redis_server.client()
        base_memory = int(r.info("memory")["used_memory"])
        symbols = [s for listed in sim.instruments().values() for s in listed]
        with ingest_process(workdir, REDIS_URL=redis_server.url, BYBIT_WS_URL=sim.ws_url,
                            BYBIT_REST_URL=sim.rest_url) as ingest:
            assert ingest.proc is not None
            pid = ingest.proc.pid
            wait_until(lambda: stat(r, keys.F_REDIS_WRITES) >= 2 * len(symbols), timeout=30, what="full feed")
            time.sleep(1.0)
            w = window(r, pid, seconds)
            out.update(cpu=w["cpu"], frames_s=w["frames_s"], rss=rss_bytes(pid), options=len(symbols))
            used = int(r.info("memory")["used_memory"])
            others = sum(int(r.memory_usage(k) or 0) for k in (keys.STATS_GLOBAL, keys.STATS_LAG,
                                                                keys.INGEST_HEARTBEAT))
            out["bytes_per_option"] = (used - base_memory - others) / len(symbols)
            out["memory_usage_per_option"] = sum(
                int(r.memory_usage(keys.option_key(s)) or 0) for s in symbols[:200]) / 200
            out.update(reconnect(sim, r, symbols, Path(ingest.log_path)))
    finally:
        sim.stop()
        redis_server.stop()
    return out


def reconnect(sim: SimulatorHandle, r: redis.Redis, symbols: list[str], log: Path) -> dict[str, float]:
    before = len(log_events(log, "subscribed"))
    drop_ms = int(time.time() * 1000)
    sim.drop_all()
    first_fresh: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while len(first_fresh) < len(symbols) and time.monotonic() < deadline:
        pipe = r.pipeline(transaction=False)
        pending = [s for s in symbols if s not in first_fresh]
        for s in pending:
            pipe.hget(keys.option_key(s), keys.F_OPTION_RECV_TS)
        for s, recv in zip(pending, pipe.execute(), strict=True):
            if recv is not None and int(recv) > drop_ms:
                first_fresh[s] = int(recv)
        time.sleep(0.05)
    resubscribed = [e for e in log_events(log, "subscribed")[before:] if e.get("reconnect")]
    if len(first_fresh) < len(symbols) or not resubscribed:
        return {"recovery_s": float("nan"), "drop_to_all_s": float("nan")}
    first_sub = min(e["ts"] for e in resubscribed)
    last_fresh = max(first_fresh.values()) / 1000
    return {"recovery_s": last_fresh - first_sub, "drop_to_all_s": last_fresh - drop_ms / 1000,
            "connections": float(len(resubscribed))}


# --- report -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ingest")
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "firehose"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    parser.add_argument("--quick", action="store_true", help="shorter windows (a smoke run)")
    args = parser.parse_args(argv)
    if args.mode == "firehose":
        asyncio.run(run_firehose(args.port, args.symbols))
        return 0
    window_s, real_s = (3.0, 5.0) if args.quick else (10.0, 30.0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    (workdir / "redis").mkdir()
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    try:
        t = throughput(workdir, redis_server, window_s)
    finally:
        redis_server.stop()
    real = realistic(workdir, real_s)
    ours, naive = t["ingest"], t["naive"]
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    print(f"ingest benchmark (nproc={os.cpu_count()}, loopback, redis-server {version.stdout.split()[2]})")
    print()
    print(f"1. firehose -> ingest -> Redis, {SYMBOLS} symbols, {window_s:.0f} s window")
    print(f"{'consumer':<34}{'frames/s':>10}{'writes/s':>10}{'CPU':>7}{'us CPU/frame':>14}{'ratio':>8}")
    rows = (("python -m ingest (coalesced, RESP)", ours), ("naive: json + HSET per message", naive))
    for name, row in rows:
        print(f"{name:<34}{row['frames_s']:>10,.0f}{row['writes_s']:>10,.0f}{row['cpu']:>6.0%}"
              f"{row['cpu'] / row['frames_s'] * 1e6:>14.1f}{row['frames_s'] / naive['frames_s']:>7.1f}x")
    print()
    print(f"2. realistic full feed: simulator, {real['options']:.0f} options, 1 push/s each, "
          f"{real_s:.0f} s window")
    print(f"   frames/s {real['frames_s']:,.0f}   ingest CPU {real['cpu']:.1%} of one core"
          f"   RSS {real['rss'] / 2**20:.1f} MiB (throughput run: {ours['rss'] / 2**20:.1f} MiB)")
    print(f"   Redis used_memory growth per option {real['bytes_per_option']:,.0f} B"
          f"   (MEMORY USAGE of one option hash: {real['memory_usage_per_option']:,.0f} B)")
    print()
    print(f"3. reconnect recovery: all {real.get('connections', 0):.0f} connections dropped at once")
    print(f"   first re-subscription -> every symbol fresh in Redis: {real['recovery_s']:.2f} s"
          f"   (drop -> every symbol fresh: {real['drop_to_all_s']:.2f} s, incl. the 1.1-1.3 s backoff)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
