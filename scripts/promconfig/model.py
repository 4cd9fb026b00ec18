"""The shapes of rules: an alert template, a recording rule, a group, and how each renders.

An :class:`AlertTemplate` is an alert before its numbers are known: expression and
annotations carry ``[[key]]`` placeholders (see placeholders.py) that the alert's entry in
prometheus/thresholds.yml fills. Rendering adds what every alert must have, so no alert
can forget it: the ``severity`` and ``condition`` labels, a ``runbook_url`` in the format of
docs/CONTRACTS.md (under a base URL that is a setting of the generator), and the ``value``
annotation the notification templates print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

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

#: Where ``runbook_url`` points unless the generator is given ``--runbook-base``: the API serves
#: docs/runbooks/ read-only at /docs/runbooks/ (api/runbooks.py), and compose and the local stack
#: publish the API on localhost:5001, so the link answers on the machine running the stack. A team
#: reading alerts elsewhere renders with its own base (docs/alerting.md#runbook-links).
DEFAULT_RUNBOOK_BASE: Final = "http://localhost:5001/docs/runbooks/"


class RunbookBaseError(ValueError):
    """A runbook base URL that would not make a working link."""


def check_runbook_base(base: str) -> str:
    """``base`` if it is an absolute http(s) URL ending in ``/``, else :class:`RunbookBaseError`.

    The base is pasted before ``<Alert>.md`` into every alert: a relative path, a missing
    slash or a query string would give every alert a link that never answers.
    """
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RunbookBaseError(f"runbook base {base!r}: expected an absolute http:// or https:// URL")
    if parts.query or parts.fragment or not parts.path.endswith("/"):
        raise RunbookBaseError(f"runbook base {base!r}: must end with '/' and have no query or fragment")
    if any(ch.isspace() or ch in "{}" for ch in base):
        raise RunbookBaseError(f"runbook base {base!r}: no spaces or template braces")
    return base

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


def runbook_url(alert: str, base: str = DEFAULT_RUNBOOK_BASE) -> str:
    """Where an alert's runbook is read: ``base`` + ``<AlertName>.md`` (docs/runbooks/<AlertName>.md)."""
    return f"{check_runbook_base(base)}{alert}.md"


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

    def render(self, params: AlertParams, *, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, Any]:
        """The rule as Prometheus reads it, numbers filled from ``params``, runbook under ``runbook_base``."""
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
            "runbook_url": runbook_url(self.name, runbook_base),
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
