"""What every benchmark and drill measures the same way: percentiles, a process's CPU and memory, a server.

One definition each, so a p99 or an RSS figure means the same thing in every table of
docs/BENCHMARKS.md and docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.servers import LOOPBACK, ManagedProcess, free_port, http_ok, python_env, repo_root, wait_until

MIB = 1024 * 1024


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by the nearest-rank method (no interpolation: a value that was observed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a live process (Linux /proc)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_mib(proc: ManagedProcess) -> float:
    """Resident memory of a managed child, MiB."""
    assert proc.proc is not None
    return rss_bytes(proc.proc.pid) / MIB


#: port -> (argv, extra environment) of a server to start
Command = Callable[[int], tuple[list[str], dict[str, str]]]


def start_http_server(command: Command, log: Path, *, health: str = "/healthz") -> tuple[ManagedProcess, str]:
    """Start ``command(port)`` on a free loopback port and wait until ``health`` answers 200.

    Tries another port when the chosen one was taken between probing and binding (a race
    every free-port scheme has); gives up with the log's path after three tries.
    """
    for _ in range(3):
        port = free_port()
        argv, env = command(port)
        proc = ManagedProcess(argv, log, env=python_env(**env), cwd=str(repo_root()))
        proc.start()
        url = f"http://{LOOPBACK}:{port}"

        def up(proc: ManagedProcess = proc, url: str = url) -> str | None:
            if not proc.running:
                return "exited"
            return "up" if http_ok(url + health) else None

        if wait_until(up, timeout=30, what=f"{argv} ({log})") == "up":
            return proc, url
    raise SystemExit(f"could not start {argv[1:]}; see {log}")
