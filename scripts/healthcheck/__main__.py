"""Entry point of ``python -m scripts.healthcheck`` (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import redis

from common.config import ConfigError, help_epilog, load_settings
from common.logs import configure_logging
from scripts.healthcheck import report
from scripts.healthcheck.api_check import check_api
from scripts.healthcheck.findings import Finding
from scripts.healthcheck.redaction import redact
from scripts.healthcheck.redis_checks import evaluate, read_snapshot, sample_reconnects

log = logging.getLogger("healthcheck")
EXIT_UNKNOWN = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.healthcheck",
        description="Check the tracker's health (Redis, ingest, data freshness, API) and exit by tier: "
                    "0 ok/info, 1 warning, 2 critical, 3 could not run. Thresholds are the alert tiers'.",
        epilog=help_epilog(("REDIS_URL", "BYBIT_COINS", "API_PORT", "REDIS_CAPACITY_BYTES")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--redis-url", help="Redis to read (default: REDIS_URL)")
    parser.add_argument("--api-url", help="base URL of the API (default: http://127.0.0.1:API_PORT)")
    parser.add_argument("--no-api", action="store_true", help="skip the API check")
    parser.add_argument("--sample", type=float, default=0.0, metavar="SECONDS",
                        help="measure the current reconnect rate over SECONDS (default: from the counters)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per Redis or HTTP call")
    parser.add_argument("--config", help="YAML config file (as the components take)")
    return parser


def run(args: argparse.Namespace) -> list[Finding]:
    settings = load_settings(config_file=args.config)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging("WARNING", "text")
    try:
        findings = run(args)
    except ConfigError as exc:
        print(f"healthcheck: configuration error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    print(report.as_json(findings) if args.json else report.table(findings))
    return report.exit_code(findings)


if __name__ == "__main__":
    raise SystemExit(main())
