"""Pins of the conventions page: bins, flips, landmark numbering, pixel centres."""

from __future__ import annotations

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.io.landmarks import read_pts
from densereg_data.raster.api import rasterize


def test_bins_round_trip_exactly():
    u = np.r_[0.0, 1.0, np.linspace(0, 1, 1001), np.random.default_rng(0).uniform(size=1000)]
    b, r = cv.encode_bins(u, 10)
    assert b.min() >= 1 and b.max() <= 10, "class 0 is kept for background"
    assert np.all((r >= 0) & (r <= 1))
    assert cv.decode_bins(b, r, 10) == pytest.approx(u, abs=1e-12)
    assert cv.encode_bins(np.array([0.0, 0.05, 0.1, 0.999, 1.0]))[0].tolist() == [1, 1, 2, 10, 10]


def test_flip_tables_are_involutions():
    f = np.array(cv.LANDMARK_FLIP)
    assert np.array_equal(f[f], np.arange(68))
    assert f[36] == 45 and f[0] == 16 and f[30] == 30 and f[48] == 54 and f[62] == 62
    p = np.array(cv.PART_FLIP)
    assert np.array_equal(p[p], np.arange(9)) and p[0] == 0
    assert cv.PART_NAMES[p[1] - 1] == "left_brow" and cv.PART_NAMES[p[3] - 1] == "left_eye"


def test_pts_one_one_is_the_first_pixel_centre(tmp_path):
    (tmp_path / "a.pts").write_text("version: 1\nn_points:  68\n{\n" + "1 1\n" * 68 + "}")
    assert read_pts(tmp_path / "a.pts").points[0].tolist() == [0.0, 0.0]


def test_a_point_at_x3_y1_colours_raster_row1_col3():
    verts = np.array([[3.0, 1.0, 0.0], [3.4, 1.0, 0.0], [3.0, 1.4, 0.0]]) - [0.1, 0.1, 0.0]
    r = rasterize(verts, np.array([[0, 1, 2]]), (4, 6))
    assert r.triangle[1, 3] == 0 and (r.triangle >= 0).sum() == 1


def test_eye_distance_uses_points_37_and_46_one_based():
    lm = np.zeros((68, 2))
    lm[36], lm[45] = (10, 0), (40, 0)
    assert cv.eye_distance(lm) == 30.0
