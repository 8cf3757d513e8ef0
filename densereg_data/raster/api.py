"""Vertices in pixels -> triangle index + barycentrics; attribute interpolation.

`rasterize` turns a mesh whose vertices are already in image pixels into a `Raster`: per pixel, the
index of the visible triangle and the barycentric weights of its three vertices. `interpolate` and
`face_labels` read per-vertex and per-face data through a `Raster`; `render_uv_parts` is the fused
fast path of the label builder (raster + U-V image + parts image in two passes).

Convention: pixel centres
    An integer coordinate is a pixel centre (see `densereg_data.conventions`): the point (x=c, y=r)
    is the centre of pixel ``[r, c]``, and a triangle covers pixel ``[r, c]`` iff that point lies
    inside it. A vertex at (x=3, y=1) lands in ``raster.triangle[1, 3]``.

Convention: depth and visibility
    ``vertices[:, 2]`` is depth; smaller is nearer. Per pixel the triangle of smallest depth (compared
    as float32) is kept; equal depths keep the lower triangle index. Depth is interpolated linearly
    in screen space (exact for the orthographic projection used throughout densereg).

Convention: fill rule
    Top-left rule: a pixel centre exactly on an edge belongs to the triangle that lies to its right
    (+x), or, for a horizontal edge, to the triangle below it (+y, the image's y points down). As on
    GPUs, (x, y) are snapped to 1/256 pixel (`SUBPIXEL_BITS`) and edge functions are evaluated
    exactly in int64, so two triangles sharing an edge cover every pixel centre on it exactly once:
    no holes, no double coverage. Coverage is therefore exact for vertices on the 1/256 grid and
    within 1/512 pixel otherwise. Zero-area triangles cover nothing. (Vertices farther than
    `FIXED_POINT_LIMIT_PX` from the origin switch the call to an unsnapped float64 path whose edge
    functions are evaluated in a canonical vertex order, with the same guarantees.)

Convention: winding
    Both windings are drawn by default. Front-facing means counter-clockwise as seen in the image
    (x right, y down), i.e. a negative ``(x1-x0)(y2-y0) - (y1-y0)(x2-x0)``; this is what a template
    whose triangles are counter-clockwise seen from the front (y up) becomes after the y flip of the
    projection. ``cull_backfaces=True`` drops the others.

Convention: barycentrics
    ``bary[r, c, k]`` is the weight of vertex ``faces[triangle[r, c], k]`` at the pixel centre, in
    screen space, >= 0 and summing to 1; 0 on background. They are the snapped triangle's exact edge
    functions over twice its area, so interpolating the vertex positions gives back the pixel centre
    exactly for vertices on the 1/256 grid and within 1/512 pixel otherwise.

All outputs are deterministic: the same input gives bit-identical output (no fast-math), whatever
the number of threads: with ``threads=n`` the CPU backend cuts the image into n bands of rows and
draws each on its own thread, every triangle still classified and tested on its whole box, so each
pixel gets the same arithmetic as with one thread. (Vertices beyond `FIXED_POINT_LIMIT_PX` take the
float64 path, which uses one thread.)
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from densereg_data.raster import fast as _cpu
from densereg_data.errors import ShapeError
from densereg_data.raster.coverage import FIXED_POINT_LIMIT_PX, SUBPIXEL_BITS

logger = logging.getLogger(__name__)


__all__ = [
    "BACKENDS",
    "FIXED_POINT_LIMIT_PX",
    "Raster",
    "face_labels",
    "interpolate",
    "rasterize",
    "register_backend",
    "render_uv_parts",
    "SUBPIXEL_BITS",
]


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raster:
    """Which triangle is visible at each pixel centre, and where in it.

    triangle: (H, W) int32, index into ``faces``; -1 on background.
    bary: (H, W, 3) float32, weights of ``faces[triangle, 0..2]`` at the pixel centre; 0 on
        background.
    """

    triangle: np.ndarray
    bary: np.ndarray

    def __post_init__(self) -> None:
        tri, bary = self.triangle, self.bary
        if not isinstance(tri, np.ndarray) or tri.ndim != 2 or tri.dtype != np.int32:
            raise ShapeError(f"Raster.triangle must be (H, W) int32, got {_describe(tri)}")
        h, w = tri.shape
        if not isinstance(bary, np.ndarray) or bary.shape != (h, w, 3) or bary.dtype != np.float32:
            raise ShapeError(f"Raster.bary must be ({h}, {w}, 3) float32, got {_describe(bary)}")

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a triangle is visible."""
        return self.triangle >= 0

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the raster."""
        h, w = self.triangle.shape
        return int(h), int(w)


# --------------------------------------------------------------------------------------------
# Backend registry
# --------------------------------------------------------------------------------------------

#: name -> function(vertices (V, 3) float64/float32, faces (F, 3) int32/int64, size, cull, threads)
#: -> Raster, called with validated, contiguous inputs; `threads` is the CPU threads the caller allows.
BACKENDS: dict[str, Callable[..., Raster]] = {}


def register_backend(name: str) -> Callable[[Callable[..., Raster]], Callable[..., Raster]]:
    """Decorator: register a rasterizer backend under ``name``."""

    def decorate(fn: Callable[..., Raster]) -> Callable[..., Raster]:
        if name in BACKENDS:
            raise ValueError(f"raster backend {name!r} is already registered")
        BACKENDS[name] = fn
        return fn

    return decorate


def _get_backend(name: str) -> Callable[..., Raster]:
    try:
        return BACKENDS[name]
    except KeyError:
        valid = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown raster backend {name!r}; valid backends: {valid}") from None


# --------------------------------------------------------------------------------------------
# Validation (public boundary)
# --------------------------------------------------------------------------------------------


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.shape} {a.dtype}"
    return type(a).__name__


def _check_triples(a: object, kinds: str, dtypes: tuple[type, type], expected: str) -> np.ndarray:
    """a as a contiguous (N, 3) array of one of `dtypes` (cast to the first when another dtype of
    `kinds`); ShapeError "{expected}, got ..." otherwise."""
    x = np.asarray(a)
    if x.ndim != 2 or x.shape[1] != 3 or x.dtype.kind not in kinds:
        raise ShapeError(f"{expected}, got {_describe(x)}")
    if x.dtype not in dtypes:
        x = x.astype(dtypes[0])
    return np.ascontiguousarray(x)


def _check_vertices(vertices: object) -> np.ndarray:
    return _check_triples(vertices, "fiu", (np.float64, np.float32),
                          "vertices must be (V, 3) float (x, y, depth) pixels")


def _check_faces(faces: object) -> np.ndarray:
    return _check_triples(faces, "iu", (np.int64, np.int32), "faces must be (F, 3) integer")


def _check_size(size: object) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ShapeError(f"size must be (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ShapeError(f"size must be positive (height, width), got ({h}, {w})")
    return h, w


def _check_threads(threads: object) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def _face_index_error(faces: np.ndarray, n_vertices: int, bad: int) -> ShapeError:
    return ShapeError(
        f"faces must index vertices in [0, {n_vertices}), got {faces[bad].tolist()} at face {bad}"
    )


def _check_raster_faces(raster: Raster, faces: object) -> np.ndarray:
    if not isinstance(raster, Raster):
        raise ShapeError(f"raster must be a Raster, got {type(raster).__name__}")
    return _check_faces(faces)


# Outputs come from two allocations, not four: (triangle, barycentrics), 16 bytes a pixel, and
# (U-V, parts), 9 bytes a pixel, which is all the label builder keeps. glibc hands memory freed at the
# top of its heap back to the OS once it exceeds twice the largest recent allocation: with four arrays
# (largest: barycentrics, 12 bytes a pixel, of 25) it did so after every call, and each call at
# 1024 x 1024 then paid ~1,500 page faults (~4 ms) to map the pages again; with two (largest 16 of 25)
# the memory is reused. BENCHMARKS.md, "Rasterizer", has the measurement.


def _raster_arrays(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised (H, W) int32 triangle and (H, W, 3) float32 barycentric images, one allocation."""
    block = np.empty(16 * h * w, dtype=np.uint8)
    bary = block[: 12 * h * w].view(np.float32).reshape(h, w, 3)
    return block[12 * h * w :].view(np.int32).reshape(h, w), bary


