"""ksmtrace replay --tui on the bundled sample in a real terminal (tmux): keys, a clean quit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tmuxterm import TmuxTerminal

KSMTRACE = str(Path(sys.executable).with_name("ksmtrace"))


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_replay_tui_in_a_terminal(quit_key: str) -> None:
    argv = [KSMTRACE, "replay", "--tui", "--paused", "--group", "vm"]
    with TmuxTerminal(argv, size=(80, 24)) as term:
        shown = ("vm-web-1", "vm-batch", "(no vm)", "PAUSED", "1.0s / 60.0s")
        term.wait_for(lambda s: all(x in s for x in shown), 30)  # tmux may catch half a frame
        term.keys("g", "g")  # back to processes
        term.wait_for(lambda s: "web-1[31831]" in s and "cache[31835]" in s, 10)
        term.keys("]")
        term.wait_for(lambda s: "60.0s / 60.0s" in s, 10)
        term.keys(quit_key)
        assert term.wait_exit(15) == 0


def test_sigterm_ends_the_ui_cleanly_with_status_143() -> None:
    argv = [KSMTRACE, "replay", "--tui", "--paused"]
    with TmuxTerminal(argv, size=(80, 24)) as term:
        term.wait_for(lambda s: "PAUSED" in s, 30)
        os.kill(term.command_pid(), signal.SIGTERM)
        assert term.wait_exit(15) == 143
        screen = term.screen()
        assert "Traceback" not in screen and "Error" not in screen, screen


def test_top_without_a_terminal_is_a_one_line_error() -> None:
    res = subprocess.run(
        [KSMTRACE, "replay", "--tui"], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 64, res
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a terminal" in lines[0] and "ksmtrace replay" in lines[0]


def test_keys_typed_right_after_slash_go_to_the_filter() -> None:
    argv = [KSMTRACE, "replay", "--tui", "--paused"]
    with TmuxTerminal(argv, size=(100, 30)) as term:
        term.wait_for(lambda s: "PAUSED" in s and "cache[31835]" in s, 30)
        term.type_text("/web")  # 'e' and 'b' would seek if they reached the table
        screen = term.wait_for(lambda s: "cache[31835]" not in s, 10)
        assert "web-1[31831]" in screen and "1.0s / 60.0s" in screen, screen
        term.keys("Escape", "q")
        assert term.wait_exit(15) == 0
