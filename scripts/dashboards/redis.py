"""Redis: reachability, memory against capacity, keys, TTL policy, write load."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from scripts.dashboards import shared
from scripts.dashboards.parts import (
    UP_MAPPINGS,
    Unit,
    dashboard,
    graph,
    levels,
    mappings,
    per_second,
    q,
    row,
    single,
)
from scripts.healthcheck import tiers


def build() -> dm.Dashboard:
    return dashboard(
        "bybit-redis", "Bybit Options Tracker / Redis",
        "The store: reachability, memory against capacity, keys, TTL policy, write load.",
        row("State",
            single("Redis reachable", q("max(bybit_redis_up)", "redis")).span(4).decimals(0)
            .mappings(mappings(*UP_MAPPINGS)),
            shared.memory().span(5),
            single("maxmemory set", q("max(bybit_redis_maxmemory_configured)", "configured")).span(5)
            .decimals(0).mappings(mappings(("0", "NO (host memory)", "orange"), ("1", "YES", "green"))),
            single("Memory pressure TTL", q("max(bybit_ingest_memory_pressure)", "pressure")).span(5)
            .decimals(0).mappings(mappings(("0", "normal TTL", "green"), ("1", "short TTL", "orange"))),
            single("Option TTL", q("max(bybit_option_ttl_seconds)", "ttl")).span(5).unit(Unit.SECONDS)),
        row("Memory and keys",
            graph("Memory used vs capacity", q("max(bybit_redis_memory_used_bytes)", "used"),
                  q("max(bybit_redis_memory_max_bytes)", "capacity")).unit(Unit.BYTES).span(12).min(0),
            graph("Memory ratio", q(shared.MEMORY_RATIO, "used / capacity"),
                  alert=levels(tiers.REDIS_MEMORY_RATIO)).unit(Unit.RATIO).span(12).min(0).max(1),
            graph("Keys", q("max(bybit_redis_keys)", "keys")).span(8).min(0),
            graph("Writes / s", q(per_second("bybit_redis_writes_total"), "option writes"))
            .unit(Unit.PER_SECOND).span(8).min(0),
            graph("Exporter scrape duration", q("max(bybit_exporter_scrape_duration_seconds)", "scrape"))
            .unit(Unit.SECONDS).span(8).min(0).description("Time one exporter scrape spends reading Redis.")),
    )
