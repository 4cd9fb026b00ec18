"""``bybit-tracker COMMAND ...``: one installed command in front of the operator's tools.

Each command keeps its own parser, so ``bybit-tracker COMMAND --help`` is that tool's full
help and everything after the command's name is passed to it untouched. Commands import their
module only when chosen: ``bybit-tracker --help`` stays fast, and a tool that cannot import
(say, a missing optional dependency) does not take the others down with it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

PROG = "bybit-tracker"
DISTRIBUTION = "bybit-options-tracker"


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its line in ``bybit-tracker --help`` and the function that runs it."""

    summary: str
    run: Callable[[list[str], str], int]  # (arguments after the command's name, its prog) -> exit code


def _healthcheck(argv: list[str], prog: str) -> int:
    from tracker_tools.healthcheck.command import main

    return main(argv, prog=prog)


def _backup(argv: list[str], prog: str) -> int:
    from tracker_tools.backup.command import main

    return main(argv, prog=prog)


def _check(argv: list[str], prog: str) -> int:
    # The live check belongs to the ingest (it uses the ingest's own discovery and connection
    # code); this is only its installed name. ``python -m ingest --check`` is the same thing.
    from ingest.__main__ import main

    return main(["--check", *argv], prog=prog)


COMMANDS: dict[str, Command] = {
    "healthcheck": Command("the stack's health, exit 0 ok/info, 1 warning, 2 critical, 3 could not run",
                           _healthcheck),
    "backup": Command("create, restore, list or prune archives of Redis data and configuration", _backup),
    "check": Command("live check of the exchange with the ingest's settings (python -m ingest --check)",
                     _check),
}


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operator tools of the Bybit options tracker.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        # Only the name is parsed here; the command's own parser reads the rest (and its --help).
        sub.add_parser(name, help=command.summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code of the chosen command (2, with usage, for an unknown or missing one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args or args[0].startswith("-"):
        parser.parse_args(args)  # --help, --version, or an error naming the missing COMMAND: exits
        parser.error("a COMMAND must come before its options")
    name, rest = args[0], args[1:]
    parser.parse_args([name])  # an unknown name exits 2 listing the commands
    return COMMANDS[name].run(rest, f"{PROG} {name}")
