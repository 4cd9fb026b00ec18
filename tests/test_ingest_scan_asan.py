"""The C scanner under AddressSanitizer: no read or write outside its buffers, on hostile input.

tests/test_ingest_scan.py checks what the scanner decides and writes; a read one byte past a
frame's end could still give the right answer by chance. Here the same C source is built with
``-fsanitize=address`` and a child interpreter (ASan's runtime preloaded) scans the capture, every
prefix of it, and tens of thousands of byte edits, comparing each result with the pure path. Any
out-of-bounds access aborts the child with ASan's report, which this test shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.servers import repo_root

CHILD = r'''
import importlib.util, random, sys
from ingest import canonical
from tests.test_ingest_canonical import DOCS, LIVE

spec = importlib.util.spec_from_file_location("ingest._scan", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
scan = canonical.native_scan(module.Scanner)
frames = [LIVE, DOCS, LIVE.replace(b'"0"', b'""')]
frames += [LIVE[:end] for end in range(len(LIVE))]
rng = random.Random(14)
for _ in range(30_000):
    f = bytearray(rng.choice((LIVE, DOCS)))
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(len(f) + 1)
        op = rng.randrange(3)
        if op == 0 and k < len(f):
            f[k] = rng.randrange(256)
        elif op == 1 and k < len(f):
            del f[k:k + rng.randint(1, 40)]
        else:
            f[k:k] = bytes(rng.choice(b'0123456789.-"A,}{:') for _ in range(rng.randint(1, 40)))
    frames.append(bytes(f))
matched = 0
for raw in frames:
    for recv_ms in (0, 1_764_000_000_123, -(2**63)):
        got, want = scan(raw, recv_ms), canonical.pure_scan(raw, recv_ms)
        assert got == want, raw[:200]
        matched += got is not None
print(f"scanned {len(frames)} frames, {matched} matches")
'''


def libasan() -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    found = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False)
    path = Path(found.stdout.strip())
    return path if path.is_absolute() and path.exists() else None


def test_the_scanner_reads_and_writes_only_its_own_buffers_on_hostile_frames(tmp_path: Path) -> None:
    runtime = libasan()
    if runtime is None:
        pytest.skip("no C compiler with AddressSanitizer's runtime (libasan) here")
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    built = tmp_path / "_scan_asan.so"
    subprocess.run([cc, "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer", "-shared", "-fPIC",
                    f"-I{sysconfig.get_paths()['include']}", str(repo_root() / "ingest" / "_scan.c"),
                    "-o", str(built)], check=True, capture_output=True, timeout=120)
    env = {**os.environ, "LD_PRELOAD": str(runtime), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
           "PYTHONMALLOC": "malloc",  # every object its own allocation, so ASan sees its bounds
           "PYTHONPATH": str(repo_root())}
    child = subprocess.run([sys.executable, "-c", CHILD, str(built)], env=env, cwd=repo_root(),
                           capture_output=True, text=True, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-4000:]
    assert "AddressSanitizer" not in child.stderr
    scanned, matches = (int(word.replace(",", "")) for word in child.stdout.split()[1::2][:2])
    assert scanned > 30_000
    assert matches > 3  # the capture and some edits of it were matched and rendered, not only refused