def _uv_parts_arrays(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised (H, W, 2) float32 U-V and (H, W) uint8 parts images, one allocation; the U-V
    image starts the block, so it is aligned for `_zbuffer_checked`'s uint64 keys."""
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


def _in_bands(draw: Callable[[int, int], int], height: int, threads: int) -> list[int]:
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


def _zbuffer_checked(
    verts: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull: bool, uv=None, face_parts=None,
    threads: int = 1,
):
    """Validated inputs -> Raster (triangle image, -1 = background, and barycentrics); with `uv` and
    `face_parts`, also the U-V and parts images, made in the same final pass: (raster, uv, parts).
    With `threads` > 1 the image is cut into that many bands of rows, each z-buffered and finished
    by its own thread (`raster_cpu.zbuffer_fixed` gives a band the same pixels as the whole image)."""
    h, w = size
    nv = verts.shape[0]
    tri, bary = _raster_arrays(h, w)
    fx = np.empty(nv, dtype=np.int32)
    fy = np.empty(nv, dtype=np.int32)
    fz = np.empty(nv, dtype=np.float32)
    status = _cpu.snap(verts, fx, fy, fz)
    if status == 2:
        raise ShapeError(f"vertices must be finite, got NaN or inf in {_describe(verts)}")
    if status == 0:
        with_uv = uv is not None
        uv_img, parts_img = _uv_parts_arrays(h, w) if with_uv else _uv_parts_arrays(0, 0)
        # the keys (8 bytes a pixel) live in the U-V image's memory when there is one: `raster_cpu.finish`
        # reads each pixel's key before it writes that pixel's U-V over it
        key = uv_img.reshape(-1).view(np.uint64) if with_uv else np.empty(h * w, dtype=np.uint64)
        if not with_uv:
            uv, face_parts = np.zeros((0, 2)), np.zeros(0, np.uint8)
        tri_, bary_, uv_, parts_ = tri.reshape(-1), bary.reshape(-1), uv_img.reshape(-1), parts_img.reshape(-1)

        def draw(row0: int, row1: int) -> int:
            bad = _cpu.zbuffer_fixed(fx, fy, fz, faces, h, w, row0, row1, cull, key, bary_)
            if bad < 0:
                a, b = row0 * w, row1 * w
                _cpu.finish(key[a:b], tri_[a:b], bary_[3 * a : 3 * b], faces, uv, face_parts,
                            uv_[2 * a : 2 * b], parts_[a:b], with_uv)
            return bad

        bad = max(_in_bands(draw, h, threads))
        if bad >= 0:
            raise _face_index_error(faces, nv, bad)
        raster = Raster(triangle=tri, bary=bary)
        return (raster, uv_img, parts_img) if with_uv else raster
    bad = _cpu.faces_in_range(faces, nv)
    if bad >= 0:
        raise _face_index_error(faces, nv, bad)
    logger.debug("vertices beyond %g px: using the float64 z-buffer", FIXED_POINT_LIMIT_PX)
    depth = np.empty((h, w), dtype=np.float32)
    _cpu.zbuffer_float(verts, faces, h, w, cull, tri, depth)
    _cpu.resolve_bary(verts, faces, tri, bary)
    raster = Raster(triangle=tri, bary=bary)
    if uv is None:
        return raster
    uv_img, parts_img = _uv_parts_arrays(h, w)
    _cpu.interpolate_into(faces, uv, raster.triangle, raster.bary, uv_img)
    _cpu.face_labels_into(face_parts, raster.triangle, parts_img)
    return raster, uv_img, parts_img


def barycentrics_from_triangle(vertices: np.ndarray, faces: np.ndarray, tri: np.ndarray) -> Raster:
    """Complete a triangle-index image with barycentrics computed at pixel centres.

    vertices: (V, 3) float64/float32 pixels, validated; faces: (F, 3) int32/int64, validated;
    tri: (H, W) int32, -1 = background, every other value < F. Used by GPU backends.
    """
    bary = np.empty(tri.shape + (3,), dtype=np.float32)
    _cpu.resolve_bary(vertices, faces, tri, bary)
    return Raster(triangle=tri, bary=bary)


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


@register_backend("cpu")
def _rasterize_cpu(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull_backfaces: bool, threads: int
) -> Raster:
    return _zbuffer_checked(vertices, faces, size, cull_backfaces, threads=threads)


@register_backend("pyrender")
def _rasterize_pyrender(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull_backfaces: bool, threads: int
) -> Raster:
    from densereg_data.raster.gl import rasterize_gl  # optional: pyrender + OpenGL

    if not _cpu.all_finite(vertices):
        raise ShapeError(f"vertices must be finite, got NaN or inf in {_describe(vertices)}")

    return rasterize_gl(vertices, faces, size, cull_backfaces=cull_backfaces)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def rasterize(
    vertices: np.ndarray,
    faces: np.ndarray,
    size: tuple[int, int],
    *,
    backend: str = "cpu",
    cull_backfaces: bool = False,
    threads: int = 1,
) -> Raster:
    """Rasterize a mesh whose vertices are in image pixels.

    vertices: (V, 3) float, (x, y, depth) in pixels of the output image, y down, smaller depth nearer.
    faces: (F, 3) int, indices into vertices.
    size: (height, width) of the output.
    backend: a key of `BACKENDS` ("cpu", or "pyrender" which needs OpenGL).
    threads: the CPU backend draws the image in this many bands of rows at once (the output does
        not depend on it); the pyrender backend ignores it.
    Returns a `Raster` of shape (height, width).

    Convention: pixel centres, depth and visibility, fill rule, winding, barycentrics: see the
    module docstring. The point (x=3, y=1) is sampled by ``raster.triangle[1, 3]``.
    """
    fn = _get_backend(backend)
    v = _check_vertices(vertices)
    f = _check_faces(faces)
    hw = _check_size(size)
    return fn(v, f, hw, bool(cull_backfaces), _check_threads(threads))


def interpolate(raster: Raster, faces: np.ndarray, attribute: np.ndarray) -> np.ndarray:
    """Per-vertex attribute -> image, through a raster.

    raster: `Raster` (H, W); faces: (F, 3) int, the faces it was made from; attribute: (V, C) or
    (V,) float. Returns (H, W, C) float32 ((H, W) for a 1-D attribute), 0 on background.

    Convention: barycentric weights of the pixel centre (module docstring), combined in float64.
    """
    f = _check_raster_faces(raster, faces)
    a = np.asarray(attribute)
    squeeze = a.ndim == 1
    if squeeze:
        a = a[:, None]
    if a.ndim != 2 or a.dtype.kind not in "fiub":
        raise ShapeError(f"attribute must be (V, C) or (V,) numeric, got {_describe(a)}")
    if a.dtype.kind == "b":
        a = a.astype(np.float64)
    a = np.ascontiguousarray(a)
    if f.size and (int(f.max()) >= a.shape[0] or int(f.min()) < 0):
        raise ShapeError(
            f"attribute must have one row per vertex: faces index [{int(f.min())}, {int(f.max())}],"
            f" attribute has {a.shape[0]} rows"
        )
    h, w = raster.size
    out = np.empty((h, w, a.shape[1]), dtype=np.float32)
    bad = _cpu.interpolate_into(f, a, raster.triangle, raster.bary, out)
    if bad >= 0:
        raise ShapeError(f"raster holds triangle {bad}, faces has only {f.shape[0]} rows")
    return out[:, :, 0] if squeeze else out


def face_labels(raster: Raster, labels: np.ndarray) -> np.ndarray:
    """Per-face label -> image, through a raster.

    raster: `Raster` (H, W); labels: (F,) uint8 (parts: 1..8, see `densereg_data.conventions`).
    Returns (H, W) uint8, 0 on background.
    """
    if not isinstance(raster, Raster):
        raise ShapeError(f"raster must be a Raster, got {type(raster).__name__}")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.dtype != np.uint8:
        raise ShapeError(f"labels must be (F,) uint8, got {_describe(lab)}")
    h, w = raster.size
    out = np.empty((h, w), dtype=np.uint8)
    bad = _cpu.face_labels_into(np.ascontiguousarray(lab), raster.triangle, out)
    if bad >= 0:
        raise ShapeError(f"raster holds triangle {bad}, labels has only {lab.shape[0]} entries")
    return out


def render_uv_parts(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    face_parts: np.ndarray,
    size: tuple[int, int],
    *,
    cull_backfaces: bool = False,
    threads: int = 1,
) -> tuple[Raster, np.ndarray, np.ndarray]:
    """The fused fast path: raster + U-V image + parts image, on the CPU.

    vertices: (V, 3) float (x, y, depth) pixels; faces: (F, 3) int; uv: (V, 2) float in [0, 1];
    face_parts: (F,) uint8; size: (height, width); threads: as `rasterize`.
    Returns (raster, uv_image (H, W, 2) float32, parts_image (H, W) uint8); U-V and parts are 0 on
    background. Identical to ``rasterize`` + ``interpolate(uv)`` + ``face_labels(face_parts)``.

    Convention: as `rasterize` (module docstring).
    """
    v = _check_vertices(vertices)
    f = _check_faces(faces)
    hw = _check_size(size)
    n_threads = _check_threads(threads)
    uv_ = np.asarray(uv)
    if uv_.shape != (v.shape[0], 2) or uv_.dtype.kind != "f":
        raise ShapeError(f"uv must be ({v.shape[0]}, 2) float, got {_describe(uv_)}")
    parts = np.asarray(face_parts)
    if parts.shape != (f.shape[0],) or parts.dtype != np.uint8:
        raise ShapeError(f"face_parts must be ({f.shape[0]},) uint8, got {_describe(parts)}")
    uv_ = np.ascontiguousarray(uv_)
    parts = np.ascontiguousarray(parts)
    return _zbuffer_checked(v, f, hw, bool(cull_backfaces), uv_, parts, n_threads)
