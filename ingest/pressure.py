"""Redis memory pressure: when to shorten option TTLs, with hysteresis (pure).

Above the threshold the ingest writes option hashes with the short TTL (and applies
it to the existing ones), so Redis sheds stale data before it hits maxmemory; below
``hysteresis`` x threshold it goes back to the normal TTL. The gap keeps a Redis that
hovers around the threshold from flipping every stats interval (each flip costs an
EXPIRE per tracked symbol).

The threshold is ``ratio`` x maxmemory when Redis has a maxmemory, else the fixed
``threshold_bytes`` (the seed's 400 MB).
"""

from __future__ import annotations


class MemoryPressure:
    """Tracks whether the short TTL is in force."""

    def __init__(self, *, threshold_bytes: int, ratio: float, normal_ttl: int, pressure_ttl: int,
                 hysteresis: float = 0.9) -> None:
        if not 0 < ratio <= 1 or not 0 < hysteresis <= 1:
            raise ValueError("ratio and hysteresis must be in (0, 1]")
        self.threshold_bytes = threshold_bytes
        self.ratio = ratio
        self.normal_ttl = normal_ttl
        self.pressure_ttl = pressure_ttl
        self.hysteresis = hysteresis
        self.active = False

    @property
    def ttl(self) -> int:
        """The TTL to apply to option hashes now."""
        return self.pressure_ttl if self.active else self.normal_ttl

    def threshold(self, maxmemory: int) -> float:
        return self.ratio * maxmemory if maxmemory > 0 else float(self.threshold_bytes)

    def update(self, used_memory: int, maxmemory: int) -> bool:
        """Feed Redis' ``used_memory``/``maxmemory``; True when the TTL in force changed."""
        limit = self.threshold(maxmemory)
        if not self.active and used_memory > limit:
            self.active = True
            return True
        if self.active and used_memory < limit * self.hysteresis:
            self.active = False
            return True
        return False
