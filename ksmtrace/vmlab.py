"""Small real Linux guests under QEMU (TCG) for tests, sample traces and validation.

Each guest boots a Debian cloud kernel with an initramfs holding busybox and the guest
program ``memfill`` (``ksmtrace/guest/memfill.c``, see :mod:`ksmtrace.guest_image`), which
fills guest memory with content KSM on the host can merge and prints a readiness line on
the serial console. Everything comes from Debian packages; the first use downloads the
kernel package and builds the initramfs into ``/var/cache/ksmtrace/guest`` (as root).

Usage::

    from ksmtrace.vmlab import GuestLab, GuestSpec

    with GuestLab() as lab:
        a, b = lab.boot(GuestSpec("vm-a", seed=7), GuestSpec("vm-b", seed=7))
        print(a.pid, a.boot_s, a.ready.pages)      # QEMU's pid, seconds to ready, pages
        ...                                        # trace, enable KSM, read a.ksm_stat()
    # every guest is stopped here, and its logs removed (keep_logs=True keeps them)

What a guest's memory holds (``GuestSpec``): ``fill_mib`` MiB of which a ``shared``
fraction is identical in every guest booted with the same ``seed`` (and distinct within
one guest, so it merges across guests only), a ``zero`` fraction is zero-filled, and the
rest is unique to the guest. With ``churn_rate`` > 0 the guest rewrites the first
``churn`` fraction of its shared pages at that many pages per second, storing the same
bytes back: every such store to a merged page is a copy-on-write on the host, and ksmd
merges the page again at its next pass. The guest's kernel and memfill occupy about
40 MiB more of ``memory_mib`` (default 128).

Guest RAM is not backed by transparent huge pages unless ``thp=True``: khugepaged
collapses THP-backed guest RAM (QEMU madvises it MADV_HUGEPAGE), which unmerges KSM pages
without a copy-on-write, invisibly to ksmtrace and to ``cow_ksm``. Without THP, every
unmerge of a TCG guest is a traced user write fault, so accounting is exact.

Options that keep a VM from merging, for the "why does this VM not merge" diagnosis:
``mem_merge=False`` (``-machine mem-merge=off``: QEMU never madvises guest RAM
MADV_MERGEABLE) and ``shared_ram=True`` (guest RAM from ``memory-backend-memfd`` with
``share=on``: a shared mapping, which KSM never merges).

QEMU runs with ``-accel tcg`` (KVM hangs on this kind of host), ``-name guest=<name>``
(how :mod:`ksmtrace.identity` names the VM), ``-nographic -no-reboot``, one vCPU, the
serial console in ``<workdir>/<name>.serial.log`` and QEMU's own messages in
``<name>.qemu.log``. Under TCG the guest's stores are plain user-space stores of the
QEMU process, so a write to a merged page is an ordinary user write fault (a COW event
of the QEMU pid, from its vCPU thread "CPU 0/TCG").

Every guest is ended by pid (SIGTERM, then SIGKILL) when its ``Guest``/``GuestLab``
context ends, at interpreter exit (atexit), and, if this Python process dies without
cleaning up (SIGKILL, an unhandled SIGTERM), by the kernel: each QEMU gets
PR_SET_PDEATHSIG=SIGKILL. That signal follows the thread that started the guest, so
boot guests from a thread that lives as long as they should.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ksmtrace.errors import HostError, KsmtraceError, UsageError
from ksmtrace.guest_image import GuestImage, Progress, prepare_image
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import procfs
from ksmtrace.processes import end_process

__all__ = ["READY_PREFIX", "Guest", "GuestLab", "GuestReady", "GuestSpec", "VmLabError"]

#: First words of memfill's readiness line (keep in sync with ksmtrace/guest/memfill.c).
READY_PREFIX = "memfill: ready"
QEMU = "qemu-system-x86_64"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
_PR_SET_PDEATHSIG = 1
_PR_SET_THP_DISABLE = 41
#: Parent of the labs' temporary work directories ("<pid>-<random>").
WORKDIR_BASE = Path(tempfile.gettempdir()) / "ksmtrace-vmlab"
#: Guests started by this process and not yet reaped, by pid (for the atexit handler).
_RUNNING: dict[int, subprocess.Popen[bytes]] = {}


class VmLabError(KsmtraceError):
    """A guest could not be started or did not become ready."""


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """One guest to boot.

    Attributes:
        name: Guest name (``-name guest=<name>``; letters, digits, ``_.-``).
        memory_mib: Guest RAM in MiB.
        fill_mib: MiB memfill fills (must fit in guest RAM with ~40 MiB to spare).
        seed: Seed of the shared part; guests with equal seeds have equal shared pages.
        shared: Fraction of the filled pages that is shared content.
        zero: Fraction of the filled pages that is zero-filled.
        churn: Fraction of the shared pages that memfill keeps rewriting.
        churn_rate: Rewrites per second (0: none).
        mem_merge: False adds ``-machine mem-merge=off``.
        shared_ram: True backs guest RAM with ``memory-backend-memfd,share=on``.
        thp: Let QEMU back guest RAM with transparent huge pages, as it does by default.
            Off (the lab's default) starts QEMU with PR_SET_THP_DISABLE, because
            khugepaged collapsing guest RAM into huge pages unmerges KSM pages with no
            copy-on-write and no event ksmtrace sees: with it on, per-VM merges minus
            COWs run ahead of ksm_merging_pages by the pages collapsed.
        extra_args: More QEMU arguments, appended as given.
    """

    name: str
    memory_mib: int = 128
    fill_mib: int = 48
    seed: int = 1
    shared: float = 0.6
    zero: float = 0.1
    churn: float = 0.0
    churn_rate: int = 0
    mem_merge: bool = True
    shared_ram: bool = False
    thp: bool = False
    extra_args: tuple[str, ...] = ()

    def validate(self) -> None:
        """Check the values before anything starts.

        Raises:
            UsageError: A value is out of range; the message says which.
        """
        if not _NAME_RE.fullmatch(self.name):
            raise UsageError(
                f"guest name {self.name!r} must be 1-48 letters, digits or _.- "
                "(it goes into QEMU options and file names)"
            )
        if not 64 <= self.memory_mib <= 16384:
            raise UsageError(f"guest {self.name}: memory_mib must be 64..16384")
        if not 1 <= self.fill_mib <= self.memory_mib - 40:
            raise UsageError(
                f"guest {self.name}: fill_mib must be 1..memory_mib-40 "
                f"({self.memory_mib - 40}); the guest kernel needs the rest"
            )
        fractions = (self.shared, self.zero, self.churn)
        if any(not 0 <= f <= 1 for f in fractions) or self.shared + self.zero > 1:
            raise UsageError(
                f"guest {self.name}: shared, zero and churn are fractions in 0..1 and "
                "shared + zero must not exceed 1"
            )
        if self.churn_rate < 0:
            raise UsageError(f"guest {self.name}: churn_rate must not be negative")

    def kernel_cmdline(self) -> str:
        """The guest kernel command line, memfill's parameters included."""
        return (
            "console=ttyS0 panic=-1 quiet "
            f"memfill.name={self.name} memfill.mib={self.fill_mib} memfill.seed={self.seed} "
            f"memfill.shared={self.shared} memfill.zero={self.zero} "
            f"memfill.churn={self.churn} memfill.rate={self.churn_rate}"
        )

    def qemu_argv(self, image: GuestImage, serial_log: Path) -> list[str]:
        """The QEMU command line of this guest."""
        argv = [
            QEMU,
            "-name", f"guest={self.name},debug-threads=on",
            "-accel", "tcg,tb-size=64",
            "-m", f"{self.memory_mib}M",
            "-smp", "1",
            "-nodefaults", "-nographic", "-no-reboot",
            "-monitor", "none",
            "-serial", f"file:{serial_log}",
            "-kernel", str(image.kernel),
            "-initrd", str(image.initramfs),
            "-append", self.kernel_cmdline(),
        ]  # fmt: skip
        machine = ["pc"]
        if not self.mem_merge:
            machine.append("mem-merge=off")
        if self.shared_ram:
            argv += [
                "-object",
                f"memory-backend-memfd,id=guest-ram,size={self.memory_mib}M,share=on",
            ]
            machine.append("memory-backend=guest-ram")
        return [*argv, "-machine", ",".join(machine), *self.extra_args]


@dataclass(frozen=True, slots=True)
class GuestReady:
    """What memfill reported in its readiness line (counts are 4 KiB guest pages).

    Attributes:
        pages: Pages filled.
        shared: Pages of shared content.
        zero: Zero-filled pages.
        unique: Pages unique to this guest.
        churn: Shared pages being rewritten.
        rate: Rewrites per second.
        fill_s: Seconds memfill took to fill (guest clock).
    """

    pages: int
    shared: int
    zero: int
    unique: int
    churn: int
    rate: int
    fill_s: float

    @classmethod
    def parse(cls, line: str) -> GuestReady:
        """Parse ``memfill: ready name=... pages=N ...``."""
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        ints = {k: int(fields[k]) for k in ("pages", "shared", "zero", "unique", "churn", "rate")}
        return cls(**ints, fill_s=float(fields["fill_s"]))


def _child_setup(parent: int, thp: bool) -> None:
    """Runs in the child before exec: SIGKILL it when the parent thread exits; maybe no THP."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if not thp:
        libc.prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)  # inherited across execve
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _end_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """End a guest by pid and forget it."""
    end_process(proc, grace_s)
    _RUNNING.pop(proc.pid, None)


@atexit.register
def _end_all_guests() -> None:
    """At interpreter exit, end every guest still running."""
    for proc in list(_RUNNING.values()):
        _end_process(proc, 2.0)


def _remove_stale_workdirs() -> None:
    """Remove work directories of labs whose process died without cleaning up."""
    with contextlib.suppress(OSError):
        for entry in WORKDIR_BASE.iterdir():
            owner = entry.name.partition("-")[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                shutil.rmtree(entry, ignore_errors=True)


class Guest:
    """One running QEMU guest. Use as a context manager, or call :meth:`stop`."""

    def __init__(self, spec: GuestSpec, image: GuestImage, workdir: Path) -> None:
        """Start QEMU (returns at once; :meth:`wait_ready` waits for memfill).

        Raises:
            UsageError: The spec is invalid.
            HostError: qemu-system-x86_64 is not installed.
        """
        spec.validate()
        self.spec = spec
        self.serial_log = workdir / f"{spec.name}.serial.log"
        self.qemu_log = workdir / f"{spec.name}.qemu.log"
        self.ready: GuestReady | None = None
        self.boot_s: float | None = None
        self.argv = spec.qemu_argv(image, self.serial_log)
        self.serial_log.write_bytes(b"")
        self._started = time.monotonic()
        with open(self.qemu_log, "wb") as err:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    preexec_fn=functools.partial(_child_setup, os.getpid(), spec.thp),
                )
            except FileNotFoundError as exc:
                raise HostError(
                    f"{QEMU} is not installed: apt-get install qemu-system-x86"
                ) from exc
        _RUNNING[self._proc.pid] = self._proc
        self.pid = self._proc.pid

    def __repr__(self) -> str:
        return f"Guest({self.spec.name!r}, pid={self.pid}, ready={self.ready is not None})"

    @property
    def name(self) -> str:
        """The guest name (as ``-name guest=`` and ProcessIdentity.vm)."""
        return self.spec.name

    @property
    def running(self) -> bool:
        """True while the QEMU process has not exited."""
        return self._proc.poll() is None

    def console(self) -> str:
        """Everything the guest printed on its serial console so far."""
        return self.serial_log.read_text(errors="replace")

    def _ready_line(self) -> str | None:
        # The line may follow terminal escapes the BIOS and kernel print on the same row.
        # Only whole lines count: QEMU may have written half of the line so far.
        complete = self.console().rpartition("\n")[0]
        for line in complete.splitlines():
            at = line.find(READY_PREFIX)
            if at >= 0:
                return line[at:]
        return None

    def _failure(self, what: str) -> VmLabError:
        tail = " | ".join(self.console().strip().splitlines()[-3:])
        qemu = " | ".join(self.qemu_log.read_text(errors="replace").strip().splitlines()[-3:])
        return VmLabError(
            f"guest {self.name} {what}; console: {tail or '(empty)'}; qemu: {qemu or '(empty)'}"
        )

    def poll_ready(self) -> bool:
        """Check once whether memfill printed its readiness line.

        Raises:
            VmLabError: QEMU exited before the guest was ready.
        """
        if self.ready is not None:
            return True
        line = self._ready_line()
        if line is not None:
            self.ready = GuestReady.parse(line)
            self.boot_s = time.monotonic() - self._started
            return True
        if not self.running:
            raise self._failure(f"exited (status {self._proc.returncode}) before it was ready")
        return False

    def wait_ready(self, timeout_s: float = 90.0) -> GuestReady:
        """Wait for memfill's readiness line on the serial console.

        Args:
            timeout_s: Seconds to wait from now.

        Returns:
            What memfill reported.

        Raises:
            VmLabError: QEMU exited first, or the timeout passed.
        """
        deadline = time.monotonic() + timeout_s
        while not self.poll_ready():
            if time.monotonic() > deadline:
                raise self._failure(f"printed no readiness line within {timeout_s:.0f} s")
            time.sleep(0.05)
        assert self.ready is not None
        return self.ready

    def ksm_stat(self, paths: HostPaths | None = None) -> procfs.KsmStat | None:
        """The QEMU process's ``/proc/<pid>/ksm_stat`` (None once it exited)."""
        return procfs.read_ksm_stat(paths or HostPaths(), self.pid)

    def threads(self) -> dict[int, str]:
        """The QEMU process's threads, tid to comm (vCPU threads are "CPU <n>/TCG")."""
        out: dict[int, str] = {}
        task = Path(f"/proc/{self.pid}/task")
        with contextlib.suppress(OSError):
            for tid in os.listdir(task):
                with contextlib.suppress(OSError):
                    out[int(tid)] = (task / tid / "comm").read_text().strip()
        return out

    def stop(self, grace_s: float = 5.0) -> None:
        """End QEMU by pid (SIGTERM, then SIGKILL after ``grace_s``) and reap it; idempotent."""
        _end_process(self._proc, grace_s)

    def __enter__(self) -> Guest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class GuestLab:
    """Boots guests from one prepared image into one work directory; ends them all on exit."""

    def __init__(
        self,
        workdir: Path | None = None,
        image: GuestImage | None = None,
        keep_logs: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """Describe the lab; nothing starts before ``__enter__``.

        Args:
            workdir: Where serial and QEMU logs go (if None, a fresh directory below
                :data:`WORKDIR_BASE`, removed on exit unless ``keep_logs``).
            image: Boot files; prepared (downloaded and built once, cached) if None.
            keep_logs: Keep the temporary work directory.
            progress: Called with a sentence before slow preparation steps.
        """
        self._workdir_arg = workdir
        self.image = image
        self.keep_logs = keep_logs
        self.progress = progress
        self.guests: list[Guest] = []
        self.workdir = workdir or Path()

    def __enter__(self) -> GuestLab:
        if shutil.which(QEMU) is None:
            raise HostError(f"{QEMU} is not installed: apt-get install qemu-system-x86")
        if self.image is None:
            self.image = prepare_image(progress=self.progress or (lambda _: None))
        if self._workdir_arg is None:
            _remove_stale_workdirs()
            WORKDIR_BASE.mkdir(parents=True, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=WORKDIR_BASE))
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def start(self, spec: GuestSpec) -> Guest:
        """Start one guest without waiting for it."""
        if self.image is None:
            raise UsageError("GuestLab.start() outside 'with GuestLab() as lab:'")
        if any(g.name == spec.name and g.running for g in self.guests):
            raise UsageError(f"a guest named {spec.name} is already running in this lab")
        guest = Guest(spec, self.image, self.workdir)
        self.guests.append(guest)
        return guest

    def boot(self, *specs: GuestSpec, timeout_s: float = 120.0) -> list[Guest]:
        """Start guests together and wait until every one is ready.

        Args:
            specs: The guests.
            timeout_s: Seconds for all of them to become ready.

        Returns:
            The guests, in the order of ``specs``.

        Raises:
            VmLabError: A guest failed or timed out (the guests of this call are stopped).
        """
        for spec in specs:
            spec.validate()
        started: list[Guest] = []
        try:
            started = [self.start(spec) for spec in specs]
            deadline = time.monotonic() + timeout_s
            # Poll all of them in turn, so each one's boot_s is its own.
            while not all([guest.poll_ready() for guest in started]):
                if time.monotonic() > deadline:
                    late = next(g for g in started if g.ready is None)
                    late.wait_ready(0)  # raises, with its console
                time.sleep(0.05)
        except BaseException:
            for guest in started:
                guest.stop(1.0)
            raise
        return started

    def stop_all(self) -> None:
        """Stop every guest of this lab (idempotent)."""
        for guest in self.guests:
            guest.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        if self._workdir_arg is None and not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
            with contextlib.suppress(OSError):  # other labs may still use the base folder
                WORKDIR_BASE.rmdir()


def _print_progress(text: str) -> None:
    sys.stderr.write(f"vmlab: {text}\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m ksmtrace.vmlab``: prepare the boot files, or boot guests by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m ksmtrace.vmlab",
        description="Prepare (download and build once) or boot ksmtrace's test guests.",
        epilog="examples:\n"
        "  python -m ksmtrace.vmlab prepare             fetch the kernel, build the initramfs\n"
        "  python -m ksmtrace.vmlab boot a b --seconds 60   two guests (same seed) for a minute",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("prepare", help="fetch the guest kernel and build the initramfs")
    boot = sub.add_parser("boot", help="boot guests, print their pids, wait, stop them")
    boot.add_argument("names", nargs="+", help="guest names")
    boot.add_argument("--seconds", type=float, default=30.0, help="how long to keep them (30)")
    boot.add_argument("--fill-mib", type=int, default=48, help="MiB memfill fills (48)")
    boot.add_argument("--churn-rate", type=int, default=0, help="rewrites per second (0)")
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            image = prepare_image(progress=_print_progress)
            sys.stdout.write(f"kernel    {image.kernel} ({image.kernel_package})\n")
            sys.stdout.write(f"initramfs {image.initramfs}\n")
            return 0
        specs = [
            GuestSpec(n, fill_mib=args.fill_mib, churn=0.2, churn_rate=args.churn_rate)
            for n in args.names
        ]
        with GuestLab(progress=_print_progress) as lab:
            for guest in lab.boot(*specs):
                sys.stdout.write(
                    f"{guest.name}: pid {guest.pid}, ready after {guest.boot_s:.1f} s\n"
                )
                sys.stdout.flush()
            time.sleep(args.seconds)
    except KsmtraceError as exc:
        sys.stderr.write(f"vmlab: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
