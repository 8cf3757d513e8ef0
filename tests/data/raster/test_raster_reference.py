"""The fast CPU path equals the plain reference (`densereg_data.raster.reference`) bit for bit.

Every input the other raster tests draw (pins, soups, chunks, box sizes, bands, far vertices, the
template at several sizes and placements) is drawn by both, with and without culling, on one and on
several threads, and every output is compared byte for byte: triangle, barycentrics, U-V, parts.
"""

from __future__ import annotations

import numpy as np
import pytest
from raster_cases import ONE_FACE, SIZE, same_bits, soup, square, template_in_pixels, tri

from densereg_data.errors import ShapeError
from densereg_data.raster import reference
from densereg_data.raster.api import interpolate, rasterize, render_uv_parts
from densereg_data.raster.coverage import CHUNK

FAR = np.array([[1e8, 1e8, 0.0]])  # an unused vertex this far switches both to the float64 path


def _stack(*meshes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Several (vertices, faces) as one mesh, in order."""
    vs, fs, n = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(np.asarray(f) + n)
        n += len(v)
    return np.vstack(vs), np.vstack(fs)


def _fans(rng):
    """The watertightness test's 20 random fans around an interior point, all at depth 1 (ties)."""
    meshes = []
    for _ in range(20):
        n = 7
        angles = (np.arange(n) + rng.uniform(0, 0.8, n)) * 2 * np.pi / n
        ring = np.stack([8 + 5 * np.cos(angles), 6 + 5 * np.sin(angles)], 1)
        xy = np.vstack([rng.uniform([7, 5], [9, 7]), ring])
        meshes.append((np.hstack([xy, np.ones((n + 1, 1))]), [[0, 1 + i, 1 + (i + 1) % n] for i in range(n)]))
    return (*_stack(*meshes), SIZE)


def _random_indices(rng, n_vertices, n_faces, on_grid=False):
    v = np.hstack([rng.uniform(-3, 20, (n_vertices, 2)), rng.uniform(0, 1, (n_vertices, 1))])
    if on_grid:
        v[:, :2] = np.round(v[:, :2] * 256) / 256
    return v, rng.integers(0, n_vertices, (n_faces, 3)), SIZE


def _box_sizes(rng):
    """The box-size test's triangles (one pixel centre to larger than 8 x 8, slivers), one mesh."""
    meshes = []
    for size in (0.6, 1.5, 3.0, 4.5, 7.0, 12.0, 20.0):
        for stretch in ((1, 1), (0.2, 1), (1, 0.2)):
            for _ in range(12):
                xy = rng.uniform(8, 30, 2) + rng.uniform(-size, size, (3, 2)) * stretch
                xy = np.round(xy * 4) / 4 if rng.random() < 0.5 else np.round(xy * 256) / 256
                meshes.append((np.hstack([xy, rng.uniform(0, 1, (3, 1))]), ONE_FACE))
    return (*_stack(*meshes), (40, 41))


def _signed_zero_depths():
    """Four copies of the square at depths 0, -0, 0, -0 and a nearer one at -1e-45 (a float32
    denormal), then one at 1e39 (inf in float32): which copy wins is decided by the key alone."""
    v, f, _ = square()
    meshes = []
    for z in (0.0, -0.0, 0.0, -0.0, -1e-45, 1e39):
        w = v.copy()
        w[:, 2] = z
        meshes.append((w, f))
    return (*_stack(*meshes), SIZE)


CASES = {
    "pin_x3_y1": lambda rng: (tri((2.7, 0.7, 1.0), (3.4, 0.8, 1.0), (3.0, 1.4, 1.0)), ONE_FACE, SIZE),
    "pixel_centre_sampling": lambda rng: (tri((0.6, 0.6, 1.0), (1.4, 0.6, 1.0), (1.0, 3.4, 1.0)), ONE_FACE, SIZE),
    "square": lambda rng: (*square()[:2], SIZE),
    "square_jittered": lambda rng: (square()[0] + rng.uniform(-0.3, 0.3, (4, 3)), square()[1], SIZE),
    "square_float32_int32": lambda rng: (square()[0].astype(np.float32), square()[1].astype(np.int32), SIZE),
    "square_one_row": lambda rng: (*square()[:2], (1, 17)),
    "square_3x5": lambda rng: (*square()[:2], (3, 5)),
    "fans_with_ties": _fans,
    "integer_vertex_fan": lambda rng: (np.hstack([np.array([[5, 5], [9, 5], [5, 9], [1, 5], [5, 1]], float),
                                                  np.ones((5, 1))]),
                                       np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]]), (12, 12)),
    "near_then_far": lambda rng: (np.vstack([tri((1, 1, 1.0), (15, 1, 1.0), (8, 10, 1.0)),
                                             tri((1, 1, 9.0), (15, 1, 9.0), (8, 10, 9.0))]),
                                  np.array([[0, 1, 2], [3, 4, 5]]), SIZE),
    "far_then_near": lambda rng: (np.vstack([tri((1, 1, 9.0), (15, 1, 9.0), (8, 10, 9.0)),
                                             tri((1, 1, 1.0), (15, 1, 1.0), (8, 10, 1.0))]),
                                  np.array([[0, 1, 2], [3, 4, 5]]), SIZE),
    "duplicate_tie": lambda rng: (np.vstack([tri((1, 1, 2.0), (15, 1, 2.0), (8, 10, 2.0))] * 2),
                                  np.array([[3, 4, 5], [0, 1, 2]]), SIZE),
    "both_windings": lambda rng: (tri((1, 1, 1.0), (1, 10, 1.0), (14, 1, 1.0)), np.array([[0, 1, 2], [0, 2, 1]]),
                                  SIZE),
    "signed_zero_depths": lambda rng: _signed_zero_depths(),
    "random_indices_on_grid": lambda rng: _random_indices(rng, 30, 40, on_grid=True),
    "random_indices": lambda rng: _random_indices(rng, 50, 80),
    "clipped": lambda rng: (np.vstack([tri((-20, -20, 1.0), (30, -5, 1.0), (5, 40, 1.0)),
                                       tri((-20, -20, 1.0), (-5, -20, 1.0), (-10, -2, 1.0)),
                                       tri((100, 1, 1.0), (120, 1, 1.0), (110, 9, 1.0))]),
                            np.arange(9).reshape(3, 3), SIZE),
    "degenerate": lambda rng: (np.vstack([tri((1, 1, 1.0), (5, 5, 1.0), (9, 9, 1.0)), tri((3, 3, 1.0), (3, 3, 1.0),
                                                                                          (3, 3, 1.0))]),
                               np.array([[0, 1, 2], [3, 4, 5]]), SIZE),
    "chunks": lambda rng: (*soup(rng, 2 * CHUNK + 37, SIZE, scales=(0.3, 0.8, 2.0), on_half_pixels=False,
                                 ties=False), SIZE),
    "box_sizes": _box_sizes,
    "bands_soup": lambda rng: (*soup(rng, 3 * CHUNK + 11, (53, 47)), (53, 47)),
    "far_random_indices": lambda rng: (np.vstack([_random_indices(rng, 30, 40)[0], FAR]),
                                       rng.integers(0, 30, (40, 3)), SIZE),
    "far_huge_triangle": lambda rng: (tri((-1e8, -1e8, 1.0), (1e8, -1e8, 1.0), (0.0, 1e8, 1.0)), ONE_FACE, SIZE),
    "far_square": lambda rng: (np.vstack([square()[0], FAR]), square()[1], SIZE),
    "far_bands_soup": lambda rng: (np.vstack([soup(rng, 3 * CHUNK + 11, (53, 47))[0], FAR]),
                                   np.arange(3 * (3 * CHUNK + 11)).reshape(-1, 3), (53, 47)),
    "far_signed_zero_depths": lambda rng: (np.vstack([_signed_zero_depths()[0], FAR]), _signed_zero_depths()[1],
                                           SIZE),
    "template_64": lambda rng: (*template_in_pixels(64), (64, 64)),
    "template_256": lambda rng: (*template_in_pixels(256), (256, 256)),
    "template_300": lambda rng: (*template_in_pixels(300), (300, 300)),
    "template_1024": lambda rng: (*template_in_pixels(1024), (1024, 1024)),
    "template_256_subpixel_shift": lambda rng: (*template_in_pixels(256, shift=(0.37, 0.81)), (256, 256)),
    "template_256_partly_outside": lambda rng: (*template_in_pixels(256, shift=(-90.0, 70.0)), (256, 256)),
    "template_192x128_larger_than_image": lambda rng: (*template_in_pixels(160, fill=2.5), (192, 128)),
    "template_256_far": lambda rng: _far_template(),
}


