"""The backup archive: one ``.tar.gz`` with a manifest, the Redis keys and the configuration files.

Layout::

    manifest.json          created_at, key count, files with their sha256
    redis/keys.jsonl       one JSON object per key (see redis_dump.KeyRecord)
    config/<path>          prometheus/, alertmanager/, grafana/, docker-compose.yml, .env

The archive is written to a temporary name and renamed, so a crash never leaves a truncated
file that looks like a backup, and it is created with mode 0600 because ``.env`` holds secrets.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from tracker_tools.backup.redis_dump import KeyRecord

MANIFEST: Final = "manifest.json"
KEYS_MEMBER: Final = "redis/keys.jsonl"
CONFIG_PREFIX: Final = "config/"
FORMAT_VERSION: Final = 1
#: What "the configuration" is, relative to the repository root.
CONFIG_PATHS: Final = ("prometheus", "alertmanager", "grafana", "docker-compose.yml", ".env")


class ArchiveError(Exception):
    """The archive is unreadable, incomplete or does not match its manifest."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    keys: int
    files: dict[str, str]  # member name -> sha256
    redis_url: str
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "created_at": self.created_at, "keys": self.keys,
                "files": self.files, "redis_url": self.redis_url}


def config_files(root: Path) -> list[Path]:
    """The configuration files under ``root`` (relative paths), without caches."""
    found: list[Path] = []
    for name in CONFIG_PATHS:
        path = root / name
        if path.is_file():
            found.append(Path(name))
        elif path.is_dir():
            found += sorted(p.relative_to(root) for p in path.rglob("*")
                            if p.is_file() and "__pycache__" not in p.parts)
    return found


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def write(path: Path, *, records: Iterable[KeyRecord], root: Path, created_at: str,
          redis_url: str) -> Manifest:
    """Write the archive at ``path`` atomically; returns its manifest."""
    lines = [json.dumps(r.to_json(), separators=(",", ":")) for r in records]
    keys_blob = ("\n".join(lines) + "\n").encode() if lines else b""
    members: dict[str, tuple[bytes, int]] = {KEYS_MEMBER: (keys_blob, 0o600)}
    for rel in config_files(root):
        mode = 0o600 if rel.name == ".env" else 0o644
        members[CONFIG_PREFIX + rel.as_posix()] = ((root / rel).read_bytes(), mode)
    checksums = {name: hashlib.sha256(data).hexdigest() for name, (data, _mode) in members.items()}
    manifest = Manifest(created_at=created_at, keys=len(lines), redis_url=redis_url, files=checksums)
    tmp = path.with_name(path.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest.to_json(), indent=2).encode())
            for name, (data, mode) in members.items():
                _add_bytes(tar, name, data, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written archive behind
        raise
    return manifest


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise ArchiveError(f"{path}: not a readable backup archive ({exc})") from exc


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        handle = tar.extractfile(name)
    except KeyError as exc:
        raise ArchiveError(f"{name} missing from the archive") from exc
    if handle is None:
        raise ArchiveError(f"{name} is not a file in the archive")
    try:
        return handle.read()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise ArchiveError(f"{name} is truncated or corrupt ({exc})") from exc


def read_manifest(path: Path) -> Manifest:
    with _open(path) as tar:
        try:
            doc = json.loads(_member(tar, MANIFEST))
            return Manifest(created_at=doc["created_at"], keys=int(doc["keys"]), files=dict(doc["files"]),
                            redis_url=doc["redis_url"], format=int(doc["format"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"{path}: malformed manifest ({exc})") from exc


def _verified(tar: tarfile.TarFile, manifest: Manifest, name: str) -> bytes:
    data = _member(tar, name)
    if hashlib.sha256(data).hexdigest() != manifest.files.get(name):
        raise ArchiveError(f"{name}: checksum does not match the manifest")
    return data


def read_records(path: Path) -> Iterator[KeyRecord]:
    """The archive's keys, after checking them against the manifest's checksum."""
    manifest = read_manifest(path)
    with _open(path) as tar:
        blob = _verified(tar, manifest, KEYS_MEMBER)
    for line in blob.decode().splitlines():
        try:
            yield KeyRecord.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"{KEYS_MEMBER}: malformed record ({exc})") from exc


def extract_configs(path: Path, dest: Path) -> list[Path]:
    """Write the archive's configuration files under ``dest`` (``.env`` with mode 0600)."""
    manifest = read_manifest(path)
    written: list[Path] = []
    with _open(path) as tar:
        for name in sorted(manifest.files):
            if not name.startswith(CONFIG_PREFIX):
                continue
            rel = PurePosixPath(name[len(CONFIG_PREFIX):])
            if rel.is_absolute() or ".." in rel.parts:
                raise ArchiveError(f"{name}: refusing a path outside the destination")
            data = _verified(tar, manifest, name)
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600 if rel.name == ".env" else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(target, mode)
            written.append(target)
    return written
