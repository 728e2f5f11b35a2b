"""Tests of ksmtrace.kernel.sysfs against fixture copies of /sys/kernel/mm/ksm."""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ksmtrace.errors import HostError, KnobError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import sysfs
from ksmtrace.kernel.sysfs import (
    COUNTERS,
    KNOBS,
    KnobBusyError,
    KnobGuard,
    KsmAbsentError,
    ksm_available,
    read_ksm_sysfs,
    validate_knob,
    write_knob,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BASIC = HostPaths(FIXTURES / "host-basic")
OLD = HostPaths(FIXTURES / "host-oldkernel")

BASIC_VALUES: dict[str, int | str] = {
    "advisor_max_cpu": 70,
    "advisor_max_pages_to_scan": 30000,
    "advisor_min_pages_to_scan": 500,
    "advisor_mode": "none",
    "advisor_target_scan_time": 200,
    "full_scans": 12,
    "general_profit": -4096,
    "ksm_zero_pages": 0,
    "max_page_sharing": 256,
    "merge_across_nodes": 1,
    "pages_scanned": 24576,
    "pages_shared": 9,
    "pages_sharing": 31,
    "pages_skipped": 1830,
    "pages_to_scan": 1000,
    "pages_unshared": 1500,
    "pages_volatile": 508,
    "run": 1,
    "sleep_millisecs": 10,
    "smart_scan": 1,
    "stable_node_chains": 0,
    "stable_node_chains_prune_millisecs": 2000,
    "stable_node_dups": 0,
    "use_zero_pages": 0,
}


def _copy(source: HostPaths, root: Path) -> HostPaths:
    shutil.copytree(source.ksm_dir, root / "sys/kernel/mm/ksm")
    return HostPaths(root)


@pytest.fixture
def host(tmp_path: Path) -> HostPaths:
    """A writable copy of the host-basic ksm directory."""
    return _copy(BASIC, tmp_path / "basic")


@pytest.fixture
def old_host(tmp_path: Path) -> HostPaths:
    """A writable copy of the host-oldkernel ksm directory."""
    return _copy(OLD, tmp_path / "old")


def _raw(paths: HostPaths, name: str) -> str:
    return (paths.ksm_dir / name).read_text().strip()


class FakeKsm:
    """A writer that behaves like mm/ksm.c for the rules KnobGuard must respect.

    Writes go to the fixture files through write_knob. It refuses max_page_sharing and
    merge_across_nodes changes while pages are shared (EBUSY) until run=2 is written,
    refuses pages_to_scan while the scan-time advisor is on (EINVAL), and resets
    pages_to_scan when advisor_mode switches, as set_advisor_defaults() does.
    """

    def __init__(self, pages_shared: int = 0, *, unmerge_clears: bool = True) -> None:
        self.pages_shared = pages_shared
        self.unmerge_clears = unmerge_clears
        self.log: list[tuple[str, str]] = []
        self.on_write: list[tuple[str, str]] = []
        self.hook: object = None

    def __call__(self, paths: HostPaths, name: str, value: str | int) -> None:
        text = str(value)
        self.log.append((name, text))
        if callable(self.hook):
            self.hook(name, text)
        current = read_ksm_sysfs(paths)
        changing = str(current.get(name)) != text
        if name in ("max_page_sharing", "merge_across_nodes") and self.pages_shared and changing:
            raise KnobBusyError(f"cannot change {name} while KSM pages are shared")
        if name == "pages_to_scan" and current.get("advisor_mode") == "scan-time":
            raise KnobError("cannot set pages_to_scan while advisor_mode is scan-time")
        write_knob(paths, name, text)
        if name == "run" and text == "2" and self.unmerge_clears:
            self.pages_shared = 0
        if name == "advisor_mode" and changing:
            reset = current["advisor_min_pages_to_scan"] if text == "scan-time" else 100
            write_knob(paths, "pages_to_scan", reset)


# --- names and reading ---------------------------------------------------------------


def test_knobs_and_counters_cover_the_full_6_18_directory() -> None:
    assert set(KNOBS).isdisjoint(COUNTERS)
    assert set(KNOBS) | set(COUNTERS) == set(os.listdir(BASIC.ksm_dir))


def test_ksm_available(tmp_path: Path) -> None:
    assert ksm_available(BASIC)
    assert not ksm_available(HostPaths(tmp_path))


def test_read_ksm_sysfs_parses_every_file() -> None:
    values = read_ksm_sysfs(BASIC)
    assert values == BASIC_VALUES
    assert list(values) == sorted(values)


def test_read_ksm_sysfs_skips_files_missing_on_old_kernels() -> None:
    values = read_ksm_sysfs(OLD)
    missing = {"smart_scan", "ksm_zero_pages", "general_profit", "pages_skipped"}
    missing |= {name for name in KNOBS if name.startswith("advisor_")}
    assert missing.isdisjoint(values)
    assert values["pages_to_scan"] == 100
    assert values["pages_sharing"] == 60


def test_read_ksm_sysfs_without_ksm_dir(tmp_path: Path) -> None:
    with pytest.raises(KsmAbsentError) as info:
        read_ksm_sysfs(HostPaths(tmp_path))
    assert isinstance(info.value, HostError)
    assert info.value.exit_code == 2
    assert str(info.value) == (
        "KSM is not available: /sys/kernel/mm/ksm is missing; "
        "this kernel was built without CONFIG_KSM"
    )


def test_read_ksm_sysfs_skips_unreadable_vanished_and_non_regular(
    host: HostPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    (host.ksm_dir / "subdir").mkdir()
    real_read_bytes = Path.read_bytes

    def flaky_read_bytes(self: Path) -> bytes:
        if self.name == "pages_volatile":
            raise PermissionError(errno.EACCES, "Permission denied")
        if self.name == "full_scans":
            raise FileNotFoundError(errno.ENOENT, "gone")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", flaky_read_bytes)
    values = read_ksm_sysfs(host)
    assert "pages_volatile" not in values
    assert "full_scans" not in values
    assert "subdir" not in values
    assert values["pages_shared"] == 9


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[none] scan-time\n", "none"),
        ("none [scan-time]\n", "scan-time"),
        ("scan-time\n", "scan-time"),
    ],
)
def test_advisor_mode_selected_value(host: HostPaths, content: str, expected: str) -> None:
    (host.ksm_dir / "advisor_mode").write_text(content)
    assert read_ksm_sysfs(host)["advisor_mode"] == expected


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "normalised"),
    [
        ("run", "0", "0"),
        ("run", "2\n", "2"),
        ("pages_to_scan", "1", "1"),
        ("pages_to_scan", " 0100 ", "100"),
        ("pages_to_scan", str(2**32 - 1), str(2**32 - 1)),
        ("sleep_millisecs", "0", "0"),
        ("max_page_sharing", "2", "2"),
        ("merge_across_nodes", "0", "0"),
        ("use_zero_pages", "1", "1"),
        ("smart_scan", "0", "0"),
        ("stable_node_chains_prune_millisecs", "0", "0"),
        ("advisor_mode", "scan-time", "scan-time"),
        ("advisor_mode", "none\n", "none"),
        ("advisor_max_cpu", "0", "0"),
        ("advisor_min_pages_to_scan", "500", "500"),
        ("advisor_max_pages_to_scan", "30000", "30000"),
        ("advisor_target_scan_time", "1", "1"),
    ],
)
def test_validate_knob_accepts(name: str, value: str, normalised: str) -> None:
    assert validate_knob(name, value) == normalised


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("pages_to_scan", "abc", "invalid value 'abc' for pages_to_scan: expected an integer >= 1"),
        ("pages_to_scan", "0", "invalid value '0' for pages_to_scan: expected an integer >= 1"),
        ("pages_to_scan", "1.5", "invalid value '1.5' for pages_to_scan: expected an integer >= 1"),
        (
            "pages_to_scan",
            str(2**32),
            "invalid value '4294967296' for pages_to_scan: expected an integer <= 4294967295",
        ),
        (
            "sleep_millisecs",
            "-1",
            "invalid value '-1' for sleep_millisecs: expected an integer >= 0",
        ),
        (
            "max_page_sharing",
            "1",
            "invalid value '1' for max_page_sharing: expected an integer >= 2",
        ),
        (
            "run",
            "3",
            "invalid value '3' for run: expected 0 (stop), 1 (merge) or 2 (unmerge all)",
        ),
        ("use_zero_pages", "yes", "invalid value 'yes' for use_zero_pages: expected 0 or 1"),
        ("smart_scan", "2", "invalid value '2' for smart_scan: expected 0 or 1"),
        (
            "advisor_mode",
            "auto",
            "invalid value 'auto' for advisor_mode: expected 'none' or 'scan-time'",
        ),
        (
            "advisor_target_scan_time",
            "0",
            "invalid value '0' for advisor_target_scan_time: expected an integer >= 1",
        ),
        ("advisor_max_cpu", "", "invalid value '' for advisor_max_cpu: expected an integer >= 0"),
    ],
)
def test_validate_knob_rejects(name: str, value: str, message: str) -> None:
    with pytest.raises(KnobError) as info:
        validate_knob(name, value)
    assert str(info.value) == message


