"""The Grafana dashboards: generated from ksmtrace.dashboards, linted, and in line with /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ksmtrace.dashboards import DASHBOARDS, panels, queries, render, substitute
from ksmtrace.dashboards.grafana import JSON

from .test_exporter_golden import FIXTURE_GOLDEN, GOLDEN, exposed_names

DIR = Path(__file__).parent.parent.parent / "dashboards"
BOARDS = {name: build() for name, build in DASHBOARDS.items()}
SELECTOR = re.compile(r"\b(ksmtrace_\w+)\{([^}]*)\}")


def test_committed_dashboards_are_the_generated_ones() -> None:
    committed = {p.name for p in DIR.glob("*.json")}
    assert committed == set(DASHBOARDS), "run: .venv/bin/python -m ksmtrace.dashboards"
    for name, board in BOARDS.items():
        assert (DIR / name).read_text() == render(board), (
            f"dashboards/{name} differs from ksmtrace.dashboards: regenerate it with "
            "'.venv/bin/python -m ksmtrace.dashboards' (never edit the JSON by hand)"
        )


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_queried_metric_is_exposed_by_the_exporter(name: str) -> None:
    # in the exposition of the recorded sample trace and of the fixture input alike
    exposed = exposed_names(GOLDEN) & exposed_names(FIXTURE_GOLDEN)
    for title, expr in queries(BOARDS[name]):
        used = SELECTOR.findall(expr)
        assert used, f"{title}: no ksmtrace selector in {expr}"
        for metric, _ in used:
            assert metric in exposed, f"{title}: {metric} is not in the exporter's output"
        bare = re.findall(r"\bksmtrace_\w+(?![\w{])", expr)
        assert not bare, f"{title}: {bare} without label matchers in {expr}"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_query_is_filtered_by_job_and_instance(name: str) -> None:
    for title, expr in queries(BOARDS[name]):
        for metric, matchers in SELECTOR.findall(expr):
            assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (
                f"{title}: {metric} ignores the job/instance variables"
            )


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_rates_use_the_rate_interval(name: str) -> None:
    for title, expr in queries(BOARDS[name]):
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", f"{title}: range [{window}] in {expr}"
        assert "irate(" not in expr and "increase(" not in expr


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_panel_has_unit_description_and_the_templated_datasource(name: str) -> None:
    for panel in panels(BOARDS[name]):
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert len(panel.get("description", "")) > 20, f"{panel['title']}: no description"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_variables_are_defined_and_used(name: str) -> None:
    board = BOARDS[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    builtins = {"__rate_interval"}
    for title, expr in queries(board):
        for var in re.findall(r"\$\{?(\w+)", expr):
            assert var in variables or var in builtins, f"{title}: ${var} is not defined"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_layout_is_importable(name: str) -> None:
    board = json.loads(render(BOARDS[name]))
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
    assert board["uid"].startswith("ksmtrace-") and board["schemaVersion"] >= 36


def test_substitute_replaces_every_variable_form() -> None:
    expr = 'rate(x{job=~"$job",instance=~"${instance}"}[$__rate_interval])'
    values = {"job": "a", "instance": "b", "__rate_interval": "30s"}
    assert substitute(expr, values) == 'rate(x{job=~"a",instance=~"b"}[30s])'
    with pytest.raises(KeyError):
        substitute("$nope", values)


def test_host_dashboard_has_the_overview_panels() -> None:
    titles = {p["title"] for p in panels(BOARDS["ksmtrace-host.json"])}
    for wanted in ("Memory saved by KSM", "ksmd CPU", "Scan rate", "Full-scan time", "Switches"):
        assert wanted in titles
    assert any(t.startswith("Efficiency") for t in titles)
    assert any(t.startswith("Churn") for t in titles)


def test_drilldown_has_a_lifetime_heatmap() -> None:
    heatmaps: list[JSON] = [
        p for p in panels(BOARDS["ksmtrace-processes.json"]) if p["type"] == "heatmap"
    ]
    assert len(heatmaps) == 1
    assert heatmaps[0]["targets"][0]["format"] == "heatmap"
    assert "_bucket{" in heatmaps[0]["targets"][0]["expr"]
