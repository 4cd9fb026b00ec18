"""``bybit-tracker backup``: a backup restored into a fresh real redis-server is the same data.

Keys, types, fields, members and expiries come back; the heartbeat does not (it would fake a
live ingest); configuration files (including ``.env``, never printed) round-trip byte for byte;
retention keeps the newest archive of each of the last N days; a damaged archive is refused
before anything is written.
"""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common import keys
from tests.servers import RedisServer, python_env, repo_root, wait_until
from tracker_tools.backup import retention

SECRET = "GRAFANA_ADMIN_PASSWORD=correct-horse-battery-staple"


def run_backup(*args: str, redis_url: str | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``bybit-tracker backup ARGS`` (as ``python -m tracker_tools``), run from ``cwd``."""
    env = python_env(**({"REDIS_URL": redis_url} if redis_url else {}))
    return subprocess.run([sys.executable, "-m", "tracker_tools", "backup", *args], capture_output=True,
                          text=True, cwd=cwd or repo_root(), env=env, timeout=120, check=False)


def seed(client: Any) -> None:
    """A small copy of the ingest's layout: options with TTLs, indexes, stats, lag, heartbeat."""
    symbols = [f"BTC-27DEC26-{strike}-{kind}" for strike in (90000, 100000, 110000) for kind in "CP"]
    for i, symbol in enumerate(symbols):
        client.hset(keys.option_key(symbol), mapping={"symbol": symbol, "markPrice": f"{1000 + i}.5",
                                                      "bid1Price": "999", keys.F_OPTION_TS: "1735000000000"})
        client.expire(keys.option_key(symbol), 86400 - i * 60)
    client.sadd(keys.coin_index_key("BTC"), *symbols)
    client.hset(keys.STATS_GLOBAL, mapping={keys.F_LAST_UPDATE: int(time.time()), keys.F_RECONNECTS: 4,
                                            keys.error_field("bad_json"): 2})
    client.hset(keys.coin_stats_key("BTC"), mapping={keys.F_COIN_LAST_UPDATE: time.time(),
                                                     keys.F_COIN_TRACKED: len(symbols)})
    client.hset(keys.STATS_LAG, mapping={keys.lag_bucket_field(0.1): 5, keys.LAG_INF_FIELD: 6,
                                         keys.LAG_SUM_FIELD: 0.7, keys.LAG_COUNT_FIELD: 6})
    client.hset(keys.INGEST_HEARTBEAT, mapping={"ts": time.time(), "pid": 42})
    client.expire(keys.INGEST_HEARTBEAT, 15)
    client.hset(keys.replica_heartbeat_key("b"), mapping={"ts": time.time(), "pid": 43})
    client.expire(keys.replica_heartbeat_key("b"), 15)
    client.zadd(keys.INGEST_REPLICAS, {"b": time.time()})


def contents(client: Any) -> dict[str, tuple[str, Any, int]]:
    """Every key -> (type, value, TTL in s) in a form two servers can be compared by."""
    out: dict[str, tuple[str, Any, int]] = {}
    for key in client.scan_iter():
        kind = client.type(key)
        value: Any
        if kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "string":
            value = client.get(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            raise AssertionError(f"unexpected type {kind} for {key}")
        out[key] = (kind, value, client.ttl(key))
    return out


@pytest.fixture
def config_root(tmp_path: Path) -> Path:
    root = tmp_path / "deploy"
    (root / "prometheus" / "rules").mkdir(parents=True)
    (root / "prometheus" / "prometheus.yml").write_text("global: {}\n")
    (root / "prometheus" / "rules" / "alerts.yml").write_text("groups: []\n")
    (root / "alertmanager").mkdir()
    (root / "alertmanager" / "alertmanager.yml").write_text("route: {receiver: x}\n")
    (root / "grafana" / "dashboards").mkdir(parents=True)
    (root / "grafana" / "dashboards" / "overview.json").write_text('{"uid": "x"}\n')
    (root / "docker-compose.yml").write_text("services: {}\n")
    (root / ".env").write_text(SECRET + "\n")
    return root


def test_restore_into_a_fresh_redis_reproduces_every_key_field_and_ttl(
    redis_server: RedisServer, tmp_path: Path, config_root: Path,
) -> None:
    source = redis_server.client()
    seed(source)
    backups = tmp_path / "backups"
    done = run_backup("--dir", str(backups), "create", "--root", str(config_root), redis_url=redis_server.url)
    assert done.returncode == 0, done.stderr
    (archive,) = retention.archives(backups)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600, "the archive may hold .env: owner-only"

    fresh = RedisServer(tmp_path / "fresh")
    (tmp_path / "fresh").mkdir()
    fresh.start()
    try:
        done = run_backup("--dir", str(backups), "restore", str(archive), redis_url=fresh.url)
        assert done.returncode == 0, done.stderr
        expected = contents(source)
        liveness = (keys.INGEST_HEARTBEAT, keys.replica_heartbeat_key("b"), keys.INGEST_REPLICAS)
        for key in liveness:
            del expected[key]
        restored = contents(fresh.client())
        assert not set(liveness) & set(restored), "a restored heartbeat would fake a live ingest"
        assert set(restored) == set(expected)
        for key, (kind, value, ttl) in expected.items():
            r_kind, r_value, r_ttl = restored[key]
            assert (r_kind, r_value) == (kind, value), key
            if ttl == -1:
                assert r_ttl == -1, key
            else:
                assert abs(r_ttl - ttl) <= 2, (key, ttl, r_ttl)
    finally:
        fresh.stop()


def test_configuration_round_trips_and_env_is_never_printed(
    redis_server: RedisServer, tmp_path: Path, config_root: Path,
) -> None:
    backups = tmp_path / "backups"
    created = run_backup("--dir", str(backups), "create", "--root", str(config_root),
                         redis_url=redis_server.url)
    assert created.returncode == 0, created.stderr
    (archive,) = retention.archives(backups)
    out = tmp_path / "restored"
    restored = run_backup("--dir", str(backups), "restore", str(archive), "--configs-only",
                          "--configs-to", str(out))
    assert restored.returncode == 0, restored.stderr
    for path in (p for p in config_root.rglob("*") if p.is_file()):
        rel = path.relative_to(config_root)
        assert (out / rel).read_bytes() == path.read_bytes(), rel
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    listed = run_backup("--dir", str(backups), "list")
    for proc in (created, restored, listed):
        assert "correct-horse" not in proc.stdout + proc.stderr


def test_list_shows_each_archive_with_its_key_and_file_counts(
    redis_server: RedisServer, tmp_path: Path, config_root: Path,
) -> None:
    seed(redis_server.client())
    backups = tmp_path / "backups"
    assert run_backup("--dir", str(backups), "create", "--root", str(config_root),
                      redis_url=redis_server.url).returncode == 0
    (backups / "tracker-20200101T000000Z.tar.gz").write_bytes(b"not a tarball")
    done = run_backup("--dir", str(backups), "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["state"] for r in rows] == ["ok", "unreadable"], "newest first; damage reported, not fatal"
    assert rows[0]["keys"] == 10  # 6 options, the BTC index, 3 stats hashes; not the heartbeat
    assert rows[0]["config_files"] == 6


def test_run_from_the_deployment_directory_it_archives_that_directory_s_configuration(
    redis_server: RedisServer, tmp_path: Path, config_root: Path,
) -> None:
    seed(redis_server.client())
    done = run_backup("create", redis_url=redis_server.url, cwd=config_root)
    assert done.returncode == 0, done.stderr
    (archive,) = retention.archives(config_root / "var" / "backups")
    listed = json.loads(run_backup("list", "--json", cwd=config_root).stdout)
    assert [(r["name"], r["keys"], r["config_files"]) for r in listed] == [(archive.name, 10, 6)]


def test_run_where_there_is_no_configuration_it_archives_the_keys_and_says_so(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    seed(redis_server.client())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_backup("--dir", str(tmp_path / "backups"), "create", redis_url=redis_server.url, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "10 keys, 0 config files" in done.stdout
    assert "holds the Redis keys only" in done.stderr
    assert "--root" in done.stderr


def test_a_tampered_archive_is_refused_before_redis_is_touched(
    redis_server: RedisServer, tmp_path: Path, config_root: Path,
) -> None:
    seed(redis_server.client())
    backups = tmp_path / "backups"
    assert run_backup("--dir", str(backups), "create", "--root", str(config_root),
                      redis_url=redis_server.url).returncode == 0
    (archive,) = retention.archives(backups)
    tampered = tmp_path / "tracker-20240101T000000Z.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            handle = src.extractfile(member)
            assert handle is not None
            data = handle.read()
            if member.name == "redis/keys.jsonl":
                data = data.replace(b"\n", b"\n\n", 1)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    target = redis_server.client()
    target.flushdb()
    done = run_backup("restore", str(tampered), redis_url=redis_server.url)
    assert done.returncode == 1
    assert "checksum" in done.stderr
    assert target.dbsize() == 0


def test_keys_that_expired_since_the_backup_are_not_brought_back(
    redis_server: RedisServer, tmp_path: Path, config_root: Path,
) -> None:
    client = redis_server.client()
    client.hset(keys.option_key("ETH-27DEC26-4000-C"), "markPrice", "1")
    client.pexpire(keys.option_key("ETH-27DEC26-4000-C"), 800)
    client.sadd(keys.coin_index_key("ETH"), "ETH-27DEC26-4000-C")
    backups = tmp_path / "backups"
    assert run_backup("--dir", str(backups), "create", "--root", str(config_root),
                      redis_url=redis_server.url).returncode == 0
    wait_until(lambda: client.exists(keys.option_key("ETH-27DEC26-4000-C")) == 0, timeout=5,
               what="the option hash to expire")
    client.flushdb()
    (archive,) = retention.archives(backups)
    assert run_backup("restore", str(archive), redis_url=redis_server.url).returncode == 0
    assert client.exists(keys.option_key("ETH-27DEC26-4000-C")) == 0
    assert client.smembers(keys.coin_index_key("ETH")) == {"ETH-27DEC26-4000-C"}


def test_unreachable_redis_fails_with_a_message_and_leaves_no_partial_archive(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    done = run_backup("--dir", str(backups), "--timeout", "1", "create", redis_url="redis://127.0.0.1:1/0")
    assert done.returncode == 1
    assert "Redis error" in done.stderr
    assert not [p for p in backups.iterdir() if p.is_file() and not p.name.endswith(".partial")]
    assert "Traceback" not in done.stderr


def test_retention_keeps_the_newest_archive_of_each_of_the_last_n_days() -> None:
    base = datetime(2025, 3, 10, 12, tzinfo=UTC)
    stamps = [base - timedelta(days=d, hours=h) for d in range(5) for h in (0, 3)]
    paths = [Path(retention.archive_name(t)) for t in stamps]
    doomed = retention.to_prune(paths, keep_daily=3)
    kept = sorted(set(paths) - set(doomed))
    assert kept == sorted(Path(retention.archive_name(base - timedelta(days=d))) for d in range(3))
    newest_of_each_day = {Path(retention.archive_name(base - timedelta(days=d))) for d in range(5)}
    assert set(retention.to_prune(paths, keep_daily=30)) == set(paths) - newest_of_each_day


def test_prune_deletes_only_our_archives_beyond_the_retention(tmp_path: Path) -> None:
    base = datetime(2025, 3, 10, 12, tzinfo=UTC)
    for days in range(4):
        (tmp_path / retention.archive_name(base - timedelta(days=days))).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("keep me")
    done = run_backup("--dir", str(tmp_path), "prune", "--keep-daily", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [retention.archive_name(base), retention.archive_name(base - timedelta(days=1)), "notes.txt"])
    assert run_backup("--dir", str(tmp_path), "prune", "--keep-daily", "0").returncode == 2
