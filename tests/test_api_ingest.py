"""The API over data written by the real ingest from the simulator (all real processes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from common import keys
from tests.fixtures_components import IngestHandle, quiesce, truth_mismatches
from tests.fixtures_readers import ServiceHandle, api_factory
from tests.fixtures_simulator import SimulatorHandle
from tests.servers import RedisServer, wait_until

__all__ = ["api_factory"]

COINS = ("BTC", "ETH", "SOL")


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_api_serves_every_listed_btc_option_with_the_values_the_exchange_sent_last(
    redis_server: RedisServer, simulator: SimulatorHandle, ingest_factory: Callable[..., IngestHandle],
    api_factory: Callable[..., ServiceHandle],
) -> None:
    listed = simulator.instruments()
    ingest = ingest_factory(redis_url=redis_server.url, simulator=simulator)
    ingest.wait_for_data(symbols=sum(len(s) for s in listed.values()), timeout=60)
    api = api_factory(redis_url=redis_server.url, coins=COINS, env={"API_READY_MAX_STALENESS": "3"})
    status, ready = get(api.url + "/readyz")
    assert status == 200, ready

    quiesce(simulator)
    truth = simulator.truth()
    redis = redis_server.client()
    wait_until(lambda: not truth_mismatches(redis, truth), timeout=20, interval=0.25,
               what="Redis to hold the simulator's last tickers")

    def settled() -> Any:
        _, body = get(api.url + "/api/options/BTC")
        got = {o["symbol"]: o for o in body["options"]}
        matches = all(got.get(s, {}).get(keys.F_OPTION_TS) == str(truth[s]["ts"]) for s in listed["BTC"])
        return body if matches else None

    body = wait_until(settled, timeout=10, what="the API to serve the frozen truth")
    served = {o["symbol"]: o for o in body["options"]}
    assert set(served) == set(listed["BTC"])
    assert body["count"] == len(listed["BTC"]) >= 500
    for symbol, option in served.items():
        for name, value in truth[symbol]["data"].items():
            assert option[name] == value, (symbol, name)
        assert option[keys.F_OPTION_TS] == str(truth[symbol]["ts"])

    some = next(iter(listed["ETH"]))
    status, one = get(api.url + f"/api/options/ETH/{some}")
    assert status == 200
    assert one["option"]["markPrice"] == truth[some]["data"]["markPrice"]
    status, coins = get(api.url + "/api/coins")
    assert [(c["coin"], c["count"]) for c in coins["coins"]] == [(c, len(listed[c])) for c in COINS]

    # The feed is silent: past API_READY_MAX_STALENESS the API says it is not ready.
    status, ready = wait_until(lambda: (r := get(api.url + "/readyz"))[0] == 503 and r, timeout=15,
                               what="/readyz to report stale data")
    assert "old" in ready["reason"]
