"""`coco-wholebody` reader: the real sample jsons (counts, 0-based coordinates, states) and bad entries and files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import coco_wholebody as cwb
from densereg_data.errors import LandmarkFileError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "coco_wholebody"
MMPOSE = SHARED / "open-mmlab+mmpose" / "tests" / "data" / "coco"
EXAMPLE = SHARED / "jin-s13+COCO-WholeBody" / "evaluation" / "example_gt.json"
needs_real = pytest.mark.skipif(not ((MMPOSE / "test_coco_wholebody.json").is_file() and EXAMPLE.is_file()),
                                reason="COCO-WholeBody samples not found at ../shared/data/landmarks/coco_wholebody")


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    """The shared files in the release layout: mmpose's sample as val (its 4 images as val2017/), the
    authors' example_gt.json as train (no train2017/)."""
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    (root / "annotations" / "coco_wholebody_val_v1.0.json").symlink_to(MMPOSE / "test_coco_wholebody.json")
    (root / "annotations" / "coco_wholebody_train_v1.0.json").symlink_to(EXAMPLE)
    (root / "val2017").symlink_to(MMPOSE)
    return root


def _valid_in_text(path: Path) -> int:
    return len(re.findall(r'"face_valid"\s*:\s*true', path.read_text()))


@needs_real
@pytest.mark.parametrize("split, file, expected", [("val", MMPOSE / "test_coco_wholebody.json", 4), ("train", EXAMPLE, 13)])
def test_real_counts(real_root, split, file, expected):
    faces, problems = cwb.read_annotations(real_root, split)
    assert problems == []
    assert len(faces) == _valid_in_text(file) == expected  # the shared README's counts
    assert len({f.source for f in faces}) == len(faces)
    assert all(f.scheme == "ibug68" and f.split == split and f.subsets == () for f in faces)
    assert cwb.available_splits(real_root) == ("train", "val")


@needs_real
def test_real_images_found_where_present(real_root):
    val, _ = cwb.read_annotations(real_root, "val")
    assert all(f.image.resolve() == (MMPOSE / f.source.split("#")[0]).resolve() for f in val)
    train, _ = cwb.read_annotations(real_root, "train", images=MMPOSE)  # images= holds the files directly
    present = {p.name for p in MMPOSE.glob("*.jpg")}
    assert [f.image is not None for f in train] == [f.source.split("#")[0] in present for f in train]
    assert sum(f.image is None for f in train) == 9  # the faces of 000000001000.jpg


