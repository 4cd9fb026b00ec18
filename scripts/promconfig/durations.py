"""Prometheus durations (``90s``, ``1h30m``, ``500ms``) to seconds and back.

Thresholds, ``for:`` clauses and SLO windows are written as Prometheus durations in
prometheus/thresholds.yml; the generator scales some of them (short ``for:`` for tests),
so it needs to read and write them exactly as Prometheus does.
"""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0,
                 "s": 1.0, "ms": 0.001}
_PART: Final = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_WHOLE: Final = re.compile(r"(?:\d+(?:ms|y|w|d|h|m|s))+")
#: Units used when writing a duration, largest first (weeks and years read badly in rules).
_WRITE: Final = (("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ``ValueError`` for anything Prometheus would reject."""
    text = text.strip()
    if text == "0":
        return 0.0
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a Prometheus duration: {text!r} (write e.g. 30s, 5m, 1h30m)")
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for ``seconds``, to the millisecond (``0s`` for zero)."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    left = round(seconds * 1000)
    if left == 0:
        return "0s"
    parts = []
    for unit, size in _WRITE:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
