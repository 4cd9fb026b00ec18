"""Structured logging: one line per event, with context fields.

Call sites pass context through ``extra={...}`` (connection, coin, error type...);
the formatter renders every extra field, as a JSON object per line (``json``) or as
``key=value`` pairs (``text``). :class:`LogThrottle` keeps a flood of identical
events (a burst of malformed frames) to a few lines with a count of what it held back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Final

import orjson

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger event key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name} {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every logger's records to stderr, one line each, in ``fmt`` (json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log every frame at DEBUG; keep them at WARNING unless asked.
    for noisy in ("websockets", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class LogThrottle:
    """Let through at most ``burst`` records per key per ``period`` seconds.

    The first suppressed-then-allowed record carries ``suppressed=N`` so the log
    still says how many were held back. The clock is injectable for tests.
    """

    def __init__(self, *, period: float = 10.0, burst: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period
        self._burst = burst
        self._clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (start, allowed, suppressed)

    def allow(self, key: str) -> tuple[bool, int]:
        """Return (log this one?, how many were suppressed since the last one logged)."""
        now = self._clock()
        start, allowed, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self._period:
            start, allowed = now, 0
        if allowed < self._burst:
            self._windows[key] = (start, allowed + 1, 0)
            return True, suppressed
        self._windows[key] = (start, allowed, suppressed + 1)
        return False, 0
