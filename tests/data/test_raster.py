"""Pins and round trips of densereg_data.raster.api (CPU) and raster_gl (pyrender, marked gl)."""

from __future__ import annotations

import numpy as np
import pytest

from densereg_data.raster import coverage as raster_coverage
from densereg_data.raster import fast as raster_cpu
from densereg_data.errors import BackendUnavailableError, ShapeError
from densereg_data.raster.api import Raster, face_labels, interpolate, rasterize, render_uv_parts

SIZE = (12, 17)  # non-square (height, width)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def square():
    """Two triangles tiling the square [2, 10] x [1, 9] (x, y pixels), shared diagonal, known UV."""
    vertices = np.array(
        [[2.0, 1.0, 5.0], [10.0, 1.0, 5.0], [10.0, 9.0, 5.0], [2.0, 9.0, 5.0]], dtype=np.float64
    )
    faces = np.array([[0, 3, 2], [0, 2, 1]], dtype=np.int64)  # both counter-clockwise on screen
    uv = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # u right, v up
    return vertices, faces, uv


def tri(*xyz: tuple[float, float, float]) -> np.ndarray:
    return np.array(xyz, dtype=np.float64)


ONE_FACE = np.array([[0, 1, 2]])


# ---------------------------------------------------------------------------------------------
# Pins
# ---------------------------------------------------------------------------------------------


def test_vertex_at_x3_y1_lands_in_row1_col3():
    # A small triangle around (x=3, y=1): covers only that pixel centre.
    v = tri((2.7, 0.7, 1.0), (3.4, 0.8, 1.0), (3.0, 1.4, 1.0))
    r = rasterize(v, ONE_FACE, SIZE)
    assert r.triangle[1, 3] == 0
    assert r.mask.sum() == 1


def test_pixel_centre_sampling():
    # A triangle covering [0.6, 1.4] in x contains the centre x=1 only, never x=0 or x=2.
    v = tri((0.6, 0.6, 1.0), (1.4, 0.6, 1.0), (1.0, 3.4, 1.0))
    r = rasterize(v, ONE_FACE, SIZE)
    assert set(zip(*np.nonzero(r.mask))) == {(1, 1), (2, 1), (3, 1)}


def test_background_is_minus_one_and_zero(square):
    v, f, uv = square
    r = rasterize(v, f, SIZE)
    assert r.size == SIZE and r.triangle.dtype == np.int32 and r.bary.dtype == np.float32
    bg = ~r.mask
    assert bg.any()
    assert (r.triangle[bg] == -1).all() and (r.bary[bg] == 0).all()
    assert (interpolate(r, f, uv)[bg] == 0).all()
    assert (face_labels(r, np.array([3, 4], np.uint8))[bg] == 0).all()


def test_shared_edge_covers_each_centre_exactly_once(square):
    v, f, _ = square
    r = rasterize(v, f, SIZE)
    # pixel centres inside the closed square: x in 2..10, y in 1..9; top-left rule drops the right
    # and bottom borders, so exactly x in 2..9, y in 1..8 are covered, by exactly one triangle each.
    expected = np.zeros(SIZE, bool)
    expected[1:9, 2:10] = True
    np.testing.assert_array_equal(r.mask, expected)
    # count coverage per triangle separately: no double coverage on the diagonal
    counts = sum(rasterize(v, f[i : i + 1], SIZE).mask.astype(int) for i in range(2))
    assert counts.max() == 1
    np.testing.assert_array_equal(counts, expected)


def test_shared_edge_random_meshes_watertight(rng):
    # A random fan around an interior point: every covered centre is covered by exactly one face.
    for _ in range(20):
        n = 7
        angles = (np.arange(n) + rng.uniform(0, 0.8, n)) * 2 * np.pi / n  # convex ring around centre
        ring = np.stack([8 + 5 * np.cos(angles), 6 + 5 * np.sin(angles)], 1)
        centre = rng.uniform([7, 5], [9, 7])
        xy = np.vstack([centre, ring])
        v = np.hstack([xy, np.ones((n + 1, 1))])
        f = np.array([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)])
        counts = sum(rasterize(v, f[i : i + 1], SIZE).mask.astype(int) for i in range(n))
        assert counts.max() <= 1
        np.testing.assert_array_equal(counts > 0, rasterize(v, f, SIZE).mask)


