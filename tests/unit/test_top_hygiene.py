"""The data side of ksmtrace top imports neither textual nor bcc (worker, tests, benchmarks)."""

from __future__ import annotations

import subprocess
import sys

HEADLESS = [
    "ksmtrace.top.builder",
    "ksmtrace.top.columns",
    "ksmtrace.top.departures",
    "ksmtrace.top.diagnosis",
    "ksmtrace.top.feeds",
    "ksmtrace.top.model",
    "ksmtrace.top.regions",
    "ksmtrace.top.synthetic",
    "ksmtrace.top.worker",
    "ksmtrace.kernel.smaps",
]


def test_top_data_modules_do_not_import_textual() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {HEADLESS!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'bcc')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
