"""``python -m tracker_tools``: the same as the installed ``bybit-tracker`` command."""

from __future__ import annotations

from tracker_tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
