"""What every dashboard is built from: the data source, units, alert-tier colours and one factory per
kind of panel, on top of Grafana's typed builders (``grafana-foundation-sdk``).

A factory returns the SDK's own builder, configured the way every panel of that kind looks here
(legend, tooltip, line style, stat colouring, ...); a dashboard chains the rest (``.unit()``,
``.span()``, ``.description()``) with the builder's typed methods, so a misspelt option is a mypy
error rather than a key Grafana silently ignores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, TypeAlias, TypeVar

from grafana_foundation_sdk.builders import bargauge, gauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from scripts.healthcheck.tiers import Thresholds

DATASOURCE: Final = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG: Final = "bybit-options-tracker"
GRID_WIDTH: Final = 24

# The alert tiers' colours: info blue, warning orange, critical red.
TIER_COLOURS: Final = {"ok": "green", "info": "blue", "warning": "orange", "critical": "red"}


class Unit(StrEnum):
    """Grafana's unit ids: one per kind of quantity, used everywhere."""

    SECONDS = "s"
    BYTES = "bytes"
    PER_SECOND = "ops"
    RATIO = "percentunit"
    COUNT = "short"
    PERCENT = "percent"
    TIMESTAMP = "dateTimeFromNow"


def q(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    """A PromQL query (whitespace folded, so expressions can be written over several lines)."""
    query = (prometheus.Dataquery().expr(" ".join(expr.split())).legend_format(legend or "__auto")
             .datasource(DATASOURCE))
    return query.instant() if instant else query.range()


def per_second(counter: str, by: str = "") -> str:
    """Per-second rate of a counter summed over series (``by`` keeps one label)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({counter}[$__rate_interval]))"


# --- thresholds ------------------------------------------------------------------------------------


def _steps(*steps: tuple[str, float | None]) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=value, color=TIER_COLOURS[tier]) for tier, value in steps]))


def levels(tiers: Thresholds | None = None, /, **bounds: float) -> db.ThresholdsConfig:
    """The alert tiers where higher is worse: green, then blue / orange / red above each tier's bound.

    Either the tiers' own :class:`Thresholds` or bounds by name: ``levels(warning=0.5)``.
    """
    t = tiers or Thresholds(**bounds)
    named = (("info", t.info), ("warning", t.warning), ("critical", t.critical))
    return _steps(("ok", None), *((name, bound) for name, bound in named if bound is not None))


def floor(warning: float, target: float) -> db.ThresholdsConfig:
    """Where higher is better (availability, budget left, health): red below ``warning``,
    orange from ``warning``, green from ``target``."""
    return _steps(("critical", None), ("warning", warning), ("ok", target))


def mappings(*values: tuple[str, str, str]) -> list[dm.ValueMap | dm.RangeMap | dm.RegexMap |
                                                      dm.SpecialValueMap]:
    """Value mappings, one per (value, text, colour)."""
    return [dm.ValueMap(options={value: dm.ValueMappingResult(text=text, color=colour, index=i)
                                 for i, (value, text, colour) in enumerate(values)})]


UP_MAPPINGS: Final = (("0", "DOWN", "red"), ("1", "UP", "green"))


# --- panels ------------------------------------------------------------------------------------------

AnyPanel = TypeVar("AnyPanel", timeseries.Panel, stat.Panel, gauge.Panel, bargauge.Panel, table.Panel)
SingleValue = TypeVar("SingleValue", stat.Panel, gauge.Panel, bargauge.Panel)


def _base(panel: AnyPanel, title: str, queries: Sequence[prometheus.Dataquery],
             colour: dm.FieldColorModeId) -> AnyPanel:
    """What every panel has: title, data source, queries A, B, ..., 6x7 cells, green thresholds."""
    for i, query in enumerate(queries):
        panel.with_target(query.ref_id(chr(ord("A") + i)))
    return (panel.title(title).datasource(DATASOURCE).span(6).height(7).unit(Unit.COUNT).thresholds(levels())
            .color_scheme(db.FieldColor().mode(colour)).overrides([]))


def graph(title: str, *queries: prometheus.Dataquery, alert: db.ThresholdsConfig | None = None,
          stack: bool = False) -> timeseries.Panel:
    """A time series; ``alert`` levels are drawn as dashed lines, so the alert's level shows on the graph."""
    panel = (_base(timeseries.Panel(), title, queries, dm.FieldColorModeId.PALETTE_CLASSIC)
             .draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
             .show_points(cm.VisibilityMode.NEVER).span_nulls(False)
             .stacking(cb.StackingConfig().group("A")
                       .mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE))
             .thresholds_style(cb.GraphThresholdsStyleConfig().mode(
                 cm.GraphThresholdsStyleMode.DASHED if alert else cm.GraphThresholdsStyleMode.OFF))
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
    return panel.thresholds(alert) if alert else panel


def _last_value(panel: SingleValue) -> SingleValue:
    return (panel.reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
            .orientation(cm.VizOrientation.AUTO))


def single(title: str, *queries: prometheus.Dataquery) -> stat.Panel:
    """The last value, its background coloured by the thresholds, a sparkline behind it."""
    return (_last_value(_base(stat.Panel(), title, queries, dm.FieldColorModeId.THRESHOLDS))
            .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.AREA)
            .justify_mode(cm.BigValueJustifyMode.AUTO).text_mode(cm.BigValueTextMode.AUTO))


