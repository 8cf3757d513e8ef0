"""benchmarks/eos_peer.py: our template fitted by eos (a sanity check of the peer measurement, not a timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
DEV = ROOT.parent / "shared" / "data" / "300w-dev" / "02_Outdoor"


def _load_peer():
    spec = importlib.util.spec_from_file_location("eos_peer", ROOT / "benchmarks" / "eos_peer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("eos_peer", module)  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


peer = _load_peer()
needs_eos = pytest.mark.skipif(not peer.eos_available(), reason="eos is not installed (pip install eos-py)")


def test_edge_topology_of_two_triangles_is_one_based_with_zero_for_a_border():
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    adjacent_faces, adjacent_vertices = peer.edge_topology_arrays(faces)
    shared = np.flatnonzero((adjacent_vertices == [1, 3]).all(axis=1))  # edge 0-2, 1-based
    assert len(adjacent_vertices) == 5 and len(shared) == 1
    assert sorted(adjacent_faces[shared[0]]) == [1, 2]
    border = np.delete(adjacent_faces, shared[0], axis=0)
    assert np.all(border[:, 0] == 0) and set(border[:, 1]) == {1, 2}


@pytest.fixture(scope="module")
def bundle(fitter):
    return peer.build_eos_model(fitter)


@needs_eos
@pytest.mark.slow
def test_eos_pixel_convention_round_trips(bundle):
    """Points projected by a known camera come back from eos's linear fit to within 0.05 px: no 0.5/1 px shift."""
    from densereg_data.geometry.camera import FLIP_YZ, Camera

    fitter = bundle.fitter
    camera = Camera("orthographic", FLIP_YZ, np.array([201.0, 252.0, 0.0]), scale=2.5)
    ids = bundle.vertex_ids
    x = camera.project(fitter.model.mean[ids])[:, :2]
    _, _, _, coeffs, cam = peer.eos_fit_full(bundle, x, (500, 400), "eos_linear")
    back = cam.project(fitter.model.shape(coeffs)[ids])[:, :2]
    assert np.abs((back - x).mean(axis=0)).max() < 0.05
    assert np.abs(back - x).max() < 0.5


@needs_eos
@pytest.mark.slow
@pytest.mark.skipif(not DEV.is_dir(), reason=f"real data absent: {DEV}")
@pytest.mark.parametrize("contour", [True, False])
def test_eos_fits_three_real_faces(bundle, contour):
    from densereg_data.io.images import image_size
    from densereg_data.io.landmarks import read_pts

    for pts in sorted(DEV.glob("*.pts"))[:3]:
        x = read_pts(pts).points
        fitted, seconds = peer.eos_fit(bundle, x, image_size(pts.with_suffix(".jpg")), contour=contour)
        assert fitted.shape == (68, 2) and np.all(np.isfinite(fitted)) and seconds > 0
        assert peer.nme(fitted, x) < 0.2, pts.name
