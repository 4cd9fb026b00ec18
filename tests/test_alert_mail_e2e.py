"""Alert notifications as users receive them: real mails from a real Alertmanager, read back.

A real Alertmanager runs the loopback variant of alertmanager/alertmanager.yml (routes,
inhibition, receivers, recipients, subject header and templates as committed; only the relay
is a loopback SMTP server without TLS/auth, the webhooks one loopback receiver, the timers
scaled down, and the working-hours limit of the info digest lifted so the test runs at any
hour). A critical, a warning and an info alert, with labels and annotations rendered from the
project's own rules, are fired through Alertmanager's API and then resolved. Each mail is
parsed with the email package: envelope and To header per tier's route, the rendered subject,
and in both the text and the HTML part the tier, summary, description, value, runbook link and
resolved notice. The webhook receivers' JSON payload (Alertmanager's webhook format; the
project offers no Slack receiver) must carry the same alerts and annotations per route.
"""

from __future__ import annotations

import html.parser
import json
import re
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig import render_local_alertmanager_config, write_local_alertmanager_config
from scripts.promconfig.alertmanager_config import load_source
from tests.servers import (
    LOOPBACK,
    AlertmanagerServer,
    ReceivedMail,
    SmtpServer,
    WebhookReceiver,
    amtool,
    repo_root,
    wait_until,
)

ROOT = repo_root()
#: Alertmanager's timers scaled so every route flushes within seconds (1 s floor); the info
#: digest's 6 h group_interval becomes 6 s.
TIMING_SCALE = 1 / 3600


@dataclass(frozen=True)
class Tier:
    """One alert of a tier, the receiver its route names, and where that receiver mails."""

    severity: str
    alertname: str
    value: str  # what Prometheus' humanize* would print for the drill value
    receiver: str
    mailbox: str
    send_resolved: bool


def _receivers() -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in load_source()["receivers"]}


def _route_receiver(severity: str) -> str:
    return str(next(r["receiver"] for r in load_source()["route"]["routes"]
                    if r.get("matchers") == [f'severity="{severity}"']))


def _tier(severity: str, alertname: str, value: str) -> Tier:
    receiver = _route_receiver(severity)
    (mail,) = _receivers()[receiver]["email_configs"]
    return Tier(severity, alertname, value, receiver, mail["to"], bool(mail.get("send_resolved")))


TIERS = (
    _tier("critical", "NoDataFlowing", "7m 12s"),
    _tier("warning", "ApiLatencyHigh", "2.41s"),
    _tier("info", "WebSocketReconnectsElevated", "27"),
)
SENDER = load_source()["global"]["smtp_from"]


def _rule(alertname: str) -> dict[str, Any]:
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if rule.get("alert") == alertname:
                    return dict(rule)
    raise AssertionError(f"no alerting rule {alertname} under prometheus/rules")


def alert_for(tier: Tier) -> dict[str, Any]:
    """The alert Prometheus would send for ``tier``'s rule: its labels, annotations with the value.

    Each ``{{ ... }}`` of an annotation is what Prometheus renders from ``$value`` (the rules
    use ``$value`` alone, humanized); ``job`` is what their ``by (job)`` keeps.
    """
    rule = _rule(tier.alertname)
    annotations = {k: re.sub(r"\{\{[^}]*\}\}", tier.value, v) for k, v in rule["annotations"].items()}
    assert "{{" not in json.dumps(annotations), annotations
    labels = {"alertname": tier.alertname, "job": "exporter", **rule["labels"]}
    return {"labels": labels, "annotations": annotations,
            "generatorURL": f"http://prometheus.example.com/graph?g0.expr={tier.alertname}"}


