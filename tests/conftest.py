"""Shared fixtures: real servers on loopback (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import RedisServer, docker_available, redis_container

pytest_plugins = ["tests.fixtures_simulator", "tests.fixtures_components", "tests.fixtures_readers"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test; ``kill()``/``start()`` simulate a crash."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """URL of a real Redis: the local binary, or the official image when only Docker is there."""
    import shutil

    if shutil.which("redis-server"):
        server = RedisServer(tmp_path)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
    elif docker_available():
        with redis_container() as url:
            yield url
    else:
        pytest.skip("neither redis-server nor a Docker engine is available (run scripts/setup.sh)")
