"""The rasterizer written plainly: the oracle the fast CPU path must equal bit for bit.

`rasterize` applies the rules of `densereg_data.raster.api` (its module docstring holds them) with
the same arithmetic as the numba kernels (`fast`, `coverage`, `float64`), and nothing else: it
tests every pixel centre of every triangle's box, and keeps per pixel the smallest key. The steps
are vectorized over the samples of a batch of triangles with numpy; there are no other tricks.

Fixed point (every vertex within `FIXED_POINT_LIMIT_PX` of the origin):
  1. snap x, y to int (times 256, rounded half to even); depth to float32;
  2. the samples of a triangle: the pixel centres of its snapped bounding box, clipped to the image;
  3. at each, the exact int64 edge function w_k of the edge opposite vertex k, times the sign s of
     twice the area ``(x1-x0)(y2-y0) - (y1-y0)(x2-x0)``, so that w_k > 0 inside;
  4. covered: w_k >= b_k for k = 0, 1, 2, the top-left bias b_k being 0 where the edge's interior
     normal points to +x (or, on a horizontal edge, to +y) and 1 elsewhere; drawn: area != 0 and,
     with `cull`, area < 0;
  5. depth in float64, A = |area|: ``(w0 z0 + w1 z1 + w2 z2) / A`` when the box holds one pixel
     centre, else ``w0 (z0 / A) + w1 (z1 / A) + w2 (z2 / A)`` (the rounding each stage of the fast
     path has);
  6. key = (float32 depth bits made monotonic) << 32 | triangle: the smallest wins, so equal depths
     keep the lower triangle index;
  7. barycentrics of the winner: float32(w_k * (1 / A)).
Float64 (a vertex beyond it): the same on unsnapped vertices, with the edge functions evaluated from
each edge's lower end (so shared edges agree) and the depth rounded to float32 and compared as a
float (-0 equals +0, NaN never wins); barycentrics are then recomputed at each pixel centre from the
vertices and clamped to >= 0 (`_resolve_bary`).
"""

from __future__ import annotations

import numpy as np

from densereg_data.raster.constants import FIXED_POINT_LIMIT_PX, SUBPIXEL_BITS

#: Samples per batch of triangles (memory: a few dozen arrays of this many elements).
BATCH = 1 << 18
NO_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)


def rasterize(verts: np.ndarray, faces: np.ndarray, size: tuple[int, int], cull: bool) -> tuple[np.ndarray, np.ndarray]:
    """verts (V, 3) float, finite, (x, y, depth) pixels; faces (F, 3) int, indices in [0, V);
    size (height, width). Returns (triangle (H, W) int32, -1 = background; bary (H, W, 3) float32)."""
    with np.errstate(all="ignore"):  # inf and NaN depths follow the rules, as in the kernels
        return _rasterize(np.asarray(verts, dtype=np.float64), faces, size, cull)


