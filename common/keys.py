"""The Redis key layout: the one place that spells a key.

The ingest writes these keys, the exporter and the API read them, and shell tools
(health checks, backups) rely on them, so they are a public contract: change one
only together with the docs that describe it (docs/ingest.md, docs/metrics.md)
and the tests that read it.

Every function here takes an already *validated* coin or symbol (see
:mod:`common.symbols`); user input never reaches this module unchecked, and no
function here returns a pattern.
"""

from __future__ import annotations

import re
from typing import Final

#: Prefix of the latest-ticker hash of one option: ``option:BTC-27DEC26-100000-C``.
OPTION_PREFIX: Final = "option:"

#: Fields the ingest adds to an option hash besides Bybit's own ticker fields
#: (which are stored with Bybit's names and string values exactly as received):
#: the frame's exchange timestamp in ms, and the arrival time in ms.
F_OPTION_TS: Final = "ts"
F_OPTION_RECV_TS: Final = "recv_ts"

#: Hash of the ingest's global counters and connection state (field names below).
STATS_GLOBAL: Final = "stats:global"

#: Hash of the exchange-lag histogram (arrival time minus the frame's ``ts``).
#: Fields: ``le:<bound>`` cumulative counts for each bound in :data:`LAG_BUCKETS`,
#: ``le:+Inf``, ``sum`` (seconds, float) and ``count``.
STATS_LAG: Final = "stats:lag"

#: Hash written every stats interval with a short TTL, so that it vanishes when the
#: ingest dies. Fields: :data:`HEARTBEAT_FIELDS`. Since ingest replicas (HA) this is the
#: single-node copy written only by the replica named :data:`DEFAULT_REPLICA`; readers
#: that know replicas read :func:`replica_heartbeat_key` (same fields).
INGEST_HEARTBEAT: Final = "ingest:heartbeat"

# --- ingest replicas ------------------------------------------------------------
# Several ingest processes (replicas, HA) may write one Redis. Each writes its own
# heartbeat, counters and lag histogram under its name (INGEST_REPLICA), because two
# processes writing one hash of absolute counters would overwrite each other's totals
# (a counter that jumps between two values reads as a reset every second). What stays
# shared is about the data, not the writer: the newest ``last_update`` (raised to the
# maximum, never lowered, whichever replica wrote it) and the coin indexes.

#: The name of a replica that sets no INGEST_REPLICA: single-node deployments. This
#: replica (and only this one) also keeps the single-node keys (``stats:global``'s
#: counters, ``stats:lag``, ``ingest:heartbeat``, ``stats:coin:<COIN>``'s ``messages`` and
#: ``tracked``) written exactly as before replicas existed, so shell scripts and older
#: readers keep working; with two named replicas nobody overwrites them in turn.
DEFAULT_REPLICA: Final = "main"

#: A replica name: it becomes a key suffix and the ``replica`` label value, so it is
#: short, lower case and unambiguous. The exporter ignores a member that does not match.
REPLICA_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_REPLICA_NAME: Final = re.compile(REPLICA_NAME_PATTERN)

#: Sorted set: member a replica name, score the epoch seconds (float) of its newest
#: heartbeat. How the exporter and the health check find the replicas without a key walk;
#: a member that stopped heartbeating stays :data:`REPLICA_RETENTION_SECONDS` (so that
#: "replica down" can be seen and alerted on), then the writers prune it.
INGEST_REPLICAS: Final = "ingest:replicas"

#: How long a replica that stopped heartbeating is still listed (and its stats hashes
#: kept): a day, long enough for the warning to be handled; forget one sooner with
#: ``ZREM ingest:replicas <name>`` (docs/runbooks/IngestReplicaDown.md). The names of workers
#: a changed INGEST_WORKERS no longer runs are forgotten by the ingest itself
#: (:func:`common.config.retired_replicas`).
REPLICA_RETENTION_SECONDS: Final = 86400.0

#: At most this many replicas are read per scrape (the newest heartbeats): bounds the
#: exporter's round trip and the cardinality of the ``replica`` label.
MAX_REPLICAS: Final = 16

# --- fields of ``ingest:heartbeat`` (the ingest writes all of them, every interval) ---
F_HB_TS: Final = "ts"  # epoch seconds (float) of this write: the heartbeat's age is now minus it
F_HB_PID: Final = "pid"  # the ingest's process id
F_HB_RSS_BYTES: Final = "rss_bytes"  # the ingest's resident memory
F_HB_CPU_SECONDS: Final = "cpu_seconds"  # the ingest's user + system CPU seconds (float)
F_HB_STARTED_AT: Final = "started_at"  # epoch seconds (float) the ingest started
HEARTBEAT_FIELDS: Final[tuple[str, ...]] = (
    F_HB_TS, F_HB_PID, F_HB_RSS_BYTES, F_HB_CPU_SECONDS, F_HB_STARTED_AT,
)

