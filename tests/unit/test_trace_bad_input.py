"""Bad trace files: one-line errors naming the file, and replay of what is readable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ksmtrace.errors import TraceFormatError
from ksmtrace.replay import ReplaySource
from ksmtrace.synthetic import synthetic_ticks

from .clirun import run_cli
from .tracefiles import write_trace


def assert_one_line_error(capsys: pytest.CaptureFixture[str], path: Path, words: str) -> None:
    for command in ("replay", "report"):
        code, out, err = (
            run_cli(capsys, command, str(path), "--fast")
            if command == "replay"
            else (run_cli(capsys, command, str(path)))
        )
        assert code == TraceFormatError.exit_code, err
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"ksmtrace: error: {path}: ")
        assert words in lines[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(capsys, tmp_path / "nope.ksmtrace", "no such file")


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.ksmtrace"
    path.touch()
    assert_one_line_error(capsys, path, "empty")


def test_not_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a trace\n" * 20)
    assert_one_line_error(capsys, path, "not a ksmtrace trace")


def test_another_programs_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    assert_one_line_error(capsys, path, "not a ksmtrace trace")


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(capsys, tmp_path, "directory")


def test_newer_format_version(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(good)
    db.execute("PRAGMA user_version = 99")
    db.close()
    assert_one_line_error(capsys, good, "format version 99 is newer")


def test_newer_format_in_the_header(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(good)
    db.execute("UPDATE meta SET value = '7' WHERE key = 'format_version'")
    db.commit()
    db.close()
    assert_one_line_error(capsys, good, "format version 7 is newer")


def test_header_only_a_few_bytes(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good.write_bytes(good.read_bytes()[:50])
    assert_one_line_error(capsys, good, "truncated")


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_file_replays_what_is_readable(
    good: Path, fraction: float, capsys: pytest.CaptureFixture[str]
) -> None:
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * fraction)])
    code, out, err = run_cli(capsys, "replay", str(good), "--fast")
    assert code == 0
    warnings = err.strip().splitlines()
    assert warnings[0].startswith(f"ksmtrace: warning: {good}: the file is truncated")
    assert all(w.startswith(("ksmtrace: warning: ", "Replaying ")) for w in warnings)
    assert "Summary of" in out and "The file is damaged" in out
    with ReplaySource(good, speed=0) as src:
        ticks = list(src.ticks())
        assert ticks, "the intervals whose counters survived are replayed"
        assert src.unreadable_events > 0


def test_corrupt_event_record_in_the_middle(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(good)
    blob = db.execute("SELECT data FROM event_chunks WHERE tick_id = 4").fetchone()[0]
    db.close()
    data = bytearray(good.read_bytes())
    at = data.find(blob[1000:1100])
    assert at > 0
    data[at : at + 64] = bytes(64)
    good.write_bytes(bytes(data))
    with ReplaySource(good, speed=0) as src:
        ticks = list(src.ticks())
        assert [len(t.events) for t in ticks] == [3000] * 3 + [0] + [3000] * 4
        assert src.unreadable_events == 3000
        assert any("interval 4: event chunk 0 fails its checksum" in w for w in src.warnings)
    code, out, err = run_cli(capsys, "replay", str(good), "--fast")
    assert code == 0 and "fails its checksum" in err and len(err.strip().splitlines()) == 2


def test_damaged_database_page_in_the_middle(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(good.read_bytes())
    page = 4096
    pages = len(data) // page
    for n in range(pages // 2, pages // 2 + 3):  # scribble over three whole pages
        data[n * page : (n + 1) * page] = b"\xa5" * page
    good.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "replay", str(good), "--fast")
    if code == 0:
        assert "Summary of" in out
        assert all(line.startswith(("ksmtrace: warning: ", "Replaying ")) for line in
                   err.strip().splitlines())  # fmt: skip
    else:
        assert len(err.strip().splitlines()) == 1 and str(good) in err


@pytest.mark.parametrize("fraction", [0.5, 0.75])
def test_long_trace_cut_anywhere_keeps_the_intervals_before_the_cut(
    tmp_path: Path, fraction: float
) -> None:
    """A long recording (schema and tables spanning many pages) cut at ``fraction`` of its
    bytes still replays about that fraction of its intervals, not nothing."""
    path = tmp_path / "long.ksmtrace"
    ticks = list(synthetic_ticks(600, 300, pids=list(range(2000, 2060))))
    write_trace(path, ticks, level=0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with ReplaySource(path, speed=0) as src:
        replayed = [t.start_ns for t in src.ticks()]
    kept = len(replayed) / len(ticks)
    assert kept > fraction - 0.2, f"only {kept:.0%} of the intervals replayed"
    assert replayed == [t.start_ns for t in ticks[: len(replayed)]], "a prefix, in order"


def test_truncated_before_the_header_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """4 KiB pages (a small --max-size): the schema spills onto later pages; cut before
    them, nothing is readable, and the one line says the file is truncated."""
    path = tmp_path / "small.ksmtrace"
    write_trace(path, list(synthetic_ticks(2, 10)), max_size=200 * 1024)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(capsys, path, "truncated and its header was on the lost part")


def test_report_says_lost_counts_are_unknown_when_they_are_damaged(good: Path) -> None:
    from ksmtrace.report.model import summarize
    from ksmtrace.report.text import format_report

    with sqlite3.connect(good) as db:
        db.execute("DROP TABLE lost_events")
    text = format_report(summarize(good))
    assert "none: the kernel side delivered every event" not in text
    assert "none recorded, but the counts of some intervals are damaged" in text
    assert "lost-event counts unreadable for 8 intervals (damaged file)" in text
