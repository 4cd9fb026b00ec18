"""Is the API answering? One ``GET /readyz``: unreachable is critical, not ready or slow a warning."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

from tracker_tools.healthcheck import tiers
from tracker_tools.healthcheck.findings import Finding

log = logging.getLogger("healthcheck.api")


def check_api(base_url: str, *, timeout: float) -> list[Finding]:
    """Reachability and readiness of the API at ``base_url``, and how long one answer took.

    A 503 from ``/readyz`` means the API is up but its data is stale or Redis is away: the
    Redis findings say which, so it is a warning here. No answer at all is the seed's
    "API completely unresponsive": critical. One request is not a p95, but an answer slower
    than the p95 warning threshold is already worth a warning.
    """
    url = base_url.rstrip("/") + "/readyz"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
            status = int(resp.status)
            resp.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        body = exc.read(300).decode(errors="replace").strip()
        log.warning("api not ready", extra={"url": url, "status": status, "error_type": "http_status"})
        return [Finding("api_ready", "warning", float(status), "count",
                        f"GET {url} answered {status}: {body or exc.reason}")]
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        log.warning("api unreachable", extra={"url": url, "error_type": type(exc).__name__})
        return [Finding("api_ready", "critical", None, "count", f"GET {url} failed: {reason}")]
    elapsed = time.monotonic() - started
    slow = tiers.API_LATENCY_P95_SECONDS.classify(elapsed)
    return [
        Finding("api_ready", "ok", float(status), "count", f"GET {url} answered {status}"),
        Finding("api_latency", slow, elapsed, "s",
                f"/readyz answered in {elapsed * 1000:.0f} ms (warning > "
                f"{tiers.API_LATENCY_P95_SECONDS.warning:g} s)"),
    ]
