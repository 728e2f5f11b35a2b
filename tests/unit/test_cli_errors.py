"""Bad hosts and bad input give one-line errors and the right exit status, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures"
SAMPLE = Path(__file__).parent.parent.parent / "ksmtrace" / "data" / "sample.ksmtrace"


def ksmtrace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ksmtrace", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def assert_one_line_error(res: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ksmtrace: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def host_without_ksm(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-basic" / "proc", root / "proc")
    (root / "sys" / "kernel" / "mm").mkdir(parents=True)
    return root


@pytest.fixture
def host_without_btf(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-basic", root)
    assert not (root / "sys/kernel/btf/vmlinux").exists()
    return root


def test_not_root_is_one_line_and_exit_2() -> None:
    res = ksmtrace("trace", "--duration", "1", env={"KSMTRACE_INJECT": "not-root"})
    assert_one_line_error(res, 2, "needs root", "sudo")


def test_ksm_absent_is_one_line(host_without_ksm: Path) -> None:
    res = ksmtrace("trace", "--duration", "1", env={"KSMTRACE_HOST_ROOT": str(host_without_ksm)})
    assert_one_line_error(res, 2, "KSM", "CONFIG_KSM")


def test_missing_btf_is_one_line(host_without_btf: Path) -> None:
    res = ksmtrace("trace", "--duration", "1", env={"KSMTRACE_HOST_ROOT": str(host_without_btf)})
    assert_one_line_error(res, 2, "vmlinux")


def test_invalid_knob_value_is_one_line() -> None:
    res = ksmtrace("demo", "--pages-to-scan", "lots")
    assert_one_line_error(res, 4, "pages_to_scan", "lots")


def test_unknown_pid_is_a_usage_error() -> None:
    res = ksmtrace("trace", "--pid", "999999999", "--duration", "1")
    assert_one_line_error(res, 64, "999999999")


def test_non_positive_interval_is_a_usage_error() -> None:
    res = ksmtrace("trace", "--interval", "0")
    assert_one_line_error(res, 64, "--interval")


@pytest.mark.parametrize(
    ("env", "failing"),
    [
        ({"KSMTRACE_INJECT": "not-root"}, "root"),
        ({"KSMTRACE_HOST_ROOT": "<no-ksm>"}, "ksm"),
        ({"KSMTRACE_HOST_ROOT": "<no-btf>"}, "btf"),
    ],
)
def test_doctor_names_the_problem_and_exits_1(
    env: dict[str, str], failing: str, host_without_ksm: Path, tmp_path: Path
) -> None:
    if env.get("KSMTRACE_HOST_ROOT") == "<no-ksm>":
        env = {"KSMTRACE_HOST_ROOT": str(host_without_ksm)}
    elif env.get("KSMTRACE_HOST_ROOT") == "<no-btf>":
        root = tmp_path / "nobtf"
        shutil.copytree(FIXTURES / "host-basic", root)
        env = {"KSMTRACE_HOST_ROOT": str(root)}
    res = ksmtrace("doctor", "--quick", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    fails = [ln for ln in res.stdout.splitlines() if "[FAIL]" in ln]
    assert any(f"] {failing}" in ln for ln in fails), res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("Live tracing: NOT available.")


def test_help_teaches_with_examples() -> None:
    res = ksmtrace("--help")
    assert res.returncode == 0
    for cmd in ("doctor", "trace", "demo"):
        assert cmd in res.stdout
    from ksmtrace.errors import HostError, ProbeError, TraceFormatError, UsageError

    statuses = " ".join(res.stdout.split()[res.stdout.split().index("status:") :])
    for err in (HostError, ProbeError, TraceFormatError, UsageError):
        assert f"{err.exit_code} " in statuses, (err, statuses)
    trace_help = ksmtrace("trace", "--help").stdout
    assert "examples:" in trace_help and "--json" in trace_help and "CHURN" in trace_help


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["trace", "--duration", "inf"], "finite"),
        (["trace", "--interval", "nan"], "finite"),
        (["trace", "--sample-every", "0"], "--sample-every"),
        (["trace", "--max-tracked-pages", "99999999999"], "at most"),
        (["replay", "--fast", "--interval", "inf"], "finite"),
        (["replay", "--speed", "-1"], "0 or more"),
        (["replay", "--fast", "--pid", "999999"], "does not appear"),
        (["top", "--window", "0"], "--window"),
        (["serve", "--top", "0"], "--top"),
        (["snapshot", "--pid", "1", "--counter-interval", "nan"], "finite"),
        (["whatif", "x.ksmsnap", "--duration", "1e12"], "at most"),
        (["whatif", "x.ksmsnap", "--step", "-1"], "--step"),
        (["calibrate-cost", "--wait", "nan"], "finite"),
        (["replay", "--fast", "--from", "70"], "past the end: the trace covers 0 to 60 s"),
        (["report", "--from", "1h"], "past the end"),
        (["top", str(SAMPLE), "--from", "61"], "past the end"),
        (["replay", "--tui", "--from", "2m"], "past the end"),
        (["report", "--from", "10.2", "--to", "10.5"], "widen the window"),
        (["record", "-o", "/tmp", "--force", "--duration", "1"], "/tmp is a folder"),
        (["record", "-o", "x.ksmtrace", "--max-size", "64K"], "at least 256K"),
        (["report", "--png", "x.jpg"], "name the image .png, .svg or .pdf"),
    ],
)
def test_numbers_out_of_range_are_one_line_errors(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ksmtrace.cli import main
    from ksmtrace.errors import UsageError

    assert main(argv) == UsageError.exit_code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("ksmtrace: error: "), err
    assert words in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["whatif", "x.ksmsnap", "--cpu-budget", "-5%"], "ksmtrace whatif --help"),
        (["trace", "--scan-cost", "always"], "invalid choice: 'always'"),
        (["no-such-command"], "invalid choice"),
        (["trace", "--bogus"], "unrecognized arguments: --bogus (see 'ksmtrace trace --help')"),
    ],
)
def test_argparse_errors_are_one_line_pointing_to_help(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ksmtrace.cli import main

    with pytest.raises(SystemExit) as ex:
        main(argv)
    assert ex.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("ksmtrace: error: "), err
    assert words in lines[0] and "--help" in lines[0], lines[0]
