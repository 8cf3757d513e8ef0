"""`wflw` reader: the real per-attribute test lists (counts, subsets, coordinate base) and bad lines in a tiny tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import wflw
from densereg_data.errors import LandmarkFileError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "wflw"
REAL = SHARED / "AmrElsersy+PFLD-Pytorch-Landmarks" / "data" / "WFLW"
MMPOSE = SHARED / "open-mmlab+mmpose" / "tests" / "data" / "wflw"
needs_real = pytest.mark.skipif(not (REAL / "WFLW_annotations" / "list_98pt_test").is_dir(),
                                reason="WFLW attribute lists not found at ../shared/data/landmarks/wflw")
ATTRIBUTE_LISTS = {s: f"list_98pt_test_{s}.txt" for s in
                   ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")}


def _real_lines(subset: str) -> list[list[str]]:
    text = (REAL / "WFLW_annotations" / "list_98pt_test" / ATTRIBUTE_LISTS[subset]).read_text()
    return [line.split() for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def real():
    return wflw.read_annotations(REAL, "test")


@needs_real
def test_real_counts_per_subset(real):
    faces, problems = real
    assert problems == []
    lines = {s: _real_lines(s) for s in ATTRIBUTE_LISTS}
    assert sum(len(v) for v in lines.values()) == 1520  # the shared README's count
    assert len(faces) == len({tuple(v) for vs in lines.values() for v in vs})  # one face per distinct line
    for subset, rows in lines.items():
        assert sum(subset in f.subsets for f in faces) == len(rows), subset
    assert set(wflw.SUBSETS) == set(ATTRIBUTE_LISTS)


@needs_real
def test_real_sources_scheme_and_states(real):
    faces, _ = real
    paths = [v[-1] for s in ATTRIBUTE_LISTS for v in _real_lines(s)]
    sources = [f.source for f in faces]
    assert len(set(sources)) == len(faces)
    assert {s.split("#")[0] for s in sources} == set(paths)
    shared = {p for p in set(paths) if sum(s.split("#")[0] == p for s in sources) > 1}
    assert all(("#" in s) == (s.split("#")[0] in shared) for s in sources)
    assert all(f.scheme == "wflw98" and f.split == "test" and f.image is None and f.box is None for f in faces)
    assert all((f.state == cv.VISIBLE).all() and f.points.shape == (98, 2) for f in faces)
    assert wflw.available_splits(REAL) == ("test",)


@needs_real
def test_real_coordinate_base_is_zero(real):
    """The first line of the large-pose list, read back unchanged: a reader off by one fails."""
    faces, _ = real
    first = _real_lines("largepose")[0]
    face = next(f for f in faces if f.extra["where"].endswith("list_98pt_test_largepose.txt:1"))
    assert face.source.split("#")[0] == first[-1]
    np.testing.assert_array_equal(face.points, np.array(first[:196], dtype=float).reshape(98, 2))
    negative = [f for f in faces if (f.points < 0).any()]  # beyond the left/top edge: kept, visible
    assert negative and all((f.state == cv.VISIBLE).all() for f in negative)


@needs_real
def test_real_train_list_absent_is_one_line_error():
    with pytest.raises(LandmarkFileError, match="WFLW train list not found") as info:
        wflw.read_annotations(REAL, "train")
    assert "\n" not in str(info.value)


# --- a tiny tree in the official layout ---------------------------------------------------------------

def _points(seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(-5, 200, size=(98, 2)), 6)


def _line(points: np.ndarray, path: str, box=None, flags=None) -> str:
    values = [f"{v:.6f}" for v in points.ravel()]
    if box is not None:
        values += [str(v) for v in box] + [str(v) for v in flags]
    return " ".join(values + [path])


def _write(root: Path, name: str, lines: list[str]) -> Path:
    folder = "list_98pt_rect_attr_train_test" if "rect_attr" in name else "list_98pt_test"
    path = root / "WFLW_annotations" / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_full_list_sources_subsets_boxes_and_images(tmp_path):
    p = [_points(i) for i in range(3)]
    _write(tmp_path, "list_98pt_rect_attr_train.txt", [
        _line(p[0], "0--Parade/a.jpg", (1, 2, 30, 40), (1, 0, 0, 0, 1, 0)),
        _line(p[1], "1--Handshaking/b.jpg", (3, 4, 50, 60), (0, 0, 0, 0, 0, 0)),
        _line(p[2], "0--Parade/a.jpg", (5, 6, 70, 80), (0, 1, 1, 1, 0, 1)),
    ])
    (tmp_path / "WFLW_images" / "0--Parade").mkdir(parents=True)
    (tmp_path / "WFLW_images" / "0--Parade" / "a.jpg").write_bytes(b"jpeg")
    faces, problems = wflw.read_annotations(tmp_path, "train")
    assert problems == []
    assert [f.source for f in faces] == ["0--Parade/a.jpg#1", "1--Handshaking/b.jpg", "0--Parade/a.jpg#2"]
    assert [f.subsets for f in faces] == [("largepose", "occlusion"), (), ("expression", "illumination", "makeup", "blur")]
    np.testing.assert_array_equal(faces[2].box, [5, 6, 70, 80])
    np.testing.assert_array_equal(faces[2].points, p[2])
    assert faces[0].image == tmp_path / "WFLW_images" / "0--Parade" / "a.jpg" and faces[1].image is None
    assert wflw.available_splits(tmp_path) == ("train",)
    with pytest.raises(LandmarkFileError, match="WFLW test lists not found"):
        wflw.read_annotations(tmp_path, "test")


def test_attribute_lists_merge_the_same_face(tmp_path):
    a, b = _points(0), _points(1)
    _write(tmp_path, "list_98pt_test_blur.txt", [_line(a, "x/1.jpg"), _line(b, "x/2.jpg")])
    _write(tmp_path, "list_98pt_test_occlusion.txt", [_line(a, "x/1.jpg"), _line(b, "x/1.jpg")])
    faces, problems = wflw.read_annotations(tmp_path, "test", images=tmp_path / "elsewhere")
    assert problems == []  # lists are read in SUBSETS order: occlusion before blur
    assert [(f.source, f.subsets) for f in faces] == [
        ("x/1.jpg#1", ("occlusion", "blur")), ("x/1.jpg#2", ("occlusion",)), ("x/2.jpg", ("blur",))]
    # the full test list wins over the attribute lists when both are there
    _write(tmp_path, "list_98pt_rect_attr_test.txt", [_line(a, "x/1.jpg", (0, 0, 9, 9), (0, 0, 0, 0, 1, 1))])
    faces, _ = wflw.read_annotations(tmp_path, "test")
    assert [(f.source, f.subsets) for f in faces] == [("x/1.jpg", ("occlusion", "blur"))]


def test_bad_lines_are_problems_with_their_line(tmp_path):
    good = _points(0)
    tokens = _line(good, "x/a.jpg").split()
    lines = [
        _line(good, "x/good.jpg"),
        " ".join(tokens[1:]),  # 195 numbers + path
        " ".join(tokens[:3] + ["abc"] + tokens[4:-1] + ["x/b.jpg"]),
        " ".join(tokens[:5] + ["nan"] + tokens[6:-1] + ["x/c.jpg"]),
        _line(good, "../outside.jpg"),
        _line(good, "/etc/passwd"),
        _line(good * 1e8, "x/far.jpg"),
        _line(good, "x/truncated.jpg")[:700],  # the file cut short
    ]
    _write(tmp_path, "list_98pt_test_blur.txt", lines)
    faces, problems = wflw.read_annotations(tmp_path, "test")
    assert [f.source for f in faces] == ["x/good.jpg"]
    assert [p.source.rsplit(":", 1)[1] for p in problems[:-1]] == ["2", "3", "4", "5", "6", "8"]
    reasons = [p.reason for p in problems]
    assert "expected 197 values (196 coordinates, path), got 196" in reasons[0]
    assert "line 2" in reasons[0] and "list_98pt_test_blur.txt" in reasons[0]
    assert "abc" in reasons[1] and "NaN" in reasons[2]
    assert "not a path inside WFLW_images/" in reasons[3] and "not a path inside" in reasons[4]
    assert "got " in reasons[5]
    assert problems[-1].source == "x/far.jpg" and "beyond" in problems[-1].reason
    assert all(p.split == "test" and "\n" not in p.reason for p in problems)


def test_full_list_bad_flags_and_repeats(tmp_path):
    p = _points(0)
    _write(tmp_path, "list_98pt_rect_attr_train.txt", [
        _line(p, "x/a.jpg", (0, 0, 9, 9), (0, 2, 0, 0, 0, 0)),
        _line(p, "x/a.jpg", (0, 0, 9, 9), (0, 0, 0, 0, 0, 0)),
        _line(p, "x/a.jpg", (0, 0, 9, 9), (1, 0, 0, 0, 0, 0)),
        " ".join(_line(p, "x/a.jpg", (0, 0, 9, 9), (0, 0, 0, 0, 0, 0)).split()[:-2] + ["x/b.jpg"]),
    ])
    faces, problems = wflw.read_annotations(tmp_path, "train")
    assert [f.source for f in faces] == ["x/a.jpg"]
    assert len(problems) == 3
    assert "attribute flags must be 0 or 1" in problems[0].reason
    assert "repeats the face of line 2" in problems[1].reason
    assert "expected 207 values" in problems[2].reason and "got 206" in problems[2].reason


def test_unreadable_list_is_one_line_error(tmp_path):
    path = _write(tmp_path, "list_98pt_rect_attr_train.txt", [])
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(LandmarkFileError, match="not UTF-8") as info:
        wflw.read_annotations(tmp_path, "train")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    path.unlink()
    path.mkdir()
    with pytest.raises(LandmarkFileError, match="directory"):
        wflw.read_annotations(tmp_path, "train")
    with pytest.raises(LandmarkFileError, match="no split 'val'"):
        wflw.read_annotations(tmp_path, "val")


@pytest.mark.skipif(not (MMPOSE / "test_wflw.json").is_file(), reason="mmpose's WFLW sample not found in shared data")
def test_mmpose_sample_lines_resolve_images_and_fall_inside_them(tmp_path):
    """mmpose's json holds two WFLW images' faces with the list's numbers unchanged (its converter
    copies them); written back as list lines they read as the same points, inside the images."""
    from PIL import Image

    doc = json.loads((MMPOSE / "test_wflw.json").read_text())
    names = {im["id"]: (im["file_name"], im["width"], im["height"]) for im in doc["images"]}
    lines = []
    for ann in doc["annotations"]:
        pts = np.array(ann["keypoints"], dtype=float).reshape(98, 3)[:, :2]
        lines.append(" ".join(repr(float(v)) for v in pts.ravel()) + f" wflw/{names[ann['image_id']][0]}")
    _write(tmp_path, "list_98pt_test_occlusion.txt", lines)
    faces, problems = wflw.read_annotations(tmp_path, "test", images=MMPOSE.parent)
    assert problems == [] and len(faces) == len(doc["annotations"]) == 4
    assert sorted(f.source for f in faces if "#" in f.source) == [f"wflw/7_Cheering_Cheering_7_16.jpg#{k}" for k in (1, 2, 3)]
    for face, ann in zip(faces, doc["annotations"]):
        name, width, height = names[ann["image_id"]]
        assert face.image == MMPOSE / name
        np.testing.assert_array_equal(face.points, np.array(ann["keypoints"]).reshape(98, 3)[:, :2])
        assert Image.open(MMPOSE / name).size == (width, height)
        assert (face.points >= -0.5).all() and (face.points < [width - 0.5, height - 0.5]).all()
