"""The CPU backend's numba kernels: fixed-point z-buffer, final pass, float64 fallback, interpolation.

`densereg_data.raster` validates inputs, allocates outputs and calls these; its module docstring
holds the conventions they implement (pixel centres, depth and visibility, the top-left fill rule,
winding, barycentrics). Nothing here checks its inputs: every kernel expects the validated,
contiguous arrays `raster` hands it, and reports bad face indices by returning them.

The hot path (`raster._zbuffer_checked`): `snap` the vertices to fixed point, `zbuffer_fixed` keeps
per pixel the nearest triangle's key and barycentrics (chunks of triangles: gather, vectorized triage
`_classify` and coverage `_cover`, scalar depth tests), `finish` turns keys into triangle indices and
fills U-V and parts. The vectorized kernels read only contiguous chunk arrays and keep their stores out
of the way (numba cannot tell LLVM that arrays do not alias, and LLVM vectorizes no loop that loads
through an index array and stores). Far vertices take `zbuffer_float`, then `resolve_bary` per
pixel. `interpolate_into` and `face_labels_into` read any per-vertex or per-face data through a
finished raster (U-V and parts on the far-vertex path too).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _trailing_zeros_portable(word):  # pragma: no cover - numba
    """Index of the lowest set bit of a non-zero integer (a loop; the fallback of `trailing_zeros`)."""
    n = 0
    while not (word >> n) & 1:
        n += 1
    return n


try:  # one tzcnt instruction, from numba's internals (not its documented API): keep the fallback
    from numba.cpython.unsafe.numbers import trailing_zeros
except ImportError:  # pragma: no cover - a numba that moved it
    trailing_zeros = _trailing_zeros_portable


@numba.njit(cache=True, nogil=True)
def all_finite(a):  # pragma: no cover - numba
    flat = a.ravel()
    for i in range(flat.size):
        x = flat[i]
        if not (x - x == 0.0):  # NaN or inf
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _edge(xa, ya, xb, yb):  # pragma: no cover - numba
    """Canonical form of edge a->b: (origin x, origin y, dx, dy, sign) with E_ab = sign * E_canon."""
    if ya < yb or (ya == yb and xa < xb):
        return xa, ya, xb - xa, yb - ya, 1.0
    return xb, yb, xa - xb, ya - yb, -1.0


#: Vertices are snapped to 1/256 pixel for the integer z-buffer (as GPUs do).
SUBPIXEL_BITS = 8
_ONE = 1 << SUBPIXEL_BITS
#: Farther than this from the origin (pixels) the snapped edge functions could overflow int64;
#: meshes with such vertices take the slower float64 path `zbuffer_float` (same conventions).
FIXED_POINT_LIMIT_PX = float(1 << 22)


@numba.njit(cache=True, nogil=True)
def snap(verts, fx, fy, fz):  # pragma: no cover - numba
    """(x, y) -> int32 fixed point (x 256, rounded half to even) in fx, fy; depth -> float32 fz.

    Returns 0 (ok), 1 (a vertex beyond FIXED_POINT_LIMIT_PX) or 2 (a non-finite value).
    """
    status = 0
    for i in range(verts.shape[0]):
        x = np.float64(verts[i, 0])
        y = np.float64(verts[i, 1])
        z = np.float64(verts[i, 2])
        if not ((x - x == 0.0) and (y - y == 0.0) and (z - z == 0.0)):
            return 2
        if abs(x) >= FIXED_POINT_LIMIT_PX or abs(y) >= FIXED_POINT_LIMIT_PX:
            status = 1
            continue
        fx[i] = np.int32(np.rint(x * _ONE))
        fy[i] = np.int32(np.rint(y * _ONE))
        fz[i] = np.float32(z)
    return status


@numba.njit(cache=True, nogil=True)
def faces_in_range(faces, n_vertices):  # pragma: no cover - numba
    """-1 when every index is in [0, n_vertices), else the first bad face."""
    for t in range(faces.shape[0]):
        i0 = faces[t, 0]
        i1 = faces[t, 1]
        i2 = faces[t, 2]
        if (i0 < 0) | (i0 >= n_vertices) | (i1 < 0) | (i1 >= n_vertices) | (i2 < 0) | (i2 >= n_vertices):
            return t
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _depth_key(z, t):  # pragma: no cover - numba
    """uint64 key ordered as (depth, triangle index): float32 depth bits made monotonic, then t."""
    bits = np.uint32(np.float32(z).view(np.uint32))
    bits = bits ^ np.uint32(0xFFFFFFFF) if bits & np.uint32(0x80000000) else bits | np.uint32(0x80000000)
    return (np.uint64(bits) << np.uint64(32)) | np.uint64(t)


@numba.njit(cache=True, nogil=True, inline="always")
def _edges(x0, y0, x1, y1, x2, y2, px, py):  # pragma: no cover - numba
    """Snapped edge functions of triangle (x0, y0), (x1, y1), (x2, y2) at the sample (px, py), all
    int64 fixed point.

    Returns (area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2): area = twice the signed area,
    (x1-x0)(y2-y0) - (y1-y0)(x2-x0); w_k = s E_k, with s = 1 if area > 0 else -1 and E_k the edge
    function of the edge opposite vertex k, so that w_k > 0 strictly inside; (dx_k, dy_k) = s times
    that edge's direction. The area is computed as E_0 + E_1 + E_2 (an identity of the integers).

    Exactness: fixed-point coordinates are below 2^30 in magnitude (`FIXED_POINT_LIMIT_PX` x 256),
    so every difference is below 2^31, every product below 2^62 and every edge function below 2^63:
    int64 holds them exactly. The partial sum E_0 + E_1 may wrap, but integer arithmetic wraps
    modulo 2^64 and the area itself is below 2^63, so the sum is still exact.
    """
    e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    area = e0 + e1 + e2
    m = np.int64(0) if area > 0 else np.int64(-1)  # s = 1 + 2m, and (v ^ m) - m is s * v
    return (area, (e0 ^ m) - m, (e1 ^ m) - m, (e2 ^ m) - m,
            ((x2 - x1) ^ m) - m, ((x0 - x2) ^ m) - m, ((x1 - x0) ^ m) - m,
            ((y2 - y1) ^ m) - m, ((y0 - y2) ^ m) - m, ((y1 - y0) ^ m) - m)


@numba.njit(cache=True, nogil=True, inline="always")
def _top_left_bias(dx, dy):  # pragma: no cover - numba
    """Top-left rule: on an edge (w == 0) a sample counts when the interior normal (-dy, dx) points
    to +x, or to +y; this bias b makes "w - b >= 0" the inside test."""
    return np.int64(not ((dy < 0) | ((dy == 0) & (dx > 0))))


@numba.njit(cache=True, nogil=True, inline="always")
def _box(x0, x1, x2, y0, y1, y2, wmax, hmax):  # pragma: no cover - numba
    """The pixel centres (c0..c1, r0..r1) of a snapped triangle's bounding box, clipped to the image;
    empty when c0 > c1 or r0 > r1."""
    c0 = max((min(x0, x1, x2) + (_ONE - 1)) >> SUBPIXEL_BITS, 0)
    c1 = min(max(x0, x1, x2) >> SUBPIXEL_BITS, wmax)
    r0 = max((min(y0, y1, y2) + (_ONE - 1)) >> SUBPIXEL_BITS, 0)
    r1 = min(max(y0, y1, y2) >> SUBPIXEL_BITS, hmax)
    return c0, c1, r0, r1


@numba.njit(cache=True, nogil=True, inline="always")
def _win(key, bary, k, t, z, w0, w1, w2, inv):  # pragma: no cover - numba
    """Depth test at flat pixel k: keep (z, t) if its key is the smallest so far, with its barycentrics
    (the exact edge functions times inv = 1 / twice the area)."""
    new = _depth_key(z, t)
    if new < key[k]:
        key[k] = new
        bary[3 * k] = np.float32(np.float64(w0) * inv)
        bary[3 * k + 1] = np.float32(np.float64(w1) * inv)
        bary[3 * k + 2] = np.float32(np.float64(w2) * inv)


_NO_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)
#: Triangles per chunk of `zbuffer_fixed` (a multiple of 64): the chunk's packed coordinates (12 KiB
#: an array) stay in L1 cache from the gather to the scalar depth tests.
_CHUNK = 1024
#: A snapped x (or y) whose box holds no pixel centre: pads the last chunk.
_NO_HIT = 1


@numba.njit(cache=True, nogil=True, inline="always")
def _packed_triangle(xs, ys, j, wmax, hmax):  # pragma: no cover - numba
    """Triangle j packed as xs[3j:3j+3], ys[3j:3j+3] (snapped, int32): its pixel-centre box
    (c0, c1, r0, r1, clipped to [0, wmax] x [0, hmax]) and `_edges` at the box's first sample (c0, r0)."""
    x0 = np.int64(xs[3 * j])
    x1 = np.int64(xs[3 * j + 1])
    x2 = np.int64(xs[3 * j + 2])
    y0 = np.int64(ys[3 * j])
    y1 = np.int64(ys[3 * j + 1])
    y2 = np.int64(ys[3 * j + 2])
    c0, c1, r0, r1 = _box(x0, x1, x2, y0, y1, y2, wmax, hmax)
    area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = _edges(
        x0, y0, x1, y1, x2, y2, c0 << SUBPIXEL_BITS, r0 << SUBPIXEL_BITS)
    return c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2


