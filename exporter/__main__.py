"""``python -m exporter``: Prometheus metrics read from Redis at scrape time (see docs/metrics.md)."""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError, help_epilog, load_settings
from common.logs import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m exporter",
        description="Serve /metrics for Prometheus: on every scrape, read the ingest's stats, heartbeat "
                    "and lag histogram and Redis' own memory and key count from Redis in one pipelined "
                    "round trip, and expose them as bybit_* metrics. Also /healthz.",
        epilog=help_epilog(("REDIS_URL", "REDIS_CAPACITY", "BYBIT_COINS", "EXPORTER_", "INGEST_HEARTBEAT",
                            "LOG_", "TRACKER_")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of knobs (environment variables win)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from exporter.run import serve  # after logging is configured

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
