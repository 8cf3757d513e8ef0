"""Fixed-point triangle coverage for the CPU z-buffer (`fast.zbuffer_fixed`).

Vertices snapped to 1/256 pixel (`SUBPIXEL_BITS`) give exact int64 edge functions (`_edges`), so the
top-left fill rule (`top_left_bias`) is exact and shared edges are watertight. A chunk of `CHUNK`
triangles, their snapped vertices gathered into small contiguous arrays, goes through:
- `classify`: which triangles cover the one pixel centre of their box, which boxes hold up to 4 x 4
  pixel centres, which more;
- `pack`: the triangles of one kind into packed arrays;
- `cover4x4`, `cover8x8`: their coverage masks (16 or 64 bits, bit (dr << side) + dc of the box);
- `setup_table`, `depth_planes`: the per-triangle constants the depth tests read (rows `P0`...`AREA`).
When the z-buffer draws only a band of rows (one thread's share), `keep_band` drops the triangles
whose box misses the band and `mask_band` the mask bits outside it; nothing else changes, so a band's
pixels come out exactly as in the whole image.
LLVM vectorizes each of these: they are branch-free, read only contiguous chunk arrays and store
where LLVM can prove the stores apart (numba cannot tell LLVM that two arrays do not alias, and LLVM
vectorizes no loop that loads through an index array and stores; the table's rows lie at constant
distances in one array).
"""

from __future__ import annotations

import numpy as np

from densereg_data.raster.constants import SUBPIXEL_BITS
from densereg_data.raster.jit import kernel


@kernel(inline="always")
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


_ONE = 1 << SUBPIXEL_BITS


@kernel(inline="always")
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


@kernel(inline="always")
def top_left_bias(dx, dy):  # pragma: no cover - numba
    """Top-left rule: on an edge (w == 0) a sample counts when the interior normal (-dy, dx) points
    to +x, or to +y; this bias b makes "w - b >= 0" the inside test."""
    return np.int64(not ((dy < 0) | ((dy == 0) & (dx > 0))))


@kernel(inline="always")
def drawn(area, cull):  # pragma: no cover - numba
    """Whether a triangle of twice-signed area `area` is drawn: not degenerate and, with `cull`, not
    back-facing (area > 0: clockwise as seen in the image; `api`'s docstring, "winding")."""
    return (area != 0) & ~(cull & (area > 0))


@kernel(inline="always")
def _box(x0, x1, x2, y0, y1, y2, wmax, hmax):  # pragma: no cover - numba
    """The pixel centres (c0..c1, r0..r1) of a snapped triangle's bounding box, clipped to the image;
    empty when c0 > c1 or r0 > r1."""
    c0 = max((min(x0, x1, x2) + (_ONE - 1)) >> SUBPIXEL_BITS, 0)
    c1 = min(max(x0, x1, x2) >> SUBPIXEL_BITS, wmax)
    r0 = max((min(y0, y1, y2) + (_ONE - 1)) >> SUBPIXEL_BITS, 0)
    r1 = min(max(y0, y1, y2) >> SUBPIXEL_BITS, hmax)
    return c0, c1, r0, r1


#: Triangles per chunk of `zbuffer_fixed` (a multiple of 64): the chunk's packed coordinates (6 KiB
#: an array) and its table of depth-test constants (~70 KiB) stay in L1 and L2 cache from the
#: gather to the depth tests.
CHUNK = 512
#: A snapped x (or y) whose box holds no pixel centre: pads the last chunk.
NO_HIT = 1


@kernel(inline="always")
def packed_triangle(xs, ys, j, wmax, hmax):  # pragma: no cover - numba
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


@kernel(inline="always")
def _pixel_steps(dx0, dx1, dx2, dy0, dy1, dy2):  # pragma: no cover - numba
    """How each edge function w_k changes per whole pixel: (sx0, sx1, sx2) along +x, (sy0, sy1, sy2) along +y."""
    return (-dy0 << SUBPIXEL_BITS, -dy1 << SUBPIXEL_BITS, -dy2 << SUBPIXEL_BITS,
            dx0 << SUBPIXEL_BITS, dx1 << SUBPIXEL_BITS, dx2 << SUBPIXEL_BITS)