def _post_alerts(alertmanager: AlertmanagerServer, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(f"{alertmanager.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


def _stamp(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Html(html.parser.HTMLParser):
    """The visible text of an HTML body and its links (href -> link text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: dict[str, str] = {}
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self.links[self._href] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self.links[self._href] += data


def parse_html(body: str) -> tuple[str, dict[str, str]]:
    """(visible text with whitespace collapsed, links) of an HTML body."""
    parser = _Html()
    parser.feed(body)
    parser.close()
    return re.sub(r"\s+", " ", "".join(parser.text)).strip(), parser.links


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text/plain and text/html bodies of a multipart/alternative mail, decoded."""
    assert message.get_content_type() == "multipart/alternative", message.get_content_type()
    text, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None, "no text/plain part"
    assert html_part is not None, "no text/html part"
    return str(text.get_content()), str(html_part.get_content())


@dataclass
class Delivery:
    smtp: SmtpServer
    webhook: WebhookReceiver
    alertmanager: AlertmanagerServer

    def mails(self, severity: str, resolved: bool) -> list[ReceivedMail]:
        """Mails whose subject is ``severity``'s tier, firing or resolved."""
        tag = f"[{severity.upper()}]"
        return [m for m in self.smtp.mails if str(m.message["Subject"]).startswith(tag)
                and ("RESOLVED:" in str(m.message["Subject"])) == resolved]

    def webhook_alert(self, tier: Tier, status: str) -> dict[str, Any] | None:
        return next((a for a in self.webhook.alerts()
                     if a["labels"]["alertname"] == tier.alertname and a["status"] == status), None)


@pytest.fixture
def delivery(tmp_path: Path) -> Iterator[Delivery]:
    smtp = SmtpServer()
    webhook = WebhookReceiver()
    smtp.start()
    webhook.start()
    config = write_local_alertmanager_config(tmp_path, webhook_url=webhook.url, timing_scale=TIMING_SCALE,
                                             smarthost=smtp.smarthost, always_active=True)
    alertmanager = AlertmanagerServer(tmp_path, config)
    try:
        alertmanager.start()
        yield Delivery(smtp, webhook, alertmanager)
    finally:
        alertmanager.stop()
        webhook.stop()
        smtp.stop()


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def check_mail(mail: ReceivedMail, tier: Tier, alert: dict[str, Any], *, since: datetime,
               resolved_at: datetime | None = None) -> None:
    """One tier's mail, as its recipient reads it: firing, or resolved at ``resolved_at``."""
    resolved = resolved_at is not None
    message = mail.message
    annotations = alert["annotations"]
    summary, runbook = annotations["summary"], annotations["runbook_url"]
    tag = f"[{tier.severity.upper()}]"
    where = f"{tier.alertname} {'resolved' if resolved else 'firing'}"

    assert mail.rcpt_tos == (tier.mailbox,), where
    assert message["To"] == tier.mailbox, where
    assert message["From"] == SENDER, where
    assert message["Subject"] == f"{tag} RESOLVED: {summary}" if resolved else f"{tag} {summary}", where

    text, html_body = parts(message)
    # The text part: the count, tier and name, what, the value, where to look, since when.
    heading = "RESOLVED: 1" if resolved else "FIRING: 1"
    assert heading in text.splitlines(), (where, text)
    name_line = f"{tag} {tier.alertname}" + (" - resolved" if resolved else "")
    assert name_line in text.splitlines(), (where, text)
    labels = " ".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
    when = f"Since:   {_utc(since)}" + (f" (resolved {_utc(resolved_at)})" if resolved_at else "")
    for line in (summary, annotations["description"], f"Value:   {annotations['value']}",
                 f"Runbook: {runbook}", f"Query:   {alert['generatorURL']}", when, f"Labels:  {labels}"):
        assert line in text.splitlines(), (where, line, text)

    # The HTML part: the same, as a reader sees it, and the runbook as a link.
    visible, links = parse_html(html_body)
    assert ("Resolved: 1" if resolved else "Firing: 1") in visible, (where, visible)
    assert name_line in visible, (where, visible)
    when = f"since {_utc(since)}" + (f" · resolved {_utc(resolved_at)}" if resolved_at else "")
    for phrase in (summary, annotations["description"], f"Value: {annotations['value']} · {when}", labels):
        assert phrase in visible, (where, phrase, visible)
    if not resolved:
        assert "resolved" not in visible, (where, visible)
    assert links.get(runbook) == "Runbook", (where, links)
    assert links.get(alert["generatorURL"]) == "Query", (where, links)
    assert "{{" not in text + html_body, (where, "an unrendered template")


def check_webhook(alert: dict[str, Any] | None, tier: Tier, sent: dict[str, Any]) -> None:
    assert alert is not None, f"no webhook notification for {tier.alertname}"
    assert alert["receiver"] == tier.receiver, alert
    assert alert["labels"] == sent["labels"], alert
    assert alert["annotations"] == sent["annotations"], alert
    assert alert["generatorURL"] == sent["generatorURL"], alert


def documented_mail() -> str:
    """The example mail in docs/alerting.md ('What the mails look like')."""
    text = (ROOT / "docs" / "alerting.md").read_text(encoding="utf-8")
    section = text.split("### What the mails look like", 1)[1]
    match = re.search(r"```text\n(.*?)```", section, re.S)
    assert match, "no example mail in docs/alerting.md"
    return match[1]


def _normalised(mail: str) -> list[str]:
    """Mail lines without what differs per run: times, the runbook base URL, Alertmanager's address."""
    out = []
    for raw in mail.replace("\r\n", "\n").strip().splitlines():
        line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<time>", raw)
        line = re.sub(r"^Runbook: \S+/", "Runbook: <base>/", line)
        out.append(re.sub(r"^Alertmanager: \S+$", "Alertmanager: <url>", line))
    return out


@pytest.mark.slow
def test_each_tier_is_mailed_to_its_route_with_subject_summary_runbook_and_resolved_notice(
    delivery: Delivery,
) -> None:
    alerts = {tier.severity: alert_for(tier) for tier in TIERS}
    now = datetime.now(UTC)
    firing = [{**a, "startsAt": _stamp(now), "endsAt": _stamp(now + timedelta(hours=1))}
              for a in alerts.values()]
    _post_alerts(delivery.alertmanager, firing)

    wait_until(lambda: all(delivery.mails(t.severity, resolved=False) for t in TIERS), timeout=30,
               what="a firing mail of every tier")
    wait_until(lambda: all(delivery.webhook_alert(t, "firing") for t in TIERS), timeout=30,
               what="a firing webhook notification of every tier")
    for tier in TIERS:
        first = delivery.mails(tier.severity, resolved=False)[0]
        check_mail(first, tier, alerts[tier.severity], since=now)
        check_webhook(delivery.webhook_alert(tier, "firing"), tier, alerts[tier.severity])
    page = delivery.mails("critical", resolved=False)[0].message
    assert _normalised(f"To: {page['To']}\nSubject: {page['Subject']}\n\n{parts(page)[0]}") == \
        _normalised(documented_mail()), "docs/alerting.md shows another mail than Alertmanager sends"

    resolved_at = datetime.now(UTC)
    _post_alerts(delivery.alertmanager, [{**a, "endsAt": _stamp(resolved_at)} for a in firing])

    # The webhook of each receiver sends resolved notifications (the loopback variant's), so its
    # arrival says that receiver's group has flushed the resolution, mail included.
    wait_until(lambda: all(delivery.webhook_alert(t, "resolved") for t in TIERS), timeout=30,
               what="a resolved webhook notification of every tier")
    notified = [t for t in TIERS if t.send_resolved]
    wait_until(lambda: all(delivery.mails(t.severity, resolved=True) for t in notified), timeout=15,
               what=f"a resolved mail of {[t.severity for t in notified]}")
    for tier in TIERS:
        check_webhook(delivery.webhook_alert(tier, "resolved"), tier, alerts[tier.severity])
        mails = delivery.mails(tier.severity, resolved=True)
        if tier.send_resolved:
            assert len(mails) == 1, [m.message["Subject"] for m in mails]
            check_mail(mails[0], tier, alerts[tier.severity], since=now, resolved_at=resolved_at)
        else:  # the info digest: send_resolved false, a resolved alert leaves the next digest
            assert mails == [], [m.message["Subject"] for m in mails]
    assert {t.severity for t in notified} == {"critical", "warning"}
    assert not delivery.webhook.bad_requests


def _coin_stale(coin: str) -> dict[str, Any]:
    """CoinDataStale for ``coin`` as Prometheus sends it (``$labels.coin`` and ``$value`` rendered)."""
    rule = _rule("CoinDataStale")
    annotations = {k: re.sub(r"\{\{ *\$labels\.coin *\}\}", coin, v) for k, v in rule["annotations"].items()}
    annotations = {k: re.sub(r"\{\{[^}]*\}\}", "6m 40s", v) for k, v in annotations.items()}
    return {"labels": {"alertname": "CoinDataStale", "job": "exporter", "coin": coin, **rule["labels"]},
            "annotations": annotations, "generatorURL": "http://prometheus.example.com/graph?g0.expr=stale"}


def _sections(text: str) -> dict[str, list[str]]:
    """Alert names per section (FIRING / RESOLVED) of a text part, as ``[TIER] name`` lines list them."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if m := re.fullmatch(r"(FIRING|RESOLVED): \d+", line):
            section = m[1]
        elif m := re.fullmatch(r"\[[A-Z]+\] (\w+)(?: - resolved)?", line):
            out.setdefault(section, []).append(m[1])
    return out


@pytest.mark.slow
def test_a_page_for_two_coins_is_one_mail_and_says_which_coin_resolved(delivery: Delivery) -> None:
    """Two coins stale: one grouped page; one coin recovers: the next mail lists it as resolved."""
    btc, eth = _coin_stale("BTC"), _coin_stale("ETH")
    now = datetime.now(UTC)
    firing = {coin: {**a, "startsAt": _stamp(now), "endsAt": _stamp(now + timedelta(hours=1))}
              for coin, a in (("BTC", btc), ("ETH", eth))}
    _post_alerts(delivery.alertmanager, list(firing.values()))

    def mail_with(predicate: Any) -> ReceivedMail | None:
        return next((m for m in delivery.smtp.mails if predicate(m)), None)

    grouped = wait_until(lambda: mail_with(lambda m: "FIRING: 2" in parts(m.message)[0]), timeout=30,
                         what="one mail for both coins")
    assert grouped.rcpt_tos == (TIERS[0].mailbox,)
    assert grouped.message["Subject"] == "[CRITICAL] 2 alerts: CoinDataStale, data_flow"
    text, html_body = parts(grouped.message)
    assert _sections(text) == {"FIRING": ["CoinDataStale", "CoinDataStale"]}, text
    visible, links = parse_html(html_body)
    for coin in ("BTC", "ETH"):
        assert f"No {coin} option data for more than 5m" in text.splitlines()
        assert f"No {coin} option data for more than 5m" in visible
        assert f"coin={coin}" in text
    assert links.get(btc["annotations"]["runbook_url"]) == "Runbook"

    _post_alerts(delivery.alertmanager, [{**firing["BTC"], "endsAt": _stamp(datetime.now(UTC))}])
    partial = wait_until(lambda: mail_with(lambda m: "RESOLVED: 1" in parts(m.message)[0]), timeout=30,
                         what="a mail with BTC resolved and ETH firing")
    assert partial.message["Subject"] == "[CRITICAL] 2 alerts: CoinDataStale, data_flow"
    text, html_body = parts(partial.message)
    assert _sections(text) == {"FIRING": ["CoinDataStale"], "RESOLVED": ["CoinDataStale"]}, text
    firing_part, resolved_part = text.split("RESOLVED: 1")
    assert "No ETH option data" in firing_part, text
    assert "No BTC option data" not in firing_part, text
    assert "No BTC option data" in resolved_part, text
    assert "No ETH option data" not in resolved_part, text
    visible, _links = parse_html(html_body)
    assert re.search(r"Firing: 1 .*No ETH option data.* Resolved: 1 .*No BTC option data", visible), visible

    _post_alerts(delivery.alertmanager, [{**firing["ETH"], "endsAt": _stamp(datetime.now(UTC))}])
    over = "[CRITICAL] RESOLVED:"
    last = wait_until(lambda: mail_with(lambda m: str(m.message["Subject"]).startswith(over)),
                      timeout=30, what="the mail saying the page is over")
    assert last.message["Subject"] == "[CRITICAL] RESOLVED: No ETH option data for more than 5m"
    assert _sections(parts(last.message)[0]) == {"RESOLVED": ["CoinDataStale"]}


# --- Slack, as docs/alerting.md offers it ---------------------------------------------------------------


def documented_slack_configs() -> list[dict[str, Any]]:
    """The ``slack_configs`` block of docs/alerting.md's Slack section."""
    text = (ROOT / "docs" / "alerting.md").read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(.*?)```", text.split("### Slack", 1)[1], re.S)
    assert match, "no slack_configs example in docs/alerting.md"
    doc = yaml.safe_load(textwrap.dedent(match[1]))
    configs: list[dict[str, Any]] = doc["slack_configs"]
    return configs


SLACK_RECEIVERS = ("oncall-pager", "team")


@pytest.fixture
def slack(tmp_path: Path) -> Iterator[tuple[WebhookReceiver, AlertmanagerServer]]:
    """Alertmanager on the loopback variant plus the documented Slack block on the paging receivers.

    The incoming-webhook URL is a secret file, as documented, naming a loopback receiver; each
    receiver's channel is its own name so a message shows which route sent it.
    """
    hook = WebhookReceiver()
    hook.start()
    secret = tmp_path / "alertmanager_slack_webhook_url"
    secret.write_text(hook.url + "\n", encoding="utf-8")
    path = write_local_alertmanager_config(tmp_path, timing_scale=TIMING_SCALE, always_active=True)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        if receiver["name"] in SLACK_RECEIVERS:
            receiver["slack_configs"] = [{**c, "api_url_file": str(secret), "channel": f"#{receiver['name']}"}
                                         for c in documented_slack_configs()]
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    done = amtool("check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    alertmanager = AlertmanagerServer(tmp_path, path)
    try:
        alertmanager.start()
        yield hook, alertmanager
    finally:
        alertmanager.stop()
        hook.stop()


@pytest.mark.slow
def test_the_documented_slack_receiver_posts_tier_summary_runbook_and_resolved_notice(
    slack: tuple[WebhookReceiver, AlertmanagerServer],
) -> None:
    hook, alertmanager = slack
    tiers = [t for t in TIERS if t.receiver in SLACK_RECEIVERS]
    assert {t.severity for t in tiers} == {"critical", "warning"}
    alerts = {t.severity: alert_for(t) for t in tiers}
    now = datetime.now(UTC)
    firing = [{**a, "startsAt": _stamp(now), "endsAt": _stamp(now + timedelta(hours=1))}
              for a in alerts.values()]
    _post_alerts(alertmanager, firing)

    def message(tier: Tier, resolved: bool) -> dict[str, Any] | None:
        """The first Slack attachment of ``tier`` (by its title), firing or resolved."""
        tag = f"[{tier.severity.upper()}]"
        for body in hook.notifications:
            for attachment in body.get("attachments", []):
                title = attachment.get("title", "")
                if title.startswith(tag) and ("RESOLVED:" in title) == resolved:
                    return {**attachment, "channel": body.get("channel")}
        return None

    wait_until(lambda: all(message(t, False) for t in tiers), timeout=30, what="a Slack message per tier")
    resolved_at = datetime.now(UTC)
    _post_alerts(alertmanager, [{**a, "endsAt": _stamp(resolved_at)} for a in firing])
    wait_until(lambda: all(message(t, True) for t in tiers), timeout=30,
               what="a resolved Slack message per tier")

    colour = {"critical": "danger", "warning": "warning"}
    for tier in tiers:
        annotations = alerts[tier.severity]["annotations"]
        tag = f"[{tier.severity.upper()}]"
        for resolved in (False, True):
            got = message(tier, resolved)
            assert got is not None
            where = (tier.alertname, resolved, got)
            assert got["channel"] == f"#{tier.receiver}", where
            title = f"{tag} {'RESOLVED: ' if resolved else ''}{annotations['summary']}"
            assert got["title"] == title, where
            assert got["fallback"] == title, where
            assert got["color"] == ("good" if resolved else colour[tier.severity]), where
            lines = got["text"].splitlines()
            head = f"*{tag} {tier.alertname}*"
            assert lines[0] == (f"{head} - resolved {_utc(resolved_at)}" if resolved else head), where
            assert lines[1:3] == [annotations["summary"], annotations["description"]], where
            assert lines[3] == (f"Value: {annotations['value']} · since {_utc(now)} · "
                                f"<{annotations['runbook_url']}|Runbook> · "
                                f"<{alerts[tier.severity]['generatorURL']}|Query>"), where


# --- the loopback mail variant, without servers ---------------------------------------------------------


def test_the_mail_variant_keeps_the_committed_mails_and_only_swaps_the_relay(tmp_path: Path) -> None:
    smarthost = f"{LOOPBACK}:2525"
    path = write_local_alertmanager_config(tmp_path, smarthost=smarthost, always_active=True)
    done = amtool("check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    local, source = yaml.safe_load(path.read_text(encoding="utf-8")), load_source()
    assert local["global"]["smtp_smarthost"] == smarthost
    assert local["global"]["smtp_require_tls"] is False
    assert local["global"]["smtp_from"] == source["global"]["smtp_from"]
    assert not any(k.startswith("smtp_auth") for k in local["global"]), local["global"]
    for receiver in source["receivers"]:
        mine = next(r for r in local["receivers"] if r["name"] == receiver["name"])
        assert mine.get("email_configs", []) == receiver.get("email_configs", []), receiver["name"]
    # Routing and inhibition as committed; only the working-hours limit is lifted.
    assert local["inhibit_rules"] == source["inhibit_rules"]
    assert "active_time_intervals" not in json.dumps(local["route"])
    assert "active_time_intervals" in json.dumps(source["route"])
    # Without a smarthost nothing is mailed, and the committed file is not what changes.
    assert "email_configs" not in render_local_alertmanager_config()
    assert "active_time_intervals" in render_local_alertmanager_config(smarthost=smarthost)