def test_integer_vertex_in_fan_is_covered_once():
    # A vertex exactly on a pixel centre, shared by 4 triangles: covered exactly once.
    xy = np.array([[5, 5], [9, 5], [5, 9], [1, 5], [5, 1]], float)
    v = np.hstack([xy, np.ones((5, 1))])
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    counts = sum(rasterize(v, f[i : i + 1], (12, 12)).mask.astype(int) for i in range(4))
    assert counts[5, 5] == 1 and counts.max() == 1


def test_zbuffer_nearer_wins_regardless_of_order():
    near = tri((1, 1, 1.0), (15, 1, 1.0), (8, 10, 1.0))
    far = tri((1, 1, 9.0), (15, 1, 9.0), (8, 10, 9.0))
    for order in ((near, far), (far, near)):
        v = np.vstack(order)
        f = np.array([[0, 1, 2], [3, 4, 5]])
        r = rasterize(v, f, SIZE)
        near_index = 0 if order[0] is near else 1
        assert (r.triangle[r.mask] == near_index).all()


def test_zbuffer_tie_lower_index_wins():
    a = tri((1, 1, 2.0), (15, 1, 2.0), (8, 10, 2.0))
    v = np.vstack([a, a])
    r = rasterize(v, np.array([[3, 4, 5], [0, 1, 2]]), SIZE)
    assert (r.triangle[r.mask] == 0).all()


def test_both_windings_drawn_and_cull_option():
    ccw = tri((1, 1, 1.0), (1, 10, 1.0), (14, 1, 1.0))  # counter-clockwise on screen: front
    r_front = rasterize(ccw, ONE_FACE, SIZE)
    r_back = rasterize(ccw, np.array([[0, 2, 1]]), SIZE)
    np.testing.assert_array_equal(r_front.mask, r_back.mask)
    assert r_front.mask.any()
    assert rasterize(ccw, ONE_FACE, SIZE, cull_backfaces=True).mask.any()
    assert not rasterize(ccw, np.array([[0, 2, 1]]), SIZE, cull_backfaces=True).mask.any()


def test_u_grows_left_to_right(square):
    v, f, uv = square
    r = rasterize(v, f, SIZE)
    u = interpolate(r, f, uv)[..., 0]
    assert u[5, 3] < u[5, 6] < u[5, 9]


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_grid, atol", [(True, 1e-4), (False, 1.0 / 512 + 1e-5)])
def test_point_bary_point_round_trip(rng, on_grid, atol):
    """Exact for vertices on the 1/256-pixel grid; within half a grid step (1/512 px) otherwise."""
    v = np.hstack([rng.uniform(-3, 20, (30, 2)), rng.uniform(0, 1, (30, 1))])
    if on_grid:
        v[:, :2] = np.round(v[:, :2] * 256) / 256
    f = rng.integers(0, 30, (40, 3))
    r = rasterize(v, f, SIZE)
    xy = interpolate(r, f, v[:, :2])
    rows, cols = np.nonzero(r.mask)
    assert rows.size > 20
    np.testing.assert_allclose(xy[rows, cols, 0], cols, atol=atol)
    np.testing.assert_allclose(xy[rows, cols, 1], rows, atol=atol)
    np.testing.assert_allclose(r.bary[r.mask].sum(-1), 1.0, atol=1e-6)
    assert (r.bary >= 0).all()


def test_render_uv_parts_equals_composition(square, rng):
    v, f, uv = square
    v = v + rng.uniform(-0.3, 0.3, v.shape)
    parts = np.array([2, 7], np.uint8)
    r, uv_img, parts_img = render_uv_parts(v, f, uv, parts, SIZE)
    r2 = rasterize(v, f, SIZE)
    np.testing.assert_array_equal(r.triangle, r2.triangle)
    np.testing.assert_array_equal(r.bary, r2.bary)
    np.testing.assert_allclose(uv_img, interpolate(r2, f, uv), atol=1e-6)
    np.testing.assert_array_equal(parts_img, face_labels(r2, parts))
    assert uv_img.dtype == np.float32 and parts_img.dtype == np.uint8