def _far_template():
    v, f = template_in_pixels(256)
    return np.vstack([v, FAR]), f, (256, 256)


def _assert_same(got, want, what: str) -> None:
    assert same_bits(got, want), f"{what}: {np.count_nonzero(got != want)} elements differ"


@pytest.mark.parametrize("case", list(CASES))
def test_fast_equals_reference_bit_for_bit(case):
    rng = np.random.default_rng(0)
    v, f, size = CASES[case](rng)
    uv = rng.uniform(0, 1, (len(v), 2))
    parts = rng.integers(1, 9, len(f)).astype(np.uint8)
    attribute = rng.normal(size=(len(v), 3)).astype(np.float32)
    faces = np.asarray(f)
    for cull in (False, True):
        want = rasterize(v, f, size, cull_backfaces=cull, backend="reference")
        want_uv = reference.interpolate(faces, uv, want.triangle, want.bary)
        want_parts = np.where(want.triangle >= 0, parts[want.triangle], 0).astype(np.uint8)
        for threads in (1, 3):
            got = rasterize(v, f, size, cull_backfaces=cull, threads=threads)
            _assert_same(got.triangle, want.triangle, f"triangle, cull={cull}, threads={threads}")
            _assert_same(got.bary, want.bary, f"bary, cull={cull}, threads={threads}")
            r, uv_img, parts_img = render_uv_parts(v, f, uv, parts, size, cull_backfaces=cull, threads=threads)
            _assert_same(r.triangle, want.triangle, f"render_uv_parts triangle, cull={cull}, threads={threads}")
            _assert_same(r.bary, want.bary, f"render_uv_parts bary, cull={cull}, threads={threads}")
            _assert_same(uv_img, want_uv, f"U-V, cull={cull}, threads={threads}")
            _assert_same(parts_img, want_parts, f"parts, cull={cull}, threads={threads}")
        _assert_same(interpolate(got, f, attribute), reference.interpolate(faces, attribute, want.triangle, want.bary),
                     f"interpolate, cull={cull}")


