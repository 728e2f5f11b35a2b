"""Salted 64-bit page fingerprints: xxh3_64 seeded from the host's secret salt.

The seed is derived from :func:`ksmtrace.privacy.host_salt` (or a fleet salt file shared by
the hosts whose snapshots are compared), so fingerprints can be compared across processes
and snapshots of the same salt, but do not let anyone test a guess of a page's content
without the salt. Page contents never leave the reading process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import xxhash

from ksmtrace.errors import UsageError
from ksmtrace.privacy import host_salt

PAGE = 4096
_PERSON = b"ksmtrace-fp1"


def seed_from_salt(salt: bytes) -> int:
    """The 64-bit xxh3 seed for a salt (a keyed BLAKE2b of a fixed label)."""
    digest = hashlib.blake2b(_PERSON, key=salt[:64], digest_size=8).digest()
    return int.from_bytes(digest, "little")


def salt_id(seed: int) -> str:
    """A public name of the seed: equal ids mean comparable fingerprints (reveals nothing)."""
    return hashlib.blake2b(seed.to_bytes(8, "little"), digest_size=6).hexdigest()


def load_seed(salt_file: Path | None) -> int:
    """The seed of ``salt_file`` (a fleet-wide salt), or of this host's salt.

    Raises:
        UsageError: the salt file is unreadable or too short.
    """
    if salt_file is None:
        return seed_from_salt(host_salt())
    try:
        salt = salt_file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read salt file {salt_file}: {exc.strerror}") from None
    if len(salt) < 16:
        raise UsageError(f"salt file {salt_file} is too short: use 32 random bytes")
    return seed_from_salt(salt)


def hash_pages(buf: memoryview, n_pages: int, seed: int) -> npt.NDArray[np.uint64]:
    """xxh3_64 of each 4 KiB page of ``buf[: n_pages * 4096]``."""
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter(
        (digest(buf[o : o + PAGE], seed) for o in range(0, n_pages * PAGE, PAGE)),
        dtype=np.uint64,
        count=n_pages,
    )


def zero_page_hash(seed: int) -> int:
    """The fingerprint of an all-zero page under ``seed``."""
    return xxhash.xxh3_64_intdigest(bytes(PAGE), seed)
