"""Did every update reach Redis intact? Redis compared with the simulator's truth after a quiet flush.

The simulator's truth is, per listed symbol, the last well-formed ticker it sent. Once its
pushes are paused (fault ``silent``) the truth stops changing, and after the ingest has
flushed, every option hash must hold exactly that ticker. A symbol whose hash is missing or
older than the truth lost updates; a hash with the truth's ``ts`` but other values, or a key
outside the documented layout, is corruption.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import keys
from tests.fixtures_components import keys_outside_layout, quiesce, stored_options
from tests.fixtures_simulator import SimulatorHandle


@dataclass(frozen=True, slots=True)
class TruthReport:
    """Outcome of one comparison of Redis with the truth."""

    symbols: int
    missing: list[str] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)  # stored ts older than the truth's
    corrupt: list[str] = field(default_factory=list)  # same ts, other values (or a newer ts)
    foreign_keys: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Symbols whose latest update never reached Redis."""
        return len(self.missing) + len(self.behind)

    @property
    def corruption(self) -> int:
        return len(self.corrupt) + len(self.foreign_keys)

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.corruption == 0

    def summary(self) -> str:
        parts = [f"{self.symbols:,} symbols", f"lost {self.lost}", f"corrupt {self.corruption}"]
        if self.missing:
            parts.append(f"missing e.g. {self.missing[:2]}")
        if self.behind:
            parts.append(f"behind e.g. {self.behind[:2]}")
        if self.corrupt:
            parts.append(f"corrupt e.g. {self.corrupt[:2]}")
        if self.foreign_keys:
            parts.append(f"keys outside the layout e.g. {self.foreign_keys[:2]}")
        return ", ".join(parts)


def compare(r: Any, truth: Mapping[str, Mapping[str, Any]], coins: Sequence[str]) -> TruthReport:
    """One comparison of Redis (a decode_responses client) with ``truth``."""
    stored = stored_options(r, sorted(truth))
    report = TruthReport(symbols=len(truth), foreign_keys=keys_outside_layout(r, coins))
    for symbol, want in truth.items():
        got = dict(stored[symbol])
        if not got:
            report.missing.append(symbol)
            continue
        got.pop(keys.F_OPTION_RECV_TS, None)
        ts = got.get(keys.F_OPTION_TS, "")
        if ts.isdigit() and int(ts) < int(want["ts"]):
            report.behind.append(symbol)
        elif got != {**want["data"], keys.F_OPTION_TS: str(want["ts"])}:
            report.corrupt.append(symbol)
    return report


def settle_and_compare(simulator: SimulatorHandle, r: Any, coins: Sequence[str], *,
                       timeout: float = 30.0) -> TruthReport:
    """Pause the pushes, then compare until Redis matches the truth or ``timeout`` passes.

    Leaves the simulator silent; the caller clears the fault to resume the stream.
    """
    quiesce(simulator)
    truth = simulator.truth()
    deadline = time.monotonic() + timeout
    report = compare(r, truth, coins)
    while not report.clean and time.monotonic() < deadline:
        time.sleep(0.5)  # the ingest flushes every 0.1 s; poll at a human pace
        report = compare(r, truth, coins)
    return report
