"""Render findings for people (a table) or for machines (JSON), and the overall verdict."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tracker_tools.healthcheck.findings import Finding
from tracker_tools.healthcheck.tiers import EXIT_CODES, worst


def overall(findings: Sequence[Finding]) -> str:
    return worst([f.severity for f in findings])


def exit_code(findings: Sequence[Finding]) -> int:
    return EXIT_CODES[overall(findings)]


def _value(f: Finding) -> str:
    if f.value is None:
        return "-"
    if f.unit == "ratio":
        return f"{f.value * 100:.1f} %"
    if f.unit == "s":
        return f"{f.value:.1f} s"
    if f.unit == "per_hour":
        return f"{f.value:.1f} /h"
    return f"{f.value:g}"


def table(findings: Sequence[Finding]) -> str:
    rows = [("CHECK", "STATUS", "VALUE", "DETAIL")]
    rows += [(f.check, f.severity.upper(), _value(f), f.detail) for f in findings]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    verdict = overall(findings)
    lines.append(f"\noverall: {verdict.upper()} (exit {EXIT_CODES[verdict]})")
    return "\n".join(lines)


def as_json(findings: Sequence[Finding]) -> str:
    verdict = overall(findings)
    return json.dumps({"status": verdict, "exit_code": EXIT_CODES[verdict],
                       "checks": [f.as_dict() for f in findings]}, indent=2)