def test_every_box_size_alone_equals_reference():
    # one triangle at a time: no other triangle hides any of its coverage
    v, f, size = _box_sizes(np.random.default_rng(1))
    for face in f:
        want = rasterize(v, face[None], size, backend="reference")
        got = rasterize(v, face[None], size)
        assert same_bits(got.triangle, want.triangle) and same_bits(got.bary, want.bary), face


def test_the_reference_keeps_the_pins():
    # the oracle is only as good as its own rules: the documented pins hold for it as well
    v, f, _ = square()
    r = rasterize(v, f, SIZE, backend="reference")
    expected = np.zeros(SIZE, bool)
    expected[1:9, 2:10] = True  # top-left rule: the right and bottom borders are left out
    np.testing.assert_array_equal(r.mask, expected)
    dot = rasterize(tri((2.7, 0.7, 1.0), (3.4, 0.8, 1.0), (3.0, 1.4, 1.0)), ONE_FACE, SIZE, backend="reference")
    assert dot.triangle[1, 3] == 0 and dot.mask.sum() == 1
    tie = rasterize(np.vstack([v, v]), np.vstack([f + 4, f]), SIZE, backend="reference")
    assert set(np.unique(tie.triangle[tie.mask])) == {0, 1}  # equal depths: the lower index wins
    np.testing.assert_allclose(r.bary[r.mask].sum(-1), 1.0, atol=1e-6)


def test_reference_backend_rejects_what_the_cpu_backend_rejects():
    v, f, _ = square()
    bad = v.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ShapeError, match="finite"):
        rasterize(bad, f, SIZE, backend="reference")
    with pytest.raises(ShapeError, match=r"faces must index vertices in \[0, 4\), got \[0, 2, 9\] at face 1"):
        rasterize(v, np.array([[0, 1, 2], [0, 2, 9]]), SIZE, backend="reference")
