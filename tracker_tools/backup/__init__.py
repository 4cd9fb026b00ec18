"""``bybit-tracker backup create|restore|list|prune``: Redis data and the stack's configuration.

Redis is a cache of the exchange, rebuilt by the ingest within seconds, so a backup is about
a fast, complete restart (indexes, counters, last tickers) and above all about the
configuration: rules, routes, dashboards, compose file and ``.env``. One archive per run,
``tracker-<UTC timestamp>.tar.gz`` (mode 0600: it may hold ``.env``), with a manifest and
checksums; retention keeps the newest archive of each of the last N days.
"""
