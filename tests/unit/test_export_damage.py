"""Exports of damaged traces warn about what they skip; exported files are private."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ksmtrace.errors import TraceFormatError
from ksmtrace.private_files import make_private_dir, open_private

from .clirun import run_cli

WARNING = "ksmtrace: warning: "


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def export_argv(trace: Path, fmt: str, out: Path) -> list[str]:
    return ["export", str(trace), "--format", fmt, "-o", str(out)]


@pytest.mark.parametrize("fmt", ["parquet", "openmetrics"])
def test_export_of_a_cut_trace_warns_like_replay_and_says_it_is_partial(
    good: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * 0.45)])
    code, _, replay_err = run_cli(capsys, "replay", str(good), "--fast")
    assert code == 0
    replay_warnings = [ln for ln in replay_err.splitlines() if ln.startswith(WARNING)]
    assert replay_warnings, "the cut trace is damaged"

    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *export_argv(good, fmt, out))
    assert code == 0, err
    assert stdout == ""
    lines = err.strip().splitlines()
    assert lines[:-1] == replay_warnings, "the same warnings as replay, one line each"
    assert lines[0].startswith(f"{WARNING}{good}: the file is truncated")
    assert lines[-1].startswith("Wrote ") and "partial export" in lines[-1], lines[-1]
    assert f"{len(replay_warnings)} warnings above" in lines[-1]
    if fmt == "parquet":
        assert pq.read_table(out / "intervals.parquet").num_rows > 0, "what is readable is kept"
    else:
        assert out.read_text().endswith("# EOF\n")


def test_openmetrics_to_standard_output_reports_a_partial_export_on_stderr(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    code, stdout, err = run_cli(capsys, "export", str(good), "--format", "openmetrics", "-o", "-")
    assert code == 0
    assert stdout.endswith("# EOF\n") and WARNING not in stdout
    lines = err.strip().splitlines()
    assert all(ln.startswith(WARNING) for ln in lines[:-1]) and len(lines) > 1
    assert lines[-1].startswith("Wrote ") and "partial export" in lines[-1]


@pytest.mark.parametrize("fmt", ["parquet", "openmetrics"])
def test_export_of_a_whole_trace_has_no_warning(
    good: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, *export_argv(good, fmt, tmp_path / "out"))
    assert code == 0
    assert WARNING not in err and "partial" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("Wrote ")


def test_parquet_tables_are_private_whatever_the_umask(
    good: Path, tmp_path: Path, no_umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tables"
    code, _, err = run_cli(capsys, *export_argv(good, "parquet", out))
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == 0o700
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "events.parquet",
        "intervals.parquet",
        "knob_changes.parquet",
        "processes.parquet",
    ]
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert "pid" in pq.read_table(out / "processes.parquet").column_names


def test_an_existing_export_is_made_private_when_overwritten(
    good: Path, tmp_path: Path, no_umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    om = tmp_path / "old.om"
    om.write_text("stale\n")
    om.chmod(0o644)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "intervals.parquet").write_bytes(b"stale")
    (shared / "intervals.parquet").chmod(0o644)
    assert run_cli(capsys, *export_argv(good, "openmetrics", om))[0] == 0
    assert run_cli(capsys, *export_argv(good, "parquet", shared))[0] == 0
    assert om.stat().st_mode & 0o777 == 0o600
    assert (shared / "intervals.parquet").stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o755, "a folder the user made keeps its mode"


def test_exporting_a_folder_says_it_is_a_folder_like_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, replay_err = run_cli(capsys, "replay", str(tmp_path), "--fast")
    assert code == TraceFormatError.exit_code
    for fmt in ("parquet", "openmetrics"):
        out = tmp_path / f"out-{fmt}"
        code, stdout, err = run_cli(capsys, *export_argv(tmp_path, fmt, out))
        assert code == TraceFormatError.exit_code
        assert stdout == "" and err == replay_err
        assert err.strip() == f"ksmtrace: error: {tmp_path}: is a directory, not a trace file"
        assert not out.exists(), "nothing written for a bad input"


def test_exporting_a_missing_file_says_so_like_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.ksmtrace"
    replay_err = run_cli(capsys, "replay", str(missing), "--fast")[2]
    code, _, err = run_cli(capsys, *export_argv(missing, "parquet", tmp_path / "out"))
    assert code == TraceFormatError.exit_code and err == replay_err and "no such file" in err


def test_private_file_helpers(tmp_path: Path, no_umask: None) -> None:
    folder = tmp_path / "a" / "b"
    assert make_private_dir(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert not make_private_dir(folder), "an existing folder is not ours to change"
    with open_private(folder / "t.txt", "w") as f:
        f.write("x")
    assert (folder / "t.txt").stat().st_mode & 0o777 == 0o600
    (folder / "t.txt").chmod(0o666)
    with open_private(folder / "t.txt") as g:
        g.write(b"y")
    assert (folder / "t.txt").read_bytes() == b"y"
    assert (folder / "t.txt").stat().st_mode & 0o777 == 0o600
    with pytest.raises(OSError):
        make_private_dir(folder / "t.txt")
