"""CPU and memory of a process that may be replaced: follows the new pid after a restart.

Samples ``/proc/<pid>`` (via :mod:`bench.measure`); CPU % is measured per window between
samples of the same pid, so a restart starts a new baseline instead of a negative delta.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.measure import MIB, cpu_seconds, rss_bytes


@dataclass
class ProcessTrack:
    """RSS and CPU % over a run, across pids."""

    window: float = 10.0  # seconds per CPU % figure
    rss_mib: list[float] = field(default_factory=list)
    cpu_pct: list[float] = field(default_factory=list)  # one per window
    pids: list[int] = field(default_factory=list)
    cpu_total: float = 0.0  # CPU seconds over every pid seen
    _base: tuple[int, float, float] | None = None  # (pid, wall, cpu) at the window's start
    _last_cpu: float = 0.0

    def sample(self, pid: int | None) -> None:
        """Read ``pid`` now (None: no process at the moment, nothing to read)."""
        if pid is None:
            return
        try:
            cpu, rss = cpu_seconds(pid), rss_bytes(pid)
        except (OSError, IndexError, ValueError):
            return  # it died between the supervisor's answer and this read
        now = time.monotonic()
        if not self.pids or self.pids[-1] != pid:
            self.pids.append(pid)
            self._base = (pid, now, cpu)
            self.cpu_total += cpu  # what the new process used while starting
        else:
            self.cpu_total += cpu - self._last_cpu
        self._last_cpu = cpu
        self.rss_mib.append(rss / MIB)
        assert self._base is not None
        base_pid, base_wall, base_cpu = self._base
        if now > base_wall and now - base_wall >= self.window:
            self.cpu_pct.append(100.0 * (cpu - base_cpu) / (now - base_wall))
            self._base = (base_pid, now, cpu)

    def last_cpu_pct(self) -> float:
        return self.cpu_pct[-1] if self.cpu_pct else float("nan")
