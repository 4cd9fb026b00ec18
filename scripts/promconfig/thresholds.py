"""prometheus/thresholds.yml as typed values: the one place where alert numbers are tuned.

The rules generator reads every threshold and ``for:`` duration from here; nothing else
spells a number an alert compares against. Tests and the local stack derive variants from
the same file instead of copying it: :meth:`ThresholdSet.with_overrides` changes single
values (``NoDataFlowing.threshold=10``) and :meth:`ThresholdSet.scaled` shortens every
``for:`` duration, so an end-to-end test waits seconds, not minutes, for the real rules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from scripts.promconfig.durations import format_duration, parse_duration

ROOT: Final = Path(__file__).resolve().parent.parent.parent
THRESHOLDS_FILE: Final = ROOT / "prometheus" / "thresholds.yml"

#: Parameters holding a duration rather than a number.
DURATION_KEYS: Final = frozenset({"for", "horizon"})

Value = float | str


class ThresholdError(ValueError):
    """prometheus/thresholds.yml (or an override) is malformed: the message names the key."""


def _is_duration_key(key: str) -> bool:
    return key in DURATION_KEYS or key.endswith("_for")


def _number(where: str, key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ThresholdError(f"{where}.{key}: expected a number, got {raw!r}")
    try:
        number = float(raw)
    except ValueError as exc:
        raise ThresholdError(f"{where}.{key}: expected a number, got {raw!r}") from exc
    if not math.isfinite(number):
        raise ThresholdError(f"{where}.{key}: must be finite, got {raw!r}")
    return number


def _duration(where: str, key: str, raw: object) -> str:
    """``raw`` as a normalised Prometheus duration (``300s`` becomes ``5m``)."""
    try:
        return format_duration(parse_duration(str(raw)))
    except ValueError as exc:
        raise ThresholdError(f"{where}.{key}: {exc}") from exc


def _checked(where: str, key: str, raw: object) -> Value:
    """``raw`` as a duration for a duration key, else as a number."""
    return _duration(where, key, raw) if _is_duration_key(key) else _number(where, key, raw)


@dataclass(frozen=True, slots=True)
class AlertParams:
    """The tunable values of one alert, e.g. ``{"threshold": 0.9, "for": "5m"}``."""

    alert: str
    values: Mapping[str, Value]

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, str):
            raise ThresholdError(f"{self.alert}.{key} is a duration, not a number")
        return value

    def duration(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise ThresholdError(f"{self.alert}.{key} is a number, not a duration")
        return value

    def _get(self, key: str) -> Value:
        try:
            return self.values[key]
        except KeyError:
            raise ThresholdError(f"prometheus/thresholds.yml: alerts.{self.alert} has no {key!r}") from None


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One multi-window condition: burn rate above ``factor`` over both ``long`` and ``short``."""

    factor: float
    long: str
    short: str


@dataclass(frozen=True, slots=True)
class SloSettings:
    """Objectives and burn-rate policy of the seed's success metrics."""

    period: str
    objectives: Mapping[str, float]
    data_freshness_seconds: float
    ws_reconnects_per_hour: float
    page: tuple[BurnWindow, ...]
    ticket: tuple[BurnWindow, ...]
    page_for: str
    ticket_for: str

    @property
    def windows(self) -> tuple[str, ...]:
        """Every window a burn-rate rule reads, shortest first (5m ... 3d for the workbook's policy)."""
        names = {w for b in (*self.page, *self.ticket) for w in (b.long, b.short)}
        return tuple(sorted(names, key=parse_duration))


@dataclass(frozen=True, slots=True)
class ThresholdSet:
    """Everything in prometheus/thresholds.yml."""

    alerts: Mapping[str, AlertParams]
    slo: SloSettings

    def alert(self, name: str) -> AlertParams:
        try:
            return self.alerts[name]
        except KeyError:
            raise ThresholdError(f"prometheus/thresholds.yml has no entry for alert {name}") from None

    def with_overrides(self, overrides: Mapping[str, object]) -> ThresholdSet:
        """A copy with ``{"Alert.key": value}`` replaced; unknown alerts or keys are errors."""
        alerts = {name: dict(p.values) for name, p in self.alerts.items()}
        for dotted, raw in overrides.items():
            name, _, key = dotted.partition(".")
            if name not in alerts or key not in alerts[name]:
                raise ThresholdError(f"override {dotted!r}: no such alert parameter in thresholds.yml")
            alerts[name][key] = _checked(f"alerts.{name}", key, raw)
        return dataclasses.replace(
            self, alerts={n: AlertParams(n, v) for n, v in alerts.items()})

    def scaled(self, factor: float) -> ThresholdSet:
        """A copy with every ``for:`` duration (alerts and SLO pages/tickets) multiplied by ``factor``.

        Windows and thresholds stay as they are: they define what is measured, while ``for:``
        only says how long it must last, which is what a test needs to shorten.
        """
        if factor <= 0:
            raise ThresholdError(f"duration scale must be positive, got {factor}")

        def scale(duration: str) -> str:
            return format_duration(parse_duration(duration) * factor)

        alerts = {}
        for name, params in self.alerts.items():
            values = dict(params.values)
            if "for" in values:
                values["for"] = scale(params.duration("for"))
            alerts[name] = AlertParams(name, values)
        slo = dataclasses.replace(self.slo, page_for=scale(self.slo.page_for),
                                  ticket_for=scale(self.slo.ticket_for))
        return ThresholdSet(alerts=alerts, slo=slo)


