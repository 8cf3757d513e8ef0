"""Reading files a user hands us: regular files only, read with a size cap.

A FIFO, a device (a symlink to /dev/zero), a socket or a folder named like an input must give one
clear error, never a hang or an unbounded read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["regular_file", "read_capped"]


def regular_file(path: str | os.PathLike, what: str, error: type[Exception], max_bytes: int) -> Path:
    """`path` as a Path if it is a regular file (symlinks followed) of at most `max_bytes`; else raise
    `error` with one line naming the file and the problem. `what` names the kind ("landmark file")."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} path is a directory, not a file: {p}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} is not a regular file (a FIFO, device or socket): {p}")
    if st.st_size > max_bytes:
        raise error(f"{what} is larger than {max_bytes} bytes ({st.st_size}): {p}")
    return p


def read_capped(path: str | os.PathLike, what: str, error: type[Exception], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (checked before and while reading)."""
    p = regular_file(path, what, error, max_bytes)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped between stat and open
                raise error(f"{what} is not a regular file: {p}")
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{what} is larger than {max_bytes} bytes: {p}")
    return data
