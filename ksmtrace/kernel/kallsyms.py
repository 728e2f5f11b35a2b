"""Address ranges of kernel functions from /proc/kallsyms (readable with real addresses by root)."""

from __future__ import annotations

from ksmtrace.errors import HostError
from ksmtrace.hostpaths import HostPaths


def symbol_range(paths: HostPaths, name: str) -> tuple[int, int]:
    """[start, end) of the text symbol ``name``: up to the next higher symbol address.

    Raises:
        HostError: kallsyms is unreadable, hides addresses (kptr_restrict), or lacks ``name``.
    """
    try:
        text = paths.kallsyms.read_text()
    except OSError as exc:
        raise HostError(f"cannot read {paths.kallsyms}: {exc.strerror}; run as root") from exc
    start = None
    addrs: list[int] = []
    for line in text.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) < 3 or parts[1] not in "tTwW":
            continue
        addr = int(parts[0], 16)
        addrs.append(addr)
        if parts[2] == name and start is None:
            start = addr
    if start is None:
        raise HostError(f"kernel symbol {name} is not in {paths.kallsyms}")
    if start == 0:
        raise HostError(
            f"{paths.kallsyms} hides addresses (kernel.kptr_restrict); run ksmtrace as root"
        )
    end = min((a for a in addrs if a > start), default=start + 4096)
    return start, end
