"""Writing a trace file: one SQLite transaction per Tick, bounded in size, safe to kill."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ksmtrace.errors import KsmtraceError, UsageError
from ksmtrace.events import (
    ADVISOR_MODES,
    KNOB_NAMES,
    EventArray,
    EventKind,
    HostSample,
    ProcessIdentity,
    Tick,
)
from ksmtrace.tracefile.codec import CHUNK_EVENTS, encode_events, event_fields
from ksmtrace.tracefile.schema import APPLICATION_ID, FORMAT_VERSION, SCHEMA, TraceHeader

_SQLITE_FULL = 13
#: Bytes of SQLite bookkeeping assumed per stored row when estimating a Tick's size.
_ROW_OVERHEAD = 64
#: SQLite page size of trace files without a small --max-size (see page_size_for).
LARGE_PAGE = 32768
#: Pages of a trace before its first interval: page 1 and one root per table and index.
_EMPTY_PAGES = 18
#: Kinds whose ``value``/``value2`` are quantities worth summing in ``event_counts``.
_SUMMED_KINDS = (int(EventKind.SCAN), int(EventKind.UNMERGE))


class TraceFullError(KsmtraceError):
    """The trace reached its size cap or the disk is full; the file is complete up to here.

    Attributes:
        cap_reached: True for the ``max_size`` cap, False for a full disk.
    """

    def __init__(self, message: str, cap_reached: bool) -> None:
        super().__init__(message)
        self.cap_reached = cap_reached


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def check_trace_output(path: Path, overwrite: bool) -> None:
    """Refuse a folder, or an existing file without ``overwrite`` (--force).

    Raises:
        UsageError: ``path`` cannot be the new trace.
    """
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give a file name for the trace")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists: choose another file name, or add --force to replace it")


def _create_private(path: Path, overwrite: bool) -> None:
    """Create ``path`` empty with mode 0600 (and remove stale -wal/-shm files of it)."""
    check_trace_output(path, overwrite)
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from exc
    os.fchmod(fd, 0o600)  # whatever the umask
    os.close(fd)


def knob_change_rows(records: EventArray) -> list[tuple[int, str, int | str, int | str]]:
    """(ts_ns, name, old, new) of the KNOB events among ``records``."""
    rows: list[tuple[int, str, int | str, int | str]] = []
    for r in records[records["kind"] == EventKind.KNOB]:
        index = int(r["addr"])
        name = KNOB_NAMES[index] if index < len(KNOB_NAMES) else f"knob{index}"
        old: int | str = int(r["value2"])
        new: int | str = int(r["value"])
        if name == "advisor_mode":
            old = ADVISOR_MODES[int(old)] if int(old) < len(ADVISOR_MODES) else str(old)
            new = ADVISOR_MODES[int(new)] if int(new) < len(ADVISOR_MODES) else str(new)
        rows.append((int(r["ts_ns"]), name, old, new))
    return rows


def event_count_rows(tick_id: int, records: EventArray) -> list[tuple[int | None, ...]]:
    """Per (pid, kind) event counts of one Tick, with value sums for SCAN and UNMERGE."""
    if not len(records):
        return []
    key = (records["pid"].astype(np.uint64) << np.uint64(16)) | records["kind"].astype(np.uint64)
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    v1 = np.bincount(inverse, weights=records["value"].astype(np.float64), minlength=len(keys))
    v2 = np.bincount(inverse, weights=records["value2"].astype(np.float64), minlength=len(keys))
    rows: list[tuple[int | None, ...]] = []
    for i, k in enumerate(keys.tolist()):
        pid, kind = k >> 16, k & 0xFFFF
        summed = kind in _SUMMED_KINDS
        rows.append(
            (
                tick_id,
                pid,
                kind,
                int(counts[i]),
                int(v1[i]) if summed else None,
                int(v2[i]) if summed else None,
            )
        )
    return rows


def page_size_for(max_size: int | None) -> int:
    """SQLite page size of a new trace: large, so that a truncated file stays readable.

    With 32 KiB pages the schema fits on page 1 and each table's b-tree stays two levels
    deep up to about 90 MiB; rows are then reached through the table's root page, written
    first, so a file cut anywhere still gives every row before the cut. With 4 KiB pages
    the schema spills onto pages allocated later, and a cut loses all of it. A small
    --max-size gets smaller pages, so that the empty schema fits in it.
    """
    if max_size is None:
        return LARGE_PAGE
    page = 4096
    while page < LARGE_PAGE and page * 2 * 64 <= max_size:
        page *= 2
    return page


class TraceWriter:
    """Appends Ticks to a new trace file.

    Every :meth:`write_tick` is one transaction in WAL mode, so a reader (or a crash)
    sees whole Ticks only, and a killed recorder loses at most the Tick being written.
    Not thread-safe: use it from one thread at a time.
    """

    def __init__(
        self,
        path: Path,
        header: TraceHeader,
        *,
        max_size: int | None = None,
        level: int = 1,
        overwrite: bool = False,
    ) -> None:
        """Create the file (mode 0600) and write its header.

        Args:
            path: the trace file to create.
            header: provenance; ``event_fields`` and ``format_version`` are filled in.
            max_size: stop (TraceFullError) before the file would grow beyond this many bytes.
            level: zlib level of event chunks (0: uncompressed).
            overwrite: replace an existing file instead of refusing.

        Raises:
            UsageError: the file exists (without ``overwrite``) or cannot be created.
            TraceFullError: the disk is full already.
        """
        self.path = path
        self.header = header
        self.max_size = max_size
        self.level = level
        self.ticks_written = 0
        self.events_written = 0
        self._last_sample: HostSample | None = None
        self._last_sample_id: int | None = None
        self._identities: dict[int, ProcessIdentity] = {}
        _create_private(path, overwrite)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            with self._full_as_error():
                self._init_file()
        except BaseException as exc:
            # A file without its schema is no trace: remove what was just created.
            self.db.close()
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            if isinstance(exc, TraceFullError):
                raise TraceFullError(
                    f"{path}: the disk is full before the trace could start (it needs about "
                    f"{_EMPTY_PAGES * page_size_for(max_size) // 1024} KiB); nothing recorded, "
                    f"no file left; free space in {path.parent} or record elsewhere",
                    exc.cap_reached,
                ) from None
            raise

    def _init_file(self) -> None:
        db = self.db
        db.execute(f"PRAGMA page_size={page_size_for(self.max_size)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        if self.max_size is not None:
            page = int(db.execute("PRAGMA page_size").fetchone()[0])
            db.execute(f"PRAGMA max_page_count={max(16, self.max_size // page)}")
        self.header.format_version = FORMAT_VERSION
        self.header.event_fields = event_fields()
        with self._transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        with self._transaction():
            db.executemany(
                "INSERT INTO event_kinds VALUES (?, ?)", [(int(k), k.name) for k in EventKind]
            )
            db.executemany("INSERT INTO meta VALUES (?, ?)", self.header.meta_rows())

    # -- transactions and limits -----------------------------------------------------------

    @contextlib.contextmanager
    def _full_as_error(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if _is_full(exc):
                cap = self.max_size is not None and self.size() >= self.max_size * 0.9
                raise TraceFullError(self._full_message(cap), cap) from exc
            raise KsmtraceError(f"{self.path}: cannot write the trace: {exc}") from exc

    def _full_message(self, cap_reached: bool) -> str:
        what = f"reached --max-size ({self.max_size} bytes)" if cap_reached else "the disk is full"
        return (
            f"{self.path}: {what}; recording stopped after {self.ticks_written} intervals "
            f"({self.events_written} events), and the file is complete up to there"
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def size(self) -> int:
        """Bytes the database holds (pages in use, including those still in the WAL)."""
        count = self.db.execute("PRAGMA page_count").fetchone()[0]
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int(count) * int(page)

    # -- writing ---------------------------------------------------------------------------

    def set_meta(self, key: str, value_json: str) -> None:
        """Replace one ``meta`` row (a JSON value), in its own transaction."""
        with self._full_as_error(), self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value_json))

    def write_tick(self, tick: Tick, meta: Mapping[str, str] | None = None) -> None:
        """Append one Tick in one transaction, with ``meta`` rows (JSON values) to replace.

        Raises:
            TraceFullError: the Tick would pass ``max_size``, or the disk is full; nothing of
                this Tick was written.
        """
        rec = tick.events.records
        chunks = [
            (encode_events(rec[i : i + CHUNK_EVENTS], self.level), rec[i : i + CHUNK_EVENTS])
            for i in range(0, len(rec), CHUNK_EVENTS)
        ]
        counts = event_count_rows(self.ticks_written + 1, rec)
        if self.max_size is not None:
            estimate = sum(len(c[0][1]) for c in chunks) + _ROW_OVERHEAD * (
                len(counts) + 2 * len(tick.sample.processes) + len(tick.sample.ksm) + 8
            )
            if self.size() + estimate > self.max_size:
                raise TraceFullError(self._full_message(True), True)
        with self._full_as_error(), self._transaction():
            self._insert_tick(tick, chunks, counts)
            if meta:
                self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        for key, value in (meta or {}).items():
            if hasattr(self.header, key):  # close() rewrites the header: keep it current
                setattr(self.header, key, json.loads(value))
        self.ticks_written += 1
        self.events_written += len(rec)
        self._last_sample = tick.sample

    def _insert_tick(
        self,
        tick: Tick,
        chunks: list[tuple[tuple[str, bytes], EventArray]],
        counts: list[tuple[int | None, ...]],
    ) -> None:
        db = self.db
        prev_id = None
        if tick.previous is not None:
            if self._last_sample is not None and tick.previous is self._last_sample:
                prev_id = self._last_sample_id
            else:
                prev_id = self._insert_sample(tick.previous)
        sample_id = self._insert_sample(tick.sample)
        cur = db.execute(
            "INSERT INTO ticks (start_ns, end_ns, sample_id, previous_sample_id, events) "
            "VALUES (?, ?, ?, ?, ?)",
            (tick.start_ns, tick.end_ns, sample_id, prev_id, len(tick.events)),
        )
        tick_id = cur.lastrowid
        assert tick_id == self.ticks_written + 1, "ticks are numbered 1, 2, ... in order"
        db.executemany(
            "INSERT INTO event_chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    tick_id,
                    seq,
                    len(part),
                    int(part["ts_ns"].min()),
                    int(part["ts_ns"].max()),
                    codec,
                    zlib.crc32(data),
                    data,
                )
                for seq, ((codec, data), part) in enumerate(chunks)
            ],
        )
        db.executemany("INSERT INTO event_counts VALUES (?, ?, ?, ?, ?, ?)", counts)
        db.executemany(
            "INSERT INTO lost_events VALUES (?, ?, ?)",
            [(tick_id, int(k), int(n)) for k, n in sorted(tick.lost.items()) if n],
        )
        db.executemany(
            "INSERT INTO knob_changes VALUES (?, ?, ?, ?, ?)",
            [(tick_id, *row) for row in knob_change_rows(tick.events.records)],
        )
        self._insert_identities(tick_id, tick.identities)
        self._last_sample_id = sample_id

    def _insert_sample(self, s: HostSample) -> int:
        db = self.db
        cur = db.execute(
            "INSERT INTO samples (ts_ns, wall_ns, ksmd_cpu_ns, page_size) VALUES (?, ?, ?, ?)",
            (s.ts_ns, s.wall_ns, s.ksmd_cpu_ns, s.page_size),
        )
        sid = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT INTO sample_counters VALUES (?, ?, ?, ?)",
            [(sid, "ksm", k, v) for k, v in s.ksm.items()]
            + [(sid, "vmstat", k, v) for k, v in s.vmstat.items()],
        )
        db.executemany(
            "INSERT INTO process_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (sid, p.pid, p.rmap_items, p.zero_pages, p.merging_pages, p.process_profit,
                 p.mergeable, p.merge_any)
                for p in s.processes.values()
            ],
        )  # fmt: skip
        return sid

    def _insert_identities(self, tick_id: int, identities: Mapping[int, ProcessIdentity]) -> None:
        changed = [i for pid, i in identities.items() if self._identities.get(pid) != i]
        self.db.executemany(
            "INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (tick_id, i.pid, i.start_time, i.comm, i.vm, i.vm_kind, i.vm_uuid, i.cgroup,
                 i.container, i.pod, i.unit)
                for i in changed
            ],
        )  # fmt: skip
        for i in changed:
            self._identities[i.pid] = i

    # -- closing ---------------------------------------------------------------------------

    def close(self, stop_reason: str = "") -> None:
        """Record why recording ended, fold the WAL into the file and close it.

        A full disk may prevent the last two steps; the file then stays in WAL form and
        still opens and replays (SQLite folds the WAL back in when it is next opened).
        """
        self.header.stop_reason = stop_reason
        self.header.finished_wall_ns = time.time_ns()
        try:
            with self._transaction():
                self.db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", self.header.meta_rows()
                )
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass  # disk full: the file keeps everything committed so far
        finally:
            self.db.close()
