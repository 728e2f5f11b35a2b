"""ksmtrace top on the bundled sample trace: same screen as its ticks, seeking reopens the file."""

from __future__ import annotations

import argparse

import pytest
from textual.pilot import Pilot

from ksmtrace.commands.top import run_replay_tui
from ksmtrace.errors import UsageError
from ksmtrace.replay import ReplaySource
from ksmtrace.top.feeds import ReplayFeed, tick_list_feed
from ksmtrace.tui import TopApp
from ksmtrace.tui.widgets.table import ProcessTable

from .helpers import paused_app, run_app, text_of, wait_shown, wait_until
from .sample import shown_t, tick_ends


def test_the_sample_shows_what_its_ticks_show() -> None:
    with ReplaySource(None, 0.0) as src:
        ticks = list(src.ticks(0.0))
    seen: dict[str, list[tuple[str, int, float]]] = {}

    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, shown_t(40.0))
        name = app.worker.feed.__class__.__name__
        seen[name] = [(r.label, r.saved_bytes, r.merges_per_s) for r in app.shown_rows]

    run_app(paused_app(tick_list_feed(ticks), 40.0), body)
    run_app(paused_app(ReplayFeed(None), 40.0), body)
    assert seen["ReplayFeed"] == seen["RecordedFeed"]
    assert {"vm-web-1[31840]", "vm-batch[31842]", "cache[31835]"} <= {
        label for label, _, _ in seen["ReplayFeed"]
    }


def test_sorting_selecting_and_seeking_in_the_sample() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, shown_t(50.0))
        await pilot.press("5")  # COW/s: the cache rewrites its pages most
        assert [r.label for r in app.shown_rows[:2]] == ["cache[31835]", "vm-batch[31842]"]
        await pilot.press("home")
        await wait_until(pilot, lambda: app.selected_key == "31835")
        assert "Merges are broken about as fast as they are made" in text_of(
            app, "#detail-findings"
        )
        assert "(churn)" in text_of(app, "#findings")
        await pilot.press("b")
        await wait_shown(pilot, app, tick_ends()[0])
        assert text_of(app, "#header").startswith("KSM off")
        await pilot.press("right_square_bracket")
        await wait_shown(pilot, app, tick_ends()[-1])
        await pilot.press("left")
        await wait_shown(pilot, app, shown_t(tick_ends()[-1] - 5))
        assert app.query_one(ProcessTable).row_count == len(app.shown_rows)

    run_app(paused_app(ReplayFeed(None), 50.0, tape=10), body)


def test_from_is_where_the_replay_starts_with_full_rates_and_to_ends_it() -> None:
    seen: dict[str, list[tuple[str, float, float]]] = {}

    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, shown_t(30.0))
        seen[str(len(seen))] = [(r.label, r.merges_per_s, r.cows_per_s) for r in app.shown_rows]

    run_app(paused_app(ReplayFeed(None), 30.0), body)
    run_app(paused_app(ReplayFeed(None, start_s=30.0, end_s=40.0), 30.0), body)
    assert seen["0"] == seen["1"], "rates at --from are averaged over a full window"

    async def bounds(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, shown_t(30.0))
        await pilot.press("e")
        await wait_shown(pilot, app, shown_t(40.0))
        await pilot.press("b")
        await wait_shown(pilot, app, tick_ends()[0])

    run_app(paused_app(ReplayFeed(None, start_s=30.0, end_s=40.0), 30.0), bounds)


def test_replay_tui_refuses_options_that_print() -> None:
    args = argparse.Namespace(file=None, json=True, serve=False, pid=None, speed=1.0)
    with pytest.raises(UsageError, match="--json and --tui"):
        run_replay_tui(args)
