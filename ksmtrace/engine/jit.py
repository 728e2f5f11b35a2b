"""The one way engine code is compiled: numba, cached on disk, without reference counting.

``_nrt=False`` turns off numba's runtime for these functions. The engine allocates no
arrays inside compiled code, and without the runtime, passing the state tuples (a dozen
arrays each) between functions costs nothing; with it, every call increments and
decrements the reference count of every array, which made a page visit 200 times slower.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numba.core.config


def _engine_digest() -> str:
    """A digest of every engine source file.

    numba keys a cached function on its own file only, but links the compiled code of the
    functions it calls into it; a change in a callee's module would leave stale code in
    callers' caches. One cache directory per version of the whole engine avoids that.
    """
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def _cache_dir() -> Path:
    """A writable folder for compiled engine code: the user's cache, else a private temp dir.

    Users without a writable home (daemons, "nobody") get a folder under the system temp
    directory named after their uid; numba refuses to run at all without one.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "ksmtrace"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base / "numba" / _engine_digest()
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"ksmtrace-numba-{os.getuid()}" / _engine_digest()


if not os.environ.get("NUMBA_CACHE_DIR"):
    # CACHE_DIR is missing from numba's type stubs.
    setattr(numba.core.config, "CACHE_DIR", str(_cache_dir()))  # noqa: B010


def needs_compiling() -> bool:
    """True when this version of the engine has not been compiled on this machine yet."""
    folder = Path(str(getattr(numba.core.config, "CACHE_DIR", "") or _cache_dir()))
    return not any(folder.rglob("*.nbi"))


#: numba options of every engine function (``_nrt`` is not in numba's type stubs).
_OPTIONS: dict[str, Any] = {"cache": True, "_nrt": False}

#: A compiled function: numba dispatchers are untyped for mypy.
Kernel = Callable[..., Any]


def compiled(fn: Callable[..., Any]) -> Kernel:
    """Compile ``fn`` with numba in nopython mode (cached, no runtime)."""
    out: Kernel = numba.njit(**_OPTIONS)(fn)
    return out


def inlined(fn: Callable[..., Any]) -> Kernel:
    """Like :func:`compiled`, and inlined into callers at numba IR level (hot paths).

    Calls between separately compiled functions pass the state tuples by value; inlining
    the per-page path into the batch loop removes those copies.
    """
    out: Kernel = numba.njit(**_OPTIONS, inline="always")(fn)
    return out
