"""The /metrics exposition of a fixed input is pinned by tests/golden/metrics.prom.

The input is the fake host of tests/fixtures/host-exporter plus a fixed event sequence
(tests/unit/exporter_input.py), recorded as a trace file and replayed, exactly the path of
``ksmtrace replay FILE --serve``. A changed metric (name, help, labels, value) shows up as
a diff of that file. After an
intended change, regenerate it with
``KSMTRACE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_exporter_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import generate_latest

from ksmtrace import metrics_names
from ksmtrace.events import Tick
from ksmtrace.exporter import ExporterState, ProbeReport, build_registry
from ksmtrace.exporter.collectors import SnapshotBoard
from ksmtrace.exporter.sources import trace_probe_report
from ksmtrace.replay import ReplaySource
from ksmtrace.tracefile.schema import TraceHeader
from ksmtrace.tracefile.writer import TraceWriter

from .exporter_input import golden_ticks

GOLDEN = Path(__file__).parent.parent / "golden" / "metrics.prom"


HEADER = TraceHeader(
    interval_s=1.0,
    probes={"page_walk": True, "header_origin": "fixture headers"},
    probe_stats={"scan_site_ready": 1, "merged_full": 0},
    sanitized=False,
)


def exposition(ticks: Iterable[Tick], probe: ProbeReport) -> str:
    """The exposition after ``ticks``, with a frozen clock (durations and age 0)."""
    state = ExporterState(top_n=2, probe=lambda: probe, clock=lambda: 100.0)
    board = SnapshotBoard()
    for t in ticks:
        board.publish(state.fold(t))
    return generate_latest(build_registry(board, clock=lambda: 100.0, own_process=False)).decode()


def recorded(directory: Path) -> Path:
    """The fixed input written as a trace file, as ``ksmtrace record`` would have."""
    path = directory / "golden.ksmtrace"
    writer = TraceWriter(path, HEADER)
    for t in golden_ticks():
        writer.write_tick(t)
    writer.close("test")
    return path


def golden_exposition(directory: Path) -> str:
    """/metrics after replaying the recorded fixed input."""
    with ReplaySource(recorded(directory), speed=0) as src:
        return exposition(src.ticks(0), trace_probe_report(src.header))


def test_metrics_match_the_golden_file(tmp_path: Path) -> None:
    text = golden_exposition(tmp_path)
    if os.environ.get("KSMTRACE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: see the module docstring"


def test_replayed_and_direct_ticks_give_the_same_metrics(tmp_path: Path) -> None:
    direct = exposition(golden_ticks(), trace_probe_report(HEADER))
    assert direct == golden_exposition(tmp_path)


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
