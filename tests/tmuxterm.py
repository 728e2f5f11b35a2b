"""A real terminal for tests: a detached tmux session running one command, read and typed into."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType


def _tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, check=True)
    return done.stdout


class TmuxTerminal:
    """One tmux session of a given size running ``argv``; killed by its unique name on exit.

    A shell around the command writes its exit status to a file when it ends, and the pane
    stays open (remain-on-exit) so the last screen can still be read.
    """

    def __init__(
        self, argv: Sequence[str], size: tuple[int, int] = (120, 40), cwd: Path | None = None
    ) -> None:
        self.name = f"ksmtrace-test-{uuid.uuid4().hex[:12]}"
        self.argv = list(argv)
        self.size = size
        self.cwd = cwd or Path.cwd()
        self._status = Path(tempfile.mkdtemp(prefix="ksmtrace-tmux-")) / "status"

    def __enter__(self) -> TmuxTerminal:
        w, h = self.size
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(w), "-y", str(h),
             "-c", str(self.cwd), "sh", "-c",
             f"{shlex.join(self.argv)}; echo $? > {shlex.quote(str(self._status))}; sleep 600"],
            check=True, env={**env, "TERM": "xterm-256color"},
        )  # fmt: skip
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)
        shutil.rmtree(self._status.parent, ignore_errors=True)

    def screen(self) -> str:
        """The visible text of the pane."""
        return _tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        """Type keys (tmux key names: q, Space, Enter, Escape, C-c)."""
        for key in keys:
            _tmux("send-keys", "-t", self.name, key)
            time.sleep(0.15)

    def command_pid(self) -> int:
        """The pid of the command (the child of the shell the pane runs)."""
        shell = int(_tmux("display-message", "-p", "-t", self.name, "#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        assert children, "the command is not running"
        return int(children[0])

    def type_text(self, text: str) -> None:
        """Type ``text`` in one go, as a fast typist or a paste would."""
        _tmux("send-keys", "-t", self.name, "-l", text)

    def exit_status(self) -> int | None:
        """The command's exit status once it ended, else None."""
        try:
            return int(self._status.read_text())
        except (OSError, ValueError):
            return None

    def wait_for(self, pred: Callable[[str], bool], timeout_s: float) -> str:
        """Poll the screen until ``pred(screen)`` holds; returns that screen."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.screen()
            if pred(text):
                return text
            assert time.monotonic() < deadline, f"timed out; the screen shows:\n{text}"
            time.sleep(0.25)

    def wait_exit(self, timeout_s: float) -> int:
        """Wait until the command ends; returns its exit status."""
        deadline = time.monotonic() + timeout_s
        while (status := self.exit_status()) is None:
            assert time.monotonic() < deadline, f"still running; screen:\n{self.screen()}"
            time.sleep(0.2)
        return status
