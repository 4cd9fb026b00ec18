"""``python -m exporter``: Prometheus metrics read from Redis at scrape time (see docs/metrics.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common.config import Settings
from common.entry import Component
from common.entry import main as component_main

EXPORTER = Component(
    name="exporter",
    description="Serve /metrics for Prometheus: on every scrape, read the ingest's stats, heartbeat "
                "and lag histogram and Redis' own memory and key count from Redis in one pipelined "
                "round trip, and expose them as bybit_* metrics. Also /healthz.",
    knob_prefixes=("REDIS_URL", "REDIS_CAPACITY", "BYBIT_COINS", "EXPORTER_", "INGEST_HEARTBEAT", "LOG_",
                   "TRACKER_"),
)


def serve(settings: Settings) -> int:
    from exporter.run import serve as serve_exporter  # after logging is configured

    return serve_exporter(settings)


def main(argv: Sequence[str] | None = None) -> int:
    return component_main(EXPORTER, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
