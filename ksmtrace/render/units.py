"""Human-readable numbers: sizes, rates and durations for the text views."""

from __future__ import annotations


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5K', 3 * 2**20 -> '3.0M' (binary units, sign kept)."""
    sign = "-" if n < 0 else ""
    v = abs(float(n))
    for unit in ("B", "K", "M", "G", "T"):
        if v < 1024 or unit == "T":
            return f"{sign}{v:.0f}{unit}" if unit == "B" else f"{sign}{v:.1f}{unit}"
        v /= 1024
    return f"{sign}{v:.1f}T"


def fmt_mib(n: float) -> str:
    """Bytes as MiB with one decimal: '412.0 MiB'."""
    return f"{n / 2**20:.1f} MiB"


def fmt_count(n: float) -> str:
    """12345 -> '12.3k', small numbers as integers, fractions with one decimal."""
    v = abs(n)
    if v >= 1e6:
        return f"{n / 1e6:.1f}M"
    if v >= 1e4:
        return f"{n / 1e3:.1f}k"
    if v >= 100 or float(n).is_integer():
        return f"{n:.0f}"
    return f"{n:.1f}"


def fmt_seconds(s: float | None) -> str:
    """A duration: '850ms', '4.2s', '3m10s', or '-' when unknown."""
    if s is None:
        return "-"
    if s == float("inf"):
        return ">1h"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{s / 3600:.1f}h"


def fmt_ratio(r: float | None) -> str:
    """A ratio such as churn: '0.25', or '-' when undefined."""
    return "-" if r is None else f"{r:.2f}"