def _mapping(where: str, raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ThresholdError(f"{where}: expected a mapping, got {type(raw).__name__}")
    return raw


def _burn_windows(where: str, raw: object) -> tuple[BurnWindow, ...]:
    if not isinstance(raw, list) or not raw:
        raise ThresholdError(f"{where}: expected a non-empty list of {{factor, long, short}}")
    out = []
    for i, item in enumerate(raw):
        entry = _mapping(f"{where}[{i}]", item)
        if set(entry) != {"factor", "long", "short"}:
            raise ThresholdError(f"{where}[{i}]: keys must be factor, long, short; got {sorted(entry)}")
        factor = _number(f"{where}[{i}]", "factor", entry["factor"])
        long_ = _duration(f"{where}[{i}]", "long", entry["long"])
        short = _duration(f"{where}[{i}]", "short", entry["short"])
        if parse_duration(short) >= parse_duration(long_):
            raise ThresholdError(f"{where}[{i}]: short window {short} must be shorter than {long_}")
        out.append(BurnWindow(factor, long_, short))
    return tuple(out)


def _slo(raw: object) -> SloSettings:
    slo = _mapping("slo", raw)
    expected = {"period", "objectives", "data_freshness_seconds", "ws_reconnects_per_hour", "page",
                "ticket", "page_for", "ticket_for"}
    if set(slo) != expected:
        raise ThresholdError(f"slo: keys must be {sorted(expected)}; got {sorted(slo)}")
    objectives = {}
    for name, value in _mapping("slo.objectives", slo["objectives"]).items():
        number = _number("slo.objectives", str(name), value)
        if not 0 < number < 1:
            raise ThresholdError(f"slo.objectives.{name}: an objective is a ratio in (0, 1), got {value}")
        objectives[str(name)] = number
    return SloSettings(
        period=_duration("slo", "period", slo["period"]), objectives=objectives,
        data_freshness_seconds=_number("slo", "data_freshness_seconds", slo["data_freshness_seconds"]),
        ws_reconnects_per_hour=_number("slo", "ws_reconnects_per_hour", slo["ws_reconnects_per_hour"]),
        page=_burn_windows("slo.page", slo["page"]), ticket=_burn_windows("slo.ticket", slo["ticket"]),
        page_for=_duration("slo", "page_for", slo["page_for"]),
        ticket_for=_duration("slo", "ticket_for", slo["ticket_for"]),
    )


def parse_thresholds(doc: object) -> ThresholdSet:
    """Validate a loaded thresholds document (see prometheus/thresholds.yml for the layout)."""
    top = _mapping("thresholds.yml", doc)
    if set(top) != {"alerts", "slo"}:
        raise ThresholdError(f"thresholds.yml: top-level keys must be alerts and slo; got {sorted(top)}")
    alerts = {}
    for name, raw in _mapping("alerts", top["alerts"]).items():
        params = _mapping(f"alerts.{name}", raw)
        if "for" not in params:
            raise ThresholdError(f"alerts.{name}: every alert needs a `for` duration (0s for none)")
        alerts[str(name)] = AlertParams(
            str(name), {str(k): _checked(f"alerts.{name}", str(k), v) for k, v in params.items()})
    return ThresholdSet(alerts=alerts, slo=_slo(top["slo"]))


def load_thresholds(path: Path = THRESHOLDS_FILE) -> ThresholdSet:
    """Read and validate prometheus/thresholds.yml (or ``path``)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ThresholdError(f"{path}: not valid YAML: {exc}") from exc
    return parse_thresholds(doc)
