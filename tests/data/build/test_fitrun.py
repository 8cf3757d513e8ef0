"""Fit-only runs: every annotated face fitted, no images needed; resumable; summaries; bad setups refused."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build import datasets as ds
from densereg_data.build.config import BuildConfig
from densereg_data.build.fitrun import run_fit
from densereg_data.errors import BuildError
from densereg_data.io.annotations import FaceAnnotation


@pytest.fixture
def faces(monkeypatch, tmp_path):
    """A registered dataset of 12 synthetic faces without images: 3 of them with the far jaw missing,
    one with too few points to fit (a recorded skip)."""
    from densereg_data.face.models import load_face_model
    from densereg_data.testing import synthetic_face

    fitter = load_face_model().fitter
    rng = np.random.default_rng(0)
    refs = []
    for i in range(12):
        face = synthetic_face(fitter, rng, max_yaw=60)
        state = np.full(68, cv.VISIBLE, np.uint8)
        if i % 4 == 1:
            state[:8] = cv.MISSING
        if i == 6:
            state[5:] = cv.MISSING
        subsets = ("odd",) if i % 2 else ("even",)
        a = FaceAnnotation(f"f{i:02d}.jpg", None, face.landmarks, state, split="test" if i < 8 else "train", subsets=subsets)
        refs.append(ds.SampleRef(None, None, a.source, a.split, a))

    class Faces(ds.Dataset):
        splits = ("test", "train")

        def _scan(self, splits):
            return [r for r in refs if r.split in splits], []

    Faces.name = "faces"
    monkeypatch.setitem(ds.DATASETS, "faces", Faces)
    (tmp_path / "root").mkdir()
    return refs


def _cfg(tmp_path, **kw):
    return BuildConfig(**{"dataset": "faces", "root": str(tmp_path / "root"), "out": str(tmp_path / "fits"), "workers": 1,
                          "progress": False, "samples_per_shard": 5, **kw})


def test_fit_run_writes_every_face_and_summarises(faces, tmp_path):
    report = run_fit(_cfg(tmp_path))
    out = tmp_path / "fits"
    assert report.faces == 12 and report.fitted == 11 and report.skipped == 1
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert skipped[0]["source"] == "f06.jpg" and "only 5 of 68 landmarks are placed" in skipped[0]["reason"]
    sources = []
    for f in sorted(out.glob("*-0000*.h5")):
        with h5py.File(f, "r") as h:
            sources += [s.decode() for s in h["source"][()]]
            assert h["identity"].shape[1] == 360 and h["residuals"].shape[1:] == (68,)
            missing = h["landmark_state"][()] == cv.MISSING
            assert np.array_equal(np.isnan(h["residuals"][()]), missing)
            assert (h["nme_box"][()] < 0.05).all()
    assert sorted(sources) == sorted(r.source for r in faces if r.source != "f06.jpg")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"]["test"]["faces"] == 7 and summary["groups"]["train"]["faces"] == 4
    assert summary["groups"]["test/odd"]["faces"] + summary["groups"]["test/even"]["faces"] == 7
    assert "| test/odd |" in (out / "summary.md").read_text()


def test_fit_run_resumes_and_refuses_another_configuration(faces, tmp_path):
    run_fit(_cfg(tmp_path))
    before = {p.name: p.read_bytes() for p in (tmp_path / "fits").glob("*.h5")}
    again = run_fit(_cfg(tmp_path))
    assert again.resumed_files == len(before) and again.fitted == 0 and again.skipped == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "fits").glob("*.h5")} == before
    with pytest.raises(BuildError, match="holds no fit run of this configuration"):
        run_fit(_cfg(tmp_path, model="menpo3d", seed=5))


def test_fit_run_never_writes_into_a_foreign_folder(faces, tmp_path):
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "mine.txt").write_text("user data")
    with pytest.raises(BuildError, match="is not empty"):
        run_fit(_cfg(tmp_path))
    assert (tmp_path / "fits" / "mine.txt").read_text() == "user data"
