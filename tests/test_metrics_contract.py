"""docs/CONTRACTS.md and docs/metrics.md list exactly the metrics the processes expose.

A real ``python -m exporter`` and a real ``python -m api`` run on a real Redis holding a
healthy ingest's layout; the API is sent a request on every route (and on no route), and
both are scraped. Dashboards, rules and people read the docs, so a metric that is exposed
and undocumented, documented and gone, or whose type, labels or closed label values differ
from the docs fails here.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures_readers import Layout, ServiceHandle
from tests.servers import RedisServer, repo_root

COINS = ("BTC", "ETH")
#: Values a healthy stack cannot be made to produce without faults; the docs may list more.
UNPROVOKED: frozenset[str] = frozenset({"status"})


@dataclass(frozen=True)
class Documented:
    """One row of a metric table in docs/CONTRACTS.md."""

    kind: str
    labels: frozenset[str]


@dataclass
class Exposed:
    """One family as scraped: its type, label names and the values seen per label."""

    kind: str
    values: dict[str, set[str]] = field(default_factory=dict)


def contracts_text() -> str:
    return (repo_root() / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")


def metric_table(section: str) -> dict[str, Documented]:
    rows = re.findall(r"^\| `(bybit_[a-z_]+)` \| (\w+) \|([\w, ]*)\|", section, re.MULTILINE)
    return {name: Documented(kind, frozenset(re.findall(r"\w+", labels))) for name, kind, labels in rows}


def documented_metrics() -> tuple[dict[str, Documented], dict[str, Documented]]:
    """(exporter table, API table) of docs/CONTRACTS.md."""
    text = contracts_text()
    exporter = text.split('Exporter (`job="exporter"`)', 1)[1].split("\nAPI (", 1)[0]
    api = text.split('\nAPI (`job="api"`)', 1)[1].split("Label values", 1)[0]
    tables = metric_table(exporter), metric_table(api)
    assert len(tables[0]) > 25, "the exporter's metric table was not found in docs/CONTRACTS.md"
    assert len(tables[1]) >= 4, "the API's metric table was not found in docs/CONTRACTS.md"
    return tables


def documented_label_values() -> dict[tuple[str, str], set[str]]:
    """(metric, label) -> the closed set of values docs/CONTRACTS.md allows."""
    section = contracts_text().split("Label values", 1)[1].split("\n## ", 1)[0]
    out: dict[tuple[str, str], set[str]] = {}
    for label, metrics, values in re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", section, re.MULTILINE):
        for metric in re.findall(r"`(bybit_[a-z_]+)`", metrics):
            out[(metric, label)] = set(re.findall(r"`([^`]+)`", values))
    assert len(out) >= 7, "the label-value table was not found in docs/CONTRACTS.md"
    return out


def exposed(text: str) -> dict[str, Exposed]:
    """name (``_total`` included for counters, as documented) -> what the exposition holds."""
    out: dict[str, Exposed] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        seen = out.setdefault(name, Exposed(family.type))
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label != "le":
                    seen.values.setdefault(label, set()).add(value)
    return out


def fetch(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def scrape(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture
def scraped(layout: Layout, redis_server: RedisServer, exporter_factory: Callable[..., ServiceHandle],
            api_factory: Callable[..., ServiceHandle]) -> dict[str, dict[str, Exposed]]:
    """What each process exposes once a healthy ingest wrote Redis and every API route was used."""
    written = layout.healthy(now=time.time(), coins=COINS, per_coin=3)
    exporter = exporter_factory(redis_url=redis_server.url, coins=COINS)
    api = api_factory(redis_url=redis_server.url, coins=COINS)
    symbol = next(s for s in written if s.startswith("BTC-"))
    for path in ("/api/options/BTC", f"/api/options/BTC/{symbol}", "/api/coins", "/healthz", "/readyz",
                 "/openapi.json", "/docs/runbooks/RedisDown.md", "/metrics"):
        assert fetch(api.url + path) == 200, path
    assert fetch(api.url + "/healthz", "HEAD") == 200
    assert fetch(api.url + "/no/such/route") == 404
    assert fetch(api.url + "/api/coins", "POST") == 405
    return {"exporter": exposed(scrape(exporter.url)), "api": exposed(scrape(api.url))}


def test_contracts_list_every_exposed_metric_with_its_type_and_labels(
    scraped: dict[str, dict[str, Exposed]],
) -> None:
    for process, documented in zip(("exporter", "api"), documented_metrics(), strict=True):
        actual = scraped[process]
        assert sorted(set(actual) - set(documented)) == [], f"{process}: exposed, not in docs/CONTRACTS.md"
        assert sorted(set(documented) - set(actual)) == [], f"{process}: in docs/CONTRACTS.md, not exposed"
        for name, doc in documented.items():
            assert (actual[name].kind, set(actual[name].values)) == (doc.kind, set(doc.labels)), name


def test_exposed_label_values_are_the_documented_closed_sets(
    scraped: dict[str, dict[str, Exposed]],
) -> None:
    metrics = scraped["exporter"] | scraped["api"]
    for (name, label), allowed in documented_label_values().items():
        seen = metrics[name].values.get(label, set())
        assert seen <= allowed, f"{name}{{{label}}} exposes undocumented values {sorted(seen - allowed)}"
        if label not in UNPROVOKED:
            assert seen == allowed, f"{name}{{{label}}}: documented, never exposed: {sorted(allowed - seen)}"
    assert "unmatched" in metrics["bybit_api_requests_total"].values["route"]
    for name, family in scraped["exporter"].items():
        if "coin" in family.values:
            assert family.values["coin"] == set(COINS), name


def test_metrics_md_describes_every_exposed_metric_and_no_other(
    scraped: dict[str, dict[str, Exposed]],
) -> None:
    text = (repo_root() / "docs" / "metrics.md").read_text(encoding="utf-8")
    mentioned = set(re.findall(r"`(bybit_[a-z_]+)(?:\{[^`]*\})?`", text))
    described = set(re.findall(r"^\| `(bybit_[a-z_]+)(?:\{[^`]*\})?` \|", text, re.MULTILINE))
    actual = set(scraped["exporter"]) | set(scraped["api"])
    assert sorted(actual - mentioned) == [], "exposed, not in docs/metrics.md"
    assert sorted(described - actual) == [], "described in docs/metrics.md, not exposed"