@kernel(inline="always")
def _first_sample(xs, ys, j, wmax, hmax):  # pragma: no cover - numba
    """`packed_triangle` j, as what the coverage tests need: (drawn-independent) box size n_cols,
    n_rows, the signed area, e_k = w_k - b_k at the box's first sample (see `top_left_bias`) and the
    whole-pixel steps of w_k."""
    c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = packed_triangle(xs, ys, j, wmax, hmax)
    sx0, sx1, sx2, sy0, sy1, sy2 = _pixel_steps(dx0, dx1, dx2, dy0, dy1, dy2)
    return (c1 - c0 + 1, r1 - r0 + 1, area,
            w0 - top_left_bias(dx0, dy0), w1 - top_left_bias(dx1, dy1), w2 - top_left_bias(dx2, dy2),
            sx0, sx1, sx2, sy0, sy1, sy2)


@kernel(inline="always")
def _row_coverage(e0, e1, e2, sx0, sx1, sx2, n_cols, in_box):  # pragma: no cover - numba
    """uint64 bits 0..3: sample dc = 0..3 of a box row is inside the triangle and the box (dc <
    n_cols and the row is in the box: in_box), given e_k = w_k - b_k at dc = 0 and the +x steps sx_k
    of w_k (see `top_left_bias`). Written out, not looped, so that the loop around it vectorizes."""
    m0 = in_box & (0 < n_cols) & ((e0 | e1 | e2) >= 0)
    m1 = in_box & (1 < n_cols) & (((e0 + sx0) | (e1 + sx1) | (e2 + sx2)) >= 0)
    m2 = in_box & (2 < n_cols) & (((e0 + 2 * sx0) | (e1 + 2 * sx1) | (e2 + 2 * sx2)) >= 0)
    m3 = in_box & (3 < n_cols) & (((e0 + 3 * sx0) | (e1 + 3 * sx1) | (e2 + 3 * sx2)) >= 0)
    return np.uint64(m0) | (np.uint64(m1) << np.uint64(1)) | (np.uint64(m2) << np.uint64(2)) | (np.uint64(m3) << np.uint64(3))


@kernel(inline="always")
def row_coverage8(e0, e1, e2, sx0, sx1, sx2, n_cols, in_box):  # pragma: no cover - numba
    """`_row_coverage` for the samples dc = 0..7 of a row: uint64 bits 0..7."""
    return (_row_coverage(e0, e1, e2, sx0, sx1, sx2, n_cols, in_box)
            | _row_coverage(e0 + 4 * sx0, e1 + 4 * sx1, e2 + 4 * sx2, sx0, sx1, sx2, n_cols - 4, in_box) << np.uint64(4))


@kernel(error_model="numpy")
def classify(xs, ys, n_words, height, width, cull, one_bits, small_bits, big_bits):  # pragma: no cover - numba
    """Vectorized triage of a chunk: bit b of one_bits[i] = triangle 64 i + b of the chunk is drawn
    and covers the single pixel centre in its box; of small_bits[i] = its box holds more than one
    pixel centre and fits in 4 x 4; of big_bits[i] = its box is larger. xs, ys: (3 CHUNK,) int32,
    the snapped vertices of the chunk's triangles in order. Branch-free and store-free inside a
    word, so LLVM vectorizes it (AVX2/AVX-512 where present). The tests are the exact int64 ones of
    the scalar code (`_box`, `_edges`, `top_left_bias`), so the triage decides exactly what a
    per-triangle loop would."""
    wmax = width - 1
    hmax = height - 1
    for i in range(n_words):
        one_word = np.uint64(0)
        small_word = np.uint64(0)
        big_word = np.uint64(0)
        for b in range(64):
            c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = packed_triangle(
                xs, ys, 64 * i + b, wmax, hmax)
            is_drawn = drawn(area, cull)
            inside = ((w0 - top_left_bias(dx0, dy0)) | (w1 - top_left_bias(dx1, dy1))
                      | (w2 - top_left_bias(dx2, dy2))) >= 0
            one = (c0 == c1) & (r0 == r1)
            more = (c0 <= c1) & (r0 <= r1) & ~one
            big = (c1 - c0 >= 4) | (r1 - r0 >= 4)
            one_word |= np.uint64(one & is_drawn & inside) << np.uint64(b)
            small_word |= np.uint64(more & ~big) << np.uint64(b)
            big_word |= np.uint64(more & big) << np.uint64(b)
        one_bits[i] = one_word
        small_bits[i] = small_word
        big_bits[i] = big_word


