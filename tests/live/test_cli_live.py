"""The ksmtrace command line against the real host: trace --json, demo, and its exit paths."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ksmtrace.kernel.sysfs import KnobGuard, read_ksm_sysfs
from ksmtrace.workers import Worker, wait_until

from .conftest import PATHS, knob_values, merging_pages

pytestmark = pytest.mark.live

CMD = [sys.executable, "-m", "ksmtrace"]


def children_of(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids |= {int(k) for k in text}
    return kids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def read_until(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
    assert needle in seen, seen
    return seen


def test_bpf_refused_is_one_line_and_exit_3() -> None:
    res = subprocess.run(
        [*CMD, "trace", "--duration", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "KSMTRACE_INJECT": "bpf-refused"},
        timeout=60,
    )
    assert res.returncode == 3, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refused a BPF program" in lines[0], res.stderr


def test_trace_json_reports_the_workload_each_interval(
    fresh_ksm: KnobGuard, spawn: Callable[..., Worker]
) -> None:
    w = spawn("jsonw", 1500, shared=1.0, distinct=8)
    fresh_ksm.set("pages_to_scan", 2000)
    fresh_ksm.set("sleep_millisecs", 10)
    fresh_ksm.set("run", 1)
    assert wait_until(lambda: merging_pages(w.pid) >= 1500, 30)
    res = subprocess.run(
        [*CMD, "trace", "--json", "--duration", "3", "--interval", "1", "--pid", str(w.pid)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(objs) == 3
    for o in objs:
        assert set(o) >= {"ksm", "vmstat", "ledger", "processes", "saved_bytes", "ksmd"}
        rows = {p["pid"]: p for p in o["processes"]}
        assert rows[w.pid]["comm"] == "jsonw"
        assert rows[w.pid]["merging_pages"] == 1500
        assert rows[w.pid]["pages_scanned"] > 0
        led = o["ledger"]
        assert led["cow_ksm_delta"] == (
            led["write_cows"] + led["explicit"] + led["ksmd_undo"] + led["unattributed"]
        )


def test_demo_runs_and_explains(ksm: KnobGuard) -> None:
    res = subprocess.run(
        [*CMD, "demo", "--duration", "8", "--interval", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Summary of" in out and "cow_ksm ledger" in out
    summary = out[out.index("Summary of") :]
    rows = [ln.split() for ln in summary.splitlines() if ln.strip().split()[:1] != []]
    # columns: PID NAME SAVED(value unit) MERGED COW ...
    merged = {r[1]: int(r[4]) for r in rows if len(r) > 5 and r[1] in ("web-1", "web-2", "web-3")}
    assert len(merged) == 3 and all(n > 2000 for n in merged.values()), summary
    assert "KSM knobs restored" in out


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_running_demo(sig: signal.Signals) -> tuple[int, str, set[int]]:
    """Start a long demo, send ``sig`` once KSM is on; returns (exit status, stderr, workers)."""
    with subprocess.Popen(
        [*CMD, "demo", "--duration", "120", "--interval", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and the
        # demo (like any program) keeps ignoring it then; the test wants a terminal's Ctrl-C.
        preexec_fn=_sigint_default,
    ) as proc:
        try:
            read_until(proc, "KSM on", 60)
            assert knob_values()["run"] == 1
            workers = children_of(proc.pid)
            assert len(workers) == 5, workers
            proc.send_signal(sig)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
    return proc.returncode, err, workers


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_restores_knobs_and_ends_its_processes_when_signalled(
    ksm: KnobGuard, sig: signal.Signals
) -> None:
    before = knob_values()
    status, err, workers = signal_running_demo(sig)
    assert status == (128 + signal.SIGTERM if sig == signal.SIGTERM else 0), err
    assert "Traceback" not in err
    assert knob_values() == before
    assert wait_until(lambda: not any(alive(p) for p in workers), 10), "workers left running"


def test_knobs_left_by_a_killed_demo_are_restored_by_the_next_session(ksm: KnobGuard) -> None:
    before = knob_values()
    status, _err, workers = signal_running_demo(signal.SIGKILL)  # no chance to restore
    assert status == -signal.SIGKILL
    assert knob_values()["run"] == 1, "a killed demo leaves KSM running"
    assert wait_until(lambda: not any(alive(p) for p in workers), 10), "workers outlived it"
    with KnobGuard(PATHS) as guard:
        assert guard.recovered, "the next session finds the killed one's journal"
    assert knob_values() == before


def test_calibrate_cost_writes_a_profile_and_leaves_no_merged_pages(
    fresh_ksm: KnobGuard, tmp_path: Path
) -> None:
    before = knob_values()
    out = tmp_path / "cost.json"
    res = subprocess.run(
        [*CMD, "calibrate-cost", "--phase", "2", "--pages", "4096", "-o", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    profile = json.loads(out.read_text())
    assert profile["page_ns"] > 0 or profile["ksm_page_ns"] > 0, profile
    # The probes make ksmd slower per page scanned; the costs are scaled back for that.
    extra = profile["extra"]
    assert extra["traced_ns_per_page"] > extra["untraced_ns_per_page"] > 0, extra
    assert 0.3 <= extra["tracer_factor"] < 1.0, extra
    assert knob_values() == before
    counters = read_ksm_sysfs(PATHS)
    # Its workers are gone: none of their pages may still count as shared.
    assert counters["pages_sharing"] == 0 and counters["pages_shared"] == 0, counters


def sigterm_after(
    argv: list[str], lines: int, pause_s: float = 0.0
) -> tuple[list[str], str, str, int]:
    """Run ``argv``, read its first ``lines`` of stderr, wait, send SIGTERM by pid.

    Returns:
        (those lines, the rest of stdout, the rest of stderr, the exit status).
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = [proc.stderr.readline() for _ in range(lines)]
        time.sleep(pause_s)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return first, out, err, proc.returncode


