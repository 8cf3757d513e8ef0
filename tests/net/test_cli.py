"""eval, predict and bench through the CLI, and every bad input as one line with exit code 2."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from net_fakes import write_shards
from densereg_cli.net import main
from densereg_net.errors import NetInputError
from densereg_net.predict import crop_from_box, crop_from_landmarks, read_pts, write_pts
from densereg_net.shards import ShardIndex
from densereg_net.train import TrainConfig, train
from net_fakes import one_thread, shards  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("net")
    shards = write_shards(root / "shards", {"train": 6, "val": 2, "test": 2})
    torch.set_num_threads(1)
    train(TrainConfig(shards=str(shards), out=str(root / "run"), epochs=1, batch_size=2, width=8, num_workers=0))
    return root


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert "Traceback" not in "\n".join(err)


def test_help_is_instant():
    r = subprocess.run([sys.executable, "-c", "import sys, densereg_cli.net as n; n.main(['--help']); "
                        "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert r.stdout.strip().endswith("False")


def test_eval_writes_report(run, capsys):
    assert main(["eval", str(run / "run" / "best.pt"), str(run / "shards"), "--out", str(run / "report")]) == 0
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["split"] == "test" and rep["samples"] == 2
    for key in ("landmarks", "dense", "parts", "mean_shape_baseline"):
        assert key in rep
    assert set(rep["landmarks"]) >= {"nme", "auc@0.08", "failure_rate"}
    for png in ("ced_landmarks.png", "ced_dense.png", "sheet.png"):
        assert Image.open(run / "report" / png).size[0] > 0
    assert "NME" in capsys.readouterr().out


def test_mean_shape_baseline_is_the_training_mean(run):
    from densereg_net.evaluate import evaluate
    from densereg_net.metrics import nme
    from densereg_net.shards import read_split
    idx = ShardIndex.open(run / "shards")
    mean = read_split(idx, "train", ("landmarks",))["landmarks"].astype(np.float64).mean(0)
    test = read_split(idx, "test", ("landmarks",))["landmarks"].astype(np.float64)
    rep = evaluate(run / "run" / "best.pt", run / "shards", "test")
    assert rep["per_image"]["baseline_nme"] == pytest.approx([nme(mean, t) for t in test])


def test_pts_round_trip_is_one_based(tmp_path):
    p = tmp_path / "a.pts"
    p.write_text("version: 1\nn_points:  2\n{\n1 1\n4 2\n}")
    assert read_pts(p).tolist() == [[0, 0], [3, 1]]
    write_pts(tmp_path / "b.pts", read_pts(p))
    assert np.allclose(read_pts(tmp_path / "b.pts"), [[0, 0], [3, 1]])
    assert "1.0000 1.0000" in (tmp_path / "b.pts").read_text()


def test_crop_convention():
    # the box centre lands at the crop centre; the square's side maps to S pixels
    A = crop_from_box(10, 20, 50, 40, margin=0.25, size=64)
    assert np.allclose(A @ [30, 30, 1], [31.5, 31.5])
    side = 40 * 1.5
    assert np.allclose(A[0, 0], 64 / side)
    # the square's left edge (continuous) maps to the crop's left edge -0.5
    assert np.allclose(A @ [30 - side / 2, 30, 1], [-0.5, 31.5])
    pts = np.array([[10.0, 20.0], [50.0, 40.0]])
    assert np.allclose(crop_from_landmarks(pts, 0.25, 64), A)


def test_predict_writes_iuv_overlay_and_pts(run, tmp_path):
    img = (np.random.default_rng(0).uniform(0, 255, (50, 70, 3))).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "face.png")
    write_pts(tmp_path / "face.pts", np.array([[20.0, 10.0], [45.0, 40.0]]))
    assert main(["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.png"),
                 "--landmarks", str(tmp_path / "face.pts"), "--out", str(tmp_path / "out")]) == 0
    iuv = np.asarray(Image.open(tmp_path / "out" / "face_iuv.png"))
    assert iuv.shape == (32, 32, 3) and iuv[..., 0].max() <= 8
    assert np.asarray(Image.open(tmp_path / "out" / "face_overlay.png")).shape == (50, 70, 3)
    assert read_pts(tmp_path / "out" / "face.pts").shape == (68, 2)
    assert main(["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.png"),
                 "--bbox", "20,10,45,40", "--out", str(tmp_path / "out2")]) == 0


def test_bench_cli_runs(capsys):
    assert main(["bench", "--device", "cpu", "--size", "32", "--batch-size", "2", "--iters", "1", "--warmup", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0


# --- bad input: one line each, exit 2 ---

def test_wrong_format_version(tmp_path, capsys):
    shards = write_shards(tmp_path / "s", version=2)
    with pytest.raises(NetInputError, match="format version 2 is not supported"):
        ShardIndex.open(shards)
    _one_line_error(capsys, ["train", str(shards), "--out", str(tmp_path / "r")], "format version 2")


def test_not_a_shard_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["train", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], "index.json is missing")


def test_missing_split(run, capsys):
    with pytest.raises(NetInputError, match="split 'nope' is not in .*available: test, train, val"):
        ShardIndex.open(run / "shards").files("nope")
    _one_line_error(capsys, ["eval", str(run / "run" / "best.pt"), str(run / "shards"), "--split", "nope"],
                    "split 'nope' is not in")


def test_empty_split(tmp_path, capsys):
    shards = write_shards(tmp_path / "s", {"train": 0, "val": 2})
    _one_line_error(capsys, ["train", str(shards), "--out", str(tmp_path / "r")], "split 'train' in")
    with pytest.raises(NetInputError, match="is empty"):
        ShardIndex.open(shards).files("train")


def test_checkpoint_from_a_different_k(run, tmp_path, capsys):
    shards = write_shards(tmp_path / "s", {"train": 2, "test": 2}, k=8)
    _one_line_error(capsys, ["eval", str(run / "run" / "best.pt"), str(shards)],
                    "trained with K = 10 bins, but")


def test_checkpoint_from_a_different_part_set(run, tmp_path, capsys):
    names = ("a", "b", "c", "d", "e", "f", "g", "h")
    shards = write_shards(tmp_path / "s", {"train": 2, "test": 2}, part_names=names)
    _one_line_error(capsys, ["eval", str(run / "run" / "best.pt"), str(shards)], "trained with parts")


def test_resume_with_a_different_k(run, tmp_path, capsys):
    shutil.copytree(run / "run", tmp_path / "r")
    shards = write_shards(tmp_path / "s", {"train": 2, "val": 2}, k=8)
    _one_line_error(capsys, ["train", str(shards), "--out", str(tmp_path / "r"), "--resume", "--width", "8"],
                    "trained with K = 10 bins")


def test_not_a_checkpoint(run, tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    _one_line_error(capsys, ["eval", str(tmp_path / "x.pt"), str(run / "shards")], "cannot read checkpoint")


def test_image_that_is_not_an_image(run, tmp_path, capsys):
    (tmp_path / "face.jpg").write_text("hello, I am text")
    _one_line_error(capsys, ["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.jpg"),
                             "--bbox", "0,0,10,10", "--out", str(tmp_path / "o")], "is not a readable image")


def test_bad_bbox_and_missing_crop(run, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.png")
    _one_line_error(capsys, ["predict", str(run / "run" / "best.pt"), str(tmp_path / "f.png"),
                             "--bbox", "1,2,3", "--out", str(tmp_path / "o")], "--bbox must be X0,Y0,X1,Y1")
    _one_line_error(capsys, ["predict", str(run / "run" / "best.pt"), str(tmp_path / "f.png"),
                             "--out", str(tmp_path / "o")], "exactly one of --landmarks")


def test_crop_matches_the_shard_builder():
    label = pytest.importorskip("densereg_data.geometry.crop")
    from densereg_net.predict import crop_image
    rng = np.random.default_rng(0)
    lm = rng.uniform(100, 400, (68, 2))
    for size in (64, 256):
        A = crop_from_landmarks(lm, 0.25, size)
        assert np.allclose(A, label.crop_from_landmarks(lm, size, 0.25), atol=1e-12)
        img = rng.integers(0, 255, (480, 520, 3), dtype=np.uint8)
        assert np.array_equal(crop_image(img, A, size), label.warp_crop(img, A, size))


def test_crop_settings_from_nested_build_config(tmp_path):
    import json as _json
    shards = write_shards(tmp_path / "s")
    (shards / "config.json").write_text(_json.dumps({"build": {"margin": 0.3, "size": 32}, "format_version": 1}))
    assert ShardIndex.open(shards).crop() == {"margin": 0.3, "size": 32}
