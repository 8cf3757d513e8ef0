"""Where a command may write: never over its inputs, never into a shard folder's own files.

Every command that writes files a user names (`preview --out`, `export --out`, `predict --out`,
`train --out`, `label --out`) asks `check_output` first; a refusal is one `InputError` line.
"""

from __future__ import annotations

import os
from pathlib import Path

from densereg_data.errors import InputError

__all__ = ["check_output", "in_shard_folder"]


def in_shard_folder(path: Path) -> Path | None:
    """The shard folder (one holding a densereg index.json) that `path` is or lies in, else None."""
    from densereg_data.format.schema import FORMAT, INDEX

    for folder in (path, *path.parents):
        index = folder / INDEX
        try:
            if index.is_file() and index.stat().st_size < (64 << 20) and f'"{FORMAT}"'.encode() in index.read_bytes():
                return folder
        except OSError:
            continue
    return None


def check_output(out: str | os.PathLike, inputs=(), *, what: str = "--out") -> Path:
    """`out` (a file or folder to write) as a Path, or InputError when writing there would replace one
    of `inputs` (files or folders the command reads), hold one of them, or land in a shard folder."""
    o = Path(out).expanduser().resolve()
    for given in inputs:
        i = Path(given).expanduser().resolve()
        if o == i or o in i.parents:
            raise InputError(f"{what} {out} would write over the input {given}; choose another path")
    shard = in_shard_folder(o if o.is_dir() else o.parent)
    if shard is not None:
        raise InputError(f"{what} {out} is inside the shard folder {shard}; write it somewhere else")
    return o
