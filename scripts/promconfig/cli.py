"""Command line of the generator: render the committed files, check them, or write variants.

    python -m scripts.promconfig render         # prometheus.yml, ha/*.yml, rules/*.yml, deploy/kubernetes/
    python -m scripts.promconfig check          # exit 1 if a committed file is out of date
    python -m scripts.promconfig render --runbook-base https://tracker.example.com/docs/runbooks/
    python -m scripts.promconfig kubernetes --out DIR --runbook-base https://tracker.example.com/docs/runbooks/
    python -m scripts.promconfig kubernetes --out DIR --ingest-replicas a,b   # two ingests (HA)
    python -m scripts.promconfig prometheus --out DIR --exporter 127.0.0.1:9108 ...
    python -m scripts.promconfig prometheus --out DIR --replica a --alertmanager HOST:P1,HOST:P2 ...
    python -m scripts.promconfig rules --out DIR --set NoDataFlowing.threshold=10 --duration-scale 0.05
    python -m scripts.promconfig alertmanager --out DIR --webhook-url http://127.0.0.1:9000/hook
    python -m scripts.promconfig alertmanager --out DIR --smarthost 127.0.0.1:1025 --always-active
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.promconfig.alertmanager_config import write_local_alertmanager_config
from scripts.promconfig.kubernetes import (
    KUBE_DIR,
    render_kubernetes,
    stale_kubernetes_files,
    write_kubernetes,
)
from scripts.promconfig.model import DEFAULT_RUNBOOK_BASE, RunbookBaseError, check_runbook_base
from scripts.promconfig.prometheus_config import (
    COMPOSE_TARGETS,
    PROMETHEUS_FILE,
    render_ha_configs,
    render_prometheus_config,
    write_local_config,
)
from scripts.promconfig.rules import RULES_DIR, render_rule_files, stale_rule_files, write_rule_files
from scripts.promconfig.thresholds import ROOT, ThresholdError, load_thresholds
from scripts.promconfig.workloads import ReplicaNamesError, check_ingest_replicas


def _runbook_base(value: str) -> str:
    """--runbook-base, checked: argparse prints the reason (only ArgumentTypeError's is shown)."""
    try:
        return check_runbook_base(value)
    except RunbookBaseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _smarthost(value: str) -> str:
    """--smarthost HOST:PORT, checked here so a typo is a usage error, not a silent mail outage."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:1025), got {value!r}")
    return value


def _ingest_replicas(value: str) -> tuple[str, ...]:
    """--ingest-replicas a,b, checked: argparse prints the reason."""
    try:
        return check_ingest_replicas([n.strip() for n in value.split(",") if n.strip()])
    except ReplicaNamesError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.promconfig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="rewrite prometheus/prometheus.yml, ha/*.yml, rules/*.yml "
                            "and deploy/kubernetes/*.yaml")
    check = sub.add_parser("check", help="exit 1 when a committed generated file is out of date")
    kube = sub.add_parser("kubernetes", help="write the deploy/kubernetes manifests into another directory")
    kube.add_argument("--out", type=Path, required=True, help="directory for the manifests")
    kube.add_argument("--ingest-replicas", type=_ingest_replicas, default=(), metavar="NAME,NAME",
                      help="one ingest Deployment per name, each its own INGEST_REPLICA, with "
                           "INGEST_MONOTONIC_WRITES on (HA; default: one ingest, replica main)")

    prom = sub.add_parser("prometheus", help="write a prometheus.yml for other targets (e.g. loopback)")
    prom.add_argument("--out", type=Path, required=True, help="directory for prometheus.yml")
    for job in ("exporter", "api", "prometheus"):
        prom.add_argument(f"--{job}", required=True, metavar="HOST:PORT", help=f"{job} target")
    prom.add_argument("--alertmanager", required=True, metavar="HOST:PORT[,HOST:PORT]",
                      help="Alertmanager(s): scraped, and each sent every alert")
    prom.add_argument("--replica", help="HA replica name: external label replica, dropped from alerts")
    prom.add_argument("--scrape-interval", default="15s")
    prom.add_argument("--evaluation-interval", default="15s")
    prom.add_argument("--rules-dir", type=Path, default=RULES_DIR,
                      help="directory whose *.yml are the rule files (default: the committed rules)")

    rules = sub.add_parser("rules", help="write rule files with overridden thresholds or scaled for:")
    rules.add_argument("--out", type=Path, required=True, help="directory for the rule files")
    rules.add_argument("--set", action="append", default=[], metavar="ALERT.KEY=VALUE",
                       help="override one value of prometheus/thresholds.yml (repeatable)")
    rules.add_argument("--duration-scale", type=float, default=1.0,
                       help="multiply every for: duration by this (e.g. 0.05 for tests)")
    for command in (render, check, kube, rules):
        command.add_argument("--runbook-base", type=_runbook_base, default=DEFAULT_RUNBOOK_BASE,
                             metavar="URL", help="URL every runbook_url starts with, <Alert>.md appended "
                             f"(default {DEFAULT_RUNBOOK_BASE}: the API's /docs/runbooks/)")

    am = sub.add_parser("alertmanager", help="write the loopback variant of alertmanager/alertmanager.yml")
    am.add_argument("--out", type=Path, required=True, help="directory for alertmanager.yml")
    am.add_argument("--webhook-url", help="loopback URL every receiver posts to (default: none)")
    am.add_argument("--timing-scale", type=float, default=1.0,
                    help="multiply group_wait/group_interval/repeat_interval by this")
    am.add_argument("--smarthost", type=_smarthost, metavar="HOST:PORT",
                    help="send the committed mails (recipients, subjects, templates) to this SMTP relay, "
                    "plain text, no authentication, e.g. a local MailHog (default: no mail)")
    am.add_argument("--always-active", action="store_true",
                    help="drop the routes' working-hours limits, so every tier notifies at any hour")
    return parser


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ThresholdError(f"--set {pair!r}: expected ALERT.KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _stale(runbook_base: str) -> list[str]:
    names = [f"prometheus/rules/{n}" for n in
             stale_rule_files(rendered=render_rule_files(runbook_base=runbook_base))]
    kube = render_kubernetes(runbook_base=runbook_base)
    names += [str((KUBE_DIR / n).relative_to(ROOT)) for n in stale_kubernetes_files(rendered=kube)]
    expected = {PROMETHEUS_FILE: render_prometheus_config(COMPOSE_TARGETS), **render_ha_configs()}
    for path, text in expected.items():
        committed = path.read_text(encoding="utf-8") if path.is_file() else ""
        if committed != text:
            names.append(str(path.relative_to(ROOT)))
    return names


def _base_flag(args: argparse.Namespace) -> str:
    """The --runbook-base to repeat in a hint, if it is not the default."""
    base: str = args.runbook_base
    return "" if base == DEFAULT_RUNBOOK_BASE else f" --runbook-base {base}"


def run(args: argparse.Namespace) -> int:
    if args.command == "render":
        written = write_rule_files(RULES_DIR, load_thresholds(), runbook_base=args.runbook_base)
        for extra in stale_rule_files(RULES_DIR, render_rule_files(runbook_base=args.runbook_base)):
            (RULES_DIR / extra).unlink()  # a rule file no longer generated
            print(f"removed prometheus/rules/{extra}")
        kube = render_kubernetes(runbook_base=args.runbook_base)
        written += write_kubernetes(KUBE_DIR, kube)
        for extra in stale_kubernetes_files(KUBE_DIR, kube):
            (KUBE_DIR / extra).unlink()  # a manifest no longer generated
            print(f"removed {(KUBE_DIR / extra).relative_to(ROOT)}")
        configs = {PROMETHEUS_FILE: render_prometheus_config(COMPOSE_TARGETS), **render_ha_configs()}
        for path, text in configs.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for path in (*written, *configs):
            print(path.relative_to(ROOT))
        return 0
    if args.command == "check":
        stale = _stale(args.runbook_base)
        for name in stale:
            print(f"out of date: {name} (run: python -m scripts.promconfig render{_base_flag(args)})",
                  file=sys.stderr)
        return 1 if stale else 0
    if args.command == "prometheus":
        managers = [a.strip() for a in args.alertmanager.split(",") if a.strip()]
        print(write_local_config(args.out, exporter=args.exporter, api=args.api, prometheus=args.prometheus,
                                 alertmanager=managers, scrape_interval=args.scrape_interval,
                                 evaluation_interval=args.evaluation_interval, rules_dir=args.rules_dir,
                                 replica=args.replica))
        return 0
    if args.command == "rules":
        thresholds = load_thresholds().with_overrides(_overrides(args.set)).scaled(args.duration_scale)
        for path in write_rule_files(args.out, thresholds, runbook_base=args.runbook_base):
            print(path)
        return 0
    if args.command == "kubernetes":
        rendered = render_kubernetes(runbook_base=args.runbook_base, ingest_replicas=args.ingest_replicas)
        for path in write_kubernetes(args.out, rendered):
            print(path)
        return 0
    print(write_local_alertmanager_config(args.out, webhook_url=args.webhook_url,
                                          timing_scale=args.timing_scale, smarthost=args.smarthost,
                                          always_active=args.always_active))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (ThresholdError, RunbookBaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
