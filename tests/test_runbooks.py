"""Every alert's runbook link resolves: the file exists and the API serves it at that URL.

The rule generator writes ``runbook_url`` = base + ``<Alert>.md``; the default base is the API's
``/docs/runbooks/`` on localhost:5001 (where compose and the local stack publish it). These tests
read the committed rules, then ask a real ``python -m api`` for each link's path: 200 with the
file's exact bytes. Paths that are not a packaged runbook (traversal, encoded slashes, other files
of the package) answer a JSON 404, and a base that would break every link is refused.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import render_rule_files
from scripts.promconfig.model import DEFAULT_RUNBOOK_BASE, RunbookBaseError, check_runbook_base
from tests.fixtures_readers import ServiceHandle, api_factory
from tests.servers import RedisServer, python_env, repo_root

__all__ = ["api_factory"]

ROOT = repo_root()
RULES = ROOT / "prometheus" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks"


def committed_alerts() -> list[dict[str, Any]]:
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(RULES.glob("*.yml"))]
    return [r for d in docs for g in d["groups"] for r in g["rules"] if "alert" in r]


def get(url: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One raw request (``path`` sent exactly as given, no client-side normalisation)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def api(redis_server: RedisServer, api_factory: Callable[..., ServiceHandle]) -> ServiceHandle:
    return api_factory(redis_url=redis_server.url)


def test_every_alert_links_the_default_base_and_an_existing_runbook() -> None:
    alerts = committed_alerts()
    assert len(alerts) >= 30
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert url == f"{DEFAULT_RUNBOOK_BASE}{rule['alert']}.md", url
        assert (RUNBOOKS / f"{rule['alert']}.md").is_file(), f"docs/runbooks/{rule['alert']}.md is missing"


def test_the_api_serves_every_alerts_runbook_at_its_link(api: ServiceHandle) -> None:
    """The link's path on the running API answers 200 with the runbook file, byte for byte."""
    for rule in committed_alerts():
        path = urllib.parse.urlsplit(rule["annotations"]["runbook_url"]).path
        status, headers, body = get(api.url, path)
        assert status == 200, (path, body[:200])
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert body == (RUNBOOKS / f"{rule['alert']}.md").read_bytes(), path
        assert body.startswith(f"# {rule['alert']}\n".encode())
    status, _, body = get(api.url, "/docs/runbooks/README.md")
    assert status == 200
    assert body == (RUNBOOKS / "README.md").read_bytes()


@pytest.mark.parametrize("path", [
    "/docs/runbooks/..%2F..%2Fpyproject.toml", "/docs/runbooks/%2e%2e%2fapp.py", "/docs/runbooks/../app.py",
    "/docs/runbooks/app.py", "/docs/runbooks/runbooks.py", "/docs/runbooks/NoSuchAlert.md",
    "/docs/runbooks/NoDataFlowing.MD", "/docs/runbooks/NoDataFlowing", "/docs/runbooks/.md",
    "/docs/runbooks/%00NoDataFlowing.md", "/docs/runbooks/", "/docs/runbooks/" + "A" * 5000 + ".md",
    "/docs/runbooks/NoDataFlowing.md%2F", "/docs/runbooks/NoDataFlowing.md/x",
])
def test_anything_but_a_packaged_runbook_is_a_json_404(api: ServiceHandle, path: str) -> None:
    status, headers, body = get(api.url, path)
    assert status == 404, (path, status, body[:200])
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"
    assert b"[tool." not in body
    assert b"import" not in body


def test_the_runbook_route_is_read_only_and_takes_no_query(api: ServiceHandle) -> None:
    status, headers, _ = get(api.url, "/docs/runbooks/RedisDown.md", method="POST")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    status, _, body = get(api.url, "/docs/runbooks/RedisDown.md?x=1")
    assert status == 400
    assert json.loads(body)["error"]["code"] == "unknown_parameter"
    status, headers, body = get(api.url, "/docs/runbooks/RedisDown.md", method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) == (RUNBOOKS / "RedisDown.md").stat().st_size


