"""MATLAB .mat files as datasets distribute them (COFW-68, AFLW2000-3D, 300W-LP), read as untrusted input.

`load_mat(path, names, what)` reads at most `MAX_MAT_BYTES`, refuses what scipy should not be handed
(HDF5 / v7.3 files, which are another format; compressed variables inflating past
`MAX_INFLATED_BYTES`, so a small file cannot become gigabytes in memory), and returns only the named
variables through `scipy.io.loadmat` (level 4/5 files: plain arrays, nothing executed). Every problem is
one `MatFileError` line (a `LandmarkFileError`) naming the file.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from densereg_data.errors import BackendUnavailableError, LandmarkFileError
from densereg_data.io.untrusted import read_capped

__all__ = ["MatFileError", "load_mat", "check_mat", "MAX_MAT_BYTES", "MAX_INFLATED_BYTES"]

MAX_MAT_BYTES = 2**20
MAX_INFLATED_BYTES = 8 * 2**20
_HDF5 = b"\x89HDF\r\n\x1a\n"


class MatFileError(LandmarkFileError):
    """A .mat file that cannot be read safely (one line naming the file)."""


def check_mat(data: bytes) -> None:
    """Raise ValueError for an HDF5 (v7.3) .mat or compressed variables that inflate past the cap."""
    if data[:8] == _HDF5 or data[512:520] == _HDF5 or b"MATLAB 7.3" in data[:116]:
        raise ValueError("a MATLAB v7.3 (HDF5) .mat; save it with -v7")
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return  # not level 5: scipy reads (or refuses) level 4 itself
    order = "<" if data[126:128] == b"IM" else ">"
    pos, total = 128, 0
    while pos + 8 <= len(data):
        kind, nbytes = struct.unpack_from(order + "II", data, pos)
        pos += 8
        if kind == 15:  # miCOMPRESSED
            try:
                total += len(zlib.decompressobj().decompress(data[pos:pos + nbytes], MAX_INFLATED_BYTES - total + 1))
            except zlib.error:
                raise ValueError("corrupt compressed data") from None
            if total > MAX_INFLATED_BYTES:
                raise ValueError(f"its compressed variables inflate to more than {MAX_INFLATED_BYTES} bytes")
        pos += nbytes


def load_mat(path: str | Path, names: tuple[str, ...], what: str, max_bytes: int = MAX_MAT_BYTES) -> dict:
    """The named variables of the .mat at `path`; `what` names the kind of file in messages."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise BackendUnavailableError(f"reading {what} files needs scipy: pip install 'densereg[data]'") from None
    data = read_capped(path, what, MatFileError, max_bytes)
    try:
        check_mat(data)
    except ValueError as exc:
        raise MatFileError(f"{what} unreadable: {exc}: {path}") from None
    try:
        return loadmat(io.BytesIO(data), variable_names=names)
    except Exception as exc:  # noqa: BLE001 - scipy's parser fails in many ways (ValueError, struct.error, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MatFileError(f"{what} unreadable: not a readable MATLAB .mat ({reason}): {path}") from None
