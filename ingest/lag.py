"""The exchange-lag histogram: arrival time minus the frame's ``ts`` (pure).

Counted in memory with the shared bucket bounds (:data:`common.keys.LAG_BUCKETS`) and
written to Redis as cumulative ``le:<bound>`` fields, so the exporter can expose a
Prometheus histogram without knowing anything but :mod:`common.keys`. A negative lag
(this host's clock behind Bybit's) is counted as zero: the histogram measures delay,
and clock skew is not delay.
"""

from __future__ import annotations

from bisect import bisect_left

from common import keys


class LagHistogram:
    """Bucket counts, sum and count of observed lags (seconds)."""

    def __init__(self, bounds: tuple[float, ...] = keys.LAG_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bounds must be strictly increasing")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # last: above the highest bound
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self._counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(bound, observations <= bound) for each bound, ascending."""
        out = []
        running = 0
        for bound, n in zip(self.bounds, self._counts, strict=False):
            running += n
            out.append((bound, running))
        return out

    def fields(self) -> dict[str, str]:
        """The ``stats:lag`` hash: cumulative ``le:<bound>``, ``le:+Inf``, ``sum``, ``count``."""
        doc = {keys.lag_bucket_field(bound): str(n) for bound, n in self.cumulative()}
        doc[keys.LAG_INF_FIELD] = str(self.count)
        doc[keys.LAG_SUM_FIELD] = repr(self.sum)
        doc[keys.LAG_COUNT_FIELD] = str(self.count)
        return doc
