"""The /metrics exposition of fixed inputs, pinned by golden files in tests/golden/.

- ``metrics.prom``: the sample trace bundled with ksmtrace (real QEMU guests and workers,
  recorded by scripts/record-sample.py), replayed with ``--top 5``.
- ``metrics-fixture.prom``: the fake host of tests/fixtures/host-exporter plus a fixed
  event sequence (tests/unit/exporter_input.py), written as a trace and replayed with
  ``--top 2``; it reaches every metric of the name table (VMs, a container, zero pages,
  every unmerge kind label, lost events, scan-site state).

Both go through the path of ``ksmtrace replay FILE --serve`` with a frozen clock. A
changed metric (name, help, labels, value) shows up as a diff of these files. After an
intended change (or a re-recorded sample trace), regenerate them with
``KSMTRACE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_exporter_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
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

GOLDEN_DIR = Path(__file__).parent.parent / "golden"
GOLDEN = GOLDEN_DIR / "metrics.prom"
FIXTURE_GOLDEN = GOLDEN_DIR / "metrics-fixture.prom"

HEADER = TraceHeader(
    interval_s=1.0,
    probes={"page_walk": True, "header_origin": "fixture headers"},
    probe_stats={"scan_site_ready": 1, "merged_full": 0},
    sanitized=False,
)


def exposition(ticks: Iterable[Tick], probe: ProbeReport, top_n: int) -> str:
    """The exposition after ``ticks``, with a frozen clock (durations and age 0)."""
    state = ExporterState(top_n=top_n, probe=lambda: probe, clock=lambda: 100.0)
    board = SnapshotBoard()
    for t in ticks:
        board.publish(state.fold(t))
    return generate_latest(build_registry(board, clock=lambda: 100.0, own_process=False)).decode()


def replayed(path: Path | None, top_n: int) -> str:
    """/metrics after replaying a trace (None: the bundled sample) as fast as possible."""
    with ReplaySource(path, speed=0) as src:
        return exposition(src.ticks(0), trace_probe_report(src.header), top_n)


def recorded(directory: Path) -> Path:
    """The fixed input written as a trace file, as ``ksmtrace record`` would have."""
    path = directory / "fixture.ksmtrace"
    writer = TraceWriter(path, HEADER)
    for t in golden_ticks():
        writer.write_tick(t)
    writer.close("test")
    return path


INPUTS: dict[Path, Callable[[Path], str]] = {
    GOLDEN: lambda _tmp: replayed(None, top_n=5),
    FIXTURE_GOLDEN: lambda tmp: replayed(recorded(tmp), top_n=2),
}


def exposed_names(golden: Path) -> set[str]:
    """Sample names in a golden file."""
    return {
        line.split("{")[0].split(" ")[0]
        for line in golden.read_text().splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize("golden", list(INPUTS), ids=lambda p: p.name)
def test_metrics_match_the_golden_file(golden: Path, tmp_path: Path) -> None:
    text = INPUTS[golden](tmp_path)
    if os.environ.get("KSMTRACE_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} changed: see the module docstring"


@pytest.mark.parametrize("golden", list(INPUTS), ids=lambda p: p.name)
def test_promtool_accepts_the_golden_file(golden: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup.sh (Debian package prometheus)"
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=golden.read_bytes(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_replayed_and_direct_ticks_give_the_same_metrics(tmp_path: Path) -> None:
    direct = exposition(golden_ticks(), trace_probe_report(HEADER), top_n=2)
    assert direct == replayed(recorded(tmp_path), top_n=2)


def test_the_fixture_reaches_every_metric_of_the_name_table() -> None:
    exposed = exposed_names(FIXTURE_GOLDEN)
    table = {s for m in metrics_names.ALL for s in m.samples}
    assert table == exposed, (sorted(table - exposed), sorted(exposed - table))


def test_the_sample_trace_has_processes_in_and_out_of_the_top() -> None:
    text = GOLDEN.read_text()
    assert 'ksmtrace_process_merges_total{cgroup="other",comm="other",pid="other"' in text
    assert text.count("ksmtrace_process_merges_total{") == 6  # top 5 and 'other'
    assert 'vm="vm-web-1"' in text
