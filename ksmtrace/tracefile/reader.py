"""Reading a trace file: checks that it is one, then returns its Ticks, salvaging damage."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ksmtrace.errors import KsmtraceError, TraceFormatError
from ksmtrace.events import (
    EVENT_DTYPE,
    EventBatch,
    HostSample,
    ProcessIdentity,
    ProcessKsm,
    Tick,
)
from ksmtrace.tracefile.codec import (
    CHUNK_EVENTS,
    CodecError,
    decode_events,
    event_fields,
    stored_dtype,
)
from ksmtrace.tracefile.schema import (
    APPLICATION_ID,
    FORMAT_VERSION,
    MAGIC,
    SQLITE_MAGIC,
    TraceHeader,
)

#: Consecutive unreadable tick ids after which salvaging stops looking for more.
_SALVAGE_GAP = 64


class TraceRecordError(KsmtraceError):
    """One record of a trace cannot be read (the rest of the file may still be fine)."""


@dataclass(frozen=True, slots=True)
class TickRow:
    """A row of the ``ticks`` table."""

    id: int
    start_ns: int
    end_ns: int
    sample_id: int
    previous_sample_id: int | None
    events: int


def _db_pages(head: bytes) -> tuple[int, int] | None:
    """(page size, page count) from a SQLite file header, if the count is valid."""
    if len(head) < 100 or head[24:28] != head[92:96]:  # change counter = version-valid-for
        return None
    page = int.from_bytes(head[16:18], "big")
    return (65536 if page == 1 else page), int.from_bytes(head[28:32], "big")


def check_file(path: Path) -> tuple[list[str], bool]:
    """Check that ``path`` looks like a trace before SQLite opens it.

    Returns:
        Warnings, and whether the file is shorter than its header says (truncated: it can
        still be partly read).

    Raises:
        TraceFormatError: missing, empty, or not an SQLite file.
    """
    wal = Path(f"{path}-wal")
    try:
        st = path.stat()
        with path.open("rb") as f:
            head = f.read(100)
    except IsADirectoryError:
        raise TraceFormatError(f"{path}: is a directory, not a trace file") from None
    except FileNotFoundError:
        raise TraceFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot read it: {exc.strerror}") from exc
    if st.st_size == 0 and not wal.exists():
        raise TraceFormatError(
            f"{path}: the file is empty, not a trace (was the recording stopped before it began?)"
        )
    if st.st_size and not head.startswith(SQLITE_MAGIC[: len(head)]):
        raise TraceFormatError(f"{path}: not a ksmtrace trace (no SQLite header)")
    if 0 < st.st_size < 100:
        raise TraceFormatError(f"{path}: truncated to {st.st_size} bytes, not even a header left")
    pages = _db_pages(head)
    if pages and not wal.exists() and st.st_size < pages[0] * pages[1]:
        return [
            f"{path}: the file is truncated ({st.st_size} of {pages[0] * pages[1]} bytes); "
            "replaying what is readable"
        ], True
    return [], False


def _connect(path: Path, truncated: bool) -> sqlite3.Connection:
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    # rw lets SQLite fold in a WAL left by a crash; a truncated file is only ever read.
    mode = "rw" if writable and not truncated else "ro"
    db = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True)
    if truncated:
        # SQLite refuses a file shorter than its header says unless the schema is
        # "writable"; on a read-only connection this only lets it read the pages present.
        db.execute("PRAGMA writable_schema=ON")
    return db


class TraceReader:
    """A trace file opened for reading.

    Attributes:
        path: the file.
        header: its provenance.
        ticks: rows of its ``ticks`` table, in order (those that could be read).
        warnings: problems found so far (damage that was skipped), one line each.
        unreadable_events: events that were stored but could not be decoded.
        lost_unknown: intervals whose lost-event counts could not be read.
    """

    def __init__(self, path: Path) -> None:
        """Open and check a trace.

        Raises:
            TraceFormatError: not a trace, empty, from a newer format, or unreadable header.
        """
        self.path = path
        self.warnings, truncated = check_file(path)
        self._truncated = truncated
        self.unreadable_events = 0
        self.lost_unknown = 0
        self._skipped: dict[int, int] = {}
        self._chunk_index: dict[int, list[tuple[int, int, int, str, int]]] | None = None
        try:
            self.db = _connect(path, truncated)
        except sqlite3.Error as exc:
            raise TraceFormatError(f"{path}: cannot open: {exc}") from exc
        try:
            self.header = self._read_header()
            self.dtype = stored_dtype(self.header.event_fields or event_fields(EVENT_DTYPE))
            self.ticks = self._list_ticks()
            self._identities = self._load_identities()
        except BaseException:
            self.db.close()
            raise
        self._samples: dict[int, HostSample] = {}

    def close(self) -> None:
        """Close the file."""
        self.db.close()

    # -- header ----------------------------------------------------------------------------

    def _read_header(self) -> TraceHeader:
        p = self.path
        try:
            app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise TraceFormatError(f"{p}: not a ksmtrace trace ({exc})") from exc
        if app_id != APPLICATION_ID:
            tables = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and tables == 0:
                raise TraceFormatError(f"{p}: holds no trace (an empty SQLite database)")
            raise TraceFormatError(
                f"{p}: not a ksmtrace trace (an SQLite database of another kind)"
            )
        if version > FORMAT_VERSION:
            raise TraceFormatError(
                f"{p}: trace format version {version} is newer than this ksmtrace reads "
                f"(up to {FORMAT_VERSION}); upgrade ksmtrace to read it"
            )
        try:
            rows = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            header = TraceHeader.from_meta(rows)
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            if self._truncated:
                raise TraceFormatError(
                    f"{p}: the file is truncated and its header was on the lost part "
                    f"({exc}), so nothing in it can be replayed; copy the whole file again"
                ) from exc
            raise TraceFormatError(f"{p}: the trace header is unreadable ({exc})") from exc
        if header.magic != MAGIC:
            raise TraceFormatError(f"{p}: not a ksmtrace trace (magic {header.magic!r})")
        if header.format_version > FORMAT_VERSION:
            raise TraceFormatError(
                f"{p}: trace format version {header.format_version} is newer than this "
                f"ksmtrace reads (up to {FORMAT_VERSION}); upgrade ksmtrace to read it"
            )
        return header

    # -- ticks -----------------------------------------------------------------------------

    def _list_ticks(self) -> list[TickRow]:
        sql = (
            "SELECT id, start_ns, end_ns, sample_id, previous_sample_id, events FROM ticks "
            "WHERE id >= ? ORDER BY id"
        )
        rows: list[TickRow] = []
        try:
            cur = self.db.execute(sql, (1,))
            while batch := cur.fetchmany(256):
                rows += [TickRow(*r) for r in batch]
            return rows
        except sqlite3.DatabaseError as exc:
            damage = str(exc)
        # Salvage: look up the ids after the damage one by one.
        next_id, misses, found = (rows[-1].id + 1 if rows else 1), 0, 0
        while misses < _SALVAGE_GAP:
            try:
                r = self.db.execute(sql.replace(">=", "="), (next_id,)).fetchone()
            except sqlite3.DatabaseError:
                r = None
            if r is None:
                misses += 1
            else:
                rows.append(TickRow(*r))
                misses, found = 0, found + 1
            next_id += 1
        if not rows:
            raise TraceFormatError(f"{self.path}: no interval of the trace is readable ({damage})")
        self.warnings.append(
            f"{self.path}: the interval index is damaged ({damage}); "
            f"{len(rows)} intervals readable, the rest skipped"
        )
        return rows

    def _load_identities(self) -> dict[int, list[tuple[int, ProcessIdentity]]]:
        out: dict[int, list[tuple[int, ProcessIdentity]]] = {}
        try:
            for row in self.db.execute(
                "SELECT tick_id, pid, comm, start_time, vm, vm_kind, vm_uuid, cgroup, "
                "container, pod, unit FROM identities ORDER BY tick_id"
            ):
                out.setdefault(row[1], []).append((row[0], ProcessIdentity(*row[1:])))
        except sqlite3.DatabaseError as exc:
            self.warnings.append(
                f"{self.path}: process names are partly unreadable ({exc}); "
                "affected processes show as '?'"
            )
        return out

    def recorded_pids(self) -> set[int]:
        """Every pid the trace names: in its identities, or in its per-process samples."""
        pids = set(self._identities)
        with contextlib.suppress(sqlite3.DatabaseError):  # damaged: the identities alone
            pids.update(r[0] for r in self.db.execute("SELECT DISTINCT pid FROM process_samples"))
        return pids

    def identity_at(self, pid: int, tick_id: int) -> ProcessIdentity | None:
        """Who ``pid`` was during tick ``tick_id`` (its latest identity stored by then)."""
        best = None
        for first, ident in self._identities.get(pid, ()):
            if first > tick_id:
                break
            best = ident
        if best is None and pid in self._identities:
            best = self._identities[pid][0][1]
        return best

    def sample(self, sample_id: int) -> HostSample:
        """One stored HostSample.

        Raises:
            TraceRecordError: the sample is missing or damaged.
        """
        cached = self._samples.get(sample_id)
        if cached is not None:
            return cached
        try:
            head = self.db.execute(
                "SELECT ts_ns, wall_ns, ksmd_cpu_ns, page_size FROM samples WHERE id = ?",
                (sample_id,),
            ).fetchone()
            counters = self.db.execute(
                "SELECT file, name, value FROM sample_counters WHERE sample_id = ?", (sample_id,)
            ).fetchall()
            procs = self.db.execute(
                "SELECT pid, rmap_items, zero_pages, merging_pages, process_profit, mergeable, "
                "merge_any FROM process_samples WHERE sample_id = ?",
                (sample_id,),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise TraceRecordError(f"counter sample {sample_id} is damaged ({exc})") from exc
        if head is None:
            raise TraceRecordError(f"counter sample {sample_id} is missing")
        ksm = {n: v for f, n, v in counters if f == "ksm"}
        vmstat = {n: int(v) for f, n, v in counters if f == "vmstat"}
        processes = {
            r[0]: ProcessKsm(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                mergeable=None if r[5] is None else bool(r[5]),
                merge_any=None if r[6] is None else bool(r[6]),
            )
            for r in procs
        }
        s = HostSample(head[0], ksm, vmstat, head[2], processes, head[3], head[1])
        if len(self._samples) > 4:
            self._samples.clear()
        self._samples[sample_id] = s
        return s

    def events(self, row: TickRow) -> EventBatch:
        """The events of one tick; damaged chunks are skipped with a warning."""
        parts = []
        for seq, count, codec, crc, data in self._chunks(row):
            if data is None:
                continue  # unreadable: already counted by _chunks
            if zlib.crc32(data) != crc:
                self._lost_chunk(row, count, f"event chunk {seq} fails its checksum")
                continue
            try:
                parts.append(decode_events(codec, data, count, self.dtype))
            except CodecError as exc:
                self._lost_chunk(row, count, f"event chunk {seq}: {exc}")
        missing = row.events - sum(len(p) for p in parts) - self._skipped.get(row.id, 0)
        if missing > 0:
            self._lost_chunk(row, missing, "event chunks are missing")
        return EventBatch(np.concatenate(parts) if parts else None)

    def _chunks(self, row: TickRow) -> list[tuple[int, int, str, int, bytes | None]]:
        """(seq, events, codec, crc32, data) of a tick's chunks; data None when unreadable."""
        if self._chunk_index is None:
            try:
                return self.db.execute(
                    "SELECT seq, events, codec, crc32, data FROM event_chunks "
                    "WHERE tick_id = ? ORDER BY seq",
                    (row.id,),
                ).fetchall()
            except sqlite3.DatabaseError:
                self._chunk_index = self._scan_chunk_table()
        out: list[tuple[int, int, str, int, bytes | None]] = []
        for rowid, seq, count, codec, crc in self._chunk_index.get(row.id, []):
            try:
                data = self.db.execute(
                    "SELECT data FROM event_chunks WHERE rowid = ?", (rowid,)
                ).fetchone()[0]
            except (sqlite3.DatabaseError, TypeError) as exc:
                self._lost_chunk(row, count, f"event chunk {seq} is unreadable ({exc})")
                data = None
            out.append((seq, count, codec, crc, data))
        return out

    def _scan_chunk_table(self) -> dict[int, list[tuple[int, int, int, str, int]]]:
        """Find chunks without the (damaged) index, by rowid one at a time.

        Rowids run 1, 2, ... in writing order; each lookup only needs the pages on its own
        path, so chunks beyond damaged pages are still found.
        """
        expected = sum(-(-r.events // CHUNK_EVENTS) for r in self.ticks) + _SALVAGE_GAP
        index: dict[int, list[tuple[int, int, int, str, int]]] = {}
        for rowid in range(1, expected + 1):
            try:
                r = self.db.execute(
                    "SELECT tick_id, seq, events, codec, crc32 FROM event_chunks WHERE rowid = ?",
                    (rowid,),
                ).fetchone()
            except sqlite3.DatabaseError:
                continue
            if r is None or not all(isinstance(v, int) for v in (r[0], r[1], r[2], r[4])):
                continue  # missing, or a damaged page read as empty
            index.setdefault(r[0], []).append((rowid, r[1], r[2], str(r[3]), r[4]))
        for chunks in index.values():
            chunks.sort(key=lambda c: c[1])
        return index

    def _lost_chunk(self, row: TickRow, count: int, why: str) -> None:
        self._skipped[row.id] = self._skipped.get(row.id, 0) + count
        self.unreadable_events += count
        self.warnings.append(f"{self.path}: interval {row.id}: {why}; {count} events skipped")

    def lost(self, row: TickRow) -> dict[int, int]:
        """Events the kernel side dropped during one tick, by EventKind value."""
        try:
            return dict(
                self.db.execute(
                    "SELECT kind, events FROM lost_events WHERE tick_id = ?", (row.id,)
                ).fetchall()
            )
        except sqlite3.DatabaseError as exc:
            self.lost_unknown += 1
            self.warnings.append(
                f"{self.path}: interval {row.id}: lost-event counts damaged ({exc})"
            )
            return {}

    def read_tick(self, row: TickRow) -> Tick:
        """Rebuild one Tick as the live source yielded it.

        Raises:
            TraceRecordError: its counter samples are damaged (the caller skips it).
        """
        sample = self.sample(row.sample_id)
        previous = None if row.previous_sample_id is None else self.sample(row.previous_sample_id)
        events = self.events(row)
        pids = {int(p) for p in np.unique(events.records["pid"])} | set(sample.processes)
        identities = {}
        for pid in sorted(pids):
            ident = self.identity_at(pid, row.id) if pid else None
            if ident is not None:
                identities[pid] = ident
        return Tick(row.start_ns, row.end_ns, events, sample, self.lost(row), identities, previous)
