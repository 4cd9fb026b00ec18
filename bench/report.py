"""Where a drill's or benchmark's last figures go: a marked section of a doc, replaced in place.

Each drill owns one section between ``<!-- drill:NAME -->`` and ``<!-- /drill:NAME -->``;
rerunning it replaces that section's body and leaves every other word of the doc alone, so
the docs always show the last run, with when and where it ran.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

from tests.servers import repo_root

RELIABILITY = "docs/RELIABILITY.md"
_INTRO = """# Reliability drills

Each drill is one command, bounded in time, loopback only; it prints a table and, with
`--write-docs`, replaces its own section below with the figures of its run (date, core count
and command included). See the README's Figures section for the list.
"""


def provenance(argv: list[str] | None = None) -> str:
    """One line saying when, on what and by which command the figures were made."""
    command = "python -m " + " ".join(shlex.quote(a) for a in [_module(), *(argv or sys.argv[1:])])
    return (f"Last run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
            f"(Python {platform.python_version()}, {platform.machine()}): `{command}`")


def _module() -> str:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def write_section(name: str, title: str, body: str, *, doc: str = RELIABILITY) -> Path:
    """Replace the body of section ``name`` of ``doc`` (created, or appended under ``title``, if absent)."""
    path = repo_root() / doc
    text = path.read_text() if path.exists() else _INTRO
    begin, end = f"<!-- drill:{name} -->", f"<!-- /drill:{name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.write_text(text)
    return path