@numba.njit(cache=True, nogil=True, inline="always")
def _pixel_steps(dx0, dx1, dx2, dy0, dy1, dy2):  # pragma: no cover - numba
    """How each edge function w_k changes per whole pixel: (sx0, sx1, sx2) along +x, (sy0, sy1, sy2) along +y."""
    return (-dy0 << SUBPIXEL_BITS, -dy1 << SUBPIXEL_BITS, -dy2 << SUBPIXEL_BITS,
            dx0 << SUBPIXEL_BITS, dx1 << SUBPIXEL_BITS, dx2 << SUBPIXEL_BITS)


@numba.njit(cache=True, nogil=True, inline="always")
def _first_sample(xs, ys, j, wmax, hmax):  # pragma: no cover - numba
    """`_packed_triangle` j, as what the coverage tests need: (drawn-independent) box size n_cols,
    n_rows, the signed area, e_k = w_k - b_k at the box's first sample (see `_top_left_bias`) and the
    whole-pixel steps of w_k."""
    c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = _packed_triangle(xs, ys, j, wmax, hmax)
    sx0, sx1, sx2, sy0, sy1, sy2 = _pixel_steps(dx0, dx1, dx2, dy0, dy1, dy2)
    return (c1 - c0 + 1, r1 - r0 + 1, area,
            w0 - _top_left_bias(dx0, dy0), w1 - _top_left_bias(dx1, dy1), w2 - _top_left_bias(dx2, dy2),
            sx0, sx1, sx2, sy0, sy1, sy2)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_coverage(e0, e1, e2, sx0, sx1, sx2, n_cols, in_box):  # pragma: no cover - numba
    """uint64 bits 0..3: sample dc = 0..3 of a box row is inside the triangle and the box (dc <
    n_cols and the row is in the box: in_box), given e_k = w_k - b_k at dc = 0 and the +x steps sx_k
    of w_k (see `_top_left_bias`). Written out, not looped, so that the loop around it vectorizes."""
    m0 = in_box & (0 < n_cols) & ((e0 | e1 | e2) >= 0)
    m1 = in_box & (1 < n_cols) & (((e0 + sx0) | (e1 + sx1) | (e2 + sx2)) >= 0)
    m2 = in_box & (2 < n_cols) & (((e0 + 2 * sx0) | (e1 + 2 * sx1) | (e2 + 2 * sx2)) >= 0)
    m3 = in_box & (3 < n_cols) & (((e0 + 3 * sx0) | (e1 + 3 * sx1) | (e2 + 3 * sx2)) >= 0)
    return np.uint64(m0) | (np.uint64(m1) << np.uint64(1)) | (np.uint64(m2) << np.uint64(2)) | (np.uint64(m3) << np.uint64(3))


