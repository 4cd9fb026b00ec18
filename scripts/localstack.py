"""The whole stack as supervised local processes on loopback: the README's run command.

Starts redis-server, the simulator (or live Bybit with ``--live``), ingest, exporter,
api, prometheus and alertmanager; prints where each one answers; restarts a crashed
process with backoff; writes each process's output to a rotated log file under
``var/log``; stops everything cleanly on Ctrl-C (SIGTERM, then SIGKILL after a grace
period). ``--duration`` ends it after a while, for demos and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import logging.handlers
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
GRACE_SECONDS = 5.0
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
PROBE_SECONDS = 30.0

log = logging.getLogger("localstack")


@dataclass(frozen=True, slots=True)
class Ports:
    redis: int = 6379
    simulator: int = 8765
    exporter: int = 9108
    api: int = 5001
    prometheus: int = 9090
    alertmanager: int = 9093


@dataclass(frozen=True, slots=True)
class Service:
    """One supervised process: how to start it and where it answers."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    #: Paths under ``url`` to print instead of it: once ``ready`` answers, the first that answers 200.
    pages: tuple[str, ...] = ()
    ready: str = ""


class RestartPolicy:
    """Delay before restarting a crashed process: 1, 2, 4 ... 30 s; reset after a healthy minute.

    A process that crashes at once again and again backs off, instead of the seed's
    restart storm; one that ran for a while is restarted promptly.
    """

    def __init__(self, *, first: float = 1.0, cap: float = 30.0, healthy_after: float = 60.0) -> None:
        self._first = first
        self._cap = cap
        self._healthy_after = healthy_after
        self._failures = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self._healthy_after:
            self._failures = 0
        delay: float = min(self._cap, self._first * float(2**self._failures))
        self._failures += 1
        return delay


def _rotating_writer(path: Path) -> logging.Logger:
    """A logger that appends raw lines to ``path``, rotated at 10 MB, 3 files kept."""
    writer = logging.getLogger(f"localstack.file.{path.stem}")
    writer.propagate = False
    writer.setLevel(logging.INFO)
    if not writer.handlers:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        writer.addHandler(handler)
    return writer


