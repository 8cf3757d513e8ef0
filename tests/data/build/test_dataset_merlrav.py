"""`merlrav` reader: the real MERL-RAV labels (counts per split and view, the three visibility kinds, the
1-based coordinates, AFLW images found by name) and bad label files in a tiny tree."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import merlrav
from densereg_data.errors import LandmarkFileError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "merl_rav"
REAL = SHARED / "abhi1kumar+MERL-RAV_dataset"
MMPOSE = SHARED / "open-mmlab+mmpose" / "tests" / "data" / "aflw"
needs_real = pytest.mark.skipif(not (REAL / "merl_rav_labels").is_dir(),
                                reason="MERL-RAV labels not found at ../shared/data/landmarks/merl_rav")
SETS = {"train": "trainset", "test": "testset"}


def _numbers(path: Path) -> np.ndarray:
    """(68, 2) the numbers between the braces exactly as written (the test's own parse)."""
    text = path.read_text()
    body = text[text.index("{") + 1:text.rindex("}")]
    return np.array([[float(v) for v in line.split()] for line in body.splitlines() if line.strip()])


@pytest.fixture(scope="module")
def real():
    return {s: merlrav.read_annotations(REAL, s, images=MMPOSE) for s in merlrav.SPLITS}


@needs_real
def test_real_counts_per_split_and_view(real):
    total = 0
    for split, (faces, problems) in real.items():
        assert problems == []
        for view in merlrav.SUBSETS:
            folder = REAL / "merl_rav_labels" / view / SETS[split] / "labels"
            names = sorted(n for n in os.listdir(folder) if n.endswith(".pts"))
            got = [f.extra["where"].rsplit("/", 1)[1] for f in faces if f.subsets == (view,)]
            assert got == names
            total += len(names)
        assert all(f.split == split and f.scheme == "ibug68" for f in faces)
    assert total == 2013  # the shared README's count
    sources = [f.source for faces, _ in real.values() for f in faces]
    assert len(set(sources)) == len(sources)
    assert "image03614.jpg#1" in sources and "image03614.jpg#2" in sources  # two faces, two view folders
    assert merlrav.available_splits(REAL) == ("train", "test")


@needs_real
def test_real_states_are_the_three_sign_kinds(real):
    counts = np.zeros(3, int)
    for faces, _ in real.values():
        for face in faces:
            raw = _numbers(REAL / face.extra["where"])
            marker = (raw == -1).all(axis=1)
            expected = np.where(marker, cv.MISSING, np.where(raw[:, 0] > 0, cv.VISIBLE, cv.OCCLUDED))
            np.testing.assert_array_equal(face.state, expected)
            counts += np.bincount(face.state, minlength=3)
    assert counts.tolist() == [26466, 97012, 13406]  # missing, visible, occluded: counted from the files once


@needs_real
def test_real_coordinates_are_one_based(real):
    """Visible points are the numbers minus 1, occluded ones their magnitudes minus 1, missing ones NaN:
    a reader off by one (or keeping the sign) fails."""
    faces = {f.source: f for f in real["train"][0]}
    face = next(f for f in faces.values() if (f.state == cv.OCCLUDED).any() and (f.state == cv.MISSING).any())
    raw = _numbers(REAL / face.extra["where"])
    vis, occ, mis = (face.state == k for k in (cv.VISIBLE, cv.OCCLUDED, cv.MISSING))
    np.testing.assert_array_equal(face.points[vis], raw[vis] - 1)
    np.testing.assert_allclose(face.points[occ], -raw[occ] - 1, rtol=0, atol=1e-9)
    assert np.isnan(face.points[mis]).all() and not np.isnan(face.points[~mis]).any()
    assert merlrav.COORDINATE_BASE == 1


@needs_real
@pytest.mark.skipif(not (MMPOSE / "image04476.jpg").is_file(), reason="mmpose's two AFLW images not found")
def test_real_images_found_by_name_in_nested_folders(real, tmp_path):
    found = {f.source: f.image for faces, _ in real.values() for f in faces if f.image is not None}
    assert found == {"image04476.jpg": MMPOSE / "image04476.jpg", "image22568.jpg": MMPOSE / "image22568.jpg"}
    flickr = tmp_path / "aflw" / "flickr" / "3"
    flickr.mkdir(parents=True)
    os.symlink(MMPOSE / "image22568.jpg", flickr / "image22568.jpg")
    faces, _ = merlrav.read_annotations(REAL, "test", images=tmp_path / "aflw")
    assert [f.image for f in faces if f.image] == [flickr / "image22568.jpg"]
    from PIL import Image

    face = next(f for f in faces if f.image)
    width, height = Image.open(face.image).size
    placed = face.points[face.placed]
    assert (placed >= -0.5).all() and (placed < [width - 0.5, height - 0.5]).all()


# --- a tiny tree in the authors' layout -----------------------------------------------------------------

def _write(path: Path, rows: list[str], header: str = "version: 1\nn_points:  68\n{\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(rows) + "\n}\n")


def _rows(seed: int) -> list[str]:
    xy = np.random.default_rng(seed).uniform(10, 300, size=(68, 2)).round(3)
    return [f"{x} {y}" for x, y in xy]


def test_signs_states_and_images_in_a_small_tree(tmp_path):
    labels = tmp_path / "merl_rav_labels" / "left" / "trainset" / "labels"
    rows = _rows(0)
    rows[0], rows[1] = "-1 -1", "-12.5 -40"  # self-occluded, externally occluded at (12.5, 40)
    _write(labels / "image00007_2.pts", rows)
    _write(labels / "image00008.pts", _rows(1))
    images = tmp_path / "aflw" / "flickr"
    (images / "0").mkdir(parents=True)
    (images / "0" / "image00007.jpg").write_bytes(b"jpeg")
    (images / "2").mkdir()
    (images / "2" / "image00008_1.jpg").write_bytes(b"not this one")
    faces, problems = merlrav.read_annotations(tmp_path, "train")
    assert problems == [] and [f.source for f in faces] == ["image00007.jpg#2", "image00008.jpg"]
    first = faces[0]
    assert first.state[:3].tolist() == [cv.MISSING, cv.OCCLUDED, cv.VISIBLE]
    np.testing.assert_array_equal(first.points[1], [11.5, 39.0])
    x, y = (float(v) for v in rows[2].split())
    np.testing.assert_array_equal(first.points[2], [x - 1, y - 1])
    assert first.image == images / "0" / "image00007.jpg" and faces[1].image is None
    assert first.subsets == ("left",) and first.split == "train"
    assert merlrav.read_annotations(tmp_path, "test") == ([], []) and merlrav.available_splits(tmp_path) == ("train",)
    organized = images / "2" / "image00007_2.jpg"  # the authors' merl_rav_organized name wins over AFLW's
    organized.write_bytes(b"copy")
    assert merlrav.read_annotations(tmp_path, "train")[0][0].image == organized


def test_bad_label_files_are_problems_naming_the_file(tmp_path):
    labels = tmp_path / "merl_rav_labels" / "frontal" / "testset" / "labels"
    mixed = _rows(2)
    mixed[5] = "-30.5 44"
    _write(labels / "image00001.pts", mixed)
    zero = _rows(3)
    zero[9] = "0 12"
    _write(labels / "image00002.pts", zero)
    (labels / "image00003.pts").write_text("version: 1\nn_points:  68\n{\n" + "\n".join(_rows(4)[:30]))  # truncated
    _write(labels / "image00004.pts", _rows(5)[:67], header="version: 1\n{\n")
    _write(labels / "face_5.pts", _rows(6))
    _write(labels / "image00006.pts", _rows(7))
    _write(tmp_path / "merl_rav_labels" / "right" / "testset" / "labels" / "image00006.pts", _rows(8))
    faces, problems = merlrav.read_annotations(tmp_path, "test")
    assert [f.source for f in faces] == ["image00006.jpg"] and faces[0].subsets == ("frontal",)
    reasons = {p.source.rsplit("/", 1)[1] + ("@right" if "/right/" in p.source else ""): p.reason for p in problems}
    assert sorted(reasons) == ["face_5.pts", "image00001.pts", "image00002.pts", "image00003.pts", "image00004.pts",
                               "image00006.pts@right"]
    assert "point 6 (-30.5, 44) has mixed signs" in reasons["image00001.pts"]
    assert "point 10 (0, 12) has mixed signs" in reasons["image00002.pts"]
    assert "truncated" in reasons["image00003.pts"]
    assert "(67, 2)" in reasons["image00004.pts"]
    assert "not imageNNNNN.pts" in reasons["face_5.pts"]
    assert "labelled twice" in reasons["image00006.pts@right"]
    for p in problems:
        assert p.source.split("/")[-1] in p.reason and "\n" not in p.reason and p.split == "test"


def test_whole_root_errors_are_one_line(tmp_path):
    with pytest.raises(LandmarkFileError, match="MERL-RAV labels not found"):
        merlrav.read_annotations(tmp_path, "train")
    with pytest.raises(LandmarkFileError, match="no split 'val'"):
        merlrav.read_annotations(tmp_path, "val")