def test_runbook_requests_are_counted_under_the_route_template(api: ServiceHandle) -> None:
    get(api.url, "/docs/runbooks/RedisDown.md")
    get(api.url, "/docs/runbooks/Nope.md")
    _, _, body = get(api.url, "/metrics")
    text = body.decode()
    assert 'bybit_api_requests_total{route="/docs/runbooks/{name}",status="2xx"} 1.0' in text
    assert 'bybit_api_requests_total{route="/docs/runbooks/{name}",status="4xx"} 1.0' in text
    assert "Nope" not in text


def test_a_chosen_base_goes_into_every_alert() -> None:
    base = "https://tracker.example.com/ops/docs/runbooks/"
    files = render_rule_files(runbook_base=base)
    rules = [r for text in files.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]
             if "alert" in r]
    assert rules
    assert all(r["annotations"]["runbook_url"] == f"{base}{r['alert']}.md" for r in rules)
    assert DEFAULT_RUNBOOK_BASE not in "".join(files.values())


@pytest.mark.parametrize("bad", [
    "localhost:5001/docs/runbooks/", "/docs/runbooks/", "http://localhost:5001/docs/runbooks",
    "ftp://host/runbooks/", "https:///runbooks/", "https://host/runbooks/?x=1", "https://host/r/#top",
    "https://host/{{ $labels.job }}/", "https://ho st/runbooks/",
])
def test_a_base_that_would_break_every_link_is_refused(bad: str) -> None:
    with pytest.raises(RunbookBaseError):
        check_runbook_base(bad)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.promconfig", *args], capture_output=True, text=True,
                          cwd=ROOT, env=python_env(), timeout=120, check=False)


def test_the_cli_renders_rules_with_a_base_and_refuses_a_bad_one(tmp_path: Path) -> None:
    base = "https://runbooks.example.org/tracker/"
    done = _cli("rules", "--out", str(tmp_path), "--runbook-base", base)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "alerts.yml").read_text(encoding="utf-8")
    assert f"runbook_url: {base}NoDataFlowing.md" in text
    bad = _cli("rules", "--out", str(tmp_path / "bad"), "--runbook-base", "runbooks/")
    assert bad.returncode == 2
    assert "expected an absolute http:// or https:// URL" in bad.stderr
    assert not (tmp_path / "bad").exists()
    # The committed files use the default base: checking them against another one says so.
    stale = _cli("check", "--runbook-base", base)
    assert stale.returncode == 1
    assert "prometheus/rules/alerts.yml" in stale.stderr
    assert f"--runbook-base {base}" in stale.stderr


def test_the_image_and_the_wheel_ship_the_runbooks() -> None:
    """api/runbooks links to docs/runbooks: the image copies its target, the wheel packages it."""
    link = ROOT / "api" / "runbooks"
    assert link.is_symlink()
    assert link.resolve() == RUNBOOKS.resolve()
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY docs/runbooks ./docs/runbooks" in dockerfile
    allowed = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "!docs/runbooks/" in allowed
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"api" = ["runbooks/*.md"]' in pyproject


def test_a_missing_or_unreadable_runbook_directory_serves_nothing_but_the_api_still_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from api.runbooks import load_runbooks

    assert load_runbooks(tmp_path / "absent") == {}
    assert "runbooks not found" in caplog.text
    (tmp_path / "Good.md").write_text("# Good\n", encoding="utf-8")
    (tmp_path / "Broken.md").symlink_to(tmp_path / "nowhere.md")  # dangling: not served
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / "Big.md").write_bytes(b"#" * (256 * 1024 + 1))
    assert dict(load_runbooks(tmp_path)) == {"Good.md": b"# Good\n"}
    assert "runbook too large" in caplog.text
