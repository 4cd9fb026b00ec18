"""The soak drill: a short run passes and says so; its verdict fails on what a user cares about."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import drill_soak
from bench.drill_soak import ResetAwareTotals, SoakRun
from bench.drills.sampling import ProcessTrack
from bench.drills.truth import TruthReport


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_one_minute_soak_survives_every_fault_without_losing_an_update(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = drill_soak.main(["--minutes", "1", "--instruments-per-coin", "50", "--drop-every", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| updates lost (Redis vs the simulator's truth) | 0 of 150 symbols |" in out
    assert "| corruption (wrong values, keys outside the layout) | 0 |" in out
    # Every scheduled fault happened, and the SIGKILLed ingest came back under a new pid.
    for event in ("rest_limit_10006:", "redis_restart:", "rest_limit_429:", "ingest_kill:"):
        assert event in out
    assert "| ingest pids (restarts by the supervisor) | 2 (1) |" in out
    assert "| unexpected alerts | none |" in out
    assert "soak drill: PASS" in out


def _clean_run() -> SoakRun:
    run = SoakRun(minutes=1, ingest_restarts=1, truth=TruthReport(symbols=10))
    run.events = [(12.0 * i, f"{name}: done") for i, (_, name) in enumerate(drill_soak.SCHEDULE)]
    return run


def test_a_clean_run_has_no_failures() -> None:
    assert _clean_run().failures() == []


def test_an_alert_outside_the_faults_allowed_list_fails_the_soak_but_an_allowed_one_does_not() -> None:
    run = _clean_run()
    run.alert_states = {"NewErrorType": "firing", "WebSocketReconnectsHigh": "firing"}
    assert run.failures() == []
    run.alert_states["IngestDown"] = "firing"
    assert run.unexpected() == {"IngestDown"}
    assert any("IngestDown" in f for f in run.failures())


def test_an_alert_that_only_went_pending_is_not_a_failure_but_one_paged_through_the_webhook_is() -> None:
    run = _clean_run()
    run.alert_states = {"RedisDown": "pending"}
    assert run.failures() == []
    run.notified = {"RedisDown"}
    assert run.unexpected() == {"RedisDown"}


def test_lost_updates_corruption_a_missed_event_or_no_restart_each_fail_the_soak() -> None:
    lost = _clean_run()
    lost.truth = TruthReport(symbols=10, missing=["BTC-1JAN27-1000-C"])
    corrupt = _clean_run()
    corrupt.truth = TruthReport(symbols=10, foreign_keys=["junk"])
    missed = _clean_run()
    missed.events = missed.events[:-1]
    unrestarted = _clean_run()
    unrestarted.ingest_restarts = 0
    for run in (lost, corrupt, missed, unrestarted):
        assert run.failures(), run


def test_counter_totals_carry_on_across_an_ingest_restart() -> None:
    totals = ResetAwareTotals()
    for value in (5.0, 9.0, 2.0, 4.0):  # the ingest restarted between 9 and 2
        total = totals.add("reconnects", value)
    assert total == 13.0
    assert totals.add("reconnects", None) == 13.0  # an unreadable scrape changes nothing


def test_cpu_and_memory_follow_the_new_pid_after_a_restart() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        track = ProcessTrack(window=0.0)
        track.sample(child.pid)
        track.sample(None)  # between a death and its restart
        own = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            track.sample(own.pid)
            track.sample(own.pid)
        finally:
            own.kill()
            own.wait()
    finally:
        child.kill()
        child.wait()
    assert track.pids == [child.pid, own.pid]
    assert len(track.rss_mib) == 3
    assert all(r > 0 for r in track.rss_mib)
    assert all(c >= 0 for c in track.cpu_pct)
