"""What ``ksmtrace_probe_info`` says about each kind of source: live probes or a recorded trace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ksmtrace.exporter.snapshot import ProbeReport

if TYPE_CHECKING:  # the live source needs bcc; a replay must not import it
    from ksmtrace.probes.live import LiveSource
    from ksmtrace.tracefile.schema import TraceHeader


def live_probe_report(source: LiveSource) -> ProbeReport:
    """The probe set a live source runs: COW check, header tree, scan-site state."""
    state = source.state
    return ProbeReport(
        source="live",
        cow_check="page-table" if state.page_tables is not None else "merged-address",
        headers=state.header_origin,
        scan_site_ready=source.scan_site_ready,
        lifetime_map_full=state.stats.get("merged_full"),
    )


def trace_probe_report(header: TraceHeader) -> ProbeReport:
    """The probe set a trace was recorded with, from its header."""
    probes, stats = header.probes, header.probe_stats
    page_walk = probes.get("page_walk")
    ready = stats.get("scan_site_ready")
    return ProbeReport(
        source="replay",
        cow_check="" if page_walk is None else "page-table" if page_walk else "merged-address",
        headers=str(probes.get("header_origin", "")),
        scan_site_ready=None if ready is None else bool(ready),
        lifetime_map_full=stats.get("merged_full"),
    )