@pytest.mark.parametrize("far", [False, True], ids=["fixed-point", "float64"])
def test_render_uv_parts_outputs_in_two_blocks(square, far):
    """U-V and parts share one allocation, triangle and barycentrics another (see `_raster_arrays`):
    a caller that keeps only U-V and parts holds 9 bytes a pixel, not 25."""
    v, f, uv = square
    if far:
        v = np.vstack([v, [[1e8, 1e8, 0.0]]])
        uv = np.vstack([uv, [[0.0, 0.0]]])
    r, uv_img, parts_img = render_uv_parts(v, f, uv, np.array([2, 7], np.uint8), SIZE)
    assert np.shares_memory(uv_img.base, parts_img) and np.shares_memory(r.bary.base, r.triangle)
    assert not np.shares_memory(uv_img.base, r.bary.base)
    assert uv_img.base.nbytes == 9 * SIZE[0] * SIZE[1] and r.bary.base.nbytes == 16 * SIZE[0] * SIZE[1]
    assert uv_img.flags.c_contiguous and r.bary.flags.c_contiguous and r.triangle.flags.c_contiguous


def test_deterministic(rng):
    v = np.hstack([rng.uniform(-3, 20, (50, 2)), rng.uniform(0, 1, (50, 1))])
    f = rng.integers(0, 50, (80, 3))
    a = rasterize(v, f, SIZE)
    b = rasterize(v.copy(), f.copy(), SIZE)
    assert a.triangle.tobytes() == b.triangle.tobytes() and a.bary.tobytes() == b.bary.tobytes()


def test_far_vertices_take_float_path_with_same_result(rng):
    v = np.hstack([rng.uniform(-3, 20, (30, 2)), rng.uniform(0, 1, (30, 1))])
    f = rng.integers(0, 30, (40, 3))
    ref = rasterize(v, f, SIZE)
    far = np.vstack([v, [[1e8, 1e8, 0.0]]])  # an unused far vertex switches the path
    got = rasterize(far, f, SIZE)
    assert (got.triangle != ref.triangle).mean() < 0.02
    # a huge triangle through the image is clipped without error
    huge = tri((-1e8, -1e8, 1.0), (1e8, -1e8, 1.0), (0.0, 1e8, 1.0))
    assert rasterize(huge, ONE_FACE, SIZE).mask.all()


def test_clipped_partly_and_fully_outside():
    partly = tri((-20, -20, 1.0), (30, -5, 1.0), (5, 40, 1.0))
    r = rasterize(partly, ONE_FACE, SIZE)
    assert r.mask.any()
    outside = tri((-20, -20, 1.0), (-5, -20, 1.0), (-10, -2, 1.0))
    assert not rasterize(outside, ONE_FACE, SIZE).mask.any()
    right = tri((100, 1, 1.0), (120, 1, 1.0), (110, 9, 1.0))
    assert not rasterize(right, ONE_FACE, SIZE).mask.any()


def test_degenerate_triangles_cover_nothing():
    line = tri((1, 1, 1.0), (5, 5, 1.0), (9, 9, 1.0))
    point = tri((3, 3, 1.0), (3, 3, 1.0), (3, 3, 1.0))
    f = np.array([[0, 1, 2], [3, 4, 5]])
    assert not rasterize(np.vstack([line, point]), f, SIZE).mask.any()


def test_float32_and_int32_inputs(square):
    v, f, _ = square
    a = rasterize(v, f, SIZE)
    b = rasterize(v.astype(np.float32), f.astype(np.int32), SIZE)
    np.testing.assert_array_equal(a.triangle, b.triangle)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_vertex_shape(square):
    _, f, _ = square
    with pytest.raises(ShapeError, match=r"vertices must be \(V, 3\).*\(4, 2\)"):
        rasterize(np.zeros((4, 2)), f, SIZE)


