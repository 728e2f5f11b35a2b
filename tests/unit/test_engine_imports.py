"""The merge engine, snapshot reader and what-if code run without bcc, textual or the exporter."""

from __future__ import annotations

import subprocess
import sys

HEADLESS = (
    "ksmtrace.engine",
    "ksmtrace.engine.source",
    "ksmtrace.engine.replay",
    "ksmtrace.engine.synthetic",
    "ksmtrace.engine.handmade",
    "ksmtrace.fingerprint.snapfile",
    "ksmtrace.whatif.sweep",
    "ksmtrace.whatif.colocation",
    "ksmtrace.whatif.tenancy",
    "ksmtrace.whatif.tables",
)
FORBIDDEN = ("bcc", "textual", "prometheus_client")


def test_engine_modules_import_no_bcc_textual_or_prometheus_client() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {HEADLESS!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
