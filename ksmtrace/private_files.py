"""Files and folders holding per-process data: created 0600 and 0700 whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Literal, TextIO, overload


@overload
def open_private(path: Path, mode: Literal["wb"] = "wb") -> BinaryIO: ...
@overload
def open_private(path: Path, mode: Literal["w"]) -> TextIO: ...


def open_private(path: Path, mode: Literal["wb", "w"] = "wb") -> BinaryIO | TextIO:
    """Create or truncate ``path`` for writing, readable and writable by its owner only.

    An existing regular file is set to 0600 too (O_CREAT's mode applies only to new files);
    a device such as /dev/null is written to but keeps its mode.

    Raises:
        OSError: the file cannot be created, opened or made private.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w")
    except BaseException:
        os.close(fd)
        raise


def make_private_dir(path: Path) -> bool:
    """Create the folder ``path`` (and missing parents) as 0700; an existing one is kept as is.

    Returns:
        Whether the folder was created here.

    Raises:
        OSError: it cannot be created, or it exists and is not a folder.
    """
    if path.is_dir():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.is_dir():
            return False  # made meanwhile by someone else: not ours to change
        raise
    os.chmod(path, 0o700)  # mkdir's mode is reduced by the umask
    return True