@numba.njit(cache=True, nogil=True, inline="always")
def _row_coverage8(e0, e1, e2, sx0, sx1, sx2, n_cols, in_box):  # pragma: no cover - numba
    """`_row_coverage` for the samples dc = 0..7 of a row: uint64 bits 0..7."""
    return (_row_coverage(e0, e1, e2, sx0, sx1, sx2, n_cols, in_box)
            | _row_coverage(e0 + 4 * sx0, e1 + 4 * sx1, e2 + 4 * sx2, sx0, sx1, sx2, n_cols - 4, in_box) << np.uint64(4))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _classify(xs, ys, n_words, height, width, cull, one_bits, small_bits, big_bits):  # pragma: no cover - numba
    """Vectorized triage of a chunk: bit b of one_bits[i] = triangle 64 i + b of the chunk is drawn
    and covers the single pixel centre in its box; of small_bits[i] = its box holds more than one
    pixel centre and fits in 4 x 4; of big_bits[i] = its box is larger. xs, ys: (3 _CHUNK,) int32,
    the snapped vertices of the chunk's triangles in order. Branch-free and store-free inside a
    word, so LLVM vectorizes it (AVX2/AVX-512 where present). The tests are the exact int64 ones of
    the scalar code (`_box`, `_edges`, `_top_left_bias`), so the triage decides exactly what a
    per-triangle loop would."""
    wmax = width - 1
    hmax = height - 1
    for i in range(n_words):
        one_word = np.uint64(0)
        small_word = np.uint64(0)
        big_word = np.uint64(0)
        for b in range(64):
            c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = _packed_triangle(
                xs, ys, 64 * i + b, wmax, hmax)
            drawn = (area != 0) & ~(cull & (area > 0))
            inside = ((w0 - _top_left_bias(dx0, dy0)) | (w1 - _top_left_bias(dx1, dy1))
                      | (w2 - _top_left_bias(dx2, dy2))) >= 0
            one = (c0 == c1) & (r0 == r1)
            more = (c0 <= c1) & (r0 <= r1) & ~one
            big = (c1 - c0 >= 4) | (r1 - r0 >= 4)
            one_word |= np.uint64(one & drawn & inside) << np.uint64(b)
            small_word |= np.uint64(more & ~big) << np.uint64(b)
            big_word |= np.uint64(more & big) << np.uint64(b)
        one_bits[i] = one_word
        small_bits[i] = small_word
        big_bits[i] = big_word


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cover(xs, ys, n, height, width, cull, covered):  # pragma: no cover - numba
    """Vectorized coverage of boxes of up to 4 x 4 pixel centres: covered[j] bit 4 dr + dc = triangle
    j (vertices xs[3j:3j+3], ys[3j:3j+3], as in `_classify`) is drawn and covers the sample
    (c0 + dc, r0 + dr) of its box. Branch-free; exact int64 edge functions stepped by whole pixels
    from `_edges` at (c0, r0). (Slots past the box are computed too, and may wrap around in int64;
    they are masked out.)"""
    wmax = width - 1
    hmax = height - 1
    for j in range(n):
        n_cols, n_rows, area, e0, e1, e2, sx0, sx1, sx2, sy0, sy1, sy2 = _first_sample(xs, ys, j, wmax, hmax)
        mask = (_row_coverage(e0, e1, e2, sx0, sx1, sx2, n_cols, 0 < n_rows)
                | _row_coverage(e0 + sy0, e1 + sy1, e2 + sy2, sx0, sx1, sx2, n_cols, 1 < n_rows) << np.uint64(4)
                | _row_coverage(e0 + 2 * sy0, e1 + 2 * sy1, e2 + 2 * sy2, sx0, sx1, sx2, n_cols, 2 < n_rows) << np.uint64(8)
                | _row_coverage(e0 + 3 * sy0, e1 + 3 * sy1, e2 + 3 * sy2, sx0, sx1, sx2, n_cols, 3 < n_rows) << np.uint64(12))
        drawn = (area != 0) & ~(cull & (area > 0))
        covered[j] = mask if drawn else np.uint64(0)


