"""How a VM's guest RAM is set up, from the QEMU or Cloud Hypervisor command line.

Only what decides whether KSM may merge guest RAM: QEMU's ``-machine mem-merge=``,
memory backends (``-object memory-backend-{ram,file,memfd}`` in ``key=value`` or JSON
form, with ``share``, ``hugetlb``, ``mem-path``, ``prealloc``), the legacy ``-mem-path``
and ``-mem-prealloc``, ``-m``; Cloud Hypervisor's ``--memory
size=,mergeable=,shared=,hugepages=``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["VmMemory", "parse_cloud_hypervisor_memory", "parse_qemu_memory"]

_TRUE = frozenset(("on", "yes", "true", "y", "1"))
_SIZE_RE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgGtT]?)[bB]?")
_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True, slots=True)
class VmMemory:
    """Guest RAM settings read from a VM's command line.

    Attributes:
        ram_bytes: Guest RAM size (QEMU's default 128 MiB when ``-m`` is absent).
        mem_merge: False when QEMU runs with ``mem-merge=off`` (it then never madvises
            guest RAM MADV_MERGEABLE), or Cloud Hypervisor without ``mergeable=on``.
        shared: Guest RAM comes from a shared mapping (a memfd backend, whose ``share``
            defaults to on, or any backend with ``share=on``; CH ``shared=on``).
        hugepages: Guest RAM is on hugetlbfs (``-mem-path``/``mem-path`` on a hugepage
            mount, memfd ``hugetlb=on``, CH ``hugepages=on``).
        prealloc: Guest RAM is allocated up front (``-mem-prealloc``, ``prealloc=on``).
        backend: What guest RAM is, in words ("memory-backend-memfd 'pc.ram'").
        numa_nodes: ``-numa node`` options (guest RAM may be split among them).
    """

    ram_bytes: int | None = None
    mem_merge: bool = True
    shared: bool = False
    hugepages: bool = False
    prealloc: bool = False
    backend: str | None = None
    numa_nodes: int = 0


def parse_size(text: str, default_unit: str = "") -> int | None:
    """Parse a QEMU size ("128", "128M", "4G", "1.5G"); None if malformed."""
    match = _SIZE_RE.fullmatch(text.strip())
    if not match:
        return None
    unit = (match["unit"] or default_unit).lower()
    return int(float(match["n"]) * _UNIT[unit])


def _options(argv: Sequence[str], names: Sequence[str]) -> Iterator[str]:
    """Yield every value of ``NAME VALUE`` / ``NAME=VALUE`` options in ``argv[1:]``."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in names:
            if i + 1 < len(argv):
                yield argv[i + 1]
            i += 2
            continue
        for name in names:
            if arg.startswith(name + "="):
                yield arg[len(name) + 1 :]
        i += 1


def _keyvals(value: str, implied: str | None = None) -> dict[str, str]:
    """Split ``a=b,c=d`` (",," escapes a comma); a first bare word goes under ``implied``."""
    out: dict[str, str] = {}
    parts = [p.replace("\0", ",") for p in value.replace(",,", "\0").split(",")]
    for index, part in enumerate(parts):
        key, sep, val = part.partition("=")
        if sep:
            out[key.strip()] = val
        elif index == 0 and implied is not None:
            out[implied] = part
        elif part:
            out[part] = "on"  # QEMU's bare flag form
    return out


def _object(value: str) -> dict[str, str]:
    """An ``-object`` in key=value or JSON form, with values as strings."""
    if value.lstrip().startswith("{"):
        try:
            raw = json.loads(value)
        except ValueError:
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: ("on" if v is True else "off" if v is False else str(v)) for k, v in raw.items()}
    return _keyvals(value, implied="qom-type")


def _on(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def _ram_bytes(argv: Sequence[str]) -> int | None:
    ram: int | None = 128 << 20
    for value in _options(argv, ("-m", "--m")):
        opts = _keyvals(value, implied="size")
        if "size" in opts:
            ram = parse_size(opts["size"], default_unit="m")
    return ram


def parse_qemu_memory(
    argv: Sequence[str], hugetlbfs: Sequence[str] = ("/dev/hugepages",)
) -> VmMemory:
    """Read how guest RAM is set up from a QEMU command line.

    Args:
        argv: The command line, ``argv[0]`` included.
        hugetlbfs: Mount points of hugetlbfs; a ``mem-path`` below one is hugepage RAM
            (paths with "hugepage" in them count too).

    Returns:
        The settings; the defaults when an option is absent.
    """
    machine: dict[str, str] = {}
    for value in _options(argv, ("-machine", "--machine", "-M")):
        machine.update(_keyvals(value, implied="type"))
    memdevs = {
        _keyvals(v, implied="kind").get("memdev") for v in _options(argv, ("-numa", "--numa"))
    }
    numa_nodes = sum(
        1 for v in _options(argv, ("-numa", "--numa")) if _keyvals(v, "kind").get("kind") == "node"
    )
    used = ({machine.get("memory-backend")} | memdevs) - {None}
    backends = [
        o for o in map(_object, _options(argv, ("-object", "--object")))
        if o.get("qom-type", "").startswith("memory-backend-")
    ]  # fmt: skip
    ram_backends = [b for b in backends if b.get("id") in used] or backends

    def on_hugetlbfs(path: str | None) -> bool:
        return bool(path) and (
            "hugepage" in str(path) or any(str(path).startswith(m) for m in hugetlbfs)
        )

    legacy_path = next(iter(reversed(list(_options(argv, ("-mem-path", "--mem-path"))))), None)
    shared = hugepages = prealloc = False
    for b in ram_backends:
        memfd = b["qom-type"] == "memory-backend-memfd"
        shared |= _on(b.get("share", "on" if memfd else "off"))
        hugepages |= _on(b.get("hugetlb")) or on_hugetlbfs(b.get("mem-path"))
        prealloc |= _on(b.get("prealloc"))
    hugepages |= on_hugetlbfs(legacy_path)
    prealloc |= any(a in ("-mem-prealloc", "--mem-prealloc") for a in argv[1:])
    backend = None
    if ram_backends:
        backend = ", ".join(f"{b['qom-type']} '{b.get('id', '?')}'" for b in ram_backends)
    elif legacy_path:
        backend = f"-mem-path {legacy_path}"
    return VmMemory(
        ram_bytes=_ram_bytes(argv),
        mem_merge=_on(machine.get("mem-merge", "on")),
        shared=shared,
        hugepages=hugepages,
        prealloc=prealloc,
        backend=backend,
        numa_nodes=numa_nodes,
    )


def parse_cloud_hypervisor_memory(argv: Sequence[str]) -> VmMemory:
    """Read ``--memory size=..,mergeable=..,shared=..,hugepages=..`` of Cloud Hypervisor.

    Cloud Hypervisor merges guest RAM only with ``mergeable=on`` (default off).
    """
    opts: dict[str, str] = {}
    for value in _options(argv, ("--memory",)):
        opts.update(_keyvals(value))
    size = parse_size(opts["size"]) if "size" in opts else 512 << 20
    return VmMemory(
        ram_bytes=size,
        mem_merge=_on(opts.get("mergeable")),
        shared=_on(opts.get("shared")),
        hugepages=_on(opts.get("hugepages")),
        prealloc=_on(opts.get("prefault")),
        backend="--memory " + ",".join(f"{k}={v}" for k, v in opts.items()) if opts else None,
    )
