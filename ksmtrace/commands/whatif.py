"""``ksmtrace whatif``: replay snapshots through the merge engine at other KSM settings."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ksmtrace.commands.argtypes import positive_float, positive_int
from ksmtrace.errors import UsageError
from ksmtrace.private_files import make_private_dir

if TYPE_CHECKING:
    from ksmtrace.engine.cost import CostProfile
    from ksmtrace.engine.knobs import Knobs
    from ksmtrace.engine.replay import Recording
    from ksmtrace.engine.workload import Workload

ORDER = 62
#: Longest simulated run: a week of ksmd, minutes of engine time at busy settings.
MAX_SIMULATED_S = 7 * 86400.0
#: Most samples one simulated run keeps (--step against --duration).
MAX_SAMPLES = 100_000
HELP = "predict KSM savings, speed and ksmd CPU at other settings from snapshots"

DESCRIPTION = """\
Replay page fingerprints (ksmtrace snapshot) through a model of ksmd (the merge engine,
following mm/ksm.c: scan order, two-visit checksum rule, stable and unstable trees,
max_page_sharing chains, smart scan, the scan-time advisor, copy-on-write when a page
changes) and report, per KSM setting: the memory saved at the end, the time until 90 % of
the best saving seen, ksmd's CPU (from the cost per page measured on the recorded host by
'ksmtrace calibrate-cost', never a constant), and churn (merges and copy-on-writes per s).

The setting starts from the knobs recorded in the snapshot (with run=1); --set changes
some, --sweep tries several values (all combinations of all sweeps). --cpu-budget picks
the setting that saves most within that share of one CPU and says why. The recorded
processes are also paired by how much they would share if placed on one host (exact, and
estimated from sketches that work across hosts), and --colocate predicts what a chosen set
saves together. Times are simulated seconds since KSM starts.
"""

EPILOG = """\
examples:
  ksmtrace whatif vms.ksmsnap --set pages_to_scan=1000,sleep_millisecs=20
  ksmtrace whatif vms.ksmsnap --sweep pages_to_scan=100,1000,4000 --sweep sleep_millisecs=5,20 \\
      --cpu-budget 5% --plot-dir plots/
  ksmtrace whatif vms.ksmsnap --same-tenant-only --sweep pages_to_scan=500,2000
  ksmtrace whatif a.ksmsnap b.ksmsnap --colocate web1,web2 --sketch-out fleet-a.json
  ksmtrace whatif --sketches fleet-a.json fleet-b.json      co-location across hosts
