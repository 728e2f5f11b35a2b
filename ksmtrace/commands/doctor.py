"""``ksmtrace doctor``: what this host offers for tracing KSM, in plain sentences."""

from __future__ import annotations

import argparse
import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ksmtrace.errors import KsmtraceError
from ksmtrace.faults import effective_uid
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import procfs, sysfs
from ksmtrace.kernel.btf import Btf
from ksmtrace.kernel.headers import find_header_tree
from ksmtrace.kernel.offsets import resolve_layout
from ksmtrace.kernel.taskstats import TaskCpuReader
from ksmtrace.mergeability import describe, find_vms, read_mergeability
from ksmtrace.probes.bcc_adapter import bcc_available, bcc_version
from ksmtrace.probes.live import LiveSource
from ksmtrace.render.units import fmt_bytes

ORDER = 10
KNOB_SUMMARY = ("run", "pages_to_scan", "sleep_millisecs", "use_zero_pages", "smart_scan")
HELP = "check what this host offers; exit status 0 means live tracing can run"

#: Raw tracepoints the probe set attaches, with what each is for. (name, required, purpose)
RAW_TRACEPOINTS = (
    ("ksm_merge_with_ksm_page", True, "merges per process"),
    ("ksm_merge_one_page", True, "zero-page merges"),
    ("ksm_start_scan", True, "full-scan start, duration and CPU"),
    ("ksm_stop_scan", True, "full-scan end"),
    ("ksm_enter", True, "registrations, fork"),
    ("sched_process_fork", True, "the pid of a child registered during fork"),
    ("ksm_exit", True, "process exits"),
    ("ksm_remove_ksm_page", True, "stable node teardown"),
    ("ksm_remove_rmap_item", True, "stable node teardown per process"),
    ("page_fault_user", True, "copy-on-write of merged pages"),
    ("mmap_lock_acquire_returned", True, "pages scanned and ksmd CPU per process"),
    ("mm_page_alloc", True, "pages unshared by madvise/prctl"),
)


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: status is "ok", "warn", "fail" or "info"."""

    name: str
    status: str
    text: str


def add_parser(sub: Any) -> None:
    """Register the ``doctor`` subcommand."""
    p = sub.add_parser(
        "doctor",
        help=HELP,
        description=(
            "Checks root, KSM and its state, ksmd, BTF, the tracepoints ksmtrace attaches, "
            "bcc and its kernel header tree, and (unless --quick) really compiles, loads and "
            "attaches the probe set once. Exit status 0: live tracing can run; 1: it cannot."
        ),
        epilog=(
            "examples:\n"
            "  ksmtrace doctor            everything, loading the probe set once (root)\n"
            "  ksmtrace doctor --quick    without loading BPF\n"
            "  ksmtrace doctor && ksmtrace trace"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="skip loading the probe set")
    p.set_defaults(run=run)


def _check_ksm(paths: HostPaths) -> Check:
    try:
        ksm = sysfs.read_ksm_sysfs(paths)
    except KsmtraceError as exc:
        return Check("ksm", "fail", str(exc))
    run_value = ksm.get("run")
    run = {0: "stopped", 1: "merging", 2: "unmerging everything"}.get(
        run_value if isinstance(run_value, int) else -1, "?"
    )
    saved = (
        int(ksm.get("pages_sharing", 0)) + int(ksm.get("ksm_zero_pages", 0))
    ) * procfs.page_size()
    return Check(
        "ksm",
        "ok",
        f"KSM is present: run={ksm.get('run')} ({run}), pages_to_scan={ksm.get('pages_to_scan')}, "
        f"sleep_millisecs={ksm.get('sleep_millisecs')}, smart_scan={ksm.get('smart_scan', 'n/a')}; "
        f"{ksm.get('pages_sharing', 0)} pages sharing, {fmt_bytes(saved)} saved now",
    )  # fmt: skip


def _check_journals(paths: HostPaths) -> list[Check]:
    """Knobs a killed ksmtrace session changed and could not put back."""
    out = []
    for path in sorted((paths.root / "run" / "ksmtrace").glob("knobs.*.json")):
        try:
            data = json.loads(path.read_text())
            pid, original = int(data["pid"]), data["original"]
            os.kill(pid, 0)
            continue  # that session is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            continue
        knobs = ", ".join(f"{k}={v}" for k, v in sorted(original.items()) if k in KNOB_SUMMARY)
        out.append(
            Check(
                "knobs",
                "warn",
                f"ksmtrace session {pid} was killed and left KSM knobs changed (they were "
                f"{knobs}); the next ksmtrace command that changes knobs (demo, "
                "calibrate-cost) puts them back",
            )
        )
    return out


def _check_btf(paths: HostPaths) -> tuple[Check, Btf | None]:
    try:
        btf = Btf.load(paths.btf_vmlinux)
        lay = resolve_layout(btf)
    except KsmtraceError as exc:
        return Check("btf", "fail", str(exc)), None
    return (
        Check(
            "btf",
            "ok",
            f"BTF present; offsets resolved (task_struct.mm={lay.task_mm}, mm_struct.owner="
            f"{lay.mm_owner}, ksm_rmap_item.address={lay.rmap_address})",
        ),
        btf,
    )


def kernel_config(paths: HostPaths) -> dict[str, str]:
    """``CONFIG_*`` options from /proc/config.gz ("y", "m", or "n" for "is not set")."""
    try:
        text = gzip.decompress((paths.proc / "config.gz").read_bytes()).decode()
    except (OSError, EOFError, gzip.BadGzipFile):
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:].split()[0]] = "n"
    return out


def _check_tracepoints(paths: HostPaths, btf: Btf | None) -> list[Check]:
    out = []
    if btf is not None:
        missing = [
            n
            for n, req, _ in RAW_TRACEPOINTS
            if req and not btf.has_type(f"btf_trace_{n}", "typedef")
        ]
        if missing:
            out.append(
                Check("tracepoints", "fail", f"missing raw tracepoints: {', '.join(missing)}")
            )
        else:
            out.append(
                Check(
                    "tracepoints",
                    "ok",
                    "all raw tracepoints ksmtrace attaches exist: "
                    + "; ".join(f"{n} ({why})" for n, _, why in RAW_TRACEPOINTS),
                )
            )
        if btf.has_type("btf_trace_ksm_advisor", "typedef"):
            out.append(
                Check("advisor", "ok", "ksm_advisor tracepoint present (scan-time advisor, 6.8+)")
            )
        else:
            out.append(Check("advisor", "info", "no ksm_advisor tracepoint (kernel before 6.8)"))
    config = kernel_config(paths)
    for opt, what in (("CONFIG_KPROBES", "kprobes"), ("CONFIG_FPROBE", "fprobe")):
        state = config.get(opt)
        built = "built in" if state == "y" else "not built in" if state == "n" else "unknown"
        out.append(
            Check(
                what,
                "info",
                f"{what} {built}; not needed: ksmtrace attaches only raw "
                "tracepoints (no kprobes, no fentry, no syscall tracepoints)",
            )
        )
    return out  # fmt: skip


def _check_toolchain() -> list[Check]:
    out = []
    if bcc_available():
        out.append(Check("bcc", "ok", f"bcc {bcc_version()} (Debian python3-bpfcc) importable"))
    else:
        out.append(
            Check("bcc", "fail", "bcc missing: apt-get install python3-bpfcc (not the PyPI 'bcc')")
        )
    tree = find_header_tree()
    if tree is None:
        out.append(
            Check(
                "headers", "fail", "no kernel header tree for bcc: run 'ksmtrace headers --install'"
            )
        )
    else:
        out.append(Check("headers", "ok", f"bcc compiles against {tree.origin}"))
    return out  # fmt: skip


def _check_probes(paths: HostPaths) -> list[Check]:
    source = LiveSource(paths)
    try:
        source.start()
        st = source.state
        ready = source.scan_site_ready
    except KsmtraceError as exc:
        return [Check("probes", "fail", str(exc))]
    finally:
        source.close()
    walk = "ok" if st.page_tables is not None else "warn"
    return [
        Check("probes", "ok", "the probe set compiled, loaded and attached (then detached)"),
        Check("page-walk", walk, f"write faults: {st.page_walk_note}"),
        Check(
            "scan-site",
            "ok" if ready else "info",
            "ksmd's scan site is recognised (per-process scan cost is exact)"
            if ready
            else "ksmd's scan site is learned at its next full scan (or after 3 batches)",
        ),
    ]


def run_checks(paths: HostPaths, quick: bool = False) -> list[Check]:
    """All checks, in the order they are printed."""
    uid = effective_uid()
    checks = [
        Check("root", "ok", "running as root")
        if uid == 0
        else Check("root", "fail", f"not root (uid {uid}): live tracing needs root; run with sudo")
    ]
    checks.append(_check_ksm(paths))
    checks += _check_journals(paths)
    ksmd = procfs.find_ksmd(paths)
    checks.append(
        Check("ksmd", "ok", f"ksmd kernel thread is pid {ksmd}")
        if ksmd
        else Check("ksmd", "fail", "no ksmd kernel thread")
    )
    btf_check, btf = _check_btf(paths)
    checks.append(btf_check)
    if uid == 0:
        checks += _check_tracepoints(paths, btf)
    checks += _check_toolchain()
    if ksmd:
        cpu = TaskCpuReader(paths)
        got = cpu.read(ksmd)
        cpu.close()
        if got is None:
            checks.append(Check("ksmd-cpu", "warn", "cannot read ksmd's CPU time"))
        else:
            text = f"ksmd CPU read from {got.source} ({got.run_ns / 1e9:.2f} s so far)"
            checks.append(Check("ksmd-cpu", "ok", text))
    if not quick and not any(c.status == "fail" for c in checks):
        checks += _check_probes(paths)
    return checks + check_vms(paths)


def check_vms(paths: HostPaths) -> list[Check]:
    """The VMs section: each QEMU/Firecracker/Cloud Hypervisor process, mergeable or why not."""
    try:
        vms = find_vms(paths)
    except KsmtraceError as exc:
        return [Check("vm", "warn", f"cannot look for VMs: {exc}")]
    if not vms:
        return [Check("vm", "info", "no QEMU, Firecracker or Cloud Hypervisor process running")]
    out = []
    for ident in vms:
        m = read_mergeability(paths, ident.pid, ident)
        if m is not None:
            out.append(Check("vm", "ok" if m.mergeable else "warn", describe(m)))
    return out


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "info": "info"}


def run(args: argparse.Namespace, printer: Callable[[str], None] = print) -> int:
    """Print every check; exit 0 when live tracing can run."""
    checks = run_checks(HostPaths.from_env(), args.quick)
    printer("ksmtrace doctor: can this host trace KSM?")
    for c in checks:
        printer(f"  [{_MARK[c.status]}] {c.name:<11} {c.text}")
    fails = [c for c in checks if c.status == "fail"]
    if fails:
        printer(f"Live tracing: NOT available. First problem: {fails[0].text}")
        return 1
    printer("Live tracing: available." + (" (probe load skipped: --quick)" if args.quick else ""))
    return 0
