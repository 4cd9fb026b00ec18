"""``python -m scripts.gen_dashboards [--check]``: rewrite grafana/dashboards/*.json, or exit 1 when
they are out of date. The command kept when the generator moved onto Grafana's typed builders
(grafana-foundation-sdk) in :mod:`scripts.dashboards`."""

from scripts.dashboards import DASHBOARDS, main, stale, write_all

__all__ = ["DASHBOARDS", "main", "stale", "write_all"]

if __name__ == "__main__":
    raise SystemExit(main())