def test_nan_vertices(square):
    v, f, _ = square
    v = v.copy()
    v[1, 0] = np.nan
    with pytest.raises(ShapeError, match="finite"):
        rasterize(v, f, SIZE)


def test_bad_face_shape(square):
    v, _, _ = square
    with pytest.raises(ShapeError, match=r"faces must be \(F, 3\) integer"):
        rasterize(v, np.zeros((2, 4), int), SIZE)


def test_float_faces_rejected(square):
    v, f, _ = square
    with pytest.raises(ShapeError, match="integer"):
        rasterize(v, f.astype(float), SIZE)


def test_face_index_out_of_range(square):
    v, f, _ = square
    bad = f.copy()
    bad[1, 2] = 4
    with pytest.raises(ShapeError, match=r"\[0, 4\).*face 1"):
        rasterize(v, bad, SIZE)


def test_negative_face_index(square):
    v, f, _ = square
    bad = f.copy()
    bad[0, 0] = -1
    with pytest.raises(ShapeError, match="face 0"):
        rasterize(v, bad, SIZE)


def test_bad_size(square):
    v, f, _ = square
    with pytest.raises(ShapeError, match="size"):
        rasterize(v, f, (0, 5))


def test_unknown_backend_lists_valid(square):
    v, f, _ = square
    with pytest.raises(ValueError, match="valid backends: cpu, pyrender"):
        rasterize(v, f, SIZE, backend="vulkan")


def test_bad_attribute_and_labels(square):
    v, f, uv = square
    r = rasterize(v, f, SIZE)
    with pytest.raises(ShapeError, match="one row per vertex"):
        interpolate(r, f, uv[:3])
    with pytest.raises(ShapeError, match=r"labels must be \(F,\) uint8"):
        face_labels(r, np.array([1, 2], np.int64))
    with pytest.raises(ShapeError, match="only 1 entries"):
        face_labels(r, np.array([1], np.uint8))


def test_render_uv_parts_bad_uv(square):
    v, f, uv = square
    with pytest.raises(ShapeError, match=r"uv must be \(4, 2\)"):
        render_uv_parts(v, f, uv[:, :1], np.ones(2, np.uint8), SIZE)