#: `_cover8`'s mark for a drawn triangle whose box is larger than 8 x 8 (not a coverage mask: such
#: a box has more than 8 columns or rows, and its last column or row would be beyond bit 63).
_LARGER = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cover8(xs, ys, n, height, width, cull, covered):  # pragma: no cover - numba
    """`_cover` for boxes of up to 8 x 8: covered[j] bit 8 dr + dc; `_LARGER` for a drawn triangle
    whose box is larger."""
    wmax = width - 1
    hmax = height - 1
    for j in range(n):
        n_cols, n_rows, area, e0, e1, e2, sx0, sx1, sx2, sy0, sy1, sy2 = _first_sample(xs, ys, j, wmax, hmax)
        mask = np.uint64(0)
        for dr in range(8):  # unrolled by LLVM: the loop over j vectorizes
            mask |= _row_coverage8(e0 + dr * sy0, e1 + dr * sy1, e2 + dr * sy2, sx0, sx1, sx2, n_cols,
                                   dr < n_rows) << np.uint64(8 * dr)
        drawn = (area != 0) & ~(cull & (area > 0))
        larger = (n_cols > 8) | (n_rows > 8)
        covered[j] = (_LARGER if larger else mask) if drawn else np.uint64(0)


# Rows of the per-triangle table `_setup` fills (int64, `_ROW` entries a row): the flat index of the
# box's first sample, w_k there, the whole-pixel steps of w_k, and the box size.
_P0, _W0, _W1, _W2, _SX0, _SX1, _SX2, _SY0, _SY1, _SY2, _NCOLS, _NROWS, _AREA = range(13)
_N_FIELDS = 13
_ROW = _CHUNK + 4


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _setup(xs, ys, n, height, width, table):  # pragma: no cover - numba
    """Per-triangle constants of the depth tests, table[field * _ROW + j] (fields `_P0`...`_AREA`),
    for packed triangles j < n. Vectorized (the rows are at constant distances in one array, so LLVM
    needs no alias checks between them)."""
    wmax = width - 1
    hmax = height - 1
    for j in range(n):
        c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = _packed_triangle(xs, ys, j, wmax, hmax)
        table[_P0 * _ROW + j] = r0 * width + c0
        table[_W0 * _ROW + j] = w0
        table[_W1 * _ROW + j] = w1
        table[_W2 * _ROW + j] = w2
        table[_SX0 * _ROW + j] = -dy0 << SUBPIXEL_BITS
        table[_SX1 * _ROW + j] = -dy1 << SUBPIXEL_BITS
        table[_SX2 * _ROW + j] = -dy2 << SUBPIXEL_BITS
        table[_SY0 * _ROW + j] = dx0 << SUBPIXEL_BITS
        table[_SY1 * _ROW + j] = dx1 << SUBPIXEL_BITS
        table[_SY2 * _ROW + j] = dx2 << SUBPIXEL_BITS
        table[_NCOLS * _ROW + j] = c1 - c0 + 1
        table[_NROWS * _ROW + j] = r1 - r0 + 1
        table[_AREA * _ROW + j] = abs(area)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _depth_planes(zs, table, n, planes):  # pragma: no cover - numba
    """planes[k * _ROW + j] = z_k / area (k = 0, 1, 2) and planes[3 * _ROW + j] = 1 / area, twice
    the area being table's `_AREA` (0 gives inf; such a triangle is never drawn)."""
    for j in range(n):
        inv = 1.0 / np.float64(table[_AREA * _ROW + j])
        planes[j] = np.float64(zs[3 * j]) * inv
        planes[_ROW + j] = np.float64(zs[3 * j + 1]) * inv
        planes[2 * _ROW + j] = np.float64(zs[3 * j + 2]) * inv
        planes[3 * _ROW + j] = inv


