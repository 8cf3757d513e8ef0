"""`aflw2000-3d` reader: the real AFLW2000-3D pairs (count, 1-based points, the pose conversion checked against
the 3D points themselves) and bad .mat files in a tiny tree."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import aflw2000_3d
from densereg_data.errors import LandmarkFileError
from densereg_data.geometry.camera import rotation_from_pose

scipy_io = pytest.importorskip("scipy.io", reason="AFLW2000-3D's .mat files need scipy (the data extra)")

REAL = (Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "aflw2000_3d"
        / "yfeng95+PRNet" / "TestImages" / "AFLW2000")
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="AFLW2000-3D pairs not found at ../shared/data/landmarks/aflw2000_3d")


@pytest.fixture(scope="module")
def real():
    return aflw2000_3d.read_annotations(REAL, "test")


@needs_real
def test_real_count_images_and_states(real):
    faces, problems = real
    assert problems == []
    mats = sorted(p.stem for p in REAL.glob("image*.mat"))
    assert len(mats) == 16  # the shared README's count
    assert [f.source for f in faces] == [f"{m}.jpg" for m in mats]
    assert [f.image for f in faces] == [REAL / f"{m}.jpg" for m in mats]
    assert all((f.state == cv.VISIBLE).all() and f.split == "test" and f.pose is not None for f in faces)
    assert aflw2000_3d.available_splits(REAL) == ("test",)


@needs_real
def test_real_points_are_pt3d_68_minus_one(real):
    faces, _ = real
    for face in faces:
        pt3d = scipy_io.loadmat(REAL / face.extra["where"])["pt3d_68"]
        np.testing.assert_array_equal(face.points, pt3d[:2].T - 1.0)
    assert aflw2000_3d.COORDINATE_BASE == 1


@needs_real
def test_real_pose_agrees_with_the_3d_points(real):
    """densereg's camera with the converted pose looks where the 3D points do: the nose points along the
    rotated +z (yaw and pitch) and the eye line along the rotated +x (roll). Keeping 3DDFA's angles
    (negated or not) fails both on the large poses."""
    faces, _ = real
    for face in faces:
        pt3d = scipy_io.loadmat(REAL / face.extra["where"])["pt3d_68"]  # x right, y down, z to the viewer
        rotation = rotation_from_pose(*face.pose)
        nose = pt3d[:, 30] - pt3d[:, [36, 39, 42, 45, 48, 54]].mean(axis=1)
        facing = np.diag([1.0, -1.0, 1.0]) @ rotation @ [0.0, 0.0, 1.0]
        assert nose @ facing / np.linalg.norm(nose) > 0.9, face.source
        eyes, across = pt3d[:2, 45] - pt3d[:2, 36], np.diag([1.0, -1.0]) @ rotation[:2, 0]
        cos = eyes @ across / np.linalg.norm(eyes) / np.linalg.norm(across)
        assert np.degrees(np.arccos(min(cos, 1.0))) < 5.0, face.source
    pose = {f.source: f.pose for f in faces}["image00475.jpg"]  # (65.6, 40.0, 20.0) degrees in the file
    np.testing.assert_allclose(pose, [-61.12, -49.07, 36.56], atol=0.01)


def test_pose_conversion_of_single_axis_rotations_negates_and_reorders():
    """One axis at a time 3DDFA's [pitch yaw roll] (radians) is densereg's (yaw, pitch, roll) negated (degrees)."""
    for axis, expected in ((0, [0.0, -20.0, 0.0]), (1, [-20.0, 0.0, 0.0]), (2, [0.0, 0.0, -20.0])):
        para = np.zeros(7)
        para[axis] = np.radians(20.0)
        np.testing.assert_allclose(aflw2000_3d.pose_from_3ddfa(para), expected, atol=1e-9)
    np.testing.assert_allclose(aflw2000_3d.pose_from_3ddfa(np.zeros((1, 7))), [0, 0, 0], atol=1e-12)


# --- a tiny tree in the release's layout ----------------------------------------------------------------

def _pt3d(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 400, size=(3, 68))


def test_bad_mat_files_are_problems_naming_the_file(tmp_path):
    pose = np.array([[0.1, 0.2, 0.0, 200, 200, 0, 0.001]])
    scipy_io.savemat(tmp_path / "image00001.mat", {"pt3d_68": _pt3d(1), "Pose_Para": pose})
    (tmp_path / "image00001.jpg").write_bytes(b"jpeg")
    scipy_io.savemat(tmp_path / "image00002.mat", {"pt3d_68": _pt3d(2)})  # no pose: kept, pose None
    scipy_io.savemat(tmp_path / "image00003.mat", {"pt2d": _pt3d(3)[:2, :21], "Pose_Para": pose})
    scipy_io.savemat(tmp_path / "image00004.mat", {"pt3d_68": _pt3d(4)[:, :67]})
    nan = _pt3d(5)
    nan[0, 3] = np.nan
    scipy_io.savemat(tmp_path / "image00005.mat", {"pt3d_68": nan})
    scipy_io.savemat(tmp_path / "image00006.mat", {"pt3d_68": _pt3d(6), "Pose_Para": pose[:, :3]})
    (tmp_path / "image00007.mat").write_bytes((tmp_path / "image00001.mat").read_bytes()[:200])  # truncated
    with h5py.File(tmp_path / "v73.h5", "w", userblock_size=512) as h:  # MATLAB -v7.3: 512-byte header + HDF5
        h["pt3d_68"] = _pt3d(8)
    data = bytearray((tmp_path / "v73.h5").read_bytes())
    data[:38] = b"MATLAB 7.3 MAT-file, Platform: GLNXA64"
    (tmp_path / "image00008.mat").write_bytes(bytes(data))
    (tmp_path / "image00009.mat").write_bytes(b"not a mat file")
    (tmp_path / "notes.mat").write_bytes(b"ignored: not imageNNNNN.mat")
    faces, problems = aflw2000_3d.read_annotations(tmp_path, "test")
    assert [f.source for f in faces] == ["image00001.jpg", "image00002.jpg"]
    np.testing.assert_array_equal(faces[0].points, _pt3d(1)[:2].T - 1)
    assert faces[0].image == tmp_path / "image00001.jpg" and faces[1].image is None
    np.testing.assert_allclose(faces[0].pose, aflw2000_3d.pose_from_3ddfa(pose[0]))
    assert faces[1].pose is None
    reasons = {p.source: p.reason for p in problems}
    assert sorted(reasons) == [f"image0000{i}.mat" for i in range(3, 10)]
    assert "no pt3d_68 variable" in reasons["image00003.mat"]
    assert "pt3d_68 must be 3x68, got 3x67" in reasons["image00004.mat"]
    assert "NaN or infinite" in reasons["image00005.mat"]
    assert "Pose_Para must be 1x7, got 1x3" in reasons["image00006.mat"]
    assert "not a readable MATLAB .mat" in reasons["image00007.mat"]
    assert "v7.3 (HDF5)" in reasons["image00008.mat"]
    assert "not a readable MATLAB .mat" in reasons["image00009.mat"]
    assert all(p.source in p.reason and "\n" not in p.reason and p.split == "test" for p in problems)


def test_images_elsewhere_and_whole_root_errors(tmp_path):
    scipy_io.savemat(tmp_path / "image00010.mat", {"pt3d_68": _pt3d(10)})
    elsewhere = tmp_path / "jpgs"
    elsewhere.mkdir()
    (elsewhere / "image00010.jpg").write_bytes(b"jpeg")
    faces, _ = aflw2000_3d.read_annotations(tmp_path, "test", images=elsewhere)
    assert faces[0].image == elsewhere / "image00010.jpg"
    with pytest.raises(LandmarkFileError, match="AFLW2000-3D folder not found"):
        aflw2000_3d.read_annotations(tmp_path / "nowhere", "test")
    with pytest.raises(LandmarkFileError, match="no split 'train'"):
        aflw2000_3d.read_annotations(tmp_path, "train")
