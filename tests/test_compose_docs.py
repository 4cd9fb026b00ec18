"""The operator docs stay true: the runbook index is complete and its links, and every command and
file the operations guide names, exist."""

from __future__ import annotations

import re

import yaml

from tests.servers import repo_root

ROOT = repo_root()
RUNBOOKS = ROOT / "docs" / "runbooks"
OPERATIONS = ROOT / "docs" / "operations.md"


def index_rows() -> dict[str, tuple[str, str]]:
    """Alert name -> (tier, linked file) for each row of the runbook index table."""
    rows = {}
    text = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    tier = "critical|warning|info|none"  # none: the Watchdog, the dead-man's switch
    row = re.compile(rf"^\| `([A-Za-z0-9]+)` \| ({tier}) \| [^|]+ \| \[[^\]]*\]\(([^)]+)\) \|$",
                     re.MULTILINE)
    for m in row.finditer(text):
        rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_every_runbook_is_in_the_index() -> None:
    runbooks = {p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md"}
    missing = runbooks - set(index_rows())
    assert not missing, f"runbooks missing from docs/runbooks/README.md: {sorted(missing)}"


def test_every_index_row_links_to_an_existing_runbook_named_after_its_alert() -> None:
    for alert, (_tier, link) in index_rows().items():
        assert link == f"{alert}.md", (alert, link)
        assert (RUNBOOKS / link).is_file(), link


def alert_severities() -> dict[str, str]:
    severities: dict[str, str] = {}
    for path in (ROOT / "prometheus").glob("rules/*.yml"):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    severities[rule["alert"]] = rule.get("labels", {}).get("severity", "")
    return severities


def test_every_alert_is_in_the_index_with_its_tier() -> None:
    severities = alert_severities()
    assert severities, "no alert rules found in prometheus/rules/"
    rows = index_rows()
    missing = set(severities) - set(rows)
    assert not missing, f"alerts missing from docs/runbooks/README.md: {sorted(missing)}"
    for alert, (tier, _link) in rows.items():
        assert alert in severities, f"{alert} is indexed but no rule defines it"
        assert severities[alert] == tier, alert


def test_operations_guide_names_only_real_modules_files_and_services() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for module in set(re.findall(r"python -m ([a-z_.]+)", text)):
        path = ROOT / module.replace(".", "/")
        assert (path / "__main__.py").is_file() or path.with_suffix(".py").is_file(), module
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    used = re.findall(r"docker compose (?:exec|run --rm --no-deps [^\n]*?-w /work) ([a-z]+)", text)
    assert used, "the guide shows how to run the tools with Docker"
    for service in set(used):
        assert service in compose["services"], service
    for image in re.findall(r"`((?:prom/[a-z]+|grafana/grafana|redis):[^`]+)`", text):
        images = {s["image"] for s in compose["services"].values()}
        assert image in images, f"operations.md names {image}, compose runs {sorted(images)}"
    for rel in ("prometheus/thresholds.yml", "tracker_tools/healthcheck/tiers.py", "docker-compose.yml",
                ".env.example"):
        assert rel in text
        assert (ROOT / rel).exists(), rel


def test_operations_guide_documents_the_redis_policy_compose_uses() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    argv = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    assert f"maxmemory {argv[argv.index('--maxmemory') + 1]}" in text
    assert argv[argv.index("--maxmemory-policy") + 1] in text
    assert f'--save "{argv[argv.index("--save") + 1]}"' in text


def test_markdown_links_between_docs_resolve() -> None:
    for doc in (OPERATIONS, RUNBOOKS / "README.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (doc.parent / target).resolve().exists(), (doc.name, target)
