"""Fuzz drill: malformed frames and API inputs at scale, against the real code and processes.

    .venv/bin/python -m bench.drill_fuzz [--examples N] [--seconds S] [--seed K] [--write-docs]

Three targets, each fed up to ``--examples`` inputs drawn by hypothesis (generation bounded
by ``--seconds`` in all; the whole run stays well under two minutes at the defaults):

1. frames through the ingest's per-frame path in this process (decode, sink, RESP rendering,
   subscribe-answer bookkeeping): crashes, rejections outside the fixed error types, outcomes
   other than the documented rules predict, RESP not read back as written (all must be 0);
2. the same kind of frames served over a WebSocket to ``python -m ingest`` writing to a real
   redis-server, then a frame over the size limit: stored corruption, keys outside the layout
   (must be 0), messages and error counts as predicted, the ingest still running and reconnected;
3. paths, queries and methods sent to ``python -m api`` while Redis ``MONITOR`` records every
   command: 5xx answers and non-JSON errors (must be 0), no write, no pattern, no key outside
   the layout, keyspace unchanged.

Everything listens on 127.0.0.1 only. Prints the tables; ``--write-docs`` also replaces the
``## Fuzz`` section of docs/RELIABILITY.md. Exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.fuzz.api_inputs import requests, run_api, tracked_symbols
from bench.fuzz.cases import Case, Universe, cases
from bench.fuzz.inprocess import InProcessTarget, quiet_logs
from bench.fuzz.runner import drive
from bench.fuzz.table import Findings, failures, render
from bench.fuzz.wire import listing_of, run_wire
from bench.report import provenance, write_section
from tests.fixtures_readers import make_symbols
from tests.servers import RedisServer

TARGETS = ("frames", "wire", "api")

#: What the drill has found in the product so far (kept in the doc section it writes).
FOUND = """Found and fixed in the product: a ticker lacking some of Bybit's fields was written with
`HSET` of only the fields it had, so values of an older ticker survived in the hash beside the
newer `ts` (stored corruption on the wire target). The ingest now writes every Bybit field,
the absent ones empty (`ingest/sink.py`, commit "Ingest: a ticker lacking some of Bybit's
fields is stored with them empty")."""


def universe() -> Universe:
    """18 tracked symbols over two coins, 8 well-formed ones that are not tracked."""
    owned = tuple(make_symbols("BTC", 12, seed=1) + make_symbols("ETH", 6, seed=2))
    unowned = tuple(s for s in make_symbols("BTC", 40, seed=9) + make_symbols("SOL", 4, seed=3)
                    if s not in owned)[:8]
    return Universe(owned=owned, unowned=unowned, now_ms=int(time.time() * 1000))


def run(*, examples: int, seconds: float, seed: int, targets: Sequence[str], workdir: Path,
        wire_examples: int | None = None) -> Findings:
    """Run the chosen targets; generation of each gets a third of ``seconds``."""
    share = seconds / 3
    findings = Findings(frames=None, wire=None, api=None)
    if "frames" in targets:
        u = universe()
        target = InProcessTarget(u, coin_of={s: s.split("-", 1)[0] for s in u.owned})
        undo = quiet_logs(str(workdir / "frames-inprocess.log"))
        started = time.monotonic()
        try:
            drive(cases(u), target, examples=examples, seconds=share, seed=seed)
        finally:
            undo()
        target.tally.seconds = time.monotonic() - started
        findings.frames = target.tally
    redis_server: RedisServer | None = None
    if "wire" in targets or "api" in targets:
        redis_server = RedisServer(workdir)
        redis_server.start()
    try:
        if "wire" in targets:
            assert redis_server is not None
            u = universe()
            script: list[Case] = []
            drive(cases(u), script.append, examples=wire_examples or examples, seconds=share, seed=seed + 1)
            findings.wire = asyncio.run(run_wire(script, listing=listing_of(u.owned),
                                                 redis_url=redis_server.url, workdir=workdir))
        if "api" in targets:
            assert redis_server is not None
            sent: list[tuple[str, str]] = []
            drive(requests(tracked_symbols()), sent.append, examples=examples, seconds=share, seed=seed + 2)
            findings.api = run_api(sent, redis_port=redis_server.port, workdir=workdir)
    finally:
        if redis_server is not None:
            redis_server.stop()
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drill_fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=3000, help="inputs per target (default 3000)")
    parser.add_argument("--seconds", type=float, default=75.0,
                        help="time bound on generating inputs, all targets together (default 75)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the inputs (default 1)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of frames,wire,api")
    parser.add_argument("--write-docs", action="store_true",
                        help="replace the Fuzz section of docs/RELIABILITY.md")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if not targets or set(targets) - set(TARGETS) or args.examples < 1 or args.seconds <= 0:
        parser.error(f"--targets from {','.join(TARGETS)}; --examples >= 1; --seconds > 0")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="drill-fuzz-") as tmp:
        findings = run(examples=args.examples, seconds=args.seconds, seed=args.seed, targets=targets,
                       workdir=Path(tmp))
    elapsed = time.monotonic() - started
    line = provenance(list(argv) if argv is not None else None)
    body = f"{line}\n\nWhole run: {elapsed:.0f} s, seed {args.seed}.\n\n{render(findings)}\n\n{FOUND}"
    print(body)
    examples = [*(findings.frames.examples if findings.frames else []),
                *(findings.wire.corrupted[:5] if findings.wire else []),
                *(findings.api.server_errors + findings.api.malformed_answers + findings.api.foreign_keys
                  if findings.api else [])]
    if examples:
        print("\nFirst examples:\n" + "\n".join(f"  {e}" for e in examples[:20]))
    if args.write_docs:
        print(f"\nwrote {write_section('fuzz', 'Fuzz', body)}")
    return 1 if failures(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
