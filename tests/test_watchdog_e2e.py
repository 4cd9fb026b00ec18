"""End to end: the dead-man's switch leaves a real Prometheus and a real Alertmanager, repeatedly.

A real Prometheus evaluates the committed rules (prometheus/rules/, Watchdog included) every
second; it notifies a real Alertmanager running the loopback variant of the committed
alertmanager.yml (same routing tree, every receiver posting to a webhook here, timers scaled
by :data:`TIMING_SCALE`). Nothing else runs: every scrape target is a closed port, which is the
point. The Watchdog needs no target, so its pings prove only that rules are evaluated and
notifications delivered, and they must arrive at the dead-man's switch's receiver and nowhere
else, once per (scaled) group_interval, for as long as the pipeline lives.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.promconfig import write_local_alertmanager_config, write_local_config
from scripts.promconfig.alertmanager_config import load_source
from scripts.promconfig.durations import parse_duration
from scripts.promconfig.rules import RULES_DIR
from tests.servers import (
    LOOPBACK,
    AlertmanagerServer,
    PrometheusServer,
    WebhookReceiver,
    free_port,
    wait_until,
)

TIMING_SCALE = 0.1
#: Pings to wait for: enough to measure the interval between them twice.
PINGS = 3


def watchdog_route() -> dict[str, Any]:
    route: dict[str, Any] = load_source()["route"]["routes"][0]
    assert route["matchers"] == ['alertname="Watchdog"'], "the Watchdog's route comes first"
    return route


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def pipeline(
    tmp_path: Path, webhook: WebhookReceiver,
) -> Iterator[tuple[PrometheusServer, AlertmanagerServer]]:
    am_dir, prom_dir = tmp_path / "alertmanager", tmp_path / "prometheus"
    alertmanager = AlertmanagerServer(am_dir, write_local_alertmanager_config(
        am_dir, webhook_url=webhook.url, timing_scale=TIMING_SCALE))
    prom_dir.mkdir()
    # Prometheus re-sends firing alerts every resend-delay (1m by default); its first send can be
    # dropped while it has not yet discovered the Alertmanager, so re-send every second here.
    prometheus = PrometheusServer(prom_dir, prom_dir / "prometheus.yml",
                                  extra_args=["--rules.alert.resend-delay=1s"])
    write_local_config(prom_dir, exporter=f"{LOOPBACK}:{free_port()}", api=f"{LOOPBACK}:{free_port()}",
                       prometheus=f"{LOOPBACK}:{prometheus.port}",
                       alertmanager=f"{LOOPBACK}:{alertmanager.port}",
                       scrape_interval="1s", evaluation_interval="1s", rules_dir=RULES_DIR)
    started: list[PrometheusServer | AlertmanagerServer] = []
    try:
        for server in (alertmanager, prometheus):
            server.start()
            started.append(server)
        yield prometheus, alertmanager
    finally:
        for server in reversed(started):
            server.stop()


@pytest.mark.slow
def test_the_watchdog_pings_the_dead_mans_switch_every_group_interval_and_no_one_else(
    pipeline: tuple[PrometheusServer, AlertmanagerServer], webhook: WebhookReceiver,
) -> None:
    route = watchdog_route()
    period = parse_duration(route["group_interval"]) * TIMING_SCALE   # 1m -> 6s
    first_wait = parse_duration(route["group_wait"]) * TIMING_SCALE

    arrivals = wait_until(lambda: (a := webhook.arrivals("Watchdog")) and len(a) >= PINGS and a,
                          timeout=30 + first_wait + PINGS * period * 2, interval=0.2,
                          what=f"{PINGS} Watchdog pings at the webhook")

    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # One ping per group_interval tick: with repeat_interval >= group_interval it would be every other
    # tick (2 x period), which is what this bound catches.
    assert all(0.5 * period < gap < 1.5 * period for gap in gaps), (
        f"pings {gaps} s apart, expected about {period} s")

    watchdog = [a for a in webhook.alerts() if a["labels"]["alertname"] == "Watchdog"]
    assert {a["receiver"] for a in watchdog} == {"deadmans-switch"}, "no paging receiver gets the heartbeat"
    assert {a["status"] for a in watchdog} == {"firing"}
    labels = watchdog[0]["labels"]
    assert labels["severity"] == "none"
    assert labels["condition"] == "watchdog"
    assert watchdog[0]["annotations"]["runbook_url"].endswith("/docs/runbooks/Watchdog.md")
    # The switch's receiver hears of nothing but the heartbeat, although every target is down.
    others = {a["labels"]["alertname"] for a in webhook.alerts() if a["receiver"] == "deadmans-switch"}
    assert others == {"Watchdog"}
