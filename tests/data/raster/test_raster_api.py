"""Pins, round trips and bad input of `densereg_data.raster.api` (CPU backend)."""

from __future__ import annotations

import numpy as np
import pytest
from raster_cases import ONE_FACE, SIZE, tri
from raster_cases import rng_fixture, square_fixture  # noqa: F401 (fixtures)

from densereg_data.errors import ShapeError
from densereg_data.raster.api import Raster, face_labels, interpolate, rasterize, render_uv_parts

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
    with pytest.raises(ValueError, match="valid backends: cpu, pyrender, reference"):
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
