"""The dashboard kit (scripts/dashboards/parts.py): layout and thresholds as Grafana will draw them."""

from __future__ import annotations

from typing import Any

from scripts.dashboards.parts import dashboard, floor, graph, levels, q, row, single, to_json
from scripts.healthcheck.tiers import Thresholds


def positions(doc: dict[str, Any]) -> list[tuple[str, int, int, int, int]]:
    return [(p["title"], p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"])
            for p in doc["panels"]]


def test_a_panel_that_would_cross_the_right_edge_starts_a_new_line() -> None:
    # 8 + 8 + 12 > 24: the SDK's own with_panel would put the third at x=16, past column 24.
    doc = to_json(dashboard("t", "T", "", row("R1", graph("a").span(8), graph("b").span(8).height(9),
                                               graph("c").span(12)),
                            row("R2", single("d").span(24))))
    assert positions(doc) == [("R1", 0, 0, 24, 1), ("a", 0, 1, 8, 7), ("b", 8, 1, 8, 9),
                              ("c", 0, 10, 12, 7), ("R2", 0, 17, 24, 1), ("d", 0, 18, 24, 7)]
    assert [p["id"] for p in doc["panels"]] == [1, 2, 3, 4, 5, 6]


def test_queries_are_lettered_and_thresholds_follow_the_alert_tiers() -> None:
    doc = to_json(dashboard("t", "T", "", row("R", graph("g", q("up"), q("  sum(\n up)", "all"),
                                                            alert=levels(Thresholds(info=1, critical=3))),
                                           single("s", q("up")).thresholds(floor(warning=0.9, target=0.99)))))
    g, s = doc["panels"][1], doc["panels"][2]
    assert [(t["refId"], t["expr"], t["legendFormat"]) for t in g["targets"]] == [
        ("A", "up", "__auto"), ("B", "sum( up)", "all")]
    assert g["fieldConfig"]["defaults"]["thresholds"]["steps"] == [
        {"color": "green", "value": None}, {"color": "blue", "value": 1}, {"color": "red", "value": 3}]
    assert g["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "dashed"}
    assert s["fieldConfig"]["defaults"]["thresholds"]["steps"] == [
        {"color": "red", "value": None}, {"color": "orange", "value": 0.9}, {"color": "green", "value": 0.99}]
