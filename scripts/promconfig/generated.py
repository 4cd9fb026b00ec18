"""Directories of generated files (rule files, Kubernetes manifests): write them, find the stale ones.

One place for both, so that ``render`` and ``check`` judge every generated directory alike: a
file is stale when it differs from the rendering, is missing, or matches the directory's pattern
without being generated any more.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_files(out_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Write ``name -> text`` into ``out_dir`` (created if needed); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(out_dir: Path, expected: Mapping[str, str], pattern: str) -> list[str]:
    """Names in ``out_dir`` that differ from ``expected``, are missing, or match ``pattern`` and are extra."""
    present = {p.name for p in out_dir.glob(pattern)} if out_dir.is_dir() else set()
    out = present - set(expected)
    for name, text in expected.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.add(name)
    return sorted(out)
