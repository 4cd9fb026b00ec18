"""``bybit-tracker`` works where there is no checkout: built, installed and run like a user would.

The wheel is built from exactly what the Dockerfile copies into its build stage (so a file the
image would lack is missing here too), installed with ``pip install --no-deps`` into a fresh
virtualenv, and run from a directory outside the checkout. Third-party dependencies come from
the development virtualenv through a ``.pth`` line, which puts them after the fresh venv's own
packages and never activates the editable install of the checkout: if the command worked only
thanks to the repository (a file read from the repo root, a module left in ``scripts/``), these
tests fail. The old checkout spellings, ``python -m scripts.healthcheck`` / ``scripts.backup``,
are checked to still work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import RedisServer, free_port, python_env, repo_root

ROOT = repo_root()
SHIPPED_THRESHOLDS = ROOT / "tracker_tools" / "healthcheck" / "thresholds.yml"


def test_the_shipped_thresholds_are_the_alerting_thresholds_file_itself() -> None:
    # A link, so tuning prometheus/thresholds.yml can never leave the health check behind; the
    # wheel stores the file's contents (checked on an installed wheel below).
    assert SHIPPED_THRESHOLDS.is_symlink()
    assert SHIPPED_THRESHOLDS.resolve() == (ROOT / "prometheus" / "thresholds.yml").resolve()


def _docker_build_context() -> list[str]:
    """The paths the Dockerfile's build stage copies (``COPY SRC... DEST``, before the 2nd FROM)."""
    sources: list[str] = []
    froms = 0
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            froms += 1
        elif words[:1] == ["COPY"] and froms == 1 and not any(w.startswith("--") for w in words):
            sources += words[1:-1]
    assert sources, "the Dockerfile's build stage copies nothing?"
    return sources


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv with only our wheel installed, and a directory outside the checkout."""

    venv: Path
    cwd: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "bybit-tracker"

    def env(self, **overrides: str) -> dict[str, str]:
        ours = ("BYBIT_", "INGEST_", "API_", "EXPORTER_", "REDIS_", "TRACKER_", "PYTHON")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(overrides)
        return env

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.command), *args], capture_output=True, text=True, cwd=self.cwd,
                              env=self.env(**env), timeout=120, check=False)

    def python(self, source: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "python"), "-c", source], capture_output=True,
                              text=True, cwd=self.cwd, env=self.env(), timeout=120, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    context = base / "context"
    for source in _docker_build_context():
        src = ROOT / source
        if src.is_dir():
            # symlinks=True: links stay links, as Docker's COPY keeps them.
            shutil.copytree(src, context / source, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / source)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(context)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("bybit_options_tracker-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    target = venv / "bin" / "python"
    done = subprocess.run([*pip, "--python", str(target), "install", "--no-deps", "--no-index", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    purelib = subprocess.run([str(target), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    # Dependencies only: appended after the venv's own packages; .pth files there are not run.
    Path(purelib, "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd = base / "elsewhere"
    cwd.mkdir()
    return Installed(venv, cwd)


def test_the_installed_modules_come_from_the_wheel_not_the_checkout(installed: Installed) -> None:
    done = installed.python("import common, tracker_tools, tracker_tools.healthcheck.tiers as t; "
                            "print(common.__file__); print(tracker_tools.__file__); print(t.THRESHOLDS_FILE)")
    assert done.returncode == 0, done.stderr
    for path in done.stdout.split():
        assert Path(path).is_relative_to(installed.venv), path
    shipped = Path(done.stdout.split()[-1])
    assert shipped.read_bytes() == (ROOT / "prometheus" / "thresholds.yml").read_bytes()
    assert installed.python("import scripts").returncode != 0, "scripts/ must not be needed (or shipped)"


def test_the_installed_api_serves_every_runbook_from_the_wheel(installed: Installed) -> None:
    """The default runbook_url targets the API: an installed API has every runbook, not a dangling link."""
    done = installed.python("import json, api.runbooks as r; print(r.packaged_runbooks()); "
                            "print(json.dumps({k: v.decode() for k, v in r.load_runbooks().items()}))")
    assert done.returncode == 0, done.stderr
    where, served = done.stdout.split("\n", 1)
    assert Path(where).is_relative_to(installed.venv), where
    expected = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "runbooks").glob("*.md")}
    assert len(expected) >= 30
    assert json.loads(served) == expected


def test_help_lists_the_commands_and_each_command_has_its_own_help(installed: Installed) -> None:
    top = installed.run("--help")
    assert top.returncode == 0, top.stderr
    for command in ("healthcheck", "backup", "check"):
        assert command in top.stdout
    health = installed.run("healthcheck", "--help")
    assert health.returncode == 0, health.stderr
    assert health.stdout.startswith("usage: bybit-tracker healthcheck")
    assert "REDIS_URL" in health.stdout, "the help lists the knobs it reads"
    backup = installed.run("backup", "--help")
    assert backup.returncode == 0, backup.stderr
    assert backup.stdout.startswith("usage: bybit-tracker backup")
    for action in ("create", "restore", "list", "prune"):
        assert action in backup.stdout
    version = installed.run("--version")
    assert version.stdout.strip() == "bybit-tracker 0.1.0"


def test_an_unknown_command_exits_2_naming_the_real_ones(installed: Installed) -> None:
    done = installed.run("helthcheck")
    assert done.returncode == 2
    assert "invalid choice: 'helthcheck'" in done.stderr
    assert "healthcheck" in done.stderr.split("choose from", 1)[1]


def test_the_installed_healthcheck_calls_an_empty_redis_critical(
    installed: Installed, redis_server: RedisServer,
) -> None:
    done = installed.run("healthcheck", "--no-api", REDIS_URL=redis_server.url, BYBIT_COINS="BTC")
    assert done.returncode == 2, done.stderr
    assert re.search(r"^ingest_heartbeat +CRITICAL", done.stdout, re.MULTILINE), done.stdout
    assert "no ingest replica has a fresh heartbeat" in done.stdout
    assert "nothing writes" in done.stdout
    assert "overall: CRITICAL (exit 2)" in done.stdout
    assert "Traceback" not in done.stderr


def test_the_installed_backup_archives_the_deployment_directory_it_runs_in(
    installed: Installed, redis_server: RedisServer, tmp_path: Path,
) -> None:
    redis_server.client().hset("bybit:stats", mapping={"reconnects": 3})
    deploy = tmp_path / "deploy"
    (deploy / "prometheus").mkdir(parents=True)
    (deploy / "prometheus" / "thresholds.yml").write_text("alerts: {}\n")
    (deploy / "docker-compose.yml").write_text("services: {}\n")
    done = subprocess.run([str(installed.command), "backup", "create"], capture_output=True, text=True,
                          cwd=deploy, env=installed.env(REDIS_URL=redis_server.url), timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "1 keys, 2 config files" in done.stdout
    listed = subprocess.run([str(installed.command), "backup", "list", "--json"], capture_output=True,
                            text=True, cwd=deploy, env=installed.env(), timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["keys"], row["config_files"], row["state"]) == (1, 2, "ok")
    assert (deploy / "var" / "backups" / row["name"]).is_file()


def test_check_runs_the_ingest_s_live_check(installed: Installed) -> None:
    done = installed.run("check", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bybit-tracker check"), "the installed name, not python -m ingest"
    assert "--seconds" in done.stdout
    # An exchange that is not there: the check must say FAIL and exit 1, not hang or crash.
    nowhere = f"127.0.0.1:{free_port()}"
    failed = installed.run("check", "--seconds", "2", BYBIT_COINS="BTC",
                           BYBIT_REST_URL=f"http://{nowhere}", BYBIT_WS_URL=f"ws://{nowhere}/v5/public/option")
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "VERDICT: FAIL" in failed.stdout
    assert "Traceback" not in failed.stderr


# --- the old checkout spellings ------------------------------------------------------------------------

def test_python_m_scripts_healthcheck_still_works_from_a_checkout(redis_server: RedisServer) -> None:
    done = subprocess.run([sys.executable, "-m", "scripts.healthcheck", "--no-api", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          env=python_env(REDIS_URL=redis_server.url, BYBIT_COINS="BTC"))
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["status"] == "critical"


def test_python_m_scripts_backup_still_archives_the_checkout_s_configuration() -> None:
    done = subprocess.run([sys.executable, "-m", "scripts.backup", "create", "--help"], capture_output=True,
                          text=True, cwd="/", timeout=60, check=False, env=python_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m scripts.backup")
    assert f"(default {ROOT})" in " ".join(done.stdout.split())
