"""The fixed-point z-buffer's numba kernels: snapping, the z-buffer of a band of rows, the final
pass, and interpolation through a finished raster.

`densereg_data.raster.api` holds the conventions these implement (pixel centres, depth and
visibility, the top-left fill rule, winding, barycentrics) and `densereg_data.raster.reference` the
same rules written plainly, the oracle these must equal bit for bit. Nothing here checks its inputs:
every kernel expects the validated, contiguous arrays `densereg_data.raster.cpu` hands it, and
reports bad face indices by returning them.

The path (`cpu.render`): `snap` the vertices to fixed point; `zbuffer_fixed` keeps per pixel the
nearest triangle's key and barycentrics (chunks of triangles: vectorized coverage from `coverage`,
then scalar depth tests of the covered samples); `finish` turns keys into triangle indices and fills
U-V and parts. `interpolate_into` and `face_labels_into` read any per-vertex or per-face data through
a finished raster (U-V and parts on the far-vertex path of `float64` too).

A numba pitfall met here: an `inline="always"` helper that stores into arrays inside a branch can
leave numba's reference-count calls (NRT_incref / NRT_decref) in the hot loop that calls it, and the
kernel then runs several times slower with the same output. Depth tests go through `_win`, which
compiles without them; after changing the loops, look for NRT calls in `inspect_asm`.
"""

from __future__ import annotations

import numpy as np

from densereg_data.raster.constants import FIXED_POINT_LIMIT_PX, SUBPIXEL_BITS
from densereg_data.raster.coverage import (
    CHUNK,
    LARGER,
    N_FIELDS,
    NCOLS,
    NO_HIT,
    NROWS,
    P0,
    SX0,
    SX1,
    SX2,
    SY0,
    SY1,
    SY2,
    W0,
    W1,
    W2,
    band_rows,
    classify,
    cover4x4,
    cover8x8,
    depth_planes,
    keep_band,
    mask_band,
    pack,
    packed_triangle,
    row_coverage8,
    set_bits,
    setup_table,
    top_left_bias,
    trailing_zeros,
)
from densereg_data.raster.jit import kernel


@kernel
def all_finite(a):  # pragma: no cover - numba
    flat = a.ravel()
    for i in range(flat.size):
        x = flat[i]
        if not (x - x == 0.0):  # NaN or inf
            return False
    return True


@kernel
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
        fx[i] = np.int32(np.rint(x * (1 << SUBPIXEL_BITS)))
        fy[i] = np.int32(np.rint(y * (1 << SUBPIXEL_BITS)))
        fz[i] = np.float32(z)
    return status


@kernel
def faces_in_range(faces, n_vertices):  # pragma: no cover - numba
    """-1 when every index is in [0, n_vertices), else the first bad face."""
    for t in range(faces.shape[0]):
        i0 = faces[t, 0]
        i1 = faces[t, 1]
        i2 = faces[t, 2]
        if (i0 < 0) | (i0 >= n_vertices) | (i1 < 0) | (i1 >= n_vertices) | (i2 < 0) | (i2 >= n_vertices):
            return t
    return -1


@kernel(inline="always")
def _depth_key(z, t):  # pragma: no cover - numba
    """uint64 key ordered as (depth, triangle index): float32 depth bits made monotonic, then t."""
    bits = np.uint32(np.float32(z).view(np.uint32))
    bits = bits ^ np.uint32(0xFFFFFFFF) if bits & np.uint32(0x80000000) else bits | np.uint32(0x80000000)
    return (np.uint64(bits) << np.uint64(32)) | np.uint64(t)


@kernel(inline="always")
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


@kernel(inline="always")
def _test_sample(key, bary, table, planes, j, t, dc, dr, width):  # pragma: no cover - numba
    """Depth test of packed triangle j (triangle t) at the sample (c0 + dc, r0 + dr) of its box."""
    w0 = table[W0 * CHUNK + j] + dc * table[SX0 * CHUNK + j] + dr * table[SY0 * CHUNK + j]
    w1 = table[W1 * CHUNK + j] + dc * table[SX1 * CHUNK + j] + dr * table[SY1 * CHUNK + j]
    w2 = table[W2 * CHUNK + j] + dc * table[SX2 * CHUNK + j] + dr * table[SY2 * CHUNK + j]
    z = np.float64(w0) * planes[j] + np.float64(w1) * planes[CHUNK + j] + np.float64(w2) * planes[2 * CHUNK + j]
    _win(key, bary, table[P0 * CHUNK + j] + dr * width + dc, t, z, w0, w1, w2, planes[3 * CHUNK + j])


