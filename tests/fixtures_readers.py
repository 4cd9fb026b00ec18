"""Pytest plugin for the readers of Redis (exporter, API): the ingest's layout, and the servers.

- :class:`Layout` writes exactly what :mod:`common.keys` documents (option hashes with
  Bybit's string fields plus ``ts``/``recv_ts``, coin indexes, ``stats:global``, per-coin
  stats, heartbeat, lag histogram), so reader tests can set up any state of the ingest —
  including the broken ones a real ingest would rarely produce on demand.
- :func:`serve_app` runs an aiohttp application on a free loopback port (a real HTTP
  server in the test's event loop);
- ``exporter_factory`` / ``api_factory`` start ``python -m exporter`` / ``python -m api`` as
  subprocesses and wait until they answer ``/healthz``.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from common import errors, keys
from common.symbols import MONTHS, parse_symbol
from tests.fixtures_simulator import TICKER_FIELDS
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    RedisServer,
    free_port,
    http_ok,
    python_env,
    repo_root,
    wait_until,
)


def make_symbols(coin: str, count: int, *, year: int = 27, seed: int = 0) -> list[str]:
    """``count`` distinct well-formed symbols of ``coin`` (calls and puts, a few expiries)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        day = rng.randint(1, 28)
        month = MONTHS[rng.randrange(12)]
        strike = rng.randrange(1, 400) * 500
        kind = rng.choice("CP")
        suffix = rng.choice(("", "", "", "-USDT"))
        symbol = f"{coin}-{day}{month}{year}-{strike}-{kind}{suffix}"
        if symbol not in seen:
            seen.add(symbol)
            out.append(symbol)
    return out


def ticker_fields(symbol: str, rng: random.Random | None = None) -> dict[str, str]:
    """A plausible Bybit ticker (every field a decimal string) for ``symbol``."""
    rng = rng or random.Random(symbol)
    doc = {name: f"{rng.uniform(0, 1000):.4f}" for name in TICKER_FIELDS}
    doc["symbol"] = symbol
    doc["bidPrice"] = "0"  # "0" is legitimate (no bid) and must stay "0"
    return doc