# --- fields of ``stats:global`` -------------------------------------------------
#: Integer epoch seconds of the newest ticker written (shell scripts do arithmetic on it).
F_LAST_UPDATE: Final = "last_update"
F_MESSAGES: Final = "messages"  # ticker frames accepted, all coins
F_RECONNECTS: Final = "ws_reconnects"  # successful re-connections after a drop
F_CONNECT_FAILURES: Final = "ws_connect_failures"  # failed connection attempts
F_WS_CONNECTIONS: Final = "ws_connections"  # connections the shard plan wants
F_WS_CONNECTED: Final = "ws_connected"  # connections currently open and subscribed
F_CONSECUTIVE_FAILURES: Final = "ws_consecutive_failures"  # max over connections
F_CIRCUIT_OPEN: Final = "ws_circuit_open"  # number of connections whose breaker is open
F_SUBSCRIPTIONS: Final = "subscriptions"  # topics currently subscribed
F_REST_REQUESTS: Final = "rest_requests"
F_REST_RATE_LIMITED: Final = "rest_rate_limited"
F_TTL_SECONDS: Final = "ttl_seconds"  # TTL currently applied to option hashes
F_MEMORY_PRESSURE: Final = "memory_pressure"  # 1 while the short TTL is in force
F_REDIS_WRITES: Final = "redis_writes"  # option hashes written
F_REDIS_FLUSHES: Final = "redis_flushes"  # pipelined batches executed
F_PENDING: Final = "pending"  # symbols held in memory waiting for Redis
F_STARTED_AT: Final = "started_at"
#: Per-error-type counters are fields named ``errors:<type>``; see :mod:`common.errors`.
ERRORS_FIELD_PREFIX: Final = "errors:"
#: Per-coin message counters are fields named ``messages:<COIN>``.
MESSAGES_FIELD_PREFIX: Final = "messages:"

# --- fields of ``stats:coin:<COIN>`` --------------------------------------------
F_COIN_LAST_UPDATE: Final = "last_update"  # epoch seconds (float) of the coin's newest ticker
F_COIN_MESSAGES: Final = "messages"
F_COIN_TRACKED: Final = "tracked"  # symbols in the coin's index

#: Upper bounds (seconds) of the exchange-lag histogram buckets. Shared by the
#: ingest (which counts) and the exporter (which exposes), so they always agree.
LAG_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


def option_key(symbol: str) -> str:
    """Hash holding the latest ticker of ``symbol`` (Bybit's field names, string values)."""
    return OPTION_PREFIX + symbol


def coin_index_key(coin: str) -> str:
    """Set of the symbols of ``coin`` the ingest currently tracks."""
    return f"options:{coin}"


def coin_stats_key(coin: str) -> str:
    """Hash of one coin's stats: last update, messages, tracked count."""
    return f"stats:coin:{coin}"


def error_field(error_type: str) -> str:
    """Field of ``stats:global`` counting errors of one type."""
    return ERRORS_FIELD_PREFIX + error_type


def messages_field(coin: str) -> str:
    """Field of ``stats:global`` counting accepted ticker frames of one coin."""
    return MESSAGES_FIELD_PREFIX + coin


def lag_bucket_field(bound: float) -> str:
    """Field of ``stats:lag`` holding the cumulative count for ``le=bound``."""
    return f"le:{bound:g}"


LAG_INF_FIELD: Final = "le:+Inf"
LAG_SUM_FIELD: Final = "sum"
LAG_COUNT_FIELD: Final = "count"


def is_valid_replica(name: str) -> bool:
    """True when ``name`` may be a replica name (key suffix and ``replica`` label value)."""
    return _REPLICA_NAME.fullmatch(name) is not None


def replica_heartbeat_key(replica: str) -> str:
    """Hash of one replica's heartbeat (:data:`HEARTBEAT_FIELDS`), expiring INGEST_HEARTBEAT_TTL
    after its last write: ``ingest:heartbeat:<replica>``."""
    return f"{INGEST_HEARTBEAT}:{replica}"


def replica_stats_key(replica: str) -> str:
    """Hash of one replica's counters and connection state: ``stats:replica:<replica>``.

    The fields of ``stats:global`` (``messages``, ``ws_connected``, ``errors:<type>``,
    ``messages:<COIN>``...), plus ``last_update``: this replica's newest write.
    """
    return f"stats:replica:{replica}"


def replica_lag_key(replica: str) -> str:
    """Hash of one replica's exchange-lag histogram (fields as ``stats:lag``): ``stats:lag:<replica>``."""
    return f"{STATS_LAG}:{replica}"
