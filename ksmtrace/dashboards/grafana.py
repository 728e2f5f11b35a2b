"""Building blocks of Grafana dashboard JSON: selectors, variables, panels, layout.

Every query selects through :func:`sel`, so each one is filtered by the dashboard's ``job``
and ``instance`` variables; every panel gets a unit and a description; rates use
``$__rate_interval``. These are the rules of grafana/dashboard-linter, kept by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ksmtrace.metrics_names import BY_SAMPLE, Metric

JSON = dict[str, Any]

#: The datasource every panel and variable uses: the dashboard's datasource variable.
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}

#: Matchers every query carries.
BASE_MATCHERS = ('job=~"$job"', 'instance=~"$instance"')

PANEL_WIDTH = 12
PANEL_HEIGHT = 8


def sel(metric: Metric | str, *matchers: str, extra: tuple[str, ...] = ()) -> str:
    """A selector with the job and instance matchers (and ``matchers``/``extra``).

    Args:
        metric: a metric of :mod:`ksmtrace.metrics_names`, or one of its sample names
            (``..._bucket``, ``..._sum``, ``..._count``).
        matchers: more label matchers, e.g. ``'vm=~"$vm"'``.
        extra: matchers a dashboard adds to every per-process query.

    Raises:
        KeyError: the name is not one the exporter exposes.
    """
    name = metric.name if isinstance(metric, Metric) else metric
    BY_SAMPLE[name]  # noqa: B018 - fail early on names the exporter does not expose
    return f"{name}{{{','.join((*BASE_MATCHERS, *extra, *matchers))}}}"


def rate(selector: str) -> str:
    """``rate(selector[$__rate_interval])``."""
    return f"rate({selector}[$__rate_interval])"


@dataclass(frozen=True, slots=True)
class Query:
    """One panel query."""

    expr: str
    legend: str = ""
    heatmap: bool = False


@dataclass(frozen=True, slots=True)
class Panel:
    """One panel before layout.

    Attributes:
        title: panel title.
        description: what it shows and how to read it (Grafana shows it as a tooltip).
        unit: Grafana unit id ("bytes", "s", "percentunit", "suffix: pages/s"...).
        queries: its queries.
        kind: "timeseries", "stat" or "heatmap".
        width: grid columns (of 24).
        stack: stack the series (parts of a whole).
        min_zero: start the y axis at 0.
    """

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    width: int = PANEL_WIDTH
    stack: bool = False
    min_zero: bool = True


@dataclass(slots=True)
class Layout:
    """Places panels and rows left to right, top to bottom."""

    panels: list[JSON] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        """Start a new row with a header."""
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._next_id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel: Panel) -> None:
        """Place a panel after the previous one (wrapping at 24 columns)."""
        height = PANEL_HEIGHT if panel.kind != "stat" else 4
        if self.x + panel.width > 24:
            self._newline()
        pos = {"h": height, "w": panel.width, "x": self.x, "y": self.y}
        self.panels.append(panel_json(panel, self._next_id(), pos))
        self.x += panel.width
        self.row_height = max(self.row_height, height)


def _targets(panel: Panel) -> list[JSON]:
    out = []
    for i, q in enumerate(panel.queries):
        t: JSON = {
            "datasource": DATASOURCE,
            "refId": chr(ord("A") + i),
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": True,
        }
        if q.heatmap:
            t["format"] = "heatmap"
        out.append(t)
    return out


def panel_json(panel: Panel, panel_id: int, pos: JSON) -> JSON:
    """The Grafana JSON of one panel."""
    base: JSON = {
        "type": panel.kind,
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "targets": _targets(panel),
    }
    defaults: JSON = {"unit": panel.unit}
    if panel.kind == "heatmap":
        base["options"] = {
            "calculate": False,
            "yAxis": {"unit": panel.unit, "axisLabel": "lifetime"},
            "cellValues": {"unit": "short"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "tooltip": {"mode": "single", "yHistogram": True},
        }
    elif panel.kind == "stat":
        base["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    else:
        custom: JSON = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}
        if panel.stack:
            custom["stacking"] = {"mode": "normal", "group": "A"}
            custom["fillOpacity"] = 40
        defaults["custom"] = custom
        if panel.min_zero:
            defaults["min"] = 0
        base["options"] = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    base["fieldConfig"] = {"defaults": defaults, "overrides": []}
    return base


def datasource_variable() -> JSON:
    """The templated Prometheus datasource."""
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, query: str, *, all_value: str | None = ".*") -> JSON:
    """A multi-value variable filled from ``label_values(...)``, with "All" = ``all_value``."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "current": {},
        "hide": 0,
        "refresh": 2,
        "includeAll": all_value is not None,
        "allValue": all_value,
        "multi": True,
        "sort": 1,
        "regex": "",
        "options": [],
    }


def standard_variables() -> list[JSON]:
    """datasource, job and instance: every ksmtrace dashboard has them."""
    return [
        datasource_variable(),
        query_variable("job", "Job", "label_values(ksmtrace_build_info, job)"),
        query_variable(
            "instance", "Instance", 'label_values(ksmtrace_build_info{job=~"$job"}, instance)'
        ),
    ]


def dashboard(
    uid: str, title: str, description: str, variables: list[JSON], layout: Layout
) -> JSON:
    """A whole dashboard, importable into Grafana (Dashboards > New > Import)."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ksmtrace", "ksm"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "ksmtrace",
                "tags": ["ksmtrace"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "panels": layout.panels,
    }
