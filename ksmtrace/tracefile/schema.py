"""The trace file's SQLite schema, identification (magic, version) and provenance header."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Value of the ``magic`` row of the ``meta`` table.
MAGIC = "ksmtrace-trace"
#: Format version this ksmtrace writes and the newest it reads (``PRAGMA user_version``).
FORMAT_VERSION = 1
#: ``PRAGMA application_id`` of trace files: the bytes "ksmt" (offset 68 of the file).
APPLICATION_ID = 0x6B736D74
#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Conventional file name suffix.
SUFFIX = ".ksmtrace"

SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                    -- JSON
);
CREATE TABLE event_kinds (
    kind INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE samples (
    id          INTEGER PRIMARY KEY,
    ts_ns       INTEGER NOT NULL,          -- CLOCK_MONOTONIC of the read
    wall_ns     INTEGER NOT NULL,          -- CLOCK_REALTIME of the read, 0 if unknown
    ksmd_cpu_ns INTEGER NOT NULL,          -- -1 if unknown
    page_size   INTEGER NOT NULL
);
CREATE TABLE sample_counters (
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    file      TEXT NOT NULL,               -- 'ksm' (/sys/kernel/mm/ksm) or 'vmstat'
    name      TEXT NOT NULL,
    value     ANY NOT NULL,                -- integer, or text (advisor_mode)
    PRIMARY KEY (sample_id, file, name)
) WITHOUT ROWID;
CREATE TABLE process_samples (
    sample_id      INTEGER NOT NULL REFERENCES samples(id),
    pid            INTEGER NOT NULL,
    rmap_items     INTEGER NOT NULL,
    zero_pages     INTEGER NOT NULL,
    merging_pages  INTEGER NOT NULL,
    process_profit INTEGER NOT NULL,
    mergeable      INTEGER,                -- NULL when the kernel does not say
    merge_any      INTEGER,
    PRIMARY KEY (sample_id, pid)
) WITHOUT ROWID;
CREATE TABLE ticks (
    id                 INTEGER PRIMARY KEY,
    start_ns           INTEGER NOT NULL,
    end_ns             INTEGER NOT NULL,
    sample_id          INTEGER NOT NULL REFERENCES samples(id),
    previous_sample_id INTEGER REFERENCES samples(id),
    events             INTEGER NOT NULL
);
CREATE TABLE event_chunks (
    tick_id     INTEGER NOT NULL REFERENCES ticks(id),
    seq         INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    first_ts_ns INTEGER NOT NULL,
    last_ts_ns  INTEGER NOT NULL,
    codec       TEXT NOT NULL,
    crc32       INTEGER NOT NULL,          -- of data as stored
    data        BLOB NOT NULL,
    PRIMARY KEY (tick_id, seq)
);
CREATE TABLE event_counts (
    tick_id    INTEGER NOT NULL REFERENCES ticks(id),
    pid        INTEGER NOT NULL,
    kind       INTEGER NOT NULL REFERENCES event_kinds(kind),
    events     INTEGER NOT NULL,
    value_sum  INTEGER,                    -- SCAN: pages, UNMERGE: pages, else NULL
    value2_sum INTEGER,                    -- SCAN: ksmd CPU ns, UNMERGE: zero pages, else NULL
    PRIMARY KEY (tick_id, pid, kind)
) WITHOUT ROWID;
CREATE TABLE lost_events (
    tick_id INTEGER NOT NULL REFERENCES ticks(id),
    kind    INTEGER NOT NULL,
    events  INTEGER NOT NULL,
    PRIMARY KEY (tick_id, kind)
) WITHOUT ROWID;
CREATE TABLE identities (
    tick_id    INTEGER NOT NULL,           -- first tick this identity holds from
    pid        INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    comm       TEXT NOT NULL,
    vm         TEXT,
    vm_kind    TEXT,
    vm_uuid    TEXT,
    cgroup     TEXT,
    container  TEXT,
    pod        TEXT,
    unit       TEXT,
    PRIMARY KEY (tick_id, pid)
) WITHOUT ROWID;
CREATE TABLE knob_changes (
    tick_id INTEGER NOT NULL REFERENCES ticks(id),
    ts_ns   INTEGER NOT NULL,
    name    TEXT NOT NULL,
    old     ANY,
    new     ANY
);
CREATE VIEW process_activity AS
    SELECT c.pid,
           (SELECT i.comm FROM identities i WHERE i.pid = c.pid
              ORDER BY i.tick_id DESC LIMIT 1) AS comm,
           (SELECT i.vm FROM identities i WHERE i.pid = c.pid
              ORDER BY i.tick_id DESC LIMIT 1) AS vm,
           k.name AS kind, sum(c.events) AS events, sum(c.value_sum) AS value_sum,
           sum(c.value2_sum) AS value2_sum
      FROM event_counts c JOIN event_kinds k USING (kind)
     GROUP BY c.pid, c.kind;
CREATE VIEW counters AS
    SELECT s.id AS sample_id, s.ts_ns, s.wall_ns, c.file, c.name, c.value
      FROM samples s JOIN sample_counters c ON c.sample_id = s.id;
"""


