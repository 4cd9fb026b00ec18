"""The alert tiers' thresholds, as numbers: read from the alerting source of truth.

prometheus/thresholds.yml holds every alert threshold (the alert rules are rendered from it).
An installed ``bybit-tracker`` has no repository to read it from, so the package ships a
byte-for-byte copy beside this module (``thresholds.yml``, package data) and this module reads
that copy, from a checkout and from a wheel alike: one code path, so what the tests check is
what an installed command does. tests/test_tools_package.py fails when the copy differs from
prometheus/thresholds.yml, and tests/test_healthcheck_tiers.py checks the rendered rules
compare against these very numbers, so the health check's exit code, the dashboards' colours
and a firing alert always agree on what "warning" means.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

import yaml

#: The shipped copy of prometheus/thresholds.yml (package data; see the module docstring).
THRESHOLDS_FILE: Final = resources.files("tracker_tools.healthcheck").joinpath("thresholds.yml")

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
        """``ok``, ``info``, ``warning`` or ``critical`` for ``value`` (the highest tier exceeded)."""
        for name, bound in (("critical", self.critical), ("warning", self.warning), ("info", self.info)):
            if bound is not None and value > bound:
                return name
        return "ok"


def _load(path: Traversable) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        # The link in the source tree dangled when the wheel was built (setuptools skips it quietly).
        raise RuntimeError(f"{path}: missing from this build of the package; build it from a tree "
                           "that has prometheus/thresholds.yml") from exc
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or "alerts" not in doc or "slo" not in doc:
        raise ValueError(f"{path}: expected the 'alerts' and 'slo' sections of the alerting thresholds")
    return doc


_DOC: Final = _load(THRESHOLDS_FILE)
_ALERTS: Final[dict[str, dict[str, Any]]] = _DOC["alerts"]
_SLO: Final[dict[str, Any]] = _DOC["slo"]


def alert_threshold(alert: str, key: str = "threshold") -> float:
    """The number ``key`` of ``alert`` in prometheus/thresholds.yml (KeyError names what is missing)."""
    try:
        return float(_ALERTS[alert][key])
    except KeyError as exc:
        raise KeyError(f"{THRESHOLDS_FILE}: no alerts.{alert}.{key}") from exc


#: Redis used_memory / capacity: INFO > 50 %, WARNING > 70 %, CRITICAL > 90 % (seed).
REDIS_MEMORY_RATIO: Final = Thresholds(info=alert_threshold("RedisMemoryElevated"),
                                       warning=alert_threshold("RedisMemoryHigh"),
                                       critical=alert_threshold("RedisMemoryCritical"))
#: WebSocket re-connections per hour: INFO > 20, WARNING > 60 (seed).
RECONNECTS_PER_HOUR: Final = Thresholds(info=alert_threshold("WebSocketReconnectsElevated"),
                                        warning=alert_threshold("WebSocketReconnectsHigh"))
#: Consecutive failed connection attempts: CRITICAL > 10 ("unable to reconnect > 10 attempts").
CONSECUTIVE_FAILURES: Final = Thresholds(critical=alert_threshold("WebSocketReconnectFailing"))
#: Seconds since a coin's newest ticker: CRITICAL when no data for 5 minutes (seed).
STALENESS_SECONDS: Final = Thresholds(critical=alert_threshold("CoinDataStale"))
#: API p95 latency in seconds: WARNING > 2 s (seed).
API_LATENCY_P95_SECONDS: Final = Thresholds(warning=alert_threshold("ApiLatencyHigh"))
#: Share of API requests answered 5xx: WARNING > 5 % (seed); CRITICAL when (nearly) all fail.
API_ERROR_RATIO: Final = Thresholds(warning=alert_threshold("ApiErrorRateHigh"),
                                    critical=alert_threshold("ApiAllRequestsFailing"))
#: Resident memory of the ingest: WARNING above twice the seed's 100 MB target.
INGEST_MEMORY_BYTES: Final = Thresholds(warning=alert_threshold("IngestMemoryHigh"))
#: CPU share of one core of one ingest process: WARNING near the one core it can use.
INGEST_CPU_RATIO: Final = Thresholds(warning=alert_threshold("IngestCpuHigh"))

#: Success metrics of the seed (SLO objectives), drawn as targets on dashboards.
FRESHNESS_TARGET_SECONDS: Final = float(_SLO["data_freshness_seconds"])
API_AVAILABILITY_TARGET: Final = float(_SLO["objectives"]["api_availability"])
UPTIME_TARGET: Final = float(_SLO["objectives"]["ingest_uptime"])
FRESHNESS_OBJECTIVE: Final = float(_SLO["objectives"]["data_freshness"])
RECONNECTS_PER_HOUR_TARGET: Final = float(_SLO["ws_reconnects_per_hour"])
#: Burn rates that open a ticket (warning) and page (critical): the fastest window of each kind.
BURN_RATE_TICKET: Final = max(float(w["factor"]) for w in _SLO["ticket"])
BURN_RATE_PAGE: Final = max(float(w["factor"]) for w in _SLO["page"])
#: Seed targets without an alert of their own: drawn on dashboards only.
API_LATENCY_P95_TARGET_SECONDS: Final = 0.5
PROCESS_MEMORY_TARGET_BYTES: Final = 100 * 1024 * 1024
PROCESS_CPU_TARGET_RATIO: Final = 0.2
