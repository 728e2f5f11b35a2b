"""The user a process runs as, for tenants and the across-users sharing figure."""

from __future__ import annotations

import os

from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import parse_status_uid, resolve_identity


def test_uid_from_status() -> None:
    status = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t0\t1000\n"
    assert parse_status_uid(status) == 1000
    assert parse_status_uid("Name:\tx\n") is None
    assert parse_status_uid("Uid:\n") is None


def test_resolved_identity_has_the_real_uid() -> None:
    ident = resolve_identity(HostPaths(), os.getpid())
    assert ident is not None and ident.uid == os.getuid()
