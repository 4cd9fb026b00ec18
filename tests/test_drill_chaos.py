"""The chaos drill: faults are detected by the alert the rules define, and the stack it uses cleans up."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
import yaml

from bench import drill_chaos
from bench.drill_chaos import FAULTS, Outcome
from bench.drills.stack import Stack, StackOptions
from bench.drills.truth import TruthReport
from tests.servers import port_open


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_stopped_exporter_and_a_stopped_alertmanager_are_each_detected_and_recover_without_loss(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = drill_chaos.main(["--only", "exporter_down", "alertmanager_down",
                             "--instruments-per-coin", "30", "--detect-timeout", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert rows["exporter_down"].startswith("| exporter_down | ExporterDown |")
    assert rows["exporter_down"].endswith("| pass |")
    assert rows["alertmanager_down"].startswith("| alertmanager_down | AlertmanagerDown |")
    assert rows["alertmanager_down"].endswith("| pass |")
    assert "| 0 |" in rows["exporter_down"]  # no data lost
    assert "chaos drill: PASS" in out


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


@contextlib.contextmanager
def _sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt here, whatever disposition pytest inherited.

    A shell without job control starts a background command with SIGINT ignored, and Python
    then leaves it ignored, so the self-sent SIGINT below would do nothing and the test would
    fail for a reason that has nothing to do with the drill. The previous handler is put back.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_inside(stack: Stack, pids: list[int | None], ports: list[int]) -> None:
    """Run the stack, note its processes and ports, then press Ctrl-C (SIGINT to the drill)."""
    with stack:
        assert stack.prometheus is not None
        assert stack.alertmanager is not None
        pids += [stack.ingest.pid, stack.exporter.pid, stack.api.pid]
        ports += [stack.redis.port, stack.simulator.port, stack.exporter.port, stack.api.port,
                  stack.prometheus.port, stack.alertmanager.port]
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_stack_is_torn_down_when_a_drill_is_interrupted() -> None:
    stack = Stack(StackOptions(instruments_per_coin=10))
    pids: list[int | None] = []
    ports: list[int] = []
    launched_with = signal.getsignal(signal.SIGINT)
    with _sigint_raises_keyboard_interrupt(), pytest.raises(KeyboardInterrupt):
        _interrupt_inside(stack, pids, ports)
    assert signal.getsignal(signal.SIGINT) is launched_with
    assert None not in pids
    assert _pids_alive([p for p in pids if p is not None]) == []
    assert [p for p in ports if port_open(p)] == []
    assert not stack.workdir.exists()


def test_a_fault_that_never_fires_its_alert_is_reported_not_detected() -> None:
    fault = next(f for f in FAULTS if f.name == "silent_stream")
    missed = Outcome(fault, 0.1, recovered_s=3.0, truth=TruthReport(symbols=5))
    assert not missed.passed
    assert missed.verdict() == "NOT DETECTED"


def test_lost_data_after_recovery_fails_the_fault() -> None:
    fault = next(f for f in FAULTS if f.name == "redis_down_30s")
    lossy = Outcome(fault, 0.1, detected_by="RedisDown", pending_s=1.0, firing_s=7.0, recovered_s=2.0,
                    truth=TruthReport(symbols=5, behind=["BTC-1JAN27-1000-C"]))
    assert lossy.verdict() == "DATA LOST"
    assert "1 lost, 0 corrupt" in lossy.row()


def test_a_row_shows_the_production_equivalent_of_each_detection_time() -> None:
    fault = next(f for f in FAULTS if f.name == "exporter_down")
    ok = Outcome(fault, 0.1, detected_by="ExporterDown", pending_s=1.5, firing_s=14.0, recovered_s=2.5,
                 truth=TruthReport(symbols=5))
    assert ok.passed
    assert ok.row().startswith("| exporter_down | ExporterDown | 1.5 (~15s) | 14.0 (~2m20s) | 2.5 | 0 |")


def test_every_fault_of_the_brief_is_in_the_matrix_with_an_alert_the_rules_define() -> None:
    from scripts.promconfig import render_rule_files

    assert [f.name for f in FAULTS] == ["no_pong", "silent_stream", "rejected_subscriptions",
                                        "redis_down_30s", "redis_full", "exporter_down", "alertmanager_down"]
    known = {rule["alert"] for text in render_rule_files().values()
             for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "alert" in rule}
    for fault in FAULTS:
        assert set(fault.expected) <= known, fault.name
