"""ksmd's CPU cost per page class, measured on a live host by the tracer (never assumed).

``ksmtrace calibrate-cost`` fits a :class:`CostProfile` to the live tracer's SCAN events
(pages scanned and ksmd CPU per process and interval) and stores it at
:data:`PROFILE_PATH`; ``ksmtrace snapshot`` embeds the host's profile in each snapshot so
a what-if elsewhere predicts CPU for the host that was recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ksmtrace.engine import layout as L
from ksmtrace.errors import UsageError
from ksmtrace.private_files import make_private_dir, open_private

PROFILE_PATH = Path("/var/lib/ksmtrace/cost-profile.json")
PROFILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class CostProfile:
    """Nanoseconds of ksmd CPU per unit of work, with where and how they were measured.

    Attributes:
        ksm_page_ns: visiting a page that already is a KSM page (no checksum is computed).
        page_ns: visiting any other page (checksum, stable and unstable tree searches).
        volatile_ns: a visit that ends at the checksum test (first visit, or the page
            changed since the last one); 0 in old profiles means "as page_ns".
        merge_ns: extra per page merged (write-protect, PTE replacement, rmap work).
        skip_ns: a smart-scan skip.
        pass_ns: per full scan (LRU drain on all CPUs, unstable tree reset).
        batch_ns: per batch (wake-up, locking).
        wake_ns: mean delay between the timer's jiffy and ksmd running again (scheduling
            latency; an exponential distribution with this mean is drawn per sleep).
        kernel: ``uname -r`` of the measured host.
        hz: its CONFIG_HZ.
        measured_at: ISO time of the measurement.
        method: how it was measured (which workload, how many samples).
        samples: rows of the fit.
        extra: further figures of the measurement; ``tracer_factor`` is the factor the
            costs were scaled by for the tracer's own overhead on ksmd.
    """

    ksm_page_ns: float
    page_ns: float
    merge_ns: float
    skip_ns: float
    pass_ns: float
    batch_ns: float
    wake_ns: float = 0.0
    volatile_ns: float = 0.0
    kernel: str = ""
    hz: int = 0
    measured_at: str = ""
    method: str = ""
    samples: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tracer_corrected(self) -> bool:
        """Whether the tracer's own overhead on ksmd was taken out of the costs."""
        return "tracer_factor" in self.extra

    def as_array(self) -> npt.NDArray[np.float64]:
        """The engine's cost array (``layout.C_*`` order)."""
        arr = np.zeros(L.COST_SIZE, dtype=np.float64)
        arr[L.C_KSM] = self.ksm_page_ns
        arr[L.C_PAGE] = self.page_ns
        arr[L.C_MERGE] = self.merge_ns
        arr[L.C_SKIP] = self.skip_ns
        arr[L.C_PASS] = self.pass_ns
        arr[L.C_BATCH] = max(1.0, self.batch_ns)
        arr[L.C_WAKE] = max(0.0, self.wake_ns)
        arr[L.C_VOLATILE] = self.volatile_ns if self.volatile_ns > 0 else self.page_ns
        return arr

    def to_json(self) -> str:
        """The profile as a JSON document with a format version."""
        return json.dumps({"version": PROFILE_VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> CostProfile:
        """Parse :meth:`to_json` output.

        Raises:
            UsageError: not a cost profile of a known version.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(
                f"cost profile is not JSON ({exc}); run 'ksmtrace calibrate-cost'"
            ) from None
        if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
            raise UsageError(
                "cost profile has an unknown format version; run 'ksmtrace calibrate-cost' again"
            )
        data.pop("version")
        try:
            return cls(**data)
        except TypeError as exc:
            raise UsageError(f"cost profile is incomplete ({exc})") from None

    def save(self, path: Path = PROFILE_PATH) -> None:
        """Write the profile (mode 0600), creating its directory."""
        make_private_dir(path.parent)
        with open_private(path, "w") as f:
            f.write(self.to_json() + "\n")

    def describe(self) -> str:
        """One line: the per-page costs and where they come from."""
        return (
            f"ksmd cost: {self.page_ns:.0f} ns/page, "
            f"{self.volatile_ns or self.page_ns:.0f} ns/volatile page, "
            f"{self.ksm_page_ns:.0f} ns/KSM page, "
            f"{self.merge_ns:.0f} ns/merge, {self.skip_ns:.0f} ns/skip, "
            f"{self.pass_ns / 1e3:.0f} us/pass, {self.wake_ns / 1e3:.0f} us wake-up "
            f"(measured {self.measured_at or '?'} on {self.kernel or '?'})"
        )


def load_profile(path: Path = PROFILE_PATH) -> CostProfile | None:
    """The stored profile, or None when none was measured on this host yet."""
    try:
        return CostProfile.from_json(path.read_text())
    except FileNotFoundError:
        return None


def require_profile(path: Path | None, embedded: CostProfile | None) -> CostProfile:
    """The profile to use: ``path`` if given, else the snapshot's, else this host's.

    Raises:
        UsageError: none is available; the message says how to measure one.
    """
    if path is not None:
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read cost profile {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(
                f"{path} is not a cost profile (not text); make one with 'ksmtrace calibrate-cost'"
            ) from None
        profile = CostProfile.from_json(text)
    elif embedded is not None:
        profile = embedded
    else:
        stored = load_profile()
        if stored is None:
            raise UsageError(
                "no ksmd cost profile: measure one on the host with 'ksmtrace calibrate-cost' "
                "(as root), or pass --cost-profile FILE"
            )
        profile = stored
    if profile.ksm_page_ns <= 0 and profile.page_ns <= 0:
        raise UsageError(
            "the ksmd cost profile says scanning a page costs nothing, so it would predict no "
            "CPU at all; measure again with 'ksmtrace calibrate-cost' (as root)"
        )
    return profile