def test_validate_knob_rejects_unknown_names_and_counters() -> None:
    with pytest.raises(KnobError, match=r"^'pages_shared' is a read-only KSM counter: writable"):
        validate_knob("pages_shared", "1")
    with pytest.raises(KnobError, match=r"^'bogus' is not a KSM knob: writable knobs are run, "):
        validate_knob("bogus", "1")


# --- writing -------------------------------------------------------------------------


def test_write_knob_writes_validated_value(host: HostPaths) -> None:
    write_knob(host, "pages_to_scan", 4000)
    write_knob(host, "advisor_mode", "scan-time")
    write_knob(host, "sleep_millisecs", "007")
    assert _raw(host, "pages_to_scan") == "4000"
    assert read_ksm_sysfs(host)["advisor_mode"] == "scan-time"
    assert _raw(host, "sleep_millisecs") == "7"


def test_write_knob_validates_before_writing(host: HostPaths) -> None:
    with pytest.raises(KnobError, match="expected an integer >= 2"):
        write_knob(host, "max_page_sharing", 1)
    assert _raw(host, "max_page_sharing") == "256"


def test_write_knob_missing_on_old_kernel(old_host: HostPaths) -> None:
    with pytest.raises(KnobError) as info:
        write_knob(old_host, "smart_scan", 0)
    assert str(info.value) == (
        "/sys/kernel/mm/ksm/smart_scan does not exist: this kernel predates the smart_scan knob"
    )
    assert not (old_host.ksm_dir / "smart_scan").exists()


