"""Where a component's Redis is: one URL, or a service behind Redis Sentinel.

With ``REDIS_SENTINELS`` empty (the default) a component talks to ``REDIS_URL``, as before. With
it set, Sentinel names the current primary and every component follows a failover by itself:
redis-py's :class:`~redis.asyncio.sentinel.SentinelConnectionPool` asks the sentinels where the
primary is before each new connection, and drops idle connections when the answer changes. No
failover logic lives here; Sentinel decides, redis-py follows.

``REDIS_URL`` still supplies what Sentinel does not know: the database number, the
username/password and TLS (``rediss://``). Its host and port are ignored in Sentinel mode. The same
credentials authenticate to the sentinels (set ``requirepass`` alike on both, or none): one secret
in one place, the URL, rather than a second password knob to pass around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool, SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from common.config import Settings, parse_sentinels

#: URL parts that Sentinel decides (where the primary is) or that this module sets itself.
_SENTINEL_DECIDES: Final = ("host", "port", "path", "connection_class")


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """The sentinels to ask and the service (``sentinel monitor <service> ...``) they watch."""

    addresses: tuple[tuple[str, int], ...]
    service: str
    username: str | None = None
    password: str | None = None
    replica: bool = False  # read from a replica (round robin), not the primary


def sentinel_target(settings: Settings, *, replica: bool = False) -> SentinelTarget | None:
    """The Sentinel set-up ``settings`` ask for, or None for a plain ``REDIS_URL``."""
    addresses = parse_sentinels(settings.redis_sentinels)
    if not addresses:
        return None
    return SentinelTarget(addresses=addresses, service=settings.redis_sentinel_service, replica=replica)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool with the blocking pool's queueing: a burst waits for a connection rather
    than failing with "too many connections" (the exporter and the API rely on that)."""


def connection_pool(url: str, sentinel: SentinelTarget | None, *, blocking: bool,
                    **kwargs: Any) -> ConnectionPool:
    """A pool on ``url``, or on the primary (or a replica) that ``sentinel`` names."""
    if sentinel is None:
        cls = BlockingConnectionPool if blocking else ConnectionPool
        return cls.from_url(url, **kwargs)
    from_url = parse_url(url)
    ssl = from_url.get("connection_class") is SSLConnection
    node_kwargs = {k: v for k, v in from_url.items() if k not in _SENTINEL_DECIDES}
    node_kwargs.update(kwargs)
    timeout = kwargs.get("socket_connect_timeout")
    manager = Sentinel(list(sentinel.addresses), sentinel_kwargs={  # type: ignore[no-untyped-call]
        "username": sentinel.username or from_url.get("username"),
        "password": sentinel.password or from_url.get("password"),
        "socket_connect_timeout": timeout, "socket_timeout": timeout,
    })
    pool_class = BlockingSentinelConnectionPool if blocking else SentinelConnectionPool
    pool: ConnectionPool = pool_class(  # type: ignore[no-untyped-call]
        sentinel.service, manager, is_master=not sentinel.replica, ssl=ssl, check_connection=False,
        **node_kwargs)
    return pool
