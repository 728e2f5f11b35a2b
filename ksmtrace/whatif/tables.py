"""Plain-text tables of what-if results."""

from __future__ import annotations

from ksmtrace.render.units import fmt_bytes, fmt_count, fmt_seconds
from ksmtrace.whatif.colocation import Pair
from ksmtrace.whatif.sweep import Outcome


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells))

    return "\n".join([line(header), *(line(r) for r in rows)])


def settings_table(outcomes: list[Outcome], names: tuple[str, ...]) -> str:
    """One row per setting: saving, time to 90 %, ksmd CPU, churn."""
    best = max((o.saved for o in outcomes), default=0.0)
    rows = [
        [
            o.knobs.label(names),
            fmt_bytes(o.saved),
            fmt_bytes(o.mean_saved),
            f"{100 * o.saved / best:.0f}%" if best else "-",
            fmt_seconds(o.t90_s),
            f"{o.cpu_pct:.2f}%",
            f"{o.cpu_steady_pct:.2f}%",
            fmt_count(o.merges_per_s),
            fmt_count(o.cow_per_s),
            str(int(o.series.full_scans[-1])),
        ]
        for o in outcomes
    ]
    header = [
        "setting",
        "SAVED",
        "MEAN",
        "OF BEST",
        "T90",
        "CPU",
        "CPU-END",
        "MERGE/s",
        "COW/s",
        "SCANS",
    ]
    return _table(header, rows)


def pairs_table(pairs: list[Pair], page_size: int, top: int, estimated: list[Pair] | None) -> str:
    """The pairs that share most, with the sketch estimate beside the exact figure."""
    est = {(p.a, p.b): p for p in estimated or []}
    rows = []
    for p in pairs[:top]:
        row = [f"{p.a} + {p.b}", fmt_bytes(p.shared_pages * page_size), f"{p.jaccard:.2f}"]
        e = est.get((p.a, p.b))
        if estimated is not None:
            row.append(fmt_bytes(e.shared_pages * page_size) if e else "-")
        rows.append(row)
    header = ["pair", "SHARED", "JACCARD"] + (["SKETCH"] if estimated is not None else [])
    return _table(header, rows)