def dial(title: str, *queries: prometheus.Dataquery) -> gauge.Panel:
    """A gauge with the threshold markers on its rim."""
    return (_last_value(_base(gauge.Panel(), title, queries, dm.FieldColorModeId.THRESHOLDS))
            .show_threshold_markers(True).show_threshold_labels(False))


def bars(title: str, *queries: prometheus.Dataquery) -> bargauge.Panel:
    """One bar per query."""
    return _last_value(_base(bargauge.Panel(), title, queries, dm.FieldColorModeId.THRESHOLDS))


def table_rows(title: str, *queries: prometheus.Dataquery, hide: Sequence[str] = ()) -> table.Panel:
    """The series of instant queries as table rows, one column per label but ``hide``."""
    for query in queries:
        query.instant().format(pm.PromQueryFormat.TABLE)
    return (_base(table.Panel(), title, queries, dm.FieldColorModeId.THRESHOLDS)
            .show_header(True).cell_height(cm.TableCellHeight.SM)
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": dict.fromkeys(hide, True)})))


# --- dashboards --------------------------------------------------------------------------------------

Row: TypeAlias = tuple[str, Sequence[Builder[dm.Panel]]]


def row(title: str, *panels: Builder[dm.Panel]) -> Row:
    return title, panels


def dashboard(uid: str, title: str, description: str, *rows: Row, time_from: str = "now-6h",
              refresh: str = "30s") -> dm.Dashboard:
    """A read-only UTC dashboard with the data source picker, the built-in annotations, a menu of
    the tracker's other dashboards, and its rows laid out on the 24-column grid in order
    (numbered 1, 2, ... from the top)."""
    board = (db.Dashboard(title).uid(uid).description(description).tags([TAG]).timezone("utc").readonly()
             .tooltip(dm.DashboardCursorSync.CROSSHAIR).time(time_from, "now").refresh(refresh).version(1)
             .annotation(db.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
                         .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                         .icon_color("rgba(0, 211, 255, 1)").type("dashboard"))
             .link(db.DashboardLink("Tracker dashboards").type(dm.DashboardLinkType.DASHBOARDS).tags([TAG])
                   .as_dropdown(True).include_vars(True).keep_time(True))
             .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus")
                            .hide(dm.VariableHide.DONT_HIDE).regex("")))
    for row_title, panels in rows:
        board.with_row(db.Row(row_title))
        for panel in panels:
            board.with_panel(panel)
    model = board.build()
    _lay_out(model.panels or [])
    return model


def _lay_out(panels: Sequence[dm.Panel | dm.RowPanel]) -> None:
    """Each row on a line of its own, its panels left to right, wrapping before a panel that would
    cross the grid's right edge (the SDK's ``with_panel`` wraps only after it, letting it overflow);
    ids 1, 2, ... from the top."""
    x = y = line = 0  # y: top of the current line, line: its height so far
    for number, panel in enumerate(panels, start=1):
        panel.id_val = number
        pos = panel.grid_pos = panel.grid_pos or dm.GridPos()
        if isinstance(panel, dm.RowPanel):
            pos.x, pos.y = 0, y + line
            x, y, line = 0, pos.y + 1, 0
            continue
        if x + pos.w > GRID_WIDTH:
            x, y, line = 0, y + line, 0
        pos.x, pos.y = x, y
        x, line = x + pos.w, max(line, pos.h)


def to_json(model: dm.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    doc: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return doc
