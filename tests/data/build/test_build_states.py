"""Builds from annotations with per-point states (visible, occluded, missing): stored, verified, refused when wrong."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build import datasets as ds
from densereg_data.build.pipeline import BuildConfig, run_build
from densereg_data.errors import ShardFormatError
from densereg_data.format import open_shards
from densereg_data.format.files import sha256_file
from densereg_data.format.verify import verify
from densereg_data.io.annotations import FaceAnnotation
from densereg_data.io.images import write_png


@pytest.fixture
def state_dataset(tmp_path, monkeypatch):
    """A registered dataset of 4 synthetic faces whose far-side jaw is missing and eyes occluded."""
    from densereg_data.face.models import load_face_model
    from densereg_data.testing import synthetic_face

    fitter = load_face_model().fitter
    rng = np.random.default_rng(0)
    refs = []
    for i in range(4):
        face = synthetic_face(fitter, rng, max_yaw=60, size=96)
        image = tmp_path / "img" / f"f{i}.png"
        image.parent.mkdir(exist_ok=True)
        write_png(image, rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        state = np.full(68, cv.VISIBLE, np.uint8)
        far = list(range(0, 8)) if face.camera.pose[0] < 0 else list(range(9, 17))
        state[far] = cv.MISSING
        state[36:42] = cv.OCCLUDED
        annotation = FaceAnnotation(f"img/f{i}.png", image, face.landmarks, state, split="train")
        refs.append(ds.SampleRef(image, None, annotation.source, "train", annotation))

    class StateDataset(ds.Dataset):
        splits = ("train",)

        def _scan(self, splits):
            return list(refs), []

    monkeypatch.setitem(ds.DATASETS, "states", StateDataset)
    StateDataset.name = "states"
    return refs


def test_states_are_stored_and_missing_points_are_nan(state_dataset, tmp_path):
    out = tmp_path / "shards"
    report = run_build(BuildConfig(dataset="states", root=str(tmp_path), out=str(out), size=48, workers=1, progress=False))
    assert report.written == 4 and report.skipped == 0
    assert verify(out)["samples"] == 4
    shards = open_shards(out)
    for i, ref in enumerate(state_dataset):
        sample = shards[i]
        assert np.array_equal(sample["landmark_state"], ref.annotation.state)
        assert np.array_equal(np.isnan(sample["landmarks"]).any(axis=1), ref.annotation.state == cv.MISSING)
        assert np.isfinite(sample["fit_nme"])


def test_a_sample_ref_needs_exactly_one_landmark_source(state_dataset):
    from densereg_data.errors import BuildError

    ref = state_dataset[0]
    with pytest.raises(BuildError, match="needs a landmark file or an annotation"):
        ds.SampleRef(ref.image, ref.image, ref.source, "train", ref.annotation)
    with pytest.raises(BuildError, match="needs a landmark file or an annotation"):
        ds.SampleRef(ref.image, None, ref.source, "train")


@pytest.mark.parametrize("change, needle", [("nan_placed", "landmarks are NaN where a point is placed"),
                                            ("bad_state", "is not 0, 1 or 2")])
def test_verify_refuses_states_that_disagree_with_the_points(state_dataset, tmp_path, change, needle):
    out = tmp_path / "shards"
    run_build(BuildConfig(dataset="states", root=str(tmp_path), out=str(out), size=48, workers=1, progress=False))
    shard = next(out.glob("train-*.h5"))
    with h5py.File(shard, "r+") as f:
        if change == "nan_placed":
            f["landmarks"][0, 30] = np.nan
        else:
            f["landmark_state"][0, 3] = 7
    index = (out / "index.json").read_text()
    import json

    doc = json.loads(index)
    for rec in doc["shards"]:
        if rec["file"] == shard.name:
            rec["sha256"], rec["bytes"] = sha256_file(shard), shard.stat().st_size
    (out / "index.json").write_text(json.dumps(doc))
    with pytest.raises(ShardFormatError, match=needle):
        verify(out)


def test_the_contact_sheet_draws_occluded_points_differently_and_missing_ones_not(state_dataset, tmp_path):
    from densereg_data.build.preview import render_tile

    out = tmp_path / "shards"
    run_build(BuildConfig(dataset="states", root=str(tmp_path), out=str(out), size=96, workers=1, progress=False))
    sample = dict(open_shards(out)[0])
    tile = render_tile(sample)
    magenta = np.all(tile == (255, 0, 255), axis=2)
    green = np.all(tile == (40, 255, 40), axis=2)
    lm, state = sample["landmarks"], sample["landmark_state"]
    for i in np.flatnonzero(state == cv.OCCLUDED):
        x, y = np.round(lm[i]).astype(int)
        assert magenta[y - 1:y + 2, x - 1:x + 2].any() and not green[y, x]
    sample["landmark_state"] = np.full(68, cv.VISIBLE, np.uint8)
    sample["landmarks"] = np.where(np.isnan(lm), 0.0, lm)
    assert not np.all(render_tile(sample) == (255, 0, 255), axis=2).any()  # all visible: no magenta at all
