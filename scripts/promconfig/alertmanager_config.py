"""The local stack's and the tests' Alertmanager config, derived from alertmanager/alertmanager.yml.

alertmanager/alertmanager.yml is the hand-maintained source (routes, inhibition, receivers,
time intervals), deployed as is by compose. A loopback variant keeps its routing tree and
inhibition unchanged and replaces only what must not leave the machine: every receiver's
notifiers become one webhook to a loopback URL (or nothing), the SMTP settings go, template
paths become absolute, and the grouping timers may be scaled down for tests.

With a loopback ``smarthost`` the receivers keep their mails as committed (recipients, subject
header, text and HTML templates, send_resolved) and only the transport changes: the relay
becomes the given host:port, without TLS and without authentication (the committed
credentials name a secret file the loopback stack does not have). That is how a test receives
the mails a user would get.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

import yaml

from scripts.promconfig.durations import format_duration, parse_duration
from scripts.promconfig.thresholds import ROOT
from scripts.promconfig.yamlout import dump

ALERTMANAGER_DIR: Final = ROOT / "alertmanager"
ALERTMANAGER_FILE: Final = ALERTMANAGER_DIR / "alertmanager.yml"
TIMERS: Final = ("group_wait", "group_interval", "repeat_interval")
#: Shortest timer a scaled route gets: Alertmanager flushes no faster than this usefully.
MIN_TIMER_SECONDS: Final = 1.0


def load_source(path: Path = ALERTMANAGER_FILE) -> dict[str, Any]:
    """The committed Alertmanager config as a mapping."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc


def _scale_route(route: dict[str, Any], factor: float) -> None:
    for key in TIMERS:
        if key in route:
            seconds = max(MIN_TIMER_SECONDS, parse_duration(str(route[key])) * factor)
            route[key] = format_duration(seconds)
    for child in route.get("routes", []):
        _scale_route(child, factor)


#: Per-mail transport settings the loopback variant drops, so every mail uses its loopback relay.
EMAIL_TRANSPORT_KEYS: Final = frozenset({
    "smarthost", "hello", "auth_username", "auth_password", "auth_password_file", "auth_secret",
    "auth_identity", "require_tls", "tls_config"})
#: Route keys that limit when a route notifies (working hours and the like).
TIME_LIMIT_KEYS: Final = ("active_time_intervals", "mute_time_intervals")


def _drop_time_limits(route: dict[str, Any]) -> None:
    for key in TIME_LIMIT_KEYS:
        route.pop(key, None)
    for child in route.get("routes", []):
        _drop_time_limits(child)


def _loopback_global(source_global: dict[str, Any], smarthost: str | None) -> dict[str, Any]:
    """``global`` without the SMTP relay; with ``smarthost``, that relay in plain text and no auth."""
    out = {k: v for k, v in source_global.items() if not k.startswith("smtp_")}
    if smarthost is not None:
        if "smtp_from" in source_global:
            out["smtp_from"] = source_global["smtp_from"]
        out["smtp_smarthost"] = smarthost
        out["smtp_require_tls"] = False
    return out


def render_local_alertmanager_config(
    *,
    webhook_url: str | None = None,
    timing_scale: float = 1.0,
    smarthost: str | None = None,
    always_active: bool = False,
    source: Path = ALERTMANAGER_FILE,
) -> str:
    """The loopback variant of ``source`` as YAML text.

    ``webhook_url``: where every receiver posts (with resolved notifications); None leaves
    the receivers without webhooks, so alerts show in Alertmanager's UI and go nowhere.
    ``timing_scale`` multiplies group_wait/group_interval/repeat_interval on every route.
    ``smarthost`` (``host:port`` on loopback): the receivers keep their committed mails, sent
    there in plain text without authentication; None sends no mail.
    ``always_active`` drops the routes' active/mute time intervals, so a test gets every
    tier's notifications at any hour (the info digest is otherwise sent in working hours only).
    """
    if timing_scale <= 0:
        raise ValueError(f"timing_scale must be positive, got {timing_scale}")
    doc = copy.deepcopy(load_source(source))
    doc["global"] = _loopback_global(doc.get("global", {}), smarthost)
    doc["templates"] = [str((source.parent / t).resolve()) for t in doc.get("templates", [])]
    receivers = []
    for receiver in doc.get("receivers", []):
        local: dict[str, Any] = {"name": receiver["name"]}
        if webhook_url is not None:
            local["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
        if smarthost is not None and receiver.get("email_configs"):
            local["email_configs"] = [{k: v for k, v in mail.items() if k not in EMAIL_TRANSPORT_KEYS}
                                      for mail in receiver["email_configs"]]
        receivers.append(local)
    doc["receivers"] = receivers
    if timing_scale != 1.0:
        _scale_route(doc["route"], timing_scale)
    if always_active:
        _drop_time_limits(doc["route"])
    mail = f"mail to {smarthost}" if smarthost is not None else "no mail"
    return dump(doc, header=f"Generated by scripts.promconfig from {source.name} for a loopback stack: "
                            f"{mail}, no external webhooks.")


def write_local_alertmanager_config(
    out_dir: Path, *, webhook_url: str | None = None, timing_scale: float = 1.0,
    smarthost: str | None = None, always_active: bool = False,
) -> Path:
    """Write ``out_dir/alertmanager.yml`` (see :func:`render_local_alertmanager_config`); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "alertmanager.yml"
    path.write_text(render_local_alertmanager_config(webhook_url=webhook_url, timing_scale=timing_scale,
                                                     smarthost=smarthost, always_active=always_active),
                    encoding="utf-8")
    return path
