"""The load drill: it runs end to end on a small scale, and its verdicts mean what they say."""

from __future__ import annotations

import pytest

from bench import drill_load


@pytest.mark.slow
def test_the_load_drill_passes_on_a_small_scale_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code = drill_load.main(["--options", "200", "--factor", "3", "--scrapes", "20",
                            "--exporter-sizes", "300"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| seed: 100 concurrent | 100 | 0 |" in out
    assert "| 3x: 300 concurrent | 300 | 0 |" in out
    assert "| 300 | 20 |" in out  # the exporter round
    assert "API process after the run: running" in out
    assert "load drill: PASS" in out


def test_a_request_without_a_good_answer_fails_a_concurrent_round() -> None:
    ok = drill_load.judge("burst", [(0.01, 200, 1), (0.02, 200, 1)], sequential_run=False)
    bad = drill_load.judge("burst", [(0.01, 200, 1), (0.02, 503, 1)], sequential_run=False)
    lost = drill_load.judge("burst", [(0.01, 200, 1), (1.0, 0, 0)], sequential_run=False)
    assert ok.passed
    assert not bad.passed
    assert bad.errors == 1
    assert not lost.passed


def test_a_sequential_round_fails_on_a_mean_over_half_a_second_or_any_error() -> None:
    fast = drill_load.judge("seq", [(0.1, 200, 1)] * 10, sequential_run=True)
    slow = drill_load.judge("seq", [(0.6, 200, 1)] * 10, sequential_run=True)
    failing = drill_load.judge("seq", [(0.1, 200, 1)] * 9 + [(0.1, 500, 1)], sequential_run=True)
    assert fast.passed
    assert not slow.passed
    assert not failing.passed
