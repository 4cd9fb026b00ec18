"""Moved to :mod:`tracker_tools.healthcheck.tiers`; re-exported for checkout code that imports it here."""

from __future__ import annotations

from tracker_tools.healthcheck.tiers import *  # noqa: F403