def test_write_knob_without_ksm(tmp_path: Path) -> None:
    with pytest.raises(KsmAbsentError):
        write_knob(HostPaths(tmp_path), "run", 1)


@pytest.mark.parametrize(
    ("name", "err", "cls", "fragment"),
    [
        ("max_page_sharing", errno.EBUSY, KnobBusyError, "while KSM pages are shared"),
        ("merge_across_nodes", errno.EBUSY, KnobBusyError, "write 2 to /sys/kernel/mm/ksm/run"),
        ("pages_to_scan", errno.EINVAL, KnobError, "set advisor_mode to none first"),
        ("run", errno.EACCES, KnobError, "run ksmtrace as root"),
        ("sleep_millisecs", errno.EPERM, KnobError, "run ksmtrace as root"),
        ("run", errno.EIO, KnobError, "the kernel refused run=1 (Input/output error)"),
        ("run", errno.EBUSY, KnobBusyError, "the kernel refused run=1 (Device or resource busy)"),
    ],
)
def test_write_knob_maps_os_errors(
    host: HostPaths,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    err: int,
    cls: type[KnobError],
    fragment: str,
) -> None:
    def failing_write(path: Path, text: str) -> None:
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(sysfs, "_write_attr", failing_write)
    value = "1" if name != "max_page_sharing" else "512"
    with pytest.raises(cls) as info:
        write_knob(host, name, value)
    assert type(info.value) is cls
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == err


# --- KnobGuard -----------------------------------------------------------------------


