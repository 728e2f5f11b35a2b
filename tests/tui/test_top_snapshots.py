"""SVG snapshots of ksmtrace top's main screens at 80x24 and 160x48 (pytest-textual-snapshot).

The screens come from the sample trace bundled with ksmtrace. The app is paused at a fixed
trace time, so what it shows depends only on the trace, and the header's wall clock (the
recorded read time) is shown in UTC. Accept intended visual changes with
``make test-snapshot-update`` and look at the new SVGs before committing them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from textual.pilot import Pilot

from ksmtrace.top.feeds import ReplayFeed
from ksmtrace.tui import TopApp

from . import scenarios
from .helpers import paused_app, wait_until
from .sample import shown_t

AT_S = 45.0
SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def shown_at(app: TopApp, t_s: float, *keys: str) -> Callable[[Pilot[int]], object]:
    async def run_before(pilot: Pilot[int]) -> None:
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.t_s == t_s)
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    app = paused_app(ReplayFeed(None), AT_S)
    assert snap_compare(app, terminal_size=size, run_before=shown_at(app, shown_t(AT_S)))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_grouped_by_vm(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    app = paused_app(ReplayFeed(None), AT_S, grouping="vm")
    assert snap_compare(app, terminal_size=size, run_before=shown_at(app, shown_t(AT_S)))


def test_churning_vm_selected(snap_compare: SnapCompare) -> None:
    app = paused_app(ReplayFeed(None), AT_S, sort="cows")
    assert snap_compare(app, terminal_size=(160, 48), run_before=shown_at(app, shown_t(AT_S)))


def test_ksm_off_at_the_start_of_the_sample(snap_compare: SnapCompare) -> None:
    app = paused_app(ReplayFeed(None), 0.0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown_at(app, shown_t(0.0)))


def test_help_screen(snap_compare: SnapCompare) -> None:
    app = paused_app(ReplayFeed(None), AT_S)
    run_before = shown_at(app, shown_t(AT_S), "f1")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_diagnosis_in_place_of_an_empty_table(snap_compare: SnapCompare) -> None:
    app = paused_app(scenarios.nothing_registered(), 15.0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown_at(app, 15.0))
