"""INGEST_WORKERS > 1: the ingest as several processes, each streaming its share of the symbols.

One process tops out at one core (issue 14: a whole core at Bybit's maximum push rate on a
2,000-option universe). Rather than threads (the GIL) or a shared socket, the symbols are
split by a stable hash (:class:`ingest.sharding.WorkerShare`): each worker is a complete
ingest (its own discovery, connections, writer and reporter) that keeps only the symbols it
owns, so the workers need no channel between them. They write the same Redis with the same
keys (the coin indexes are updated with SADD/SREM of each worker's own symbols) and report
through the replica stats contract as ``<INGEST_REPLICA>-w<i>``, so the exporter, the
dashboards and the health check show each worker and the IngestReplicaDown alert sees a dead
one.

This module is the supervisor: it starts the workers (``multiprocessing``'s spawn context, a
fresh interpreter each, as ``python -m ingest`` would be), restarts one that dies with a
capped backoff, forwards SIGTERM/SIGINT and waits for every worker's clean stop (each closes
its sockets and makes its final flush) before it exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Final

from common.config import Settings, worker_replica
from ingest.sharding import WorkerShare

log = logging.getLogger("ingest.workers")

#: How long a stopping worker gets for its clean stop (sockets, final flush and stats are
#: bounded well below this in ingest.app) before it is killed.
STOP_GRACE: Final = 15.0
#: Restart delays of a worker that keeps dying: 1 s doubling to this cap; reset once a worker
#: has run for RESET_AFTER seconds.
RESTART_DELAY_MAX: Final = 30.0
RESET_AFTER: Final = 60.0
#: How often the supervisor wakes to check a stop request while nothing exits.
POLL: Final = 0.5


def run_worker(settings: Settings, share: WorkerShare) -> None:
    """A worker process's body: configure its logs, then the ordinary ingest for its share."""
    import asyncio

    from common.logs import configure_logging
    from ingest.app import main

    configure_logging(settings.log_level, settings.log_format)
    # A Ctrl-C in the terminal reaches the whole process group; before the ingest's own
    # handlers are installed it only interrupts the start-up.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(settings, share=share))


@dataclass
class Worker:
    """One supervised worker: its settings, process and restart bookkeeping."""

    share: WorkerShare
    settings: Settings
    process: BaseProcess | None = None
    started: float = 0.0
    restarts: int = 0
    failures: int = 0  # consecutive quick deaths: the backoff's exponent
    due: float = 0.0  # monotonic time of the next start while it is down

    @property
    def name(self) -> str:
        return self.settings.ingest_replica


@dataclass
class Supervisor:
    """Starts ``settings.ingest_workers`` workers and keeps them running until stopped."""

    settings: Settings
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False

    def __post_init__(self) -> None:
        count = self.settings.ingest_workers
        for index in range(count):
            name = worker_replica(self.settings.ingest_replica, index)
            own = dataclasses.replace(self.settings, ingest_replica=name, ingest_workers=1)
            self.workers.append(Worker(share=WorkerShare(index, count), settings=own))
        self._context = multiprocessing.get_context("spawn")

    def _start(self, worker: Worker) -> None:
        process = self._context.Process(target=run_worker, args=(worker.settings, worker.share),
                                        name=f"ingest-{worker.name}", daemon=False)
        process.start()
        worker.process = process
        worker.started = time.monotonic()
        log.info("worker started", extra={"worker": worker.name, "pid": process.pid,
                                          "share": f"{worker.share.index + 1}/{worker.share.count}",
                                          "restarts": worker.restarts})

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        if not self.stopping:
            log.info("stopping workers", extra={"signal": signal.Signals(signum).name})
        self.stopping = True

    def _reap(self, worker: Worker, now: float) -> None:
        """A worker exited while nobody asked it to: log, count and schedule its restart."""
        assert worker.process is not None
        code = worker.process.exitcode
        ran = now - worker.started
        worker.failures = 0 if ran >= RESET_AFTER else worker.failures + 1
        delay = min(RESTART_DELAY_MAX, 2.0 ** max(0, worker.failures - 1))  # 1, 1, 2, 4 ... 30 s
        worker.due = now + delay
        worker.restarts += 1
        worker.process.close()
        worker.process = None
        log.error("worker died; restarting", extra={
            "worker": worker.name, "exitcode": code, "ran_seconds": round(ran, 1),
            "restart_in_seconds": delay, "restarts": worker.restarts})

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT, then stop every worker cleanly; the exit code (0)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        log.info("starting workers", extra={"workers": len(self.workers),
                                            "replica": self.settings.ingest_replica})
        for worker in self.workers:
            self._start(worker)
        while not self.stopping:
            running = [w.process.sentinel for w in self.workers if w.process is not None]
            wait(running, timeout=POLL)
            now = time.monotonic()
            for worker in self.workers:
                if worker.process is not None and not worker.process.is_alive() and not self.stopping:
                    self._reap(worker, now)
                elif worker.process is None and now >= worker.due and not self.stopping:
                    self._start(worker)
        return self._stop_all()

    def _stop_all(self) -> int:
        alive = [w for w in self.workers if w.process is not None and w.process.is_alive()]
        for worker in alive:
            assert worker.process is not None
            worker.process.terminate()  # SIGTERM: the worker's clean stop
        deadline = time.monotonic() + STOP_GRACE
        for worker in alive:
            assert worker.process is not None
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker did not stop in time; killing it",
                          extra={"worker": worker.name, "grace_seconds": STOP_GRACE})
                worker.process.kill()
                worker.process.join()
        log.info("workers stopped", extra={
            "workers": len(self.workers), "restarts": sum(w.restarts for w in self.workers)})
        return 0
