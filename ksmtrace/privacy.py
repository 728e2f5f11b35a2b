"""Keeping kernel addresses and frame numbers on the host: salted ids for mm pointers and pfns.

Events carry raw ``mm_struct`` addresses and KSM page frame numbers, which ksmtrace needs
internally (to join events) but must not write to trace files or expose to Prometheus by
default. :func:`sanitize` replaces both with keyed BLAKE2b digests under a per-host secret
salt, so the same mm or page still gets the same id within a host (joins keep working)
while the values reveal nothing about kernel memory.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import numpy as np

from ksmtrace.events import EventBatch, EventKind
from ksmtrace.private_files import make_private_dir, open_private

SALT_PATH = Path("/var/lib/ksmtrace/salt")


def host_salt(path: Path = SALT_PATH) -> bytes:
    """The host's secret salt, created (32 random bytes, mode 0600) on first use."""
    try:
        data = path.read_bytes()
        if len(data) >= 16:
            return data
    except OSError:
        pass
    salt = secrets.token_bytes(32)
    try:
        make_private_dir(path.parent)
        with open_private(path) as f:
            f.write(salt)
    except OSError:
        pass  # unwritable (not root): a per-process salt still hides the values
    return salt


#: Digests already computed, per salt: mm addresses and KSM frames recur in every interval.
_CACHE: dict[bytes, dict[int, int]] = {}
_CACHE_LIMIT = 1 << 20


def _digest(value: int, salt: bytes) -> int:
    digest = hashlib.blake2b(value.to_bytes(8, "little"), key=salt[:64], digest_size=8)
    return int.from_bytes(digest.digest(), "little") or 1


def salted_ids(values: np.ndarray, salt: bytes) -> np.ndarray:
    """64-bit keyed digests of ``values`` (0 stays 0, equal inputs give equal outputs)."""
    uniq, inverse = np.unique(values.astype(np.uint64), return_inverse=True)
    cache = _CACHE.setdefault(salt, {})
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    out = np.empty(len(uniq), dtype=np.uint64)
    for i, v in enumerate(uniq.tolist()):
        if v == 0:
            out[i] = 0
            continue
        got = cache.get(v)
        if got is None:
            got = cache[v] = _digest(v, salt)
        out[i] = got
    mapped: np.ndarray = out[inverse]
    return mapped


def sanitize(batch: EventBatch, salt: bytes) -> EventBatch:
    """A copy of ``batch`` with mm addresses and frame numbers replaced by salted ids."""
    rec = batch.records.copy()
    if not len(rec):
        return EventBatch(rec)
    rec["mm"] = salted_ids(rec["mm"], salt)
    merge = rec["kind"] == EventKind.MERGE
    rec["value"][merge] = salted_ids(rec["value"][merge], salt)
    cow = (rec["kind"] == EventKind.COW) | (rec["kind"] == EventKind.ZERO_COW)
    rec["value2"][cow] = salted_ids(rec["value2"][cow], salt)
    return EventBatch(rec)
