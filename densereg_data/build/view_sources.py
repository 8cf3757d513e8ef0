"""Where a view's pixels come from in the photo (`densereg_data.build.views`): per-model facts (the
mirror vertex of each vertex, the pivot, the vertices that anchor the background), the visibility
tests of points against a raster, and the bilinear sampler of the source image (`sample_image`, with
its numpy oracle `sample_image_reference`).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ModelFacts", "model_facts", "neighbours", "surface_at", "unoccluded", "sample_image", "sample_image_reference",
           "DEPTH_TOLERANCE", "VERTEX_REACH", "LANDMARK_REACH", "INNER_SPACING"]

#: Visibility tests, x the template's eye distance: the depth tolerance (about 1.7 mm for menpo3d),
#: and how close the surface seen at a point's pixel must come to it in 3D to count as the point
#: itself (so a point on a steep stretch of surface near a silhouette is not hidden by its own
#: neighbourhood): a vertex about 4 mm, a landmark about 9 mm, while an occluder such as the nose lies
#: 20-50 mm from the eye and mouth corners it hides.
DEPTH_TOLERANCE = 0.02
VERTEX_REACH = 0.05
LANDMARK_REACH = 0.1
#: Background anchors inside the face, at the face's own seen vertices about this far apart (x eye
#: distance): what shows through the mesh's holes (an open mouth) moves with the face.
INNER_SPACING = 0.12


# ----------------------------------------------------------------------------------------------------
# sampling the source image


def sample_image_reference(image: np.ndarray, xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, 3) uint8 of `image` (h, w, 3) uint8 at the points `affine` (2, 3) maps
    `xy` (n, 2) to, rounded half up; black beyond the image's outer pixel edges (as `warp_crop` pads a
    crop), edge-replicated within them; plain numpy, the oracle of `sample_image` (same float64
    arithmetic in the same order)."""
    h, w = image.shape[:2]
    x = affine[0, 0] * xy[:, 0] + affine[0, 1] * xy[:, 1] + affine[0, 2]
    y = affine[1, 0] * xy[:, 0] + affine[1, 1] * xy[:, 1] + affine[1, 2]
    outside = ~((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5))  # NaN too
    x = np.minimum(np.maximum(np.nan_to_num(x, nan=0.0), 0.0), w - 1.0)
    y = np.minimum(np.maximum(np.nan_to_num(y, nan=0.0), 0.0), h - 1.0)
    fx, fy = x - np.floor(x), y - np.floor(y)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    out = np.empty((len(x), 3), np.uint8)
    for c in range(3):
        top = image[y0, x0, c] * (1.0 - fx) + image[y0, x1, c] * fx
        bottom = image[y1, x0, c] * (1.0 - fx) + image[y1, x1, c] * fx
        out[:, c] = np.minimum(np.floor(top * (1.0 - fy) + bottom * fy + 0.5), 255.0)
    out[outside] = 0
    return out


@functools.cache
def _sample_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(image, xy, affine, out):  # pragma: no cover - numba
        h, w = image.shape[0], image.shape[1]
        for i in range(xy.shape[0]):
            x = affine[0, 0] * xy[i, 0] + affine[0, 1] * xy[i, 1] + affine[0, 2]
            y = affine[1, 0] * xy[i, 0] + affine[1, 1] * xy[i, 1] + affine[1, 2]
            if not (x >= -0.5 and x <= w - 0.5 and y >= -0.5 and y <= h - 0.5):  # beyond the image: black
                for c in range(3):
                    out[i, c] = 0
                continue
            if not x == x:
                x = 0.0
            if not y == y:
                y = 0.0
            x = min(max(x, 0.0), w - 1.0)
            y = min(max(y, 0.0), h - 1.0)
            fx, fy = x - np.floor(x), y - np.floor(y)
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            for c in range(3):
                top = image[y0, x0, c] * (1.0 - fx) + image[y0, x1, c] * fx
                bottom = image[y1, x0, c] * (1.0 - fx) + image[y1, x1, c] * fx
                out[i, c] = np.uint8(min(np.floor(top * (1.0 - fy) + bottom * fy + 0.5), 255.0))

    return kernel


