"""``python -m scripts.backup``: the old checkout-only spelling of ``bybit-tracker backup``.

The tool lives in :mod:`tracker_tools.backup` and is installed with the package; this shim
keeps existing cron lines working from a checkout, with the checkout as the deployment
directory whose configuration is archived (as before the move).
"""
