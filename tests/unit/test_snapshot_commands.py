"""snapshot and whatif on the command line: nothing to record, cut snapshots, private plots."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ksmtrace.errors import TraceFormatError, UsageError
from ksmtrace.fingerprint.reader import ProcessPages
from ksmtrace.fingerprint.snapfile import SnapshotWriter

from .clirun import run_cli
from .engine_helpers import COST

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOT_MERGEABLE = """\
ksm_rmap_items 0
ksm_zero_pages 0
ksm_merging_pages 0
ksm_process_profit 0
ksm_merge_any: no
ksm_mergeable: no
"""


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ksmtrace: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def process(pid: int, k: int) -> ProcessPages:
    vpn = np.arange(1000, dtype=np.uint64)
    return ProcessPages(pid, vpn, (vpn + k * pid) % 40, np.zeros(1000, dtype=np.uint8))


def five_frames(path: Path) -> list[int]:
    """A snapshot of 5 frames of 2 processes (--count 5); returns where each frame ends."""
    header = {"salt_id": "s", "hz": 250, "knobs": {"run": 1, "smart_scan": 0}, "count": 5}
    w = SnapshotWriter(path, header)
    ends = []
    for k in range(5):
        idents = {str(p): {"comm": f"c{p}", "start_time": p} for p in (1, 2)}
        w.frame(1000 + k * 10**9, [process(1, k), process(2, k)], {"identities": idents})
        ends.append(path.stat().st_size)
    w.close()
    return ends


@pytest.fixture
def cost(tmp_path: Path) -> Path:
    path = tmp_path / "cost.json"
    COST.save(path)
    return path


def test_whatif_on_a_cut_snapshot_warns_then_predicts_and_plots_privately(
    tmp_path: Path, cost: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "snap.ksmsnap"
    ends = five_frames(snap)
    cut = (ends[2] + ends[3]) // 2
    snap.write_bytes(snap.read_bytes()[:cut])
    plots = tmp_path / "plots"
    old = os.umask(0)
    try:
        code, out, err = run_cli(
            capsys, "whatif", str(snap), "--cost-profile", str(cost), "--duration", "30",
            "--plot-dir", str(plots),
        )  # fmt: skip
    finally:
        os.umask(old)
    assert code == 0, err
    assert err.splitlines()[0] == (
        f"ksmtrace: warning: {snap}: truncated after frame 3 of 5 (cut short at byte {cut}); "
        "using the 3 readable frames"
    )
    assert sum("warning" in ln for ln in err.splitlines()) == 1
    assert "SAVED" in out
    assert plots.stat().st_mode & 0o777 == 0o700
    written = sorted(p.name for p in plots.iterdir())
    assert written == ["frontier.png", "frontier.svg", "savings-over-time.png",
                       "savings-over-time.svg"]  # fmt: skip
    for p in plots.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert (plots / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_whatif_on_a_snapshot_cut_inside_its_first_frame_says_it_is_truncated(
    tmp_path: Path, cost: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "snap.ksmsnap"
    ends = five_frames(snap)
    assert ends[0] > 5000
    snap.write_bytes(snap.read_bytes()[:5000])
    code, out, err = run_cli(capsys, "whatif", str(snap), "--cost-profile", str(cost))
    assert code == TraceFormatError.exit_code and out == ""
    assert_one_line_error(err, f"{snap}: truncated", "cut short at byte 5000",
                          "no frame is readable")  # fmt: skip
    assert "--count" not in err


@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """host-basic with what a snapshot reads besides processes: kpageflags and HZ."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-basic", root)
    (root / "proc" / "kpageflags").touch()
    (root / "proc" / "config.gz").write_bytes(gzip.compress(b"CONFIG_HZ=250\n"))
    monkeypatch.setenv("KSMTRACE_HOST_ROOT", str(root))
    return root


@pytest.fixture
def salt(tmp_path: Path) -> Path:
    path = tmp_path / "salt"
    path.write_bytes(bytes(range(32)))
    return path


def test_snapshot_with_no_mergeable_process_fails_and_writes_nothing(
    fake_host: Path, salt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_host / "proc" / "100" / "ksm_stat").write_text(NOT_MERGEABLE)
    out = tmp_path / "x.ksmsnap"
    code, stdout, err = run_cli(
        capsys, "snapshot", "--all-mergeable", "-o", str(out), "--salt-file", str(salt)
    )
    assert code == UsageError.exit_code and stdout == ""
    assert_one_line_error(err, "found no process using KSM", "start the workload", "--pid")
    assert not out.exists()


def test_snapshot_whose_processes_had_no_page_fails_and_removes_the_file(
    fake_host: Path, salt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pid 100 says it is mergeable, but has no mergeable region to fingerprint."""
    out = tmp_path / "x.ksmsnap"
    code, stdout, err = run_cli(
        capsys, "snapshot", "--all-mergeable", "-q", "-o", str(out), "--salt-file", str(salt)
    )
    assert code == UsageError.exit_code and stdout == ""
    assert_one_line_error(err, "no mergeable page", "nothing was written", "--pid")
    assert not out.exists()
