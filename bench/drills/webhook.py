"""Alertmanager's webhook target on loopback: records every notification POSTed to it.

A drill reads it to say which alerts reached a receiver (not only which fired in
Prometheus), through the project's real routing and inhibition.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from typing import Any

from tests.servers import LOOPBACK

log = logging.getLogger("drills.webhook")


class WebhookReceiver:
    """An HTTP server thread that keeps every notification body it receives."""

    def __init__(self) -> None:
        self._notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.bad_requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    doc = json.loads(body)
                except ValueError as exc:
                    with receiver._lock:
                        receiver.bad_requests += 1
                    log.warning("webhook got a body that is not JSON: %s", exc)
                    self.send_response(400)
                else:
                    with receiver._lock:
                        receiver._notifications.append(doc)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the drill reports what it received."""

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/alertmanager"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification so far, with the notification's receiver added."""
        with self._lock:
            return [{**alert, "receiver": n.get("receiver", "")}
                    for n in self._notifications for alert in n.get("alerts", [])]

    def names(self, status: str = "firing") -> set[str]:
        """Alert names notified with ``status`` (``firing`` or ``resolved``)."""
        return {a["labels"]["alertname"] for a in self.alerts() if a.get("status") == status}
