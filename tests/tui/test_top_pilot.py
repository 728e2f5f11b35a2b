"""ksmtrace top driven by keys (textual Pilot) on recorded and synthetic sources."""

from __future__ import annotations

import dataclasses

from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Input

from ksmtrace.kernel.smaps import Vma
from ksmtrace.mergeability import Mergeability
from ksmtrace.top.columns import COLUMNS
from ksmtrace.top.feeds import LiveFeed
from ksmtrace.top.model import Regions
from ksmtrace.top.synthetic import FakeHost, FakeProcess, SyntheticSource
from ksmtrace.tui import TopApp
from ksmtrace.tui.app import WIDE_FROM
from ksmtrace.tui.help import HelpScreen
from ksmtrace.tui.widgets.detail import DetailPane
from ksmtrace.tui.widgets.header import KsmHeader
from ksmtrace.tui.widgets.table import ProcessTable

from . import scenarios
from .helpers import paused_app, run_app, text_of, wait_shown, wait_until


def labels(app: TopApp) -> list[str]:
    return [r.label for r in app.shown_rows]


def table_keys(app: TopApp) -> list[str]:
    return app.query_one(ProcessTable).keys


def test_sorting_by_keys_and_column_number() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert app.sort_id == "saved" and labels(app)[0] == "guest-a[201]"
        await pilot.press("5")  # COW/s
        assert (app.sort_id, app.descending) == ("cows", True)
        assert labels(app)[0] == "cache[103]"
        assert table_keys(app) == [r.key for r in app.shown_rows]
        header = app.query_one(ProcessTable).header
        assert "COW/s▼" in header and header.count("▼") == 1
        await pilot.press("5")  # again: ascending
        assert not app.descending and labels(app)[-1] == "cache[103]"
        await pilot.press("s")
        assert app.sort_id == "churn" and app.descending
        await pilot.press("S", "S")
        assert app.sort_id == "merges"
        await pilot.press("r")
        assert not app.descending
        rates = [r.merges_per_s for r in app.shown_rows]
        assert rates == sorted(rates)
        await pilot.press("1")
        assert labels(app) == sorted(labels(app), key=str.lower)

    run_app(paused_app(scenarios.busy(), 20), body)


def test_filtering_by_name_and_clearing() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await pilot.press("slash", "w", "e", "b")
        assert isinstance(app.focused, Input)
        assert labels(app) == ["web-1[101]", "web-2[102]"]
        assert len(table_keys(app)) == 2
        await pilot.press("enter")
        assert isinstance(app.focused, ProcessTable) and app.filter_text == "web"
        await pilot.press("slash", "x", "y", "z")
        assert not app.query_one("#table").display
        assert "No row matches the filter 'webxyz'" in text_of(app, "#empty")
        await pilot.press("escape")
        assert app.filter_text == "" and len(labels(app)) == 6
        assert app.query_one("#table").display
        await pilot.press("slash", "a", "slash", "b")  # '/' inside the filter is a character
        assert app.filter_text == "a/b"

    run_app(paused_app(scenarios.busy(), 20), body)


def test_selecting_a_row_shows_it_in_the_detail_pane() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        first, second = app.shown_rows[0], app.shown_rows[1]
        assert text_of(app, "#detail-title").startswith(first.label)
        await pilot.press("down")
        assert app.selected_key == second.key
        assert text_of(app, "#detail-title").startswith(second.label)
        assert f"merging {second.merging_pages}" in text_of(app, "#detail-stat")
        ident = second.identities[0]
        assert f"{ident.comm}[{ident.pid}]  {ident.cgroup}" in text_of(app, "#detail-identity")
        assert "recorded traces carry ksm_stat, not smaps" in text_of(app, "#detail-regions")
        # The selection stays on the same process when the order changes.
        await pilot.press("5")
        assert app.selected_key == second.key
        assert app.query_one(ProcessTable).cursor_key == second.key
        await pilot.press("d")
        assert not app.query_one(DetailPane).display
        await pilot.press("d")
        assert app.query_one(DetailPane).display

    run_app(paused_app(scenarios.busy(), 20), body)


def test_the_churning_row_shows_lifetimes_and_its_diagnosis() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await pilot.press("5")  # the cache has the most COW/s
        assert labels(app)[0] == "cache[103]" and app.selected_key != "103"
        await pilot.press("end")
        await wait_until(pilot, lambda: app.selected_key == app.shown_rows[-1].key)
        await pilot.press("home")
        await wait_until(pilot, lambda: app.selected_key == "103")
        assert "≤500ms" in text_of(app, "#detail-hist")
        assert "Merges are broken faster than a full scan" in text_of(app, "#detail-findings")
        assert "COW/s" in text_of(app, "#findings") or "churn" in text_of(app, "#findings")

    run_app(paused_app(scenarios.busy(), 20), body)


