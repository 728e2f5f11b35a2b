"""The /metrics exposition of a fixed input is pinned by tests/golden/metrics.prom.

A changed metric (name, help, labels, value) shows up as a diff of that file. After an
intended change, regenerate it with
``KSMTRACE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_exporter_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from prometheus_client import generate_latest

from ksmtrace import metrics_names
from ksmtrace.exporter import ExporterState, ProbeReport, build_registry
from ksmtrace.exporter.collectors import SnapshotBoard

from .exporter_input import golden_ticks

GOLDEN = Path(__file__).parent.parent / "golden" / "metrics.prom"


def golden_exposition() -> str:
    """The exposition after the golden ticks, with a frozen clock (durations and age 0)."""
    probe = ProbeReport("fixture", "page-table", "fixture headers", True, 0)
    state = ExporterState(top_n=2, probe=lambda: probe, clock=lambda: 100.0)
    board = SnapshotBoard()
    for t in golden_ticks():
        board.publish(state.fold(t))
    registry = build_registry(board, clock=lambda: 100.0, own_process=False)
    return generate_latest(registry).decode()


def test_metrics_match_the_golden_file() -> None:
    text = golden_exposition()
    if os.environ.get("KSMTRACE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: see the module docstring"


def test_promtool_accepts_the_golden_file() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup.sh (Debian package prometheus)"
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=GOLDEN.read_bytes(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_every_metric_in_the_name_table_is_in_the_golden_file() -> None:
    text = GOLDEN.read_text()
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    table = {s for m in metrics_names.ALL for s in m.samples}
    assert table == exposed, (sorted(table - exposed), sorted(exposed - table))
