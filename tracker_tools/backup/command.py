"""``bybit-tracker backup``: flags, the four actions, and exit codes (0 done, 1 failed, 2 usage).

Where the configuration is: an installed command has no repository, so by default it backs up
the deployment directory it is run from (the one holding docker-compose.yml, as ``docker
compose`` itself assumes) and keeps archives under its ``var/backups``; ``--root`` and
``--dir`` name others. The checkout shim (``python -m scripts.backup``) passes the checkout as
that directory, as before. A directory without any of the configuration files gives an archive
of the Redis keys alone, and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis

from common.config import ConfigError, load_settings
from common.logs import configure_logging
from tracker_tools.backup import archive, retention
from tracker_tools.backup.redis_dump import dump_keys, restore_keys
from tracker_tools.healthcheck.redaction import redact

DEFAULT_PROG = "bybit-tracker backup"
#: Archive directory, relative to the deployment directory.
BACKUP_SUBDIR = Path("var") / "backups"
EXIT_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("backup")


def _client(url: str, timeout: float) -> redis.Redis:
    # Raw bytes: DUMP payloads are binary.
    return redis.Redis.from_url(url, decode_responses=False, socket_timeout=timeout,
                                socket_connect_timeout=timeout)


def create(args: argparse.Namespace, redis_url: str) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    path = args.dir / retention.archive_name(now)
    client = _client(redis_url, args.timeout)
    try:
        manifest = archive.write(path, records=dump_keys(client), root=args.root,
                                 created_at=now.isoformat(timespec="seconds"), redis_url=redact(redis_url))
    finally:
        client.close()
    configs = sum(1 for name in manifest.files if name.startswith(archive.CONFIG_PREFIX))
    print(f"created {path} ({manifest.keys} keys, {configs} config files, {path.stat().st_size} bytes)")
    if not configs:
        print(f"backup: no configuration under {args.root} ({', '.join(archive.CONFIG_PATHS)}): "
              "the archive holds the Redis keys only; run it from the deployment directory or pass --root",
              file=sys.stderr)
    if args.keep_daily:
        _prune(args.dir, args.keep_daily)
    return 0


def restore(args: argparse.Namespace, redis_url: str) -> int:
    path: Path = args.archive
    records = list(archive.read_records(path))  # verified against the manifest before anything is written
    if not args.configs_only:
        client = _client(redis_url, args.timeout)
        try:
            if args.flush:
                client.flushdb()
            sent = restore_keys(client, records)
        finally:
            client.close()
        print(f"restored {sent} keys into {redact(redis_url)} (already-expired keys are skipped by Redis)")
    if args.configs_to is not None:
        written = archive.extract_configs(path, args.configs_to)
        print(f"wrote {len(written)} config files under {args.configs_to}")
    return 0


def list_archives(args: argparse.Namespace) -> int:
    rows = []
    for path in reversed(retention.archives(args.dir)):
        try:
            manifest = archive.read_manifest(path)
            keys: int | None = manifest.keys
            configs: int | None = sum(1 for n in manifest.files if n.startswith(archive.CONFIG_PREFIX))
            state = "ok"
        except archive.ArchiveError as exc:
            log.warning("unreadable archive", extra={"path": str(path), "error": str(exc)})
            keys = configs = None
            state = "unreadable"
        rows.append({"name": path.name, "created_at": str(retention.created_at(path)),
                     "bytes": path.stat().st_size, "keys": keys, "config_files": configs, "state": state})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'NAME':<34} {'BYTES':>10} {'KEYS':>7} {'CONFIGS':>7}  STATE")
        for r in rows:
            print(f"{r['name']:<34} {r['bytes']:>10} {r['keys'] if r['keys'] is not None else '-':>7} "
                  f"{r['config_files'] if r['config_files'] is not None else '-':>7}  {r['state']}")
    return 0


def _prune(directory: Path, keep_daily: int) -> list[Path]:
    doomed = retention.to_prune(retention.archives(directory), keep_daily)
    for path in doomed:
        path.unlink()
        print(f"pruned {path}")
    return doomed


def prune(args: argparse.Namespace) -> int:
    _prune(args.dir, args.keep_daily)
    return 0


def _parser(prog: str, root: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Back up and restore the tracker's Redis data and configuration "
                    f"({', '.join(archive.CONFIG_PATHS)} of the deployment directory).")
    parser.add_argument("--redis-url", help="Redis to back up or restore into (default: REDIS_URL)")
    parser.add_argument("--dir", type=Path, default=root / BACKUP_SUBDIR,
                        help=f"archive directory (default {root / BACKUP_SUBDIR})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per Redis call")
    parser.add_argument("--config", help="YAML config file (as the components take)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_create = sub.add_parser("create", help="write a new archive: Redis keys + configuration files")
    p_create.add_argument("--root", type=Path, default=root,
                          help="deployment directory holding prometheus/, alertmanager/, grafana/, "
                               f"docker-compose.yml and .env (default {root})")
    p_create.add_argument("--keep-daily", type=int, default=0, metavar="N",
                          help="after creating, prune to the newest archive of each of the last N days")

    p_restore = sub.add_parser("restore",
                               help="restore an archive's keys into Redis (and optionally its configs)")
    p_restore.add_argument("archive", type=Path)
    p_restore.add_argument("--flush", action="store_true", help="FLUSHDB the target before restoring")
    p_restore.add_argument("--configs-to", type=Path, metavar="DIR",
                           help="also write the archived configuration files under DIR")
    p_restore.add_argument("--configs-only", action="store_true", help="do not touch Redis")

    p_list = sub.add_parser("list", help="list archives, newest first")
    p_list.add_argument("--json", action="store_true")

    p_prune = sub.add_parser("prune", help="delete archives beyond the retention")
    p_prune.add_argument("--keep-daily", type=int, default=7, metavar="N",
                         help="keep the newest archive of each of the last N days (default 7)")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = DEFAULT_PROG, root: Path | None = None) -> int:
    """Run one action; ``root`` is the deployment directory (default: the current directory)."""
    args = _parser(prog, Path.cwd() if root is None else root).parse_args(argv)
    configure_logging("WARNING", "text")
    if getattr(args, "keep_daily", 1) < 0 or (args.command == "prune" and args.keep_daily < 1):
        print("backup: --keep-daily must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "restore" and args.configs_only and args.configs_to is None:
        print("backup: --configs-only needs --configs-to DIR", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings(config_file=args.config)
        redis_url = args.redis_url or settings.redis_url
        if args.command == "create":
            return create(args, redis_url)
        if args.command == "restore":
            return restore(args, redis_url)
        if args.command == "list":
            return list_archives(args)
        return prune(args)
    except ConfigError as exc:
        print(f"backup: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except archive.ArchiveError as exc:
        log.error("archive rejected", extra={"error_type": "archive", "detail": str(exc)})
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except redis.RedisError as exc:
        log.error("redis failed", extra={"error_type": type(exc).__name__})
        print(f"backup: Redis error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        log.error("file system error", extra={"error_type": type(exc).__name__, "path": exc.filename})
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_FAILED

