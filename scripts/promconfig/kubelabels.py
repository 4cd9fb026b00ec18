"""The names and labels that tie the deploy/kubernetes objects to each other, defined once.

A ServiceMonitor finds a Service by label and scrapes a port by name; a Service finds its pods
by label; a Deployment owns the pods its selector matches. Each of these links is a string that
must be spelled identically on both ends, so both ends take it from here: the monitoring objects
(:mod:`scripts.promconfig.kubernetes`) and the tracker's workloads
(:mod:`scripts.promconfig.workloads`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

APP: Final = "bybit-options-tracker"

#: Labels on every object: who it belongs to, and the selector label of kube-prometheus-stack.
COMMON_LABELS: Final[Mapping[str, str]] = {
    "app.kubernetes.io/name": APP,
    "app.kubernetes.io/part-of": APP,
    "release": "kube-prometheus-stack",
}

#: Component -> (Service port name, scrape interval) of what serves /metrics. The job label each
#: ServiceMonitor writes is the component name: the contract job names of prometheus.yml.
MONITORED: Final[Mapping[str, tuple[str, str]]] = {
    "exporter": ("metrics", "15s"),
    "api": ("http", "15s"),
}


def component_selector(component: str) -> dict[str, str]:
    """The labels that pick ``component``'s Service (for its monitor) and pods (for its Service).

    Only the two that never change: a Deployment's selector is immutable, and a label a kustomize
    overlay rewrites (``release``) must not be part of it.
    """
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}


def metadata(name: str, *, component: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``metadata`` of a top-level object: its name and the common labels plus its component."""
    labels = {**COMMON_LABELS, "app.kubernetes.io/component": component, **(extra or {})}
    return {"name": name, "labels": labels}
