"""Input checks of the rasterizer's public boundary, and the errors its backends raise.

Each check returns the array as the kernels want it (contiguous, one of two dtypes) or raises a
`ShapeError` (a `ValueError`) that says what was expected and what was found. numpy only.
"""

from __future__ import annotations

import numpy as np

from densereg_data.errors import ShapeError


def describe(a: object) -> str:
    """"(shape) dtype" of an array, else the type's name: the "got ..." of an error message."""
    if isinstance(a, np.ndarray):
        return f"{a.shape} {a.dtype}"
    return type(a).__name__


def _triples(a: object, kinds: str, dtypes: tuple[type, type], expected: str) -> np.ndarray:
    """a as a contiguous (N, 3) array of one of `dtypes` (cast to the first when another dtype of
    `kinds`); ShapeError "{expected}, got ..." otherwise."""
    x = np.asarray(a)
    if x.ndim != 2 or x.shape[1] != 3 or x.dtype.kind not in kinds:
        raise ShapeError(f"{expected}, got {describe(x)}")
    if x.dtype not in dtypes:
        x = x.astype(dtypes[0])
    return np.ascontiguousarray(x)


def vertices(a: object) -> np.ndarray:
    """(V, 3) float64 or float32, contiguous (other numeric dtypes cast to float64)."""
    return _triples(a, "fiu", (np.float64, np.float32), "vertices must be (V, 3) float (x, y, depth) pixels")


def faces(a: object) -> np.ndarray:
    """(F, 3) int64 or int32, contiguous (other integer dtypes cast to int64); indices not checked."""
    return _triples(a, "iu", (np.int64, np.int32), "faces must be (F, 3) integer")


def size(s: object) -> tuple[int, int]:
    """(height, width), both positive."""
    try:
        h, w = (int(v) for v in s)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ShapeError(f"size must be (height, width), got {s!r}") from None
    if h <= 0 or w <= 0:
        raise ShapeError(f"size must be positive (height, width), got ({h}, {w})")
    return h, w


def threads(n: object) -> int:
    """A positive int (not a bool); ValueError otherwise."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    return int(n)


def non_finite_error(verts: np.ndarray) -> ShapeError:
    return ShapeError(f"vertices must be finite, got NaN or inf in {describe(verts)}")


def face_index_error(faces: np.ndarray, n_vertices: int, bad: int) -> ShapeError:
    return ShapeError(f"faces must index vertices in [0, {n_vertices}), got {faces[bad].tolist()} at face {bad}")
