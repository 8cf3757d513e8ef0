"""Inputs shared by the raster tests: tiny meshes, triangle soups, the menpo3d template in pixels, the
bit-for-bit comparison of two outputs, and the fixtures `rng` and `square` (test modules import `rng_fixture` and `square_fixture`:
a conftest.py here would shadow tests/data/conftest.py, which other tests import by name)."""

from __future__ import annotations

import numpy as np
import pytest

SIZE = (12, 17)  # non-square (height, width)
ONE_FACE = np.array([[0, 1, 2]])


def tri(*xyz: tuple[float, float, float]) -> np.ndarray:
    """One triangle's vertices, (3, 3) float64 (x, y, depth) pixels."""
    return np.array(xyz, dtype=np.float64)


def square() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two triangles tiling the square [2, 10] x [1, 9] (x, y pixels), shared diagonal, known UV:
    vertices (4, 3) float64, faces (2, 3) int64 (both counter-clockwise on screen), uv (4, 2)."""
    vertices = np.array([[2.0, 1.0, 5.0], [10.0, 1.0, 5.0], [10.0, 9.0, 5.0], [2.0, 9.0, 5.0]])
    faces = np.array([[0, 3, 2], [0, 2, 1]], dtype=np.int64)
    uv = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # u right, v up
    return vertices, faces, uv


def soup(rng: np.random.Generator, n: int, size: tuple[int, int], scales=(0.3, 1.0, 2.5, 6.0, 14.0),
         on_half_pixels: bool = True, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """n separate triangles of every box size around random centres in (and just outside) the image:
    vertices (3n, 3) float64, faces (n, 3). With on_half_pixels, the first half of the vertices lie
    on pixel centres and half-pixel lines (edges through centres); with ties, some depths repeat."""
    h, w = size
    centres = rng.uniform([-3, -3], [w + 3, h + 3], (n, 2))
    scale = rng.choice(scales, (3 * n, 1))
    xy = np.repeat(centres, 3, 0) + rng.normal(size=(3 * n, 2)) * scale
    if on_half_pixels:
        xy[: 3 * n // 2] = np.round(xy[: 3 * n // 2] * 2) / 2
    v = np.hstack([xy, rng.uniform(0, 1, (3 * n, 1))])
    if ties:
        v[rng.random(3 * n) < 0.1, 2] = 0.5
    return v, np.arange(3 * n).reshape(n, 3)


def template_in_pixels(n: int, *, fill: float = 0.8, shift: tuple[float, float] = (0.0, 0.0)):
    """menpo3d's face template projected so it fills `fill` of an n x n image, moved by shift (x, y)
    pixels: vertices (53349, 3) float64, faces (106111, 3). Skips without menpo3d."""
    m3io = pytest.importorskip("menpo3d.io")
    from densereg_data.face.pictures import frontal_in_pixels

    m = m3io.import_builtin_asset("template.ply")
    v = frontal_in_pixels(m.points, n, fill=fill)
    v[:, 0] += shift[0]
    v[:, 1] += shift[1]
    return v, m.trilist


@pytest.fixture(name="rng")
def rng_fixture() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(name="square")
def square_fixture():
    """Two triangles tiling [2, 10] x [1, 9]: (vertices, faces, uv), see `square`."""
    return square()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, dtype and bytes (-0.0 differs from 0.0, unlike np.array_equal)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
