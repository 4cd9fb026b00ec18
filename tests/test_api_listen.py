"""How the API's listening socket takes a burst of new connections.

The load drill (bench/drill_load.py) found that with aiohttp's default accept backlog of 128,
a burst of 1,000 clients lost SYNs and those clients waited for TCP's 1 s retransmission
(p99 1.05 s instead of ~0.26 s). The kernel reports a listening socket's backlog as its
Send-Q in ``ss -lnt``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from api.run import BACKLOG
from tests.fixtures_readers import ServiceHandle, api_factory
from tests.servers import RedisServer

__all__ = ["api_factory"]


def listen_backlog(port: int) -> int:
    out = subprocess.run(["ss", "-lntH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    fields = out.split()
    assert fields, f"nothing listens on {port}: {out!r}"
    return int(fields[2])  # State Recv-Q Send-Q ...: Send-Q of a listener is its backlog


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_the_api_queues_a_burst_of_a_thousand_connections(
    redis_server: RedisServer, api_factory: Callable[..., ServiceHandle],
) -> None:
    api = api_factory(redis_url=redis_server.url)
    port = int(api.url.rsplit(":", 1)[1])
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listen_backlog(port) == min(BACKLOG, somaxconn) >= min(1000, somaxconn)