@numba.njit(cache=True, nogil=True, inline="always")
def _test_sample(key, bary, table, planes, j, t, dc, dr, width):  # pragma: no cover - numba
    """Depth test of packed triangle j (triangle t) at the sample (c0 + dc, r0 + dr) of its box."""
    w0 = table[_W0 * _ROW + j] + dc * table[_SX0 * _ROW + j] + dr * table[_SY0 * _ROW + j]
    w1 = table[_W1 * _ROW + j] + dc * table[_SX1 * _ROW + j] + dr * table[_SY1 * _ROW + j]
    w2 = table[_W2 * _ROW + j] + dc * table[_SX2 * _ROW + j] + dr * table[_SY2 * _ROW + j]
    z = np.float64(w0) * planes[j] + np.float64(w1) * planes[_ROW + j] + np.float64(w2) * planes[2 * _ROW + j]
    _win(key, bary, table[_P0 * _ROW + j] + dr * width + dc, t, z, w0, w1, w2, planes[3 * _ROW + j])


@numba.njit(cache=True, nogil=True)
def _depth_tests_4x4(key, bary, table, planes, covered, tri, n, width):  # pragma: no cover - numba
    """Depth tests of the covered samples of packed triangles 0..n-1 (n a multiple of 4; triangle
    indices tri[j]), covered[j] a `_cover` mask. The masks of four triangles make one word, and one
    loop visits its set bits, so the loop's exit (a mispredicted branch) comes once in four triangles."""
    for i in range(0, n, 4):
        word = (covered[i] | (covered[i + 1] << np.uint64(16)) | (covered[i + 2] << np.uint64(32))
                | (covered[i + 3] << np.uint64(48)))
        while word:
            q = np.int64(trailing_zeros(word))
            word &= word - np.uint64(1)
            j = i + (q >> 4)
            _test_sample(key, bary, table, planes, j, tri[j], q & 3, (q >> 2) & 3, width)


