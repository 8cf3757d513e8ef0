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

    if name == "wflw":
        src = Path(str(MMPOSE).format("wflw", "wflw")) / "test_wflw.json"
        return wflw_layout(src, tmp / "wflw") if src.is_file() else None
    src = Path(str(MMPOSE).format("coco_wholebody", "coco"))
    return coco_wholebody_layout(src, tmp / "coco") if (src / "test_coco_wholebody.json").is_file() else None


@pytest.mark.parametrize("name, faces", [("wflw", 4), ("coco-wholebody", 4)])
def test_real_samples_build_and_verify(name, faces, tmp_path):
    root = _layout(name, tmp_path)
    if root is None:
        pytest.skip(f"mmpose's {name} test data not under {LANDMARKS}")
    report = run_build(BuildConfig(dataset=name, root=str(root), out=str(tmp_path / "shards"), size=48, workers=1,
                                   progress=False))
    assert report.written == faces and report.skipped == 0
    assert verify(tmp_path / "shards")["samples"] == faces
