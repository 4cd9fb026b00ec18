"""The alert tiers' thresholds, as numbers: one place for the health check and the dashboards.

These are the seed's CRITICAL / WARNING / INFO conditions made concrete. The alert rules in
prometheus/rules/ use the same numbers (tests/test_healthcheck_tiers.py reads the rules and
fails when one side moves without the other), so an operator running the health check, a
dashboard's colours and a firing alert always agree on what "warning" means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Severities from best to worst; the alert rules' ``severity`` label uses the last three.
SEVERITIES: Final = ("ok", "info", "warning", "critical")
#: The health check's exit code per severity: INFO only informs, so it does not fail the check.
EXIT_CODES: Final = {"ok": 0, "info": 0, "warning": 1, "critical": 2}


def worst(severities: list[str]) -> str:
    """The most severe of ``severities`` (``ok`` for none)."""
    return max(severities, key=SEVERITIES.index, default="ok")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Values above which a measurement is info, warning or critical (None: the tier does not apply)."""

    info: float | None = None
    warning: float | None = None
    critical: float | None = None

    def classify(self, value: float) -> str:
        """``ok``, ``info``, ``warning`` or ``critical`` for ``value`` (the highest tier reached)."""
        for name, bound in (("critical", self.critical), ("warning", self.warning), ("info", self.info)):
            if bound is not None and value > bound:
                return name
        return "ok"


#: Redis used_memory / capacity: INFO > 50 %, WARNING > 70 %, CRITICAL > 90 % (seed).
REDIS_MEMORY_RATIO: Final = Thresholds(info=0.5, warning=0.7, critical=0.9)
#: WebSocket re-connections per hour: INFO > 20, WARNING > 60 (seed).
RECONNECTS_PER_HOUR: Final = Thresholds(info=20, warning=60)
#: Consecutive failed connection attempts: CRITICAL > 10 ("unable to reconnect > 10 attempts").
CONSECUTIVE_FAILURES: Final = Thresholds(critical=10)
#: Seconds since a coin's newest ticker: CRITICAL when no data has flowed for more than 5 minutes
#: (seed). The 30 s freshness target is an SLO, drawn on dashboards, not a tier.
STALENESS_SECONDS: Final = Thresholds(critical=300)
#: API p95 latency in seconds: WARNING > 2 s (seed); the 500 ms SLO target is drawn, not alerted.
API_LATENCY_P95_SECONDS: Final = Thresholds(warning=2.0)
#: Share of API requests answered 5xx: WARNING > 5 % (seed).
API_ERROR_RATIO: Final = Thresholds(warning=0.05)
#: Seconds since the ingest's last heartbeat: CRITICAL past 5 minutes, like the data itself.
HEARTBEAT_AGE_SECONDS: Final = Thresholds(critical=300)

#: Success metrics of the seed, drawn as targets on dashboards (SLOs, not alerts).
FRESHNESS_TARGET_SECONDS: Final = 30.0
API_LATENCY_P95_TARGET_SECONDS: Final = 0.5
API_AVAILABILITY_TARGET: Final = 0.999
UPTIME_TARGET: Final = 0.995
PROCESS_MEMORY_TARGET_BYTES: Final = 100 * 1024 * 1024
PROCESS_CPU_TARGET_RATIO: Final = 0.2