def test_guard_restores_after_exception(host: HostPaths) -> None:
    before = read_ksm_sysfs(host)
    with pytest.raises(RuntimeError, match="boom"), KnobGuard(host) as guard:
        guard.set("pages_to_scan", 4000)
        guard.set("sleep_millisecs", 5)
        guard.set("pages_to_scan", 5000)
        assert _raw(host, "pages_to_scan") == "5000"
        assert _raw(host, "sleep_millisecs") == "5"
        raise RuntimeError("boom")
    assert guard.changed == {"pages_to_scan": "1000", "sleep_millisecs": "10"}
    assert read_ksm_sysfs(host) == before


def test_guard_restores_after_keyboard_interrupt(host: HostPaths) -> None:
    before = read_ksm_sysfs(host)
    with pytest.raises(KeyboardInterrupt), KnobGuard(host) as guard:
        guard.set("use_zero_pages", 1)
        raise KeyboardInterrupt
    assert read_ksm_sysfs(host) == before


def test_guard_restores_on_normal_exit_and_cleans_up(
    host: HostPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = read_ksm_sysfs(host)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    registered: list[Callable[[], None]] = []
    unregistered: list[Callable[[], None]] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(atexit, "unregister", unregistered.append)
    with KnobGuard(host) as guard:
        assert len(registered) == 1
        assert signal.getsignal(signal.SIGTERM) is not handlers[signal.SIGTERM]
        guard.set("smart_scan", 0)
    assert read_ksm_sysfs(host) == before
    assert unregistered == registered
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert guard.original["pages_to_scan"] == "1000"
    assert guard.original["advisor_mode"] == "none"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_guard_restores_when_signalled_inside_block(host: HostPaths, signum: int) -> None:
    before = read_ksm_sysfs(host)
    previous = signal.getsignal(signum)
    with pytest.raises(SystemExit) as info, KnobGuard(host) as guard:
        guard.set("pages_to_scan", 4000)
        guard.set("run", 0)
        os.kill(os.getpid(), signum)
        for _ in range(200):
            time.sleep(0.01)
        pytest.fail("the signal did not interrupt the with-block")
    assert info.value.code == 128 + signum
    assert read_ksm_sysfs(host) == before
    assert signal.getsignal(signum) is previous


def test_guard_holds_signals_back_until_restore_is_done(host: HostPaths) -> None:
    before = read_ksm_sysfs(host)
    fake = FakeKsm()
    restoring = False

    def hook(name: str, text: str) -> None:
        if restoring and fake.log.count((name, text)) == 1 and name == "sleep_millisecs":
            os.kill(os.getpid(), signal.SIGTERM)

    fake.hook = hook
    with pytest.raises(SystemExit) as info, KnobGuard(host, writer=fake) as guard:
        guard.set("sleep_millisecs", 99)
        guard.set("pages_to_scan", 4000)
        guard.set("run", 0)
        restoring = True
    assert info.value.code == 128 + signal.SIGTERM
    assert read_ksm_sysfs(host) == before
    assert fake.log[-3:] == [("pages_to_scan", "1000"), ("sleep_millisecs", "10"), ("run", "1")]


def test_guard_restore_is_idempotent(host: HostPaths) -> None:
    fake = FakeKsm()
    with KnobGuard(host, writer=fake) as guard:
        guard.set("pages_to_scan", 4000)
    writes = len(fake.log)
    guard.restore()
    guard.restore()
    assert len(fake.log) == writes
    assert _raw(host, "pages_to_scan") == "1000"


def test_guard_skips_knobs_already_back_at_original(host: HostPaths) -> None:
    fake = FakeKsm()
    with KnobGuard(host, writer=fake) as guard:
        guard.set("sleep_millisecs", 50)
        guard.set("sleep_millisecs", 10)
    assert fake.log == [("sleep_millisecs", "50"), ("sleep_millisecs", "10")]


def test_guard_restore_order(host: HostPaths) -> None:
    before = read_ksm_sysfs(host)
    fake = FakeKsm()
    with KnobGuard(host, writer=fake) as guard:
        guard.set("run", 0)
        guard.set("max_page_sharing", 512)
        guard.set("use_zero_pages", 1)
        guard.set("advisor_min_pages_to_scan", 800)
        guard.set("advisor_mode", "scan-time")
        assert _raw(host, "pages_to_scan") == "800"
        with pytest.raises(KnobError, match="scan-time"):
            guard.set("pages_to_scan", 3000)
        guard.set("sleep_millisecs", 50)
        fake.log.clear()
    assert [name for name, _ in fake.log] == [
        "advisor_min_pages_to_scan",
        "advisor_mode",
        "pages_to_scan",
        "sleep_millisecs",
        "use_zero_pages",
        "max_page_sharing",
        "run",
    ]
    assert guard.changed["pages_to_scan"] == "1000"
    assert read_ksm_sysfs(host) == before


def test_guard_leaves_pages_to_scan_to_a_restored_advisor(host: HostPaths) -> None:
    (host.ksm_dir / "advisor_mode").write_text("none [scan-time]\n")
    (host.ksm_dir / "pages_to_scan").write_text("1234\n")
    fake = FakeKsm()
    with KnobGuard(host, writer=fake) as guard:
        guard.set("advisor_mode", "none")
        guard.set("pages_to_scan", 5000)
    assert read_ksm_sysfs(host)["advisor_mode"] == "scan-time"
    # The kernel's advisor now owns pages_to_scan (reset to advisor_min_pages_to_scan).
    assert _raw(host, "pages_to_scan") == "500"
    assert ("pages_to_scan", "1234") not in fake.log


def test_guard_unmerges_when_restore_is_busy(host: HostPaths) -> None:
    fake = FakeKsm()
    with KnobGuard(host, writer=fake) as guard:
        guard.set("max_page_sharing", 512)
        guard.set("merge_across_nodes", 0)
        fake.pages_shared = 9
        fake.log.clear()
    assert fake.log == [
        ("max_page_sharing", "256"),
        ("run", "2"),
        ("max_page_sharing", "256"),
        ("merge_across_nodes", "1"),
        ("run", "1"),
    ]
    assert guard.changed == {"max_page_sharing": "256", "merge_across_nodes": "1", "run": "1"}
    assert _raw(host, "run") == "1"
    assert _raw(host, "max_page_sharing") == "256"
    assert _raw(host, "merge_across_nodes") == "1"


def test_guard_reports_what_it_could_not_restore(host: HostPaths) -> None:
    fake = FakeKsm(unmerge_clears=False)
    guard = KnobGuard(host, writer=fake)
    with pytest.raises(KnobError) as info, guard:
        guard.set("max_page_sharing", 512)
        guard.set("pages_to_scan", 4000)
        fake.pages_shared = 9
    message = str(info.value)
    assert message.startswith("could not restore KSM knobs: max_page_sharing=256 (cannot change")
    assert "\n" not in message
    assert _raw(host, "pages_to_scan") == "1000"
    assert _raw(host, "run") == "1"
    fake.unmerge_clears = True
    fake.pages_shared = 0
    guard.restore()
    assert _raw(host, "max_page_sharing") == "256"


def test_guard_set_rejects_without_recording(host: HostPaths, old_host: HostPaths) -> None:
    with KnobGuard(host) as guard:
        with pytest.raises(KnobError):
            guard.set("pages_to_scan", "lots")
        assert guard.changed == {}
    with KnobGuard(old_host) as old_guard:
        with pytest.raises(KnobError, match="predates the smart_scan knob"):
            old_guard.set("smart_scan", 0)
        assert old_guard.changed == {}
        assert "smart_scan" not in old_guard.original


def test_guard_set_outside_block(host: HostPaths) -> None:
    guard = KnobGuard(host)
    with pytest.raises(RuntimeError, match="inside its with-block"):
        guard.set("run", 0)
    with guard:
        pass
    with pytest.raises(RuntimeError, match="inside its with-block"):
        guard.set("run", 0)


def test_guard_without_ksm(tmp_path: Path) -> None:
    with pytest.raises(KsmAbsentError), KnobGuard(HostPaths(tmp_path)):
        pass


def test_guard_without_signal_handling_leaves_handlers(host: HostPaths) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with KnobGuard(host, handle_signals=False):
        assert signal.getsignal(signal.SIGTERM) is previous


# --- KnobGuard in a separate process ---------------------------------------------------

_CHILD_PRELUDE = """
import sys, time
from pathlib import Path
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.sysfs import KnobGuard
paths = HostPaths(Path(sys.argv[1]))
"""


def _child(script: str, root: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = _CHILD_PRELUDE + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_guard_atexit_restores_when_block_never_unwinds(host: HostPaths) -> None:
    child = _child(
        """
        guard = KnobGuard(paths)
        guard.__enter__()
        guard.set("pages_to_scan", 4000)
        assert (paths.ksm_dir / "pages_to_scan").read_text().strip() == "4000"
        sys.exit(3)
        """,
        host.root,
    )
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 3, stderr
    assert _raw(host, "pages_to_scan") == "1000"


def test_guard_restores_when_another_process_sends_sigterm(host: HostPaths) -> None:
    child = _child(
        """
        with KnobGuard(paths) as guard:
            guard.set("pages_to_scan", 4000)
            guard.set("run", 0)
            print("ready", flush=True)
            time.sleep(60)
        """,
        host.root,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        assert _raw(host, "pages_to_scan") == "4000"
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert child.returncode == 128 + signal.SIGTERM
    assert _raw(host, "pages_to_scan") == "1000"
    assert _raw(host, "run") == "1"


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_sessions_knobs_are_restored_by_the_next_guard(host: HostPaths) -> None:
    import json

    # A session changed pages_to_scan (1000 -> 4000) and run, then died without restoring.
    original = {k: _raw(host, k) for k in ("pages_to_scan", "run", "sleep_millisecs")}
    (host.ksm_dir / "pages_to_scan").write_text("4000\n")
    (host.ksm_dir / "run").write_text("2\n")
    dead = _dead_pid()
    journal = host.root / "run" / "ksmtrace" / f"knobs.{dead}.json"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"pid": dead, "original": original}))
    with KnobGuard(host, handle_signals=False) as guard:
        assert guard.recovered == {
            "pages_to_scan": original["pages_to_scan"],
            "run": original["run"],
        }
        assert _raw(host, "pages_to_scan") == original["pages_to_scan"]
        guard.set("sleep_millisecs", 7)
        mine = list(journal.parent.glob("knobs.*.json"))
        assert (
            len(mine) == 1
            and json.loads(mine[0].read_text())["original"]["sleep_millisecs"]
            == original["sleep_millisecs"]
        )
    assert not journal.exists()
    assert not list(journal.parent.glob("knobs.*.json")), "a clean restore removes its journal"


