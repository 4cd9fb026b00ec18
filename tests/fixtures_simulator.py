"""Pytest plugin: the Bybit V5 option simulator as a real subprocess on a free loopback port.

Other components' tests depend on this API (see docs/simulator.md). The handle talks to the
simulator's ``/control/`` API with ``urllib`` — synchronous on purpose, so sync tests call it
directly and async tests can wrap a call in ``asyncio.to_thread`` when they care about blocking.
"""

from __future__ import annotations

import json
import math
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from common.symbols import is_valid_symbol
from tests.servers import LOOPBACK, ManagedProcess, free_port, python_env, repo_root, wait_until

DEFAULT_COINS: tuple[str, ...] = ("BTC", "ETH", "SOL")
#: Every field of a Bybit option ticker push (WebSocket names), all strings.
TICKER_FIELDS: tuple[str, ...] = (
    "symbol", "bidPrice", "bidSize", "bidIv", "askPrice", "askSize", "askIv", "lastPrice",
    "highPrice24h", "lowPrice24h", "markPrice", "indexPrice", "markPriceIv", "underlyingPrice",
    "openInterest", "turnover24h", "volume24h", "totalVolume", "totalTurnover", "delta", "gamma",
    "vega", "theta", "predictedDeliveryPrice", "change24h",
)
_DECIMAL = re.compile(r"^-?[0-9]{1,20}(\.[0-9]{1,12})?$")
_YEAR_2000_MS = 946_684_800_000
_YEAR_2100_MS = 4_102_444_800_000


def ticker_problem(raw: str | bytes) -> str | None:
    """Why ``raw`` is not a well-formed Bybit option ticker push, or None when it is one.

    A strict test oracle (not the ingest's validator): JSON object with ``id``, ``topic``
    (``tickers.<valid symbol>``), integer ``ts`` within this century, ``type: snapshot`` and a
    ``data`` object holding every ticker field as a finite decimal string, whose symbol matches
    the topic.
    """
    try:
        doc = json.loads(raw)
    except ValueError:
        return "bad json"
    if not isinstance(doc, dict):
        return "not an object"
    topic, data, ts = doc.get("topic"), doc.get("data"), doc.get("ts")
    if not isinstance(topic, str) or not topic.startswith("tickers."):
        return "bad topic"
    if not is_valid_symbol(topic[len("tickers."):]):
        return "bad symbol in topic"
    if doc.get("type") != "snapshot" or not isinstance(doc.get("id"), str):
        return "bad envelope"
    if isinstance(ts, bool) or not isinstance(ts, int) or not _YEAR_2000_MS < ts < _YEAR_2100_MS:
        return "bad ts"
    if not isinstance(data, dict):
        return "data not an object"
    for name in TICKER_FIELDS:
        value = data.get(name)
        if not isinstance(value, str):
            return f"{name} missing or not a string"
        if name != "symbol" and (not _DECIMAL.match(value) or not math.isfinite(float(value))):
            return f"{name} not a finite decimal"
    if data["symbol"] != topic[len("tickers."):]:
        return "topic/symbol mismatch"
    return None


class SimulatorError(AssertionError):
    """The simulator answered a control call with an error (the message carries its answer)."""


