"""Kernel addresses and frame numbers are replaced by salted ids before leaving the host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ksmtrace.events import Event, EventBatch, EventKind
from ksmtrace.privacy import host_salt, salted_ids, sanitize

MM = 0xFFFF888123456000
PFN = 0x1234567


def test_sanitize_hides_mm_and_frames_but_keeps_joins() -> None:
    batch = EventBatch.from_events(
        [
            Event(EventKind.MERGE, 1, pid=5, mm=MM, addr=0x7F0000001000, value=PFN),
            Event(EventKind.COW, 2, pid=5, mm=MM, addr=0x7F0000001000, value=99, value2=PFN),
            Event(EventKind.SCAN, 3, pid=5, mm=MM, value=100, value2=2000),
        ]
    )
    out = sanitize(batch, b"k" * 32).records
    assert not np.isin(out["mm"], [MM]).any()
    assert len(set(out["mm"].tolist())) == 1, "one mm keeps one id: events still join"
    assert out["value"][0] == out["value2"][1] != PFN, "the KSM frame id matches across kinds"
    assert out["value"][1] == 99 and out["value"][2] == 100, "lifetimes and counts untouched"
    assert out["addr"][0] == 0x7F0000001000, "user addresses are not kernel addresses"
    assert batch.records["mm"][0] == MM, "the input is not modified"


def test_salted_ids_depend_on_the_salt_and_keep_zero() -> None:
    values = np.array([0, 1, 2, 2], dtype=np.uint64)
    a, b = salted_ids(values, b"a" * 32), salted_ids(values, b"b" * 32)
    assert a[0] == 0 and a[2] == a[3] and a[1] != a[2]
    assert a[1] != b[1]


def test_host_salt_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "lib" / "salt"
    first = host_salt(path)
    assert host_salt(path) == first and len(first) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