@dataclass(slots=True)
class TraceHeader:
    """Provenance of a trace: the ``meta`` table as an object.

    Attributes:
        magic: always :data:`MAGIC`.
        format_version: the file's format version.
        ksmtrace_version: version of the ksmtrace that recorded it.
        hostname: host name of the recording machine.
        kernel_release: ``uname -r`` of the recording machine.
        kernel_version: ``uname -v``.
        machine: ``uname -m``.
        page_size: page size in bytes.
        started_wall_ns: CLOCK_REALTIME when recording began.
        started_mono_ns: CLOCK_MONOTONIC when recording began.
        interval_s: seconds per tick asked for.
        knobs: KSM knobs (/sys/kernel/mm/ksm) when recording began.
        probes: probe set in use: attach points, page-walk state, header tree, ksmd pid.
        probe_stats: probe self-metrics, last seen (updated while recording).
        filter_pids: processes the recording was limited to (empty: all).
        filter_vms: VM names the recording was limited to (empty: all).
        sanitized: whether mm addresses and frame numbers were replaced by salted ids.
        event_fields: field names and numpy types of the stored event records.
        stop_reason: why recording ended; empty while recording or after a crash.
        finished_wall_ns: CLOCK_REALTIME when recording ended (0: never finished cleanly).
        note: free text given with ``record --note``.
    """

    magic: str = MAGIC
    format_version: int = FORMAT_VERSION
    ksmtrace_version: str = ""
    hostname: str = ""
    kernel_release: str = ""
    kernel_version: str = ""
    machine: str = ""
    page_size: int = 4096
    started_wall_ns: int = 0
    started_mono_ns: int = 0
    interval_s: float = 1.0
    knobs: dict[str, int | str] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)
    probe_stats: dict[str, int] = field(default_factory=dict)
    filter_pids: list[int] = field(default_factory=list)
    filter_vms: list[str] = field(default_factory=list)
    sanitized: bool = True
    event_fields: list[list[str]] = field(default_factory=list)
    stop_reason: str = ""
    finished_wall_ns: int = 0
    note: str = ""

    def meta_rows(self) -> list[tuple[str, str]]:
        """(key, JSON value) rows of the ``meta`` table."""
        return [(k, json.dumps(v, sort_keys=True)) for k, v in asdict(self).items()]

    @classmethod
    def from_meta(cls, rows: dict[str, str]) -> TraceHeader:
        """Rebuild a header from ``meta`` rows; unknown keys are ignored, missing ones default.

        Raises:
            ValueError: a value is not valid JSON.
        """
        known = {f.name for f in fields(cls)}
        values = {k: json.loads(v) for k, v in rows.items() if k in known}
        return cls(**values)