def test_grouping_cycles_process_vm_cgroup() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await pilot.press("g")
        assert app.grouping == "vm"
        assert sorted(labels(app)) == ["(no vm)", "guest-a", "guest-b"]
        row = app.shown_rows[0]
        assert text_of(app, "#detail-title") == f"{row.label}  {len(row.pids)} process" + (
            "es" if len(row.pids) > 1 else ""
        )
        await pilot.press("g")
        assert app.grouping == "cgroup"
        assert sorted(labels(app)) == ["app.service", "machine-qemu.scope"]
        await pilot.press("g")
        assert app.grouping == "process" and len(labels(app)) == 6

    run_app(paused_app(scenarios.busy(), 20), body)


def test_pausing_speed_and_seeking_move_the_time_cursor() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_shown(pilot, app, 10.0)
        timeline = text_of(app, "#timeline")
        assert timeline.startswith("⏸ PAUSED") and timeline.endswith("10.0s / 60.0s")
        await pilot.press("right")
        await wait_shown(pilot, app, 15.0)
        await pilot.press("left", "left")
        await wait_shown(pilot, app, 5.0)
        await pilot.press("right_square_bracket")
        await wait_shown(pilot, app, 60.0)
        await pilot.press("b")
        await wait_shown(pilot, app, 1.0)
        await pilot.press("e")
        await wait_shown(pilot, app, 60.0)
        await pilot.press("b", "plus", "plus")
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.speed == 5.0)
        await pilot.press("space")
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.t_s >= 3)
        assert not app.snapshot.paused and text_of(app, "#timeline").startswith("▶ 5x")
        await pilot.press("space")
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.paused)
        t = app.snapshot.t_s
        await pilot.pause(0.5)
        assert app.snapshot.t_s == t, "paused means paused"
        await pilot.press("minus")
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.speed == 2.0)

    run_app(paused_app(scenarios.busy(), 10), body)


def test_help_lists_every_key_and_closes() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-box Static").content)
        for binding in TopApp.BINDINGS:
            if "sort_by" not in binding.action:
                assert binding.description in text, binding
        for col in COLUMNS:
            assert col.help in text
        for key in ("space / p", "left", "[", "1-9", "up / down", "ctrl+c"):
            assert key in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        assert not isinstance(app.screen, HelpScreen)
        assert app.is_running, "q closes the help page, not the app"

    run_app(paused_app(scenarios.busy(), 10), body, size=(80, 24))


def test_ksm_off_is_said_in_place_of_nothing() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert [f.code for f in app.host_findings] == ["ksm-off"]
        assert "KSM is off (run=0)" in text_of(app, "#findings")
        assert text_of(app, "#header").startswith("KSM off")

    run_app(paused_app(scenarios.ksm_off(), 10), body)


def test_nothing_registered_fills_the_empty_table_with_who_stopped_when() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert app.shown_rows == []
        assert not app.query_one("#table").display
        text = text_of(app, "#empty")
        assert "No process has memory registered as mergeable" in text
        assert "web-1[101] at 4.0s: prctl(PR_SET_MEMORY_MERGE, 0)" in text

    run_app(paused_app(scenarios.nothing_registered(), 15), body)


def test_scanning_without_merging_is_explained() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert app.host_findings[0].code == "nothing-merges"
        assert "ksmd is scanning but nothing merges" in text_of(app, "#findings")
        assert "Scanned but nothing merges" in text_of(app, "#detail-findings")

    run_app(paused_app(scenarios.nothing_merges(), 15), body)


def test_churn_is_explained() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert [f.code for f in app.host_findings] == ["churn"]
        assert "Merges are broken faster than a full scan" in text_of(app, "#findings")

    run_app(paused_app(scenarios.churn(), 15), body)


def test_costly_ksmd_is_explained() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert [f.code for f in app.host_findings] == ["cpu-costly"]
        assert "ksmd's CPU is high for what it saves" in text_of(app, "#findings")
        await pilot.press("9")  # efficiency
        assert "Costs ksmd CPU, saves almost nothing" in text_of(app, "#detail-findings") or (
            app.shown_rows[0].label == "small[102]"
        )

    run_app(paused_app(scenarios.cpu_costly(), 15), body)


def test_huge_pages_and_shared_memory_in_the_regions_are_explained() -> None:
    mib = 1 << 20
    vmas = (
        Vma(0, 256 * mib, "/dev/hugepages/guest", hugetlb=True),
        Vma(256 * mib, 768 * mib, "/memfd:pc.ram (deleted)", shared=True),
        Vma(768 * mib, 800 * mib, "[anon]", mergeable=True, anon_bytes=32 * mib, ksm_bytes=mib),
    )
    procs = [FakeProcess(301, "qemu-system-x86", merges_per_s=10, merging=100, vm="big-vm")]
    source = SyntheticSource(procs, FakeHost(interval_s=0.05), realtime=True)
    off = Mergeability(302, "guest-off", "qemu", False, ("QEMU runs with mem-merge=off",))
    app = TopApp(LiveFeed(source, 0.05), regions=lambda pid: Regions(pid, vmas), vms=lambda: [off])

    async def body(pilot: Pilot[int], app: TopApp) -> None:
        await wait_until(
            pilot,
            lambda: (
                "hugetlbfs" in text_of(app, "#detail-findings")
                and "mappings" in text_of(app, "#detail-regions")
                and "VM cannot merge" in text_of(app, "#findings")
            ),
        )
        findings = text_of(app, "#detail-findings")
        assert "256.0M in hugetlbfs mappings" in findings
        assert "512.0M in shared mappings" in findings
        regions = text_of(app, "#detail-regions")
        assert "[301] 1 mappings, 32.0M" in regions and "/memfd:pc.ram" in regions
        assert text_of(app, "#timeline").startswith("● LIVE")
        assert "1 VM cannot merge guest RAM" in text_of(app, "#findings")

    run_app(app, body)
    assert source.closed, "quitting closed the live source"