@dataclass
class Layout:
    """Writes the ingest's Redis layout through a synchronous redis-py client."""

    client: Any

    def option(self, symbol: str, fields: Mapping[str, str] | None = None, *, ts_ms: int,
               recv_ms: int | None = None, ttl: int = 86400, index: bool = True) -> dict[str, str]:
        """One option hash (and its coin index entry); returns the fields written."""
        parsed = parse_symbol(symbol)
        assert parsed is not None, symbol
        doc = dict(fields) if fields is not None else ticker_fields(symbol)
        doc[keys.F_OPTION_TS] = str(ts_ms)
        doc[keys.F_OPTION_RECV_TS] = str(recv_ms if recv_ms is not None else ts_ms + 5)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.option_key(symbol), mapping=doc)
        pipe.expire(keys.option_key(symbol), ttl)
        if index:
            pipe.sadd(keys.coin_index_key(parsed.base), symbol)
        pipe.execute()
        return doc

    def options(self, symbols: Sequence[str], *, now: float) -> dict[str, dict[str, str]]:
        """Many option hashes, pipelined; symbol -> fields written."""
        written: dict[str, dict[str, str]] = {}
        pipe = self.client.pipeline(transaction=False)
        ts_ms = int(now * 1000)
        for symbol in symbols:
            parsed = parse_symbol(symbol)
            assert parsed is not None, symbol
            doc = ticker_fields(symbol)
            doc[keys.F_OPTION_TS] = str(ts_ms - 20)
            doc[keys.F_OPTION_RECV_TS] = str(ts_ms)
            pipe.hset(keys.option_key(symbol), mapping=doc)
            pipe.expire(keys.option_key(symbol), 86400)
            pipe.sadd(keys.coin_index_key(parsed.base), symbol)
            written[symbol] = doc
            if len(pipe) >= 3000:
                pipe.execute()
        pipe.execute()
        return written

    def stats(self, replica: str = keys.DEFAULT_REPLICA, /, **fields: Any) -> None:
        """A replica's ``stats:replica:<name>`` as a running ingest writes it (every field), ``fields``
        overriding; the default replica also writes them into ``stats:global``, as the ingest does."""
        doc: dict[str, Any] = {
            keys.F_LAST_UPDATE: 0, keys.F_MESSAGES: 0, keys.F_RECONNECTS: 0, keys.F_CONNECT_FAILURES: 0,
            keys.F_WS_CONNECTIONS: 1, keys.F_WS_CONNECTED: 1, keys.F_CONSECUTIVE_FAILURES: 0,
            keys.F_CIRCUIT_OPEN: 0, keys.F_SUBSCRIPTIONS: 0, keys.F_REST_REQUESTS: 0,
            keys.F_REST_RATE_LIMITED: 0, keys.F_TTL_SECONDS: 86400, keys.F_MEMORY_PRESSURE: 0,
            keys.F_REDIS_WRITES: 0, keys.F_REDIS_FLUSHES: 0, keys.F_PENDING: 0, keys.F_STARTED_AT: 0,
        }
        doc.update({keys.error_field(t): 0 for t in errors.ERROR_TYPES})
        doc.update(fields)
        self.client.hset(keys.replica_stats_key(replica), mapping=doc)
        if replica == keys.DEFAULT_REPLICA:
            self.client.hset(keys.STATS_GLOBAL, mapping=doc)

    def coin_stats(self, coin: str, *, last_update: float, messages: int = 0, tracked: int = 0) -> None:
        self.client.hset(keys.coin_stats_key(coin), mapping={
            keys.F_COIN_LAST_UPDATE: repr(float(last_update)), keys.F_COIN_MESSAGES: messages,
            keys.F_COIN_TRACKED: tracked})

    def heartbeat(self, *, ts: float, rss_bytes: int = 50_000_000, cpu_seconds: float = 1.5,
                  started_at: float | None = None, ttl: float = 15.0,
                  replica: str = keys.DEFAULT_REPLICA) -> None:
        """A replica's heartbeat (with its TTL) and its score in ``ingest:replicas``; the default
        replica also writes ``ingest:heartbeat``, as the ingest does."""
        doc = {keys.F_HB_TS: repr(ts), keys.F_HB_PID: 4242, keys.F_HB_RSS_BYTES: rss_bytes,
               keys.F_HB_CPU_SECONDS: repr(cpu_seconds),
               keys.F_HB_STARTED_AT: repr(started_at if started_at is not None else ts - 60)}
        beat_keys = [keys.replica_heartbeat_key(replica)]
        if replica == keys.DEFAULT_REPLICA:
            beat_keys.append(keys.INGEST_HEARTBEAT)
        for key in beat_keys:
            self.client.hset(key, mapping=doc)
            self.client.pexpire(key, int(ttl * 1000))
        self.client.zadd(keys.INGEST_REPLICAS, {replica: ts})

    def lag(self, observations: Sequence[float], *, replica: str = keys.DEFAULT_REPLICA) -> None:
        """A replica's lag histogram holding these observations (cumulative buckets, as the ingest
        writes); the default replica's also as ``stats:lag``."""
        doc: dict[str, Any] = {}
        for bound in keys.LAG_BUCKETS:
            doc[keys.lag_bucket_field(bound)] = sum(1 for o in observations if o <= bound)
        doc[keys.LAG_INF_FIELD] = len(observations)
        doc[keys.LAG_SUM_FIELD] = repr(float(sum(observations)))
        doc[keys.LAG_COUNT_FIELD] = len(observations)
        self.client.hset(keys.replica_lag_key(replica), mapping=doc)
        if replica == keys.DEFAULT_REPLICA:
            self.client.hset(keys.STATS_LAG, mapping=doc)

    def healthy(self, *, now: float, coins: Sequence[str], per_coin: int = 5) -> dict[str, dict[str, str]]:
        """A running ingest's state: options per coin, stats, fresh heartbeat, lag."""
        written: dict[str, dict[str, str]] = {}
        for i, coin in enumerate(coins):
            written.update(self.options(make_symbols(coin, per_coin, seed=i), now=now))
            self.coin_stats(coin, last_update=now - 1, messages=100 * (i + 1), tracked=per_coin)
        fields: dict[str, Any] = {keys.F_LAST_UPDATE: int(now - 1), keys.F_MESSAGES: 100 * len(coins),
                                  keys.F_STARTED_AT: repr(now - 60)}
        fields.update({keys.messages_field(coin): 100 * (i + 1) for i, coin in enumerate(coins)})
        self.stats(**fields)
        self.heartbeat(ts=now)
        self.lag([0.003, 0.02, 0.2, 1.2])
        return written


