"""The API's own metrics, on a registry owned by the application (no global metric objects).

Labels are bounded: ``route`` is the route template (``/api/options/{coin}``) or
``unmatched`` for paths no route matches, never the raw path; ``method`` is ``GET``,
``HEAD`` or ``other``; ``status`` is the class (``2xx``..``5xx``); ``result`` and ``type``
come from fixed sets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.cache import RESULTS

#: Bucket bounds (s): the p99 target (25 ms), the SLO (p95 < 500 ms), the warning tier (> 2 s).
DURATION_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNMATCHED: Final = "unmatched"
METHODS: Final = frozenset({"GET", "HEAD"})

#: The API's handled failures (``bybit_api_errors_total{type}``).
ERROR_TYPES: Final[tuple[str, ...]] = (
    "redis_timeout", "redis_connection",  # a Redis read failed
    "bad_data",  # an index member or hash that is not a well-formed option of the coin
    "malformed_request",  # refused by aiohttp's HTTP parser before routing (common.http_log)
    "client_gone",  # the client closed the connection before the answer was sent
    "internal",  # an exception no handler expected: a bug
)


class _WithoutCreated(Collector):
    """The registry's families minus the ``*_created`` samples.

    prometheus-client adds a creation-time series beside every counter and histogram
    child; nothing here uses them and they double the series count. Filtering at render
    time avoids the library's process-wide switch (``disable_created_metrics``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class ApiMetrics:
    """Request latency and counts, cache results and handled errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "bybit_api_request_duration_seconds", "Time to answer a request, by route template and method.",
            ["route", "method"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.requests = Counter(
            "bybit_api_requests_total", "Requests answered, by route template and status class.",
            ["route", "status"], registry=self.registry)
        self.cache = Counter(
            "bybit_api_cache_requests_total", "Option lookups by cache result (hit, miss, stale).",
            ["result"], registry=self.registry)
        self.errors = Counter(
            "bybit_api_errors_total", "Failures the API handled, by type.", ["type"], registry=self.registry)
        for result in RESULTS:
            self.cache.labels(result)
        for error_type in ERROR_TYPES:
            self.errors.labels(error_type)

    def render(self, accept: str) -> tuple[bytes, str]:
        """(exposition, content type) in the format the ``Accept`` header asks for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(_WithoutCreated(self.registry)), content_type

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.duration.labels(route, method).observe(seconds)
        self.requests.labels(route, f"{min(max(status // 100, 1), 5)}xx").inc()


def route_of(request: web.Request) -> str:
    """The matched route's template, or :data:`UNMATCHED` (404/405 answers)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def metrics_middleware(metrics: ApiMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Time and count every request, whatever its outcome (outermost middleware)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.observe(route_of(request), request.method, status, time.perf_counter() - started)

    return middleware