@kernel(error_model="numpy")
def cover4x4(xs, ys, n, height, width, cull, covered):  # pragma: no cover - numba
    """Vectorized coverage of boxes of up to 4 x 4 pixel centres: covered[j] bit 4 dr + dc = triangle
    j (vertices xs[3j:3j+3], ys[3j:3j+3], as in `classify`) is drawn and covers the sample
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
        is_drawn = drawn(area, cull)
        covered[j] = mask if is_drawn else np.uint64(0)


#: `cover8x8`'s mark for a drawn triangle whose box is larger than 8 x 8 (not a coverage mask: such
#: a box has more than 8 columns or rows, and its last column or row would be beyond bit 63).
LARGER = np.uint64(0xFFFFFFFFFFFFFFFF)


@kernel(error_model="numpy")
def cover8x8(xs, ys, n, height, width, cull, covered):  # pragma: no cover - numba
    """`cover4x4` for boxes of up to 8 x 8: covered[j] bit 8 dr + dc; `LARGER` for a drawn triangle
    whose box is larger."""
    wmax = width - 1
    hmax = height - 1
    for j in range(n):
        n_cols, n_rows, area, e0, e1, e2, sx0, sx1, sx2, sy0, sy1, sy2 = _first_sample(xs, ys, j, wmax, hmax)
        mask = np.uint64(0)
        for dr in range(8):  # unrolled by LLVM: the loop over j vectorizes
            mask |= row_coverage8(e0 + dr * sy0, e1 + dr * sy1, e2 + dr * sy2, sx0, sx1, sx2, n_cols,
                                   dr < n_rows) << np.uint64(8 * dr)
        is_drawn = drawn(area, cull)
        larger = (n_cols > 8) | (n_rows > 8)
        covered[j] = (LARGER if larger else mask) if is_drawn else np.uint64(0)


@kernel(inline="always")
def band_rows(r0, n_rows, row0, row1):  # pragma: no cover - numba
    """The rows lo..hi-1 of a box (first row r0, n_rows rows) that lie in the band row0..row1-1,
    counted from the box's first row (lo >= hi: none)."""
    return max(row0 - r0, 0), min(row1 - r0, n_rows)


@kernel(inline="always")
def _box_rows(xs, ys, j, wmax, hmax):  # pragma: no cover - numba
    """The rows r0..r1 of `packed_triangle` j's box (clipped to the image; empty when r0 > r1)."""
    _, _, r0, r1 = _box(np.int64(xs[3 * j]), np.int64(xs[3 * j + 1]), np.int64(xs[3 * j + 2]),
                        np.int64(ys[3 * j]), np.int64(ys[3 * j + 1]), np.int64(ys[3 * j + 2]), wmax, hmax)
    return r0, r1


@kernel(error_model="numpy")
def keep_band(xs, ys, n_words, height, width, row0, row1, one_bits, small_bits, big_bits):  # pragma: no cover - numba
    """Clear the `classify` bits of the chunk's triangles whose box (clipped to the image) has no row
    in row0..row1-1. Vectorized like `classify`; run only when the z-buffer draws a band of rows."""
    wmax = width - 1
    hmax = height - 1
    for i in range(n_words):
        keep = np.uint64(0)
        for b in range(64):
            r0, r1 = _box_rows(xs, ys, 64 * i + b, wmax, hmax)
            keep |= np.uint64((r0 < row1) & (r1 >= row0)) << np.uint64(b)
        one_bits[i] &= keep
        small_bits[i] &= keep
        big_bits[i] &= keep


@kernel(inline="always")
def _first_rows(k, side_bits):  # pragma: no cover - numba
    """The bits of the first k rows of a 2^side_bits-wide coverage mask (k clipped to 0..2^side_bits)."""
    if k <= 0:
        return np.uint64(0)
    if k >= (1 << side_bits):
        return np.uint64(0xFFFFFFFFFFFFFFFF)
    return (np.uint64(1) << np.uint64(k << side_bits)) - np.uint64(1)


