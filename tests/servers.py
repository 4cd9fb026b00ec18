"""Real servers for tests: redis-server, prometheus, alertmanager, promtool and amtool.

Each server starts on a free loopback port in a temporary directory and is
stopped afterwards. Local binaries (Debian's packages, installed by
``scripts/setup.sh``) come first; where one is missing and a Docker engine answers,
the official image runs through testcontainers instead; otherwise the test is
skipped with the reason. No fake stands in for any of them.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts: reap your own children first)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ConnectionError, ValueError, KeyError) as exc:
            last_exc = exc
        else:
            if result:
                return result
        time.sleep(interval)
    detail = f" (last error: {last_exc!r})" if last_exc else ""
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def docker_available() -> bool:
    """True when testcontainers can reach a Docker engine."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def binary_or_skip(*names: str) -> str:
    """Path of the first of ``names`` on PATH, or skip the test saying how to install it."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"{names[0]} not installed (scripts/setup.sh installs Debian's packages)")


@dataclass
class ManagedProcess:
    """A child process with its log file, stopped with SIGTERM then SIGKILL."""

    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            list(self.argv), stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
            start_new_session=True,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class RedisServer:
    """A real redis-server on a loopback port, without persistence.

    ``kill()`` and ``start()`` let a test take Redis away mid-stream and bring it
    back on the same port, as a restart in production would (empty, since there is
    no persistence, unless ``appendonly`` is asked for).
    """

    def __init__(self, workdir: Path, *, port: int | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.binary = binary_or_skip("redis-server")
        self.port = port or free_port()
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes",
            *self.extra_args,
        ]
        self._proc = ManagedProcess(argv, self.workdir / "redis.log")
        self._proc.start()
        wait_until(self.ping, timeout=10, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: Redis vanishes at once, as in a crash."""
        if self._proc is not None:
            self._proc.kill()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> Any:
        """A synchronous redis-py client (decode_responses) for assertions."""
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)


@contextlib.contextmanager
def redis_container() -> Iterator[str]:
    """The official redis image via testcontainers; yields its URL."""
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7.2-alpine") as c:
        yield f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/0"


class PrometheusServer:
    """A real prometheus with a given config on a loopback port."""

    def __init__(self, workdir: Path, config: Path, *, extra_args: Sequence[str] = ()) -> None:
        self.binary = binary_or_skip("prometheus")
        self.port = free_port()
        self.workdir = workdir
        self.config = config
        self.extra_args = list(extra_args)
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        data = self.workdir / "prometheus-data"
        data.mkdir(exist_ok=True)
        argv = [
            self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={data}",
            f"--web.listen-address={LOOPBACK}:{self.port}", "--web.enable-lifecycle",
            "--log.level=warn", *self.extra_args,
        ]
        self._proc = ManagedProcess(argv, self.workdir / "prometheus.log")
        self._proc.start()
        wait_until(lambda: http_ok(self.url + "/-/ready"), timeout=30,
                   what=f"prometheus ready on {self.url} (log: {self.workdir}/prometheus.log)")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def log_text(self) -> str:
        return self._proc.log_text() if self._proc else ""


class AlertmanagerServer:
    """A real prometheus-alertmanager with a given config on a loopback port.

    Alone by default (gossip off). ``cluster_peers`` (``host:port`` of other instances' cluster
    ports) makes it a cluster member listening for gossip on ``cluster_port``; construct every
    member first, then pass each the others' ``cluster_address``.
    """

    def __init__(self, workdir: Path, config: Path, *, extra_args: Sequence[str] = (),
                 cluster_peers: Sequence[str] | None = None) -> None:
        self.binary = binary_or_skip("prometheus-alertmanager", "alertmanager")
        self.port = free_port()
        self.cluster_port = free_port()
        self.workdir = workdir
        self.config = config
        self.extra_args = list(extra_args)
        self.cluster_peers = None if cluster_peers is None else list(cluster_peers)
        self._proc: ManagedProcess | None = None

    @property
    def cluster_address(self) -> str:
        return f"{LOOPBACK}:{self.cluster_port}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        data = self.workdir / "alertmanager-data"
        data.mkdir(exist_ok=True)
        if self.cluster_peers is None:
            cluster = ["--cluster.listen-address="]  # a lone test instance: no gossip with anyone
        else:
            cluster = [f"--cluster.listen-address={self.cluster_address}",
                       *(f"--cluster.peer={peer}" for peer in self.cluster_peers)]
        argv = [
            self.binary, f"--config.file={self.config}", f"--storage.path={data}",
            f"--web.listen-address={LOOPBACK}:{self.port}", *cluster, "--log.level=warn", *self.extra_args,
        ]
        self._proc = ManagedProcess(argv, self.workdir / "alertmanager.log")
        self._proc.start()
        wait_until(lambda: http_ok(self.url + "/-/ready"), timeout=30,
                   what=f"alertmanager ready on {self.url} (log: {self.workdir}/alertmanager.log)")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        """SIGKILL: gone at once, as in a crash (no goodbye to its cluster peers)."""
        if self._proc is not None:
            self._proc.kill()

    def log_text(self) -> str:
        return self._proc.log_text() if self._proc else ""


