"""The Grafana dashboards (grafana/dashboards/*.json), built with Grafana's typed builders.

Hand-edited dashboard JSON drifts: ids collide, a unit is forgotten, a threshold stops
matching the alert it mirrors. Here each dashboard is one function of :mod:`.boards`, written
with ``grafana-foundation-sdk``, Grafana's own builders for its dashboard schema; :mod:`.parts`
holds one factory per kind of panel and the alert-tier colours, :mod:`.shared` the queries and
panels several dashboards show, with thresholds from :mod:`scripts.healthcheck.tiers`.
The JSON is written sorted and stable, so a review reads the Python diff and the JSON follows.

    python -m scripts.gen_dashboards           # rewrite grafana/dashboards/*.json
    python -m scripts.gen_dashboards --check   # exit 1 when the committed JSON is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import boards
from scripts.dashboards.parts import to_json

ROOT: Final = Path(__file__).resolve().parents[2]
OUT_DIR: Final = ROOT / "grafana" / "dashboards"


@dataclass(frozen=True, slots=True)
class DashboardFile:
    """A dashboard and the file Grafana's provisioning reads it from."""

    filename: str
    build: Callable[[], dm.Dashboard]

    def dump(self) -> str:
        """Stable text: sorted keys, two-space indent, trailing newline (reviewable diffs)."""
        return json.dumps(to_json(self.build()), indent=2, sort_keys=True) + "\n"


DASHBOARDS: Final = (
    DashboardFile("overview.json", boards.overview),
    DashboardFile("ingest.json", boards.ingest),
    DashboardFile("api.json", boards.api),
    DashboardFile("redis.json", boards.redis),
    DashboardFile("slo.json", boards.slo),
)


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = out_dir / dashboard.filename
        path.write_text(dashboard.dump(), encoding="utf-8")
        written.append(path)
    return written


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Names of dashboards whose committed JSON differs from what this package generates."""
    out = []
    for dashboard in DASHBOARDS:
        path = out_dir / dashboard.filename
        if not path.is_file() or path.read_text(encoding="utf-8") != dashboard.dump():
            out.append(dashboard.filename)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gen_dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the JSON is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            print(f"out of date: grafana/dashboards/{name} (run python -m scripts.gen_dashboards)",
                  file=sys.stderr)
        return 1 if out_of_date else 0
    for path in write_all():
        print(path.relative_to(ROOT))
    return 0
