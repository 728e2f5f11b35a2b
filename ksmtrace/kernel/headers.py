"""Kernel header tree for bcc: find one, or build one from Debian's header packages.

bcc compiles BPF C at run time and includes a few kernel headers for its helper
definitions. ksmtrace's programs take no struct layout from them (every offset comes from
BTF), so any recent header tree serves when the running kernel ships none: the Debian
``linux-headers-<ver>-amd64`` and ``-common`` packages, unpacked and merged into one folder
of symlinks under /var/cache/ksmtrace.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ksmtrace.errors import HostError

CACHE = Path("/var/cache/ksmtrace/kernel-headers")


@dataclass(frozen=True, slots=True)
class HeaderTree:
    """Where bcc will find kernel headers.

    Attributes:
        path: folder to pass as BCC_KERNEL_SOURCE, or None when bcc finds its own.
        origin: one line saying where the tree comes from.
    """

    path: Path | None
    origin: str


def _usable(path: Path) -> bool:
    return (path / "include" / "linux").is_dir() or (path / "include" / "generated").is_dir()


def find_header_tree() -> HeaderTree | None:
    """The header tree bcc will use, in bcc's own order of preference, then ksmtrace's cache."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env and _usable(Path(env)):
        return HeaderTree(Path(env), f"$BCC_KERNEL_SOURCE ({env})")
    release = platform.release()
    for sub in ("build", "source"):
        mod = Path("/lib/modules") / release / sub
        if _usable(mod):
            return HeaderTree(None, f"the running kernel's own headers ({mod})")
    if Path("/sys/kernel/kheaders.tar.xz").is_file():
        return HeaderTree(None, "the kernel's built-in headers (/sys/kernel/kheaders.tar.xz)")
    if _usable(CACHE / "tree"):
        origin = (CACHE / "ORIGIN").read_text().strip() if (CACHE / "ORIGIN").exists() else ""
        return HeaderTree(CACHE / "tree", f"ksmtrace's header tree in {CACHE} {origin}".strip())
    return None


def require_header_tree() -> HeaderTree:
    """Like :func:`find_header_tree`, but raise a HostError that says how to get one."""
    tree = find_header_tree()
    if tree is None:
        raise HostError(
            "no kernel header tree for bcc: the running kernel ships none; run "
            "'ksmtrace headers --install' (as root) to unpack Debian's linux-headers packages"
        )
    return tree


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError as exc:
        raise HostError(f"{cmd[0]} is missing: this needs a Debian-based host") from exc
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise HostError(f"'{' '.join(cmd)}' failed: {last[-1] if last else exc}") from exc
    return res.stdout


def debian_header_packages() -> list[str]:
    """Names of the versioned Debian header packages behind ``linux-headers-amd64``."""
    out = _run(["apt-cache", "depends", "linux-headers-amd64"])
    arch_pkg = next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Depends:" in ln), None
    )
    if not arch_pkg:
        raise HostError("apt-cache knows no linux-headers-amd64; run 'apt-get update' first")
    common = arch_pkg.rsplit("-", 1)[0] + "-common"
    return [common, arch_pkg]


def install_header_tree() -> HeaderTree:
    """Download and unpack Debian's header packages into the cache (idempotent).

    Nothing is installed with dpkg and nothing is written to /lib/modules.
    """
    existing = find_header_tree()
    if existing is not None:
        return existing
    packages = debian_header_packages()
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's download sandbox user must be able to write here
        _run(["apt-get", "download", *packages], cwd=work)
        unpacked = work / "unpacked"
        for deb in sorted(work.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        src = unpacked / "usr" / "src"
        trees = sorted(p for p in src.iterdir() if p.is_dir())
        final = CACHE / "packages"
        if final.exists():
            shutil.rmtree(final)
        shutil.move(str(src), final)
        tree = CACHE / "tree"
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir()
        # common first, then the arch tree on top (its generated headers win).
        parts = sorted(
            (final / p.name for p in trees), key=lambda p: not p.name.endswith("-common")
        )
        for part in parts:
            _link_tree(part, tree)
    (CACHE / "ORIGIN").write_text(f"(from {', '.join(packages)})\n")
    result = find_header_tree()
    if result is None:
        raise HostError(f"unpacked {', '.join(packages)} but {CACHE / 'tree'} is not usable")
    return result


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror ``src`` into ``dst`` as a farm of symlinks, later calls overriding files."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            target = dst / rel / name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(Path(root) / name)