@numba.njit(cache=True, nogil=True)
def _depth_tests_8x8(key, bary, table, planes, covered, tri, n, width):  # pragma: no cover - numba
    """`_depth_tests_4x4` for `_cover8` masks, one triangle a word; `_LARGER` ones are left to
    `_walk_larger`."""
    for j in range(n):
        word = covered[j]
        if word == _LARGER:
            continue
        while word:
            q = np.int64(trailing_zeros(word))
            word &= word - np.uint64(1)
            _test_sample(key, bary, table, planes, j, tri[j], q & 7, q >> 3, width)


@numba.njit(cache=True, nogil=True)
def _walk_larger(key, bary, table, planes, covered, tri, n, width):  # pragma: no cover - numba
    """Depth tests of the packed triangles marked `_LARGER`: each box row in 8-column coverage
    masks (`_row_coverage8`), then the set bits of each."""
    for j in range(n):
        if covered[j] != _LARGER:
            continue
        sx0 = table[_SX0 * _ROW + j]
        sx1 = table[_SX1 * _ROW + j]
        sx2 = table[_SX2 * _ROW + j]
        sy0 = table[_SY0 * _ROW + j]
        sy1 = table[_SY1 * _ROW + j]
        sy2 = table[_SY2 * _ROW + j]
        # top-left biases from the steps: sx = -dy << 8, sy = dx << 8 (`_top_left_bias`)
        e0 = table[_W0 * _ROW + j] - np.int64(not ((sx0 > 0) | ((sx0 == 0) & (sy0 > 0))))
        e1 = table[_W1 * _ROW + j] - np.int64(not ((sx1 > 0) | ((sx1 == 0) & (sy1 > 0))))
        e2 = table[_W2 * _ROW + j] - np.int64(not ((sx2 > 0) | ((sx2 == 0) & (sy2 > 0))))
        n_cols = table[_NCOLS * _ROW + j]
        for dr in range(table[_NROWS * _ROW + j]):
            for dc0 in range(0, n_cols, 8):
                word = _row_coverage8(e0 + dr * sy0 + dc0 * sx0, e1 + dr * sy1 + dc0 * sx1,
                                      e2 + dr * sy2 + dc0 * sx2, sx0, sx1, sx2, n_cols - dc0, True)
                while word:
                    dc = dc0 + np.int64(trailing_zeros(word))
                    word &= word - np.uint64(1)
                    _test_sample(key, bary, table, planes, j, tri[j], dc, dr, width)


@numba.njit(cache=True, nogil=True, inline="always")
def _set_bits(bits, n_words, out):  # pragma: no cover - numba
    """The positions of the set bits of bits[:n_words] into out, in order; their count."""
    n = 0
    for i in range(n_words):
        word = bits[i]
        while word:
            out[n] = 64 * i + np.int64(trailing_zeros(word))
            n += 1
            word &= word - np.uint64(1)
    return n


@numba.njit(cache=True, nogil=True)
def _pack(bits, n_words, xs, ys, zs, start, hits, p_xs, p_ys, p_zs, p_tri, pad_to):  # pragma: no cover - numba
    """Copy the chunk's triangles whose bit is set (vertices xs, ys, zs; triangle index start + j)
    into p_xs, p_ys, p_zs, p_tri; pad with empty boxes to a multiple of pad_to. Returns the padded count."""
    n = _set_bits(bits, n_words, hits)
    for h in range(n):
        j = hits[h]
        for k in range(3):
            p_xs[3 * h + k] = xs[3 * j + k]
            p_ys[3 * h + k] = ys[3 * j + k]
            p_zs[3 * h + k] = zs[3 * j + k]
        p_tri[h] = start + j
    n_padded = (n + pad_to - 1) // pad_to * pad_to
    for h in range(3 * n, 3 * n_padded):
        p_xs[h] = _NO_HIT
        p_ys[h] = _NO_HIT
        p_zs[h] = 0.0
    return n_padded


