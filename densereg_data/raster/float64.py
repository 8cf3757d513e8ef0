"""The float64 z-buffer for far vertices, and barycentrics at pixel centres from float64 vertices.

`densereg_data.raster.cpu` takes this path when a vertex lies beyond `FIXED_POINT_LIMIT_PX`, where
the snapped int64 edge functions of `fast` could overflow: `zbuffer_float` draws the unsnapped
vertices with the same conventions (`densereg_data.raster.api`'s module docstring), its edge
functions evaluated in a canonical vertex order (`_edge`) so that shared edges stay watertight, and
`resolve_bary` then computes each pixel's barycentrics. `resolve_bary` also completes the
triangle-index images the GPU backend draws.
"""

from __future__ import annotations

import numpy as np

from densereg_data.raster.coverage import drawn
from densereg_data.raster.jit import kernel


@kernel(inline="always")
def _edge(xa, ya, xb, yb):  # pragma: no cover - numba
    """Canonical form of edge a->b: (origin x, origin y, dx, dy, sign) with E_ab = sign * E_canon."""
    if ya < yb or (ya == yb and xa < xb):
        return xa, ya, xb - xa, yb - ya, 1.0
    return xb, yb, xa - xb, ya - yb, -1.0


@kernel(inline="always")
def _coords(verts, i0, i1, i2, axis):  # pragma: no cover - numba
    """Coordinate `axis` (0 x, 1 y, 2 depth) of vertices i0, i1, i2, as float64."""
    return np.float64(verts[i0, axis]), np.float64(verts[i1, axis]), np.float64(verts[i2, axis])


@kernel(inline="always")
def _centre_span(a0, a1, a2, top):  # pragma: no cover - numba
    """First and last integer (pixel centre) in [min, max] of three coordinates, clipped to [0, top]."""
    return max(np.ceil(min(a0, a1, a2)), 0.0), min(np.floor(max(a0, a1, a2)), np.float64(top))


@kernel
def zbuffer_float(verts, faces, height, width, cull, tri, depth):  # pragma: no cover - numba
    """Exact float64 fallback for far vertices; tri, depth (H, W). Returns -1 or a bad face index."""
    for r in range(height):
        for c in range(width):
            tri[r, c] = -1
            depth[r, c] = np.inf
    nv = verts.shape[0]
    wmax = width - 1
    hmax = height - 1
    for t in range(faces.shape[0]):
        i0 = faces[t, 0]
        i1 = faces[t, 1]
        i2 = faces[t, 2]
        if i0 < 0 or i0 >= nv or i1 < 0 or i1 >= nv or i2 < 0 or i2 >= nv:
            return t
        x0, x1, x2 = _coords(verts, i0, i1, i2, 0)
        c0, c1 = _centre_span(x0, x1, x2, wmax)
        if c0 > c1:
            continue
        y0, y1, y2 = _coords(verts, i0, i1, i2, 1)
        r0, r1 = _centre_span(y0, y1, y2, hmax)
        if r0 > r1:
            continue
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if not drawn(area, cull):
            continue
        s = 1.0 if area > 0.0 else -1.0
        inv = 1.0 / (s * area)
        z0, z1, z2 = _coords(verts, i0, i1, i2, 2)
        # edge k is opposite vertex k; w_k = s * E(edge k) > 0 inside
        ax0, ay0, dx0, dy0, g0 = _edge(x1, y1, x2, y2)
        ax1, ay1, dx1, dy1, g1 = _edge(x2, y2, x0, y0)
        ax2, ay2, dx2, dy2, g2 = _edge(x0, y0, x1, y1)
        g0 *= s
        g1 *= s
        g2 *= s
        # top-left: keep w == 0 when the interior normal g * (-dy, dx) points to +x, or to +y
        tl0 = (-g0 * dy0 > 0.0) or (dy0 == 0.0 and g0 * dx0 > 0.0)
        tl1 = (-g1 * dy1 > 0.0) or (dy1 == 0.0 and g1 * dx1 > 0.0)
        tl2 = (-g2 * dy2 > 0.0) or (dy2 == 0.0 and g2 * dx2 > 0.0)
        for r in range(int(r0), int(r1) + 1):
            py = np.float64(r)
            for c in range(int(c0), int(c1) + 1):
                px = np.float64(c)
                w0 = g0 * (dx0 * (py - ay0) - dy0 * (px - ax0))
                if w0 < 0.0 or (w0 == 0.0 and not tl0):
                    continue
                w1 = g1 * (dx1 * (py - ay1) - dy1 * (px - ax1))
                if w1 < 0.0 or (w1 == 0.0 and not tl1):
                    continue
                w2 = g2 * (dx2 * (py - ay2) - dy2 * (px - ax2))
                if w2 < 0.0 or (w2 == 0.0 and not tl2):
                    continue
                z = np.float32((w0 * z0 + w1 * z1 + w2 * z2) * inv)
                if z < depth[r, c]:
                    depth[r, c] = z
                    tri[r, c] = t
    return -1


@kernel(inline="always")
def _bary_at(verts, i0, i1, i2, px, py):  # pragma: no cover - numba
    """Barycentrics of (px, py) in triangle (i0, i1, i2): clamped >= 0, summing to 1."""
    x0 = np.float64(verts[i0, 0])
    y0 = np.float64(verts[i0, 1])
    x1 = np.float64(verts[i1, 0])
    y1 = np.float64(verts[i1, 1])
    x2 = np.float64(verts[i2, 0])
    y2 = np.float64(verts[i2, 1])
    b0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    b1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    b2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    inv = 1.0 / (b0 + b1 + b2)
    b0 *= inv
    b1 *= inv
    b2 *= inv
    if (b0 < 0.0) | (b1 < 0.0) | (b2 < 0.0):  # pixel centre on or just past an edge
        b0 = max(b0, 0.0)
        b1 = max(b1, 0.0)
        b2 = max(b2, 0.0)
        inv = 1.0 / (b0 + b1 + b2)
        b0 *= inv
        b1 *= inv
        b2 *= inv
    return b0, b1, b2


@kernel
def resolve_bary(verts, faces, tri, bary):  # pragma: no cover - numba
    """Fill bary (H, W, 3) float32 from tri."""
    height, width = tri.shape
    for r in range(height):
        py = np.float64(r)
        for c in range(width):
            t = tri[r, c]
            if t < 0:
                bary[r, c, 0] = 0.0
                bary[r, c, 1] = 0.0
                bary[r, c, 2] = 0.0
                continue
            b0, b1, b2 = _bary_at(verts, faces[t, 0], faces[t, 1], faces[t, 2], np.float64(c), py)
            bary[r, c, 0] = b0
            bary[r, c, 1] = b1
            bary[r, c, 2] = b2
