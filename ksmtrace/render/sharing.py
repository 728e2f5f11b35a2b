"""The cross-tenant sharing block of the trace summary: which boundaries KSM's saving crosses."""

from __future__ import annotations

from ksmtrace.render.units import fmt_count, fmt_mib
from ksmtrace.sharing import SharingReport


def _pages(n: int, page_size: int) -> str:
    return f"{fmt_mib(n * page_size)} ({fmt_count(n)} pages)"


def format_sharing(report: SharingReport, page_size: int, top: int = 5) -> list[str]:
    """Summary lines on pages shared between tenants (VM, else container, else user).

    Args:
        report: The sharing report of the run.
        page_size: Bytes per page.
        top: Tenant pairs listed at most.

    Returns:
        The lines (none when no page merged while tracing is still mapped).
    """
    if report.ksm_pages == 0:
        return []
    share = report.cross_tenant_pages / report.saved_pages if report.saved_pages else 0.0
    lines = [
        "Sharing across tenants (pages merged while tracing; tenant = VM, else container, "
        "else user):",
        f"  {fmt_count(report.ksm_pages)} KSM pages with {fmt_count(report.mappings)} mappings "
        f"save {fmt_mib(report.saved_pages * page_size)}; "
        f"{_pages(report.cross_tenant_pages, page_size)} of it ({share:.0%}) exists only "
        "because different tenants share pages",
    ]
    for boundary, n in sorted(report.by_boundary.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {boundary:<34} {_pages(n, page_size)}")
    lines.append(
        f"    {'of which across users':<34} {_pages(report.across_users_pages, page_size)}"
    )
    pairs = sorted(report.pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    if pairs:
        lines.append(
            "  Most shared: " + ", ".join(f"{a} ↔ {b} {fmt_count(n)} pages" for (a, b), n in pairs)
        )
    kept = _pages(report.same_tenant_pages, page_size)
    lines.append(f"  Merging only within each tenant would keep {kept} of this saving.")
    if report.cross_tenant_pages:
        lines.append(
            "  Pages shared between tenants let one tenant detect another's content by timing "
            "its own writes (a known side channel); merge within tenants where that matters."
        )
    if report.approximate:
        lines.append(
            "  (approximate: a partial madvise unmerge happened; its pages stay counted until "
            "their process exits)"
        )
    return lines
