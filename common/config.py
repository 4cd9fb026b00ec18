"""Configuration: one frozen dataclass, built in one place from environment + YAML.

Environment variables win (12-factor: it is what docker compose passes); an
optional YAML file (``TRACKER_CONFIG=path`` or ``--config path``) supplies the
rest; every knob has a documented default. Nothing else in the project reads
``os.environ``. Each field carries its environment name and a one-line reason in
its metadata, so ``--help``, the README table and the env example are generated
from this file and cannot drift from it.

YAML keys are the field names (``ws_ping_interval: 20``) or the environment names
(``INGEST_PING_INTERVAL: 20``); unknown keys are an error, not a silent typo.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from common import keys
from common.symbols import is_valid_coin

CONFIG_ENV: Final = "TRACKER_CONFIG"
#: Longest INGEST_FLUSH_INTERVAL (seconds): flushing at least four times a second keeps what Redis
#: holds within a few of Bybit's 100 ms pushes of the exchange.
FLUSH_INTERVAL_MAX: Final = 0.25


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range (message names the knob)."""


def _knob(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the stack. Components read the fields they need."""

    # --- shared --------------------------------------------------------------
    redis_url: str = _knob("REDIS_URL", "redis://localhost:6379/0", "Redis holding options, indexes and stats. With REDIS_SENTINELS set, only its database, credentials and scheme (rediss:// for TLS) are used.")
    redis_sentinels: str = _knob("REDIS_SENTINELS", "", "Redis Sentinel addresses (host:port,...). Set: every component asks them for the current primary and follows a failover by itself. Empty: REDIS_URL is used as is.")
    redis_sentinel_service: str = _knob("REDIS_SENTINEL_SERVICE", "tracker", "The name the sentinels monitor (sentinel monitor <name> ...).")
    coins: tuple[str, ...] = _knob("BYBIT_COINS", ("BTC", "ETH", "SOL"), "Base coins to track (comma list). Also the bounded set of `coin` label values.")
    log_level: str = _knob("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _knob("LOG_FORMAT", "json", "`json` (one object per line, for log shippers) or `text` (logfmt-like, for humans).")

    # --- ingest: upstream ----------------------------------------------------------
    ws_url: str = _knob("BYBIT_WS_URL", "wss://stream.bybit.com/v5/public/option", "Bybit's public option WebSocket (testnet: wss://stream-testnet.bybit.com/v5/public/option).")
    rest_url: str = _knob("BYBIT_REST_URL", "https://api.bybit.com", "Bybit's REST base URL (alt. https://api.bytick.com; testnet https://api-testnet.bybit.com).")
    rest_timeout: float = _knob("INGEST_REST_TIMEOUT", 10.0, "Seconds before one REST call is abandoned and retried.")
    rest_page_limit: int = _knob("INGEST_REST_PAGE_LIMIT", 1000, "Instruments per page; 1000 is Bybit's maximum, so the fewest calls.")
    rest_backoff_initial: float = _knob("INGEST_REST_BACKOFF_INITIAL", 0.5, "Seed: first pause (s) after a rate-limit answer.")
    rest_backoff_factor: float = _knob("INGEST_REST_BACKOFF_FACTOR", 1.5, "Seed: pause multiplier per consecutive rate-limit answer.")
    rest_backoff_max: float = _knob("INGEST_REST_BACKOFF_MAX", 10.0, "Seed: longest pause (s) between REST calls.")
    rest_ban_pause: float = _knob("INGEST_REST_BAN_PAUSE", 600.0, "Seconds all REST calls stop after HTTP 403, access too frequent (Bybit: the IP is banned; stop and wait at least 10 minutes).")
    refresh_interval: float = _knob("INGEST_REFRESH_INTERVAL", 300.0, "Seconds between instrument refreshes (new expiries list daily, delivered ones vanish at 08:00 UTC).")

    # --- ingest: WebSocket ---------------------------------------------------------
    subscribe_chunk: int = _knob("INGEST_SUBSCRIBE_CHUNK", 200, "Topics per subscribe request. Bybit allows 2,000 option args and 21,000 characters per connection; 200 topics (~6 kB) per request subscribes a full connection in 10 requests instead of the seed's 400.")
    subscribe_delay: float = _knob("INGEST_SUBSCRIBE_DELAY", 0.1, "Seconds between subscribe requests on one connection: a full connection is subscribed in ~1 s (the seed's 5 per 2 s took 13 min).")
    max_topics_per_connection: int = _knob("INGEST_MAX_TOPICS_PER_CONNECTION", 2000, "Bybit's documented cap on option args per connection.")
    max_args_chars_per_connection: int = _knob("INGEST_MAX_ARGS_CHARS_PER_CONNECTION", 21000, "Bybit's documented cap on the total length of one connection's args.")
    ping_interval: float = _knob("INGEST_PING_INTERVAL", 20.0, "Seconds between Bybit application pings (Bybit recommends 20 s; the seed used 30).")
    ping_timeout: float = _knob("INGEST_PING_TIMEOUT", 10.0, "Seconds to wait for a pong before the connection is declared dead.")
    data_timeout: float = _knob("INGEST_DATA_TIMEOUT", 30.0, "Seconds without any ticker on a subscribed connection before it is declared dead (catches a silent stream whose pongs still flow).")
    max_frame_bytes: int = _knob("INGEST_MAX_FRAME_BYTES", 1048576, "Largest WebSocket frame accepted; larger ones close the connection (counted as frame_too_large).")
    backoff_cap: float = _knob("INGEST_BACKOFF_CAP", 300.0, "Seed: longest reconnect delay (s); backoff is min(cap, 2**attempt) plus 10-30 % jitter.")
    backoff_reset_after: float = _knob("INGEST_BACKOFF_RESET_AFTER", 60.0, "Seconds a connection must stay healthy before its backoff starts again from the first step.")
    max_reconnect_attempts: int = _knob("INGEST_MAX_RECONNECT_ATTEMPTS", 20, "Seed: attempts after which the ingest reports it is stuck (it keeps trying at the cap, it never gives up).")
    circuit_failures: int = _knob("INGEST_CIRCUIT_FAILURES", 5, "Seed: consecutive failures that open a connection's circuit breaker.")
    circuit_recovery: float = _knob("INGEST_CIRCUIT_RECOVERY", 300.0, "Seed: seconds an open breaker waits before a half-open probe.")

    # --- ingest: Redis writes ------------------------------------------------------
    flush_interval: float = _knob("INGEST_FLUSH_INTERVAL", 0.1, "Seconds between pipelined flushes of coalesced tickers (one write per symbol per flush). Longer: fewer writes and less CPU at high push rates, older data in Redis (docs/BENCHMARKS.md, 'Flushing less often'); at most " f"{FLUSH_INTERVAL_MAX:g}.")
    stats_interval: float = _knob("INGEST_STATS_INTERVAL", 1.0, "Seconds between writes of stats:global, per-coin stats and the heartbeat.")
    heartbeat_ttl: float = _knob("INGEST_HEARTBEAT_TTL", 15.0, "Seconds the heartbeat key lives; it vanishes this long after the ingest dies.")
    option_ttl: int = _knob("INGEST_OPTION_TTL", 86400, "Seed: TTL (s) of option hashes (24 h).")
    option_ttl_pressure: int = _knob("INGEST_OPTION_TTL_PRESSURE", 21600, "Seed: TTL (s) under memory pressure (6 h).")
    memory_pressure_bytes: int = _knob("INGEST_MEMORY_PRESSURE_BYTES", 419430400, "Seed: Redis used_memory (400 MB) above which the short TTL applies when Redis has no maxmemory.")
    memory_pressure_ratio: float = _knob("INGEST_MEMORY_PRESSURE_RATIO", 0.7, "Fraction of Redis maxmemory above which the short TTL applies (when maxmemory is set).")
    monotonic_writes: bool = _knob("INGEST_MONOTONIC_WRITES", False, "Write each ticker through a Redis Function that skips it when the stored exchange ts is newer, atomically. Required when two ingest replicas write the same Redis (HA): an older ticker can then never replace a newer one. Costs a Lua call per write (docs/BENCHMARKS.md).")
    ingest_replica: str = _knob("INGEST_REPLICA", keys.DEFAULT_REPLICA, "This ingest's name among the replicas writing one Redis (HA): its heartbeat and counters are kept under it and it is the `replica` label of its metrics. Lower case, digits, - and _, at most 32 characters; give each replica its own. The default suits a single ingest.")
    ingest_workers: int = _knob("INGEST_WORKERS", 1, "Processes the ingest runs, each streaming its own share of the symbols (a stable hash) into the same Redis; a supervisor restarts a worker that dies. Each reports as replica `<INGEST_REPLICA>-w<N>`. Turn it on when one process nears its CPU budget (at Bybit's maximum rate on ~2,000 options one needs ~16 % of a core, each of two ~9 %; without the C scanner ~28 % and ~16 %: docs/BENCHMARKS.md, 'More than one core'); at most 8.")
    native_scan: bool = _knob("INGEST_NATIVE_SCAN", True, "Match and render Bybit's own ticker frames with the ingest's C scanner (ingest/_scan.c, built by scripts/setup.sh and the image) instead of the pure-Python path: the same verdicts and bytes, the ingest's CPU at Bybit's maximum push rate 1.7x lower (docs/ingest.md, 'The C scanner'). Off, or not built (the ingest logs which it uses at start): the pure path.")
    read_hold: float = _knob("INGEST_READ_HOLD", 0.025, "Longest (s) the kernel keeps a connection's received bytes before the ingest reads them (SO_RCVLOWAT), besides a read just before each flush: a batch of frames per wake-up instead of a segment or two, for less CPU at Bybit's maximum push rate (docs/ingest.md, 'Held reads'). What Redis holds, and when, does not change; a frame's recv_ts and exchange lag count from its read, up to this much after its arrival. 0: read as bytes arrive. At most " f"{FLUSH_INTERVAL_MAX:g}.")
    redis_retry_max: float = _knob("INGEST_REDIS_RETRY_MAX", 5.0, "Longest pause (s) between attempts to reach Redis while it is down.")

    # --- exporter ------------------------------------------------------------------
    exporter_host: str = _knob("EXPORTER_HOST", "0.0.0.0", "Address the exporter listens on.")  # noqa: S104 - a container's service port
    exporter_port: int = _knob("EXPORTER_PORT", 9108, "Port of the exporter's /metrics.")
    exporter_redis_timeout: float = _knob("EXPORTER_REDIS_TIMEOUT", 0.5, "Seconds one scrape waits for Redis before answering bybit_redis_up 0.")
    redis_capacity_bytes: int = _knob("REDIS_CAPACITY_BYTES", 0, "Capacity used for memory ratios when Redis maxmemory is 0; 0 means the host's total memory as Redis reports it.")

    # --- api -------------------------------------------------------------------------
    api_host: str = _knob("API_HOST", "0.0.0.0", "Address the API listens on.")  # noqa: S104 - a container's service port
    api_port: int = _knob("API_PORT", 5001, "Port of the options API (the seed's users call :5001/api/options/BTC).")
    api_cache_ttl: float = _knob("API_CACHE_TTL", 1.0, "Seconds one Redis read of a coin serves all requests for it.")
    api_stale_max: float = _knob("API_STALE_MAX", 30.0, "Seconds a cached answer may still be served (marked stale) while Redis fails.")
    api_redis_timeout: float = _knob("API_REDIS_TIMEOUT", 1.0, "Seconds the API waits for Redis before answering 503.")
    api_read_replicas: bool = _knob("API_READ_REPLICAS", False, "With REDIS_SENTINELS: read options from replicas (round robin) instead of the primary. Replicas lag the primary by milliseconds; /readyz still judges the data's age.")
    api_ready_max_staleness: float = _knob("API_READY_MAX_STALENESS", 60.0, "Data older than this (s) makes /readyz answer 503.")


def _parse_value(name: str, env: str, raw: Any, default: Any) -> Any:
    """Convert ``raw`` (a string from the environment or a YAML scalar/list) to the default's type."""
    try:
        if isinstance(default, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            coins = tuple(str(i).strip().upper() for i in items if str(i).strip())
            if not coins:
                raise ConfigError(f"{env} ({name}) must list at least one coin")
            bad = [c for c in coins if not is_valid_coin(c)]
            if bad:
                raise ConfigError(f"{env} ({name}): not a coin: {', '.join(map(repr, bad))}")
            return tuple(dict.fromkeys(coins))
        if isinstance(default, bool):
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(str(raw).strip())
        if isinstance(default, float):
            return float(str(raw).strip())
        value = str(raw).strip()
        if not value:
            raise ConfigError(f"{env} ({name}) must not be empty")
        return value
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        kind = type(default).__name__
        raise ConfigError(f"{env} ({name}) must be a {kind}, got {raw!r}") from exc


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """``"host:port,host:port"`` as addresses; a :class:`ConfigError` naming the knob on bad input."""
    out: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"REDIS_SENTINELS: {item!r} is not host:port")
        out.append((host, int(port)))
    return tuple(dict.fromkeys(out))


#: Worker processes per ingest: each is a replica in the stats contract (keys.MAX_REPLICAS = 16
#: are read), and two ingest replicas of eight workers each fill that.
MAX_INGEST_WORKERS: Final = 8


def worker_replica(replica: str, index: int) -> str:
    """The replica name worker ``index`` of an ingest named ``replica`` reports under."""
    return f"{replica}-w{index}"


def reported_replicas(replica: str, workers: int) -> list[str]:
    """The replica names an ingest named ``replica`` running ``workers`` processes reports under:
    ``replica`` itself for one process, :func:`worker_replica` of each worker for several."""
    return [replica] if workers <= 1 else [worker_replica(replica, i) for i in range(workers)]


def retired_replicas(replica: str, workers: int, listed: Iterable[str]) -> list[str]:
    """The names in ``listed`` an ingest named ``replica`` reported under with another INGEST_WORKERS.

    One process reports as ``replica``, several as ``replica-w<i>`` (:func:`worker_replica`); after
    the count changes, the names the new count does not run would stay listed (and
    IngestReplicaDown firing) for a day. ``replica-w<digits>`` therefore belongs to ``replica``:
    do not give an unrelated replica such a name.
    """
    current = set(reported_replicas(replica, workers))
    family = re.compile(re.escape(replica) + r"(?:-w[0-9]{1,4})?")
    return [name for name in listed if name not in current and family.fullmatch(name)]


def _validate(s: Settings) -> None:
    parse_sentinels(s.redis_sentinels)
    positive = [f.name for f in dataclasses.fields(s) if isinstance(getattr(s, f.name), int | float)
                and not isinstance(getattr(s, f.name), bool)]
    envs = {f.name: f.metadata["env"] for f in dataclasses.fields(s)}
    for name in positive:
        value = getattr(s, name)
        if name in ("redis_capacity_bytes", "read_hold"):  # 0: off
            if value < 0:
                raise ConfigError(f"{envs[name]} must be >= 0, got {value}")
            continue
        if value <= 0:
            raise ConfigError(f"{envs[name]} ({name}) must be > 0, got {value}")
    if s.flush_interval > FLUSH_INTERVAL_MAX:
        raise ConfigError(f"INGEST_FLUSH_INTERVAL must be <= {FLUSH_INTERVAL_MAX:g} s, got {s.flush_interval}")
    if s.read_hold > FLUSH_INTERVAL_MAX:
        raise ConfigError(f"INGEST_READ_HOLD must be <= {FLUSH_INTERVAL_MAX:g} s, got {s.read_hold}")
    if not 0 < s.memory_pressure_ratio <= 1:
        raise ConfigError(f"INGEST_MEMORY_PRESSURE_RATIO must be in (0, 1], got {s.memory_pressure_ratio}")
    if s.option_ttl_pressure > s.option_ttl:
        raise ConfigError("INGEST_OPTION_TTL_PRESSURE must not exceed INGEST_OPTION_TTL")
    if not keys.is_valid_replica(s.ingest_replica):
        raise ConfigError(f"INGEST_REPLICA must match {keys.REPLICA_NAME_PATTERN} (lower case letters, digits, "
                          f"- and _, at most 32 characters), got {s.ingest_replica!r}")
    if s.ingest_workers > MAX_INGEST_WORKERS:
        raise ConfigError(f"INGEST_WORKERS must be at most {MAX_INGEST_WORKERS}, got {s.ingest_workers}")
    if s.ingest_workers > 1 and not keys.is_valid_replica(worker_replica(s.ingest_replica, s.ingest_workers - 1)):
        raise ConfigError(f"INGEST_REPLICA {s.ingest_replica!r} is too long for INGEST_WORKERS={s.ingest_workers}: "
                          f"each worker reports as {worker_replica(s.ingest_replica, s.ingest_workers - 1)!r}, "
                          "at most 32 characters")
    if s.log_format not in {"json", "text"}:
        raise ConfigError(f"LOG_FORMAT must be json or text, got {s.log_format!r}")
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")
    for name in ("exporter_port", "api_port"):
        if not 0 < getattr(s, name) < 65536:
            raise ConfigError(f"{name.upper()} must be a TCP port, got {getattr(s, name)}")


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) and an optional YAML file.

    Raises :class:`ConfigError` with the knob's name on any bad value, so a
    misconfigured container fails at start with a message, not later with a trace.
    """
    environ = os.environ if env is None else env
    path = config_file or environ.get(CONFIG_ENV)
    from_file: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    by_env = {f.metadata["env"]: f.name for f in fields.values()}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of knob: value")
        for key, value in loaded.items():
            name = key if key in fields else by_env.get(str(key))
            if name is None:
                raise ConfigError(f"config file {path}: unknown key {key!r}")
            from_file[name] = value
    values: dict[str, Any] = {}
    for name, f in fields.items():
        env_name = f.metadata["env"]
        if env_name in environ and environ[env_name].strip() != "":
            values[name] = _parse_value(name, env_name, environ[env_name], f.default)
        elif name in from_file:
            values[name] = _parse_value(name, env_name, from_file[name], f.default)
    settings = Settings(**values)
    _validate(settings)
    return settings


def knob_table() -> list[tuple[str, str, str]]:
    """(environment name, default, why) for every knob: the README and ``--help`` use it."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = ",".join(f.default) if isinstance(f.default, tuple) else str(f.default)
        rows.append((f.metadata["env"], default, f.metadata["doc"]))
    return rows


def help_epilog(prefixes: tuple[str, ...]) -> str:
    """Text for an argparse epilog listing the knobs whose env names start with ``prefixes``."""
    lines = ["environment (or YAML keys of the --config file):"]
    for env, default, doc in knob_table():
        if env.startswith(prefixes):
            lines.append(f"  {env}={default}\n      {doc}")
    return "\n".join(lines)

