"""The seed's success metrics as SLOs: error ratios, burn rates, budgets and burn-rate alerts.

Multi-window, multi-burn-rate alerting as in Google's SRE workbook (chapter "Alerting on
SLOs"): a burn rate of 1 spends the error budget in exactly the SLO period; the page fires
when both a long and a short window burn faster than a factor (the long window proves it
matters, the short one that it is still happening, so the alert resolves soon after the
problem does). Windows, factors and objectives are in prometheus/thresholds.yml.

Three SLOs are ratios of bad to all (requests answered 5xx; time without a fresh ingest
heartbeat; coin-time with data older than the freshness bound). The reconnect target
"< 20/h" is a rate budget instead: its burn rate is the observed rate divided by 20/h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from scripts.promconfig.durations import format_duration, parse_duration
from scripts.promconfig.model import DEFAULT_RUNBOOK_BASE, AlertTemplate, RecordingRule, RuleGroup, Severity
from scripts.promconfig.placeholders import promql_number
from scripts.promconfig.recording import api_client_error_ratio
from scripts.promconfig.thresholds import AlertParams, BurnWindow, SloSettings, ThresholdSet

ERROR_RATIO: Final = "slo:bybit_sli_error:ratio_rate"
BURN_RATE: Final = "slo:bybit_error_budget:burn_rate"
BUDGET_REMAINING: Final = "slo:bybit_error_budget:remaining"
FRESH_RATIO: Final = "job:bybit_data_fresh:ratio"


@dataclass(frozen=True, slots=True)
class Slo:
    """One objective: how its error ratio (or burn rate) over a window is computed."""

    key: str
    alert_prefix: str
    condition: str
    title: str
    #: PromQL for the share of bad events over a window; None for the rate budget.
    error_ratio: Callable[[str], str] | None

    def objective_text(self, settings: SloSettings) -> str:
        if self.key == "ws_reconnects":
            return f"fewer than {promql_number(settings.ws_reconnects_per_hour)} reconnections/h"
        target = promql_number(round(settings.objectives[self.key] * 100, 6))
        return f"{target}% {OBJECTIVE_WORDS[self.key]} over {settings.period}"

    def burn(self, window: str, settings: SloSettings) -> str:
        """PromQL for the burn rate over ``window``."""
        if self.error_ratio is None:
            per_hour = promql_number(settings.ws_reconnects_per_hour)
            return f"sum by (job) (rate(bybit_ws_reconnects_total[{window}])) * 3600 / {per_hour}"
        budget = promql_number(round(1 - settings.objectives[self.key], 12))
        return f'{ERROR_RATIO}{window}{{slo="{self.key}"}} / {budget}'


OBJECTIVE_WORDS: Final = {
    "api_availability": "of API requests not answered 5xx",
    "ingest_uptime": "of the time with a live ingest",
    "data_freshness": "of coin-time with data fresher than the bound",
}

SLOS: Final[tuple[Slo, ...]] = (
    Slo("api_availability", "ApiAvailability", "api_availability", "API availability",
        api_client_error_ratio),
    Slo("ingest_uptime", "IngestUptime", "ingest", "Ingest uptime",
        lambda w: f"1 - avg by (job) (avg_over_time(job:bybit_ingest_up:max[{w}]))"),
    Slo("data_freshness", "DataFreshness", "data_flow", "Data freshness",
        lambda w: f"1 - avg_over_time({FRESH_RATIO}[{w}])"),
    Slo("ws_reconnects", "WebSocketReconnects", "ws_reconnects", "WebSocket reconnect budget", None),
)


def recording_group(thresholds: ThresholdSet) -> RuleGroup:
    """Error ratios and burn rates over every window, then the budget left over the period."""
    settings = thresholds.slo
    fresh = promql_number(settings.data_freshness_seconds)
    rules = [RecordingRule(FRESH_RATIO, f"avg by (job) (bybit_data_staleness_seconds < bool {fresh})")]
    for slo in SLOS:
        labels = {"slo": slo.key}
        for window in settings.windows:
            if slo.error_ratio is not None:
                rules.append(RecordingRule(f"{ERROR_RATIO}{window}", slo.error_ratio(window), labels))
            rules.append(RecordingRule(f"{BURN_RATE}{window}", slo.burn(window, settings), labels))
    # Budget left = 1 - the average burn rate over the period (the shortest window, recorded
    # at every evaluation, is the finest sample of it). Until a full period of history exists
    # this extrapolates the history there is.
    rules.append(RecordingRule(
        BUDGET_REMAINING, f"1 - avg_over_time({BURN_RATE}{settings.windows[0]}[{settings.period}])"))
    return RuleGroup("bybit.slo.recording", tuple(r.render() for r in rules))


def _condition(slo: Slo, burn: BurnWindow) -> str:
    factor = promql_number(burn.factor)
    return (f'  {BURN_RATE}{burn.long}{{slo="{slo.key}"}} > {factor}\n'
            "  and\n"
            f'  {BURN_RATE}{burn.short}{{slo="{slo.key}"}} > {factor}')


def _policy_text(burns: tuple[BurnWindow, ...]) -> str:
    return ", or ".join(f"{promql_number(b.factor)}x over {b.long} and {b.short}" for b in burns)


def burn_alert(slo: Slo, severity: Severity, settings: SloSettings) -> AlertTemplate:
    """The page (critical) or ticket (warning) alert of one SLO."""
    burns = settings.page if severity == "critical" else settings.ticket
    speed = "Fast" if severity == "critical" else "Slow"
    expr = "\nor\n".join(f"(\n{_condition(slo, b)}\n)" for b in burns)
    fastest = max(b.factor for b in burns)
    lasts = format_duration(round(parse_duration(settings.period) / fastest / 60) * 60)
    return AlertTemplate(
        name=f"{slo.alert_prefix}BudgetBurn{speed}", severity=severity, condition=slo.condition,
        expr=expr,
        summary=f"{slo.title}: error budget burning {'fast' if severity == 'critical' else 'steadily'}",
        description=(
            f"The {slo.title} SLO ({slo.objective_text(settings)}) burns its error budget at "
            "{{ $value | humanize }}x the sustainable rate "
            f"({'page' if severity == 'critical' else 'ticket'} above {_policy_text(burns)}). "
            f"At {promql_number(fastest)}x a {settings.period} budget is gone in {lasts}."),
        value="burn", extra_labels={"slo": slo.key})


def burn_alerts(thresholds: ThresholdSet) -> tuple[tuple[AlertTemplate, AlertParams], ...]:
    """Every SLO's two alerts, each with the ``for:`` the policy gives its severity."""
    settings = thresholds.slo
    policies: tuple[tuple[Severity, str], ...] = (("critical", settings.page_for),
                                                  ("warning", settings.ticket_for))
    out = []
    for slo in SLOS:
        for severity, duration in policies:
            template = burn_alert(slo, severity, settings)
            out.append((template, AlertParams(template.name, {"for": duration})))
    return tuple(out)


def alert_group(thresholds: ThresholdSet, *, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> RuleGroup:
    return RuleGroup("bybit.slo.alerts",
                     tuple(t.render(p, runbook_base=runbook_base) for t, p in burn_alerts(thresholds)))
