"""This process's resident memory and CPU time, for the heartbeat (no psutil needed).

RSS comes from ``/proc/self/statm`` (current resident pages) where Linux provides it,
else from ``resource.getrusage`` (peak RSS, the best portable figure); CPU seconds are
user + system time from ``os.times``.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from pathlib import Path
from typing import Final

log = logging.getLogger("ingest.process_stats")

_STATM: Final = Path("/proc/self/statm")
_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size in bytes."""
    try:
        fields = _STATM.read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError) as exc:
        log.debug("statm unavailable, using getrusage", extra={"error": repr(exc)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    t = os.times()
    return t.user + t.system
