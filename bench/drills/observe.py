"""What the stack says about itself: the exporter's /metrics and Prometheus' HTTP API.

Every read here is one short HTTP call with a timeout; a component that does not answer
is reported as such (an exception of :data:`READ_ERRORS`), never waited for.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from scripts.promconfig.model import HEARTBEAT_SEVERITY

#: What a read of a component that is down or restarting raises.
READ_ERRORS: Final = (urllib.error.URLError, OSError, ValueError, KeyError)
TIMEOUT_SECONDS: Final = 2.0


def is_heartbeat(labels: dict[str, str]) -> bool:
    """The always-firing dead-man's switch (Watchdog): proof the pipeline works, never a finding.

    A drill asks "which alerts did the fault raise?" and "is the stack quiet?"; the heartbeat
    fires through both answers, so every reader here leaves it out by its severity label.
    """
    return labels.get("severity") == HEARTBEAT_SEVERITY


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:
        body: bytes = resp.read()
    return body


@dataclass(frozen=True, slots=True)
class ExporterSample:
    """One scrape of the exporter: per-coin staleness and a few stack-wide gauges."""

    staleness: dict[str, float]  # coin -> seconds (inf when the coin has no data)
    values: dict[str, float]  # unlabelled gauge/counter name -> value


def scrape_exporter(metrics_url: str) -> ExporterSample:
    """Parse one scrape of the exporter's ``/metrics``."""
    text = _get(metrics_url).decode()
    staleness: dict[str, float] = {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bybit_data_staleness_seconds":
                staleness[sample.labels["coin"]] = float(sample.value)
            elif set(sample.labels) <= {"replica"}:
                # Unlabelled, or per ingest replica (label replica): summed over the replicas, so a
                # drill reads the stack's totals (connections, reconnects, writes) whatever their number.
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return ExporterSample(staleness, values)


def fresh(sample: ExporterSample, coins: tuple[str, ...], max_age: float) -> bool:
    """Every coin has a ticker younger than ``max_age`` seconds."""
    return all(math.isfinite(sample.staleness.get(c, math.inf)) and sample.staleness[c] < max_age
               for c in coins)


class Prometheus:
    """Read-only client of one Prometheus' HTTP API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _api(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        doc = json.loads(_get(f"{self.base_url}/api/v1/{path}{query}"))
        if doc.get("status") != "success":
            raise ValueError(f"prometheus {path}: {doc.get('error', doc)}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector query at Prometheus' now."""
        result: list[dict[str, Any]] = self._api("query", {"query": expr})["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Every active alert (pending or firing) with its labels, state and activeAt.

        The dead-man's switch (:func:`is_heartbeat`) is left out: it is active on every stack.
        """
        alerts: list[dict[str, Any]] = self._api("alerts")["alerts"]
        return [a for a in alerts if not is_heartbeat(a["labels"])]

    def alert_states(self) -> dict[str, str]:
        """alertname -> its most advanced state right now (``firing`` beats ``pending``)."""
        states: dict[str, str] = {}
        for alert in self.alerts():
            name = alert["labels"]["alertname"]
            if states.get(name) != "firing":
                states[name] = alert["state"]
        return states

    def targets_up(self) -> dict[str, bool]:
        """job -> whether its last scrape succeeded."""
        return {r["metric"]["job"]: r["value"][1] == "1" for r in self.query("up")}
