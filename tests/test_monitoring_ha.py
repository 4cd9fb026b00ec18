"""HA monitoring with real engines: two Prometheus replicas, two meshed Alertmanagers, one page.

The configuration under test is the project's: each Prometheus replica's prometheus.yml comes
from scripts.promconfig (the generator behind prometheus/ha/prometheus-{a,b}.yml: external label
``replica``, dropped from alerts by ``alert_relabel_configs``, every alert to both
Alertmanagers), and both Alertmanagers run the loopback variant of alertmanager/alertmanager.yml
(timers scaled by :data:`TIMING_SCALE`), gossiping with each other on loopback cluster ports as
docker-compose.ha.yml has them do on 9094.

Shown here: a firing alert is notified exactly once although two replicas evaluate it and two
Alertmanagers receive it; after the Alertmanager that sent it is SIGKILLed, a new alert is still
notified exactly once, by the survivor, and the first one is not sent again. The cluster's timers
are shortened (gossip every 100 ms, 2 s between peers instead of 15 s) so that the test takes
seconds; production keeps Alertmanager's defaults.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import write_local_alertmanager_config, write_local_config
from scripts.promconfig.prometheus_config import REPLICA_LABEL
from tests.servers import (
    LOOPBACK,
    AlertmanagerServer,
    PrometheusServer,
    WebhookReceiver,
    free_port,
    wait_until,
)

TIMING_SCALE = 0.1
PEER_TIMEOUT_SECONDS = 2.0
#: Alertmanager's cluster, fast: gossip and full syncs often, a short wait between peers.
CLUSTER_ARGS = (f"--cluster.peer-timeout={PEER_TIMEOUT_SECONDS:g}s", "--cluster.gossip-interval=100ms",
                "--cluster.pushpull-interval=1s", "--cluster.settle-timeout=10s")
#: How long after a notification a duplicate could still come: the second peer's turn comes
#: PEER_TIMEOUT after the first's, plus a scaled group_interval (6 s) for a late flush.
DUPLICATE_WINDOW_SECONDS = 2 * PEER_TIMEOUT_SECONDS + 6.0 + 2.0


def drill_rule(name: str) -> dict[str, Any]:
    """A rule that fires at once, routed like a page (critical: the shortest timers)."""
    return {"alert": name, "expr": "vector(1)",
            "labels": {"severity": "critical", "condition": "ha_drill"},
            "annotations": {"summary": f"{name}: HA drill"}}


def write_rules(rules_dir: Path, *names: str) -> None:
    rules_dir.mkdir(parents=True, exist_ok=True)
    doc = {"groups": [{"name": "ha.drill", "rules": [drill_rule(n) for n in names]}]}
    (rules_dir / "drill.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def webhook_notifications_sent(am: AlertmanagerServer) -> float:
    """``alertmanager_notifications_total{integration="webhook"}`` of one Alertmanager."""
    with urllib.request.urlopen(f"{am.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith('alertmanager_notifications_total{integration="webhook"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no webhook notification counter in {am.url}/metrics")


def cluster_size(am: AlertmanagerServer) -> int:
    return len(get_json(f"{am.url}/api/v2/status")["cluster"]["peers"])


@dataclass
class HaStack:
    alertmanagers: dict[str, AlertmanagerServer]
    prometheus: dict[str, PrometheusServer]
    rules_dir: Path
    webhook: WebhookReceiver

    def notified(self, alertname: str) -> list[dict[str, Any]]:
        """Every firing alert named ``alertname`` in every notification so far."""
        return [a for a in self.webhook.alerts()
                if a["labels"]["alertname"] == alertname and a["status"] == "firing"]

    def reload_rules(self, *names: str) -> None:
        write_rules(self.rules_dir, *names)
        for prom in self.prometheus.values():
            urllib.request.urlopen(urllib.request.Request(f"{prom.url}/-/reload", method="POST"), timeout=5)


@pytest.fixture
def ha_stack(tmp_path: Path) -> Iterator[HaStack]:
    webhook = WebhookReceiver()
    webhook.start()
    started: list[AlertmanagerServer | PrometheusServer] = []
    try:
        am_config = write_local_alertmanager_config(tmp_path / "am-config", webhook_url=webhook.url,
                                                    timing_scale=TIMING_SCALE)
        ams = {peer: AlertmanagerServer(tmp_path / f"alertmanager-{peer}", am_config, extra_args=CLUSTER_ARGS,
                                        cluster_peers=[]) for peer in ("a", "b")}
        (tmp_path / "alertmanager-a").mkdir()
        (tmp_path / "alertmanager-b").mkdir()
        ams["a"].cluster_peers = [ams["b"].cluster_address]
        ams["b"].cluster_peers = [ams["a"].cluster_address]
        for am in ams.values():
            am.start()
            started.append(am)
        wait_until(lambda: all(cluster_size(am) == 2 for am in ams.values()), timeout=30, interval=0.2,
                   what="the two Alertmanagers to see each other in the cluster")

        rules_dir = tmp_path / "rules"
        write_rules(rules_dir, "HaDrillFirst")
        proms = {}
        for replica in ("a", "b"):
            prom_dir = tmp_path / f"prometheus-{replica}"
            prom_dir.mkdir()
            # Re-send firing alerts every second (default 1m): a first send made before the
            # Alertmanagers are discovered is dropped, and the test must not wait a minute.
            prom = PrometheusServer(prom_dir, prom_dir / "prometheus.yml",
                                    extra_args=["--rules.alert.resend-delay=1s"])
            write_local_config(prom_dir, exporter=f"{LOOPBACK}:{free_port()}",
                               api=f"{LOOPBACK}:{free_port()}", prometheus=f"{LOOPBACK}:{prom.port}",
                               alertmanager=[f"{LOOPBACK}:{am.port}" for am in ams.values()],
                               scrape_interval="1s", evaluation_interval="1s", rules_dir=rules_dir,
                               replica=replica)
            proms[replica] = prom
        for prom in proms.values():
            prom.start()
            started.append(prom)
        yield HaStack(ams, proms, rules_dir, webhook)
    finally:
        for server in reversed(started):
            server.stop()
        webhook.stop()


def exactly_once(stack: HaStack, alertname: str, *, timeout: float) -> dict[str, Any]:
    """Wait for ``alertname``'s notification, then through the duplicate window: one, never two."""
    wait_until(lambda: stack.notified(alertname), timeout=timeout, interval=0.1,
               what=f"{alertname} notified at the webhook")
    deadline = time.monotonic() + DUPLICATE_WINDOW_SECONDS
    while time.monotonic() < deadline:
        assert len(stack.notified(alertname)) == 1, (
            f"{alertname} notified {len(stack.notified(alertname))} times: {stack.notified(alertname)}")
        time.sleep(0.2)
    (alert,) = stack.notified(alertname)
    return alert