@kernel(error_model="numpy")
def mask_band(xs, ys, n, height, width, row0, row1, side_bits, covered):  # pragma: no cover - numba
    """Clear the bits of `cover4x4` (side_bits 2) or `cover8x8` (3) masks outside the rows row0..row1-1
    (`LARGER` marks are left: `_walk_larger` clips its rows itself). Run only for a band of rows."""
    wmax = width - 1
    hmax = height - 1
    for j in range(n):
        r0, r1 = _box_rows(xs, ys, j, wmax, hmax)
        lo, hi = band_rows(r0, r1 - r0 + 1, row0, row1)
        keep = _first_rows(hi, side_bits) & ~_first_rows(lo, side_bits)
        word = covered[j]
        covered[j] = word if word == LARGER else word & keep


# Rows of the per-triangle table `setup_table` fills (int64, `CHUNK` entries a row): the flat index of the
# box's first sample, w_k there, the whole-pixel steps of w_k, and the box size.
P0, W0, W1, W2, SX0, SX1, SX2, SY0, SY1, SY2, NCOLS, NROWS, AREA = range(13)
N_FIELDS = 13


@kernel(error_model="numpy")
def setup_table(xs, ys, n, height, width, table):  # pragma: no cover - numba
    """Per-triangle constants of the depth tests, table[field * CHUNK + j] (fields `P0`...`AREA`),
    for packed triangles j < n. Vectorized (the rows are at constant distances in one array, so LLVM
    needs no alias checks between them)."""
    wmax = width - 1
    hmax = height - 1
    for j in range(n):
        c0, c1, r0, r1, area, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2 = packed_triangle(xs, ys, j, wmax, hmax)
        table[P0 * CHUNK + j] = r0 * width + c0
        table[W0 * CHUNK + j] = w0
        table[W1 * CHUNK + j] = w1
        table[W2 * CHUNK + j] = w2
        table[SX0 * CHUNK + j] = -dy0 << SUBPIXEL_BITS
        table[SX1 * CHUNK + j] = -dy1 << SUBPIXEL_BITS
        table[SX2 * CHUNK + j] = -dy2 << SUBPIXEL_BITS
        table[SY0 * CHUNK + j] = dx0 << SUBPIXEL_BITS
        table[SY1 * CHUNK + j] = dx1 << SUBPIXEL_BITS
        table[SY2 * CHUNK + j] = dx2 << SUBPIXEL_BITS
        table[NCOLS * CHUNK + j] = c1 - c0 + 1
        table[NROWS * CHUNK + j] = r1 - r0 + 1
        table[AREA * CHUNK + j] = abs(area)


@kernel(error_model="numpy")
def depth_planes(zs, table, n, planes):  # pragma: no cover - numba
    """planes[k * CHUNK + j] = z_k / area (k = 0, 1, 2) and planes[3 * CHUNK + j] = 1 / area, twice
    the area being table's `AREA` (0 gives inf; such a triangle is never drawn)."""
    for j in range(n):
        inv = 1.0 / np.float64(table[AREA * CHUNK + j])
        planes[j] = np.float64(zs[3 * j]) * inv
        planes[CHUNK + j] = np.float64(zs[3 * j + 1]) * inv
        planes[2 * CHUNK + j] = np.float64(zs[3 * j + 2]) * inv
        planes[3 * CHUNK + j] = inv


@kernel(inline="always")
def set_bits(bits, n_words, out):  # pragma: no cover - numba
    """The positions of the set bits of bits[:n_words] into out, in order; their count."""
    n = 0
    for i in range(n_words):
        word = bits[i]
        while word:
            out[n] = 64 * i + np.int64(trailing_zeros(word))
            n += 1
            word &= word - np.uint64(1)
    return n


@kernel
def pack(bits, n_words, xs, ys, zs, start, hits, p_xs, p_ys, p_zs, p_tri):  # pragma: no cover - numba
    """Copy the chunk's triangles whose bit is set (vertices xs, ys, zs; triangle index start + j)
    into p_xs, p_ys, p_zs, p_tri. Returns their count."""
    n = set_bits(bits, n_words, hits)
    for h in range(n):
        j = hits[h]
        for k in range(3):
            p_xs[3 * h + k] = xs[3 * j + k]
            p_ys[3 * h + k] = ys[3 * j + k]
            p_zs[3 * h + k] = zs[3 * j + k]
        p_tri[h] = start + j
    return n
