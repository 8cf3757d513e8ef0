"""The fixed-point CPU kernels: chunks, box-size stages, the float64 path, bands of rows on threads."""

from __future__ import annotations

import numpy as np
import pytest
from raster_cases import ONE_FACE, SIZE, soup, template_in_pixels
from raster_cases import rng_fixture, square_fixture  # noqa: F401 (fixtures)

from densereg_data.errors import ShapeError
from densereg_data.raster import float64
from densereg_data.raster.api import rasterize, render_uv_parts
from densereg_data.raster.coverage import CHUNK


def test_template_fixed_and_float_paths_agree():
    v, f = template_in_pixels(256)
    got = rasterize(v, f, (256, 256)).triangle
    tri = np.empty((256, 256), np.int32)
    depth = np.empty((256, 256), np.float32)
    float64.zbuffer_float(np.ascontiguousarray(v), f, 256, 256, False, tri, depth)
    fg = (got >= 0) | (tri >= 0)
    assert (got[fg] == tri[fg]).mean() > 0.995
    assert 0.3 < (got >= 0).mean() < 0.6


def test_face_order_does_not_matter_across_chunks(rng):
    # Thousands of small triangles (boxes of no, one and several pixel centres) spread over several
    # chunks of the CPU kernel, the last one partial: drawing them in another order gives the same
    # image, up to renaming the triangles (distinct depths, so no ties).
    n = 2 * CHUNK + 37
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
                float64.zbuffer_float(v, ONE_FACE, *size_px, False, want, np.empty(size_px, np.float32))
                np.testing.assert_array_equal(got, want)


def test_trailing_zeros_fallback_agrees_with_numba():
    import numba

    from densereg_data.raster.coverage import _trailing_zeros_portable, trailing_zeros

    @numba.njit
    def both(word):
        return trailing_zeros(word), _trailing_zeros_portable(word)

    words = zip(np.random.default_rng(0).integers(0, 1 << 62, 50), np.random.default_rng(1).integers(0, 62, 50))
    for word in [1, 2, 3, 8, 1 << 40, (1 << 63) | (1 << 5)] + [int(w) | 1 << int(b) for w, b in words]:
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
    n = 3 * CHUNK + 11
    v, f = soup(rng, n, size)  # vertices and edges on pixel centres and rows, depth ties
    uv = rng.uniform(0, 1, (3 * n, 2))
    parts = rng.integers(1, 9, n).astype(np.uint8)
    for cull in (False, True):
        one = _outputs(v, f, uv, parts, size, cull, 1)
        assert one == _outputs(v, f, uv, parts, size, cull, threads)
    a, b = rasterize(v, f, size), rasterize(v, f, size, threads=threads)
    assert a.triangle.tobytes() == b.triangle.tobytes() and a.bary.tobytes() == b.bary.tobytes()


def test_threads_give_bit_identical_outputs_on_the_template():
    v, f = template_in_pixels(300)
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
    v, _, _ = square
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