def test_a_live_sessions_journal_is_left_alone(host: HostPaths) -> None:
    import json
    import os

    (host.ksm_dir / "pages_to_scan").write_text("4000\n")
    journal = host.root / "run" / "ksmtrace" / "knobs.1.json"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"pid": os.getppid(), "original": {"pages_to_scan": "100"}}))
    with KnobGuard(host, handle_signals=False) as guard:
        assert guard.recovered == {}
    assert _raw(host, "pages_to_scan") == "4000" and journal.exists()


def test_guard_lets_ksmd_drop_exited_processes_before_switching_ksm_off(host: HostPaths) -> None:
    """run back to 0 only after ksmd passed its list twice, so pages of processes that
    exited during the session do not stay counted in pages_sharing."""
    (host.ksm_dir / "run").write_text("0\n")
    (host.ksm_dir / "pages_sharing").write_text("500\n")
    scans_when_run_written: list[str] = []

    def writer(paths: HostPaths, name: str, value: str) -> None:
        if name == "run" and value == "0":
            scans_when_run_written.append(_raw(paths, "full_scans"))
        (paths.ksm_dir / name).write_text(value + "\n")

    def ksmd_scanning() -> None:
        for n in (13, 14):
            time.sleep(0.1)
            (host.ksm_dir / "full_scans").write_text(f"{n}\n")

    with KnobGuard(host, writer=writer, settle_s=5.0) as guard:
        guard.set("run", 1)
        scanner = threading.Thread(target=ksmd_scanning)
        scanner.start()
    scanner.join()
    assert scans_when_run_written == ["14"], "restored only after two more full scans"
    started = time.monotonic()
    with KnobGuard(host, writer=writer, settle_s=5.0) as guard:
        guard.set("run", 1)
        for name in ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile"):
            (host.ksm_dir / name).write_text("0\n")
    assert time.monotonic() - started < 1.0, "an empty ksmd list needs no wait"
