"""Grafana dashboards for the exporter's metrics, generated from code (the one source of truth).

``python -m ksmtrace.dashboards`` writes ``dashboards/*.json``; a test checks that the
committed files equal what this package generates and that every metric they query is one
the exporter exposes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ksmtrace.dashboards.grafana import JSON
from ksmtrace.dashboards.host import host_dashboard
from ksmtrace.dashboards.processes import processes_dashboard

#: File name in dashboards/ -> the function that builds it.
DASHBOARDS: dict[str, Callable[[], JSON]] = {
    "ksmtrace-host.json": host_dashboard,
    "ksmtrace-processes.json": processes_dashboard,
}


def render(board: JSON) -> str:
    """The JSON text of a dashboard as committed (2-space indent, trailing newline)."""
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def panels(board: JSON) -> Iterator[JSON]:
    """Every panel of a dashboard that shows data (rows left out)."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(board: JSON) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of every panel."""
    for panel in panels(board):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (``$job``, ``${job}``, ``$__rate_interval``) by values.

    Raises:
        KeyError: the expression uses a variable ``values`` does not give.
    """
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def write_all(directory: Path) -> list[Path]:
    """Write every dashboard into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in DASHBOARDS.items():
        path = directory / name
        path.write_text(render(build()))
        written.append(path)
    return written
