"""`300vw` reader: the real frames in shared data (splits, the broken frame, 1-based points), frames decoded from
a video written here (seek equals decoding from the start), and bad videos and .pts files."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.datasets import vw300
from densereg_data.errors import BackendUnavailableError, ImageFileError, LandmarkFileError
from densereg_data.io.landmarks import write_pts

REAL = (Path(__file__).resolve().parents[3].parent / "shared" / "data" / "landmarks" / "300vw" / "open-mmlab+mmpose"
        / "tests" / "data" / "300vw")
needs_real = pytest.mark.skipif(not (REAL / "001" / "annot").is_dir(), reason="300-VW frames not found at ../shared/data/landmarks/300vw")


def _numbers(path: Path) -> np.ndarray:
    text = path.read_text()
    body = text[text.index("{") + 1:text.rindex("}")]
    return np.array([[float(v) for v in line.split()] for line in body.splitlines() if line.strip()])


@needs_real
def test_real_splits_broken_frame_and_images():
    for split in vw300.SPLITS:
        faces, problems = vw300.read_annotations(REAL, split)
        annots = sorted(p for v in vw300.VIDEOS[split] for p in (REAL / v / "annot").glob("*.pts"))
        assert [f.extra["where"] for f in faces] + [p.source for p in problems if "broken" not in p.reason] == [
            f"{p.parent.parent.name}/annot/{p.name}" for p in annots if f"{p.parent.parent.name}/{p.stem}" != "401/000731"]
        assert all(f.split == split and f.image == REAL / (f.source.replace("/", "/imgs/") + ".jpg") for f in faces)
    faces, problems = vw300.read_annotations(REAL, "all")
    assert [(f.source, f.split) for f in faces] == [("001/000006", "train"), ("001/000009", "train"), ("401/000732", "test1")]
    assert [(p.source, p.split) for p in problems] == [("401/000731", "test1")] and "broken" in problems[0].reason
    assert vw300.available_splits(REAL) == ("train", "test1")


@needs_real
def test_real_points_are_the_pts_numbers_minus_one():
    """mmpose's json holds the .pts numbers unchanged; the reader subtracts 1 (a reader off by one fails)."""
    doc = json.loads((REAL / "anno_300vw.json").read_text())
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    faces = {f.source: f for f in vw300.read_annotations(REAL, "all")[0]}
    for ann in doc["annotations"]:
        vid, _, frame = names[ann["image_id"]].split("/")
        face = faces[f"{vid}/{frame[:-4]}"]
        raw = _numbers(REAL / vid / "annot" / f"{frame[:-4]}.pts")
        np.testing.assert_array_equal(np.array(ann["keypoints"]).reshape(-1, 3)[:, :2], raw)
        np.testing.assert_allclose(face.points, raw - 1, rtol=0, atol=1e-12)
        assert (face.state == cv.VISIBLE).all()
    assert vw300.COORDINATE_BASE == 1


# --- a tiny tree in the release's layout, with a video written here -------------------------------------

def _video(path: Path, n: int = 24, *, bframes: int = 2) -> None:
    av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25, options={"b": "4M"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size, stream.codec_context.max_b_frames = 5, bframes
        for i in range(n):
            image = np.empty((48, 64, 3), np.uint8)
            image[:] = (10 * i, 240 - 10 * i, 128)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _pts(root: Path, vid: str, number: int, seed: int = 0) -> Path:
    path = root / vid / "annot" / f"{number:06d}.pts"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_pts(path, np.random.default_rng(seed).uniform(0, 60, size=(68, 2)))


def test_frames_of_a_video_are_decoded_by_seek_and_from_the_start(tmp_path, monkeypatch):
    _video(tmp_path / "002" / "vid.avi")
    seek, found = vw300._seek_decode, []
    monkeypatch.setattr(vw300, "_seek_decode", lambda *a: found.append(seek(*a)) or found[-1])
    for number in (1, 2, 17):
        _pts(tmp_path, "002", number, seed=number)
    faces, problems = vw300.read_annotations(tmp_path, "train")
    assert problems == [] and [f.source for f in faces] == ["002/000001", "002/000002", "002/000017"]
    assert all(f.image == tmp_path / "002" / "vid.avi" for f in faces)
    assert [f.extra["frame"] for f in faces] == [0, 1, 16]  # annot/000001.pts is the first frame
    for k in range(24):
        image = vw300.read_frame(tmp_path / "002" / "vid.avi", k)
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, vw300.read_frame(tmp_path / "002" / "vid.avi", k, seek=False))
        assert abs(image[..., 0].mean() - 10 * k) < 5, k  # the k-th picture written (lossy codec)
    assert sum(f is not None for f in found) > 12  # most frames came by seeking, not by the fallback


