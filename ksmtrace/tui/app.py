"""``ksmtrace top``: the textual app. Shows the worker's snapshots; keys change only the view.

The app never reads the kernel or a file: the :class:`~ksmtrace.top.worker.SnapshotWorker`
thread does, and posts immutable snapshots as :class:`SnapshotReady` messages. Grouping,
sorting and filtering are pure functions applied here to the shown snapshot, so they answer
a key press at once, also while paused.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import Footer, Input

from ksmtrace.events import GROUPINGS
from ksmtrace.top.columns import COLUMNS, filter_rows, group_rows, sort_rows
from ksmtrace.top.diagnosis import Finding, diagnose_host, diagnose_row
from ksmtrace.top.feeds import Feed
from ksmtrace.top.model import Row, TopSnapshot
from ksmtrace.top.worker import TAPE_SNAPSHOTS, RegionsReader, SnapshotWorker, VmVerdicts
from ksmtrace.tui.help import HelpScreen
from ksmtrace.tui.messages import SnapshotReady, WorkerFailed
from ksmtrace.tui.widgets.detail import DetailPane
from ksmtrace.tui.widgets.findings import EmptyNotice, FindingsPanel
from ksmtrace.tui.widgets.header import KsmHeader
from ksmtrace.tui.widgets.table import ProcessTable
from ksmtrace.tui.widgets.timeline import Timeline

#: From this width on the detail pane sits beside the table instead of below it: the table
#: then gets 55 % of the width, which from here holds every column (see top.tcss).
WIDE_FROM = 140
#: Seconds a Seek with [ or ] moves; left/right move SEEK_SMALL_S.
SEEK_SMALL_S = 5.0
SEEK_LARGE_S = 60.0


class TopApp(App[int]):
    """The live / replay terminal UI.

    Args:
        feed: where the worker reads ticks (live probes or a recording).
        window_s: seconds rates are averaged over.
        speed: initial replay speed.
        paused: start paused.
        seek_s: start at this trace time.
        regions: reads a process's smaps for the detail pane (live only).
        vms: says which VMs on the host can merge (live only).
        grouping: initial grouping ("process", "vm" or "cgroup").
        sort: initial sort column id.
        tape: snapshots kept for seeking back.
    """

    CSS_PATH = Path(__file__).with_name("top.tcss")  # absolute: subclasses live elsewhere
    TITLE = "ksmtrace top"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit (detaches the probes)", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help"),
        # Priority: the app opens the filter before it hands the keys typed right after '/'
        # to the focused widget, so they reach the filter (see action_filter).
        Binding("slash", "filter", "Filter", priority=True),
        Binding("escape", "clear_filter", "Clear the filter", show=False),
        Binding("g", "group", "Group"),
        Binding("s", "sort(1)", "Sort"),
        Binding("S", "sort(-1)", "Sort by the previous column", show=False),
        Binding("r", "reverse", "Reverse the sort order", show=False),
        *(
            Binding(str(i), f"sort_by('{c.id}')", f"Sort by {c.title}", show=False)
            for i, c in enumerate(COLUMNS, 1)
        ),
        Binding("d", "toggle_detail", "Show / hide the detail pane", show=False),
        Binding("shift+down,J", "scroll_detail(3)", "Scroll the detail pane down", show=False),
        Binding("shift+up,K", "scroll_detail(-3)", "Scroll the detail pane up", show=False),
        Binding("space,p", "pause", "Play/Pause"),
        Binding("plus", "faster", "Faster replay", show=False),
        Binding("minus", "slower", "Slower replay", show=False),
        Binding("left", "seek(-5)", "Back 5 s", show=False),
        Binding("right", "seek(5)", "Forward 5 s", show=False),
        Binding("left_square_bracket", "seek(-60)", "Back 60 s", show=False),
        Binding("right_square_bracket", "seek(60)", "Forward 60 s", show=False),
        Binding("b", "seek_start", "Go to the start", show=False),
        Binding("e", "seek_end", "Go to the end (live: follow)", show=False),
    ]

    def __init__(
        self,
        feed: Feed,
        *,
        window_s: float = 5.0,
        speed: float = 1.0,
        paused: bool = False,
        seek_s: float | None = None,
        regions: RegionsReader | None = None,
        vms: VmVerdicts | None = None,
        grouping: str = "process",
        sort: str = "saved",
        tape: int = TAPE_SNAPSHOTS,
        exit_on_signals: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        #: Signals that end the app cleanly, with return code 128 + the signal.
        self.exit_on_signals = exit_on_signals
        self.worker = SnapshotWorker(
            feed, self._post_snapshot, self._post_failure, window_s=window_s, speed=speed,
            paused=paused, seek_s=seek_s, regions=regions, vms=vms, tape=tape,
        )  # fmt: skip
        self.snapshot: TopSnapshot | None = None
        self.grouping = grouping
        self.sort_id = sort
        self.descending = sort != "name"
        self.filter_text = ""
        self.selected_key = ""
        self.failure: BaseException | None = None
        self.shown_rows: list[Row] = []
        self.host_findings: list[Finding] = []
        self.detail_shown = True

    def compose(self) -> ComposeResult:
        """Header, host findings, table (or why it is empty) with the detail pane, timeline."""
        yield KsmHeader(id="header")
        yield FindingsPanel(id="findings")
        with Container(id="body"):
            yield ProcessTable(id="table")
            yield EmptyNotice(id="empty")
            yield DetailPane(id="detail")
        yield Input(placeholder="filter by name, VM or cgroup (enter: keep, esc: clear)",
                    id="filter", select_on_focus=False)  # fmt: skip
        yield Timeline(id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        """Start the worker: it opens the feed and posts the first snapshot."""
        self.query_one("#filter").display = False
        self.query_one("#empty").display = False
        self.query_one(ProcessTable).focus()
        loop = asyncio.get_running_loop()
        for signum in self.exit_on_signals:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signum, self._end_by_signal, signum)
        self.worker.start()

    def _end_by_signal(self, signum: int) -> None:
        """SIGTERM or SIGHUP: leave like 'q' does, restoring the terminal."""
        self.worker.stop(timeout_s=0)
        self.exit(return_code=128 + signum)

    async def on_event(self, event: events.Event) -> None:
        """Input first: the worker folds no tick until the answer to a key or click is drawn."""
        if isinstance(event, events.Key | events.MouseDown) and not event.is_forwarded:
            self.worker.hold()
            self.call_after_refresh(self.worker.release)
        await super().on_event(event)

    def on_unmount(self) -> None:
        """Stop the worker, which closes the feed (live: detaches every probe)."""
        self.worker.stop()

    # -- from the worker thread ---------------------------------------------------------------

    def _post_snapshot(self, snap: TopSnapshot) -> None:
        self.post_message(SnapshotReady(snap))

    def _post_failure(self, error: BaseException) -> None:
        self.post_message(WorkerFailed(error))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Show a new snapshot, then let the worker send the next."""
        if not self.query(KsmHeader):
            return  # the app is closing: its widgets are gone
        self.snapshot = message.snapshot
        self.host_findings = diagnose_host(self.snapshot)
        self.refresh_view()
        self.worker.ack(message.snapshot.seq)

    def on_worker_failed(self, message: WorkerFailed) -> None:
        """The source broke: leave with its message (the command prints it as one line)."""
        self.failure = message.error
        self.exit(1)

    # -- drawing --------------------------------------------------------------------------------

    def refresh_view(self) -> None:
        """Redraw everything from the shown snapshot and the view state."""
        snap = self.snapshot
        if snap is None:
            return
        rows = filter_rows(group_rows(snap.rows, self.grouping), self.filter_text)
        self.shown_rows = sort_rows(rows, self.sort_id, self.descending)
        self.query_one(KsmHeader).show(snap)
        self.query_one(Timeline).show(snap)
        self.query_one(FindingsPanel).show(self.host_findings if self.shown_rows else [])
        table = self.query_one(ProcessTable)
        table.display = bool(self.shown_rows)
        empty = self.query_one(EmptyNotice)
        empty.display = not self.shown_rows
        empty.show(self.host_findings, self.filter_text)
        self.query_one(DetailPane).display = self.detail_shown and bool(self.shown_rows)
        table.show_rows(self.shown_rows, self.sort_id, self.descending, self.selected_key)
        self._refresh_detail()

    def _selected_row(self) -> Row | None:
        for row in self.shown_rows:
            if row.key == self.selected_key:
                return row
        return self.shown_rows[0] if self.shown_rows else None

    def _refresh_detail(self) -> None:
        snap = self.snapshot
        if snap is None or not self.query(DetailPane):
            return
        row = self._selected_row()
        if row is not None:
            self.selected_key = row.key
            self.worker.select(row.pids)
        findings = diagnose_row(snap, row, snap.regions.values()) if row else self.host_findings
        self.query_one(DetailPane).show(snap, row, findings)

    def on_process_table_row_highlighted(self, event: ProcessTable.RowHighlighted) -> None:
        """The cursor moved: show that row in the detail pane."""
        if event.key != self.selected_key:
            self.selected_key = event.key
            self._refresh_detail()

    def on_process_table_header_clicked(self, event: ProcessTable.HeaderClicked) -> None:
        """A click on a column title sorts by it (a second click reverses)."""
        self.action_sort_by(event.column_id)

    def on_resize(self, event: events.Resize) -> None:
        """Beside or below: place the detail pane for the terminal's new width."""
        self.screen.set_class(event.size.width >= WIDE_FROM, "-wide")
        self.call_after_refresh(self.refresh_view)

    # -- view actions ---------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit: the worker stops first (and closes the feed), then the app exits."""
        self.worker.stop(timeout_s=0)
        self.exit()

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(b for b in self.BINDINGS if isinstance(b, Binding)))

    def action_filter(self) -> None:
        """Open the filter line (in it, '/' is typed like any character: cgroup paths)."""
        box = self.query_one("#filter", Input)
        if self.focused is box:
            box.insert_text_at_cursor("/")
            return
        if len(self.screen_stack) > 1:
            return  # the help screen is up
        box.display = True
        # At once, not after the next refresh (Widget.focus): the keys after '/' follow.
        self.screen.set_focus(box)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the user types."""
        self.filter_text = event.value
        self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Keep the filter and go back to the table."""
        event.input.display = bool(event.value)
        self.query_one(ProcessTable).focus()

    def action_clear_filter(self) -> None:
        """Drop the filter and close its line."""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.query_one(ProcessTable).focus()
        self.refresh_view()

    def action_group(self) -> None:
        """Next grouping: process, VM, cgroup."""
        self.grouping = GROUPINGS[(GROUPINGS.index(self.grouping) + 1) % len(GROUPINGS)]
        self.selected_key = ""
        self.notify(f"grouped by {self.grouping}", timeout=2)
        self.refresh_view()

    def action_sort(self, step: int) -> None:
        """Sort by the next (or previous) column."""
        ids = [c.id for c in COLUMNS]
        self.action_sort_by(ids[(ids.index(self.sort_id) + step) % len(ids)], toggle=False)

    def action_sort_by(self, column_id: str, toggle: bool = True) -> None:
        """Sort by a column; choosing the sorted column again reverses the order."""
        if column_id == self.sort_id and toggle:
            self.descending = not self.descending
        else:
            self.sort_id, self.descending = column_id, column_id != "name"
        self.refresh_view()

    def action_reverse(self) -> None:
        """Reverse the sort order."""
        self.descending = not self.descending
        self.refresh_view()

    def action_toggle_detail(self) -> None:
        """Show or hide the detail pane (the table takes the room)."""
        self.detail_shown = not self.detail_shown
        self.refresh_view()

    def action_scroll_detail(self, lines: int) -> None:
        """Scroll the detail pane (the table keeps the arrow keys)."""
        self.query_one(DetailPane).scroll_relative(y=lines, animate=False)

    # -- playback actions (handled by the worker) ---------------------------------------------

    def action_pause(self) -> None:
        """Play / pause a replay; freeze / follow the live view."""
        self.worker.toggle_pause()

    def action_faster(self) -> None:
        """Replay faster."""
        self.worker.faster()

    def action_slower(self) -> None:
        """Replay slower."""
        self.worker.slower()

    def action_seek(self, delta_s: float) -> None:
        """Move the time cursor (live: within the last minutes seen)."""
        self.worker.seek_by(delta_s)

    def action_seek_start(self) -> None:
        """Go to the start of the recording (live: the oldest kept snapshot)."""
        self.worker.seek(0.0)

    def action_seek_end(self) -> None:
        """Go to the end of the recording; live: follow the newest tick again."""
        self.worker.seek(float("inf"))
