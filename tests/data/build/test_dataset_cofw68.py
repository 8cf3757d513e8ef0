"""`cofw68` reader: the real COFW-68 annotations (counts, occlusion, 1-based coordinates) and bad .mat files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import cofw68
from densereg_data.errors import LandmarkFileError

scipy_io = pytest.importorskip("scipy.io", reason="COFW-68's .mat files need scipy (the data extra)")

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "cofw68"
REAL = SHARED / "golnazghiasi+cofw68-benchmark"
ANNOTATIONS = REAL / "COFW68_Data" / "test_annotations"
MMPOSE = SHARED / "open-mmlab+mmpose" / "tests" / "data" / "cofw"
needs_real = pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason="COFW-68 annotations not found at ../shared/data/landmarks/cofw68")


@pytest.fixture(scope="module")
def real():
    return cofw68.read_annotations(REAL, "test")


@needs_real
def test_real_counts_and_occlusion(real):
    faces, problems = real
    assert problems == []
    numbers = sorted(int(n.split("_")[0]) for n in os.listdir(ANNOTATIONS) if re.fullmatch(r"\d+_points\.mat", n))
    assert len(numbers) == 253  # the shared README's count
    assert [f.source for f in faces] == [str(i) for i in numbers]
    occluded = sum(int(scipy_io.loadmat(ANNOTATIONS / f"{i}_points.mat")["Occ"].sum()) for i in numbers)
    assert sum(int((f.state == cv.OCCLUDED).sum()) for f in faces) == occluded > 0
    assert all(set(np.unique(f.state)) <= {cv.VISIBLE, cv.OCCLUDED} and f.placed.all() for f in faces)
    assert all(f.scheme == "ibug68" and f.split == "test" and f.image is None for f in faces)
    assert cofw68.available_splits(REAL) == ("test",)


@needs_real
def test_real_coordinates_are_one_based(real):
    """Face 460: Points - 1 and its box row shifted by 1; a reader off by one fails."""
    faces, _ = real
    face = next(f for f in faces if f.source == "460")
    mat = scipy_io.loadmat(ANNOTATIONS / "460_points.mat")
    np.testing.assert_array_equal(face.points, mat["Points"] - 1.0)
    np.testing.assert_array_equal(face.state, np.where(mat["Occ"][0] == 1, cv.OCCLUDED, cv.VISIBLE))
    x, y, w, h = scipy_io.loadmat(REAL / "COFW68_Data" / "cofw68_test_bboxes.mat")["bboxes"][459].astype(float)
    np.testing.assert_array_equal(face.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
    assert cofw68.COORDINATE_BASE == 1


@needs_real
@pytest.mark.skipif(not (MMPOSE / "001805.jpg").is_file(), reason="mmpose's COFW images not found in shared data")
def test_real_image_by_mmpose_number_and_points_inside_it():
    from PIL import Image

    faces, problems = cofw68.read_annotations(REAL, "test", images=MMPOSE)
    assert problems == []
    found = {f.source: f for f in faces if f.image is not None}
    assert list(found) == ["460"] and found["460"].image == MMPOSE / "001805.jpg"  # 1345 + 460
    width, height = Image.open(found["460"].image).size
    assert (found["460"].points >= -0.5).all() and (found["460"].points < [width - 0.5, height - 0.5]).all()


# --- a tiny tree in the benchmark's layout --------------------------------------------------------------

def _points(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 200, size=(68, 2))


def _save(path: Path, **variables) -> None:
    scipy_io.savemat(path, variables)


def _tree(root: Path) -> Path:
    folder = root / "COFW68_Data" / "test_annotations"
    folder.mkdir(parents=True)
    return folder


def test_bad_mat_files_are_problems_naming_the_file(tmp_path):
    folder = _tree(tmp_path)
    occ = np.zeros((1, 68), np.uint8)
    occ[0, :5] = 1
    _save(folder / "1_points.mat", Points=_points(1), Occ=occ)
    _save(folder / "2_points.mat", Pts=_points(2), Occ=occ)
    with h5py.File(tmp_path / "v73.h5", "w", userblock_size=512) as h:  # MATLAB -v7.3: 512-byte header + HDF5
        h["Points"] = _points(3)
    data = bytearray((tmp_path / "v73.h5").read_bytes())
    data[:38] = b"MATLAB 7.3 MAT-file, Platform: GLNXA64"
    (folder / "3_points.mat").write_bytes(bytes(data))
    (folder / "4_points.mat").write_bytes((folder / "1_points.mat").read_bytes()[:300])
    _save(folder / "5_points.mat", Points=_points(5)[:67], Occ=occ)
    _save(folder / "6_points.mat", Points=_points(6), Occ=occ * 2)
    (folder / "7_points.mat").write_bytes(b"not a mat file at all")
    scipy_io.savemat(folder / "8_points.mat", {"Points": np.zeros((3000, 1000))}, do_compression=True)
    _save(folder / "9_points.mat", Points=_points(9), Occ=np.zeros((1, 67)))
    (folder / "notes.txt").write_text("ignored")
    (folder / "x_points.mat").write_bytes(b"ignored: not <i>_points.mat")
    faces, problems = cofw68.read_annotations(tmp_path, "test")
    assert [f.source for f in faces] == ["1"]
    np.testing.assert_allclose(faces[0].points, _points(1) - 1)
    assert (faces[0].state[:5] == cv.OCCLUDED).all() and (faces[0].state[5:] == cv.VISIBLE).all()
    assert faces[0].box is None  # no bboxes file
    reasons = {p.source.split("/")[-1]: p.reason for p in problems}
    assert sorted(reasons) == [f"{i}_points.mat" for i in (2, 3, 4, 5, 6, 7, 8, 9)]
    assert "no Points variable" in reasons["2_points.mat"]
    assert "v7.3 (HDF5)" in reasons["3_points.mat"]
    assert "not a readable MATLAB .mat" in reasons["4_points.mat"]
    assert "Points must be 68x2, got 67x2" in reasons["5_points.mat"]
    assert "Occ must hold 0 (visible) or 1 (occluded)" in reasons["6_points.mat"]
    assert "not a readable MATLAB .mat" in reasons["7_points.mat"]
    assert "inflate to more than" in reasons["8_points.mat"]
    assert "Occ must be 1x68, got 1x67" in reasons["9_points.mat"]
    assert all(p.source in p.reason and "\n" not in p.reason and p.split == "test" for p in problems)


def test_boxes_images_and_whole_file_errors(tmp_path):
    folder = _tree(tmp_path)
    for i in (2, 3, 10):
        _save(folder / f"{i}_points.mat", Points=_points(i), Occ=np.zeros((1, 68)))
    boxes = tmp_path / "COFW68_Data" / "cofw68_test_bboxes.mat"
    _save(boxes, bboxes=np.array([[1, 1, 5, 5], [11, 21, 100, 90], [3, 3, 4, 4]], np.int16))
    images = tmp_path / "extracted"
    images.mkdir()
    (images / "2.jpg").write_bytes(b"jpeg")
    (folder / "im_3.png").write_bytes(b"png")  # the authors' ReadCofw68Data.m name, in its folder
    faces, problems = cofw68.read_annotations(tmp_path, "test", images=images)
    assert problems == [] and [f.source for f in faces] == ["2", "3", "10"]
    np.testing.assert_array_equal(faces[0].box, [10, 20, 110, 110])
    assert faces[2].box is None  # no row 10
    assert [f.image for f in faces] == [images / "2.jpg", None, None]
    assert cofw68.read_annotations(tmp_path, "test")[0][1].image == folder / "im_3.png"
    boxes.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 200)
    with pytest.raises(LandmarkFileError, match="COFW-68 boxes unreadable") as info:
        cofw68.read_annotations(tmp_path, "test")
    assert str(boxes) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(LandmarkFileError, match="annotations not found"):
        cofw68.read_annotations(tmp_path / "nowhere", "test")
    with pytest.raises(LandmarkFileError, match="no split 'train'"):
        cofw68.read_annotations(tmp_path, "train")
