"""``python -m ingest``: every Bybit option ticker into Redis (see docs/ingest.md)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from redis.asyncio.connection import parse_url
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from common.config import ConfigError, Settings
from common.entry import Component
from common.entry import main as component_main

INGEST = Component(
    name="ingest",
    description="Discover Bybit's option instruments, stream their tickers over WebSocket and keep "
                "the latest of each in Redis, with stats and a heartbeat for the exporter.",
    knob_prefixes=("REDIS_URL", "BYBIT_", "INGEST_", "LOG_", "TRACKER_"),
)


def check_urls(settings: Settings) -> None:
    """Fail at start, naming the knob, on a URL no client could use (not later, in a retry loop)."""
    try:
        parse_uri(settings.ws_url)
    except InvalidURI as exc:
        raise ConfigError(f"BYBIT_WS_URL: {exc}") from exc
    try:
        parse_url(settings.redis_url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL: {exc}") from exc
    if not settings.rest_url.startswith(("http://", "https://")):
        raise ConfigError(f"BYBIT_REST_URL must be an http(s) URL, got {settings.rest_url!r}")


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (handled inside: clean stop, exit 0)."""
    from ingest.app import main as ingest  # after logging is configured

    # A Ctrl-C that lands before the signal handlers are installed only interrupts the start-up.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(ingest(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    return component_main(INGEST, serve, argv, check=check_urls)


if __name__ == "__main__":
    sys.exit(main())
