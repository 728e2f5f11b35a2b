"""Trace-file, replay, report and export code runs on hosts without bcc, textual or the exporter."""

from __future__ import annotations

import subprocess
import sys

HEADLESS = (
    "ksmtrace.tracefile",
    "ksmtrace.replay",
    "ksmtrace.recorder",
    "ksmtrace.report.model",
    "ksmtrace.report.text",
    "ksmtrace.export.openmetrics",
    "ksmtrace.export.parquet",
)
FORBIDDEN = ("bcc", "textual", "prometheus_client")


def test_headless_modules_import_no_bcc_textual_or_prometheus_client() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {HEADLESS!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_replay_source_keeps_its_public_signature() -> None:
    import inspect

    from ksmtrace.replay import ReplaySource

    params = list(inspect.signature(ReplaySource).parameters)
    assert params[:4] == ["path", "speed", "start_s", "end_s"]
    ticks = inspect.signature(ReplaySource.ticks).parameters
    assert list(ticks)[1:] == ["interval_s", "duration_s"]
    assert callable(ReplaySource.close)
