"""The HTML form of a trace report: one self-contained page with the plots and the text."""

from __future__ import annotations

import base64
import html

from ksmtrace.report.model import TraceSummary
from ksmtrace.report.plots import render_png
from ksmtrace.report.text import format_report

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:90%}"
    "img{max-width:100%}"
)


def render_html(s: TraceSummary) -> str:
    """A standalone HTML page (images embedded) reporting on one trace."""
    png = base64.b64encode(render_png(s)).decode("ascii")
    title = html.escape(f"ksmtrace report: {s.path.name}")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>{title}</h1>\n"
        f'<img alt="savings, ksmd cost and churn over time" src="data:image/png;base64,{png}">\n'
        f"<pre>{html.escape(format_report(s))}</pre>\n"
        "</body></html>\n"
    )
