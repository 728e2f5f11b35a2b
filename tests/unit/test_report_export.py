"""Reports and exports of traces: text, HTML, PNG, Parquet, and OpenMetrics that promtool loads."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ksmtrace import metrics_names
from ksmtrace.cli import main
from ksmtrace.commands.record import parse_size
from ksmtrace.errors import UsageError
from ksmtrace.events import EventKind
from ksmtrace.replay import ReplaySource, sample_trace_path
from ksmtrace.synthetic import synthetic_ticks

from .tracefiles import write_trace

SAMPLE = str(sample_trace_path())


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(list(argv)) == 0
    return capsys.readouterr()


def test_openmetrics_export_loads_into_prometheus_with_promtool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    om = tmp_path / "sample.om"
    cli(capsys, "export", SAMPLE,
        "--format", "openmetrics", "-o", str(om))  # fmt: skip
    text = om.read_text()
    assert text.endswith("# EOF\n")
    names = {
        re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line[:1] != "#"
    }
    assert names <= set(metrics_names.BY_SAMPLE), names - set(metrics_names.BY_SAMPLE)
    needed = {
        "ksmtrace_pages_sharing",
        "ksmtrace_full_scans_total",
        "ksmtrace_saved_bytes",
        "ksmtrace_process_merges_total",
        "ksmtrace_process_cow_unmerges_total",
        "ksmtrace_lost_events_total",
    }
    assert needed <= names
    assert 'vm="vm-web-1"' in text
    blocks = tmp_path / "tsdb"
    proc = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    listing = subprocess.run(
        ["promtool", "tsdb", "list", str(blocks)], capture_output=True, text=True, check=True
    ).stdout
    samples = sum(int(line.split()[4]) for line in listing.splitlines()[1:] if line.strip())
    assert samples == sum(1 for line in text.splitlines() if line[:1] != "#")


def test_parquet_export_holds_every_event_and_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pq"
    cli(capsys, "export", SAMPLE, "--format", "parquet", "-o", str(out))
    with ReplaySource(SAMPLE, speed=0) as src:
        ticks = list(src.ticks())
    events = pq.read_table(out / "events.parquet")
    assert events.num_rows == sum(len(t.events) for t in ticks)
    kinds = events.column("kind").to_pylist()
    assert kinds.count("MERGE") == sum(len(t.events.of_kind(EventKind.MERGE)) for t in ticks)
    assert "vm-batch" in set(events.column("vm").to_pylist())
    intervals = pq.read_table(out / "intervals.parquet")
    assert intervals.num_rows == len(ticks)
    assert intervals.column("ksm_pages_sharing").to_pylist()[-1] == ticks[-1].sample.counter(
        "pages_sharing"
    )
    assert pq.read_table(out / "knob_changes.parquet").num_rows == 4
    assert pq.read_table(out / "processes.parquet").num_rows == sum(
        len(t.sample.processes) for t in ticks
    )


def test_html_and_png_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html, png = tmp_path / "r.html", tmp_path / "r.png"
    cli(capsys, "report", "--html", str(html))
    cli(capsys, "report", "--png", str(png))
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "Per process" in page and "vm-web-1" in page
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.stat().st_mode & 0o777 == png.stat().st_mode & 0o777 == 0o600
    svg = tmp_path / "r.svg"
    cli(capsys, "report", "--png", str(svg))
    assert b"<svg" in svg.read_bytes()[:1000], "the suffix picks the image format"


def test_replay_and_report_show_lost_events_per_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lossy.ksmtrace"
    write_trace(path, list(synthetic_ticks(10, 200)))  # 3 COW events lost every 5th tick
    out, _ = cli(capsys, "replay", str(path), "--fast")
    assert "LOST 3" in out
    assert "Lost events     6" in out
    assert "Lost by the kernel side while recording: COW 6." in out
    out, _ = cli(capsys, "report", str(path))
    assert "Lost events\n  COW 6" in out


def test_replay_window_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = cli(capsys, "replay", "--json", "--fast", "--from", "10", "--to", "0:20")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 10
    out, _ = cli(capsys, "replay", "--json", "--fast", "--interval", "10")
    assert len(out.splitlines()) == 6


def test_replay_table_and_summary_of_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = cli(capsys, "replay", "--fast", "--to", "15")
    assert "Replaying" in err and "recorded on" in err
    assert "MERGE/s" in out and "vm-web-1" in out
    assert re.search(r"Summary of 1[45] s of KSM activity", out)
    assert "Lost by the kernel side while recording: none." in out


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500M", 500 * 2**20),
        ("2G", 2 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("262144", 262144),
        ("256k", 262144),
    ],  # fmt: skip
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "5X", "100", "64K"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_report_lists_knob_changes_and_advisor_steps(tmp_path: Path) -> None:
    import dataclasses

    from ksmtrace.events import Event, EventBatch
    from ksmtrace.report.model import summarize
    from ksmtrace.report.text import format_report

    ticks = list(synthetic_ticks(4, 50))
    advisor = Event(EventKind.ADVISOR, ticks[2].start_ns + 5, 0, value=3, value2=2500, err=40)
    ticks[2] = dataclasses.replace(
        ticks[2], events=EventBatch.concat([ticks[2].events, EventBatch.from_events([advisor])])
    )
    changed = dataclasses.replace(ticks[1].sample, ksm={**ticks[1].sample.ksm, "run": 0})
    ticks[1] = dataclasses.replace(ticks[1], sample=changed)
    ticks[2] = dataclasses.replace(ticks[2], previous=changed)
    path = tmp_path / "knobs.ksmtrace"
    write_trace(path, ticks)
    text = format_report(summarize(path))
    assert "Knob change   +2.0 s  run 1 -> 0" in text
    assert "Knob change   +3.0 s  run 0 -> 1" in text
    assert "Advisor       set pages_to_scan 1 times (2500..2500); last 2500 at +2.0 s" in text
