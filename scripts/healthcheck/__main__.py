"""``python -m scripts.healthcheck``: runs ``bybit-tracker healthcheck`` (see the package docstring)."""

from __future__ import annotations

from tracker_tools.healthcheck.command import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m scripts.healthcheck"))
