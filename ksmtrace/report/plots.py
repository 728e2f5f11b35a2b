"""Plots of a trace report (matplotlib, drawn off-screen): savings and cost over time."""

from __future__ import annotations

import io
from typing import Any

from ksmtrace.report.model import TraceSummary

#: Processes drawn with their own band in the savings plot; the rest are summed.
TOP_PROCESSES = 6


def _figure(s: TraceSummary) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot as plt

    ser = s.series
    t = ser.t_s
    fig, (ax_saved, ax_cpu, ax_churn) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    fig.suptitle(
        f"{s.path.name}: {s.header.hostname}, Linux {s.header.kernel_release}, {s.duration_s:.0f} s"
    )
    ranked = sorted(ser.process_saved, key=lambda p: -max(ser.process_saved[p], default=0))
    top = ranked[:TOP_PROCESSES]
    bands = [[v / 2**20 for v in ser.process_saved[p]] for p in top]
    labels = [f"{s.identity(p).vm or s.identity(p).comm} [{p}]" for p in top]
    rest = [
        sum(ser.process_saved[p][i] for p in ranked[TOP_PROCESSES:]) / 2**20 for i in range(len(t))
    ]
    if ranked[TOP_PROCESSES:]:
        bands.append(rest)
        others = len(ranked) - TOP_PROCESSES
        labels.append(f"{others} other process{'es' if others > 1 else ''}")
    if bands:
        ax_saved.stackplot(t, *bands, labels=labels, alpha=0.8)
    ax_saved.plot(t, [v / 2**20 for v in ser.saved_bytes], color="black", lw=1, label="host total")
    ax_saved.set_ylabel("saved (MiB)")
    ax_saved.legend(loc="upper left", fontsize="small")
    ax_saved.set_title("Memory saved by KSM, per process", fontsize="medium")

    ax_cpu.plot(t, ser.ksmd_cpu_pct, color="tab:red", label="ksmd CPU %")
    ax_cpu.set_ylabel("ksmd CPU (% of a core)")
    ax_scan = ax_cpu.twinx()
    ax_scan.plot(t, ser.scanned_per_s, color="tab:gray", lw=1, label="pages scanned/s")
    ax_scan.set_ylabel("pages scanned/s")
    ax_cpu.set_title("What it costs: ksmd CPU and scanning", fontsize="medium")
    lines = ax_cpu.get_lines() + ax_scan.get_lines()
    ax_cpu.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize="small")
    changes: dict[float, list[str]] = {}
    for c in s.knob_changes:
        changes.setdefault(c.t_s, []).append(f"{c.name}={c.new}")
    for t_s, texts in changes.items():
        for ax in (ax_saved, ax_cpu, ax_churn):
            ax.axvline(t_s, color="tab:purple", lw=0.8, ls="--")
        ax_cpu.annotate(
            " ".join(texts), (t_s, 0), xytext=(2, 2), textcoords="offset points",
            fontsize="x-small", rotation=90, color="tab:purple",
        )  # fmt: skip

    ax_churn.plot(t, ser.merges_per_s, label="merges/s")
    ax_churn.plot(t, ser.cows_per_s, label="copy-on-write/s")
    ax_churn.set_ylabel("pages/s")
    ax_churn.set_xlabel("seconds into the trace")
    ax_churn.legend(loc="upper left", fontsize="small")
    ax_churn.set_title("Churn: merges and the writes that break them", fontsize="medium")
    fig.tight_layout()
    return fig


#: Image formats ``report --png`` writes, chosen by the output file's suffix (else PNG).
IMAGE_FORMATS = ("png", "svg", "pdf")


def render_png(s: TraceSummary, fmt: str = "png") -> bytes:
    """The report's plots as one image: PNG, or ``fmt`` ("svg", "pdf")."""
    from matplotlib import pyplot as plt

    fig = _figure(s)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    plt.close(fig)
    return buf.getvalue()
