"""Every component is runnable as ``python -m NAME``, explains itself and refuses bad config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import python_env, repo_root

COMPONENTS = ("ingest", "exporter", "api", "simulator")


@pytest.mark.parametrize("component", COMPONENTS)
def test_help_exits_zero_and_describes_the_component(component: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", component, "--help"], capture_output=True, text=True,
        env=python_env(), cwd=repo_root(), timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
    assert len(done.stdout) > 200, "help should describe the options, not just the usage line"


@pytest.mark.parametrize("component", ("ingest", "exporter", "api"))
def test_bad_configuration_exits_2_naming_the_variable(component: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", component], capture_output=True, text=True,
        env=python_env(BYBIT_COINS="BTC,*", REDIS_URL="redis://127.0.0.1:1/0"), cwd=repo_root(),
        timeout=60, check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "BYBIT_COINS" in done.stderr
    assert "Traceback" not in done.stderr