def test_a_video_that_does_not_decode_is_one_line(tmp_path):
    pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    _video(tmp_path / "good.avi", n=6, bframes=0)
    (tmp_path / "bad.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 20)
    data = (tmp_path / "good.avi").read_bytes()
    (tmp_path / "truncated.avi").write_bytes(data[:len(data) // 3])
    for name, message in (("bad.avi", "video does not decode"), ("truncated.avi", "video does not decode"),
                          ("missing.avi", "video not found")):
        with pytest.raises(ImageFileError, match=message) as info:
            vw300.read_frame(tmp_path / name, 0)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ImageFileError, match="video has 6 frames, frame 6 requested"):
        vw300.read_frame(tmp_path / "good.avi", 6)
    with pytest.raises(ImageFileError, match="non-negative integer"):
        vw300.read_frame(tmp_path / "good.avi", -1)


def test_missing_pyav_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "vid.avi").write_bytes(b"whatever")
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(BackendUnavailableError, match=r"densereg\[video\]"):
        vw300.read_frame(tmp_path / "vid.avi", 0)


def test_bad_frames_and_folders_are_problems(tmp_path):
    _pts(tmp_path, "401", 730)  # broken in mmpose's list
    _pts(tmp_path, "401", 700)
    (tmp_path / "401" / "imgs").mkdir()
    (tmp_path / "401" / "imgs" / "000700.png").write_bytes(b"png")
    truncated = _pts(tmp_path, "401", 701)
    truncated.write_text("\n".join(truncated.read_text().splitlines()[:30]))
    (tmp_path / "401" / "annot" / "7.pts").write_text("x")
    _pts(tmp_path, "999", 1)  # not a 300-VW video
    faces, problems = vw300.read_annotations(tmp_path, "test1")
    assert [(f.source, f.image) for f in faces] == [("401/000700", tmp_path / "401" / "imgs" / "000700.png")]
    reasons = {p.source: p.reason for p in problems}
    assert sorted(reasons) == ["401/000701", "401/000730", "401/annot/7.pts"]
    assert "listed as broken" in reasons["401/000730"]
    assert "truncated" in reasons["401/000701"] and "000701.pts" in reasons["401/000701"]
    assert "not NNNNNN.pts" in reasons["401/annot/7.pts"]
    assert all("\n" not in r for r in reasons.values())
    faces, problems = vw300.read_annotations(tmp_path, "train")
    assert faces == [] and [p.source for p in problems] == ["999/annot"] and "114 videos" in problems[0].reason
    assert vw300.read_annotations(tmp_path, "test3") == ([], [])
    with pytest.raises(LandmarkFileError, match="300-VW folder not found"):
        vw300.read_annotations(tmp_path / "nowhere", "train")
    with pytest.raises(LandmarkFileError, match="no split 'test'"):
        vw300.read_annotations(tmp_path, "test")


def test_split_lists_are_the_papers_114_videos():
    ids = [v for split in vw300.SPLITS for v in vw300.VIDEOS[split]]
    assert len(ids) == len(set(ids)) == 114
    assert [len(vw300.VIDEOS[s]) for s in vw300.SPLITS] == [50, 31, 19, 14]
    assert 731 in vw300.BROKEN["401"] and 732 not in vw300.BROKEN["401"]
    assert sum(len(v) for v in vw300.BROKEN.values()) == 2127 and set(vw300.BROKEN) <= set(ids)