"""


def add_parser(sub: Any) -> None:
    """Register the ``whatif`` subcommand."""
    p = sub.add_parser(
        "whatif",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("snapshots", nargs="*", type=Path, help="snapshot files (same salt)")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="K=V",
                   help="knobs, e.g. pages_to_scan=1000,sleep_millisecs=20; besides the "
                        "sysfs knobs, hz=100|250|300|1000 (CONFIG_HZ modelled)")  # fmt: skip
    p.add_argument("--sweep", action="append", default=[], metavar="K=V1,V2",
                   help="try these values of a knob (repeatable: all combinations)")  # fmt: skip
    p.add_argument("--cpu-budget", metavar="PCT", help="recommend a setting within e.g. 5%%")
    p.add_argument(
        "--duration",
        type=positive_float("--duration", MAX_SIMULATED_S),
        help=f"simulated seconds, at most {MAX_SIMULATED_S:.0f} (default: long enough for the "
        "slowest setting swept to settle, so the figures of one setting depend on the sweep; "
        "give --duration to compare runs)",
    )
    p.add_argument(
        "--step", type=positive_float("--step"), help="sampling step in seconds (default: auto)"
    )
    p.add_argument("--same-tenant-only", action="store_true",
                   help="merge only within a tenant (VM, else container, else user)")  # fmt: skip
    p.add_argument("--colocate", action="append", default=[], metavar="A,B,...",
                   help="predict the saving of these processes/VMs placed together")  # fmt: skip
    p.add_argument("--top", type=positive_int("--top"), default=10, help="pairs to list (10)")
    p.add_argument("--plot-dir", type=Path, help="write PNG and SVG plots here")
    p.add_argument("--sketch-out", type=Path, help="write per-process sketches (JSON)")
    p.add_argument("--sketches", nargs="+", type=Path, help="co-location from sketch files only")
    p.add_argument("--cost-profile", type=Path, help="ksmd cost profile (default: recorded)")
    p.add_argument("--seed", type=int, default=0, help="seed of the change times (0)")
    p.add_argument("--kernel", choices=("6.11", "6.7"), default="6.11",
                   help="cmp_and_merge_page order to model (6.11+ or 6.7-6.10)")  # fmt: skip
    p.set_defaults(run=run)


def parse_budget(text: str | None) -> float | None:
    """'5%' or '5' -> 5.0."""
    if text is None:
        return None
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"--cpu-budget needs a percentage such as 5%, not {text!r}") from None
    if not 0 < value <= 100:
        raise UsageError("--cpu-budget must be above 0% and at most 100% (ksmd is one thread)")
    return value


def base_knobs(rec: Recording, sets: list[str], kernel: str) -> Knobs:
    """Recorded knobs with run=1, then every --set applied."""
    from ksmtrace.engine.knobs import from_sysfs, parse_assignments

    knobs = from_sysfs({**rec.knobs, "run": 1}, rec.hz, kernel)
    for text in sets:
        knobs = knobs.replace(**parse_assignments(text))
    return knobs


def _sketch_only(files: list[Path], top: int) -> int:
    from ksmtrace.whatif import colocation, sketches, tables

    salts, all_sketches = set(), []
    for f in files:
        salt, sk = sketches.load(f)
        salts.add(salt)
        all_sketches.extend(sk)
    if len(salts) > 1:
        print("warning: sketches come from differently salted snapshots; pairs across them "
              "share nothing by construction", file=sys.stderr)  # fmt: skip
    pairs = colocation.pairs_sketched(all_sketches)
    print(f"co-location estimated from {len(all_sketches)} sketches:")
    print(tables.pairs_table(pairs, 4096, top, None))
    return 0


def _colocate(
    w: Workload, knobs: Knobs, cost: CostProfile, sets: list[list[int]], horizon: float
) -> None:
    from ksmtrace.render.units import fmt_bytes
    from ksmtrace.whatif.series import simulate

    for idx in sets:
        together = simulate(w.subset(idx), knobs, cost, horizon, horizon / 100)
        apart = sum(
            simulate(w.subset([i]), knobs, cost, horizon, horizon / 100).final_saved for i in idx
        )
        names = ", ".join(w.processes[i].label for i in idx)
        print(
            f"  {names}: together {fmt_bytes(together.final_saved)}, apart "
            f"{fmt_bytes(apart)} (+{fmt_bytes(together.final_saved - apart)} from co-location)"
        )


def run(args: argparse.Namespace) -> int:
    """Load, simulate, print tables, write plots."""
    # The engine (numba, matplotlib) loads only when this command runs, not for --help.
    import numpy as np

    from ksmtrace.engine.cost import require_profile
    from ksmtrace.engine.jit import needs_compiling
    from ksmtrace.engine.knobs import parse_sweep
    from ksmtrace.engine.replay import workload_from_snapshots
    from ksmtrace.fingerprint.snapfile import read_snapshot
    from ksmtrace.render.units import fmt_bytes
    from ksmtrace.whatif import colocation, plots, sketches, tables
    from ksmtrace.whatif.series import simulate
    from ksmtrace.whatif.sweep import frontier, grid, horizon_s, recommend, run_sweep
    from ksmtrace.whatif.tenancy import same_tenant_only

    if args.plot_dir is not None:
        # Say so now, not after minutes of simulation.
        try:
            make_private_dir(args.plot_dir)
        except OSError as exc:
            raise UsageError(f"cannot create --plot-dir {args.plot_dir}: {exc.strerror}") from None
        if not os.access(args.plot_dir, os.W_OK):
            raise UsageError(f"cannot write plots into {args.plot_dir}: permission denied")
    if args.sketches:
        return _sketch_only(args.sketches, args.top)
    if not args.snapshots:
        raise UsageError("give snapshot files (ksmtrace snapshot -o FILE) or --sketches FILES")
    budget = parse_budget(args.cpu_budget)
    snaps = [read_snapshot(p) for p in args.snapshots]
    for snap in snaps:
        if snap.damage:
            print(f"ksmtrace: warning: {snap.damage}", file=sys.stderr, flush=True)
    workload, rec = workload_from_snapshots(snaps, np.random.default_rng(args.seed))
    workload.knob_changes = []
    cost = require_profile(args.cost_profile, rec.cost)
    if not cost.tracer_corrected:
        print(
            "ksmtrace: warning: the ksmd cost profile includes the tracer's own overhead "
            "(measured by an older calibrate-cost), so CPU predictions run up to twice too "
            "high; measure again with 'ksmtrace calibrate-cost' (as root)",
            file=sys.stderr,
        )
    base = base_knobs(rec, args.set_, args.kernel)
    sweeps = [parse_sweep(s) for s in args.sweep]
    settings = grid(base, sweeps)
    names = tuple(n for n, _ in sweeps) or ("pages_to_scan", "sleep_millisecs")
    horizon = args.duration or horizon_s(workload, settings, workload.duration_ns / 1e9)
    step = args.step or max(horizon / 300, 0.01)
    if horizon / step > MAX_SAMPLES:
        raise UsageError(
            f"--step {step:g} s gives {horizon / step:,.0f} samples over {horizon:g} s; "
            f"use a step of at least {horizon / MAX_SAMPLES:.3g} s"
        )
    groups = [[n.strip() for n in text.split(",") if n.strip()] for text in args.colocate]
    chosen = [colocation.select(workload, names) for names in groups]  # unknown names fail now
    final = colocation.final_contents(workload)
    present = final[final != 0xFFFFFFFF]
    potential = (len(present) - len(np.unique(present))) * workload.page_size
    print(f"{len(workload.processes)} processes, {workload.n_pages:,} pages "
          f"({fmt_bytes(workload.n_pages * workload.page_size)}); at most "
          f"{fmt_bytes(potential)} mergeable at the end; {cost.describe()}")  # fmt: skip
    sim = workload
    if args.same_tenant_only:
        sim, tenants = same_tenant_only(workload)
        print(f"same-tenant-only: {len(set(tenants))} tenants ({', '.join(sorted(set(tenants)))})")
    if needs_compiling():
        print("compiling the merge engine for this machine (first run only, up to a minute) ...",
              file=sys.stderr)  # fmt: skip
    print(f"simulating {len(settings)} setting(s) for {horizon:.0f} s ...", file=sys.stderr)

    def progress(i: int, knobs: Knobs) -> None:
        if len(settings) > 1:
            print(f"  [{i + 1}/{len(settings)}] {knobs.label(names)}", file=sys.stderr)

    outcomes = run_sweep(sim, settings, cost, horizon, step, progress)
    print()
    print(tables.settings_table(outcomes, names))
    best = frontier(outcomes)
    pick = None
    if len(outcomes) > 1:
        print("\nfrontier (more saving over the run only for more CPU): "
              + "; ".join(f"{o.knobs.label(names)} {o.cpu_pct:.1f}%" for o in best))  # fmt: skip
    if budget is not None:
        pick, reason = recommend(outcomes, budget, names)
        print(f"\nrecommended for {budget:g}% of a CPU: {reason}")
    if args.same_tenant_only:
        top = pick or max(outcomes, key=lambda o: o.saved)
        free = simulate(workload, top.knobs, cost, horizon, step)
        print(f"\nsame-tenant-only at {top.knobs.label(names)} saves {fmt_bytes(top.saved)}; "
              f"merging across tenants would save {fmt_bytes(free.final_saved)}")  # fmt: skip
    if len(workload.processes) > 1:
        pairs = colocation.pairs_exact(workload)
        est = colocation.pairs_sketched(colocation.sketches_of(workload, rec.hashes))
        print(
            "\nwho shares most with whom (SHARED: page contents both hold, counted once, "
            "which is what placing them together saves; SKETCH: the same from sketches):"
        )
        print(tables.pairs_table(pairs, workload.page_size, args.top, est))
    if args.colocate:
        print("\nco-location at " + (pick or outcomes[0]).knobs.label(names) + ":")
        _colocate(workload, (pick or outcomes[0]).knobs, cost, chosen, horizon)
    if args.sketch_out:
        sks = colocation.sketches_of(workload, rec.hashes)
        sketches.save(args.sketch_out, sks, str(snaps[0].header.get("salt_id")))
        print(f"\nwrote {len(sks)} sketches to {args.sketch_out}")
    if args.plot_dir:
        written = plots.savings_over_time(outcomes, names, args.plot_dir, "predicted KSM savings")
        written += plots.frontier_plot(outcomes, best, names, args.plot_dir, budget, pick)
        print("\nplots: " + ", ".join(str(p) for p in written))
    return 0
