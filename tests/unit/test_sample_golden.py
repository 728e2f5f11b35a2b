"""Golden output of the bundled sample trace: ``report`` and ``replay --json``.

After an intended change of the output or of the sample, regenerate with
``KSMTRACE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_sample_golden.py`` and review
the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ksmtrace.replay import ReplaySource, sample_trace_path

GOLDEN = Path(__file__).parent.parent / "golden"


def ksmtrace(*args: str) -> str:
    env = dict(os.environ, TZ="UTC")  # the JSON "time" field is local time
    proc = subprocess.run(
        [sys.executable, "-m", "ksmtrace", *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    ("golden", "args"),
    [
        ("sample-report.txt", ("report",)),
        ("sample-replay.jsonl", ("replay", "--json", "--fast")),
    ],
)
def test_output_on_the_bundled_sample_is_pinned(golden: str, args: tuple[str, ...]) -> None:
    out = ksmtrace(*args)
    path = GOLDEN / golden
    if os.environ.get("KSMTRACE_UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text(), f"output of 'ksmtrace {' '.join(args)}' changed"


def test_the_sample_is_a_real_run_with_guests_and_processes() -> None:
    with ReplaySource(None, speed=0) as src:
        assert src.path == sample_trace_path()
        ticks = list(src.ticks())
        assert src.warnings == []
        assert src.header.stop_reason == "duration reached"
        assert src.header.sanitized
    vms = {i.vm for t in ticks for i in t.identities.values() if i.vm}
    assert len(vms) >= 2, vms
    comms = {i.comm for t in ticks for i in t.identities.values()}
    assert {"web-1", "cache"} <= comms
    assert sum(len(t.events) for t in ticks) > 10_000
    assert sample_trace_path().stat().st_size < 4 * 2**20


def test_replay_json_lines_are_valid_json() -> None:
    lines = (GOLDEN / "sample-replay.jsonl").read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert len(objs) == 60
    assert all(o["time"].endswith("+0000") for o in objs)
