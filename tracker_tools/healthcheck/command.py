"""``bybit-tracker healthcheck``: parse the flags, run the checks, print the report, exit by tier.

``main`` takes the program name so that ``--help`` and errors name the command the operator
typed: ``bybit-tracker healthcheck`` when installed, ``python -m scripts.healthcheck`` from a
checkout (the old spelling, kept as a shim).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import redis

from common import keys
from common.config import ConfigError, Settings, help_epilog, load_settings, reported_replicas
from common.logs import configure_logging
from tracker_tools.healthcheck import report
from tracker_tools.healthcheck.api_check import check_api
from tracker_tools.healthcheck.findings import Finding
from tracker_tools.healthcheck.redaction import redact
from tracker_tools.healthcheck.redis_checks import evaluate, read_snapshot, sample_reconnects

log = logging.getLogger("healthcheck")
EXIT_UNKNOWN = 3
#: Always part of the verdict, even with ``--only``: when Redis cannot be read, no other check
#: ran, and a container health check must not call that healthy.
ALWAYS_COUNTED = frozenset({"redis"})
#: ``--only own_replicas``: ``replica_<name>`` of every name the ingest configured here reports
#: under (INGEST_REPLICA with one process, ``<INGEST_REPLICA>-w<i>`` with INGEST_WORKERS above 1).
#: An ingest container's own health check names it, so the check follows the worker count the
#: container runs with: ``replica_a`` alone is never listed while replica a runs workers.
OWN_REPLICAS = "own_replicas"

DEFAULT_PROG = "bybit-tracker healthcheck"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check the tracker's health (Redis, ingest, data freshness, API) and exit by tier: "
                    "0 ok/info, 1 warning, 2 critical, 3 could not run. Thresholds are the alert tiers'.",
        epilog=help_epilog(("REDIS_URL", "BYBIT_COINS", "API_PORT", "REDIS_CAPACITY_BYTES", "INGEST_REPLICA",
                            "INGEST_WORKERS")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--redis-url", help="Redis to read (default: REDIS_URL)")
    parser.add_argument("--api-url", help="base URL of the API (default: http://127.0.0.1:API_PORT)")
    parser.add_argument("--no-api", action="store_true", help="skip the API check")
    parser.add_argument("--only", action="append", metavar="CHECK", default=[],
                        help="report and judge only this check (repeatable), e.g. ingest_heartbeat for "
                             "the ingest container's health check; Redis reachability always counts. "
                             f"{OWN_REPLICAS}: the replica_<name> check of each name the ingest configured "
                             "here reports under (INGEST_REPLICA, or INGEST_REPLICA-w0 .. -w<N-1> with "
                             "INGEST_WORKERS=N above 1; one not listed is critical), for an ingest "
                             "container judging itself whatever its worker count")
    parser.add_argument("--sample", type=float, default=0.0, metavar="SECONDS",
                        help="measure the current reconnect rate over SECONDS (default: from the counters)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per Redis or HTTP call")
    parser.add_argument("--config", help="YAML config file (as the components take)")
    return parser


def run(args: argparse.Namespace, settings: Settings) -> list[Finding]:
    """Every finding: Redis reachability, the Redis-side checks, then the API's (unless ``--no-api``)."""
    redis_url = args.redis_url or settings.redis_url
    shown = redact(redis_url)
    findings: list[Finding] = []
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=args.timeout,
                                  socket_connect_timeout=args.timeout)
    try:
        snapshot = read_snapshot(client, settings.coins)
        sampled = sample_reconnects(client, args.sample) if args.sample > 0 else None
    except redis.RedisError as exc:
        log.warning("redis unreachable", extra={"redis_url": shown, "error_type": type(exc).__name__})
        findings.append(Finding("redis", "critical", None, "count", f"cannot read Redis at {shown}: {exc}"))
    else:
        findings.append(Finding("redis", "ok", None, "count", f"reachable at {shown}"))
        findings += evaluate(snapshot, now=time.time(), capacity_bytes=settings.redis_capacity_bytes,
                             sampled_rate=sampled, sampled_over=args.sample if sampled is not None else None)
    finally:
        client.close()
    if not args.no_api:
        api_url = args.api_url or f"http://127.0.0.1:{settings.api_port}"
        findings += check_api(api_url, timeout=args.timeout)
    return findings


def expand_own(only: Sequence[str], settings: Settings) -> list[str]:
    """``only`` with :data:`OWN_REPLICAS` replaced by ``replica_<name>`` of each name the ingest
    that ``settings`` configure reports under (duplicates dropped, order kept)."""
    own = [f"replica_{name}" for name in reported_replicas(settings.ingest_replica, settings.ingest_workers)]
    return list(dict.fromkeys(name for check in only for name in (own if check == OWN_REPLICAS else [check])))


def select(findings: list[Finding], only: Sequence[str]) -> list[Finding]:
    """The findings ``--only`` keeps (all of them without it), Redis reachability always.

    Raises ValueError naming the checks that exist when a name matches none: a typo in a
    container's health check must fail loudly, not judge nothing and report healthy.
    """
    if not only:
        return findings
    names = {f.check for f in findings}
    redis_down = any(f.check == "redis" and f.severity != "ok" for f in findings)
    if not redis_down:
        # replica_<name> of a replica that is not listed: it has not heartbeated for a day, or
        # never did (a container's own check, HA): that is a finding, not a typo.
        findings = findings + [_unlisted_replica(name) for name in only
                               if name not in names and _replica_name(name) is not None]
        names = {f.check for f in findings}
    unknown = sorted(set(only) - names)
    if unknown and not redis_down:  # with Redis down the Redis-side checks never ran
        raise ValueError(f"no check named {', '.join(unknown)}; checks: {', '.join(sorted(names))}, "
                         f"and {OWN_REPLICAS} (this ingest's replica_<name> checks)")
    return [f for f in findings if f.check in ALWAYS_COUNTED or f.check in only]


def _replica_name(check: str) -> str | None:
    """The replica a ``replica_<name>`` check is about (None when ``check`` is not one)."""
    name = check.removeprefix("replica_")
    return name if name != check and keys.is_valid_replica(name) else None


def _unlisted_replica(check: str) -> Finding:
    name = _replica_name(check)
    return Finding(check, "critical", None, "s",
                   f"ingest replica {name} is not listed in {keys.INGEST_REPLICAS}: it has not heartbeated "
                   "within a day, or never started")


def main(argv: Sequence[str] | None = None, *, prog: str = DEFAULT_PROG) -> int:
    """Exit code by the worst tier found (see the package docstring)."""
    args = _parser(prog).parse_args(argv)
    configure_logging("WARNING", "text")
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"healthcheck: configuration error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    found = run(args, settings)
    try:
        findings = select(found, expand_own(args.only, settings))
    except ValueError as exc:
        print(f"healthcheck: --only: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    print(report.as_json(findings) if args.json else report.table(findings))
    return report.exit_code(findings)