@needs_real
def test_real_coordinates_are_used_unchanged_and_fall_inside_the_images(real_root):
    """0-based as the authors state: the json's numbers unchanged; a reader off by one fails."""
    faces, _ = cwb.read_annotations(real_root, "train")
    doc = json.loads(EXAMPLE.read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
    anns = {a["id"]: a for a in doc["annotations"]}
    for face in faces:
        ann = anns[int(face.source.split("#")[1])]
        kpts = np.array(ann["face_kpts"], dtype=float).reshape(68, 3)
        np.testing.assert_array_equal(face.points, kpts[:, :2])
        x, y, w, h = ann["face_box"]
        np.testing.assert_array_equal(face.box, [x, y, x + w, y + h])
        width, height = sizes[ann["image_id"]]
        assert (face.points >= -0.5).all() and (face.points < [width - 0.5, height - 0.5]).all()
        assert (face.state == cv.VISIBLE).all()  # every released face point has v = 1: no occlusion marked


# --- a tiny json in the release layout ----------------------------------------------------------------

def _kpts(seed: int, v: float = 1.0) -> list[float]:
    xy = np.random.default_rng(seed).uniform(10, 90, size=(68, 2))
    return np.column_stack([xy, np.full(68, v)]).ravel().tolist()


def _ann(id_: int, image_id: int = 1, valid=True, kpts=None, box=(10, 10, 80, 80)) -> dict:
    return {"id": id_, "image_id": image_id, "face_valid": valid, "face_kpts": _kpts(id_) if kpts is None else kpts,
            "face_box": list(box), "keypoints": [0] * 51}


def _write(root: Path, split: str, doc) -> Path:
    path = root / "annotations" / f"coco_wholebody_{split}_v1.0.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_bad_entries_are_problems(tmp_path):
    partly = _kpts(3)
    partly[2::3] = [0.0] * 10 + [1.0] * 58
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "../escape.jpg"}, {"id": 3, "file_name": "b.jpg"}]
    anns = [_ann(10), _ann(11, valid=False, kpts=[0] * 204, box=(0, 0, 0, 0)), _ann(12, kpts=[0.0] * 204),
            _ann(13, kpts=_kpts(13)[:-3]), _ann(14, kpts=_kpts(14, v=-1)), _ann(15, image_id=99), _ann(16, image_id=2),
            _ann(10, image_id=3), _ann(17, valid="yes"), _ann(18, kpts=_kpts(18, v=0.0)), "not a dict",
            _ann(19, kpts=partly, box=(0, 0, 0, 0)), _ann(20, box=(1, 2)), _ann(21, image_id=3, kpts=_kpts(21, v=0.4))]
    _write(tmp_path, "val", {"images": images, "annotations": anns})
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "a.jpg").write_bytes(b"jpeg")
    faces, problems = cwb.read_annotations(tmp_path, "val")
    assert [f.source for f in faces] == ["a.jpg#10", "a.jpg#19", "b.jpg#21"]
    assert faces[0].image == tmp_path / "val2017" / "a.jpg" and faces[2].image is None
    np.testing.assert_array_equal(faces[0].points, np.array(_kpts(10)).reshape(68, 3)[:, :2])
    np.testing.assert_array_equal(faces[0].box, [10, 10, 90, 90])
    assert (faces[1].state[:10] == cv.MISSING).all() and np.isnan(faces[1].points[:10]).all()
    assert (faces[1].state[10:] == cv.VISIBLE).all() and faces[1].box is None
    assert (faces[2].state == cv.VISIBLE).all()  # float v > 0: reliable
    reasons = {p.source: p.reason for p in problems}
    assert len(problems) == 10
    assert "face_valid is true but all 68 face points are (0, 0)" in reasons["a.jpg#12"]
    assert "face_kpts must be 204 finite numbers" in reasons["a.jpg#13"]
    assert "v < 0" in reasons["a.jpg#14"]
    assert "image_id 99 is not among the json's images" in reasons["image 99#15"]
    assert "not among the json's images" in reasons["image 2#16"]  # its file_name leaves the image folder
    assert "annotation id 10 is repeated" in reasons["b.jpg#10"]
    assert "face_valid must be true or false, got 'yes'" in reasons["a.jpg#17"]
    assert "no face point is labelled" in reasons["a.jpg#18"]
    assert "not an annotation with an integer id" in reasons["coco_wholebody_val_v1.0.json annotations[10]"]
    assert "face_box must be 4 finite numbers" in reasons["a.jpg#20"]
    assert all("\n" not in p.reason and p.split == "val" for p in problems)


def test_images_folder_option(tmp_path):
    _write(tmp_path, "train", {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
                               "annotations": [_ann(1), _ann(2, image_id=2)]})
    (tmp_path / "pics" / "train2017").mkdir(parents=True)
    (tmp_path / "pics" / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "pics" / "train2017" / "b.jpg").write_bytes(b"jpeg")
    faces, _ = cwb.read_annotations(tmp_path, "train", images=tmp_path / "pics")
    assert [f.image for f in faces] == [tmp_path / "pics" / "a.jpg", tmp_path / "pics" / "train2017" / "b.jpg"]


@pytest.mark.parametrize("content, match", [
    ('{"images": [], "annotations": [{"id": 1, "face_kpts": [', "not valid json"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not valid json"),
    ("[1, 2, 3]", "needs 'images' and 'annotations' lists"),
    ('{"images": [], "annotations": [{"id": 1, "keypoints": []}]}', "no annotation has face_kpts"),
    ("[" * 100000 + "]" * 100000, "not valid json"),
])
def test_unreadable_json_is_one_line_error(tmp_path, content, match):
    path = tmp_path / "annotations" / "coco_wholebody_val_v1.0.json"
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(LandmarkFileError, match=match) as info:
        cwb.read_annotations(tmp_path, "val")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_unknown_split(tmp_path):
    with pytest.raises(LandmarkFileError, match="not found"):
        cwb.read_annotations(tmp_path, "train")
    with pytest.raises(LandmarkFileError, match="no split 'test'"):
        cwb.read_annotations(tmp_path, "test")
    assert cwb.available_splits(tmp_path) == ()