def _rasterize(v, faces, size, cull):
    far = bool(np.any(np.abs(v[:, :2]) >= FIXED_POINT_LIMIT_PX))
    if far:
        xy, z = v[:, :2], v[:, 2]
    else:  # step 1
        xy = np.rint(v[:, :2] * (1 << SUBPIXEL_BITS)).astype(np.int64)
        z = v[:, 2].astype(np.float32).astype(np.float64)
    h, w = size
    X, Y, Z = xy[faces, 0], xy[faces, 1], z[faces]  # (F, 3) each
    c0, c1 = _centre_span(X, w - 1, far)  # step 2
    r0, r1 = _centre_span(Y, h - 1, far)
    n_cols, n_rows = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
    area = (X[:, 1] - X[:, 0]) * (Y[:, 2] - Y[:, 0]) - (Y[:, 1] - Y[:, 0]) * (X[:, 2] - X[:, 0])
    count = np.where((area != 0) & ~(cull & (area > 0)), n_cols * n_rows, 0)  # samples; 0 if not drawn
    key = np.full(h * w, NO_KEY)
    bary = np.zeros((h * w, 3), dtype=np.float32)
    for lo, hi in _batches(count):
        t = np.repeat(np.arange(lo, hi), count[lo:hi])  # the triangle of each sample
        k = np.arange(t.size) - np.repeat(np.cumsum(count[lo:hi]) - count[lo:hi], count[lo:hi])  # its rank
        c, r = c0[t] + k % n_cols[t], r0[t] + k // n_cols[t]  # through the box row by row
        fragments = _fragments_float if far else _fragments_fixed
        inside, depth, weights = fragments(X[t], Y[t], Z[t], area[t], c, r, n_cols[t] * n_rows[t] == 1)
        t, p, weights = t[inside], (r * w + c)[inside], weights[inside]
        new = (_monotonic(depth[inside]) << np.uint64(32)) | t.astype(np.uint64)  # step 6
        np.minimum.at(key, p, new)  # the z-buffer: per pixel the smallest key so far
        won = new == key[p]  # this batch's winners (a key names its triangle: one per pixel)
        bary[p[won]] = weights[won]
    tri = np.where(key == NO_KEY, -1, (key & np.uint64(0xFFFFFFFF)).astype(np.int64)).astype(np.int32)
    if far:
        bary = _resolve_bary(v, faces, tri.reshape(h, w))
    bary[tri < 0] = 0.0
    return tri.reshape(h, w), bary.reshape(h, w, 3)


def _batches(count: np.ndarray):
    """(lo, hi): ranges of triangles of about `BATCH` samples in all (at least one triangle each)."""
    ends, lo = np.cumsum(count), 0
    while lo < len(count):
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo] - count[lo] + BATCH, "right")))
        yield lo, hi
        lo = hi


def _centre_span(a: np.ndarray, top: int, far: bool) -> tuple[np.ndarray, np.ndarray]:
    """First and last pixel centre (int64) within [min, max] of each row of a (F, 3), clipped to
    [0, top]; first > last when none."""
    if far:
        first = np.minimum(np.maximum(np.ceil(a.min(1)), 0.0), top + 1.0).astype(np.int64)
        return first, np.maximum(np.minimum(np.floor(a.max(1)), float(top)), -1.0).astype(np.int64)
    one = 1 << SUBPIXEL_BITS
    return np.maximum((a.min(1) + (one - 1)) >> SUBPIXEL_BITS, 0), np.minimum(a.max(1) >> SUBPIXEL_BITS, top)


def _fragments_fixed(X, Y, Z, area, c, r, one_pixel):
    """Steps 3-5 and 7 at the samples (c, r) of their triangles (X, Y (N, 3) int64 snapped, Z (N, 3)):
    (covered (N,) bool, depth (N,) float64, barycentrics (N, 3) float32)."""
    s = np.where(area > 0, 1, -1)
    px, py = c << SUBPIXEL_BITS, r << SUBPIXEL_BITS
    covered = np.ones(c.shape, bool)
    wk = []
    for k in range(3):  # the edge opposite vertex k runs from vertex a to vertex b
        a, b = (k + 1) % 3, (k + 2) % 3
        dx, dy = s * (X[:, b] - X[:, a]), s * (Y[:, b] - Y[:, a])
        wk.append(s * ((X[:, b] - X[:, a]) * (py - Y[:, a]) - (Y[:, b] - Y[:, a]) * (px - X[:, a])))
        bias = ~((dy < 0) | ((dy == 0) & (dx > 0)))  # top-left rule
        covered &= wk[k] >= bias.astype(np.int64)
    w0, w1, w2 = (x.astype(np.float64) for x in wk)
    size = np.abs(area).astype(np.float64)
    inv = 1.0 / size
    depth = np.where(one_pixel, (w0 * Z[:, 0] + w1 * Z[:, 1] + w2 * Z[:, 2]) / size,
                     w0 * (Z[:, 0] * inv) + w1 * (Z[:, 1] * inv) + w2 * (Z[:, 2] * inv))
    return covered, depth, np.stack([w0 * inv, w1 * inv, w2 * inv], 1).astype(np.float32)