@pytest.mark.parametrize("command", ["trace", "record"])
def test_sigterm_ends_trace_and_record_with_their_closing_words(
    command: str, tmp_path: Path
) -> None:
    out = ["-o", str(tmp_path / "t.ksmtrace")] if command == "record" else []
    argv = [*CMD, command, *out, "--interval", "0.5"]
    (first,), stdout, stderr, status = sigterm_after(argv, 1, pause_s=1.5)
    assert "Ctrl-C to stop" in first  # the probes were attached
    assert status == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    if command == "trace":
        assert "Summary of" in stdout and "cow_ksm ledger" in stdout
    else:
        assert "(terminated by a signal); lost by the kernel side" in stderr.splitlines()[-1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_workload_only_keeps_ksm_merging_without_probes(
    ksm: KnobGuard, sig: signal.Signals
) -> None:
    before = knob_values()
    with subprocess.Popen(
        [*CMD, "demo", "--workload-only"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_sigint_default,
    ) as proc:  # fmt: skip
        try:
            said = read_until(proc, "until Ctrl-C.", 60)
            workers = children_of(proc.pid)
            assert len(workers) == 5 and "until Ctrl-C" in said, said
            assert knob_values()["run"] == 1
            web = next(p for p in workers if Path(f"/proc/{p}/comm").read_text() == "web-1\n")
            assert wait_until(lambda: merging_pages(web) > 1000, 60), "web-1 did not merge"
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == (0 if sig == signal.SIGINT else 128 + sig), err
    assert "KSM knobs restored" in out and "Traceback" not in err
    assert knob_values() == before
    assert wait_until(lambda: not any(alive(p) for p in workers), 10), "workers left running"


def test_record_of_a_vm_not_running_warns_at_once(tmp_path: Path) -> None:
    argv = [*CMD, "record", "-o", str(tmp_path / "vm.ksmtrace"), "--vm", "no-such-vm",
            "--interval", "0.5", "--duration", "60"]  # fmt: skip
    lines, _, rest, status = sigterm_after(argv, 2)  # "Recording ...", then the warning
    assert "no mergeable VM named no-such-vm is running yet" in lines[1], lines
    assert status == 128 + signal.SIGTERM, rest
    assert "no VM named 'no-such-vm' was seen" in rest
