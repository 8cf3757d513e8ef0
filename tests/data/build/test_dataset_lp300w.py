"""`300w-lp` reader: trees in the release's layout (built here with scipy; the shared copy has only mmpose's json
of two faces, whose points are ``pts_2d`` unchanged): counts per subset, 1-based points, the _Flip mirror, poses
and bad .mat files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import lp300w
from densereg_data.build.datasets.aflw2000_3d import pose_from_3ddfa
from densereg_data.errors import LandmarkFileError

scipy_io = pytest.importorskip("scipy.io", reason="300W-LP's .mat files need scipy (the data extra)")

MMPOSE = (Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "300w_lp" / "open-mmlab+mmpose"
          / "tests" / "data" / "300wlp")


def _pts(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(20, 430, size=(68, 2))


def _landmarks(root: Path, subset: str, name: str, pts_2d, pts_3d=None, **extra) -> Path:
    folder = root / "landmarks" / subset
    folder.mkdir(parents=True, exist_ok=True)
    variables = {k: v for k, v in (("pts_2d", pts_2d), ("pts_3d", pts_3d)) if v is not None} | extra
    scipy_io.savemat(folder / f"{name}_pts.mat", variables)
    return folder / f"{name}_pts.mat"


def _image(root: Path, subset: str, name: str, pose=None) -> None:
    folder = root / subset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jpg").write_bytes(b"jpeg")
    if pose is not None:
        scipy_io.savemat(folder / f"{name}.mat", {"Pose_Para": np.array([pose]), "pt2d": np.zeros((2, 68))})


@pytest.mark.skipif(not (MMPOSE / "test_300wlp.json").is_file(), reason="mmpose's 300W-LP sample not found in shared data")
def test_real_pts_2d_from_mmpose_json_read_one_based(tmp_path):
    """mmpose's converter copies ``pts_2d`` unchanged into its json: laid out as released, they read as json - 1
    and fall inside their real 450x450 images."""
    from PIL import Image

    doc = json.loads((MMPOSE / "test_300wlp.json").read_text())
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    expected = {}
    for ann in doc["annotations"]:
        name = names[ann["image_id"]][:-4]
        pts = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        _landmarks(tmp_path, "AFW", name, pts)
        (tmp_path / "AFW").mkdir(exist_ok=True)
        os.symlink(MMPOSE / f"{name}.jpg", tmp_path / "AFW" / f"{name}.jpg")
        expected[f"AFW/{name}.jpg"] = pts
    faces, problems = lp300w.read_annotations(tmp_path, "train")
    assert problems == [] and sorted(f.source for f in faces) == sorted(expected) and len(faces) == 2
    for face in faces:
        np.testing.assert_array_equal(face.points, expected[face.source] - 1.0)
        assert face.image == tmp_path / face.source and face.pose is None
        width, height = Image.open(face.image).size
        assert (width, height) == (lp300w.IMAGE_WIDTH, 450)
        assert (face.points >= -0.5).all() and (face.points < [width - 0.5, height - 0.5]).all()
    assert lp300w.COORDINATE_BASE == 1


def test_counts_points_poses_and_mirrors_in_a_release_tree(tmp_path):
    root = tmp_path / "300W_LP"
    pose = [0.1, -0.5, 0.2, 200.0, 210.0, 0.0, 0.0012]
    for subset, names in {"AFW": ["AFW_1_1_0", "AFW_1_1_3"], "IBUG": ["IBUG_image_003_1_0"], "HELEN": []}.items():
        for i, name in enumerate(names):
            _landmarks(root, subset, name, _pts(i), _pts(i + 10))
            _image(root, subset, name, pose if i == 0 else None)
    flip_pose = [0.1, 0.5, -0.2, 250.0, 210.0, 0.0, 0.0012]
    _image(root, "AFW_Flip", "AFW_1_1_3", flip_pose)
    (root / "Code").mkdir()  # the release's code folder: not a subset
    faces, problems = lp300w.read_annotations(root, "train")
    assert problems == []
    globbed = {s: len(list((root / "landmarks" / s).glob("*_pts.mat"))) for s in ("AFW", "IBUG", "HELEN")}
    globbed["AFW_Flip"] = len(list((root / "AFW_Flip").glob("*.jpg")))
    assert {s: sum(f.subsets == (s,) for f in faces) for s in globbed} == globbed
    by = {f.source: f for f in faces}
    assert list(by) == ["AFW/AFW_1_1_0.jpg", "AFW/AFW_1_1_3.jpg", "IBUG/IBUG_image_003_1_0.jpg", "AFW_Flip/AFW_1_1_3.jpg"]
    plain, flipped = by["AFW/AFW_1_1_3.jpg"], by["AFW_Flip/AFW_1_1_3.jpg"]
    np.testing.assert_array_equal(plain.points, _pts(1) - 1)
    np.testing.assert_array_equal(plain.extra["points_3d"], _pts(11) - 1)
    mirrored = (_pts(1) - 1)[list(cv.LANDMARK_FLIP)]
    np.testing.assert_array_equal(flipped.points, np.column_stack([449 - mirrored[:, 0], mirrored[:, 1]]))
    np.testing.assert_array_equal(flipped.points[36], [449 - (_pts(1)[45, 0] - 1), _pts(1)[45, 1] - 1])
    assert flipped.extra["mirrored"] and not plain.extra["mirrored"]
    np.testing.assert_allclose(by["AFW/AFW_1_1_0.jpg"].pose, pose_from_3ddfa(pose))
    assert plain.pose is None  # no image .mat
    np.testing.assert_allclose(flipped.pose, pose_from_3ddfa(flip_pose))  # the _Flip .mat's own (mirrored) fit
    assert all(f.image == root / f.source and (f.state == cv.VISIBLE).all() and f.split == "train" for f in faces)
    assert lp300w.available_splits(root) == ("train",)


def test_bad_files_are_problems_naming_them(tmp_path):
    _landmarks(tmp_path, "LFPW", "LFPW_a_0", _pts(0))
    _landmarks(tmp_path, "LFPW", "LFPW_b_0", _pts(1).T)  # 2x68
    _landmarks(tmp_path, "LFPW", "LFPW_c_0", None, pts=_pts(2))  # no pts_2d
    good = (tmp_path / "landmarks" / "LFPW" / "LFPW_a_0_pts.mat").read_bytes()
    (tmp_path / "landmarks" / "LFPW" / "LFPW_d_0_pts.mat").write_bytes(good[:150])  # truncated
    (tmp_path / "landmarks" / "LFPW" / "LFPW_e_0_pts.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600))  # HDF5
    _landmarks(tmp_path, "LFPW", "LFPW_f_0", _pts(5))
    _image(tmp_path, "LFPW", "LFPW_f_0", [0.0, 0.1, 0.2])  # Pose_Para 1x3
    _image(tmp_path, "LFPW_Flip", "LFPW_g_0")  # no landmarks to mirror
    (tmp_path / "landmarks" / "LFPW" / "notes.txt").write_text("ignored")
    faces, problems = lp300w.read_annotations(tmp_path, "train")
    assert [f.source for f in faces] == ["LFPW/LFPW_a_0.jpg"]
    reasons = {p.source: p.reason for p in problems}
    assert sorted(reasons) == ["LFPW/LFPW_b_0.jpg", "LFPW/LFPW_c_0.jpg", "LFPW/LFPW_d_0.jpg", "LFPW/LFPW_e_0.jpg",
                               "LFPW/LFPW_f_0.jpg", "LFPW_Flip/LFPW_g_0.jpg"]
    assert "pts_2d must be 68x2, got 2x68 in landmarks/LFPW/LFPW_b_0_pts.mat" in reasons["LFPW/LFPW_b_0.jpg"]
    assert "no pts_2d variable in landmarks/LFPW/LFPW_c_0_pts.mat" in reasons["LFPW/LFPW_c_0.jpg"]
    assert "not a readable MATLAB .mat" in reasons["LFPW/LFPW_d_0.jpg"] and "LFPW_d_0_pts.mat" in reasons["LFPW/LFPW_d_0.jpg"]
    assert "v7.3 (HDF5)" in reasons["LFPW/LFPW_e_0.jpg"] and "LFPW_e_0_pts.mat" in reasons["LFPW/LFPW_e_0.jpg"]
    assert "Pose_Para must be 1x7, got 1x3 in LFPW/LFPW_f_0.mat" in reasons["LFPW/LFPW_f_0.jpg"]
    assert "no landmarks to mirror" in reasons["LFPW_Flip/LFPW_g_0.jpg"]
    assert all("\n" not in p.reason and p.split == "train" for p in problems)


def test_whole_root_errors_are_one_line(tmp_path):
    with pytest.raises(LandmarkFileError, match="300W-LP landmarks not found"):
        lp300w.read_annotations(tmp_path, "train")
    with pytest.raises(LandmarkFileError, match="no split 'test'"):
        lp300w.read_annotations(tmp_path, "test")
