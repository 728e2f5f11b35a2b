"""Driving TopApp headless: start it on a feed, wait for what the worker posts, read widgets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import Static

from ksmtrace.top.feeds import Feed
from ksmtrace.tui import TopApp

Body = Callable[[Pilot[int], TopApp], Awaitable[None]]


async def wait_until(pilot: Pilot[int], pred: Callable[[], bool], timeout_s: float = 15) -> None:
    """Let the app run until ``pred()`` holds (the worker posts from its own thread)."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


async def wait_shown(pilot: Pilot[int], app: TopApp, t_s: float) -> None:
    """Wait until the snapshot at trace time ``t_s`` is on screen."""
    await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.t_s == t_s)
    await pilot.pause()


def run_app(app: TopApp, body: Body, size: tuple[int, int] = (100, 32)) -> None:
    """Run ``body`` against the app once its first snapshot is shown; the app then quits."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: app.snapshot is not None)
            await pilot.pause()
            await body(pilot, app)

    asyncio.run(main())
    assert app.worker.closed.wait(10), "quitting closes the feed"


def paused_app(feed: Feed, at_s: float, **kw: object) -> TopApp:
    """An app paused at trace time ``at_s``."""
    return TopApp(feed, paused=True, seek_s=at_s, **kw)  # type: ignore[arg-type]


def text_of(app: TopApp, selector: str) -> str:
    """The plain text a Static shows."""
    return str(app.query_one(selector, Static).content)
