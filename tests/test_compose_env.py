""".env.example documents every variable: each ${VAR} of docker-compose.yml and every tracker knob."""

from __future__ import annotations

import re

import yaml

from common.config import knob_table, load_settings
from tests.servers import repo_root

ROOT = repo_root()


def _example() -> str:
    return (ROOT / ".env.example").read_text(encoding="utf-8")


def _documented() -> dict[str, str]:
    """Variable -> value, for lines ``VAR=value`` and commented-out ``# VAR=value``."""
    found: dict[str, str] = {}
    for line in _example().splitlines():
        m = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def test_every_compose_variable_is_documented() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    missing = used - set(_documented())
    assert not missing, f"variables of docker-compose.yml missing from .env.example: {sorted(missing)}"


def test_every_tracker_knob_is_documented_with_its_default_and_reason() -> None:
    documented = _documented()
    text = _example()
    for env, default, doc in knob_table():
        assert documented.get(env) == default, (
            f"{env}: .env.example shows {documented.get(env)!r}; add its reason and the line "
            f"'# {env}={default}' in the tracker knobs section, in common/config.py's order")
        first_words = " ".join(doc.split()[:4])
        assert first_words in " ".join(text.replace("# ", " ").split()), f"{env}: reason not documented"


def test_only_secrets_are_set_in_the_example_and_all_of_them_are_empty() -> None:
    uncommented = [line for line in _example().splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line)]
    assert uncommented == ["GRAFANA_ADMIN_PASSWORD=", "ALERTMANAGER_SMTP_PASSWORD=",
                           "ALERTMANAGER_WEBHOOK_TOKEN="]


def test_every_compose_secret_comes_from_a_documented_variable() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    documented = _documented()
    for name, secret in compose["secrets"].items():
        assert secret["environment"] in documented, name


def test_the_documented_defaults_load_as_valid_settings() -> None:
    knobs = {env for env, _d, _doc in knob_table()}
    env = {k: v for k, v in _documented().items() if k in knobs}
    assert load_settings(env=env) == load_settings(env={})
