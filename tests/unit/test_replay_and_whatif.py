"""Snapshots to workloads, the synthetic generator, knobs, sweeps, co-location and sketches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.engine import layout as L
from ksmtrace.engine.cost import CostProfile, require_profile
from ksmtrace.engine.knobs import Knobs, parse_assignments, parse_sweep
from ksmtrace.engine.layout import NOT_PRESENT
from ksmtrace.engine.replay import workload_from_snapshots
from ksmtrace.engine.source import EngineSource
from ksmtrace.engine.synthetic import SyntheticProcess, generate
from ksmtrace.errors import UsageError
from ksmtrace.fingerprint.reader import F_ZERO, F_ZERO_PFN, ProcessPages
from ksmtrace.fingerprint.snapfile import SnapshotWriter, read_snapshot
from ksmtrace.whatif import colocation
from ksmtrace.whatif.sketches import Sketch, jaccard, shared_contents
from ksmtrace.whatif.sweep import frontier, grid, recommend, run_sweep
from ksmtrace.whatif.tenancy import same_tenant_only

from .engine_helpers import COST

ZERO = 999


def pp(pid: int, contents: dict[int, int], zero_pfn: tuple[int, ...] = ()) -> ProcessPages:
    vpn = sorted(contents)
    flags = [F_ZERO if contents[v] == ZERO else 0 for v in vpn]
    flags = [f | (F_ZERO_PFN if v in zero_pfn else 0) for f, v in zip(flags, vpn, strict=True)]
    return ProcessPages(
        pid,
        np.array(vpn, dtype=np.uint64),
        np.array([contents[v] for v in vpn], dtype=np.uint64),
        np.array(flags, dtype=np.uint8),
    )


def write_snapshot(path: Path, frames: list[list[ProcessPages]], step: int = 10**9) -> Path:
    w = SnapshotWriter(path, {"salt_id": "s", "hz": 250, "knobs": {"run": 1, "smart_scan": 0}})
    for k, procs in enumerate(frames):
        meta = {
            "identities": {str(p.pid): {"comm": f"c{p.pid}", "start_time": p.pid} for p in procs}
        }
        w.frame(1000 + k * step, procs, meta)
    w.close()
    return path


def test_frames_become_pages_contents_and_changes(tmp_path: Path) -> None:
    f0 = [pp(2, {10: 5, 11: 5, 12: 6}), pp(1, {20: 5})]
    f1 = [pp(2, {10: 5, 11: 7, 13: 5}), pp(1, {20: 5})]
    snap = read_snapshot(write_snapshot(tmp_path / "a", [f0, f1]))
    w, rec = workload_from_snapshots([snap], np.random.default_rng(0))
    assert [p.pid for p in w.processes] == [1, 2], "older process (start time) first"
    assert w.addr.tolist() == [20, 10, 11, 12, 13]
    ids = {int(h): i for i, h in enumerate(rec.hashes)}
    assert w.content.tolist() == [ids[5], ids[5], ids[5], ids[6], int(NOT_PRESENT)]
    changed = dict(zip(w.change_page.tolist(), w.change_value.tolist(), strict=True))
    assert changed == {2: ids[7], 3: int(NOT_PRESENT), 4: ids[5]}
    assert np.all((w.change_t > 0) & (w.change_t <= 10**9)), "between the two frames"
    assert w.duration_ns == 10**9


def test_zero_page_mappings_count_only_where_the_page_was_written(tmp_path: Path) -> None:
    # Page 10 was a written zero page, then KSM mapped the zero page there; page 11 only
    # ever mapped the zero page (read, never written): ksmd never sees it.
    f0 = [pp(1, {10: ZERO, 11: ZERO}, zero_pfn=(11,))]
    f1 = [pp(1, {10: ZERO, 11: ZERO}, zero_pfn=(10, 11))]
    w, _ = workload_from_snapshots(
        [read_snapshot(write_snapshot(tmp_path / "z", [f0, f1]))], np.random.default_rng(0)
    )
    assert w.content[1] == NOT_PRESENT and w.content[0] != NOT_PRESENT
    assert len(w.change_t) == 0, "the KSM zero page is not an unmap"


def test_differently_salted_snapshots_are_refused(tmp_path: Path) -> None:
    a = read_snapshot(write_snapshot(tmp_path / "a", [[pp(1, {1: 1})]]))
    b = read_snapshot(write_snapshot(tmp_path / "b", [[pp(1, {1: 1})]]))
    b.header["salt_id"] = "other"
    with pytest.raises(UsageError, match="same --salt-file"):
        workload_from_snapshots([a, b], np.random.default_rng(0))


def test_synthetic_workloads_are_reproducible_from_the_generator_alone() -> None:
    procs = [SyntheticProcess("a", 500, 0.5, 0.1, write_rate=0.5, restore_after_s=1.0)]
    a = generate(procs, 10, np.random.default_rng(7))
    b = generate(procs, 10, np.random.default_rng(7))
    c = generate(procs, 10, np.random.default_rng(8))
    assert np.array_equal(a.content, b.content) and np.array_equal(a.change_t, b.change_t)
    assert not np.array_equal(a.change_t, c.change_t)
    assert int(np.count_nonzero(a.content == 0)) == 50
    # ~500 pages x 0.5 writes/s x 10 s = 2500 writes, and a restore 1 s after each (90 %)
    assert 4400 < len(a.change_t) < 5100


def test_knob_parsing_validates_names_and_values() -> None:
    assert parse_assignments("pages_to_scan=1000, sleep_millisecs=20") == {
        "pages_to_scan": 1000,
        "sleep_millisecs": 20,
    }
    assert parse_sweep("sleep_millisecs=5,20") == ("sleep_millisecs", [5, 20])
    with pytest.raises(UsageError, match="knob=value"):
        parse_assignments("pages_to_skan=1")
    with pytest.raises(UsageError, match="integer"):
        parse_assignments("pages_to_scan=fast")
    with pytest.raises(UsageError, match="max_page_sharing"):
        Knobs(max_page_sharing=1)
    assert len(grid(Knobs(), [("pages_to_scan", [1, 2, 3]), ("sleep_millisecs", [5, 20])])) == 6


def sweep_workload():  # type: ignore[no-untyped-def]
    procs = [
        SyntheticProcess("web1", 3000, 0.6, 0.1, pool=300, tenant="vm:a"),
        SyntheticProcess("web2", 3000, 0.6, 0.1, pool=300, tenant="vm:b"),
        SyntheticProcess("db", 2000, 0.2, 0.0, pool=50, pool_id=1, tenant="vm:a"),
    ]
    return generate(procs, 30, np.random.default_rng(3))


def test_sweep_frontier_and_budget_recommendation() -> None:
    w = sweep_workload()
    settings = grid(Knobs(), [("pages_to_scan", [50, 500, 5000]), ("sleep_millisecs", [20])])
    outcomes = run_sweep(w, settings, COST, 30.0, 0.1)
    by = {o.knobs.pages_to_scan: o for o in outcomes}
    assert by[5000].cpu_pct > by[500].cpu_pct > by[50].cpu_pct
    assert by[5000].t90_s is not None and by[500].t90_s is not None
    assert by[5000].t90_s < by[500].t90_s
    assert by[5000].saved == by[500].saved > 0, "fast settings converge to the same saving"
    assert [o.knobs.pages_to_scan for o in frontier(outcomes)] == [50, 500, 5000]
    pick, reason = recommend(outcomes, by[500].cpu_pct + 0.01, ("pages_to_scan",))
    assert pick is by[500]
    assert "pages_to_scan=500" in reason and reason.endswith(".")
    none, why = recommend(outcomes, by[50].cpu_pct / 2, ("pages_to_scan",))
    assert none is None and "no setting fits" in why


def test_same_tenant_only_saves_less_and_only_within_tenants() -> None:
    w = sweep_workload()
    split, tenants = same_tenant_only(w)
    assert tenants == ["vm:a", "vm:b", "vm:a"]
    knobs = Knobs(pages_to_scan=5000)
    free = run_sweep(w, [knobs], COST, 20.0, 0.5)[0].saved
    isolated = run_sweep(split, [knobs], COST, 20.0, 0.5)[0].saved
    assert 0 < isolated < free


def test_colocation_pairs_are_exact_shared_distinct_contents() -> None:
    w = sweep_workload()
    pairs = {(p.a, p.b): p.shared_pages for p in colocation.pairs_exact(w)}
    c = colocation.final_contents(w)
    web1 = set(c[w.starts[0] : w.ends[0]].tolist())
    web2 = set(c[w.starts[1] : w.ends[1]].tolist())
    assert pairs[("web1[100000]", "web2[100001]")] == len(web1 & web2) > 200
    assert pairs[("web1[100000]", "db[100002]")] <= 1  # different pools: the zero page at most
    assert colocation.select(w, ["web2", "100002"]) == [1, 2]
    with pytest.raises(UsageError, match="no recorded process"):
        colocation.select(w, ["nope"])


def test_sketches_estimate_sharing_within_a_few_percent() -> None:
    rng = np.random.default_rng(11)
    draw = lambda n: rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)  # noqa: E731
    a = draw(200_000)
    b = np.concatenate([a[:50_000], draw(150_000)])
    sa, sb = Sketch.of("a", a), Sketch.of("b", b)
    assert abs(sa.distinct() - 200_000) / 200_000 < 0.05
    assert abs(shared_contents(sa, sb) - 50_000) / 50_000 < 0.25
    assert abs(jaccard(sa, sb) - 50_000 / 350_000) < 0.06
    back = Sketch.from_json(sa.to_json())
    assert np.array_equal(back.hll, sa.hll) and np.array_equal(back.bottom, sa.bottom)


def test_engine_source_feeds_the_shared_views() -> None:
    w = sweep_workload()
    src = EngineSource(w, Knobs(pages_to_scan=2000), COST)
    acc = Accumulator()
    reports = [acc.add(t) for t in src.ticks(1.0, 10.0)]
    last = reports[-1]
    assert last.sample.counter("pages_sharing") > 0
    merged = sum(t.merges for t in acc.totals.values())
    assert merged == sum(p.merging_pages for p in last.sample.processes.values())
    scanned = sum(t.scanned for t in acc.totals.values())
    assert scanned == last.sample.counter("pages_scanned")
    assert acc.full_scans_total == last.sample.counter("full_scans")
    cpu = sum(t.scan_cpu_ns for t in acc.totals.values()) + acc.scan_overhead_total_ns
    assert cpu == last.sample.ksmd_cpu_ns
    assert {r.pid for r in last.processes} == {100000, 100001, 100002}


def test_cost_profiles_round_trip_and_are_required(tmp_path: Path) -> None:
    text = COST.to_json()
    assert CostProfile.from_json(text) == COST
    f = tmp_path / "p.json"
    COST.save(f)
    assert f.stat().st_mode & 0o777 == 0o600
    assert require_profile(f, None) == COST
    with pytest.raises(UsageError, match="unknown format version"):
        CostProfile.from_json('{"version": 7}')
    f.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(UsageError, match="not a cost profile"):
        require_profile(f, None)


def test_whatif_checks_step_and_colocation_names_before_simulating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ksmtrace.cli import main

    snap = write_snapshot(tmp_path / "s.ksmsnap", [[pp(1, {0: 5, 1: 6}), pp(2, {0: 5, 1: 7})]])
    profile = tmp_path / "cost.json"
    COST.save(profile)
    base = ["whatif", str(snap), "--cost-profile", str(profile), "--duration", "100"]
    for extra, words in [
        (["--step", "1e-9"], "samples over 100 s"),
        (["--colocate", "c1,nosuch"], "no recorded process or VM called 'nosuch'"),
    ]:
        assert main([*base, *extra]) == UsageError.exit_code
        out, err = capsys.readouterr()
        assert out == "" and "simulating" not in err, "refused before any simulation"
        assert err.startswith("ksmtrace: error: ") and words in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_engine_returns_to_python_within_a_slice_of_simulated_time() -> None:
    """Ctrl-C and SIGTERM are handled between calls into the compiled loop."""
    from unittest import mock

    from ksmtrace.engine import model
    from ksmtrace.engine.model import Engine

    w = generate([SyntheticProcess("a", 512, 0.5, 0.1, pool=8)], 1.0, np.random.default_rng(1))
    engine = Engine(w, Knobs(run=1, pages_to_scan=100, sleep_millisecs=20), COST)
    spans: list[int] = []  # simulated ns each call may run
    real = model.run_until

    def counting(*args: Any) -> int:
        spans.append(int(args[8]) - int(args[3][L.NOW]))
        return int(real(*args))

    with mock.patch.object(model, "run_until", counting):
        engine.run_to(60 * 10**9)
    assert len(spans) >= 60 * 10**9 // model.SLICE_NS
    assert max(spans) <= model.SLICE_NS
    assert engine.now_ns >= 60 * 10**9


def test_whatif_warns_about_a_profile_with_the_tracers_overhead_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from ksmtrace.cli import main

    snap = write_snapshot(tmp_path / "s.ksmsnap", [[pp(1, {0: 5, 1: 6}), pp(2, {0: 5, 1: 7})]])
    old = tmp_path / "old.json"
    dataclasses.replace(COST, extra={}).save(old)  # as calibrate-cost wrote it before
    assert main(["whatif", str(snap), "--cost-profile", str(old), "--duration", "5"]) == 0
    assert "includes the tracer's own overhead" in capsys.readouterr().err
    assert COST.tracer_corrected
