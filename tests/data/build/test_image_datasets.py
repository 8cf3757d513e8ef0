"""Builds of the real image samples in shared data, laid out as their datasets distribute them: each
passes verify (skipped with a reason when the data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from densereg_data.build.config import BuildConfig
from densereg_data.build.pipeline import run_build
from densereg_data.format.verify import verify

LANDMARKS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "landmarks"
MMPOSE = LANDMARKS / "{}" / "open-mmlab+mmpose" / "tests" / "data" / "{}"


def _layout(name: str, tmp: Path) -> Path:
    from densereg_data.testing import coco_wholebody_layout, wflw_layout

    if name == "aflw2000-3d":
        root = LANDMARKS / "aflw2000_3d" / "yfeng95+PRNet" / "TestImages" / "AFLW2000"
        return root if root.is_dir() else None
    if name == "300vw":
        root = Path(str(MMPOSE).format("300vw", "300vw"))
        return root if root.is_dir() else None
    if name == "wflw":
        src = Path(str(MMPOSE).format("wflw", "wflw")) / "test_wflw.json"
        return wflw_layout(src, tmp / "wflw") if src.is_file() else None
    src = Path(str(MMPOSE).format("coco_wholebody", "coco"))
    return coco_wholebody_layout(src, tmp / "coco") if (src / "test_coco_wholebody.json").is_file() else None


@pytest.mark.parametrize("name, faces", [("wflw", 4), ("coco-wholebody", 4), ("aflw2000-3d", 16), ("300vw", 3)])
def test_real_samples_build_and_verify(name, faces, tmp_path):
    root = _layout(name, tmp_path)
    if root is None:
        pytest.skip(f"mmpose's {name} test data not under {LANDMARKS}")
    report = run_build(BuildConfig(dataset=name, root=str(root), out=str(tmp_path / "shards"), size=48, workers=1,
                                   progress=False, max_skip_fraction=0.5))
    assert report.written == faces and report.skipped == (1 if name == "300vw" else 0)  # 300-VW: 401/000731 is broken
    assert verify(tmp_path / "shards")["samples"] == faces


def test_frames_decoded_from_a_video_build_and_verify(tmp_path):
    """300-VW's layout with a vid.avi instead of extracted frames: each annotated frame is decoded from the
    video (PyAV) and labelled; a frame number beyond the video is a recorded skip, not a failed build."""
    av = pytest.importorskip("av", reason="PyAV (pip install 'densereg[video]') is not installed")
    import numpy as np

    from densereg_data.face.models import load_face_model
    from densereg_data.io.landmarks import write_pts
    from densereg_data.testing import synthetic_face

    video = tmp_path / "300VW" / "002" / "vid.avi"
    video.parent.mkdir(parents=True)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        for i in range(10):
            frame = np.full((128, 128, 3), (20 * i, 100, 200 - 20 * i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    rng = np.random.default_rng(0)
    fitter = load_face_model().fitter
    for number in (1, 5, 40):  # frame 40 is past the video's end
        face = synthetic_face(fitter, rng, max_yaw=30, size=128)
        (video.parent / "annot").mkdir(exist_ok=True)
        write_pts(video.parent / "annot" / f"{number:06d}.pts", face.landmarks)
    report = run_build(BuildConfig(dataset="300vw", root=str(tmp_path / "300VW"), out=str(tmp_path / "shards"), size=48,
                                   workers=1, progress=False, max_skip_fraction=0.5))
    assert report.written == 2 and report.skipped == 1
    assert verify(tmp_path / "shards")["samples"] == 2
    skipped = (tmp_path / "shards" / "skipped.jsonl").read_text()
    assert "002/000040" in skipped and skipped.count("\n") == 1
