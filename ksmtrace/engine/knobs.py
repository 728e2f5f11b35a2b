"""KSM knob settings for the engine, parsed from ``name=value`` lists, with kernel defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from ksmtrace.engine import layout
from ksmtrace.errors import UsageError

#: Kernel defaults (mm/ksm.c) plus run=1, since a what-if asks what a running ksmd does.
DEFAULTS: dict[str, int | str] = {
    "run": 1,
    "pages_to_scan": 100,
    "sleep_millisecs": 20,
    "max_page_sharing": 256,
    "use_zero_pages": 0,
    "smart_scan": 1,
    "stable_node_chains_prune_millisecs": 2000,
    "advisor_mode": "none",
    "advisor_max_cpu": 70,
    "advisor_min_pages_to_scan": 500,
    "advisor_max_pages_to_scan": 30000,
    "advisor_target_scan_time": 200,
}

#: Engine slot of each knob (``g`` array index) and its index in events.KNOB_NAMES.
SLOTS: dict[str, int] = {
    "run": layout.RUN,
    "pages_to_scan": layout.PAGES_TO_SCAN,
    "sleep_millisecs": layout.SLEEP_MS,
    "max_page_sharing": layout.MAX_SHARING,
    "use_zero_pages": layout.USE_ZERO,
    "smart_scan": layout.SMART,
    "stable_node_chains_prune_millisecs": layout.PRUNE_MS,
    "advisor_mode": layout.ADVISOR,
    "advisor_max_cpu": layout.ADV_MAX_CPU,
    "advisor_min_pages_to_scan": layout.ADV_MIN_PAGES,
    "advisor_max_pages_to_scan": layout.ADV_MAX_PAGES,
    "advisor_target_scan_time": layout.ADV_TARGET_S,
}

#: Kernel behaviours the engine can follow (KSM-INTERNALS.md §3.5.1 / §3.5.2).
ORDERINGS = ("6.11", "6.7")


@dataclass(frozen=True, slots=True)
class Knobs:
    """One KSM setting: the sysfs knobs plus the kernel behaviour and timer frequency.

    Attributes:
        run ... advisor_target_scan_time: as in /sys/kernel/mm/ksm.
        ordering: "6.11" (checksum test before the stable tree search, 6.11+) or "6.7"
            (stable tree first, 6.7-6.10).
        hz: CONFIG_HZ of the kernel modelled (sleeps are rounded up to jiffies).
    """

    run: int = 1
    pages_to_scan: int = 100
    sleep_millisecs: int = 20
    max_page_sharing: int = 256
    use_zero_pages: int = 0
    smart_scan: int = 1
    stable_node_chains_prune_millisecs: int = 2000
    advisor_mode: str = "none"
    advisor_max_cpu: int = 70
    advisor_min_pages_to_scan: int = 500
    advisor_max_pages_to_scan: int = 30000
    advisor_target_scan_time: int = 200
    ordering: str = "6.11"
    hz: int = 250

    def __post_init__(self) -> None:
        checks = (
            (self.run in (0, 1, 2), "run must be 0, 1 or 2"),
            (self.pages_to_scan >= 1, "pages_to_scan must be at least 1"),
            (self.sleep_millisecs >= 0, "sleep_millisecs must be 0 or more"),
            (self.max_page_sharing >= 2, "max_page_sharing must be at least 2"),
            (self.use_zero_pages in (0, 1), "use_zero_pages must be 0 or 1"),
            (self.smart_scan in (0, 1), "smart_scan must be 0 or 1"),
            (self.advisor_mode in ("none", "scan-time"), "advisor_mode is none or scan-time"),
            (self.advisor_target_scan_time >= 1, "advisor_target_scan_time must be >= 1"),
            (self.ordering in ORDERINGS, f"ordering must be one of {', '.join(ORDERINGS)}"),
            (self.hz in (100, 250, 300, 1000), "hz must be 100, 250, 300 or 1000"),
        )
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def replace(self, **changes: int | str) -> Knobs:
        """A copy with some knobs changed (validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def sleep_jiffies(self) -> int:
        """``msecs_to_jiffies(sleep_millisecs)``: rounded up."""
        return -(-self.sleep_millisecs * self.hz // 1000)

    def label(self, names: tuple[str, ...] = ("pages_to_scan", "sleep_millisecs")) -> str:
        """Short text naming the given knobs, e.g. "pages_to_scan=1000 sleep_millisecs=20"."""
        return " ".join(f"{n}={getattr(self, n)}" for n in names)

    def slot_value(self, name: str) -> int:
        """The integer the engine stores for a knob (advisor_mode: 0 none, 1 scan-time)."""
        value = getattr(self, name)
        if name == "advisor_mode":
            return 1 if value == "scan-time" else 0
        return int(value)


def _parse_value(name: str, text: str) -> int | str:
    if name in ("advisor_mode", "ordering"):
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name} needs an integer, not {text!r}") from None


def parse_assignments(text: str) -> dict[str, int | str]:
    """Parse ``"pages_to_scan=1000,sleep_millisecs=20"`` into a dict (names validated).

    Raises:
        UsageError: an unknown knob name or a malformed item.
    """
    known = {f.name for f in fields(Knobs)}
    out: dict[str, int | str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise UsageError(
                f"cannot use {item!r}: write knob=value with one of {', '.join(sorted(known))}"
            )
        out[name] = _parse_value(name, value.strip())
    return out


def parse_sweep(text: str) -> tuple[str, list[int | str]]:
    """Parse ``"pages_to_scan=100,1000,4000"`` into a knob name and its values."""
    name, sep, values = text.partition("=")
    name = name.strip()
    known = {f.name for f in fields(Knobs)}
    if not sep or name not in known or not values.strip():
        raise UsageError(
            f"cannot use sweep {text!r}: write knob=v1,v2,... e.g. sleep_millisecs=5,20"
        )
    return name, [_parse_value(name, v.strip()) for v in values.split(",") if v.strip()]


def from_sysfs(values: dict[str, int | str], hz: int, ordering: str = "6.11") -> Knobs:
    """Knobs as read from /sys/kernel/mm/ksm (unknown or missing files keep defaults)."""
    known = {f.name for f in fields(Knobs)}
    picked: dict[str, int | str] = {k: v for k, v in values.items() if k in known}
    return Knobs(**picked, hz=hz, ordering=ordering)  # type: ignore[arg-type]