@numba.njit(cache=True, nogil=True)
def zbuffer_fixed(fx, fy, fz, faces, height, width, cull, key, bary):  # pragma: no cover - numba
    """Integer z-buffer over snapped vertices; key flat (H*W,) uint64, bary flat (H*W*3,) float32.

    Per chunk of `_CHUNK` triangles:
    (1) gather the snapped (x, y) and depth of their vertices into small arrays, in face order,
        checking the face indices on the way;
    (2) `_classify` (vectorized) marks the triangles that cover the one pixel centre of their box
        (most of those that cover anything, on a dense mesh at low resolution), those whose box holds
        more, up to 4 x 4, and those whose box is larger; the rest hold no pixel centre and stop here;
    (3) the first kind are depth-tested straight away;
    (4) the second and third are packed (`_pack`), their constants tabled (`_setup`, `_depth_planes`)
        and their coverage masks made (`_cover` for 4 x 4 boxes, `_cover8` for 8 x 8), all
        vectorized; `_depth_tests_4x4` and `_depth_tests_8x8` visit the covered samples, and
        `_walk_larger` the boxes larger than 8 x 8.
    Every test is the exact int64 arithmetic of `_edges`, so the top-left rule is exact and
    watertight whichever stage decides it; barycentrics are the edge functions over twice the area
    at the winning sample. Depth is interpolated as sum_k w_k z_k / area for one-pixel boxes and as
    sum_k w_k (z_k / area) for larger ones (the float64 rounding each has always had). Visibility
    compares one uint64 key per pixel, (depth bits, triangle index), so ties go to the lower index
    whatever the visiting order.

    Returns -1, or the index of a face with an out-of-range vertex index.
    """
    for i in range(height * width):
        key[i] = _NO_KEY
    nf = faces.shape[0]
    if fx.shape[0] == 0:
        return faces_in_range(faces, 0)  # any face is bad; -1 when there are none
    last = np.uint64(fx.shape[0] - 1)
    wmax = width - 1
    hmax = height - 1
    n_bits = _CHUNK // 64
    xs = np.empty(3 * _CHUNK, dtype=np.int32)
    ys = np.empty(3 * _CHUNK, dtype=np.int32)
    zs = np.empty(3 * _CHUNK, dtype=np.float32)
    one_bits = np.empty(n_bits, dtype=np.uint64)
    small_bits = np.empty(n_bits, dtype=np.uint64)
    big_bits = np.empty(n_bits, dtype=np.uint64)
    hits = np.empty(_CHUNK, dtype=np.int64)
    p_xs = np.empty(3 * _ROW, dtype=np.int32)
    p_ys = np.empty(3 * _ROW, dtype=np.int32)
    p_zs = np.empty(3 * _ROW, dtype=np.float32)
    p_tri = np.empty(_ROW, dtype=np.int64)
    table = np.empty(_N_FIELDS * _ROW, dtype=np.int64)
    planes = np.empty(4 * _ROW, dtype=np.float64)
    covered = np.empty(_ROW, dtype=np.uint64)
    for start in range(0, nf, _CHUNK):
        m = min(_CHUNK, nf - start)
        largest = np.uint64(0)
        for j in range(m):
            for k in range(3):
                i = np.uint64(faces[start + j, k])  # as unsigned, a negative index is a huge one
                largest = max(largest, i)
                i = min(i, last)  # never read outside the arrays, even for a bad face
                xs[3 * j + k] = fx[i]
                ys[3 * j + k] = fy[i]
                zs[3 * j + k] = fz[i]
        if largest > last:
            return faces_in_range(faces, fx.shape[0])
        n_words = (m + 63) // 64
        for j in range(3 * m, 3 * 64 * n_words):
            xs[j] = _NO_HIT
            ys[j] = _NO_HIT
        _classify(xs, ys, n_words, height, width, cull, one_bits, small_bits, big_bits)
        for h in range(_set_bits(one_bits, n_words, hits)):  # one pixel centre, covered
            j = hits[h]
            c0, _, r0, _, area, w0, w1, w2, _, _, _, _, _, _ = _packed_triangle(xs, ys, j, wmax, hmax)
            sa = abs(area)
            z = (np.float64(w0) * zs[3 * j] + np.float64(w1) * zs[3 * j + 1]
                 + np.float64(w2) * zs[3 * j + 2]) / np.float64(sa)
            _win(key, bary, r0 * width + c0, start + j, z, w0, w1, w2, 1.0 / np.float64(sa))
        n = _pack(small_bits, n_words, xs, ys, zs, start, hits, p_xs, p_ys, p_zs, p_tri, 4)
        _cover(p_xs, p_ys, n, height, width, cull, covered)
        _setup(p_xs, p_ys, n, height, width, table)
        _depth_planes(p_zs, table, n, planes)
        _depth_tests_4x4(key, bary, table, planes, covered, p_tri, n, width)
        n = _pack(big_bits, n_words, xs, ys, zs, start, hits, p_xs, p_ys, p_zs, p_tri, 1)
        _cover8(p_xs, p_ys, n, height, width, cull, covered)
        _setup(p_xs, p_ys, n, height, width, table)
        _depth_planes(p_zs, table, n, planes)
        _depth_tests_8x8(key, bary, table, planes, covered, p_tri, n, width)
        _walk_larger(key, bary, table, planes, covered, p_tri, n, width)
    return -1


