"""Fuzz the readers of untrusted files (.pts, .ljson, shard folders) with hypothesis, in bounded time:
whatever the bytes, the only exceptions are the documented input errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densereg_data.errors import LandmarkFileError, ShardFormatError
from densereg_data.format import ShardIndex, open_shards, verify
from densereg_data.io.landmarks import read_landmarks

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

number = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text("0123456789.eE+-", max_size=12))
pts_line = st.lists(number, min_size=0, max_size=3).map(" ".join)
pts_text = st.builds(lambda header, n, lines, brace: f"{header}\nn_points: {n}\n{{\n" + "\n".join(lines) + ("\n}" if brace else ""),
                     st.sampled_from(["version: 1", "", "version: x"]), st.integers(-2, 70),
                     st.lists(pts_line, max_size=70), st.booleans())
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=40)


@FUZZ
@given(body=st.one_of(pts_text, st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_pts_reader(tmp_path, body):
    p = tmp_path / "f.pts"
    p.write_text(body, encoding="utf-8", errors="surrogateescape")
    try:
        lm = read_landmarks(p)
    except LandmarkFileError:
        return
    assert lm.points.shape == (68, 2) and np.isfinite(lm.points).all()


@FUZZ
@given(doc=st.one_of(json_value, st.builds(lambda pts: {"version": 2, "landmarks": {"points": pts}}, json_value),
                     st.builds(lambda pts: {"version": 3, "groups": {"g": {"landmarks": {"points": pts}}}}, json_value)))
def test_ljson_reader(tmp_path, doc):
    p = tmp_path / "f.ljson"
    p.write_text(json.dumps(doc))
    try:
        lm = read_landmarks(p)
    except LandmarkFileError:
        return
    assert lm.points.shape == (68, 2) and np.isfinite(lm.points).all()


@pytest.fixture(scope="module")
def good_shards(tmp_path_factory):
    from conftest import make_pts_tree
    from densereg_fakes import fake_backend

    from densereg_data.build.pipeline import BuildConfig, run_build

    tmp = tmp_path_factory.mktemp("fuzz")
    make_pts_tree(tmp / "d", n=3)
    run_build(BuildConfig(dataset="pts", root=str(tmp / "d"), out=str(tmp / "s"), size=16, workers=1, progress=False,
                          val_fraction=0.4), fake_backend())
    return tmp / "s"


def _read_everything(root):
    verify(root)
    ShardIndex.open(root)
    with open_shards(root) as ds:
        for i in range(len(ds)):
            ds[i]
        ds[0:len(ds)]


@FUZZ
@given(patch=st.dictionaries(st.sampled_from(["format", "format_version", "image_size", "k", "part_names", "splits",
                                              "split_aliases", "shards", "template", "config_sha256"]), json_value,
                             min_size=1, max_size=3))
def test_shard_reader_with_fuzzed_index(good_shards, tmp_path_factory, patch):
    root = tmp_path_factory.mktemp("case") / "s"
    shutil.copytree(good_shards, root)
    index = json.loads((root / "index.json").read_text())
    index.update(patch)
    (root / "index.json").write_text(json.dumps(index))
    try:
        _read_everything(root)
    except ShardFormatError:
        pass


@FUZZ
@given(offset=st.integers(0, 10**6), data=st.binary(min_size=1, max_size=64))
def test_shard_reader_with_corrupted_bytes(good_shards, tmp_path_factory, offset, data):
    root = tmp_path_factory.mktemp("case") / "s"
    shutil.copytree(good_shards, root)
    shard = sorted(root.glob("train-*.h5"))[0]
    raw = bytearray(shard.read_bytes())
    at = offset % len(raw)
    raw[at:at + len(data)] = data
    shard.write_bytes(bytes(raw[:len(raw)]))
    index = json.loads((root / "index.json").read_text())
    for rec in index["shards"]:  # an attacker keeps the index consistent with the tampered file
        if rec["file"] == shard.name:
            from densereg_data.format.files import sha256_file

            rec["bytes"], rec["sha256"] = shard.stat().st_size, sha256_file(shard)
    (root / "index.json").write_text(json.dumps(index))
    try:
        _read_everything(root)
    except ShardFormatError:
        pass
