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

Backends (`BACKENDS`): "cpu", the numba z-buffer (`cpu`, `fast`, `coverage`, `float64`); "reference",
the same rules in plain numpy (`reference`), slow, the oracle the "cpu" backend equals bit for bit;
"pyrender", OpenGL through pyrender (`gl`, optional), a cross-check with GL's own fill rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from densereg_data.errors import ShapeError
from densereg_data.raster import cpu, fast, reference, validate
from densereg_data.raster.constants import FIXED_POINT_LIMIT_PX, SUBPIXEL_BITS

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
            raise ShapeError(f"Raster.triangle must be (H, W) int32, got {validate.describe(tri)}")
        h, w = tri.shape
        if not isinstance(bary, np.ndarray) or bary.shape != (h, w, 3) or bary.dtype != np.float32:
            raise ShapeError(f"Raster.bary must be ({h}, {w}, 3) float32, got {validate.describe(bary)}")

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a triangle is visible."""
        return self.triangle >= 0

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the raster."""
        h, w = self.triangle.shape
        return int(h), int(w)


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


def _check_finite_and_indices(vertices: np.ndarray, faces: np.ndarray) -> None:
    """What the "cpu" backend checks inside its kernels, for the other backends."""
    if not np.isfinite(vertices).all():
        raise validate.non_finite_error(vertices)
    bad = np.flatnonzero(((faces < 0) | (faces >= vertices.shape[0])).any(1))
    if bad.size:
        raise validate.face_index_error(faces, vertices.shape[0], int(bad[0]))


@register_backend("cpu")
def _rasterize_cpu(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull_backfaces: bool, threads: int
) -> Raster:
    tri, bary, _, _ = cpu.render(vertices, faces, size, cull_backfaces, threads=threads)
    return Raster(triangle=tri, bary=bary)


@register_backend("reference")
def _rasterize_reference(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull_backfaces: bool, threads: int
) -> Raster:
    _check_finite_and_indices(vertices, faces)
    tri, bary = reference.rasterize(vertices, faces, size, cull_backfaces)
    return Raster(triangle=tri, bary=bary)


@register_backend("pyrender")
def _rasterize_pyrender(
    vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull_backfaces: bool, threads: int
) -> Raster:
    from densereg_data.raster.gl import triangles_gl  # optional: pyrender + OpenGL

    _check_finite_and_indices(vertices, faces)
    tri = triangles_gl(vertices, faces, size, cull_backfaces=cull_backfaces)
    return Raster(triangle=tri, bary=cpu.barycentrics(vertices, faces, tri))


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
    backend: a key of `BACKENDS`: "cpu"; "reference" (plain numpy, slow, the same output bit for
        bit); "pyrender" (needs OpenGL).
    threads: the CPU backend draws the image in this many bands of rows at once (the output does
        not depend on it); the other backends ignore it.
    Returns a `Raster` of shape (height, width).

    Convention: pixel centres, depth and visibility, fill rule, winding, barycentrics: see the
    module docstring. The point (x=3, y=1) is sampled by ``raster.triangle[1, 3]``.
    """
    fn = _get_backend(backend)
    v = validate.vertices(vertices)
    f = validate.faces(faces)
    hw = validate.size(size)
    return fn(v, f, hw, bool(cull_backfaces), validate.threads(threads))


def _check_raster(raster: object) -> None:
    if not isinstance(raster, Raster):
        raise ShapeError(f"raster must be a Raster, got {type(raster).__name__}")


def interpolate(raster: Raster, faces: np.ndarray, attribute: np.ndarray) -> np.ndarray:
    """Per-vertex attribute -> image, through a raster.

    raster: `Raster` (H, W); faces: (F, 3) int, the faces it was made from; attribute: (V, C) or
    (V,) float. Returns (H, W, C) float32 ((H, W) for a 1-D attribute), 0 on background.

    Convention: barycentric weights of the pixel centre (module docstring), combined in float64.
    """
    _check_raster(raster)
    f = validate.faces(faces)
    a = np.asarray(attribute)
    squeeze = a.ndim == 1
    if squeeze:
        a = a[:, None]
    if a.ndim != 2 or a.dtype.kind not in "fiub":
        raise ShapeError(f"attribute must be (V, C) or (V,) numeric, got {validate.describe(a)}")
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
    bad = fast.interpolate_into(f, a, raster.triangle, raster.bary, out)
    if bad >= 0:
        raise ShapeError(f"raster holds triangle {bad}, faces has only {f.shape[0]} rows")
    return out[:, :, 0] if squeeze else out


def face_labels(raster: Raster, labels: np.ndarray) -> np.ndarray:
    """Per-face label -> image, through a raster.

    raster: `Raster` (H, W); labels: (F,) uint8 (parts: 1..8, see `densereg_data.conventions`).
    Returns (H, W) uint8, 0 on background.
    """
    _check_raster(raster)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.dtype != np.uint8:
        raise ShapeError(f"labels must be (F,) uint8, got {validate.describe(lab)}")
    h, w = raster.size
    out = np.empty((h, w), dtype=np.uint8)
    bad = fast.face_labels_into(np.ascontiguousarray(lab), raster.triangle, out)
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
    v = validate.vertices(vertices)
    f = validate.faces(faces)
    hw = validate.size(size)
    n_threads = validate.threads(threads)
    uv_ = np.asarray(uv)
    if uv_.shape != (v.shape[0], 2) or uv_.dtype.kind != "f":
        raise ShapeError(f"uv must be ({v.shape[0]}, 2) float, got {validate.describe(uv_)}")
    parts = np.asarray(face_parts)
    if parts.shape != (f.shape[0],) or parts.dtype != np.uint8:
        raise ShapeError(f"face_parts must be ({f.shape[0]},) uint8, got {validate.describe(parts)}")
    tri, bary, uv_img, parts_img = cpu.render(v, f, hw, bool(cull_backfaces), np.ascontiguousarray(uv_),
                                              np.ascontiguousarray(parts), n_threads)
    return Raster(triangle=tri, bary=bary), uv_img, parts_img
