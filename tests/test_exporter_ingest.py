"""The exporter over what the real ingest writes from the simulator (all real processes)."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable

import pytest

from common import errors, keys
from tests.fixtures_components import IngestHandle
from tests.fixtures_readers import Exposition, ServiceHandle, exporter_factory, parse_exposition
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, binary_or_skip, wait_until

__all__ = ["exporter_factory"]

R = keys.DEFAULT_REPLICA  # python -m ingest without INGEST_REPLICA
COINS = ("BTC", "ETH")


def scrape(url: str) -> tuple[str, Exposition]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return text, parse_exposition(text)


@pytest.mark.slow
def test_exporter_reports_a_live_ingest_then_its_death(
    redis_server: RedisServer, simulator_factory: Callable[..., SimulatorHandle],
    ingest_factory: Callable[..., IngestHandle], exporter_factory: Callable[..., ServiceHandle],
) -> None:
    sim = simulator_factory(coins=COINS, instruments_per_coin=60, push_interval=0.2, seed=5)
    listed = sim.instruments()
    ingest = ingest_factory(redis_url=redis_server.url, simulator=sim, coins=COINS)
    ingest.wait_for_data(symbols=sum(len(s) for s in listed.values()), timeout=60)
    # The exporter's notion of a dead ingest follows the heartbeat TTL the ingest uses.
    exporter = exporter_factory(redis_url=redis_server.url, coins=COINS,
                                env={"INGEST_HEARTBEAT_TTL": ingest.env["INGEST_HEARTBEAT_TTL"]})

    def live() -> tuple[str, Exposition] | None:
        text, m = scrape(exporter.url)
        ready = m.get("bybit_ingest_up", replica=R) == 1 and all(
            m.get("bybit_options_tracked", coin=c) == len(listed[c]) for c in COINS)
        return (text, m) if ready else None

    text, m = wait_until(live, timeout=30, what="the exporter to see the live ingest")
    assert m.value("bybit_redis_up") == 1
    assert m.value("bybit_ws_connected", replica=R) == m.value("bybit_ws_connections_desired", replica=R) >= 1
    assert m.value("bybit_ws_subscriptions", replica=R) == sum(len(s) for s in listed.values())
    for coin in COINS:
        assert m.value("bybit_ws_messages_total", replica=R, coin=coin) >= len(listed[coin])
        assert m.value("bybit_data_staleness_seconds", coin=coin) < 30
    assert m.value("bybit_redis_writes_total", replica=R) >= sum(len(s) for s in listed.values())
    assert m.value("bybit_message_lag_seconds_count", replica=R) > 0
    assert m.label_values("bybit_errors_total", "type") == set(errors.ERROR_TYPES)
    assert m.value("bybit_ingest_replicas_up") == 1
    assert 0 < m.value("bybit_ingest_resident_memory_bytes", replica=R) < 500 * 2**20
    assert m.value("bybit_option_ttl_seconds", replica=R) == 86400
    done = subprocess.run([binary_or_skip("promtool"), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    ingest.kill()  # SIGKILL: no goodbye, the heartbeat just stops

    def dead() -> Exposition | None:
        _, m = scrape(exporter.url)
        return m if m.value("bybit_ingest_up", replica=R) == 0 else None

    first = wait_until(dead, timeout=30, what="bybit_ingest_up 0 after the ingest died")
    assert first.value("bybit_ingest_heartbeat_age_seconds", replica=R) > 0
    assert first.value("bybit_ingest_replicas_up") == 0
    before = first.value("bybit_data_staleness_seconds", coin="BTC")
    later = wait_until(lambda: (m := scrape(exporter.url)[1]).value(
        "bybit_data_staleness_seconds", coin="BTC") > before + 1 and m, timeout=15,
        what="staleness to keep growing")
    assert later.value("bybit_ingest_up", replica=R) == 0
    assert later.value("bybit_redis_up") == 1
