"""Every Redis call of the ingest (redis.asyncio with hiredis), each bounded by a timeout.

Two paths:

- the hot one, :meth:`Store.execute` / :meth:`Store.execute_slices`: a batch of RESP
  commands (:mod:`ingest.resp`) written to one pooled connection slice by slice as they are
  rendered, then every reply read back. An error reply (``WRONGTYPE``, ``OOM``) fails only its own command;
  the caller learns which ones failed;
- the rest (stats, heartbeat, INFO): redis-py's pipeline, a few commands per second.

Connection-level failures (refused, reset, timed out) raise :class:`RedisUnavailable`,
which the writer treats as an outage: keep state in memory, retry with backoff.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from common import keys
from common.redisconn import SentinelTarget, connection_pool

#: Commands per socket write of a batch (~80 kB of option HSETs): below glibc's initial mmap
#: threshold (128 kB), so each slice's buffer is reused rather than growing the heap.
WRITE_SLICE: Final = 64

#: Raises hash fields to a value, never lowers them, atomically (``EVAL``, a few times a second
#: at most): KEYS are hashes, ARGV pairs (field, value) one per key. A field that is absent or
#: not a number takes the value. Two replicas each write their newest ``last_update``; whichever
#: order their writes arrive in, the stored one is the newest (shell scripts and the API read it).
RAISE_FIELDS: Final = """
for i, key in ipairs(KEYS) do
  local field, value = ARGV[2 * i - 1], ARGV[2 * i]
  local current = tonumber(redis.call('HGET', key, field))
  if current == nil or tonumber(value) > current then
    redis.call('HSET', key, field, value)
  end
end
return 0
"""


try:  # redis-py's hiredis parser, read in bulk by _read_replies (private: checked, with a fallback)
    from redis._parsers import hiredis as _hiredis_parser

    _BULK: tuple[type, object] | None = (_hiredis_parser._AsyncHiredisParser, _hiredis_parser.NOT_ENOUGH_DATA)
except (ImportError, AttributeError):
    _BULK = None


class RedisUnavailable(Exception):
    """Redis could not be reached or did not answer in time (the message says how)."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the ingest needs from ``INFO``: who Redis is (``run_id``) and its memory."""

    run_id: str
    used_memory: int
    maxmemory: int


def make_redis(url: str, *, timeout: float, sentinel: SentinelTarget | None = None) -> Redis:
    """A client that fails fast: no hidden retries (the writer owns the retry policy).

    Reads have no socket timeout of their own: every call here is wrapped in
    ``asyncio.timeout``, once per batch rather than once per reply.
    """
    pool = connection_pool(
        url, sentinel, blocking=False, socket_connect_timeout=timeout, socket_timeout=None,
        socket_keepalive=True, retry=Retry(NoBackoff(), 0), health_check_interval=0,
        decode_responses=False, max_connections=8,
    )
    return Redis(connection_pool=pool)


async def _read_replies(parser: Any, not_enough: object, count: int) -> list[ResponseError | None]:
    """``count`` replies straight from the connection's hiredis reader: None, or the error reply.

    redis-py's ``read_response`` costs a few coroutine layers per reply; a flush reads two replies
    per symbol, so at 2,000 symbols x 10 flushes/s those layers alone took ~10 % of a core. This
    takes every reply already buffered in one loop and reads the socket only when the buffer
    runs dry. It reaches into the parser (``_reader``, ``read_from_socket``), so :meth:`Store.execute`
    uses it only when the connection's parser is the hiredis one it was written for.
    """
    reader = getattr(parser, "_reader", None)
    if reader is None:  # the connection was closed under us
        raise RedisConnectionError("connection closed before its replies were read")
    gets = reader.gets
    results: list[ResponseError | None] = []
    append = results.append
    while len(results) < count:
        reply = gets()
        if reply is not_enough:  # no whole reply buffered: read the socket
            await parser.read_from_socket()
        elif isinstance(reply, ResponseError):
            append(reply)
        elif isinstance(reply, RedisConnectionError):
            raise reply
        else:
            append(None)
    return results


