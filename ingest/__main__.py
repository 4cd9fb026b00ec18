"""``python -m ingest``: every Bybit option ticker into Redis (see docs/ingest.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from redis.asyncio.connection import parse_url
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from common.config import ConfigError, Settings, help_epilog, load_settings
from common.logs import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Discover Bybit's option instruments, stream their tickers over WebSocket and keep "
                    "the latest of each in Redis, with stats and a heartbeat for the exporter.",
        epilog=help_epilog(("REDIS_URL", "BYBIT_", "INGEST_", "LOG_", "TRACKER_")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of knobs (environment variables win)")
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
        check_urls(settings)
    except ConfigError as exc:
        print(f"ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from ingest.app import main as ingest  # after logging is configured

    # SIGTERM/SIGINT are handled inside (clean stop, exit 0); a Ctrl-C that lands before the
    # handlers are installed only interrupts the start-up.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(ingest(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
