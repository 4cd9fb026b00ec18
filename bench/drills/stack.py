"""The whole tracker stack for a drill: real processes on free loopback ports in a temp dir.

redis-server, the simulator, the ingest (supervised: restarted when it dies), the exporter,
the API, Alertmanager (the project's routing, every receiver posting to a loopback webhook)
and Prometheus (the project's rules rendered from prometheus/thresholds.yml by
scripts.promconfig, every ``for:`` multiplied by ``duration_scale`` so a drill waits seconds,
not minutes). ``with Stack(options) as stack:`` starts it and tears everything down on exit,
on an exception and on Ctrl-C (children run in their own sessions, so only the drill gets
the SIGINT and stops them in order); :func:`interrupt_on_sigterm` makes SIGTERM do the same.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from bench.drills.observe import READ_ERRORS, ExporterSample, Prometheus, fresh, scrape_exporter
from bench.drills.supervise import SupervisedProcess
from scripts.promconfig import (
    load_thresholds,
    write_local_alertmanager_config,
    write_local_config,
    write_rule_files,
)
from tests.fixtures_simulator import DEFAULT_COINS, SimulatorHandle, simulator_argv
from tests.servers import (
    LOOPBACK,
    AlertmanagerServer,
    ManagedProcess,
    PrometheusServer,
    RedisServer,
    WebhookReceiver,
    free_port,
    http_ok,
    python_env,
    repo_root,
    wait_until,
)

log = logging.getLogger("drills.stack")

#: Seconds the whole stack may take to come up with data flowing and every target scraped.
START_TIMEOUT = 90.0


@dataclass(frozen=True, slots=True)
class StackOptions:
    """How to run the stack; the defaults are the production stack on the simulator's 2,000 options."""

    coins: tuple[str, ...] = DEFAULT_COINS
    #: None: the simulator's default listing (BTC 700, ETH 700, SOL 600 = 2,000 instruments).
    instruments_per_coin: int | None = None
    push_interval: float = 1.0
    seed: int = 1
    #: Ingest knobs (environment names) on top of the production defaults.
    ingest_env: Mapping[str, str] = field(default_factory=dict)
    #: Every alert's ``for:`` (and the SLO pages' and tickets') is multiplied by this.
    duration_scale: float = 0.1
    #: ``{"NoDataFlowing.threshold": 30}``: thresholds.yml values replaced for this run.
    threshold_overrides: Mapping[str, object] = field(default_factory=dict)
    #: Extra redis-server arguments (``--maxmemory`` ...).
    redis_args: tuple[str, ...] = ()
    #: Prometheus scrape and rule evaluation interval.
    interval: str = "1s"
    #: Alertmanager's group_wait/group_interval/repeat_interval are multiplied by this.
    alertmanager_timing_scale: float = 0.1


