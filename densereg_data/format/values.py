"""The value rules of a shard's arrays (docs/FORMAT.md), checked by `verify` block by block.

Shapes and dtypes are the schema's business (`reader.check_shard_schema`); these are the ranges a
consumer relies on: U-V in [0, 1] on the face and exactly 0 on background, part labels within the
index's part names, finite landmarks, affines, poses and coefficients, positive source sizes, finite
non-negative fit errors.
"""

from __future__ import annotations

import numpy as np

from densereg_data.errors import ShardFormatError

__all__ = ["check_values", "BLOCK"]

#: Samples read per block (bounds memory: 64 samples at 256 x 256 is about 40 MB decoded).
BLOCK = 64


def _finite(name: str, a: np.ndarray, where: str, lo: int) -> None:
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise ShardFormatError(f"{where}: {name} of sample {lo + int(np.argmax(bad))} is not finite")


def check_values(f, where: str, n_parts: int) -> None:
    """Raise ShardFormatError naming the file, dataset and sample of the first value out of range.

    f: an open shard file that already passed the schema check; n_parts: part labels 1..n_parts.
    """
    n = f["image"].shape[0]
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        parts = f["parts"][lo:hi]
        if parts.size and int(parts.max()) > n_parts:
            i = lo + int(np.argmax(parts.reshape(hi - lo, -1).max(axis=1) > n_parts))
            raise ShardFormatError(f"{where}: parts of sample {i} hold labels above {n_parts}")
        uv = f["uv"][lo:hi].astype(np.float32)
        _finite("uv", uv, where, lo)
        fg = (parts > 0)[..., None]
        out_of_range = ((uv < 0) | (uv > 1)) | (~fg & (uv != 0))
        if out_of_range.any():
            i = lo + int(np.argmax(out_of_range.reshape(hi - lo, -1).any(axis=1)))
            raise ShardFormatError(f"{where}: uv of sample {i} is outside [0, 1] on the face or not 0 on background")
        for name in ("crop_from_image", "crop_from_template", "pose", "coefficients", "expression", "view_delta"):
            if name in f:  # expression: only for a model with expressions (version 2); view_delta: version 3
                _finite(name, f[name][lo:hi].astype(np.float64), where, lo)
        landmarks = f["landmarks"][lo:hi].astype(np.float64)
        if "landmark_state" in f:  # version 2: NaN exactly where a point is missing
            state = f["landmark_state"][lo:hi]
            bad = (state > 2) | (np.isnan(landmarks).any(axis=2) != (state == 0))
            if bad.any():
                i = lo + int(np.argmax(bad.any(axis=1)))
                raise ShardFormatError(f"{where}: landmark_state of sample {i} is not 0, 1 or 2, or landmarks are NaN "
                                       "where a point is placed (or a number where it is missing)")
            landmarks = np.where(np.isnan(landmarks), 0.0, landmarks)
        _finite("landmarks", landmarks, where, lo)
        nme = f["fit_nme"][lo:hi]
        if (~np.isfinite(nme) | (nme < 0)).any():
            raise ShardFormatError(f"{where}: fit_nme of sample {lo + int(np.argmax(~np.isfinite(nme) | (nme < 0)))} "
                                   "is not a finite error >= 0")
        size = f["source_size"][lo:hi]
        if (size < 1).any():
            raise ShardFormatError(f"{where}: source_size of sample {lo + int(np.argmax((size < 1).any(axis=1)))} "
                                   "is not positive")
