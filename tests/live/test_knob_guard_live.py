"""KnobGuard against the real /sys/kernel/mm/ksm of this machine (needs root)."""

from __future__ import annotations

import os

import pytest

from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.sysfs import KNOBS, KnobGuard, ksm_available, read_ksm_sysfs

pytestmark = pytest.mark.live


def _knobs(paths: HostPaths) -> dict[str, int | str]:
    values = read_ksm_sysfs(paths)
    return {name: values[name] for name in KNOBS if name in values}


def test_knob_guard_restores_real_knobs_after_exception() -> None:
    assert os.geteuid() == 0, (
        "the live KnobGuard test writes /sys/kernel/mm/ksm and needs root: run pytest as root"
    )
    paths = HostPaths()
    assert ksm_available(paths), "/sys/kernel/mm/ksm is missing: this host has no KSM"
    before = _knobs(paths)
    assert before.get("advisor_mode", "none") == "none", (
        "advisor_mode is scan-time, so pages_to_scan cannot be written: set it to none first"
    )
    assert (before["pages_to_scan"], before["sleep_millisecs"]) != (4000, 10), (
        "pages_to_scan/sleep_millisecs already equal the test values; the test would prove nothing"
    )

    with pytest.raises(RuntimeError, match="interrupted on purpose"), KnobGuard(paths) as guard:
        guard.set("pages_to_scan", 4000)
        guard.set("sleep_millisecs", 10)
        inside = _knobs(paths)
        assert (inside["pages_to_scan"], inside["sleep_millisecs"]) == (4000, 10)
        raise RuntimeError("interrupted on purpose")

    assert guard.changed == {
        "pages_to_scan": str(before["pages_to_scan"]),
        "sleep_millisecs": str(before["sleep_millisecs"]),
    }
    assert _knobs(paths) == before
