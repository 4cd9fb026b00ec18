"""``python -m scripts.backup``: runs ``bybit-tracker backup`` with the checkout as the deployment dir."""

from __future__ import annotations

from pathlib import Path

from tracker_tools.backup.command import main

#: The checkout this shim sits in: where its configuration is, wherever it is run from.
CHECKOUT = Path(__file__).resolve().parent.parent.parent

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m scripts.backup", root=CHECKOUT))
