"""Which number is Redis' memory capacity (pure).

Memory alerts are ratios (used / capacity > 50 / 70 / 90 %), so the capacity must never be
0 or missing while Redis answers. Redis reports ``maxmemory`` in ``INFO memory`` (0 when
unlimited, the default); then the operator's ``REDIS_CAPACITY_BYTES`` applies, and without
it the host's memory as Redis sees it (``total_system_memory``) — the point where an
unlimited Redis would be killed or swap. ``bybit_redis_maxmemory_configured`` tells the
first case from the two fallbacks, so a dashboard can say "no maxmemory set".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Capacity:
    """The capacity to report, ``None`` when nothing is known, and whether it is maxmemory."""

    bytes: float | None
    maxmemory_configured: bool


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def redis_capacity(memory: Mapping[str, Any], *, configured_bytes: int) -> Capacity:
    """``maxmemory`` if set, else ``configured_bytes`` if > 0, else ``total_system_memory``."""
    maxmemory = _positive(memory.get("maxmemory"))
    if maxmemory is not None:
        return Capacity(maxmemory, maxmemory_configured=True)
    if configured_bytes > 0:
        return Capacity(float(configured_bytes), maxmemory_configured=False)
    return Capacity(_positive(memory.get("total_system_memory")), maxmemory_configured=False)
