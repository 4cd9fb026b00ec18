"""Diff dashboard JSON files against what :mod:`scripts.dashboards` renders, panel by panel.

Written for the move onto grafana-foundation-sdk: the JSON the hand-made generator wrote is the
reference, and every difference is either one of the SDK's defaults that Grafana reads the same
as the old JSON (listed in :data:`ACCEPTED`, with the reason) or a change to look at.

    python -m scripts.dashboards.compare [--old DIR]   # exit 1 on a difference not accepted
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from scripts.dashboards import DASHBOARDS, OUT_DIR


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    old: Any
    new: Any


#: What the SDK writes that the old JSON left out, each with Grafana's own default value for it
#: (Grafana 11.4's schema and panel defaults), so Grafana reads both the same.
SCHEMA_DEFAULTS: Final[dict[str, Any]] = {
    r"^fiscalYearStartMonth$": 0,
    r"^links\[0\]\.(icon|tooltip)$": "",
    r"^links\[0\]\.targetBlank$": False,
    r"^templating\.list\[0\]\.(auto|includeAll|multi|skipUrlSync)$": False,
    r"^templating\.list\[0\]\.auto_count$": 30,  # interval variables only
    r"^templating\.list\[0\]\.auto_min$": "10s",  # interval variables only
    r"\.repeatDirection$": "h",  # repeated panels only
    r"\.transparent$": False,
    r"\.options\.legend\.calcs$": [],
    # stat
    r"\.options\.percentChangeColorMode$": "standard",
    r"\.options\.showPercentChange$": False,
    r"\.options\.wideLayout$": True,
    # gauge and bar gauge
    r"'(Redis memory \(of capacity\)|Health score)'\.options\.minViz(Height|Width)$": 75,  # gauges
    r"'Error budget left'\.options\.minVizHeight$": 16,  # the bar gauge
    r"'Error budget left'\.options\.minVizWidth$": 8,
    r"\.options\.maxVizHeight$": 300,
    r"\.options\.sizing$": "auto",
    r"\.options\.displayMode$": "gradient",
    r"\.options\.namePlacement$": "auto",
    r"\.options\.showUnfilled$": True,
    r"\.options\.valueMode$": "color",
    r"'Error budget left'\.options\.legend$": {"displayMode": "list", "placement": "bottom",
                                                "showLegend": False, "calcs": []},
    # table
    r"\.options\.footer$": {"show": False, "reducer": [], "countRows": False},
    r"\.options\.frameIndex$": 0,
    r"\.options\.showTypeIcons$": False,
}

#: What the old JSON had and the SDK leaves out, with why Grafana does not miss it.
DROPPED: Final[dict[str, str]] = {
    r"^panels\[\d+\] .*\.description$": "an empty description is no description",
    r"\.fieldConfig\.defaults\.mappings$": "an empty list of value mappings",
    r"^timepicker$": "an empty time picker configuration: Grafana's default intervals",
    r"^templating\.list\[0\]\.(current|options|refresh)$":
        "a data source variable lists the data sources and picks the default one when the dashboard loads",
    r"'Error budget left'\.options\.showThreshold(Labels|Markers)$":
        "gauge options, not bar gauge ones: Grafana ignored them (the SDK's bar gauge has no such method)",
}


def accepted(d: Difference) -> str | None:
    """Why the difference does not matter, or None."""
    if d.old is MISSING:
        for pattern, default in SCHEMA_DEFAULTS.items():
            if re.search(pattern, d.path) and d.new == default:
                return "Grafana's default"
    elif d.new is MISSING:
        return next((reason for pattern, reason in DROPPED.items() if re.search(pattern, d.path)), None)
    return None


def diff(old: Any, new: Any, path: str = "") -> Iterator[Difference]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            yield from diff(old.get(key, MISSING), new.get(key, MISSING), f"{path}.{key}" if path else key)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from diff(a, b, f"{path}[{i}]")
    elif old != new or type(old) is not type(new):
        yield Difference(path, old, new)


def compare(old: dict[str, Any], new: dict[str, Any]) -> Iterator[Difference]:
    """Dashboard-level fields, then each panel (matched by position, named by its title)."""
    yield from diff({k: v for k, v in old.items() if k != "panels"},
                    {k: v for k, v in new.items() if k != "panels"})
    old_panels, new_panels = old.get("panels", []), new.get("panels", [])
    if [p.get("title") for p in old_panels] != [p.get("title") for p in new_panels]:
        yield Difference("panels (titles in order)", [p.get("title") for p in old_panels],
                         [p.get("title") for p in new_panels])
        return
    for i, (a, b) in enumerate(zip(old_panels, new_panels, strict=True)):
        yield from diff(a, b, f"panels[{i}] {a.get('title')!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.dashboards.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, default=OUT_DIR, help="directory of the reference JSON")
    parser.add_argument("--all", action="store_true", help="print the accepted differences too")
    args = parser.parse_args(argv)
    unexplained = explained = 0
    for dashboard in DASHBOARDS:
        old = json.loads((args.old / dashboard.filename).read_text(encoding="utf-8"))
        for d in compare(old, dashboard.render()):
            reason = accepted(d)
            if reason is None:
                unexplained += 1
                print(f"{dashboard.filename}: {d.path}: {d.old!r} -> {d.new!r}")
            else:
                explained += 1
                if args.all:
                    print(f"{dashboard.filename}: {d.path}: {d.old!r} -> {d.new!r}  [accepted: {reason}]")
    print(f"{unexplained} differences to look at, {explained} accepted", file=sys.stderr)
    return 1 if unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
