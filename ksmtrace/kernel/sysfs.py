"""Reading, validating and safely changing the KSM knobs and counters in /sys/kernel/mm/ksm."""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final

from ksmtrace.errors import HostError, KnobError
from ksmtrace.events import KNOB_NAMES
from ksmtrace.hostpaths import HostPaths
from ksmtrace.private_files import make_private_dir, open_private
from ksmtrace.signals import redeliver, signals_deferred

__all__ = [
    "COUNTERS",
    "KNOBS",
    "KnobBusyError",
    "KnobGuard",
    "KnobWriter",
    "KsmAbsentError",
    "ksm_available",
    "read_ksm_sysfs",
    "validate_knob",
    "write_knob",
]

_log = logging.getLogger(__name__)

#: Writable files of /sys/kernel/mm/ksm on 6.x kernels (older kernels lack some of them);
#: the same list, in the same order, names the knobs of KNOB events in trace files.
KNOBS: Final = KNOB_NAMES

#: Read-only counter files of /sys/kernel/mm/ksm on 6.x kernels.
COUNTERS: Final = (
    "pages_shared",
    "pages_sharing",
    "pages_unshared",
    "pages_volatile",
    "pages_scanned",
    "pages_skipped",
    "full_scans",
    "ksm_zero_pages",
    "general_profit",
    "stable_node_chains",
    "stable_node_dups",
)

_U32_MAX: Final = 2**32 - 1
_INT_MAX: Final = 2**31 - 1
_ULONG_MAX: Final = 2**64 - 1

#: Inclusive integer range per numeric knob, from the kstrto*() type and checks in mm/ksm.c.
_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "pages_to_scan": (1, _U32_MAX),
    "sleep_millisecs": (0, _U32_MAX),
    "max_page_sharing": (2, _INT_MAX),
    "stable_node_chains_prune_millisecs": (0, _U32_MAX),
    "advisor_max_cpu": (0, _ULONG_MAX),
    "advisor_min_pages_to_scan": (0, _ULONG_MAX),
    "advisor_max_pages_to_scan": (0, _ULONG_MAX),
    "advisor_target_scan_time": (1, _ULONG_MAX),
}

_CHOICES: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "run": (("0", "1", "2"), "0 (stop), 1 (merge) or 2 (unmerge all)"),
    "merge_across_nodes": (("0", "1"), "0 or 1"),
    "use_zero_pages": (("0", "1"), "0 or 1"),
    "smart_scan": (("0", "1"), "0 or 1"),
    "advisor_mode": (("none", "scan-time"), "'none' or 'scan-time'"),
}

#: Knobs the kernel refuses to change (EBUSY) while any KSM page is shared.
_NEED_UNSHARED: Final = ("max_page_sharing", "merge_across_nodes")

_ADVISOR_PARAMS: Final = (
    "advisor_max_cpu",
    "advisor_min_pages_to_scan",
    "advisor_max_pages_to_scan",
    "advisor_target_scan_time",
)

_DECIMAL = re.compile(r"[0-9]+")
_SIGNED_DECIMAL = re.compile(r"-?[0-9]+")
_SELECTED = re.compile(r"\[([^\]]*)\]")

#: Writes one knob; ``write_knob`` or a test double with the same contract.
KnobWriter = Callable[[HostPaths, str, str | int], None]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class KsmAbsentError(HostError):
    """The kernel has no /sys/kernel/mm/ksm (built without CONFIG_KSM)."""


class KnobBusyError(KnobError):
    """The kernel answered EBUSY: the knob cannot change while KSM pages are shared."""


def ksm_available(paths: HostPaths) -> bool:
    """Tell whether ``/sys/kernel/mm/ksm`` exists (the kernel has CONFIG_KSM).

    Args:
        paths: Host paths to look below.

    Returns:
        True if the KSM sysfs directory exists.
    """
    return paths.ksm_dir.is_dir()


def _absent() -> KsmAbsentError:
    return KsmAbsentError(
        "KSM is not available: /sys/kernel/mm/ksm is missing; "
        "this kernel was built without CONFIG_KSM"
    )


def _parse_value(text: str) -> int | str:
    """Turn one sysfs file's content into an int, a selected ``[choice]``, or plain text."""
    text = text.strip()
    if _SIGNED_DECIMAL.fullmatch(text):
        return int(text)
    selected = _SELECTED.search(text)
    return selected.group(1) if selected else text


