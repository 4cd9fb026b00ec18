"""``python -m api``: the options API on port 5001 (see docs/api.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common.config import Settings
from common.entry import Component
from common.entry import main as component_main

API = Component(
    name="api",
    description="Serve the tracked options from Redis as JSON: GET /api/options/{coin} (filters: "
                "expiry, type, strike_min, strike_max, limit, offset), /api/options/{coin}/{symbol}, "
                "/api/coins, /healthz, /readyz, /metrics and /openapi.json. One Redis read per coin "
                "per API_CACHE_TTL serves every request; stale answers are marked.",
    knob_prefixes=("REDIS_URL", "BYBIT_COINS", "API_", "LOG_", "TRACKER_"),
)


def serve(settings: Settings) -> int:
    from api.run import serve as serve_api  # after logging is configured

    return serve_api(settings)


def main(argv: Sequence[str] | None = None) -> int:
    return component_main(API, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
