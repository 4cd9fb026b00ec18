"""bench.bench_workers --quick runs the ingest with 1 and 2 workers against one paced feed and reports both.

Shape and sanity only (timings are the benchmark's business, never a test's): a row per worker
count, most of the frames offered taken by each (over half, on a loaded machine), the 2-worker
row's busiest worker below its total.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.servers import python_env, repo_root


@pytest.mark.slow
def test_quick_run_reports_one_row_per_worker_count() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.bench_workers", "--quick"], cwd=repo_root(),
                          env=python_env(), capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {int(m[0]): m[1:] for m in re.findall(
        r"^\| (\d) \| ([\d,]+) \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+) \|", done.stdout, re.MULTILINE)}
    assert set(rows) == {1, 2}, done.stdout
    header = re.search(r"([\d,]+) frames/s offered", done.stdout)
    assert header is not None, done.stdout
    offered = int(header[1].replace(",", ""))
    for workers, (frames, total, busiest, _rss) in rows.items():
        assert int(frames.replace(",", "")) > offered * 0.5, (workers, done.stdout)
        assert 0 < float(busiest) <= float(total)
    assert float(rows[2][2]) < float(rows[2][1]), "two workers share the load"
    assert "2 workers vs 1: busiest worker" in done.stdout
