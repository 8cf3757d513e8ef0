"""`label_face`: arrays or files in, `DenseLabels` out, with the documented shapes and dtypes."""

from __future__ import annotations

import numpy as np
import pytest

import densereg_data
from densereg_data.errors import FitError, ShapeError
from densereg_data.face.api import DenseLabels, label_face
from densereg_data.io.images import write_png
from densereg_data.io.landmarks import read_landmarks, write_pts
from densereg_data.testing import synthetic_face


@pytest.fixture(scope="module")
def face_files(tmp_path_factory, fitter):
    """A non-square image and its .pts; returns (png path, pts path, image array, landmarks as read back)."""
    folder = tmp_path_factory.mktemp("face")
    landmarks = synthetic_face(fitter, np.random.default_rng(7), max_yaw=25, size=150).landmarks + [20.0, 5.0]
    image = np.random.default_rng(8).integers(0, 256, size=(170, 190, 3), dtype=np.uint8)
    write_png(folder / "f.png", image)
    write_pts(folder / "f.pts", landmarks)
    return folder / "f.png", folder / "f.pts", image, read_landmarks(folder / "f.pts").points


def _same(a: DenseLabels, b: DenseLabels) -> None:
    for name in ("image", "uv", "parts", "mask", "landmarks", "crop_from_image", "coefficients", "pose"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.fit_nme == b.fit_nme and (a.model, a.model_id, a.model_hash) == (b.model, b.model_id, b.model_hash)


@pytest.mark.parametrize("size", [None, 48])
def test_arrays_and_paths_give_identical_labels(face_files, size):
    png, pts, image, landmarks = face_files
    from_files = label_face(png, pts, size=size)
    _same(from_files, label_face(image, landmarks, size=size))
    _same(from_files, label_face(str(png), str(pts), "menpo3d", size))


@pytest.mark.parametrize("size, shape", [(None, (170, 190)), (48, (48, 48))])
def test_documented_shapes_and_dtypes(face_files, face_model, size, shape):
    labels = label_face(face_files[2], face_files[3], face_model, size=size)
    h, w = shape
    assert labels.image.shape == (h, w, 3) and labels.image.dtype == np.uint8
    assert labels.uv.shape == (h, w, 2) and labels.uv.dtype == np.float32
    assert labels.parts.shape == (h, w) and labels.parts.dtype == np.uint8
    assert labels.mask.dtype == bool and np.array_equal(labels.mask, labels.parts > 0) and labels.mask.any()
    assert np.all(labels.uv[~labels.mask] == 0) and labels.parts.max() <= 8
    assert labels.landmarks.shape == (68, 2) and labels.landmarks.dtype == np.float64
    assert labels.crop_from_image.shape == (2, 3) and labels.pose.shape == (3,)
    assert labels.coefficients.shape == (face_model.shape.n_functions, 3) and 0 < labels.fit_nme < 0.05
    assert labels.model == "menpo3d" and labels.model_hash == face_model.hash
    assert set(labels.seconds) == {"crop", "fit", "render"}


def test_crop_landmarks_follow_the_crop(face_files):
    _, _, image, landmarks = face_files
    labels = label_face(image, landmarks, size=48)
    a = labels.crop_from_image
    assert labels.landmarks == pytest.approx(landmarks @ a[:, :2].T + a[:, 2])


def test_errors_name_the_landmark_file(face_files, tmp_path):
    png = face_files[0]
    write_pts(tmp_path / "line.pts", np.c_[np.linspace(10, 150, 68), np.linspace(20, 90, 68)])
    with pytest.raises(FitError, match=r"line\.pts: .*degenerate"):
        label_face(png, tmp_path / "line.pts")


def test_bad_image_arrays_are_refused(face_files):
    with pytest.raises(ShapeError, match=r"image must be \(H, W, 3\) uint8, got \(170, 190\) uint8"):
        label_face(face_files[2][..., 0], face_files[3])


def test_the_package_exposes_the_api():
    assert densereg_data.label_face is label_face and densereg_data.DenseLabels is DenseLabels
    from densereg_data.face import models

    assert densereg_data.load_face_model is models.load_face_model and densereg_data.FACE_MODELS is models.FACE_MODELS
