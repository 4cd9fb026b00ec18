"""``python -m scripts.healthcheck``: the old checkout-only spelling of ``bybit-tracker healthcheck``.

The tool lives in :mod:`tracker_tools.healthcheck` and is installed with the package; this
shim keeps existing cron lines and habits working from a checkout.
"""
