"""``bybit-tracker healthcheck`` against a real Redis seeded with the ingest's layout.

Each tier produces its exit code (0 ok/info, 1 warning, 2 critical, 3 could not run) and the
JSON names the check responsible, with the alert tiers' thresholds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from common import keys
from tests.servers import ManagedProcess, RedisServer, free_port, port_open, python_env, repo_root, wait_until
from tracker_tools.healthcheck import tiers
from tracker_tools.healthcheck.redis_checks import reconnects_per_hour

COINS = ("BTC", "ETH")


def seed_healthy(client: Any, now: float, **overrides: Any) -> None:
    """The layout a healthy single ingest keeps: fresh heartbeat and coins, few reconnects, all
    connected (the default replica, which also keeps the single-node keys, as the ingest does)."""
    seed_replica(client, now, keys.DEFAULT_REPLICA, **overrides)


def seed_replica(client: Any, now: float, replica: str, **overrides: Any) -> None:
    """What one live ingest replica keeps in Redis (``overrides`` replace its stats fields)."""
    stats = {
        keys.F_LAST_UPDATE: int(now), keys.F_MESSAGES: 1000, keys.F_RECONNECTS: 3,
        keys.F_CONNECT_FAILURES: 0, keys.F_WS_CONNECTIONS: 2, keys.F_WS_CONNECTED: 2,
        keys.F_CONSECUTIVE_FAILURES: 0, keys.F_CIRCUIT_OPEN: 0, keys.F_STARTED_AT: now - 7200,
    }
    stats.update(overrides)
    beat = {keys.F_HB_TS: now, keys.F_HB_PID: 1, keys.F_HB_RSS_BYTES: 5e7, keys.F_HB_CPU_SECONDS: 3,
            keys.F_HB_STARTED_AT: now - 7200}
    client.hset(keys.replica_stats_key(replica), mapping=stats)
    client.hset(keys.replica_heartbeat_key(replica), mapping=beat)
    client.expire(keys.replica_heartbeat_key(replica), 60)
    client.zadd(keys.INGEST_REPLICAS, {replica: now})
    if replica == keys.DEFAULT_REPLICA:
        client.hset(keys.STATS_GLOBAL, mapping=stats)
        client.hset(keys.INGEST_HEARTBEAT, mapping=beat)
        client.expire(keys.INGEST_HEARTBEAT, 60)
    for coin in COINS:
        client.hset(keys.coin_stats_key(coin), mapping={keys.F_COIN_LAST_UPDATE: now - 1,
                                                        keys.F_COIN_MESSAGES: 500, keys.F_COIN_TRACKED: 10})


def healthcheck(redis_url: str, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tracker_tools", "healthcheck", "--json", "--no-api", *args],
        capture_output=True, text=True, cwd=repo_root(), timeout=60, check=False,
        env=python_env(REDIS_URL=redis_url, BYBIT_COINS=",".join(COINS), **env),
    )
    assert done.returncode in (0, 1, 2), done.stderr
    doc = json.loads(done.stdout)
    assert doc["exit_code"] == done.returncode
    return done.returncode, doc


def severities(doc: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["severity"] for c in doc["checks"]}


def test_a_healthy_stack_exits_0_with_every_check_ok(redis_server: RedisServer) -> None:
    seed_healthy(redis_server.client(), time.time())
    code, doc = healthcheck(redis_server.url)
    assert code == 0
    assert doc["status"] == "ok"
    assert set(severities(doc).values()) == {"ok"}
    assert {"redis", "ingest_heartbeat", "staleness_BTC", "staleness_ETH", "ws_reconnects",
            "ws_consecutive_failures", "ws_connections", "redis_memory"} <= set(severities(doc))


def test_info_tier_reconnects_are_reported_but_exit_0(redis_server: RedisServer) -> None:
    now = time.time()
    # 30 reconnects within the ingest's first half hour: all of them in the last hour.
    seed_healthy(redis_server.client(), now, **{keys.F_RECONNECTS: 30, keys.F_STARTED_AT: now - 1800})
    code, doc = healthcheck(redis_server.url)
    assert code == 0
    assert doc["status"] == "info"
    assert severities(doc)["ws_reconnects"] == "info"


def test_more_than_60_reconnects_an_hour_is_a_warning_exit_1(redis_server: RedisServer) -> None:
    now = time.time()
    seed_healthy(redis_server.client(), now, **{keys.F_RECONNECTS: 70, keys.F_STARTED_AT: now - 1800})
    code, doc = healthcheck(redis_server.url)
    assert code == 1
    assert doc["status"] == "warning"
    reconnects = next(c for c in doc["checks"] if c["check"] == "ws_reconnects")
    assert reconnects["severity"] == "warning"
    assert reconnects["value"] == 70


def test_redis_memory_above_70_percent_of_maxmemory_is_a_warning(redis_server: RedisServer) -> None:
    client = redis_server.client()
    seed_healthy(client, time.time())
    used = int(client.info("memory")["used_memory"])
    # ~75 % before the check connects (its client buffers add a few %): between the 70 and 90 % tiers
    client.config_set("maxmemory", int(used / 0.75))
    code, doc = healthcheck(redis_server.url)
    assert code == 1, [c for c in doc["checks"] if c["severity"] != "ok"]
    memory = next(c for c in doc["checks"] if c["check"] == "redis_memory")
    assert memory["severity"] == "warning"
    assert 0.7 < memory["value"] < 0.9


def test_redis_memory_uses_the_configured_capacity_when_maxmemory_is_unset(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    seed_healthy(client, time.time())
    used = int(client.info("memory")["used_memory"])
    code, doc = healthcheck(redis_server.url, REDIS_CAPACITY_BYTES=str(int(used / 0.95)))
    assert code == 2
    assert severities(doc)["redis_memory"] == "critical"


@pytest.mark.parametrize(("case", "check"), [
    ("no data for more than 5 minutes", "staleness_ETH"),
    ("ingest heartbeat gone", "ingest_heartbeat"),
    ("more than 10 failed reconnect attempts in a row", "ws_consecutive_failures"),
    ("a coin that never received a ticker", "staleness_BTC"),
    ("a coin the ingest tracks but has no ticker for yet", "staleness_BTC"),
])
def test_critical_conditions_exit_2_naming_the_check(
    redis_server: RedisServer, case: str, check: str,
) -> None:
    client = redis_server.client()
    now = time.time()
    seed_healthy(client, now)
    if case == "no data for more than 5 minutes":
        client.hset(keys.coin_stats_key("ETH"), keys.F_COIN_LAST_UPDATE, now - 301)
    elif case == "ingest heartbeat gone":
        client.delete(keys.replica_heartbeat_key(keys.DEFAULT_REPLICA))
    elif case == "more than 10 failed reconnect attempts in a row":
        client.hset(keys.replica_stats_key(keys.DEFAULT_REPLICA), keys.F_CONSECUTIVE_FAILURES, 11)
    elif case == "a coin the ingest tracks but has no ticker for yet":
        client.hset(keys.coin_stats_key("BTC"), keys.F_COIN_LAST_UPDATE, "0.0")
    else:
        client.delete(keys.coin_stats_key("BTC"))
    code, doc = healthcheck(redis_server.url)
    assert code == 2, case
    assert doc["status"] == "critical"
    critical = [c for c, s in severities(doc).items() if s == "critical"]
    if check == "ingest_heartbeat":  # the only replica is down: it says so too
        assert critical == [check, f"replica_{keys.DEFAULT_REPLICA}"], case
    else:
        assert critical == [check], case


def test_exactly_10_consecutive_failures_is_not_yet_critical(redis_server: RedisServer) -> None:
    seed_healthy(redis_server.client(), time.time(), **{keys.F_CONSECUTIVE_FAILURES: 10})
    code, doc = healthcheck(redis_server.url)
    assert code == 0
    assert severities(doc)["ws_consecutive_failures"] == "ok"


def test_unreachable_redis_is_critical() -> None:
    code, doc = healthcheck(f"redis://127.0.0.1:{free_port()}/0", "--timeout", "1")
    assert code == 2
    assert severities(doc) == {"redis": "critical"}


def test_a_password_in_the_redis_url_is_never_printed() -> None:
    code, doc = healthcheck(f"redis://:hunter2@127.0.0.1:{free_port()}/0", "--timeout", "1")
    assert code == 2
    assert "hunter2" not in json.dumps(doc)


def test_an_unreachable_api_is_critical(redis_server: RedisServer) -> None:
    seed_healthy(redis_server.client(), time.time())
    done = subprocess.run(
        [sys.executable, "-m", "tracker_tools", "healthcheck", "--json", "--timeout", "1",
         "--api-url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, cwd=repo_root(), timeout=60, check=False,
        env=python_env(REDIS_URL=redis_server.url, BYBIT_COINS=",".join(COINS)),
    )
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert severities(doc)["api_ready"] == "critical"


def test_the_human_table_names_each_check_and_the_verdict(redis_server: RedisServer) -> None:
    seed_healthy(redis_server.client(), time.time(), **{keys.F_CONSECUTIVE_FAILURES: 12})
    done = subprocess.run(
        [sys.executable, "-m", "tracker_tools", "healthcheck", "--no-api"], capture_output=True, text=True,
        cwd=repo_root(), timeout=60, check=False,
        env=python_env(REDIS_URL=redis_server.url, BYBIT_COINS="BTC,ETH"),
    )
    assert done.returncode == 2
    assert "ws_consecutive_failures  CRITICAL" in done.stdout
    assert "overall: CRITICAL (exit 2)" in done.stdout


def test_only_judges_the_named_check_and_a_misspelt_name_exits_3(redis_server: RedisServer) -> None:
    seed_healthy(redis_server.client(), time.time(), **{keys.F_CONSECUTIVE_FAILURES: 12})
    code, doc = healthcheck(redis_server.url, "--only", "ingest_heartbeat")
    assert code == 0, "the failing reconnects are not what was asked about"
    assert severities(doc) == {"redis": "ok", "ingest_heartbeat": "ok"}
    done = subprocess.run(
        [sys.executable, "-m", "tracker_tools", "healthcheck", "--no-api", "--only", "ingest_hartbeat"],
        capture_output=True, text=True, cwd=repo_root(), timeout=60, check=False,
        env=python_env(REDIS_URL=redis_server.url, BYBIT_COINS="BTC,ETH"),
    )
    assert done.returncode == 3
    assert "no check named ingest_hartbeat" in done.stderr
    assert "ingest_heartbeat" in done.stderr, "the error lists the checks there are"
    assert "own_replicas" in done.stderr, "and the name an ingest container judges itself by"


def test_only_still_fails_when_redis_cannot_be_read() -> None:
    code, doc = healthcheck(f"redis://127.0.0.1:{free_port()}/0", "--timeout", "1",
                            "--only", "ingest_heartbeat")
    assert code == 2
    assert severities(doc) == {"redis": "critical"}


def test_bad_configuration_exits_3_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tracker_tools", "healthcheck"], capture_output=True, text=True,
        cwd=repo_root(), timeout=60, check=False, env=python_env(BYBIT_COINS="BTC,*"),
    )
    assert done.returncode == 3
    assert "BYBIT_COINS" in done.stderr


def test_reconnect_rate_is_the_count_in_the_first_hour_then_the_hourly_average() -> None:
    now = 10_000.0
    assert reconnects_per_hour({keys.F_RECONNECTS: "25", keys.F_STARTED_AT: str(now - 600)}, now) == 25
    assert reconnects_per_hour({keys.F_RECONNECTS: "100", keys.F_STARTED_AT: str(now - 4 * 3600)}, now) == 25
    assert reconnects_per_hour({}, now) is None


def test_tiers_are_strictly_above_their_thresholds() -> None:
    assert tiers.RECONNECTS_PER_HOUR.classify(20) == "ok"
    assert tiers.RECONNECTS_PER_HOUR.classify(20.1) == "info"
    assert tiers.RECONNECTS_PER_HOUR.classify(60) == "info"
    assert tiers.RECONNECTS_PER_HOUR.classify(61) == "warning"
    assert tiers.REDIS_MEMORY_RATIO.classify(0.91) == "critical"
    assert tiers.worst(["ok", "info", "warning"]) == "warning"
    assert tiers.worst([]) == "ok"


def _with_real_api(redis_server: RedisServer, tmp_path: Any) -> tuple[ManagedProcess, str]:
    port = free_port()
    api = ManagedProcess([sys.executable, "-m", "api"], tmp_path / "api.log", cwd=str(repo_root()),
                         env=python_env(REDIS_URL=redis_server.url, BYBIT_COINS=",".join(COINS),
                                        API_HOST="127.0.0.1", API_PORT=str(port), LOG_FORMAT="text"))
    api.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: port_open(port), timeout=30, what=f"the API on port {port}")
    return api, url


def _check_with_api(redis_url: str, api_url: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tracker_tools", "healthcheck", "--json", "--api-url", api_url],
        capture_output=True, text=True, cwd=repo_root(), timeout=60, check=False,
        env=python_env(REDIS_URL=redis_url, BYBIT_COINS=",".join(COINS)),
    )
    return done.returncode, json.loads(done.stdout)


def test_a_ready_real_api_is_ok_and_a_stale_one_is_a_warning(
    redis_server: RedisServer, tmp_path: Any,
) -> None:
    client = redis_server.client()
    now = time.time()
    seed_healthy(client, now)
    api, url = _with_real_api(redis_server, tmp_path)
    try:
        code, doc = _check_with_api(redis_server.url, url)
        assert severities(doc)["api_ready"] == "ok", doc
        assert code == 0, doc
        # Data 100 s old: past the API's readiness limit (60 s), short of the 5-minute critical tier.
        stale = now - 100
        client.hset(keys.STATS_GLOBAL, keys.F_LAST_UPDATE, int(stale))
        for coin in COINS:
            client.hset(keys.coin_stats_key(coin), keys.F_COIN_LAST_UPDATE, stale)
        code, doc = wait_until(
            lambda: (r := _check_with_api(redis_server.url, url)) and r[1]["exit_code"] == 1 and r,
            timeout=15, what="the API to report it is not ready")
        assert severities(doc)["api_ready"] == "warning"
        assert severities(doc)["staleness_BTC"] == "ok"
    finally:
        api.stop()


def test_each_replica_is_shown_and_one_down_while_another_writes_is_a_warning(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    now = time.time()
    for name, reconnects in (("a", 2), ("b", 3)):  # within the first hour: counted as they are
        seed_replica(client, now, name, **{keys.F_RECONNECTS: reconnects, keys.F_STARTED_AT: now - 600})
    code, doc = healthcheck(redis_server.url)
    assert code == 0, doc
    assert severities(doc)["replica_a"] == severities(doc)["replica_b"] == "ok"
    assert next(c for c in doc["checks"] if c["check"] == "ws_reconnects")["value"] == 5  # summed

    client.delete(keys.replica_heartbeat_key("b"))  # expired: b stopped 40 s ago, still listed
    client.zadd(keys.INGEST_REPLICAS, {"b": now - 40})
    code, doc = healthcheck(redis_server.url)
    assert code == 1, doc
    assert severities(doc)["replica_b"] == "warning"
    assert severities(doc)["ingest_heartbeat"] == "ok"
    down = next(c for c in doc["checks"] if c["check"] == "replica_b")
    assert down["value"] >= 40
    assert "ZREM ingest:replicas b" in down["detail"]

    client.delete(keys.replica_heartbeat_key("a"))
    code, doc = healthcheck(redis_server.url)
    assert code == 2, doc
    assert {c for c, s in severities(doc).items() if s == "critical"} == {
        "ingest_heartbeat", "replica_a", "replica_b"}


def test_a_container_asking_for_its_own_replica_gets_its_state_even_when_it_is_not_listed(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    now = time.time()
    seed_replica(client, now, "a")
    code, doc = healthcheck(redis_server.url, "--only", "replica_a")
    assert (code, severities(doc)) == (0, {"redis": "ok", "replica_a": "ok"})
    # b never heartbeated (or was forgotten): critical, named, not "no such check".
    code, doc = healthcheck(redis_server.url, "--only", "replica_b")
    assert (code, severities(doc)) == (2, {"redis": "ok", "replica_b": "critical"})
    assert "not listed in ingest:replicas" in doc["checks"][-1]["detail"]


def test_own_replicas_judges_every_worker_of_this_ingest_and_only_them(redis_server: RedisServer) -> None:
    """INGEST_REPLICA=a with two workers reports as a-w0 and a-w1, never as a: ``replica_a`` would
    call the container critical forever; ``own_replicas`` judges the names it really reports under."""
    client = redis_server.client()
    now = time.time()
    for name in ("a-w0", "a-w1", "b-w0"):
        seed_replica(client, now, name)
    workers = {"INGEST_REPLICA": "a", "INGEST_WORKERS": "2"}
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas", **workers)
    assert (code, severities(doc)) == (0, {"redis": "ok", "replica_a-w0": "ok", "replica_a-w1": "ok"})
    code, doc = healthcheck(redis_server.url, "--only", "replica_a", **workers)
    assert (code, severities(doc)) == (2, {"redis": "ok", "replica_a": "critical"}), "the limit it lifts"

    client.delete(keys.replica_heartbeat_key("a-w1"))  # a-w1 stopped 40 s ago: listed, heartbeat expired
    client.zadd(keys.INGEST_REPLICAS, {"a-w1": now - 40})
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas", **workers)
    assert (code, severities(doc)) == (1, {"redis": "ok", "replica_a-w0": "ok", "replica_a-w1": "warning"})

    client.zrem(keys.INGEST_REPLICAS, "a-w1")  # never started, or forgotten: not listed at all
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas", **workers)
    assert (code, severities(doc)) == (2, {"redis": "ok", "replica_a-w0": "ok", "replica_a-w1": "critical"})
    assert "not listed in ingest:replicas" in doc["checks"][-1]["detail"]

    # Replica b with one process reports as b: a live b-w0 (another worker count's name) is not it.
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas", INGEST_REPLICA="b",
                            INGEST_WORKERS="1")
    assert (code, severities(doc)) == (2, {"redis": "ok", "replica_b": "critical"})


def test_own_replicas_with_one_worker_is_the_replica_itself(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now = time.time()
    seed_replica(client, now, "a")
    seed_replica(client, now, "a-w0")  # left by a former INGEST_WORKERS=2: not what one process writes
    for env in ({"INGEST_REPLICA": "a", "INGEST_WORKERS": "1"}, {"INGEST_REPLICA": "a"}):
        code, doc = healthcheck(redis_server.url, "--only", "own_replicas", **env)
        assert (code, severities(doc)) == (0, {"redis": "ok", "replica_a": "ok"}), env
    # Without INGEST_REPLICA: the default name of a single ingest.
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas")
    assert (code, severities(doc)) == (2, {"redis": "ok", f"replica_{keys.DEFAULT_REPLICA}": "critical"})

    client.delete(keys.replica_heartbeat_key("a"))
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas", INGEST_REPLICA="a")
    assert (code, severities(doc)) == (1, {"redis": "ok", "replica_a": "warning"}), "a-w0 still writes"


def test_own_replicas_also_counts_redis_and_combines_with_other_checks(redis_server: RedisServer) -> None:
    seed_replica(redis_server.client(), time.time(), "a")
    code, doc = healthcheck(redis_server.url, "--only", "own_replicas", "--only", "replica_a",
                            "--only", "ingest_heartbeat", INGEST_REPLICA="a")
    assert [c["check"] for c in doc["checks"]] == ["redis", "ingest_heartbeat", "replica_a"]
    assert code == 0
    code, doc = healthcheck(f"redis://127.0.0.1:{free_port()}/0", "--timeout", "1", "--only", "own_replicas",
                            INGEST_REPLICA="a", INGEST_WORKERS="2")
    assert (code, severities(doc)) == (2, {"redis": "critical"})


def test_sampled_reconnects_add_up_the_live_replicas_and_a_restart_is_not_negative(
    redis_server: RedisServer,
) -> None:
    import threading

    from tracker_tools.healthcheck.redis_checks import sample_reconnects

    client = redis_server.client()
    now = time.time()
    for name in ("a", "b", "c"):
        seed_replica(client, now, name, **{keys.F_RECONNECTS: 10})

    def meanwhile() -> None:
        time.sleep(0.3)
        client.hincrby(keys.replica_stats_key("a"), keys.F_RECONNECTS, 2)
        client.hincrby(keys.replica_stats_key("b"), keys.F_RECONNECTS, 1)
        client.hset(keys.replica_stats_key("c"), keys.F_RECONNECTS, 0)  # c restarted: counts from 0

    worker = threading.Thread(target=meanwhile)
    worker.start()
    rate = sample_reconnects(client, 1.0)
    worker.join()
    assert rate is not None
    assert 3 * 3600 / 1.5 < rate <= 3 * 3600  # 3 reconnects in a bit more than the 1 s window