@pytest.mark.slow
def test_two_replicas_and_two_alertmanagers_notify_once_and_once_more_after_one_alertmanager_dies(
    ha_stack: HaStack,
) -> None:
    stack = ha_stack
    t0 = time.monotonic()
    wait_until(lambda: stack.notified("HaDrillFirst"), timeout=60, interval=0.05)
    print("FIRST", time.monotonic() - t0)
    first = exactly_once(stack, "HaDrillFirst", timeout=60)
    assert REPLICA_LABEL not in first["labels"], "the replica label must be dropped from alerts"
    assert first["receiver"] == "oncall-pager"

    # Both replicas' copies are one alert in each Alertmanager (identical labels), and only one of
    # the two Alertmanagers sent it: the other found it in the gossiped notification log.
    for am in stack.alertmanagers.values():
        held = [a for a in get_json(f"{am.url}/api/v2/alerts") if a["labels"]["alertname"] == "HaDrillFirst"]
        assert len(held) == 1, f"{am.url} holds {len(held)} HaDrillFirst alerts: {held}"
    sent = {peer: webhook_notifications_sent(am) for peer, am in stack.alertmanagers.items()}
    assert sorted(sent.values()) == [0.0, 1.0], f"notifications sent by each Alertmanager: {sent}"

    # The one that sent it crashes; both Prometheus replicas keep sending to both addresses.
    sender = next(peer for peer, count in sent.items() if count == 1.0)
    survivor = next(peer for peer in stack.alertmanagers if peer != sender)
    stack.alertmanagers[sender].kill()

    t1 = time.monotonic()
    stack.reload_rules("HaDrillFirst", "HaDrillSecond")
    wait_until(lambda: stack.notified("HaDrillSecond"), timeout=60, interval=0.05)
    print("SECOND", time.monotonic() - t1)
    second = exactly_once(stack, "HaDrillSecond", timeout=60)
    assert REPLICA_LABEL not in second["labels"]
    assert webhook_notifications_sent(stack.alertmanagers[survivor]) == 1.0, "the survivor sent it"
    assert len(stack.notified("HaDrillFirst")) == 1, "the survivor knew the first was already sent"
