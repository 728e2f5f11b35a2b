"""A real Prometheus scrapes a real ``ksmtrace serve`` while real KSM workloads run.

Every query of every dashboard panel is evaluated through Prometheus' HTTP API and must
return data; the scraped values must agree with the kernel's counters read around the
query; and 2,000 short-lived mergeable processes must not push the number of series past
the configured bound.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ksmtrace.dashboards import DASHBOARDS, queries, substitute
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import procfs
from ksmtrace.kernel.sysfs import KnobGuard, read_ksm_sysfs
from ksmtrace.vmlab import GuestLab, GuestSpec
from ksmtrace.workers import Worker, wait_until

from ..unit.test_exporter_golden import FIXTURE_GOLDEN
from .conftest import cow_ksm, merging_pages
from .promlab import Exporter, Prometheus, end_process

pytestmark = pytest.mark.live

PATHS = HostPaths()
REPO = Path(__file__).parent.parent.parent
#: What Grafana would put for $__rate_interval with a 1 s scrape interval (at least 4 scrapes).
RATE_INTERVAL = "10s"

SpawnFn = Callable[..., Worker]


def start_ksm(guard: KnobGuard, pages_to_scan: int = 2000, sleep_ms: int = 10) -> None:
    guard.set("pages_to_scan", pages_to_scan)
    guard.set("sleep_millisecs", sleep_ms)
    guard.set("run", 1)


def wait_full_scans(n: int, timeout_s: float = 60) -> None:
    target = int(read_ksm_sysfs(PATHS)["full_scans"]) + n
    assert wait_until(lambda: int(read_ksm_sysfs(PATHS)["full_scans"]) >= target, timeout_s)


def ksmd_cpu_s() -> float:
    ksmd = procfs.find_ksmd(PATHS)
    assert ksmd is not None
    ns = procfs.read_schedstat_ns(PATHS, ksmd)
    assert ns is not None
    return ns / 1e9


def sysfs_value(name: str) -> Callable[[], float]:
    return lambda: float(read_ksm_sysfs(PATHS)[name])


def saved_bytes() -> float:
    ksm = read_ksm_sysfs(PATHS)
    return float((int(ksm["pages_sharing"]) + int(ksm.get("ksm_zero_pages", 0))) * 4096)


def all_merging_pages() -> float:
    return float(sum(st.merging_pages for st in procfs.list_ksm_processes(PATHS).values()))


def agree(prom: Prometheus, checks: dict[str, Callable[[], float]], settle_s: float = 3.0) -> None:
    """Each scraped value lies between the kernel's values read before and after it.

    The exporter publishes every second and Prometheus scrapes every second, so after
    ``settle_s`` a scraped value was read from the kernel after the first kernel read. On a
    quiet host both kernel reads are equal, and so must the scraped value be.
    """
    before = {expr: kernel() for expr, kernel in checks.items()}
    time.sleep(settle_s)
    scraped = {expr: prom.value(expr) for expr in checks}
    after = {expr: kernel() for expr, kernel in checks.items()}
    wrong = [
        f"{expr}: kernel {before[expr]} .. {after[expr]}, scraped {scraped[expr]}"
        for expr in checks
        if not min(before[expr], after[expr]) <= scraped[expr] <= max(before[expr], after[expr])
    ]
    assert not wrong, "\n".join(wrong)


def test_dashboards_have_data_in_prometheus_and_agree_with_the_kernel(
    fresh_ksm: KnobGuard, spawn: SpawnFn, tmp_path: Path
) -> None:
    a = spawn("prom-a", 3000, shared=0.9, distinct=16, seed=21)
    b = spawn("prom-b", 3000, shared=0.9, distinct=16, seed=21)
    churn = spawn("prom-churn", 2000, shared=1.0, distinct=16, seed=21, churn=400)
    with Exporter(tmp_path, "--interval", "1", "--top", "10") as exporter:
        exporter.wait_serving()
        with Prometheus(tmp_path, [exporter.address]) as prom:
            start_ksm(fresh_ksm)
            assert wait_until(lambda: merging_pages(a.pid) >= 2700, 60), "prom-a did not merge"
            assert wait_until(lambda: merging_pages(b.pid) >= 2700, 60), "prom-b did not merge"
            b.command("unmerge 0 100")  # explicit unmerges: a 'madvise' kind
            prom.wait_scraped(15)
            _promtool_accepts(exporter.metrics())
            # A guest for the per-VM panels; it ends before the kernel counters are compared.
            with GuestLab() as lab:
                (guest,) = lab.boot(GuestSpec("prom-vm", memory_mib=96, fill_mib=16))
                assert wait_until(lambda: merging_pages(guest.pid) > 0, 60), "no guest merges"
                vm_series = 'ksmtrace_process_saved_bytes{vm="prom-vm"}'
                assert wait_until(lambda: prom.query(vm_series), 30), "the VM was not scraped"
                _every_dashboard_query_returns_data(prom, exporter.address)
            _variables_list_the_workload(prom, [a, b, churn])

            # Quiet the host: the churner exits and ksmd drops its pages (an exited process's
            # KSM pages stay counted in pages_sharing until ksmd's next pass), then ksmd
            # stops and the kernel counters only move by writes.
            churn.stop()
            wait_full_scans(2)
            fresh_ksm.set("run", 0)
            time.sleep(1)
            _scraped_values_agree_with_the_kernel(prom, [a, b])
            _cows_of_one_writer_are_counted_exactly(prom, a)
            health = prom.query('ksmtrace_scrape_collector_success{job="ksmtrace"} == 0')
            assert not health, f"collectors without data: {health}"


def _promtool_accepts(text: str) -> None:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def _every_dashboard_query_returns_data(prom: Prometheus, instance: str) -> None:
    values = {
        "job": prom.job,
        "instance": instance,
        "__rate_interval": RATE_INTERVAL,
        "vm": ".*",
        "comm": ".*",
    }
    empty = []
    evaluated = 0
    for board, build in DASHBOARDS.items():
        for title, expr in queries(build()):
            evaluated += 1
            if not prom.query(substitute(expr, values)):
                empty.append(f"{board} / {title}: {expr}")
    assert evaluated > 30
    assert not empty, "queries without data:\n" + "\n".join(empty)


def _variables_list_the_workload(prom: Prometheus, workers: list[Worker]) -> None:
    jobs = prom.api("label/job/values", **{"match[]": "ksmtrace_build_info"})
    assert prom.job in jobs
    comms = prom.api(
        "label/comm/values", **{"match[]": f'ksmtrace_process_saved_bytes{{job="{prom.job}"}}'}
    )
    assert {w.spec.name for w in workers} <= set(comms), comms


def _scraped_values_agree_with_the_kernel(prom: Prometheus, workers: list[Worker]) -> None:
    job = f'{{job="{prom.job}"}}'
    checks: dict[str, Callable[[], float]] = {
        f"ksmtrace_{name}{job}": sysfs_value(name)
        for name in ("pages_shared", "pages_sharing", "pages_unshared", "ksm_zero_pages", "run")
    }
    checks[f"ksmtrace_full_scans_total{job}"] = sysfs_value("full_scans")
    checks[f"ksmtrace_pages_scanned_total{job}"] = sysfs_value("pages_scanned")
    checks[f"ksmtrace_general_profit_bytes{job}"] = sysfs_value("general_profit")
    checks[f"ksmtrace_saved_bytes{job}"] = saved_bytes
    checks[f"ksmtrace_cow_ksm_total{job}"] = lambda: float(cow_ksm())
    checks[f"ksmtrace_ksmd_cpu_seconds_total{job}"] = ksmd_cpu_s
    checks[f"sum(ksmtrace_process_merging_pages{job})"] = all_merging_pages
    for w in workers:
        pid = f'{{job="{prom.job}",pid="{w.pid}"}}'
        checks[f"ksmtrace_process_merging_pages{pid}"] = lambda w=w: merging_pages(w.pid)
    agree(prom, checks)
    # The per-process shares add up to the kernel's saving (each share is rounded to a byte).
    total = prom.value(f"ksmtrace_saved_bytes{job}")
    shares = prom.value(f"sum(ksmtrace_process_saved_bytes{job})")
    assert abs(total - shares) <= 16, (total, shares)


def _cows_of_one_writer_are_counted_exactly(prom: Prometheus, writer: Worker) -> None:
    expr = f'ksmtrace_process_cow_unmerges_total{{job="{prom.job}",pid="{writer.pid}"}}'
    before = prom.value(expr)
    kernel_before = cow_ksm()
    writer.command("write 0 500")  # every one of these pages is merged: 500 COWs
    kernel_delta = cow_ksm() - kernel_before
    assert wait_until(lambda: prom.value(expr) >= before + 500, 15), "COWs not scraped"
    time.sleep(2.5)  # a later scrape must not add more
    assert prom.value(expr) - before == 500
    assert kernel_delta >= 500


def _process_label_sets(
    text: str,
) -> tuple[set[tuple[str, ...]], int, dict[tuple[str, ...], float]]:
    """(pid/comm/vm/cgroup label sets, ksmtrace sample count, counter values) of one scrape."""
    sets: set[tuple[str, ...]] = set()
    counters: dict[tuple[str, ...], float] = {}
    count = 0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.name.startswith("ksmtrace_"):
                continue
            count += 1
            if "pid" in s.labels:
                who = (s.labels["pid"], s.labels["comm"], s.labels["vm"], s.labels["cgroup"])
                sets.add(who)
                if fam.type in ("counter", "histogram"):
                    counters[(s.name, *(f"{k}={v}" for k, v in sorted(s.labels.items())))] = s.value
    return sets, count, counters


def _golden_bound(top: int) -> int:
    """Most ksmtrace samples one scrape may have with ``top`` process series (from golden)."""
    sets, count, _ = _process_label_sets(FIXTURE_GOLDEN.read_text())
    per_series = sum(
        1 for line in FIXTURE_GOLDEN.read_text().splitlines() if 'pid="' in line and line[0] != "#"
    ) // len(sets)
    fixed = count - per_series * len(sets)
    return fixed + (top + 1) * per_series


def test_two_thousand_short_lived_processes_keep_the_series_bounded(
    fresh_ksm: KnobGuard, tmp_path: Path
) -> None:
    top = 5
    bound = _golden_bound(top)
    start_ksm(fresh_ksm, pages_to_scan=4000, sleep_ms=10)
    with Exporter(tmp_path, "--interval", "1", "--top", str(top)) as exporter:
        exporter.wait_serving()
        seen_before = _seen(exporter.metrics())
        with Prometheus(tmp_path, [exporter.address]) as prom:
            storm = subprocess.Popen(
                [sys.executable, "-m", "tests.live.forkstorm", "2000", "100", "1.0"],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
            )
            try:
                scrapes = _scrape_until_done(exporter, storm, top, bound)
            finally:
                end_process(storm)
            assert storm.returncode == 0
            time.sleep(2.5)  # the last children's exits reach the exporter
            text = exporter.metrics()
            assert _seen(text) - seen_before >= 2000, "the exporter did not see every child"
            assert scrapes >= 20
            job = f'job="{prom.job}"'
            most = prom.value(
                f"max_over_time(count(ksmtrace_process_merges_total{{{job}}})[5m:1s])"
            )
            assert most <= top + 1
            samples = prom.value(f"max_over_time(scrape_samples_scraped{{{job}}}[5m])")
            own = sum(1 for line in text.splitlines() if line.startswith("process_"))
            assert samples <= bound + own, (samples, bound, own)
            merged = prom.value(f'ksmtrace_process_merges_total{{{job},pid="other"}}')
            # 16 pages per child: on average at least one merged before the child exited
            assert merged >= 2000, f"only {merged} merges in the 'other' series"


def _seen(text: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "ksmtrace_processes_seen_total":
                return s.value
    raise AssertionError("ksmtrace_processes_seen_total missing")


def _scrape_until_done(
    exporter: Exporter, storm: subprocess.Popen[bytes], top: int, bound: int
) -> int:
    """Scrape every 0.5 s while the storm runs: bounded series, monotonic counters."""
    last: dict[tuple[str, ...], float] = {}
    scrapes = 0
    deadline = time.monotonic() + 150
    while storm.poll() is None:
        assert time.monotonic() < deadline, "the fork storm took too long"
        sets, count, counters = _process_label_sets(exporter.metrics())
        scrapes += 1
        assert len(sets) <= top + 1, f"{len(sets)} process series with --top {top}"
        assert count <= bound, (count, bound)
        for key, value in counters.items():
            assert value >= last.get(key, 0.0), f"counter went down: {key}"
            last[key] = value
        time.sleep(0.5)
    return scrapes
