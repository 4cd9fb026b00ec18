"""``python -m ingest``: every Bybit option ticker into Redis (see docs/ingest.md)."""

from __future__ import annotations

import argparse
import sys

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from common.config import ConfigError, help_epilog, load_settings
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
        parse_uri(settings.ws_url)
    except ConfigError as exc:
        print(f"ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    except InvalidURI as exc:
        print(f"ingest: configuration error: BYBIT_WS_URL: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from ingest.app import run  # after logging is configured

    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
