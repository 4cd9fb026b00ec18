"""Copy Redis keys out and back with DUMP / RESTORE, each with its absolute expiry.

DUMP/RESTORE works on any reachable Redis (a container without a published port, a managed
service without file access) and restores into a running server without a restart, which an
RDB file cannot. The copy is not one point in time across keys; for a cache of the exchange
that the ingest refreshes continuously, that is fine. Expiries are kept as absolute times
(RESTORE ... ABSTTL), so an option hash that would have expired by the time of the restore
is not brought back.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from common import keys

#: Keys copied per pipelined round trip.
BATCH = 500
#: Never restored: a heartbeat brought back from a backup would announce a live ingest that is not,
#: and the replica list would bring back replicas of another time (each live replica re-lists itself
#: within a second). Per-replica heartbeats are ``ingest:heartbeat:<replica>`` (:data:`EXCLUDED_PREFIXES`).
EXCLUDED = frozenset({keys.INGEST_HEARTBEAT.encode(), keys.INGEST_REPLICAS.encode()})
EXCLUDED_PREFIXES: tuple[bytes, ...] = (keys.replica_heartbeat_key("").encode(),)


def excluded(key: bytes) -> bool:
    """True for the liveness keys a backup leaves out (:data:`EXCLUDED`, :data:`EXCLUDED_PREFIXES`)."""
    return key in EXCLUDED or key.startswith(EXCLUDED_PREFIXES)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key's serialized value (Redis' DUMP format) and its expiry (epoch ms, None: persistent)."""

    key: bytes
    dump: bytes
    expire_at_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {"key": base64.b64encode(self.key).decode(), "dump": base64.b64encode(self.dump).decode(),
                "expire_at_ms": self.expire_at_ms}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> KeyRecord:
        expire = doc["expire_at_ms"]
        return cls(base64.b64decode(doc["key"]), base64.b64decode(doc["dump"]),
                   None if expire is None else int(expire))


def _batches(client: redis.Redis) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in client.scan_iter(count=BATCH):
        if excluded(key):
            continue
        batch.append(key)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def dump_keys(client: redis.Redis) -> Iterator[KeyRecord]:
    """Every key of the database except the liveness keys (:func:`excluded`), read with SCAN (never KEYS)."""
    for batch in _batches(client):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.dump(key)
            # Redis >= 7.0; absolute, so no clock skew. redis-py takes bytes keys, its annotation says str.
            pipe.pexpiretime(key)  # type: ignore[arg-type]
        results = pipe.execute()
        for i, key in enumerate(batch):
            dumped, expire_at = results[2 * i], results[2 * i + 1]
            if dumped is None or expire_at == -2:
                continue  # expired or deleted between SCAN and DUMP
            yield KeyRecord(key, dumped, None if expire_at == -1 else int(expire_at))


def restore_keys(client: redis.Redis, records: Iterable[KeyRecord]) -> int:
    """RESTORE ``records`` (replacing existing keys) with their absolute expiries; returns how many."""
    sent = 0
    pipe = client.pipeline(transaction=False)
    for record in records:
        if record.expire_at_ms is None:
            pipe.restore(record.key, 0, record.dump, replace=True)
        else:
            pipe.restore(record.key, record.expire_at_ms, record.dump, replace=True, absttl=True)
        sent += 1
        if sent % BATCH == 0:
            pipe.execute()
    pipe.execute()
    return sent
