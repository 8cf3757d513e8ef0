"""Safe file writing and hashing for every file densereg writes (shards, index, config, pictures).

A file is written to a hidden temporary name in the same folder, flushed, fsynced and renamed, so no
reader ever sees a half-written file under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from densereg_data.format.schema import TMP_PREFIX

__all__ = ["sha256_file", "tmp_path", "fsync_replace", "atomic_write_bytes", "dumps_json"]


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def tmp_path(final: Path) -> Path:
    """The temporary name `final` is written under before its rename (hidden, per process)."""
    return final.with_name(f"{TMP_PREFIX}{os.getpid()}-{final.name}")


def fsync_replace(tmp: Path, final: Path) -> None:
    """fsync `tmp`, then rename it to `final` (atomic on POSIX)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename (never a half-written `path`)."""
    final = Path(path)
    tmp = tmp_path(final)
    try:
        tmp.write_bytes(data)
        fsync_replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def dumps_json(obj: Any) -> bytes:
    """The canonical JSON bytes of every file here (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
