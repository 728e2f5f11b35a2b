"""Compact summaries of a process's page contents for co-location across many hosts.

Page fingerprints are already uniform 64-bit salted hashes, so both sketches work on them
directly: a HyperLogLog (2^12 one-byte registers) estimates distinct contents and merges
by register-wise max; a bottom-k MinHash (the k smallest distinct fingerprints) estimates
Jaccard similarity. From them, the pages two processes would share if placed together is
about |A| + |B| - |A u B| distinct contents. Sketches of several hosts are comparable when
their snapshots used the same salt.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ksmtrace.errors import UsageError

HLL_BITS = 12
MINHASH_K = 256
_M = 1 << HLL_BITS
_ALPHA = 0.7213 / (1 + 1.079 / _M)

U64 = npt.NDArray[np.uint64]


@dataclass(slots=True)
class Sketch:
    """HyperLogLog registers, bottom-k fingerprints and the page count of one process."""

    name: str
    pages: int
    hll: npt.NDArray[np.uint8]
    bottom: U64

    @classmethod
    def of(cls, name: str, hashes: U64) -> Sketch:
        """Sketch the fingerprints of one process's pages."""
        h = hashes.astype(np.uint64)
        index = (h >> np.uint64(64 - HLL_BITS)).astype(np.int64)
        rest = (h << np.uint64(HLL_BITS)) | np.uint64(1 << (HLL_BITS - 1))
        rank = _leading_zeros(rest) + 1
        hll = np.zeros(_M, dtype=np.uint8)
        np.maximum.at(hll, index, rank.astype(np.uint8))
        return cls(name, int(len(h)), hll, np.unique(h)[:MINHASH_K])

    def distinct(self) -> float:
        """Estimated distinct contents (HyperLogLog with the small-range correction)."""
        return _hll_count(self.hll)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (registers and fingerprints base64-encoded)."""
        return {
            "name": self.name,
            "pages": self.pages,
            "hll": base64.b64encode(self.hll.tobytes()).decode(),
            "bottom": base64.b64encode(self.bottom.astype("<u8").tobytes()).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Sketch:
        """Parse :meth:`to_json` output."""
        try:
            hll = np.frombuffer(base64.b64decode(str(data["hll"])), dtype=np.uint8).copy()
            bottom = np.frombuffer(base64.b64decode(str(data["bottom"])), dtype="<u8")
            return cls(str(data["name"]), int(str(data["pages"])), hll, bottom.astype(np.uint64))
        except (KeyError, ValueError) as exc:
            raise UsageError(f"not a ksmtrace sketch ({exc})") from None


def _leading_zeros(x: U64) -> npt.NDArray[np.int64]:
    out = np.zeros(len(x), dtype=np.int64)
    v = x.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        small = v < np.uint64(1 << (64 - shift))
        out[small] += shift
        v[small] <<= np.uint64(shift)
    out[v == 0] = 64
    return out


def _hll_count(registers: npt.NDArray[np.uint8]) -> float:
    est = _ALPHA * _M * _M / float(np.sum(np.power(2.0, -registers.astype(np.float64))))
    zeros = int(np.count_nonzero(registers == 0))
    if est <= 2.5 * _M and zeros:
        return _M * float(np.log(_M / zeros))
    return est


def union_distinct(a: Sketch, b: Sketch) -> float:
    """Estimated distinct contents of two processes together."""
    return _hll_count(np.maximum(a.hll, b.hll))


def jaccard(a: Sketch, b: Sketch) -> float:
    """Estimated Jaccard similarity of the two content sets (bottom-k MinHash)."""
    union = np.union1d(a.bottom, b.bottom)[:MINHASH_K]
    if not len(union):
        return 0.0
    both = np.intersect1d(a.bottom, b.bottom)
    return float(np.count_nonzero(np.isin(union, both))) / len(union)


def shared_contents(a: Sketch, b: Sketch) -> float:
    """Estimated contents present in both: what placing them together adds to the saving."""
    return max(0.0, a.distinct() + b.distinct() - union_distinct(a, b))


def save(path: Path, sketches: list[Sketch], salt_id: str) -> None:
    """Write sketches to a JSON file."""
    doc: dict[str, object] = {"format": "ksmtrace-sketches", "version": 1, "salt_id": salt_id}
    doc["sketches"] = [s.to_json() for s in sketches]
    path.write_text(json.dumps(doc) + "\n")


def load(path: Path) -> tuple[str, list[Sketch]]:
    """Read a sketch file: (salt id, sketches).

    Raises:
        UsageError: not a sketch file.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read sketches from {path}: {exc}") from None
    if doc.get("format") != "ksmtrace-sketches" or doc.get("version") != 1:
        raise UsageError(f"{path} is not a ksmtrace sketch file (write one with --sketch-out)")
    return str(doc.get("salt_id")), [Sketch.from_json(d) for d in doc["sketches"]]
