"""benchmarks/eos_sfm_peer.py: eos's own pipeline on the Surrey Face Model (a sanity check of the peer
measurement, not a timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
DEV = ROOT.parent / "shared" / "data" / "300w-dev" / "02_Outdoor"
SFM = ROOT.parent / "shared" / "data" / "face-models" / "sfm"


def _load_peer():
    spec = importlib.util.spec_from_file_location("eos_sfm_peer", ROOT / "benchmarks" / "eos_sfm_peer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("eos_sfm_peer", module)  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


peer = _load_peer()
needs_eos = pytest.mark.skipif(not peer.eos_peer.eos_available(), reason="eos is not installed (pip install eos-py)")
needs_data = pytest.mark.skipif(not DEV.is_dir() or bool(peer.missing_files(SFM)),
                                reason=f"real data absent: {DEV} or eos's SFM files in {SFM}")


def test_camera_from_eos_projects_as_the_affine():
    """Convention: eos's (3, 4) affine and the Camera made from it put every model point on the same pixel."""
    from densereg_data.geometry.camera import FLIP_YZ, rotation_from_pose

    rotation = FLIP_YZ @ rotation_from_pose(30.0, -10.0, 5.0)
    affine = np.hstack([2.5 * rotation, [[201.0], [252.0], [0.0]]])
    affine[2] = (0.0, 0.0, 0.0, 1.0)  # eos's third row
    points = np.random.default_rng(0).normal(scale=50.0, size=(20, 3))
    camera = peer.eos_peer.camera_from_eos(affine)
    np.testing.assert_allclose(camera.project(points)[:, :2], peer.affine_project(affine, points), atol=1e-9)


def test_mapped_points_are_nan_where_a_landmark_has_no_vertex():
    xy = np.arange(10.0).reshape(5, 2)
    out = peer.mapped_points(xy, np.array([4, -1, 0]))
    np.testing.assert_array_equal(out[[0, 2]], xy[[4, 0]])
    assert np.isnan(out[1]).all()


@pytest.fixture(scope="module")
def three():
    return peer.compare(DEV, limit=3, folder=SFM, repeats=1)


@needs_eos
@needs_data
def test_eos_sfm_fits_three_real_faces_sanely(three):
    """eos's fits are finite and within 10% NME read either way; ours run on the same faces."""
    for fitter in peer.FITTERS:
        rec = three[fitter]
        assert rec["error"] == ["", "", ""], fitter
        for key in peer.ERRORS:
            values = np.array(rec[key])
            assert np.all(np.isfinite(values)) and np.all(values < 0.10), (fitter, key, values)
    assert len(three["mapped"]) == 50


@needs_eos
@needs_data
def test_eos_camera_converts_consistently(three):
    """eos's affine on eos's mesh == our Camera (from that affine) on our shape of eos's coefficients."""
    assert three["camera_check_px"] < 1e-3
