"""The CPU backend's driver: output memory, snapping, bands of rows on threads, the far-vertex path.

`render` takes validated inputs (`densereg_data.raster.validate`) to the output images: it snaps
the vertices (`fast.snap`), z-buffers and finishes the image in `threads` bands of rows
(`fast.zbuffer_fixed`, `fast.finish`), or, when a vertex lies beyond `FIXED_POINT_LIMIT_PX`, draws it
with the float64 kernels (`float64`). The conventions are `densereg_data.raster.api`'s.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from densereg_data.raster import fast, float64
from densereg_data.raster.constants import FIXED_POINT_LIMIT_PX
from densereg_data.raster.validate import face_index_error, non_finite_error

logger = logging.getLogger(__name__)

# Outputs come from two allocations, not four: (triangle, barycentrics), 16 bytes a pixel, and
# (U-V, parts), 9 bytes a pixel, which is all the label builder keeps. glibc hands memory freed at the
# top of its heap back to the OS once it exceeds twice the largest recent allocation: with four arrays
# (largest: barycentrics, 12 bytes a pixel, of 25) it did so after every call, and each call at
# 1024 x 1024 then paid ~1,500 page faults to map the pages again; with two (largest 16 of 25) the
# memory is reused. `benchmarks/bench_raster_alloc.py` measures both (figures in BENCHMARKS.md).


def raster_arrays(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised (H, W) int32 triangle and (H, W, 3) float32 barycentric images, one allocation."""
    block = np.empty(16 * h * w, dtype=np.uint8)
    bary = block[: 12 * h * w].view(np.float32).reshape(h, w, 3)
    return block[12 * h * w :].view(np.int32).reshape(h, w), bary


def uv_parts_arrays(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised (H, W, 2) float32 U-V and (H, W) uint8 parts images, one allocation; the U-V
    image starts the block, so it is aligned for `render`'s uint64 keys."""
    block = np.empty(9 * h * w, dtype=np.uint8)
    return block[: 8 * h * w].view(np.float32).reshape(h, w, 2), block[8 * h * w :].reshape(h, w)


_POOL: tuple[ThreadPoolExecutor, int] | None = None  # (pool, its number of workers)
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool when one is needed."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def in_bands(draw: Callable[[int, int], int], height: int, threads: int) -> list[int]:
    """draw(row0, row1) over `threads` bands of equal height (fewer for a short image), the first on
    the calling thread and the others on a shared pool; their results in band order."""
    n = max(1, min(threads, height))
    if n == 1:
        return [draw(0, height)]
    edges = [height * k // n for k in range(n + 1)]
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[1] < n - 1:
            _POOL = (ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="densereg-raster"), n - 1)
        pool = _POOL[0]
    others = [pool.submit(draw, edges[k], edges[k + 1]) for k in range(1, n)]
    first = draw(edges[0], edges[1])
    return [first] + [f.result() for f in others]


def render(
    verts: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull: bool, uv: np.ndarray | None = None,
    face_parts: np.ndarray | None = None, threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validated inputs -> (triangle (H, W) int32, -1 = background; barycentrics (H, W, 3) float32;
    U-V (H, W, 2) float32 or None; parts (H, W) uint8 or None). U-V and parts are made, in the same
    final pass, when `uv` (V, 2) float and `face_parts` (F,) uint8 are given. With `threads` > 1 the
    image is cut into that many bands of rows, each z-buffered and finished by its own thread
    (`fast.zbuffer_fixed` gives a band the same pixels as the whole image).

    Raises ShapeError for non-finite vertices and for face indices outside [0, V)."""
    h, w = size
    nv = verts.shape[0]
    tri, bary = raster_arrays(h, w)
    fx = np.empty(nv, dtype=np.int32)
    fy = np.empty(nv, dtype=np.int32)
    fz = np.empty(nv, dtype=np.float32)
    status = fast.snap(verts, fx, fy, fz)
    if status == 2:
        raise non_finite_error(verts)
    with_uv = uv is not None
    if status == 1:
        return _render_far(verts, faces, size, cull, uv, face_parts, tri, bary)
    uv_img, parts_img = uv_parts_arrays(h, w) if with_uv else uv_parts_arrays(0, 0)
    # the keys (8 bytes a pixel) live in the U-V image's memory when there is one: `fast.finish`
    # reads each pixel's key before it writes that pixel's U-V over it
    key = uv_img.reshape(-1).view(np.uint64) if with_uv else np.empty(h * w, dtype=np.uint64)
    if not with_uv:
        uv, face_parts = np.zeros((0, 2)), np.zeros(0, np.uint8)
    tri_, bary_, uv_, parts_ = tri.reshape(-1), bary.reshape(-1), uv_img.reshape(-1), parts_img.reshape(-1)

    def draw(row0: int, row1: int) -> int:
        bad = fast.zbuffer_fixed(fx, fy, fz, faces, h, w, row0, row1, cull, key, bary_)
        if bad < 0:
            a, b = row0 * w, row1 * w
            fast.finish(key[a:b], tri_[a:b], bary_[3 * a : 3 * b], faces, uv, face_parts,
                        uv_[2 * a : 2 * b], parts_[a:b], with_uv)
        return bad

    bad = max(in_bands(draw, h, threads))
    if bad >= 0:
        raise face_index_error(faces, nv, bad)
    return (tri, bary, uv_img, parts_img) if with_uv else (tri, bary, None, None)


def _render_far(verts, faces, size, cull, uv, face_parts, tri, bary):
    """`render` for vertices beyond `FIXED_POINT_LIMIT_PX`: the float64 kernels, one thread."""
    bad = fast.faces_in_range(faces, verts.shape[0])
    if bad >= 0:
        raise face_index_error(faces, verts.shape[0], bad)
    logger.debug("vertices beyond %g px: using the float64 z-buffer", FIXED_POINT_LIMIT_PX)
    h, w = size
    float64.zbuffer_float(verts, faces, h, w, cull, tri, np.empty((h, w), dtype=np.float32))
    float64.resolve_bary(verts, faces, tri, bary)
    if uv is None:
        return tri, bary, None, None
    uv_img, parts_img = uv_parts_arrays(h, w)
    fast.interpolate_into(faces, uv, tri, bary, uv_img)
    fast.face_labels_into(face_parts, tri, parts_img)
    return tri, bary, uv_img, parts_img


def barycentrics(verts: np.ndarray, faces: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 barycentrics at the pixel centres of a triangle-index image drawn elsewhere
    (the GPU backend): verts (V, 3), faces (F, 3) validated; tri (H, W) int32, -1 or < F."""
    bary = np.empty(tri.shape + (3,), dtype=np.float32)
    float64.resolve_bary(verts, faces, tri, bary)
    return bary
