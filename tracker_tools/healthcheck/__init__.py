"""``bybit-tracker healthcheck``: the stack's health in one look, with an exit code by tier.

Reads Redis (the ingest's stats, heartbeat and per-coin updates, Redis' own memory) and asks
the API's ``/readyz``; classifies every finding with the alert tiers' thresholds
(:mod:`tracker_tools.healthcheck.tiers`) and exits 0 (ok or info), 1 (warning) or 2 (critical);
3 when it could not run at all (bad configuration, a ``--only`` naming no check).
"""