def run_tool(binary_names: Sequence[str], args: Sequence[str], *, cwd: str | Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run promtool or amtool (first name found) and return the completed process."""
    binary = binary_or_skip(*binary_names)
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False,
    )


def promtool(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_tool(("promtool",), args, cwd=cwd)


def amtool(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_tool(("amtool",), args, cwd=cwd)


def make_workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def python_env(**overrides: str) -> dict[str, str]:
    """Environment for ``python -m COMPONENT``: the repo on PYTHONPATH, overrides applied."""
    ours = ("BYBIT_", "INGEST_", "API_", "EXPORTER_", "REDIS_", "TRACKER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env["PYTHONPATH"] = str(repo_root())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


_log = logging.getLogger("tests.webhook")


class WebhookReceiver:
    """Alertmanager's webhook target on loopback: an HTTP server thread keeping every notification.

    Tests and drills read it to say which alerts reached a receiver (not only which fired in
    Prometheus), through the project's real routing and inhibition.
    """

    def __init__(self) -> None:
        self._notifications: list[dict[str, Any]] = []
        self._arrivals: list[float] = []  # time.monotonic() of each notification
        self._lock = threading.Lock()
        self.bad_requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    doc = json.loads(body)
                except ValueError as exc:
                    with receiver._lock:
                        receiver.bad_requests += 1
                    _log.warning("webhook got a body that is not JSON: %s", exc)
                    self.send_response(400)
                else:
                    with receiver._lock:
                        receiver._notifications.append(doc)
                        receiver._arrivals.append(time.monotonic())
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the caller reports what it received."""

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/alertmanager"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification so far, with the notification's receiver added."""
        with self._lock:
            return [{**alert, "receiver": n.get("receiver", "")}
                    for n in self._notifications for alert in n.get("alerts", [])]

    @property
    def notifications(self) -> list[dict[str, Any]]:
        """Every notification body received so far (a copy)."""
        with self._lock:
            return list(self._notifications)

    def arrivals(self, alertname: str, status: str = "firing") -> list[float]:
        """When (``time.monotonic()``) each notification holding ``alertname`` with ``status`` came."""
        with self._lock:
            return [t for t, n in zip(self._arrivals, self._notifications, strict=True)
                    if any(a["labels"]["alertname"] == alertname and a.get("status") == status
                           for a in n.get("alerts", []))]

    def timeline(self, status: str = "firing") -> list[tuple[float, str, str]]:
        """(arrival ``time.monotonic()``, receiver, alertname) of every alert notified with ``status``."""
        with self._lock:
            return [(t, n.get("receiver", ""), a["labels"]["alertname"])
                    for t, n in zip(self._arrivals, self._notifications, strict=True)
                    for a in n.get("alerts", []) if a.get("status") == status]

    def find(self, alertname: str, status: str) -> dict[str, Any] | None:
        """The first alert notified as ``alertname`` with ``status``, if any."""
        return next((a for a in self.alerts()
                     if a["labels"]["alertname"] == alertname and a.get("status") == status), None)

    def names(self, status: str = "firing") -> set[str]:
        """Alert names notified with ``status`` (``firing`` or ``resolved``)."""
        return {a["labels"]["alertname"] for a in self.alerts() if a.get("status") == status}


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server took it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: Any  # email.message.EmailMessage (policy.default), parsed from the DATA bytes
    arrived: float  # time.monotonic()


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping every message it accepts.

    Plain SMTP without TLS or authentication: what the loopback Alertmanager variant sends to
    (``promconfig.write_local_alertmanager_config(smarthost=...)``). It runs aiosmtpd's own
    asyncio loop in a thread; tests read :attr:`mails`.
    """

    def __init__(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            pytest.skip("aiosmtpd not installed (pip install -e '.[dev]')")
        self._mails: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self.port = free_port()
        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                import email
                from email import policy

                raw = envelope.original_content or envelope.content
                message = email.message_from_bytes(raw, policy=policy.default)
                mail = ReceivedMail(str(envelope.mail_from), tuple(str(r) for r in envelope.rcpt_tos),
                                    message, time.monotonic())
                with server._lock:
                    server._mails.append(mail)
                return "250 Message accepted for delivery"

        self._controller = Controller(Handler(), hostname=LOOPBACK, port=self.port)

    @property
    def smarthost(self) -> str:
        """``host:port`` as Alertmanager's smtp_smarthost wants it."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def mails(self) -> list[ReceivedMail]:
        """Every message accepted so far (a copy), in order of arrival."""
        with self._lock:
            return list(self._mails)
