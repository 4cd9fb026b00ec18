"""Keep one child process running: restart it when it dies, as production's restart policy does.

The drills SIGKILL the ingest on purpose and measure what the stack does about it, so the
ingest runs under this small supervisor (a watcher thread; the drills are synchronous). The
delay before a restart comes from :class:`scripts.localstack.RestartPolicy`, the policy the
README's local stack uses, so the drill exercises the same back-off.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.localstack import RestartPolicy
from tests.servers import ManagedProcess

log = logging.getLogger("drills.supervise")

#: How often the watcher looks at the child; a restart starts at most this late.
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Restart:
    """One death and restart of the supervised child."""

    at: float  # time.monotonic() of the restart
    exit_code: int | None
    old_pid: int
    new_pid: int
    delay: float


class SupervisedProcess:
    """A :class:`ManagedProcess` restarted after each exit until :meth:`stop`."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str], log_path: Path,
                 cwd: str, policy: RestartPolicy | None = None) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = env
        self._log_path = log_path
        self._cwd = cwd
        self._policy = policy or RestartPolicy(first=1.0, cap=10.0, healthy_after=30.0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: ManagedProcess | None = None
        self._started_at = 0.0
        self._thread = threading.Thread(target=self._watch, name=f"supervise-{name}", daemon=True)
        self.restarts: list[Restart] = []

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        proc = ManagedProcess(self._argv, self._log_path, env=self._env, cwd=self._cwd)
        proc.start()
        self._proc = proc
        self._started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        """The pid of the child running now (None between a death and its restart)."""
        with self._lock:
            proc = self._proc
        if proc is None or proc.proc is None or not proc.running:
            return None
        return proc.proc.pid

    @property
    def running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.running

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to the current child (a crash, for the drill); returns its pid."""
        with self._lock:
            proc = self._proc
            pid = proc.proc.pid if proc is not None and proc.proc is not None else None
            if proc is not None:
                proc.signal(sig)
        return pid

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            with self._lock:
                proc = self._proc
                if proc is None or proc.running or proc.proc is None:
                    continue
                code, old_pid = proc.proc.returncode, proc.proc.pid
                delay = self._policy.next_delay(time.monotonic() - self._started_at)
            log.warning("%s (pid %d) exited with %s; restarting in %.1f s", self.name, old_pid, code,
                        delay, extra={"service": self.name, "exit_code": code})
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()
                assert self._proc is not None
                assert self._proc.proc is not None
                new_pid = self._proc.proc.pid
            self.restarts.append(Restart(time.monotonic(), code, old_pid, new_pid, delay))
            log.info("%s restarted as pid %d", self.name, new_pid, extra={"service": self.name})

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching, then SIGTERM the child (SIGKILL after ``timeout``)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=POLL_SECONDS * 5 + 1)
        with self._lock:
            proc = self._proc
        if proc is not None:
            proc.stop(timeout)

    def log_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""