def test_raster_record_validated():
    with pytest.raises(ShapeError, match=r"Raster.bary must be \(2, 3, 3\) float32"):
        Raster(triangle=np.zeros((2, 3), np.int32), bary=np.zeros((2, 3, 3)))
    with pytest.raises(ShapeError, match="int32"):
        Raster(triangle=np.zeros((2, 3), np.int64), bary=np.zeros((2, 3, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# The menpo3d template (CPU), and the pyrender backend (gl)
# ---------------------------------------------------------------------------------------------


def _template_in_pixels(n: int):
    m3io = pytest.importorskip("menpo3d.io")
    from densereg_data.face.template import frontal_in_pixels

    m = m3io.import_builtin_asset("template.ply")
    return frontal_in_pixels(m.points, n, fill=0.8), m.trilist


def test_template_fixed_and_float_paths_agree():
    v, f = _template_in_pixels(256)
    got = rasterize(v, f, (256, 256)).triangle
    tri = np.empty((256, 256), np.int32)
    depth = np.empty((256, 256), np.float32)
    raster_cpu.zbuffer_float(np.ascontiguousarray(v), f, 256, 256, False, tri, depth)
    fg = (got >= 0) | (tri >= 0)
    assert (got[fg] == tri[fg]).mean() > 0.995
    assert 0.3 < (got >= 0).mean() < 0.6


def _gl_or_skip():
    from densereg_data.raster import gl as raster_gl

    try:
        raster_gl.get_renderer((8, 8))
    except BackendUnavailableError as e:
        pytest.skip(f"no OpenGL context: {e}")
    return raster_gl


@pytest.mark.gl
def test_gl_square_matches_cpu(square):
    _gl_or_skip()
    v, f, _ = square
    a = rasterize(v, f, SIZE)
    b = rasterize(v, f, SIZE, backend="pyrender")
    # GL's fill rule is top-left in window coordinates (y up): horizontal edges go to the other
    # side, so the square moves down one row; everything both cover agrees.
    both = a.mask & b.mask
    assert both.sum() == 7 * 8
    np.testing.assert_array_equal(a.triangle[both], b.triangle[both])
    assert b.mask[2:10, 2:10].all() and not b.mask[1].any()


@pytest.mark.gl
def test_gl_template_agrees_with_cpu():
    _gl_or_skip()
    v, f = _template_in_pixels(256)
    a = rasterize(v, f, (256, 256))
    b = rasterize(v, f, (256, 256), backend="pyrender")
    fg = a.mask | b.mask
    agree = (a.triangle[fg] == b.triangle[fg]).mean()
    print(f"GL/CPU triangle agreement on {fg.sum()} foreground pixels: {agree:.4%}")
    assert agree >= 0.995


def test_gl_unavailable_names_what_to_install(monkeypatch, square):
    import sys

    from densereg_data.raster import gl as raster_gl

    monkeypatch.setitem(sys.modules, "pyrender", None)  # import fails as if not installed
    v, f, _ = square
    with pytest.raises(BackendUnavailableError, match="libosmesa6.*PYOPENGL_PLATFORM.*--no-deps"):
        raster_gl.rasterize_gl(v, f, SIZE)


def test_face_order_does_not_matter_across_chunks(rng):
    # Thousands of small triangles (boxes of no, one and several pixel centres) spread over several
    # chunks of the CPU kernel, the last one partial: drawing them in another order gives the same
    # image, up to renaming the triangles (distinct depths, so no ties).
    n = 2 * raster_coverage.CHUNK + 37
    centres = rng.uniform([-2, -2], [SIZE[1] + 2, SIZE[0] + 2], (n, 2))
    xy = np.repeat(centres, 3, 0) + rng.normal(scale=rng.choice([0.3, 0.8, 2.0], (3 * n, 1)), size=(3 * n, 2))
    v = np.hstack([xy, rng.uniform(0, 1, (3 * n, 1))])
    f = np.arange(3 * n).reshape(n, 3)
    order = rng.permutation(n)
    for cull in (False, True):
        a = rasterize(v, f, SIZE, cull_backfaces=cull)
        b = rasterize(v, f[order], SIZE, cull_backfaces=cull)
        assert a.mask.mean() > 0.5
        np.testing.assert_array_equal(np.where(b.mask, order[b.triangle], -1), a.triangle)
        np.testing.assert_array_equal(b.bary, a.bary)


def test_coverage_of_every_box_size_matches_the_float_path(rng):
    # The CPU kernel decides coverage in stages by box size (one pixel centre, up to 4 x 4, up to
    # 8 x 8, larger, and slivers larger in one direction only); on the 1/256 grid the float64 path is
    # exact too, so both must cover the same centres.
    size_px = (40, 41)
    for size in (0.6, 1.5, 3.0, 4.5, 7.0, 12.0, 20.0):
        for stretch in ((1, 1), (0.2, 1), (1, 0.2)):
            for _ in range(12):
                xy = rng.uniform(8, 30, 2) + rng.uniform(-size, size, (3, 2)) * stretch
                xy = np.round(xy * 4) / 4 if rng.random() < 0.5 else np.round(xy * 256) / 256
                v = np.hstack([xy, np.ones((3, 1))])
                got = rasterize(v, ONE_FACE, size_px).triangle
                want = np.empty(size_px, np.int32)
                raster_cpu.zbuffer_float(v, ONE_FACE, *size_px, False, want, np.empty(size_px, np.float32))
                np.testing.assert_array_equal(got, want)


def test_trailing_zeros_fallback_agrees_with_numba():
    import numba

    from densereg_data.raster.coverage import _trailing_zeros_portable, trailing_zeros

    @numba.njit
    def both(word):
        return trailing_zeros(word), _trailing_zeros_portable(word)

    for word in [1, 2, 3, 8, 1 << 40, (1 << 63) | (1 << 5)] + [int(w) | 1 << int(b) for w, b in zip(np.random.default_rng(0).integers(0, 1 << 62, 50), np.random.default_rng(1).integers(0, 62, 50))]:
        a, b = both(np.uint64(word))
        assert a == b == (word & -word).bit_length() - 1


def _outputs(v, f, uv, parts, size, cull, threads):
    r, uv_img, parts_img = render_uv_parts(v, f, uv, parts, size, cull_backfaces=cull, threads=threads)
    return [a.tobytes() for a in (r.triangle, r.bary, uv_img, parts_img)]


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_threads_give_bit_identical_outputs_on_soups(rng, threads):
    # Bands of rows cut through triangles of every box size (one pixel centre to larger than 8 x 8),
    # some straddling two or three bands; each band must give its pixels exactly what one thread gives.
    size = (53, 47)
    n = 3 * raster_coverage.CHUNK + 11
    centres = rng.uniform([-3, -3], [size[1] + 3, size[0] + 3], (n, 2))
    scale = rng.choice([0.3, 1.0, 2.5, 6.0, 14.0], (3 * n, 1))
    xy = np.repeat(centres, 3, 0) + rng.normal(size=(3 * n, 2)) * scale
    xy[: 3 * n // 2] = np.round(xy[: 3 * n // 2] * 2) / 2  # vertices and edges on pixel centres and rows
    v = np.hstack([xy, rng.uniform(0, 1, (3 * n, 1))])
    v[rng.random(3 * n) < 0.1, 2] = 0.5  # depth ties
    f = np.arange(3 * n).reshape(n, 3)
    uv = rng.uniform(0, 1, (3 * n, 2))
    parts = rng.integers(1, 9, n).astype(np.uint8)
    for cull in (False, True):
        one = _outputs(v, f, uv, parts, size, cull, 1)
        assert one == _outputs(v, f, uv, parts, size, cull, threads)
    a, b = rasterize(v, f, size), rasterize(v, f, size, threads=threads)
    assert a.triangle.tobytes() == b.triangle.tobytes() and a.bary.tobytes() == b.bary.tobytes()


def test_threads_give_bit_identical_outputs_on_the_template():
    v, f = _template_in_pixels(300)
    uv = (v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], 0)
    parts = (np.arange(len(f)) % 8 + 1).astype(np.uint8)
    for cull in (False, True):
        one = _outputs(v, f, uv, parts, (300, 300), cull, 1)
        for threads in (2, 4):
            assert one == _outputs(v, f, uv, parts, (300, 300), cull, threads)


def test_threads_more_than_rows_and_far_vertices(square):
    v, f, uv = square
    parts = np.array([2, 7], np.uint8)
    for size in ((1, 17), (3, 5), SIZE):
        assert _outputs(v, f, uv, parts, size, False, 1) == _outputs(v, f, uv, parts, size, False, 16)
    far_v, far_uv = np.vstack([v, [[1e8, 1e8, 0.0]]]), np.vstack([uv, [[0.0, 0.0]]])
    assert _outputs(far_v, f, far_uv, parts, SIZE, False, 1) == _outputs(far_v, f, far_uv, parts, SIZE, False, 3)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True, None])
def test_bad_threads(square, threads):
    v, f, uv = square
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        rasterize(v, f, SIZE, threads=threads)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        render_uv_parts(v, f, uv, np.array([2, 7], np.uint8), SIZE, threads=threads)


def test_face_index_out_of_range_with_threads(square):
    v, f, _ = square
    with pytest.raises(ShapeError, match=r"faces must index vertices in \[0, 4\), got \[0, 2, 9\] at face 1"):
        rasterize(v, np.array([[0, 1, 2], [0, 2, 9]]), SIZE, threads=3)


def test_threads_work_in_a_forked_child(square):
    # a pool started before a fork has no threads in the child: the child must start its own
    multiprocessing = pytest.importorskip("multiprocessing")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    v, f, uv = square
    parts = np.array([2, 7], np.uint8)
    want = _outputs(v, f, uv, parts, SIZE, False, 1)
    assert _outputs(v, f, uv, parts, SIZE, False, 3) == want  # the parent's pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_outputs, (v, f, uv, parts, SIZE, False, 3)).get(timeout=60)
    assert got == want
