"""The shapes of rules: an alert template, a recording rule, a group, and how each renders.

An :class:`AlertTemplate` is an alert before its numbers are known: expression and
annotations carry ``[[key]]`` placeholders (see placeholders.py) that the alert's entry in
prometheus/thresholds.yml fills. Rendering adds what every alert must have, so no alert
can forget it: the ``severity`` and ``condition`` labels, a ``runbook_url`` in the format of
docs/CONTRACTS.md, and the ``value`` annotation the notification templates print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from scripts.promconfig.placeholders import fill
from scripts.promconfig.thresholds import AlertParams

Severity = Literal["critical", "warning", "info"]
SEVERITIES: Final[tuple[Severity, ...]] = ("critical", "warning", "info")

#: The severity of the dead-man's switch (the ``Watchdog`` alert), and of nothing else. It is
#: not a tier: the alert fires all the time so that an external service can page when its
#: notifications stop. Alertmanager sends it to its own receiver only, no inhibition rule
#: targets it, and whatever asks "is an alert active?" (dashboards' tier counts, the drills'
#: "healthy stack" checks, the quiet promtool cases) leaves it out by this label.
HEARTBEAT_SEVERITY: Final[Literal["none"]] = "none"
AlertSeverity = Severity | Literal["none"]
#: Every value the ``severity`` label of a rule may take: the three tiers and the heartbeat.
ALERT_SEVERITIES: Final[tuple[AlertSeverity, ...]] = (*SEVERITIES, HEARTBEAT_SEVERITY)

RUNBOOK_BASE: Final = "https://github.com/bybit-options-tracker/bybit-options-tracker/blob/main/docs/runbooks/"

#: How the ``value`` annotation prints ``$value`` (Prometheus template functions).
VALUE_FORMATS: Final[Mapping[str, str]] = {
    "number": "{{ $value | humanize }}",
    "percent": "{{ $value | humanizePercentage }}",
    "duration": "{{ $value | humanizeDuration }}",
    "bytes": "{{ $value | humanize1024 }}B",
    "per_hour": "{{ $value | humanize }}/h",
    "burn": "{{ $value | humanize }}x",
    "state": "{{ $value }}",
}


def runbook_url(alert: str) -> str:
    """Where an alert's runbook lives (docs/runbooks/<AlertName>.md on the main branch)."""
    return f"{RUNBOOK_BASE}{alert}.md"


@dataclass(frozen=True, slots=True)
class AlertTemplate:
    """One alerting rule with placeholders for its thresholds.

    ``condition`` groups the tiers of one problem (``redis_memory`` for the 50/70/90 %
    alerts): Alertmanager's inhibition lets a firing critical silence the warning and info
    of the same condition. ``value`` names a :data:`VALUE_FORMATS` entry.
    """

    name: str
    severity: AlertSeverity
    condition: str
    expr: str
    summary: str
    description: str
    value: str
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def render(self, params: AlertParams) -> dict[str, Any]:
        """The rule as Prometheus reads it, numbers filled from ``params``."""
        where = f"alert {self.name}"
        values = dict(params.values)
        rule: dict[str, Any] = {"alert": self.name, "expr": fill(self.expr, values, where=where)}
        duration = params.duration("for")
        if duration != "0s":
            rule["for"] = duration
        rule["labels"] = {"severity": self.severity, "condition": self.condition, **self.extra_labels}
        rule["annotations"] = {
            "summary": fill(self.summary, values, where=where),
            "description": fill(self.description, values, where=where),
            "value": VALUE_FORMATS[self.value],
            "runbook_url": runbook_url(self.name),
        }
        return rule


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """A recording rule named ``level:metric:operations``."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


@dataclass(frozen=True, slots=True)
class RuleGroup:
    """A rule group: rules evaluated in order, so a recording rule may use one above it."""

    name: str
    rules: tuple[dict[str, Any], ...]

    def render(self) -> dict[str, Any]:
        return {"name": self.name, "rules": list(self.rules)}