@numba.njit(cache=True, nogil=True)
def finish(key, tri, bary, faces, uv, face_parts, uv_img, parts_img, with_uv):  # pragma: no cover
    """Triangle index from the keys, barycentrics zeroed on background; with `with_uv`, also U-V
    (flat (H*W*2,) float32) and parts (flat (H*W,) uint8) in the same pass. uv_img may share
    memory with key: pixel i's key is read before pixel i's U-V is written, and nothing after."""
    for i in range(key.shape[0]):
        k = key[i]
        if k == _NO_KEY:
            tri[i] = -1
            bary[3 * i] = 0.0
            bary[3 * i + 1] = 0.0
            bary[3 * i + 2] = 0.0
            if with_uv:
                uv_img[2 * i] = 0.0
                uv_img[2 * i + 1] = 0.0
                parts_img[i] = 0
            continue
        t = np.int32(k & np.uint64(0xFFFFFFFF))
        tri[i] = t
        if not with_uv:
            continue
        i0 = faces[t, 0]
        i1 = faces[t, 1]
        i2 = faces[t, 2]
        b0 = np.float64(bary[3 * i])
        b1 = np.float64(bary[3 * i + 1])
        b2 = np.float64(bary[3 * i + 2])
        uv_img[2 * i] = b0 * uv[i0, 0] + b1 * uv[i1, 0] + b2 * uv[i2, 0]
        uv_img[2 * i + 1] = b0 * uv[i0, 1] + b1 * uv[i1, 1] + b2 * uv[i2, 1]
        parts_img[i] = face_parts[t]


@numba.njit(cache=True, nogil=True, inline="always")
def _coords(verts, i0, i1, i2, axis):  # pragma: no cover - numba
    """Coordinate `axis` (0 x, 1 y, 2 depth) of vertices i0, i1, i2, as float64."""
    return np.float64(verts[i0, axis]), np.float64(verts[i1, axis]), np.float64(verts[i2, axis])


@numba.njit(cache=True, nogil=True, inline="always")
def _centre_span(a0, a1, a2, top):  # pragma: no cover - numba
    """First and last integer (pixel centre) in [min, max] of three coordinates, clipped to [0, top]."""
    return max(np.ceil(min(a0, a1, a2)), 0.0), min(np.floor(max(a0, a1, a2)), np.float64(top))


@numba.njit(cache=True, nogil=True)
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
        if area == 0.0:
            continue
        if cull and area > 0.0:
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


@numba.njit(cache=True, nogil=True, inline="always")
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def interpolate_into(faces, attribute, tri, bary, out):  # pragma: no cover - numba
    """Fill out (H, W, C) float32. Returns -1, or a triangle index >= F found in tri."""
    height, width = tri.shape
    n_faces = faces.shape[0]
    n_ch = attribute.shape[1]
    for r in range(height):
        for c in range(width):
            t = tri[r, c]
            if t < 0:
                for k in range(n_ch):
                    out[r, c, k] = 0.0
                continue
            if t >= n_faces:
                return t
            i0 = faces[t, 0]
            i1 = faces[t, 1]
            i2 = faces[t, 2]
            b0 = np.float64(bary[r, c, 0])
            b1 = np.float64(bary[r, c, 1])
            b2 = np.float64(bary[r, c, 2])
            for k in range(n_ch):
                out[r, c, k] = (
                    b0 * np.float64(attribute[i0, k])
                    + b1 * np.float64(attribute[i1, k])
                    + b2 * np.float64(attribute[i2, k])
                )
    return -1


@numba.njit(cache=True, nogil=True)
def face_labels_into(labels, tri, out):  # pragma: no cover - numba
    """Fill out (H, W) uint8. Returns -1, or a triangle index >= F found in tri."""
    height, width = tri.shape
    n_faces = labels.shape[0]
    for r in range(height):
        for c in range(width):
            t = tri[r, c]
            if t < 0:
                out[r, c] = 0
            elif t >= n_faces:
                return t
            else:
                out[r, c] = labels[t]
    return -1