class Store:
    """The ingest's Redis operations."""

    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self.redis = redis
        self.timeout = timeout

    async def execute(self, commands: Sequence[bytes]) -> list[ResponseError | None]:
        """Send RESP ``commands`` in one round trip; per command, None or its error reply."""
        return await self.execute_slices(commands[start:start + WRITE_SLICE]
                                         for start in range(0, len(commands), WRITE_SLICE))

    async def execute_slices(self, slices: Iterable[Sequence[bytes]]) -> list[ResponseError | None]:
        """:meth:`execute` for commands made as they go out: each slice is on the socket before the
        next is taken, then every reply is read.

        The writer renders a flush's ``HSET`` commands slice by slice, so Redis executes the first
        while the ingest renders the next (a flush of 2,000 options spent ~17 ms rendering before
        Redis saw a byte, and every frame waiting for that flush waited that much longer).
        In slices at all: one join of a whole flush (~2.7 MB at 2,000 options) raised glibc's
        mmap threshold and then stayed in the heap; slices of ~80 kB are reused.
        """
        pending = iter(slices)
        first = next((chunk for chunk in pending if chunk), None)
        if first is None:
            return []
        pool = self.redis.connection_pool
        try:
            async with asyncio.timeout(self.timeout):
                conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"connect: {exc!r}") from exc
        sent = 0
        answered = False
        try:
            async with asyncio.timeout(self.timeout):
                for chunk in itertools.chain((first,), pending):
                    if chunk:
                        await conn.send_packed_command(chunk, check_health=False)
                        sent += len(chunk)
                parser = getattr(conn, "_parser", None)
                if _BULK is not None and type(parser) is _BULK[0]:
                    results = await _read_replies(parser, _BULK[1], sent)
                else:
                    results = []
                    read = conn.read_response
                    for _ in range(sent):
                        try:
                            await read()
                        except ResponseError as exc:
                            results.append(exc)
                        else:
                            results.append(None)
            answered = True
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_idle()
            raise RedisUnavailable(f"batch of {sent}: {exc!r}") from exc
        finally:
            if not answered:
                # Failed, cancelled, or the slices' producer raised, mid-batch: replies left unread
                # would poison the connection for its next user.
                await conn.disconnect(nowait=True)
            await pool.release(conn)
        return results

    async def _drop_idle(self) -> None:
        """After a connection failed, its idle siblings are likely dead too (a Redis restart):
        drop them so the next call connects afresh instead of failing once per pooled socket."""
        await self.redis.connection_pool.disconnect(inuse_connections=False)

    async def _pipeline(self, fill: Any) -> list[Any]:
        try:
            async with asyncio.timeout(self.timeout):
                pipe = self.redis.pipeline(transaction=False)
                fill(pipe)
                result: list[Any] = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_idle()
            raise RedisUnavailable(repr(exc)) from exc
        return result

    async def load_library(self, code: str) -> None:
        """``FUNCTION LOAD REPLACE``: the library is replicated to replicas like any write."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.function_load(code, replace=True)
        except ResponseError as exc:
            raise RedisUnavailable(f"FUNCTION LOAD refused: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_idle()
            raise RedisUnavailable(repr(exc)) from exc

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(repr(exc)) from exc

    async def server_info(self) -> ServerInfo:
        """Redis' run id (changes on restart) and its used/max memory, in one round trip."""
        def fill(pipe: Any) -> None:
            pipe.info("server")
            pipe.info("memory")
        server, memory = await self._pipeline(fill)
        if isinstance(server, Exception) or isinstance(memory, Exception):
            raise RedisUnavailable(f"INFO failed: {server!r} {memory!r}")
        return ServerInfo(run_id=str(server.get("run_id", "")),
                          used_memory=int(memory.get("used_memory", 0)),
                          maxmemory=int(memory.get("maxmemory", 0)))

    async def heartbeat_owner(self, replica: str) -> tuple[str | None, str | None]:
        """(``pid``, ``started_at``) of the process whose heartbeat ``replica`` holds now (None: none)."""
        def fill(pipe: Any) -> None:
            pipe.hmget(keys.replica_heartbeat_key(replica), [keys.F_HB_PID, keys.F_HB_STARTED_AT])
        (reply,) = await self._pipeline(fill)
        if isinstance(reply, Exception) or not isinstance(reply, list):
            raise RedisUnavailable(f"HMGET heartbeat failed: {reply!r}")
        pid, started = (v.decode() if isinstance(v, bytes) else v for v in reply)
        return pid, started

    async def forget_replicas(self, candidates: Sequence[str]) -> tuple[list[str], list[Exception]]:
        """Of ``candidates`` (names listed in ``ingest:replicas``), forget those with no live heartbeat.

        Forgotten: the member, its stats and lag hashes. A name whose process still heartbeats
        (an old worker in its stop grace during a rolling restart) is kept; it is asked again
        later. Returns the names forgotten and the error replies (the caller counts them).
        """
        if not candidates:
            return [], []

        def alive(pipe: Any) -> None:
            for name in candidates:
                pipe.exists(keys.replica_heartbeat_key(name))

        replies = await self._pipeline(alive)
        failed = [r for r in replies if isinstance(r, Exception)]
        dead = [name for name, n in zip(candidates, replies, strict=True) if n == 0]
        if dead:
            def forget(pipe: Any) -> None:
                pipe.zrem(keys.INGEST_REPLICAS, *dead)
                pipe.delete(*(k for name in dead
                              for k in (keys.replica_stats_key(name), keys.replica_lag_key(name))))

            failed += [r for r in await self._pipeline(forget) if isinstance(r, Exception)]
        return dead, failed

    async def replicas(self) -> list[str]:
        """Every name listed in ``ingest:replicas``."""
        def fill(pipe: Any) -> None:
            pipe.zrange(keys.INGEST_REPLICAS, 0, -1)

        (reply,) = await self._pipeline(fill)
        if isinstance(reply, Exception) or not isinstance(reply, list):
            raise RedisUnavailable(f"ZRANGE ingest:replicas failed: {reply!r}")
        return [m.decode() if isinstance(m, bytes) else str(m) for m in reply]

    async def write_stats(self, *, replica: str, global_doc: Mapping[str, str],
                          coin_docs: Mapping[str, Mapping[str, str]], lag_doc: Mapping[str, str],
                          heartbeat_doc: Mapping[str, str], heartbeat_ttl: float, now: float,
                          legacy: bool) -> list[Exception]:
        """One replica's stats, heartbeat and lag histogram, and the shared newest ``last_update``.

        - ``stats:replica:<replica>`` (``global_doc``), ``stats:lag:<replica>`` and
          ``ingest:heartbeat:<replica>`` (with its TTL): only this replica writes them;
        - ``ingest:replicas``: this replica's score set to ``now``, members silent for
          :data:`~common.keys.REPLICA_RETENTION_SECONDS` pruned;
        - ``last_update`` of ``stats:global`` and of each ``stats:coin:<COIN>``: raised to this
          replica's value when that is newer, never lowered (:data:`RAISE_FIELDS`, atomic in
          Redis), so it stays the newest ticker written by any replica;
        - with ``legacy`` (the replica named :data:`~common.keys.DEFAULT_REPLICA`): also the
          single-node keys as before replicas existed (``stats:global``'s counters,
          ``stats:coin:<COIN>``, ``stats:lag``, ``ingest:heartbeat``).

        Returns the error replies (e.g. a key of the wrong type), which the caller counts.
        """
        retention = keys.REPLICA_RETENTION_SECONDS
        raised: list[tuple[str, str, str]] = []  # (key, field, value)
        if (last := global_doc.get(keys.F_LAST_UPDATE)) is not None:
            raised.append((keys.STATS_GLOBAL, keys.F_LAST_UPDATE, last))
        for coin, doc in coin_docs.items():
            if (coin_last := doc.get(keys.F_COIN_LAST_UPDATE)) is not None:
                raised.append((keys.coin_stats_key(coin), keys.F_COIN_LAST_UPDATE, coin_last))

        def fill(pipe: Any) -> None:
            stats_key, lag_key = keys.replica_stats_key(replica), keys.replica_lag_key(replica)
            beat_key = keys.replica_heartbeat_key(replica)
            pipe.hset(stats_key, mapping=dict(global_doc))
            pipe.expire(stats_key, int(retention))
            pipe.hset(lag_key, mapping=dict(lag_doc))
            pipe.expire(lag_key, int(retention))
            pipe.hset(beat_key, mapping=dict(heartbeat_doc))
            pipe.pexpire(beat_key, max(1, int(heartbeat_ttl * 1000)))
            pipe.zadd(keys.INGEST_REPLICAS, {replica: now})
            pipe.zremrangebyscore(keys.INGEST_REPLICAS, "-inf", f"({now - retention!r}")
            if raised:
                pipe.eval(RAISE_FIELDS, len(raised), *(k for k, _f, _v in raised),
                          *(x for _k, f, v in raised for x in (f, v)))
            if legacy:
                pipe.hset(keys.STATS_GLOBAL, mapping={k: v for k, v in global_doc.items()
                                                      if k != keys.F_LAST_UPDATE})
                for coin, doc in coin_docs.items():
                    if coin_doc := {k: v for k, v in doc.items() if k != keys.F_COIN_LAST_UPDATE}:
                        pipe.hset(keys.coin_stats_key(coin), mapping=coin_doc)
                pipe.hset(keys.STATS_LAG, mapping=dict(lag_doc))
                pipe.hset(keys.INGEST_HEARTBEAT, mapping=dict(heartbeat_doc))
                pipe.pexpire(keys.INGEST_HEARTBEAT, max(1, int(heartbeat_ttl * 1000)))
        return [r for r in await self._pipeline(fill) if isinstance(r, Exception)]
