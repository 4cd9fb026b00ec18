"""Which backups to keep: the newest archive of each of the last N days that have one.

Archives are named ``tracker-YYYYMMDDTHHMMSSZ.tar.gz``; the name carries the time, so
retention needs no archive to be opened (a corrupt one can still be pruned).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

PREFIX: Final = "tracker-"
SUFFIX: Final = ".tar.gz"
_NAME: Final = re.compile(r"^tracker-(\d{8}T\d{6}Z)\.tar\.gz$")
_STAMP: Final = "%Y%m%dT%H%M%SZ"


def archive_name(when: datetime) -> str:
    return f"{PREFIX}{when.astimezone(UTC).strftime(_STAMP)}{SUFFIX}"


def created_at(path: Path) -> datetime | None:
    """When the archive at ``path`` was made, from its name (None: not one of ours)."""
    m = _NAME.match(path.name)
    if m is None:
        return None
    return datetime.strptime(m.group(1), _STAMP).replace(tzinfo=UTC)


def archives(directory: Path) -> list[Path]:
    """Our archives in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_file() and created_at(p) is not None]
    return sorted(found, key=lambda p: created_at(p) or datetime.min.replace(tzinfo=UTC))


def to_prune(paths: Iterable[Path], keep_daily: int) -> list[Path]:
    """Archives outside the retention: all but the newest of each of the ``keep_daily`` newest days."""
    if keep_daily < 1:
        raise ValueError("keep_daily must be at least 1")
    dated: list[tuple[datetime, Path]] = []
    for path in paths:
        when = created_at(path)
        if when is not None:
            dated.append((when, path))
    dated.sort(reverse=True)
    newest_per_day: dict[str, Path] = {}
    for when, path in dated:
        newest_per_day.setdefault(when.date().isoformat(), path)
    kept_days = sorted(newest_per_day, reverse=True)[:keep_daily]
    keep = {newest_per_day[day] for day in kept_days}
    return [p for _when, p in dated if p not in keep]
