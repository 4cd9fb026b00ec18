"""The operator's tools, installed with the tracker as one command: ``bybit-tracker``.

``bybit-tracker healthcheck`` (the stack's health with an exit code by alert tier),
``bybit-tracker backup`` (Redis data and configuration archives) and ``bybit-tracker check``
(the ingest's live check of the exchange). They used to live in ``scripts/``, which only a
checkout has; a package ships them to the Docker image and to every ``pip install`` alike,
with the data they read (the alert thresholds) as package data. See :mod:`tracker_tools.cli`.
"""