class SimulatorHandle:
    """A running ``python -m simulator`` and its control API.

    ``stop()`` and ``start()`` restart it on the same port (the market and listings start over,
    as after an exchange restart).
    """

    def __init__(self, *, port: int, argv: Sequence[str], log_path: Path) -> None:
        self.port = port
        self.rest_url = f"http://{LOOPBACK}:{port}"
        self.ws_url = f"ws://{LOOPBACK}:{port}/v5/public/option"
        self.log_path = log_path
        self._argv = list(argv)
        self._proc: ManagedProcess | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the subprocess and wait until ``/control/state`` answers."""
        if self._proc is not None and self._proc.running:
            return
        self._proc = ManagedProcess(self._argv, self.log_path, env=python_env(), cwd=str(repo_root()))
        self._proc.start()
        proc = self._proc

        def ready() -> bool:
            if not proc.running:
                raise AssertionError(f"simulator exited early; log:\n{proc.log_text()[-4000:]}")
            try:
                self.state()
            except (OSError, SimulatorError):
                return False
            return True

        wait_until(ready, timeout=30, what=f"simulator on port {self.port} (log: {self.log_path})")

    def stop(self) -> int | None:
        """SIGTERM the subprocess (SIGKILL after 5 s), wait for it; its exit code."""
        return self._proc.stop() if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def log_text(self) -> str:
        return self._proc.log_text() if self._proc is not None else ""

    # --- control API -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.rest_url + path, data=data, method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise SimulatorError(f"{method} {path} -> HTTP {exc.code}: {exc.read()[:500]!r}") from exc

    def state(self) -> dict[str, Any]:
        """Config, faults and counters (connections, frames sent, pings answered...)."""
        result: dict[str, Any] = self._call("GET", "/control/state")
        return result

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change some fault switches (see docs/simulator.md); returns all faults now in force."""
        result: dict[str, Any] = self._call("POST", "/control/faults", faults)
        return result

    def clear_faults(self) -> None:
        self._call("POST", "/control/faults/clear", {})

    def drop_all(self) -> None:
        """Abort every WebSocket connection now (clients see an abnormal close, 1006)."""
        self._call("POST", "/control/drop", {})

    def truth(self, coin: str | None = None) -> dict[str, dict[str, Any]]:
        """symbol -> {"ts": ms, "data": {...}}: the last well-formed ticker frame sent per symbol."""
        path = "/control/truth" + (f"?coin={coin}" if coin else "")
        symbols: dict[str, dict[str, Any]] = self._call("GET", path)["symbols"]
        return symbols

    def instruments(self) -> dict[str, list[str]]:
        """coin -> symbols trading right now (status Trading or Delivering), in REST order.

        These are what a client streams. REST ``instruments-info`` also lists a few PreLaunch
        instruments per coin by default, as Bybit does: see :meth:`prelaunch`.
        """
        coins: dict[str, list[str]] = self._call("GET", "/control/instruments")["coins"]
        return coins

    def prelaunch(self) -> dict[str, list[str]]:
        """coin -> symbols listed as PreLaunch (in instruments-info, not trading yet)."""
        coins: dict[str, list[str]] = self._call("GET", "/control/instruments")["prelaunch"]
        return coins

    def list_new(self, coin: str, count: int) -> list[str]:
        """List ``count`` new instruments of ``coin``; returns their symbols."""
        symbols: list[str] = self._call("POST", "/control/list", {"coin": coin, "count": count})["symbols"]
        return symbols

    def deliver(self, coin: str | None = None, count: int = 1,
                symbols: list[str] | None = None) -> list[str]:
        """Deliver (delist) ``symbols``, or the ``count`` nearest-expiry instruments of ``coin``."""
        body: dict[str, Any] = {"symbols": symbols} if symbols is not None else {"coin": coin, "count": count}
        delivered: list[str] = self._call("POST", "/control/deliver", body)["symbols"]
        return delivered


def simulator_argv(*, port: int, coins: Sequence[str], instruments_per_coin: int | None,
                   push_interval: float, seed: int, extra_args: Sequence[str]) -> list[str]:
    """The command line of ``python -m simulator`` for these options."""
    argv = [
        sys.executable, "-m", "simulator", "--host", LOOPBACK, "--port", str(port),
        "--coins", ",".join(coins), "--push-interval", str(push_interval), "--seed", str(seed),
        "--log-format", "text",
    ]
    if instruments_per_coin is not None:
        argv += ["--instruments-per-coin", str(instruments_per_coin)]
    return argv + list(extra_args)


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator[Callable[..., SimulatorHandle]]:
    """Start simulators: ``factory(*, coins, instruments_per_coin, push_interval, seed, extra_args)``.

    Each call starts a subprocess on a free port and returns its handle once ``/control/state``
    answers; every one is stopped at teardown.
    """
    handles: list[SimulatorHandle] = []

    def factory(*, coins: Sequence[str] = DEFAULT_COINS, instruments_per_coin: int | None = None,
                push_interval: float = 1.0, seed: int = 1,
                extra_args: Sequence[str] = ()) -> SimulatorHandle:
        port = free_port()
        argv = simulator_argv(port=port, coins=coins, instruments_per_coin=instruments_per_coin,
                              push_interval=push_interval, seed=seed, extra_args=extra_args)
        handle = SimulatorHandle(port=port, argv=argv, log_path=tmp_path / f"simulator-{port}.log")
        handles.append(handle)
        handle.start()
        return handle

    try:
        yield factory
    finally:
        for handle in handles:
            handle.stop()


@pytest.fixture
def simulator(simulator_factory: Callable[..., SimulatorHandle]) -> SimulatorHandle:
    """A simulator with the defaults: BTC, ETH, SOL, ~2,000 instruments, a push per second."""
    return simulator_factory()