@pytest.fixture
def layout(redis_server: RedisServer) -> Layout:
    """A :class:`Layout` on the test's fresh redis-server."""
    return Layout(redis_server.client())


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, **handler_args: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL; cleans up on exit.

    ``handler_args`` go to aiohttp's request handler (e.g. ``max_line_size``).
    """
    runner = web.AppRunner(app, access_log=None, **handler_args)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, LOOPBACK, port).start()
        yield f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_api(redis_url: str, *, coins: Sequence[str] = ("BTC", "ETH", "SOL"),
                    **env: str) -> AsyncIterator[str]:
    """The API application (settings from ``env``) on a free loopback port; yields its URL."""
    from api.app import MAX_LINE_SIZE, build_app
    from common.config import load_settings

    settings = load_settings(env={"REDIS_URL": redis_url, "BYBIT_COINS": ",".join(coins), **env})
    async with serve_app(build_app(settings), max_line_size=MAX_LINE_SIZE,
                         max_field_size=MAX_LINE_SIZE) as url:
        yield url


@dataclass
class ServiceHandle:
    """A ``python -m exporter`` / ``python -m api`` subprocess on a loopback port."""

    process: ManagedProcess
    url: str

    def stop(self) -> int | None:
        return self.process.stop()

    def log_text(self) -> str:
        return self.process.log_text()


def _service_factory(tmp_path: Path, component: str, port_env: str,
                     host_env: str) -> Iterator[Callable[..., ServiceHandle]]:
    handles: list[ServiceHandle] = []

    def factory(*, redis_url: str, coins: Sequence[str] = ("BTC", "ETH", "SOL"),
                env: Mapping[str, str] | None = None) -> ServiceHandle:
        port = free_port()
        overrides = {"REDIS_URL": redis_url, "BYBIT_COINS": ",".join(coins), port_env: str(port),
                     host_env: LOOPBACK, "LOG_FORMAT": "text", **(env or {})}
        proc = ManagedProcess([sys.executable, "-m", component], tmp_path / f"{component}-{port}.log",
                              env=python_env(**overrides), cwd=str(repo_root()))
        handle = ServiceHandle(proc, f"http://{LOOPBACK}:{port}")
        handles.append(handle)
        proc.start()

        def ready() -> bool:
            if not proc.running:
                raise AssertionError(f"{component} exited early; log:\n{proc.log_text()[-3000:]}")
            return http_ok(handle.url + "/healthz")

        wait_until(ready, timeout=30, what=f"{component} on port {port}")
        return handle

    try:
        yield factory
    finally:
        for handle in handles:
            handle.stop()


@pytest.fixture
def exporter_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceHandle]]:
    """Start ``python -m exporter``: ``factory(*, redis_url, coins=..., env=None)``."""
    yield from _service_factory(tmp_path, "exporter", "EXPORTER_PORT", "EXPORTER_HOST")


@pytest.fixture
def api_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceHandle]]:
    """Start ``python -m api``: ``factory(*, redis_url, coins=..., env=None)``."""
    yield from _service_factory(tmp_path, "api", "API_PORT", "API_HOST")


@dataclass(frozen=True)
class Exposition:
    """A parsed Prometheus text exposition: families by name and samples by (name, labels)."""

    text: str
    types: dict[str, str]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(lbls)[label] for (n, lbls) in self.samples if n == name and label in dict(lbls)}

    def names(self) -> set[str]:
        return {n for (n, _) in self.samples}


def parse_exposition(text: str) -> Exposition:
    """Parse the text format with prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Exposition(text, types, samples)