def sample_image(image: np.ndarray, xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """`sample_image_reference`, compiled (numba): (n, 3) uint8."""
    out = np.empty((len(xy), 3), np.uint8)
    _sample_kernel()(np.ascontiguousarray(image), np.ascontiguousarray(xy, np.float64),
                     np.ascontiguousarray(affine, np.float64), out)
    return out


# ----------------------------------------------------------------------------------------------------
# per model


@dataclass(frozen=True, eq=False)
class ModelFacts:
    """What every face of one model shares: mirror (V,) int64 vertex at (-x, y, z), None when the
    template is not symmetric; pivot (3,) template frame; the visibility tests' tolerance, reach and
    landmark_reach (template units); edges (E, 2) int64 and their median length; normals (V, 3) unit
    vertex normals of the template (for the grazing test; a fitted face's differ little); outline
    (n,) int64 the vertices of the template's 3D convex hull (those that can outline a projection);
    inner (m,) int64 vertices spread over the surface, one per `INNER_SPACING` cube."""

    mirror: np.ndarray | None
    pivot: np.ndarray
    tolerance: float
    reach: float
    landmark_reach: float
    edges: np.ndarray
    edge_length: float
    normals: np.ndarray
    outline: np.ndarray
    inner: np.ndarray


_FACTS: "weakref.WeakKeyDictionary[Any, ModelFacts]" = weakref.WeakKeyDictionary()


def model_facts(model) -> ModelFacts:
    """The `ModelFacts` of a `FaceModel`, computed once per model object."""
    facts = _FACTS.get(model)
    if facts is None:
        from scipy.spatial import ConvexHull, cKDTree

        t = model.template
        v, f = np.asarray(t.vertices, np.float64), np.asarray(t.faces, np.int64)
        eye = float(t.eye_distance)
        dist, mirror = cKDTree(v).query(v * np.array([-1.0, 1.0, 1.0]))
        symmetric = float(np.median(dist)) < 0.02 * eye
        reach = np.abs(v[:, 0]) >= 0.95 * np.abs(v[:, 0]).max()
        pivot = np.array([0.0, v[reach, 1].mean(), v[reach, 2].mean()])
        edges = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)
        length = float(np.median(np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)))
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        normals = np.zeros_like(v)
        for k in range(3):
            for c in range(3):
                normals[:, c] += np.bincount(f[:, k], n[:, c], minlength=len(v))
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        facts = _FACTS[model] = ModelFacts(
            mirror=mirror.astype(np.int64) if symmetric else None, pivot=pivot, tolerance=DEPTH_TOLERANCE * eye,
            reach=VERTEX_REACH * eye, landmark_reach=LANDMARK_REACH * eye, edges=edges, edge_length=length,
            normals=normals, outline=np.sort(ConvexHull(v).vertices).astype(np.int64),
            inner=np.sort(np.unique(np.floor(v / (INNER_SPACING * eye)).astype(np.int64), axis=0,
                                    return_index=True)[1]).astype(np.int64))
    return facts


# ----------------------------------------------------------------------------------------------------
# visibility


def neighbours(shape: tuple[int, int], xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (n, 4) of the four pixels around each point of `xy` (n, 2), edge-clamped."""
    h, w = shape
    x0 = np.clip(np.floor(xy[:, 0]).astype(np.intp), 0, w - 1)
    y0 = np.clip(np.floor(xy[:, 1]).astype(np.intp), 0, h - 1)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    return np.stack([y0, y0, y1, y1], axis=1), np.stack([x0, x1, x0, x1], axis=1)


def surface_at(raster, faces: np.ndarray, attribute: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``interpolate(raster, faces, attribute)[rows, cols]`` (the same float32 values, +inf on
    background) at a few pixels, without interpolating the whole image. attribute: (V, C)."""
    from densereg_data.raster.api import interpolate

    if rows.size * 8 > raster.triangle.size:  # many pixels: the whole image is cheaper
        image = interpolate(raster, faces, attribute)
        image[~raster.mask] = np.inf
        return image[rows, cols]
    tri = raster.triangle[rows, cols]
    corner = faces[np.maximum(tri, 0)]  # (..., 3)
    bary = raster.bary[rows, cols].astype(np.float64)
    a = np.asarray(attribute, np.float64)
    out = (bary[..., 0:1] * a[corner[..., 0]] + bary[..., 1:2] * a[corner[..., 1]]
           + bary[..., 2:3] * a[corner[..., 2]]).astype(np.float32)  # interpolate's arithmetic
    out[tri < 0] = np.inf
    return out


def unoccluded(raster, faces: np.ndarray, vertices: np.ndarray, surface: np.ndarray, points: np.ndarray,
                at: np.ndarray, tolerance: float, reach) -> np.ndarray:
    """(n,) bool: nothing of the mesh lies in front of each of `points`.

    raster: of the mesh `faces` with `vertices` (V, 3) px (depth smaller nearer); surface: (V, 3) the
    same vertices in the template frame; points: (n, 3) px (x, y, depth) of the points tested, at:
    (n, 3) their template positions. A point is unoccluded when, at one of the four pixels around it,
    the visible surface is not nearer than its depth - `tolerance` (px), or lies within `reach`
    (template units; a number or (n,)) of it, or that pixel is background.
    """
    rows, cols = neighbours(raster.triangle.shape, points)
    if rows.size * 8 > raster.triangle.size:  # many points: the depth image's 2 x 2 maxima, one read each
        from densereg_data.raster.api import interpolate

        z = interpolate(raster, faces, vertices[:, 2])
        z[~raster.mask] = np.inf
        z = np.pad(z, ((0, 1), (0, 1)), mode="edge")
        front = np.maximum(np.maximum(z[:-1, :-1], z[:-1, 1:]), np.maximum(z[1:, :-1], z[1:, 1:]))[rows[:, 0], cols[:, 0]]
    else:
        front = surface_at(raster, faces, vertices[:, 2:3], rows, cols)[..., 0].max(axis=1)  # (n,)
    ok = points[:, 2] <= front + tolerance
    rest = np.flatnonzero(~ok)
    if rest.size:
        where = surface_at(raster, faces, surface, rows[rest], cols[rest])  # (r, 4, 3)
        reach = np.broadcast_to(reach, len(points))[rest, None]
        ok[rest] = (np.linalg.norm(where - at[rest, None, :], axis=2) <= reach).any(axis=1)
    return ok
