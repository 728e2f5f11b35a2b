"""ksmtrace top on trace files: the same screen as from the ticks, seeking reopens the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from textual.pilot import Pilot

from ksmtrace.commands.top import run_replay_tui
from ksmtrace.errors import UsageError
from ksmtrace.top.feeds import ReplayFeed
from ksmtrace.top.synthetic import synthetic_ticks
from ksmtrace.tui import TopApp
from tests.unit.tracefiles import write_trace

from . import scenarios
from .helpers import paused_app, run_app, wait_shown


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("top") / "busy.ksmtrace"
    write_trace(path, synthetic_ticks(scenarios.busy_procs(), 60))
    return path


def test_a_trace_file_shows_what_its_ticks_show(trace: Path) -> None:
    seen: dict[str, list[tuple[str, int]]] = {}

    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, 30.0)
        seen[app.worker.feed.__class__.__name__] = [
            (r.label, r.saved_bytes) for r in app.shown_rows
        ]

    run_app(paused_app(scenarios.busy(), 30.0), body)
    run_app(paused_app(ReplayFeed(trace), 30.0), body)
    assert seen["ReplayFeed"] == seen["RecordedFeed"]
    assert len(seen["ReplayFeed"]) == 6


def test_seeking_back_in_a_trace_reopens_it_in_the_worker_thread(trace: Path) -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, 55.0)
        await pilot.press("b")
        await wait_shown(pilot, app, 1.0)
        await pilot.press("right_square_bracket")
        await wait_shown(pilot, app, 60.0)
        assert app.snapshot is not None and app.snapshot.duration_s == 60.0

    run_app(paused_app(ReplayFeed(trace), 55.0, tape=10), body)


def test_from_and_to_bound_the_replay(trace: Path) -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, 21.0)
        await pilot.press("e")
        await wait_shown(pilot, app, 40.0)

    run_app(paused_app(ReplayFeed(trace, start_s=20.0, end_s=40.0), 0.0), body)


def test_replay_tui_refuses_options_that_print(trace: Path) -> None:
    args = argparse.Namespace(file=trace, json=True, serve=False, pid=None, speed=1.0)
    with pytest.raises(UsageError, match="--json and --tui"):
        run_replay_tui(args)
