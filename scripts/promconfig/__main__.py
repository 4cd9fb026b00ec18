"""Entry point of ``python -m scripts.promconfig`` (see scripts/promconfig/cli.py)."""

from scripts.promconfig.cli import main

raise SystemExit(main())
