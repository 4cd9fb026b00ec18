"""``python -m api``: the options API on port 5001 (see docs/api.md)."""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError, help_epilog, load_settings
from common.logs import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="Serve the tracked options from Redis as JSON: GET /api/options/{coin} (filters: "
                    "expiry, type, strike_min, strike_max, limit, offset), /api/options/{coin}/{symbol}, "
                    "/api/coins, /healthz, /readyz, /metrics and /openapi.json. One Redis read per coin "
                    "per API_CACHE_TTL serves every request; stale answers are marked.",
        epilog=help_epilog(("REDIS_URL", "BYBIT_COINS", "API_", "LOG_", "TRACKER_")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of knobs (environment variables win)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"api: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from api.run import serve  # after logging is configured

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
