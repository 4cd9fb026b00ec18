"""What a health check found: one measurement, its tier and a sentence for the operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result. ``value`` is in ``unit`` (``s``, ``ratio``, ``per_hour``, ``count``)."""

    check: str
    severity: str  # ok | info | warning | critical
    value: float | None
    unit: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "severity": self.severity, "value": self.value, "unit": self.unit,
                "detail": self.detail}
