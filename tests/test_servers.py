"""The server fixtures start real servers and can take Redis away and bring it back."""

from __future__ import annotations

import pytest
import redis

from tests.servers import RedisServer, amtool, promtool


def test_redis_fixture_survives_kill_and_restart_on_same_port(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("k", "v")
    assert client.get("k") == "v"
    port = redis_server.port
    redis_server.kill()
    with pytest.raises(redis.ConnectionError):
        redis_server.client().ping()
    redis_server.start()
    assert redis_server.port == port
    # No persistence: a restarted Redis comes back empty, as the ingest must expect.
    assert redis_server.client().get("k") is None


def test_promtool_and_amtool_are_real_binaries() -> None:
    assert "promtool" in (promtool("--version").stdout + promtool("--version").stderr).lower()
    out = amtool("--version")
    assert out.returncode == 0
    assert "amtool" in (out.stdout + out.stderr).lower()