def test_q_and_ctrl_c_quit_and_close_the_source() -> None:
    for key in ("q", "ctrl+c"):
        source = SyntheticSource(scenarios.busy_procs(), FakeHost(interval_s=0.05), realtime=True)
        app = TopApp(LiveFeed(source, 0.05))

        async def body(pilot: Pilot[int], app: TopApp, key: str = key) -> None:
            await pilot.press(key)
            await wait_until(pilot, lambda: not app.is_running)

        run_app(app, body)
        assert source.closed, key


def test_80x24_fits_every_column_and_160x48_puts_the_detail_beside() -> None:
    async def narrow(pilot: Pilot[int], app: TopApp) -> None:
        table = app.query_one(ProcessTable)
        assert len(table.header) <= table.size.width
        assert not app.screen.has_class("-wide")
        assert app.query_one(DetailPane).region.y > table.region.y

    async def wide(pilot: Pilot[int], app: TopApp) -> None:
        table = app.query_one(ProcessTable)
        await wait_until(pilot, lambda: app.screen.has_class("-wide"))
        await pilot.pause()
        assert app.query_one(DetailPane).region.x > table.region.x
        assert table.name_width() > 14

    run_app(paused_app(scenarios.busy(), 20), narrow, size=(80, 24))
    run_app(paused_app(scenarios.busy(), 20), wide, size=(160, 48))


def test_resizing_places_the_detail_pane_for_the_new_width_and_refits_the_table() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        table = app.query_one(ProcessTable)
        for width, wide in ((160, True), (100, False), (WIDE_FROM - 1, False), (WIDE_FROM, True)):
            await pilot.resize_terminal(width, 40)
            await wait_until(pilot, lambda: table.size.width > len(table.header))
            await pilot.pause()
            assert app.screen.has_class("-wide") == wide, width
            assert len(table.header) == table.size.width - 1, width
            assert table.header.rstrip().endswith("EFF"), "every column is shown"

    run_app(paused_app(scenarios.busy(), 20), body, size=(100, 32))


def test_header_lines_never_wrap_and_keep_the_rates_at_80_columns() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        assert app.snapshot is not None
        host = dataclasses.replace(
            app.snapshot.host,
            saved_bytes=123 << 30,
            zero_page_bytes=12 << 30,
            general_profit=-(12 << 30),
            ksmd_cpu_pct=100.0,
            scan_pages_per_s=1_234_567,
            full_scans=123_456,
            last_scan_s=1234.5,
            last_scan_cpu_s=123.4,
            merges_per_s=123_456,
            cow_per_s=123_456,
            lost_window=123_456,
            lost_total=12_345_678,
        )
        header = app.query_one(KsmHeader)
        header.show(dataclasses.replace(app.snapshot, host=host))
        await pilot.pause()
        lines = [
            "".join(seg.text for seg in strip).strip()
            for strip in header.render_lines(Region(0, 0, header.outer_size.width, 3))
        ]
        assert lines[0].startswith("KSM on") and lines[1].startswith("saved 123.0G"), lines
        assert lines[2].startswith("full scans 123456"), lines
        for word in ("profit", "ksmd 100.0% CPU", "merges", "COW", "lost"):
            assert word in lines[1] + lines[2], (word, lines)

    run_app(paused_app(scenarios.busy(), 10), body, size=(80, 24))


def test_the_detail_pane_scrolls_with_shift_arrows_at_80x24() -> None:
    async def body(pilot: Pilot[int], app: TopApp) -> None:
        detail = app.query_one(DetailPane)
        await wait_until(pilot, lambda: detail.max_scroll_y > 0)
        table_cursor = app.query_one(ProcessTable).cursor
        await pilot.press("shift+down", "J")
        await wait_until(pilot, lambda: detail.scroll_y == min(6, detail.max_scroll_y))
        assert app.query_one(ProcessTable).cursor == table_cursor, "the table keeps its row"
        await pilot.press("K", "shift+up")
        await wait_until(pilot, lambda: detail.scroll_y == 0)

    run_app(paused_app(scenarios.busy(), 20), body, size=(80, 24))