def _fragments_float(X, Y, Z, area, c, r, one_pixel):
    """`_fragments_fixed` on unsnapped float64 vertices; the depth (float32, -0 made +0) is the
    key's; NaN and +inf depths are never covered (a float z-buffer starting at +inf keeps neither)."""
    s = np.where(area > 0, 1.0, -1.0)
    px, py = c.astype(np.float64), r.astype(np.float64)
    covered = np.ones(c.shape, bool)
    wk = []
    for k in range(3):
        a, b = (k + 1) % 3, (k + 2) % 3
        up = (Y[:, a] < Y[:, b]) | ((Y[:, a] == Y[:, b]) & (X[:, a] < X[:, b]))  # from the lower end
        ox, oy = np.where(up, X[:, a], X[:, b]), np.where(up, Y[:, a], Y[:, b])
        dx = np.where(up, X[:, b] - X[:, a], X[:, a] - X[:, b])
        dy = np.where(up, Y[:, b] - Y[:, a], Y[:, a] - Y[:, b])
        g = np.where(up, 1.0, -1.0) * s
        wk.append(g * (dx * (py - oy) - dy * (px - ox)))
        top_left = (-g * dy > 0.0) | ((dy == 0.0) & (g * dx > 0.0))
        covered &= ~((wk[k] < 0.0) | ((wk[k] == 0.0) & ~top_left))
    depth = ((wk[0] * Z[:, 0] + wk[1] * Z[:, 1] + wk[2] * Z[:, 2]) * (1.0 / (s * area))).astype(np.float32)
    covered &= depth < np.inf  # also False for NaN
    return covered, depth + np.float32(0.0), np.zeros((c.size, 3), np.float32)


def _monotonic(depth: np.ndarray) -> np.ndarray:
    """float32 depths -> uint64 whose order is the depths' (negative ones bit-flipped, -0 < +0)."""
    bits = depth.astype(np.float32).view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)


def _resolve_bary(v: np.ndarray, faces: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentrics (H*W, 3) float32 at the pixel centres of tri (H, W) (0 on background), from the
    float64 vertices; a centre just outside its triangle gets weights clamped to >= 0, renormalized."""
    out = np.zeros((tri.size, 3), np.float32)
    r, c = np.nonzero(tri >= 0)
    f = faces[tri[r, c]]
    X, Y, px, py = v[f, 0], v[f, 1], c.astype(np.float64), r.astype(np.float64)
    edges = ((1, 2), (2, 0), (0, 1))  # the edge opposite vertex k, from vertex i to vertex j
    b = [(X[:, j] - X[:, i]) * (py - Y[:, i]) - (Y[:, j] - Y[:, i]) * (px - X[:, i]) for i, j in edges]
    inv = 1.0 / (b[0] + b[1] + b[2])
    b = [x * inv for x in b]
    outside = (b[0] < 0.0) | (b[1] < 0.0) | (b[2] < 0.0)
    clamped = [np.where(0.0 > x, 0.0, x) for x in b]  # Python's max(x, 0.0), as in the kernel (-0 stays)
    inv = 1.0 / (clamped[0] + clamped[1] + clamped[2])
    out[r * tri.shape[1] + c] = np.stack([np.where(outside, x * inv, y) for x, y in zip(clamped, b)], 1)
    return out


def interpolate(faces: np.ndarray, attribute: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per-vertex attribute (V, C) -> (H, W, C) float32 through a raster, 0 on background: the
    float32 barycentrics times the attribute in float64, summed vertex 0, 1, 2 in that order."""
    fg = tri >= 0
    f = faces[tri[fg]]
    b = bary[fg].astype(np.float64)
    a = np.asarray(attribute, dtype=np.float64)
    out = np.zeros(tri.shape + (a.shape[1],), np.float32)
    out[fg] = b[:, 0:1] * a[f[:, 0]] + b[:, 1:2] * a[f[:, 1]] + b[:, 2:3] * a[f[:, 2]]
    return out
