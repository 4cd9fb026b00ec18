"""bench/profile_ingest.py reads py-spy's raw samples into per-function self time correctly.

The before/after profile table of docs/BENCHMARKS.md comes from this sum: a wrong split of the
frame text would put the CPU on the wrong function.
"""

from __future__ import annotations

from bench.profile_ingest import self_time, table


def test_samples_are_summed_by_leaf_function_over_its_lines() -> None:
    raw = [
        "<module> (ingest/__main__.py:10);run (asyncio/runners.py:118);"
        "on_message (/x/ingest/connection.py:291) 30\n",
        "<module> (ingest/__main__.py:10);on_message (/x/ingest/connection.py:295) 10\n",
        "<module> (ingest/__main__.py:10);select (/usr/lib/python3.11/selectors.py:468) 20\n",
        "garbage line without a count\n",
    ]
    total, per_function = self_time(raw)
    assert total == 60
    assert per_function == {"on_message (connection.py)": 40, "select (selectors.py)": 20}
    assert table(total, per_function, 1).splitlines()[2] == "| `on_message (connection.py)` | 66.7% |"
