"""Boot files of ksmtrace's test guests: a Debian kernel and an initramfs built here, cached.

Everything comes from Debian packages: the kernel is the versioned package that
``linux-image-cloud-amd64`` depends on, fetched with ``apt-get download`` and unpacked
with ``dpkg-deb`` (never installed); the initramfs holds ``busybox`` from busybox-static
and the guest program ``ksmtrace/guest/memfill.c`` compiled with ``gcc -static``. Both are
cached under :data:`CACHE_DIR`, keyed by their inputs (the kernel package version; the
hash of busybox, the guest program source, the init script and the gcc version), so only
the first use pays for the download and the build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ksmtrace.errors import HostError

#: Where downloaded kernels and built initramfs archives are kept.
CACHE_DIR = Path(os.environ.get("KSMTRACE_GUEST_CACHE", "/var/cache/ksmtrace/guest"))
#: Environment variable naming a bzImage to boot instead of the Debian package's.
KERNEL_ENV = "KSMTRACE_GUEST_KERNEL"
#: apt's package lists: when they change, the kernel package is asked for again.
APT_LISTS = Path("/var/lib/apt/lists")
#: Debian meta package whose dependency is the versioned cloud kernel.
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
#: The guest program's source, shipped as package data.
MEMFILL_SOURCE = Path(__file__).parent / "guest" / "memfill.c"

#: ``/init`` of the guests: mount the kernel file systems, run memfill, power off after it.
INIT_SCRIPT = """\
#!/bin/sh
# /init of ksmtrace's test guests (ksmtrace/guest_image.py).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/memfill
echo "memfill: exited with status $?"
/bin/busybox poweroff -f
"""

#: Busybox applets linked in /bin for anyone debugging a guest by hand.
_APPLETS = ("sh", "mount", "poweroff", "cat", "echo", "ls", "sleep", "free", "dmesg")
#: Bump when the archive layout changes, so cached archives are rebuilt.
_LAYOUT_VERSION = b"1"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GuestImage:
    """The files a guest boots from.

    Attributes:
        kernel: A bzImage (``vmlinuz``).
        initramfs: An uncompressed newc cpio archive.
        kernel_package: "<package> <version>" the kernel came from, or the override path.
    """

    kernel: Path
    initramfs: Path
    kernel_package: str


def _quiet(_: str) -> None:
    """Default progress callback: say nothing."""


@contextlib.contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache so concurrent preparers do not collide."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a helper program, capturing its output; a missing program is a HostError."""
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise HostError(f"{argv[0]} is not installed: run scripts/setup.sh") from exc


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def resolve_kernel_package() -> tuple[str, str] | None:
    """Ask apt which versioned kernel ``linux-image-cloud-amd64`` depends on.

    Returns:
        ``(package, version)``, or None when apt's package lists do not know it.
    """
    deps = _run(["apt-cache", "depends", "--no-recommends", KERNEL_META_PACKAGE])
    package = next(
        (
            line.split(":", 1)[1].strip()
            for line in deps.stdout.splitlines()
            if line.strip().startswith("Depends:") and "linux-image-" in line
        ),
        None,
    )
    if deps.returncode != 0 or not package:
        return None
    show = _run(["apt-cache", "show", "--no-all-versions", package])
    version = next(
        (line.split(":", 1)[1].strip() for line in show.stdout.splitlines()
         if line.startswith("Version:")),
        None,
    )  # fmt: skip
    return (package, version) if version else None


def _lists_stamp() -> str:
    """What apt's package lists are now (their directory's mtime and size)."""
    try:
        st = APT_LISTS.stat()
    except OSError:
        return ""
    return f"{st.st_mtime_ns}:{st.st_size}"


def resolve_kernel_package_cached(cache_dir: Path) -> tuple[str, str] | None:
    """:func:`resolve_kernel_package`, remembered until apt's package lists change.

    Asking apt-cache takes about two seconds; the answer only changes with the lists.
    """
    memo = cache_dir / "kernel" / "resolved.json"
    stamp = _lists_stamp()
    try:
        saved = json.loads(memo.read_text())
        if stamp and saved["lists"] == stamp:
            return str(saved["package"]), str(saved["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    resolved = resolve_kernel_package()
    if resolved is not None and stamp:
        memo.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"lists": stamp, "package": resolved[0], "version": resolved[1]})
        tmp = memo.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, memo)
    return resolved


def _cached_kernels(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "kernel").glob("*/vmlinuz"), key=lambda p: p.stat().st_mtime)