def _read_attr(path: Path) -> int | str | None:
    """Read one sysfs attribute, or None if it vanished or cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return _parse_value(raw.decode("ascii", errors="replace"))


def read_ksm_sysfs(paths: HostPaths) -> dict[str, int | str]:
    """Read every file of ``/sys/kernel/mm/ksm`` (knobs and counters).

    Files missing on older kernels are simply absent from the result, as are files that
    cannot be read. ``advisor_mode`` ("[none] scan-time") yields the selected value.

    Args:
        paths: Host paths to read below.

    Returns:
        File name to value, sorted by name; integers as ``int`` (``general_profit`` may be
        negative), anything else as ``str``.

    Raises:
        KsmAbsentError: The KSM directory does not exist.
    """
    try:
        entries = sorted(os.scandir(paths.ksm_dir), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        raise _absent() from None
    values: dict[str, int | str] = {}
    for entry in entries:
        if not entry.is_file():
            continue
        value = _read_attr(Path(entry.path))
        if value is not None:
            values[entry.name] = value
    return values


def _knob_error(name: str, value: str, expected: str) -> KnobError:
    return KnobError(f"invalid value {value!r} for {name}: expected {expected}")


def validate_knob(name: str, value: str) -> str:
    """Check a value for a ``/sys/kernel/mm/ksm`` knob before it is written.

    The rules mirror the parsing in mm/ksm.c (``run_store``, ``pages_to_scan_store`` and
    friends), with two stricter choices: ``pages_to_scan`` must be at least 1 and the
    boolean knobs take only 0 or 1.

    Args:
        name: Knob name, one of ``KNOBS``.
        value: Value as it would be written; surrounding whitespace is ignored.

    Returns:
        The value normalised for writing (integers without leading zeros).

    Raises:
        KnobError: The name is not a writable knob or the value is out of range.
    """
    if name not in KNOBS:
        kind = "a read-only KSM counter" if name in COUNTERS else "not a KSM knob"
        raise KnobError(f"{name!r} is {kind}: writable knobs are {', '.join(KNOBS)}")
    text = value.strip()
    if name in _CHOICES:
        choices, expected = _CHOICES[name]
        if text not in choices:
            raise _knob_error(name, value, expected)
        return text
    low, high = _INT_RANGES[name]
    if not _DECIMAL.fullmatch(text) or int(text) < low:
        raise _knob_error(name, value, f"an integer >= {low}")
    if int(text) > high:
        raise _knob_error(name, value, f"an integer <= {high}")
    return str(int(text))


def _write_attr(path: Path, text: str) -> None:
    """Write a whole sysfs attribute in one write(2), without creating the file."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, f"{text}\n".encode("ascii"))
    finally:
        os.close(fd)


def _write_failure(name: str, text: str, exc: OSError) -> KnobError:
    """Explain why the kernel refused ``name=text``."""
    where = f"/sys/kernel/mm/ksm/{name}"
    if exc.errno == errno.ENOENT:
        return KnobError(f"{where} does not exist: this kernel predates the {name} knob")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return KnobError(f"permission denied writing {where}: run ksmtrace as root")
    if exc.errno == errno.EBUSY and name in _NEED_UNSHARED:
        return KnobBusyError(
            f"cannot change {name} while KSM pages are shared (pages_shared > 0): "
            "write 2 to /sys/kernel/mm/ksm/run to unmerge everything first"
        )
    if exc.errno == errno.EINVAL and name == "pages_to_scan":
        return KnobError(
            "cannot set pages_to_scan while advisor_mode is scan-time (the advisor owns it): "
            "set advisor_mode to none first"
        )
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    cls = KnobBusyError if exc.errno == errno.EBUSY else KnobError
    return cls(f"the kernel refused {name}={text} ({reason}): check {where} and retry")


def write_knob(paths: HostPaths, name: str, value: str | int) -> None:
    """Validate and write one knob of ``/sys/kernel/mm/ksm``.

    Args:
        paths: Host paths to write below.
        name: Knob name, one of ``KNOBS``.
        value: New value.

    Raises:
        KsmAbsentError: The KSM directory does not exist.
        KnobBusyError: The kernel answered EBUSY (``max_page_sharing`` and
            ``merge_across_nodes`` need ``pages_shared == 0``).
        KnobError: The value is invalid, or the kernel refused it.
    """
    text = validate_knob(name, str(value))
    if not ksm_available(paths):
        raise _absent()
    try:
        _write_attr(paths.ksm_dir / name, text)
    except OSError as exc:
        raise _write_failure(name, text, exc) from exc


def _read_knob(paths: HostPaths, name: str) -> str | None:
    value = _read_attr(paths.ksm_dir / name)
    return None if value is None else str(value)


#: Counters that are all 0 exactly when ksmd has no rmap_items left.
_LIST_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")


