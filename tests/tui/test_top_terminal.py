"""ksmtrace replay --tui in a real terminal (tmux): draws, takes keys, quits cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ksmtrace.top.synthetic import synthetic_ticks
from tests.tmuxterm import TmuxTerminal
from tests.unit.tracefiles import write_trace

from . import scenarios

KSMTRACE = str(Path(sys.executable).with_name("ksmtrace"))


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_replay_tui_in_a_terminal(tmp_path: Path, quit_key: str) -> None:
    trace = tmp_path / "busy.ksmtrace"
    write_trace(trace, synthetic_ticks(scenarios.busy_procs(), 60))
    argv = [KSMTRACE, "replay", str(trace), "--tui", "--paused", "--group", "vm"]
    with TmuxTerminal(argv, size=(80, 24)) as term:
        shown = ("guest-a", "guest-b", "(no vm)", "PAUSED", "1.0s / 60.0s")
        term.wait_for(lambda s: all(x in s for x in shown), 30)  # tmux may catch half a frame
        term.keys("g", "g")  # back to processes
        term.wait_for(lambda s: "web-1[101]" in s and "cache[103]" in s, 10)
        term.keys("]")
        term.wait_for(lambda s: "60.0s / 60.0s" in s, 10)
        term.keys(quit_key)
        assert term.wait_exit(15) == 0
