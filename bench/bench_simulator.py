"""How many ticker frames per second the simulator pushes to one client, against a naive server.

``.venv/bin/python -m bench.bench_simulator [--seconds 10] [--push-interval 0.01]``

The simulator runs as ``python -m simulator`` with ~2,000 instruments; one websockets client
subscribes to every symbol over as few connections as Bybit's per-connection limits allow
(2,000 args, 21,000 characters), and counts frames received over a window after a warm-up.

Baseline, same run, same client, same market model: a naive server in a subprocess that renders
every frame with ``json.dumps`` for every connection and sends it with ``send_str`` from one loop
per connection (what a first implementation looks like). The simulator renders each frame once
(orjson data + spliced envelope), writes it with ``send_frame`` and conflates per symbol.
Loopback only; bounded to about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from aiohttp import WSMsgType, web
from websockets.asyncio.client import ClientConnection, connect

from bench.measure import cpu_seconds
from simulator.listings import DEFAULT_INSTRUMENTS, ListingGenerator
from simulator.market import Market
from simulator.subscriptions import MAX_ARGS, MAX_ARGS_CHARS
from tests.servers import LOOPBACK, free_port, python_env, repo_root, wait_until

WARMUP_SECONDS = 2.0


@dataclass(frozen=True)
class Result:
    name: str
    connections: int
    topics: int
    offered: float
    received: float
    server_cpu: float  # fraction of one core used by the server process during the window


def shard(topics: list[str]) -> list[list[str]]:
    """Pack topics into connections within Bybit's per-connection limits (count and characters)."""
    shards: list[list[str]] = [[]]
    chars = 0
    for topic in topics:
        if len(shards[-1]) + 1 > MAX_ARGS or chars + len(topic) > MAX_ARGS_CHARS:
            shards.append([])
            chars = 0
        shards[-1].append(topic)
        chars += len(topic)
    return shards


async def _count(ws: ClientConnection, counts: list[int], i: int) -> None:
    while True:
        await ws.recv()
        counts[i] += 1


async def measure(url: str, shards: list[list[str]], seconds: float, pid: int) -> tuple[float, float]:
    """Frames per second received over ``seconds`` (after a warm-up); the server's CPU share."""
    conns = [await connect(url, max_queue=None, compression=None) for _ in shards]
    counts = [0] * len(conns)
    try:
        for ws, topics in zip(conns, shards, strict=True):
            await ws.send(json.dumps({"req_id": "bench", "op": "subscribe", "args": topics}))
            answer = json.loads(await ws.recv())
            if answer.get("success") is not True:
                raise RuntimeError(f"subscribe failed: {answer}")
        async with asyncio.TaskGroup() as tg:
            readers = [tg.create_task(_count(ws, counts, i)) for i, ws in enumerate(conns)]
            await asyncio.sleep(WARMUP_SECONDS)
            start, cpu0, n0 = time.perf_counter(), cpu_seconds(pid), sum(counts)
            await asyncio.sleep(seconds)
            elapsed, cpu1, n1 = time.perf_counter() - start, cpu_seconds(pid), sum(counts)
            for task in readers:
                task.cancel()
    finally:
        for ws in conns:
            ws.transport.abort()
    return (n1 - n0) / elapsed, (cpu1 - cpu0) / elapsed


