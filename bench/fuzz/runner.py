"""Hypothesis as a generator of inputs: seeded batches, counted, bounded in count and time.

The drill does not want hypothesis' test-runner behaviour (stop at the first failure, shrink
it): it wants every input tried and every outcome counted. So each batch is a ``@given``
function whose body never raises — it hands the value to ``consume``, which counts — run
with the generate phase only, no example database and no deadline. Batches get successive
seeds, so a run is reproducible from its ``--seed``; the time bound is checked between
batches (a batch takes about a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

T = TypeVar("T")

BATCH = 250


def drive(strategy: st.SearchStrategy[T], consume: Callable[[T], None], *, examples: int,
          seconds: float, seed: int, batch: int = BATCH) -> int:
    """Feed up to ``examples`` drawn values to ``consume`` within about ``seconds``; how many were fed."""
    deadline = time.monotonic() + seconds
    fed = 0
    round_no = 0
    while fed < examples and time.monotonic() < deadline:
        size = min(batch, examples - fed)
        before = fed

        def one(value: T) -> None:
            nonlocal fed
            fed += 1
            consume(value)

        run = hypothesis_seed(seed * 100_003 + round_no)(
            settings(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
                     suppress_health_check=list(HealthCheck), print_blob=False)(given(strategy)(one)))
        run()
        round_no += 1
        if fed == before:  # the strategy is exhausted: nothing new to draw
            break
    return fed
