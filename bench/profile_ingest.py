"""Where the ingest's CPU goes at a given feed: py-spy's samples, summed by function (self time).

    .venv/bin/python -m bench.profile_ingest [--feed 10|5|1|burst] [--tree checkout|release]
                                             [--seconds 12] [--top 25]

Starts a redis-server, the feed (the simulator with ``--pacing spread`` at the given pushes per
symbol per second, or bench_ingest's firehose for ``burst``, as :mod:`bench.bench_maxrate` does)
and ``python -m ingest`` (this checkout's, or the release of :data:`bench.bench_maxrate.BASELINE_REV`
from ``git archive``), lets it settle, then records it with ``py-spy record --format raw`` and prints
each function's share of the busy samples. The "before/after" table of docs/BENCHMARKS.md comes
from here. Needs py-spy (``.venv/bin/pip install py-spy``; not a dependency of the project).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bench.bench_maxrate import (
    BASELINE_REV,
    check_imports_from,
    firehose_feed,
    ingest_env,
    release_tree,
    simulator_feed,
    started,
)
from tests.servers import RedisServer, repo_root

SETTLE_SECONDS = 8.0


def self_time(raw_lines: Iterable[str]) -> tuple[int, Counter[str]]:
    """(samples, samples per leaf function) from py-spy's raw format: ``frame;frame;... count``.

    A frame reads ``function (file.py:line)``; functions are summed over their lines and keyed
    ``function (file.py)``.
    """
    per_function: Counter[str] = Counter()
    total = 0
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        per_function[f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})" if where else name] += n
    return total, per_function


def table(total: int, per_function: Counter[str], top: int) -> str:
    rows = ["| function (self time) | share of busy samples |", "|---|---:|"]
    rows += [f"| `{name}` | {n / total:.1%} |" for name, n in per_function.most_common(top)]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ingest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--feed", default="10", help="pushes per symbol per second, or 'burst' (default 10)")
    parser.add_argument("--tree", choices=("checkout", "release"), default="checkout")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        parser.error("py-spy is not installed: .venv/bin/pip install py-spy")
    if args.feed != "burst" and not args.feed.replace(".", "", 1).isdigit():
        parser.error("--feed: a number of pushes per symbol per second, or 'burst'")
    work = Path(tempfile.mkdtemp(prefix="profile-ingest-"))
    release = release_tree(work, BASELINE_REV, repo_root()) if args.tree == "release" else None
    (work / "redis").mkdir()
    redis_server = RedisServer(work / "redis")
    redis_server.start()
    out = work / "samples.txt"
    try:
        feed_cm = (firehose_feed(work, 2000) if args.feed == "burst"
                   else simulator_feed(work, float(args.feed), None))
        with feed_cm as feed:
            env = ingest_env(redis_server.url, ws_url=feed.ws_url, rest_url=feed.rest_url, coins=feed.coins,
                             release=release)
            if release is not None:
                check_imports_from(release, env)
            with started([sys.executable, "-m", "ingest"], work / "ingest.log", env, cwd=release) as proc:
                assert proc.proc is not None
                time.sleep(SETTLE_SECONDS)
                subprocess.run([py_spy, "record", "--rate", str(args.rate), "--duration", f"{args.seconds:g}",
                                "--format", "raw", "--output", str(out), "--pid", str(proc.proc.pid)],
                               check=True, capture_output=True)
    finally:
        redis_server.stop()
    total, per_function = self_time(out.read_text().splitlines())
    busy = total / (args.rate * args.seconds)
    print(f"ingest ({args.tree}) at feed {args.feed}: {total} samples in {args.seconds:g} s, "
          f"busy {busy:.0%}\n")
    print(table(total, per_function, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