# --- the naive baseline server -------------------------------------------------------------------
async def naive_server(port: int, push_interval: float) -> None:
    """One loop per connection: json.dumps every frame, send_str it, sleep the interval."""
    now = dt.datetime.now(dt.UTC)
    coins = tuple(DEFAULT_INSTRUMENTS)
    market = Market(coins, seed=1, now_ms=int(now.timestamp() * 1000))
    listed: dict[str, list[str]] = {}
    for coin in coins:
        listed[coin] = []
        for ins in ListingGenerator(coin, now=now).take(DEFAULT_INSTRUMENTS[coin]):
            market.add(ins)
            listed[coin].append(ins.symbol)
    seq = 0

    async def stream(request: web.Request) -> web.WebSocketResponse:
        nonlocal seq
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        msg = await ws.receive()
        if msg.type != WSMsgType.TEXT:
            return ws
        symbols = [t.removeprefix("tickers.") for t in json.loads(msg.data)["args"]]
        await ws.send_str(json.dumps({"success": True, "ret_msg": "", "op": "subscribe"}))
        with contextlib.suppress(ConnectionError):
            while not ws.closed:
                ts = int(time.time() * 1000)
                for symbol in symbols:
                    seq += 1
                    frame = {"id": f"tickers.{symbol}-{seq}-{ts}", "topic": f"tickers.{symbol}", "ts": ts,
                             "type": "snapshot", "data": market.quote(symbol).data}
                    await ws.send_str(json.dumps(frame))
                await asyncio.sleep(push_interval)
        return ws

    async def instruments(request: web.Request) -> web.Response:
        return web.json_response({"coins": listed})

    async def step() -> None:
        while True:
            await asyncio.sleep(max(push_interval, 0.1))
            market.step(seconds=max(push_interval, 0.1), now_ms=int(time.time() * 1000))

    app = web.Application()
    app.add_routes([web.get("/v5/public/option", stream), web.get("/control/instruments", instruments)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    try:
        await step()
    finally:
        await runner.cleanup()


# --- driver ----------------------------------------------------------------------------------------
def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env=python_env(), cwd=repo_root(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/control/instruments", timeout=1) as resp:
            return bool(resp.status == 200)

    wait_until(ready, timeout=30, what=f"server on {port}")
    return proc


def topics_of(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/control/instruments", timeout=5) as resp:
        coins: dict[str, list[str]] = json.loads(resp.read())["coins"]
    return [f"tickers.{s}" for symbols in coins.values() for s in symbols]


def run_server(name: str, argv: list[str], port: int, seconds: float, push_interval: float) -> list[Result]:
    proc = start(argv, port)
    try:
        topics = topics_of(port)
        url = f"ws://{LOOPBACK}:{port}/v5/public/option"
        results = []
        for label, shards in (("1 connection", shard(topics)[:1]), ("all symbols", shard(topics))):
            n = sum(len(s) for s in shards)
            received, cpu = asyncio.run(measure(url, shards, seconds, proc.pid))
            results.append(Result(f"{name}, {label}", len(shards), n, n / push_interval, received, cpu))
        return results
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per scenario")
    p.add_argument("--push-interval", type=float, default=0.01)
    p.add_argument("--serve-naive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_naive:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(naive_server(args.serve_naive, args.push_interval))
        return 0

    interval = str(args.push_interval)
    sim_port, naive_port = free_port(), free_port()
    sim_argv = [sys.executable, "-m", "simulator", "--host", LOOPBACK, "--port", str(sim_port),
                "--push-interval", interval, "--log-level", "WARNING"]
    simulator = run_server("simulator", sim_argv, sim_port, args.seconds, args.push_interval)
    naive = run_server("naive", [sys.executable, "-m", "bench.bench_simulator", "--serve-naive",
                                 str(naive_port), "--push-interval", interval],
                       naive_port, args.seconds, args.push_interval)
    print(f"ticker frames/s to one websockets client, push interval {args.push_interval} s, "
          f"{args.seconds:.0f} s window, nproc={os.cpu_count()}")
    print(f"{'server, subscription':<32}{'conns':>6}{'topics':>8}{'offered/s':>11}{'received/s':>12}"
          f"{'server CPU':>11}{'ratio':>7}")
    for sim, base in zip(simulator, naive, strict=True):
        for r in (sim, base):
            ratio = f"{r.received / base.received:.1f}x"
            print(f"{r.name:<32}{r.connections:>6}{r.topics:>8}{r.offered:>11,.0f}{r.received:>12,.0f}"
                  f"{r.server_cpu:>10.0%}{ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
