"""ksmtrace snapshot and whatif on a real process with known content."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ksmtrace.fingerprint.reader import F_KSM, F_ZERO
from ksmtrace.fingerprint.snapfile import read_snapshot
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.workers import Worker, wait_until

from .conftest import merging_pages
from .engine_validation import host_cost

pytestmark = pytest.mark.live

KSMTRACE = [sys.executable, "-m", "ksmtrace"]


def snapshot(pid: int, out: Path, count: int = 1) -> Path:
    cmd = [*KSMTRACE, "snapshot", "--pid", str(pid), "--count", str(count), "--interval", "0.2"]
    subprocess.run([*cmd, "-o", str(out)], check=True, capture_output=True, timeout=60)
    return out


def test_fingerprints_match_the_known_content_and_mark_merged_pages(
    fresh_ksm: KnobGuard, spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    # 4000 pages: 2000 from 64 shared templates, 400 zero-filled, 1600 unique.
    w = spawn("snap-known", 4000, shared=0.5, zero=0.1, distinct=64, seed=3)
    snap = read_snapshot(snapshot(w.pid, tmp_path / "a.ksmsnap", count=2))
    assert (tmp_path / "a.ksmsnap").stat().st_mode & 0o777 == 0o600
    assert snap.complete and len(snap.frames) == 2
    pages = snap.frames[0].processes[w.pid]
    assert pages.pages == 4000
    assert len(np.unique(pages.hash)) == 64 + 1 + 1600
    assert int(((pages.flags & F_ZERO) != 0).sum()) == 400
    assert not np.any(pages.flags & F_KSM), "nothing is merged yet"
    again = snap.frames[1].processes[w.pid]
    assert np.array_equal(again.hash, pages.hash), "same content, same fingerprints"

    fresh_ksm.set("pages_to_scan", 2000)
    fresh_ksm.set("sleep_millisecs", 10)
    fresh_ksm.set("run", 1)
    assert wait_until(lambda: merging_pages(w.pid) >= 2400, 30)
    fresh_ksm.set("run", 0)
    merged = read_snapshot(snapshot(w.pid, tmp_path / "b.ksmsnap")).frames[0].processes[w.pid]
    assert int(((merged.flags & F_KSM) != 0).sum()) == merging_pages(w.pid)
    assert np.array_equal(merged.hash, pages.hash), "merging does not change content"


def test_whatif_command_end_to_end(
    fresh_ksm: KnobGuard, spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    profile = tmp_path / "cost-profile.json"  # whatif needs this host's measured cost
    host_cost(fresh_ksm).save(profile)
    a = spawn("wi-a", 3000, shared=0.7, zero=0.1, distinct=100, seed=4)
    b = spawn("wi-b", 3000, shared=0.7, zero=0.1, distinct=100, seed=4)
    out = tmp_path / "s.ksmsnap"
    cmd = [*KSMTRACE, "snapshot", "--pid", str(a.pid), "--pid", str(b.pid), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    plots = tmp_path / "plots"
    res = subprocess.run(
        [*KSMTRACE, "whatif", str(out), "--sweep", "pages_to_scan=100,1000",
         "--cpu-budget", "5%", "--same-tenant-only", "--colocate", "wi-a,wi-b",
         "--plot-dir", str(plots), "--sketch-out", str(tmp_path / "sk.json"),
         "--cost-profile", str(profile)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "recommended for 5% of a CPU" in res.stdout
    assert "who shares most with whom" in res.stdout
    assert "together" in res.stdout
    for name in ("savings-over-time", "frontier"):
        assert (plots / f"{name}.png").stat().st_size > 1000
        assert (plots / f"{name}.svg").stat().st_size > 1000
    sk = subprocess.run(
        [*KSMTRACE, "whatif", "--sketches", str(tmp_path / "sk.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sk.returncode == 0 and "wi-a" in sk.stdout
    bad = subprocess.run(
        [*KSMTRACE, "whatif", str(tmp_path / "sk.json")], capture_output=True, text=True
    )
    assert bad.returncode != 0 and bad.stderr.startswith("ksmtrace: error:")
    assert "Traceback" not in bad.stderr