def _restore_order(names: list[str]) -> list[str]:
    """Order knobs so each restore is accepted by the kernel.

    Advisor parameters come before ``advisor_mode`` (switching to scan-time copies
    ``advisor_min_pages_to_scan`` into ``pages_to_scan``), ``advisor_mode`` before
    ``pages_to_scan`` (refused while the advisor is active, reset when it is switched off),
    the knobs that need ``pages_shared == 0`` near the end, and ``run`` last.
    """
    rank = {name: 0 for name in _ADVISOR_PARAMS}
    rank |= {"advisor_mode": 1, "pages_to_scan": 2, "run": 5}
    rank |= {name: 4 for name in _NEED_UNSHARED}
    return sorted(names, key=lambda name: (rank.get(name, 3), KNOBS.index(name)))


class KnobGuard:
    """Change KSM knobs for the length of a ``with`` block and put them back afterwards.

    On entry every existing knob of ``/sys/kernel/mm/ksm`` is recorded; :meth:`set` writes a
    knob and remembers its original value in :attr:`changed`. On exit (normal, exception,
    ``KeyboardInterrupt``, ``SystemExit``) the changed knobs are restored in an order the
    kernel accepts, ``run`` last. SIGTERM and SIGHUP are turned into ``SystemExit(128 +
    signum)`` in the main thread while the block runs, so they unwind it too, and an
    ``atexit`` hook restores if the interpreter exits without unwinding. Signals arriving
    during the restore are held back until it is done.

    Attributes:
        changed: Original value of every knob changed through this guard (including
            ``pages_to_scan`` when ``advisor_mode`` was changed, since the kernel resets it,
            and ``run`` when restoring needed an unmerge).
    """

    def __init__(
        self,
        paths: HostPaths,
        *,
        writer: KnobWriter = write_knob,
        handle_signals: bool = True,
        settle_s: float = 2.0,
    ) -> None:
        """Prepare a guard; nothing is read or written before ``__enter__``.

        Args:
            paths: Host paths of the KSM directory to guard.
            writer: Function that writes one knob; tests inject a fake kernel here.
            handle_signals: Convert SIGTERM/SIGHUP to ``SystemExit`` inside the block.
            settle_s: Longest wait, before KSM goes back off, for ksmd to drop the pages of
                processes that exited during the block (0: do not wait).
        """
        self._paths = paths
        self._writer = writer
        self._handle_signals = handle_signals
        self._settle_s = settle_s
        self._original: dict[str, str] = {}
        self._restored: set[str] = set()
        self._entered = False
        self._exited = False
        self._previous_handlers: dict[int, _Handler] = {}
        self.changed: dict[str, str] = {}
        self._journal_dir = paths.root / "run" / "ksmtrace"
        self._journal: Path | None = None
        #: Knobs put back from the journal of a session that was killed (kill -9) before it
        #: could restore them itself, by name.
        self.recovered: dict[str, str] = {}

    @property
    def original(self) -> dict[str, str]:
        """Every knob's value as read on entry (a copy)."""
        return dict(self._original)

    def __enter__(self) -> KnobGuard:
        if not ksm_available(self._paths):
            raise _absent()
        self._recover_killed_sessions()
        for name in KNOBS:
            value = _read_knob(self._paths, name)
            if value is not None:
                self._original[name] = value
        self._entered = True
        atexit.register(self._restore_at_exit)
        if self._handle_signals:
            self.install_signal_handlers()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exited = True
        try:
            self.restore()
        finally:
            atexit.unregister(self._restore_at_exit)
            self._uninstall_signal_handlers()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGHUP raise ``SystemExit(128 + signum)`` until the block ends.

        Does nothing outside the main thread (Python delivers signals only there) or when
        already installed. The previous handlers come back on exit.
        """
        if self._previous_handlers or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._previous_handlers[signum] = signal.signal(signum, _exit_on_signal)

    def _uninstall_signal_handlers(self) -> None:
        while self._previous_handlers:
            signum, handler = self._previous_handlers.popitem()
            signal.signal(signum, handler)

    def set(self, name: str, value: str | int) -> None:
        """Write a knob, recording its original value for the restore.

        Args:
            name: Knob name, one of ``KNOBS``.
            value: New value.

        Raises:
            RuntimeError: Called outside the ``with`` block.
            KnobError: The value is invalid or the kernel refused it (nothing changed).
        """
        if not self._entered or self._exited:
            raise RuntimeError("KnobGuard.set() must be called inside its with-block")
        text = validate_knob(name, str(value))
        # Switching advisor_mode makes the kernel rewrite pages_to_scan.
        affected = [name, "pages_to_scan"] if name == "advisor_mode" else [name]
        new_records = [n for n in affected if n in self._original and n not in self.changed]
        self._write_journal()
        for knob in new_records:
            self.changed[knob] = self._original[knob]
        self._restored.difference_update(affected)
        try:
            self._writer(self._paths, name, text)
        except KnobError:
            # The kernel refused the write, so the knob still has its original value.
            for knob in new_records:
                del self.changed[knob]
            raise

    def restore(self) -> None:
        """Put every changed knob back; calling it again retries only what failed.

        Raises:
            KnobError: Some knobs could not be restored; the message names them.
        """
        failures: list[str] = []
        with signals_deferred() as arrived:
            if self.changed.get("run", "1") != "1" and "run" not in self._restored:
                self._let_ksmd_drop_exited()
            pending = _restore_order([n for n in self.changed if n not in self._restored])
            for name in pending:
                self._attempt_restore(name, failures)
            if "run" in self.changed and "run" not in pending and "run" not in self._restored:
                # _unmerge_all() wrote run=2 on the way; run goes back last.
                self._attempt_restore("run", failures)
        error = (
            KnobError(f"could not restore KSM knobs: {'; '.join(failures)}") if failures else None
        )
        if error is not None and arrived:
            _log.error("%s", error)
        if error is None and self._journal is not None:
            self._journal.unlink(missing_ok=True)
            self._journal = None
        for signum in dict.fromkeys(arrived):
            redeliver(signum)
        if error is not None:
            raise error

    def _let_ksmd_drop_exited(self) -> None:
        """Let ksmd pass its list twice (at most ``settle_s``) before KSM is switched off.

        ksmd keeps counting the merged pages of a process that exited in pages_sharing until
        its scan reaches that process; switched off at once, it never would, and the host
        would show savings for processes long gone.
        """
        if self._settle_s <= 0 or _read_knob(self._paths, "run") != "1":
            return
        first = _read_attr(self._paths.ksm_dir / "full_scans")
        if not isinstance(first, int):
            return
        deadline = time.monotonic() + self._settle_s
        while time.monotonic() < deadline:
            now = _read_attr(self._paths.ksm_dir / "full_scans")
            if not isinstance(now, int) or now >= first + 2:
                return
            # Nothing left in ksmd's list (it then sleeps and full_scans stands still).
            if all(_read_attr(self._paths.ksm_dir / f) == 0 for f in _LIST_COUNTERS):
                return
            time.sleep(0.02)

    # -- journal: a session killed with SIGKILL cannot restore; the next one does ------

    def _write_journal(self) -> None:
        """Record the original knobs in /run/ksmtrace before the first change."""
        if self._journal is not None:
            return
        path = self._journal_dir / f"knobs.{os.getpid()}.json"
        try:
            make_private_dir(self._journal_dir)
            with open_private(path, "w") as f:
                json.dump({"pid": os.getpid(), "original": self._original}, f)
        except OSError as exc:
            _log.warning("cannot write knob journal %s: %s", path, exc.strerror)
            return
        self._journal = path

    def _recover_killed_sessions(self) -> None:
        """Put back the knobs of sessions whose process died without restoring them."""
        journals = []
        for path in self._journal_dir.glob("knobs.*.json"):
            try:
                data = json.loads(path.read_text())
                pid, original = int(data["pid"]), dict(data["original"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue
            journals.append((path.stat().st_mtime, path, original))
        # Newest first, so the oldest session's originals (the real ones) are written last.
        for _mtime, path, original in sorted(journals, key=lambda j: j[0], reverse=True):
            for name in _restore_order([n for n in original if n in KNOBS]):
                value = str(original[name])
                if _read_knob(self._paths, name) == value:
                    continue
                try:
                    self._writer(self._paths, name, value)
                    self.recovered[name] = value
                except KnobError as exc:
                    _log.warning(
                        "cannot restore %s=%s left by a killed session: %s", name, value, exc
                    )
            path.unlink(missing_ok=True)

    def _attempt_restore(self, name: str, failures: list[str]) -> None:
        try:
            self._restore_one(name)
        except KnobError as exc:
            failures.append(f"{name}={self.changed[name]} ({exc})")
        else:
            self._restored.add(name)

    def _restore_one(self, name: str) -> None:
        original = self.changed[name]
        if _read_knob(self._paths, name) == original:
            return
        if name == "pages_to_scan" and _read_knob(self._paths, "advisor_mode") == "scan-time":
            # The scan-time advisor sets pages_to_scan itself and rejects writes to it.
            return
        try:
            self._writer(self._paths, name, original)
        except KnobBusyError:
            if name not in _NEED_UNSHARED or "run" not in self._original:
                raise
            self._unmerge_all()
            self._writer(self._paths, name, original)

    def _unmerge_all(self) -> None:
        """Write run=2 so that pages_shared drops to 0; ``run`` is then restored last."""
        self.changed.setdefault("run", self._original["run"])
        self._restored.discard("run")
        self._writer(self._paths, "run", "2")

    def _restore_at_exit(self) -> None:
        try:
            self.restore()
        except KnobError as exc:
            _log.error("%s", exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Signal handler: unwind the main thread as ``SystemExit(128 + signum)``."""
    raise SystemExit(128 + signum)
