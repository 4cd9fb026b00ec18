"""``python -m ingest``: every Bybit option ticker into Redis; ``--check``: a live check without Redis.

See docs/ingest.md (the live check: its "Live check" section).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import sys

from redis.asyncio.connection import parse_url
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from common.config import ConfigError, Settings
from common.entry import Component, parse_args
from common.entry import main as component_main

#: How long ``--check`` runs by default: a few pings, and every topic's first tickers.
CHECK_SECONDS = 20.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``--check [--seconds N]``: the live check (docs/ingest.md, "Live check")."""
    parser.add_argument(
        "--check", action="store_true",
        help="connect to the configured Bybit URLs with the ingest's own discovery and connections "
             "for --seconds, without Redis; print a table and VERDICT: OK (exit 0) or "
             "VERDICT: FAIL with the reasons (exit 1)")
    parser.add_argument("--seconds", type=_seconds, default=None, metavar="N",
                        help=f"how long --check runs (default {CHECK_SECONDS:g})")


INGEST = Component(
    name="ingest",
    description="Discover Bybit's option instruments, stream their tickers over WebSocket and keep "
                "the latest of each in Redis, with stats and a heartbeat for the exporter.",
    knob_prefixes=("REDIS_URL", "BYBIT_", "INGEST_", "LOG_", "TRACKER_"),
    flags=add_flags,
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
    if settings.ingest_workers > 1:
        from ingest.workers import Supervisor

        return Supervisor(settings).run()
    from ingest.app import main as ingest  # after logging is configured

    # A Ctrl-C that lands before the signal handlers are installed only interrupts the start-up.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(ingest(settings))
    return 0


def live_check(settings: Settings, *, seconds: float) -> int:
    """The live check instead of the worker: exit 0 when the exchange looks healthy, else 1."""
    from ingest.check import run  # after logging is configured

    return run(settings, seconds=seconds)


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    args = parse_args(INGEST, argv, prog=prog)
    if args.seconds is not None and not args.check:
        print("ingest: --seconds only applies to --check", file=sys.stderr)
        return 2
    chosen = functools.partial(live_check, seconds=args.seconds or CHECK_SECONDS) if args.check else serve
    return component_main(INGEST, chosen, argv, check=check_urls, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