class Supervisor:
    """Runs services, restarts the ones that crash, stops all of them on request."""

    def __init__(self, services: list[Service], log_dir: Path, *, state_file: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._services = services
        self._log_dir = log_dir
        self._state_file = state_file
        self._clock = clock
        self._stopping = asyncio.Event()
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._held: dict[str, asyncio.Event] = {}
        self.restarts: dict[str, int] = {s.name: 0 for s in services}

    def stop(self) -> None:
        self._stopping.set()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to ``name`` (the failover drill's fault); its pid, None when it is not running.

        The supervisor restarts it as it would after a crash, unless it is :meth:`hold`-ed.
        """
        proc = self._procs.get(name)
        if proc is None or proc.returncode is not None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        return proc.pid

    def hold(self, name: str) -> None:
        """Do not restart ``name`` when it exits, until :meth:`release` (a fault that must last)."""
        self._held.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        """Let a held ``name`` be restarted again (at once if it is down)."""
        event = self._held.pop(name, None)
        if event is not None:
            event.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for service in self._services:
                    tg.create_task(self._keep_running(service), name=service.name)
                await self._stopping.wait()
                await self._terminate_all()
        except asyncio.CancelledError:
            # Cancelled from outside (a drill interrupted by Ctrl-C) rather than stopped: no time
            # for the graceful path, but no child may outlive the supervisor either.
            self._kill_all()
            raise

    def _kill_all(self) -> None:
        for name, proc in self._procs.items():
            if proc.returncode is None:
                log.warning("supervisor cancelled: killing %s (pid %d)", name, proc.pid,
                            extra={"service": name})
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def _keep_running(self, service: Service) -> None:
        policy = RestartPolicy()
        writer = _rotating_writer(self._log_dir / f"{service.name}.log")
        while not self._stopping.is_set():
            started = self._clock()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **service.env}
            try:
                proc = await asyncio.create_subprocess_exec(
                    *service.argv, env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                log.error("cannot start %s: %s", service.name, exc, extra={"service": service.name})
                return
            self._procs[service.name] = proc
            self._write_state()
            log.info("started %s (pid %d)", service.name, proc.pid, extra={"service": service.name})
            assert proc.stdout is not None
            async for line in proc.stdout:
                writer.info(line.decode(errors="replace").rstrip("\n"))
            code = await proc.wait()
            if self._stopping.is_set():
                return
            held = self._held.get(service.name)
            if held is not None:
                log.info("%s exited with %s; held down until released", service.name, code,
                         extra={"service": service.name, "exit_code": code})
                stop = asyncio.ensure_future(self._stopping.wait())
                release = asyncio.ensure_future(held.wait())
                await asyncio.wait((stop, release), return_when=asyncio.FIRST_COMPLETED)
                for waiter in (stop, release):
                    waiter.cancel()
                if self._stopping.is_set():
                    return
                self.restarts[service.name] += 1
                continue
            delay = policy.next_delay(self._clock() - started)
            self.restarts[service.name] += 1
            log.warning("%s exited with %s; restarting in %.0f s (log: %s)", service.name, code,
                        delay, self._log_dir / f"{service.name}.log",
                        extra={"service": service.name, "exit_code": code})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _terminate_all(self) -> None:
        """SIGTERM in reverse start order (readers before the store), SIGKILL past the grace."""
        for service in reversed(self._services):
            proc = self._procs.get(service.name)
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = self._clock() + GRACE_SECONDS
        for service in reversed(self._services):
            proc = self._procs.get(service.name)
            if proc is None or proc.returncode is not None:
                continue
            try:
                async with asyncio.timeout(max(0.1, deadline - self._clock())):
                    await proc.wait()
            except TimeoutError:
                log.warning("%s ignored SIGTERM; killing it", service.name)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self._procs.items() if p.returncode is None}

    def _write_state(self) -> None:
        """Record the running pids (``var/localstack.json``) for operators and tests."""
        if self._state_file is None:
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pids": self.pids(), "restarts": self.restarts}))
        tmp.replace(self._state_file)


async def shown_url(service: Service) -> str:
    """The address to print for ``service``: the first of its ``pages`` that answers 200.

    Prometheus' alerts page is not where the version installed says it is: Debian's
    packages (2.x, built without the React UI) serve it only as /classic/alerts and answer
    404 on /alerts; upstream 2.x builds (the compose image) and 3.x serve /alerts. So the
    pages are probed once the service is ready, without following redirects. If none
    answers within ``PROBE_SECONDS``, ``url`` itself is printed: every version redirects
    its root to its UI.
    """
    import aiohttp

    if not service.pages:
        return service.url

    async def status(session: aiohttp.ClientSession, path: str) -> int:
        try:
            async with session.get(service.url + path, allow_redirects=False) as resp:
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROBE_SECONDS):
                while service.ready and await status(session, service.ready) != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # another process: only polling tells when it is ready
                for path in service.pages:
                    if await status(session, path) == 200:
                        return service.url + path
    log.warning("%s: none of %s answered; printing its root", service.name, ", ".join(service.pages))
    return service.url


async def announce(services: list[Service], var: Path) -> None:
    """Print where each service answers, once the probed ones (see :func:`shown_url`) are up."""
    urls = await asyncio.gather(*(shown_url(s) for s in services))
    width = max([13, *(len(s.name) + 1 for s in services)])
    lines = [f"  {s.name:<{width}} {url}" for s, url in zip(services, urls, strict=True) if url]
    with contextlib.suppress(OSError):  # a closed stdout must not take the running stack down
        print("\n".join([*lines, f"  logs          {var / 'log'}/<service>.log",
                          "Ctrl-C stops everything."]), flush=True)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def build_services(args: argparse.Namespace, ports: Ports, var: Path) -> list[Service]:
    """The processes of the local stack, in start order."""
    py = sys.executable
    redis_url = f"redis://{LOOPBACK}:{ports.redis}/0"
    common_env = {"REDIS_URL": redis_url, "BYBIT_COINS": args.coins, "LOG_FORMAT": "json"}
    (var / "redis").mkdir(parents=True, exist_ok=True)
    services = [
        Service("redis", [
            args.redis_server, "--port", str(ports.redis), "--bind", LOOPBACK,
            "--dir", str(var / "redis"), "--save", "300 1", "--appendonly", "no",
            "--maxmemory", "512mb", "--maxmemory-policy", "volatile-ttl",
        ], url=redis_url),
    ]
    if args.live:
        upstream = {"BYBIT_WS_URL": "wss://stream.bybit.com/v5/public/option",
                    "BYBIT_REST_URL": "https://api.bybit.com"}
    else:
        services.append(Service("simulator", [
            py, "-m", "simulator", "--host", LOOPBACK, "--port", str(ports.simulator),
            "--coins", args.coins,
        ], url=f"http://{LOOPBACK}:{ports.simulator}/control/state"))
        upstream = {"BYBIT_WS_URL": f"ws://{LOOPBACK}:{ports.simulator}/v5/public/option",
                    "BYBIT_REST_URL": f"http://{LOOPBACK}:{ports.simulator}"}
    services += [
        Service("ingest", [py, "-m", "ingest"], env={**common_env, **upstream}),
        Service("exporter", [py, "-m", "exporter"],
                env={**common_env, "EXPORTER_HOST": LOOPBACK, "EXPORTER_PORT": str(ports.exporter)},
                url=f"http://{LOOPBACK}:{ports.exporter}/metrics"),
        Service("api", [py, "-m", "api"],
                env={**common_env, "API_HOST": LOOPBACK, "API_PORT": str(ports.api)},
                url=f"http://{LOOPBACK}:{ports.api}/api/options/BTC"),
    ]
    services += monitoring_services(args, ports, var)
    return services


def monitoring_services(args: argparse.Namespace, ports: Ports, var: Path) -> list[Service]:
    """Prometheus and Alertmanager with the project's config rendered for loopback targets."""
    from scripts import promconfig

    prom_bin = shutil.which("prometheus")
    am_bin = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    out: list[Service] = []
    if prom_bin is None or am_bin is None:
        log.warning("prometheus or alertmanager not installed: running without them "
                    "(scripts/setup.sh installs them)")
        return out
    monitoring = var / "monitoring"
    monitoring.mkdir(parents=True, exist_ok=True)
    prom_yml = promconfig.write_local_config(
        monitoring, exporter=f"{LOOPBACK}:{ports.exporter}", api=f"{LOOPBACK}:{ports.api}",
        prometheus=f"{LOOPBACK}:{ports.prometheus}", alertmanager=f"{LOOPBACK}:{ports.alertmanager}",
    )
    am_yml = promconfig.write_local_alertmanager_config(monitoring)
    out.append(Service("prometheus", [
        prom_bin, f"--config.file={prom_yml}", f"--storage.tsdb.path={var / 'prometheus'}",
        f"--web.listen-address={LOOPBACK}:{ports.prometheus}", "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=2d",
    ], url=f"http://{LOOPBACK}:{ports.prometheus}", pages=("/alerts", "/classic/alerts"), ready="/-/ready"))
    out.append(Service("alertmanager", [
        am_bin, f"--config.file={am_yml}", f"--storage.path={var / 'alertmanager'}",
        f"--web.listen-address={LOOPBACK}:{ports.alertmanager}", "--cluster.listen-address=",
    ], url=f"http://{LOOPBACK}:{ports.alertmanager}"))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/run",
        description="Run the whole tracker stack locally on loopback, supervised. "
                    "Offline on the simulator by default; --live streams from Bybit mainnet.",
    )
    p.add_argument("--live", action="store_true", help="stream from Bybit mainnet instead of the simulator")
    p.add_argument("--coins", default="BTC,ETH,SOL", help="base coins to track (default %(default)s)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0 = run until Ctrl-C)")
    p.add_argument("--var", type=Path, default=ROOT / "var", help="data and log directory (default var/)")
    for f in dataclasses.fields(Ports):
        p.add_argument(f"--{f.name}-port", type=int, default=f.default, help=f"default {f.default}")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server",
                   help=argparse.SUPPRESS)
    p.add_argument("--ha", action="store_true",
                   help="the HA topology instead (docs/high-availability.md): Redis primary + replica "
                        "under 3 sentinels, 2 ingest, 2 API behind HAProxy on port 5001, 2 Prometheus, "
                        "2 meshed Alertmanagers; logs and data under VAR/ha")
    p.add_argument("--any-ports", action="store_true",
                   help="with --ha: free ports chosen at start (listed, and in VAR/ha/hastack.json) "
                        "instead of the fixed ones")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    if args.ha:
        from scripts.hastack import ha_main

        return await ha_main(args)
    names = [f.name for f in dataclasses.fields(Ports)]
    ports = Ports(**{n: getattr(args, f"{n}_port") for n in names})
    busy = [f"{n} port {getattr(ports, n)}" for n in names
            if (n != "simulator" or not args.live) and port_in_use(getattr(ports, n))]
    if busy:
        print(f"in use already: {', '.join(busy)}. Stop what listens there or pass "
              "--NAME-port (see --help).", file=sys.stderr)
        return 2
    var: Path = args.var
    (var / "log").mkdir(parents=True, exist_ok=True)
    services = build_services(args, ports, var)
    supervisor = Supervisor(services, var / "log", state_file=var / "localstack.json")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    print("Bybit options tracker, local stack (" + ("LIVE Bybit" if args.live else "simulator")
          + "):", flush=True)
    if args.duration > 0:
        loop.call_later(args.duration, supervisor.stop)
    async with asyncio.TaskGroup() as tg:
        listing = tg.create_task(announce(services, var))
        await supervisor.run()
        listing.cancel()
    print("stopped; restarts: " + ", ".join(f"{k}={v}" for k, v in supervisor.restarts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s localstack %(message)s",
                        datefmt="%H:%M:%S")
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
