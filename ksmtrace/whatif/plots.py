"""What-if plots (PNG and SVG, matplotlib without a display): savings over time, the frontier."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ksmtrace.private_files import make_private_dir, open_private  # noqa: E402
from ksmtrace.whatif.sweep import Outcome  # noqa: E402

MIB = 1 << 20


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``fig`` as PNG and SVG, mode 0600 (results from per-process snapshots).

    A folder created here is 0700; an existing one keeps its mode.
    """
    make_private_dir(out_dir)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for p in paths:
        with open_private(p) as f:
            fig.savefig(f, format=p.suffix[1:], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def savings_over_time(
    outcomes: list[Outcome], names: tuple[str, ...], out_dir: Path, title: str
) -> list[Path]:
    """One line per setting: predicted saving (MiB) against simulated time."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for o in outcomes:
        s = o.series
        ax.plot(s.t_s, s.saved_bytes / MIB, label=o.knobs.label(names))
    ax.set_xlabel("time since KSM started (s)")
    ax.set_ylabel("memory saved (MiB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return _save(fig, out_dir, "savings-over-time")


def frontier_plot(
    outcomes: list[Outcome],
    best: list[Outcome],
    names: tuple[str, ...],
    out_dir: Path,
    budget_pct: float | None,
    pick: Outcome | None,
) -> list[Path]:
    """Saving against ksmd CPU for every setting, with the frontier and the budget."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([o.cpu_pct for o in outcomes], [o.mean_saved / MIB for o in outcomes], color="0.6")
    ax.plot([o.cpu_pct for o in best], [o.mean_saved / MIB for o in best], "o-", label="frontier")
    for o in best:
        ax.annotate(o.knobs.label(names), (o.cpu_pct, o.mean_saved / MIB), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))  # fmt: skip
    if budget_pct is not None:
        ax.axvline(budget_pct, color="tab:red", ls="--", label=f"budget {budget_pct:g}%")
    if pick is not None:
        ax.scatter([pick.cpu_pct], [pick.mean_saved / MIB], s=120, facecolors="none",
                   edgecolors="tab:red", label="recommended")  # fmt: skip
    ax.set_xlabel("ksmd CPU (% of one CPU)")
    ax.set_ylabel("memory saved, mean over the run (MiB)")
    ax.set_title("savings versus ksmd CPU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_dir, "frontier")