def _extract_vmlinuz(deb: Path, dest: Path) -> None:
    """Copy ``/boot/vmlinuz-*`` out of a kernel .deb (``dpkg-deb --fsys-tarfile``)."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        found = False
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name.startswith("vmlinuz-"):
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(dest, "wb") as out:
                        shutil.copyfileobj(source, out)
                    found = True
    if p.returncode != 0 or not found:
        raise HostError(f"{deb.name} holds no /boot/vmlinuz-*: is it a kernel image package?")


def _download_kernel(cache_dir: Path, package: str, version: str, progress: Progress) -> Path:
    target = cache_dir / "kernel" / f"{package}_{version}"
    progress(f"fetching the guest kernel: apt-get download {package} ({version})")
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        got = _run(
            ["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{package}={version}"],
            cwd=Path(tmp),
        )
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise HostError(
                f"cannot download the guest kernel {package}: {_last_line(got.stderr)}; "
                "run 'apt-get update' and try again"
            )
        _extract_vmlinuz(debs[0], Path(tmp) / "vmlinuz")
        target.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / "vmlinuz", target / "vmlinuz")
    return target / "vmlinuz"


def guest_kernel(cache_dir: Path = CACHE_DIR, progress: Progress = _quiet) -> tuple[Path, str]:
    """Find or fetch the guest kernel.

    ``$KSMTRACE_GUEST_KERNEL`` wins; else the cached copy of apt's current candidate;
    else it is downloaded (running ``apt-get update`` once if apt does not know the
    package); without apt lists or network, the newest cached kernel is used.

    Args:
        cache_dir: The cache directory.
        progress: Called with a sentence before slow steps.

    Returns:
        The bzImage path and a description of where it came from.

    Raises:
        HostError: No kernel could be found or fetched.
    """
    override = os.environ.get(KERNEL_ENV)
    if override:
        if not Path(override).is_file():
            raise HostError(f"${KERNEL_ENV}={override} is not a file: point it at a bzImage")
        return Path(override), override
    resolved = resolve_kernel_package_cached(cache_dir)
    if resolved is None and os.geteuid() == 0 and not _cached_kernels(cache_dir):
        progress("apt does not know the guest kernel package yet: apt-get update")
        _run(["apt-get", "update", "-qq"])
        resolved = resolve_kernel_package_cached(cache_dir)
    if resolved is not None:
        package, version = resolved
        cached = cache_dir / "kernel" / f"{package}_{version}" / "vmlinuz"
        if cached.is_file():
            return cached, f"{package} {version}"
        return _download_kernel(cache_dir, package, version, progress), f"{package} {version}"
    kernels = _cached_kernels(cache_dir)
    if kernels:
        return kernels[-1], kernels[-1].parent.name.replace("_", " ")
    raise HostError(
        f"no guest kernel: apt knows no {KERNEL_META_PACKAGE}; run 'apt-get update', "
        f"or set ${KERNEL_ENV} to a bzImage"
    )


def _is_static_elf(data: bytes) -> bool:
    """Tell whether an x86-64 ELF executable has no PT_INTERP (needs no dynamic loader)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # ELFCLASS64
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def find_busybox() -> bytes:
    """Read the static busybox binary (Debian busybox-static).

    Raises:
        HostError: busybox is missing or dynamically linked.
    """
    path = shutil.which("busybox") or "/bin/busybox"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise HostError("busybox is not installed: apt-get install busybox-static") from exc
    if not _is_static_elf(data):
        raise HostError(f"{path} is not statically linked: apt-get install busybox-static")
    return data


def compile_memfill(out: Path) -> None:
    """Compile the guest program with ``gcc -static``.

    Raises:
        HostError: gcc or the static C library (libc6-dev) is missing, or it fails.
    """
    got = _run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(MEMFILL_SOURCE)])
    if got.returncode != 0:
        raise HostError(
            f"gcc -static failed on {MEMFILL_SOURCE.name}: {_last_line(got.stderr)}; "
            "install gcc and libc6-dev (scripts/setup.sh)"
        )


class NewcWriter:
    """Writes a cpio archive in the "newc" format the kernel unpacks as an initramfs."""

    def __init__(self, out: Path) -> None:
        self._file = open(out, "wb")  # noqa: SIM115 (closed by close())
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._write_padded(header + encoded)
        self._write_padded(data)

    def _write_padded(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._file.write(b"\0" * (-self._file.tell() % 4))

    def directory(self, name: str) -> None:
        """Add a directory (mode 0755)."""
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o755) -> None:
        """Add a regular file."""
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        """Add a symbolic link."""
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        """Add a character device node (mode 0600)."""
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def close(self) -> None:
        """Write the trailer and close the archive."""
        self._entry("TRAILER!!!", 0)
        self._file.close()


def _gcc_version() -> bytes:
    return _run(["gcc", "--version"]).stdout.encode()


def build_initramfs(cache_dir: Path = CACHE_DIR, progress: Progress = _quiet) -> Path:
    """Build (or find cached) the guests' initramfs: busybox, ``/init`` and memfill.

    Args:
        cache_dir: The cache directory.
        progress: Called with a sentence before slow steps.

    Returns:
        The archive's path.

    Raises:
        HostError: busybox-static, gcc or libc6-dev is missing.
    """
    busybox = find_busybox()
    source = MEMFILL_SOURCE.read_bytes()
    key = hashlib.sha256()
    for part in (_LAYOUT_VERSION, busybox, source, INIT_SCRIPT.encode(), _gcc_version()):
        key.update(hashlib.sha256(part).digest())
    target = cache_dir / "initramfs" / f"{key.hexdigest()[:16]}.cpio"
    if target.is_file():
        return target
    progress("building the guest initramfs (busybox + memfill compiled with gcc -static)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        memfill = Path(tmp) / "memfill"
        compile_memfill(memfill)
        archive = Path(tmp) / "initramfs.cpio"
        cpio = NewcWriter(archive)
        for directory in ("bin", "dev", "proc", "sys", "tmp", "root"):
            cpio.directory(directory)
        cpio.char_device("dev/console", 5, 1)
        cpio.file("bin/busybox", busybox)
        for applet in _APPLETS:
            cpio.symlink(f"bin/{applet}", "busybox")
        cpio.file("init", INIT_SCRIPT.encode())
        cpio.file("memfill", memfill.read_bytes())
        cpio.close()
        os.replace(archive, target)
    return target


def prepare_image(cache_dir: Path = CACHE_DIR, progress: Progress = _quiet) -> GuestImage:
    """Find or make everything a guest boots from (downloading and building once).

    Args:
        cache_dir: The cache directory (created if missing).
        progress: Called with a sentence before slow steps.

    Returns:
        The kernel and initramfs.

    Raises:
        HostError: A package or tool is missing; the message says which.
    """
    with _cache_lock(cache_dir):
        kernel, origin = guest_kernel(cache_dir, progress)
        initramfs = build_initramfs(cache_dir, progress)
    return GuestImage(kernel, initramfs, origin)
