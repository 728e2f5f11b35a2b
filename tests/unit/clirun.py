"""Running ksmtrace's command line in-process in tests, with what it printed."""

from __future__ import annotations

import pytest

from ksmtrace.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``ksmtrace ARGV``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
