"""A trace as Parquet tables (pyarrow) for DuckDB, Spark and pandas.

``export_parquet`` writes one folder of tables:

  events.parquet          one row per event: time, kind, process (pid, comm, vm), values
  intervals.parquet       one row per interval: its times, every global counter, ksmd CPU,
                          saved bytes, events and lost events
  processes.parquet       one row per process and interval: its ksm_stat and saving share
  knob_changes.parquet    one row per KSM knob change
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ksmtrace.aggregate import share_of_savings
from ksmtrace.events import EventKind, Tick
from ksmtrace.export.timeline import wall_ns
from ksmtrace.private_files import make_private_dir, open_private
from ksmtrace.replay import ReplaySource
from ksmtrace.tracefile.schema import TraceHeader
from ksmtrace.tracefile.writer import knob_change_rows

#: Events buffered before a Parquet row group is written.
ROW_GROUP_EVENTS = 1_000_000

_KIND_NAMES = np.array(
    ["?"] * (max(EventKind) + 1), dtype=object
)  # kind number -> name, "?" for gaps
for _k in EventKind:
    _KIND_NAMES[int(_k)] = _k.name


def _pa() -> Any:
    import pyarrow

    return pyarrow


def _events_table(tick: Tick, header: TraceHeader, index: int) -> Any:
    pa = _pa()
    rec = tick.events.records
    offset = wall_ns(tick.sample, header) - tick.sample.ts_ns  # monotonic -> wall clock
    pids, inverse = np.unique(rec["pid"], return_inverse=True)
    idents = [tick.identities.get(int(p)) for p in pids]
    comm = np.array([i.comm if i else None for i in idents], dtype=object)[inverse]
    vm = np.array([i.vm if i else None for i in idents], dtype=object)[inverse]
    kinds = np.minimum(rec["kind"], len(_KIND_NAMES) - 1)
    return pa.table(
        {
            "interval": pa.array(np.full(len(rec), index, dtype=np.int32)),
            "time": pa.array(
                (rec["ts_ns"].astype(np.int64) + offset).astype("datetime64[ns]"),
                type=pa.timestamp("ns", tz="UTC"),
            ),
            "ts_ns": pa.array(rec["ts_ns"]),
            "kind": pa.array(_KIND_NAMES[kinds].tolist(), type=pa.string()),
            "pid": pa.array(rec["pid"]),
            "tid": pa.array(rec["tid"]),
            "comm": pa.array(comm.tolist(), type=pa.string()),
            "vm": pa.array(vm.tolist(), type=pa.string()),
            "mm": pa.array(rec["mm"]),
            "addr": pa.array(rec["addr"]),
            "value": pa.array(rec["value"]),
            "value2": pa.array(rec["value2"]),
            "err": pa.array(rec["err"]),
            "flags": pa.array(rec["flags"]),
        }
    )


def _interval_row(tick: Tick, header: TraceHeader, index: int) -> dict[str, Any]:
    s = tick.sample
    row: dict[str, Any] = {
        "interval": index,
        "start_ns": tick.start_ns,
        "end_ns": tick.end_ns,
        "time": wall_ns(s, header),
        "events": len(tick.events),
        "lost_events": sum(tick.lost.values()),
        "ksmd_cpu_ns": s.ksmd_cpu_ns,
        "saved_bytes": s.saved_bytes,
        "page_size": s.page_size,
    }
    row.update({f"ksm_{k}": v for k, v in s.ksm.items() if isinstance(v, int)})
    row.update({f"vmstat_{k}": v for k, v in s.vmstat.items()})
    return row


def _process_rows(tick: Tick, header: TraceHeader, index: int) -> list[dict[str, Any]]:
    s = tick.sample
    rows = []
    for pid, st in sorted(s.processes.items()):
        ident = tick.identities.get(pid)
        rows.append(
            {
                "interval": index,
                "time": wall_ns(s, header),
                "pid": pid,
                "comm": ident.comm if ident else None,
                "vm": ident.vm if ident else None,
                "cgroup": ident.cgroup if ident else None,
                "rmap_items": st.rmap_items,
                "merging_pages": st.merging_pages,
                "zero_pages": st.zero_pages,
                "process_profit": st.process_profit,
                "saved_bytes": share_of_savings(s, st.merging_pages, st.zero_pages),
            }
        )
    return rows


def _write_rows(rows: list[dict[str, Any]], path: Path, time_cols: tuple[str, ...]) -> None:
    pa, pq = _pa(), __import__("pyarrow.parquet", fromlist=["parquet"])
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    for col in time_cols:
        if col in table.column_names:
            i = table.column_names.index(col)
            ts = pa.array(table[col].to_numpy().astype("datetime64[ns]"), pa.timestamp("ns", "UTC"))
            table = table.set_column(i, col, ts)
    with open_private(path) as f:
        pq.write_table(table, f)


def export_parquet(
    path: Path | None, out_dir: Path, on_warning: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Write the trace's Parquet tables into ``out_dir``; returns rows per table.

    The tables hold pids, names and cgroups: ``out_dir`` is created 0700 (an existing
    folder is kept as it is) and every file 0600. Parts of a damaged trace that cannot be
    read are skipped and passed to ``on_warning``, one line each.

    Raises:
        TraceFormatError: the file is not a readable trace.
        OSError: the folder or a table cannot be written.
    """
    pa = _pa()
    import pyarrow.parquet as pq

    intervals: list[dict[str, Any]] = []
    processes: list[dict[str, Any]] = []
    knobs: list[dict[str, Any]] = []
    events = 0
    writer = None
    pending: list[Any] = []
    with ReplaySource(path, speed=0, on_warning=on_warning) as src, ExitStack() as files:
        make_private_dir(out_dir)  # only once the trace has opened: no folder for a bad file

        def events_writer(schema: Any) -> Any:
            sink = files.enter_context(open_private(out_dir / "events.parquet"))
            new = pq.ParquetWriter(sink, schema)
            files.callback(new.close)  # runs before the sink closes
            return new

        for index, tick in enumerate(src.ticks(), start=1):
            intervals.append(_interval_row(tick, src.header, index))
            processes += _process_rows(tick, src.header, index)
            offset = wall_ns(tick.sample, src.header) - tick.sample.ts_ns
            for ts, name, old, new in knob_change_rows(tick.events.records):
                knobs.append(
                    {"interval": index, "time": ts + offset, "name": name,
                     "old": str(old), "new": str(new)}
                )  # fmt: skip
            if len(tick.events):
                pending.append(_events_table(tick, src.header, index))
                events += len(tick.events)
            if sum(t.num_rows for t in pending) >= ROW_GROUP_EVENTS:
                writer = writer or events_writer(pending[0].schema)
                writer.write_table(pa.concat_tables(pending))
                pending = []
        if pending:
            writer = writer or events_writer(pending[0].schema)
            writer.write_table(pa.concat_tables(pending))
    _write_rows(intervals, out_dir / "intervals.parquet", ("time",))
    _write_rows(processes, out_dir / "processes.parquet", ("time",))
    _write_rows(knobs, out_dir / "knob_changes.parquet", ("time",))
    return {
        "events": events,
        "intervals": len(intervals),
        "processes": len(processes),
        "knob_changes": len(knobs),
    }