@kernel
def _depth_tests(key, bary, table, planes, covered, tri, n, width, side_bits):  # pragma: no cover - numba
    """Depth tests of the covered samples of packed triangles 0..n-1 (triangle indices tri[j]):
    covered[j] is a mask of a box of 2^side_bits x 2^side_bits samples, bit (dr << side_bits) + dc
    (`cover4x4`: 2, `cover8x8`: 3); `LARGER` entries are left to `_walk_larger`."""
    col_mask = (1 << side_bits) - 1
    for j in range(n):
        word = covered[j]
        if word == LARGER:
            continue
        while word:
            q = np.int64(trailing_zeros(word))
            word &= word - np.uint64(1)
            _test_sample(key, bary, table, planes, j, tri[j], q & col_mask, q >> side_bits, width)


@kernel
def _walk_larger(key, bary, table, planes, covered, tri, n, width, row0, row1):  # pragma: no cover - numba
    """Depth tests of the packed triangles marked `LARGER`, in the rows row0..row1-1: the box in
    blocks of 8 x 8 samples, a coverage mask for each block (eight `row_coverage8`), then the set
    bits of each."""
    for j in range(n):
        if covered[j] != LARGER:
            continue
        lo, hi = band_rows(table[P0 * CHUNK + j] // width, table[NROWS * CHUNK + j], row0, row1)
        sx0 = table[SX0 * CHUNK + j]
        sx1 = table[SX1 * CHUNK + j]
        sx2 = table[SX2 * CHUNK + j]
        sy0 = table[SY0 * CHUNK + j]
        sy1 = table[SY1 * CHUNK + j]
        sy2 = table[SY2 * CHUNK + j]
        # the steps are the edge's direction times 256: sx = -dy << 8, sy = dx << 8 (same signs)
        e0 = table[W0 * CHUNK + j] - top_left_bias(sy0, -sx0)
        e1 = table[W1 * CHUNK + j] - top_left_bias(sy1, -sx1)
        e2 = table[W2 * CHUNK + j] - top_left_bias(sy2, -sx2)
        n_cols = table[NCOLS * CHUNK + j]
        for dr0 in range(lo & ~7, hi, 8):  # 8 x 8 blocks: one loop exit a block, not a row
            for dc0 in range(0, n_cols, 8):
                b0 = e0 + dr0 * sy0 + dc0 * sx0
                b1 = e1 + dr0 * sy1 + dc0 * sx1
                b2 = e2 + dr0 * sy2 + dc0 * sx2
                word = np.uint64(0)
                for r in range(8):
                    word |= row_coverage8(b0 + r * sy0, b1 + r * sy1, b2 + r * sy2, sx0, sx1, sx2, n_cols - dc0,
                                          (lo <= dr0 + r) & (dr0 + r < hi)) << np.uint64(8 * r)
                while word:
                    q = np.int64(trailing_zeros(word))
                    word &= word - np.uint64(1)
                    _test_sample(key, bary, table, planes, j, tri[j], dc0 + (q & 7), dr0 + (q >> 3), width)


@kernel
def zbuffer_fixed(fx, fy, fz, faces, height, width, row0, row1, cull, key, bary):  # pragma: no cover - numba
    """Integer z-buffer over snapped vertices, of the image rows row0..row1-1 (all rows: 0, height);
    key flat (H*W,) uint64, bary flat (H*W*3,) float32, of which only those rows are written.

    Per chunk of `CHUNK` triangles:
    (1) gather the snapped (x, y) and depth of their vertices into small arrays, in face order,
        checking the face indices on the way;
    (2) `classify` (vectorized) marks the triangles that cover the one pixel centre of their box
        (most of those that cover anything, on a dense mesh at low resolution), those whose box holds
        more, up to 4 x 4, and those whose box is larger; the rest hold no pixel centre and stop here;
    (3) the first kind are depth-tested straight away;
    (4) the second and third are packed (`pack`), their constants tabled (`setup_table`, `depth_planes`)
        and their coverage masks made (`cover4x4` for 4 x 4 boxes, `cover8x8` for 8 x 8), all
        vectorized; `_depth_tests` visits the covered samples, and `_walk_larger` the boxes
        larger than 8 x 8.
    Every test is the exact int64 arithmetic of `coverage._edges`, so the top-left rule is exact and
    watertight whichever stage decides it; barycentrics are the edge functions over twice the area
    at the winning sample. Depth is interpolated as sum_k w_k z_k / area for one-pixel boxes and as
    sum_k w_k (z_k / area) for larger ones (the float64 rounding each has always had). Visibility
    compares one uint64 key per pixel, (depth bits, triangle index), so ties go to the lower index
    whatever the visiting order.

    A band of rows gives the same keys and barycentrics as the whole image in those rows: every
    triangle is classified, tabled and tested on its box clipped to the image, and the band only
    masks the rows it tests, so bands can be z-buffered apart (`cpu.render`, threads).

    Returns -1, or the index of a face with an out-of-range vertex index.
    """
    key[row0 * width:row1 * width] = _NO_KEY  # a slice: a loop from row0 * width would not become a memset
    banded = (row0 > 0) | (row1 < height)
    nf = faces.shape[0]
    if fx.shape[0] == 0:
        return faces_in_range(faces, 0)  # any face is bad; -1 when there are none
    last = np.uint64(fx.shape[0] - 1)
    wmax = width - 1
    hmax = height - 1
    n_bits = CHUNK // 64
    xs = np.empty(3 * CHUNK, dtype=np.int32)
    ys = np.empty(3 * CHUNK, dtype=np.int32)
    zs = np.empty(3 * CHUNK, dtype=np.float32)
    one_bits = np.empty(n_bits, dtype=np.uint64)
    small_bits = np.empty(n_bits, dtype=np.uint64)
    big_bits = np.empty(n_bits, dtype=np.uint64)
    hits = np.empty(CHUNK, dtype=np.int64)
    p_xs = np.empty(3 * CHUNK, dtype=np.int32)
    p_ys = np.empty(3 * CHUNK, dtype=np.int32)
    p_zs = np.empty(3 * CHUNK, dtype=np.float32)
    p_tri = np.empty(CHUNK, dtype=np.int64)
    table = np.empty(N_FIELDS * CHUNK, dtype=np.int64)
    planes = np.empty(4 * CHUNK, dtype=np.float64)
    covered = np.empty(CHUNK, dtype=np.uint64)
    flat_faces = faces.reshape(-1)  # (F, 3) C-contiguous: a view
    for start in range(0, nf, CHUNK):
        m = min(CHUNK, nf - start)
        largest = np.uint64(0)
        for j in range(3 * m):  # one flat loop over the chunk's vertex indices
            i = np.uint64(flat_faces[3 * start + j])  # as unsigned, a negative index is a huge one
            largest = max(largest, i)
            i = min(i, last)  # never read outside the arrays, even for a bad face
            xs[j] = fx[i]
            ys[j] = fy[i]
            zs[j] = fz[i]
        if largest > last:
            return faces_in_range(faces, fx.shape[0])
        n_words = (m + 63) // 64
        for j in range(3 * m, 3 * 64 * n_words):
            xs[j] = NO_HIT
            ys[j] = NO_HIT
        classify(xs, ys, n_words, height, width, cull, one_bits, small_bits, big_bits)
        if banded:
            keep_band(xs, ys, n_words, height, width, row0, row1, one_bits, small_bits, big_bits)
        for h in range(set_bits(one_bits, n_words, hits)):  # one pixel centre, covered
            j = hits[h]
            c0, _, r0, _, area, w0, w1, w2, _, _, _, _, _, _ = packed_triangle(xs, ys, j, wmax, hmax)
            sa = abs(area)
            z = (np.float64(w0) * zs[3 * j] + np.float64(w1) * zs[3 * j + 1]
                 + np.float64(w2) * zs[3 * j + 2]) / np.float64(sa)
            _win(key, bary, r0 * width + c0, start + j, z, w0, w1, w2, 1.0 / np.float64(sa))
        n = pack(small_bits, n_words, xs, ys, zs, start, hits, p_xs, p_ys, p_zs, p_tri)
        cover4x4(p_xs, p_ys, n, height, width, cull, covered)
        if banded:
            mask_band(p_xs, p_ys, n, height, width, row0, row1, 2, covered)
        setup_table(p_xs, p_ys, n, height, width, table)
        depth_planes(p_zs, table, n, planes)
        _depth_tests(key, bary, table, planes, covered, p_tri, n, width, 2)
        n = pack(big_bits, n_words, xs, ys, zs, start, hits, p_xs, p_ys, p_zs, p_tri)
        cover8x8(p_xs, p_ys, n, height, width, cull, covered)
        if banded:
            mask_band(p_xs, p_ys, n, height, width, row0, row1, 3, covered)
        setup_table(p_xs, p_ys, n, height, width, table)
        depth_planes(p_zs, table, n, planes)
        _depth_tests(key, bary, table, planes, covered, p_tri, n, width, 3)
        _walk_larger(key, bary, table, planes, covered, p_tri, n, width, row0, row1)
    return -1


@kernel
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


@kernel
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


@kernel
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
