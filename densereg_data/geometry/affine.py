"""2D affine maps between pixel frames, as (2, 3) float64 arrays: ``out_xy = A @ [x, y, 1]``.

Convention: names say both frames (`crop_from_image`, `reduced_from_image`); points are rows
``(n, 2)`` (x, y), and integer coordinates are pixel centres in every frame.
"""

from __future__ import annotations

import numpy as np


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (n, 2) through a (2, 3) affine -> (n, 2)."""
    return points @ affine[:, :2].T + affine[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for (2, 3) affines: apply `inner` first."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of an invertible (2, 3) affine."""
    lin_inv = np.linalg.inv(affine[:, :2])
    return np.hstack([lin_inv, -(lin_inv @ affine[:, 2])[:, None]])


def reduction_affine(factor: int) -> np.ndarray:
    """(2, 3) map from an image to its k x k block average (k = `factor`): pixel centres move by
    ``reduced_xy = (xy + 0.5) / k - 0.5``, so the block's edges stay on the image's pixel edges."""
    s = 1.0 / factor
    off = 0.5 * s - 0.5
    return np.array([[s, 0.0, off], [0.0, s, off]])