class HttpService:
    """A ``python -m NAME`` server on a fixed loopback port: stop it and start it again in place."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path,
                 health: str = "/healthz") -> None:
        self.name = name
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self._health = health
        self._proc = ManagedProcess([sys.executable, "-m", name], log_path, env=env, cwd=str(repo_root()))

    def start(self) -> None:
        self._proc.start()

        def up() -> bool:
            if not self._proc.running:
                raise AssertionError(f"{self.name} exited at start; log:\n{self._proc.log_text()[-2000:]}")
            return http_ok(self.url + self._health)

        wait_until(up, timeout=30, what=f"{self.name} on {self.url}")

    def stop(self) -> None:
        self._proc.stop()

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def pid(self) -> int | None:
        proc = self._proc.proc
        return proc.pid if proc is not None and self._proc.running else None


class Stack:
    """The running stack; attributes are the handles a drill breaks and reads."""

    def __init__(self, options: StackOptions = StackOptions(), *, workdir: Path | None = None,
                 keep_workdir: bool = False) -> None:
        self.options = options
        self._own_workdir = workdir is None and not keep_workdir
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="drill-stack-"))
        self.webhook = WebhookReceiver()
        self.redis = RedisServer(self._dir("redis"), extra_args=options.redis_args)
        sim_port = free_port()
        self.simulator = SimulatorHandle(
            port=sim_port, log_path=self.workdir / "simulator.log",
            argv=simulator_argv(port=sim_port, coins=options.coins,
                                instruments_per_coin=options.instruments_per_coin,
                                push_interval=options.push_interval, seed=options.seed, extra_args=()))
        coins = ",".join(options.coins)
        ingest_env = python_env(REDIS_URL=self.redis.url, BYBIT_WS_URL=self.simulator.ws_url,
                                BYBIT_REST_URL=self.simulator.rest_url, BYBIT_COINS=coins,
                                LOG_FORMAT="text", **dict(options.ingest_env))
        self.ingest = SupervisedProcess("ingest", [sys.executable, "-m", "ingest"], env=ingest_env,
                                        log_path=self.workdir / "ingest.log", cwd=str(repo_root()))
        # The exporter judges the heartbeat by the ingest's TTL, so it gets the ingest's knobs too.
        reader_env = {"REDIS_URL": self.redis.url, "BYBIT_COINS": coins, "LOG_FORMAT": "text",
                      **{k: v for k, v in options.ingest_env.items() if k == "INGEST_HEARTBEAT_TTL"}}
        exporter_port, api_port = free_port(), free_port()
        self.exporter = HttpService("exporter", exporter_port, python_env(
            **reader_env, EXPORTER_HOST=LOOPBACK, EXPORTER_PORT=str(exporter_port)),
            self.workdir / "exporter.log")
        self.api = HttpService("api", api_port, python_env(
            **reader_env, API_HOST=LOOPBACK, API_PORT=str(api_port)), self.workdir / "api.log")
        self.alertmanager: AlertmanagerServer | None = None
        self.prometheus: PrometheusServer | None = None
        self.prom = Prometheus("http://unset")
        self._started: list[str] = []

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component in dependency order; return once data flows and all is scraped."""
        self.webhook.start()
        self._started.append("webhook")
        self.redis.start()
        self._started.append("redis")
        self.simulator.start()
        self._started.append("simulator")
        self.ingest.start()
        self._started.append("ingest")
        self.exporter.start()
        self._started.append("exporter")
        self.api.start()
        self._started.append("api")
        self._start_monitoring()
        self.wait_healthy(timeout=START_TIMEOUT)
        # Rules evaluated before the first scrape (absent(up) ...) may still be pending: a drill
        # starts from a stack with no alert active at all.
        wait_until(self.no_alerts, timeout=30, interval=0.5, what="no alert active on the healthy stack")

    def _start_monitoring(self) -> None:
        am_dir = self._dir("alertmanager")
        self.alertmanager = AlertmanagerServer(am_dir, write_local_alertmanager_config(
            am_dir, webhook_url=self.webhook.url, timing_scale=self.options.alertmanager_timing_scale))
        self.alertmanager.start()
        self._started.append("alertmanager")
        thresholds = load_thresholds().with_overrides(dict(self.options.threshold_overrides)) \
            .scaled(self.options.duration_scale)
        prom_dir = self._dir("prometheus")
        write_rule_files(prom_dir / "rules", thresholds)
        self.prometheus = PrometheusServer(prom_dir, prom_dir / "prometheus.yml")
        write_local_config(
            prom_dir, exporter=f"{LOOPBACK}:{self.exporter.port}", api=f"{LOOPBACK}:{self.api.port}",
            prometheus=f"{LOOPBACK}:{self.prometheus.port}",
            alertmanager=f"{LOOPBACK}:{self.alertmanager.port}",
            scrape_interval=self.options.interval, evaluation_interval=self.options.interval,
            rules_dir=prom_dir / "rules")
        self.prometheus.start()
        self._started.append("prometheus")
        self.prom = Prometheus(self.prometheus.url)

    def stop(self) -> None:
        """Stop what was started, readers first, the store last; never raises for one component."""
        stoppers: dict[str, Callable[[], object]] = {
            "prometheus": self._stop_prometheus, "alertmanager": self._stop_alertmanager,
            "api": self.api.stop, "exporter": self.exporter.stop, "ingest": self.ingest.stop,
            "simulator": self.simulator.stop, "redis": self.redis.stop, "webhook": self.webhook.stop,
        }
        while self._started:
            name = self._started.pop()
            try:
                stoppers[name]()
            except (OSError, AssertionError) as exc:
                log.error("stopping %s failed: %s", name, exc, extra={"service": name})
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_prometheus(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()

    def _stop_alertmanager(self) -> None:
        if self.alertmanager is not None:
            self.alertmanager.stop()

    # --- reading -----------------------------------------------------------------------------
    @property
    def metrics_url(self) -> str:
        return self.exporter.url + "/metrics"

    def exporter_sample(self) -> ExporterSample | None:
        """One scrape of the exporter, or None when it does not answer."""
        try:
            return scrape_exporter(self.metrics_url)
        except READ_ERRORS:
            return None

    def data_fresh(self, max_age: float = 5.0) -> bool:
        """Every coin's newest ticker is younger than ``max_age`` s and all connections are up."""
        sample = self.exporter_sample()
        if sample is None or not fresh(sample, self.options.coins, max_age):
            return False
        desired = sample.values.get("bybit_ws_connections_desired", math.nan)
        return sample.values.get("bybit_ws_connected") == desired

    def all_targets_up(self) -> bool:
        try:
            up = self.prom.targets_up()
        except READ_ERRORS:
            return False
        return len(up) == 4 and all(up.values())

    def no_alerts(self) -> bool:
        try:
            return not self.prom.alerts()
        except READ_ERRORS:
            return False

    def wait_healthy(self, *, timeout: float = 60.0, max_age: float = 5.0) -> None:
        """Wait until data is fresh, every connection is up and Prometheus scrapes all four jobs."""
        wait_until(lambda: self.data_fresh(max_age) and self.all_targets_up(), timeout=timeout,
                   interval=0.5, what=f"a healthy stack (logs in {self.workdir})")

    def redis_client(self) -> Any:
        """A synchronous redis-py client (decode_responses) on the stack's Redis."""
        return self.redis.client()


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt, so a drill tears its stack down as on Ctrl-C."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
