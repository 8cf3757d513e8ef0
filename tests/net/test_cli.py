"""eval, predict and bench through the CLI and the library, and every bad input as one line with exit code 2."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from densereg_cli.net import main
from net_fakes import one_line_error, one_thread, rewrite_index, run, shards, write_shards  # noqa: F401  (fixtures)
from PIL import Image

from densereg_data.errors import InputError, ShardFormatError
from densereg_data.format import ShardIndex, read_split
from densereg_data.geometry.crop import crop_from_box, crop_from_landmarks, warp_crop
from densereg_data.io.landmarks import read_pts, write_pts
from densereg_net.predict import Predictor


def test_help_is_instant():
    r = subprocess.run([sys.executable, "-c", "import sys, densereg_cli.net as n; n.main(['--help']); "
                        "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert r.stdout.strip().endswith("False")


def test_eval_writes_report_on_val_by_default(run, capsys):
    assert main(["eval", str(run / "run" / "best.pt"), str(run / "shards"), "--out", str(run / "report")]) == 0
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["split"] == "val" and rep["samples"] == 2 and "'val' is the first of val, test, train" in rep["split_reason"]
    for key in ("landmarks", "dense", "parts", "mean_shape_baseline"):
        assert key in rep
    assert set(rep["landmarks"]) >= {"nme", "auc@0.08", "failure_rate"}
    for png in ("ced_landmarks.png", "ced_dense.png", "sheet.png"):
        assert Image.open(run / "report" / png).size[0] > 0
    out = capsys.readouterr().out
    assert out.startswith("val (2 images") and "NME" in out
    assert main(["eval", str(run / "run" / "best.pt"), str(run / "shards"), "--split", "test"]) == 0
    assert capsys.readouterr().out.startswith("test (3 images")
    assert rep["flip"] is False
    assert main(["eval", str(run / "run" / "best.pt"), str(run / "shards"), "--flip", "--out", str(run / "flip")]) == 0
    assert "test-time flip" in capsys.readouterr().out
    flipped = json.loads((run / "flip" / "report.json").read_text())
    assert flipped["flip"] is True and flipped["per_image"]["nme"] != rep["per_image"]["nme"]


@pytest.mark.parametrize("splits, expected, words", [
    ({"train": 2, "test": 2}, "test", "the first of val, test, train"),
    ({"train": 2, "val": 0, "test": 2}, "test", "the first of val, test, train"),
    ({"train": 2}, "train", "the training data, not a held-out score"),
    ({"extra": 2}, "extra", "none of val, test, train here"),
])
def test_eval_default_split_is_one_the_shards_have(run, tmp_path, splits, expected, words, caplog):
    from densereg_net.evaluate import evaluate
    caplog.set_level("INFO")
    root = write_shards(tmp_path / "s", splits)
    rep = evaluate(run / "run" / "best.pt", root)
    assert rep["split"] == expected and rep["samples"] == 2 and words in rep["split_reason"]
    assert any(f"on split {expected!r}" in m and words in m for m in caplog.messages)


def test_mean_shape_baseline_is_the_training_mean(run):
    from densereg_net.evaluate import evaluate
    from densereg_net.metrics import nme
    idx = ShardIndex.open(run / "shards")
    mean = read_split(idx, "train", ("landmarks",))["landmarks"].astype(np.float64).mean(0)
    test = read_split(idx, "test", ("landmarks",))["landmarks"].astype(np.float64)
    rep = evaluate(run / "run" / "best.pt", run / "shards", "test")
    assert rep["per_image"]["baseline_nme"] == pytest.approx([nme(mean, t) for t in test])


def _face(tmp_path):
    img = (np.random.default_rng(0).uniform(0, 255, (50, 70, 3))).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "face.png")
    pts = np.random.default_rng(1).uniform([20.0, 10.0], [45.0, 40.0], (68, 2)).round(3)
    pts[:2] = [[20.0, 10.0], [45.0, 40.0]]  # the box of the points: (20, 10, 45, 40)
    write_pts(tmp_path / "face.pts", pts)
    return img, pts


def test_predictor_returns_arrays_from_arrays_or_paths(run, tmp_path):
    img, pts = _face(tmp_path)
    p = Predictor(run / "run" / "best.pt", device="cpu")
    a = p.predict(img, landmarks=pts)
    b = p.predict(tmp_path / "face.png", landmarks=tmp_path / "face.pts")
    A = crop_from_landmarks(pts, 32, 0.25)  # the one crop rule, with the shards' size and margin
    assert np.array_equal(a.crop_from_image, A) and np.array_equal(a.crop, warp_crop(img, A, 32))
    assert a.uv.shape == (32, 32, 2) and a.uv.dtype == np.float32 and a.parts.dtype == np.uint8
    assert np.array_equal(a.fg, a.parts > 0) and (a.uv[~a.fg] == 0).all()
    assert a.landmarks.shape == (68, 2) and a.landmarks.dtype == np.float64
    for field in ("uv", "parts", "fg", "landmarks", "crop_from_image", "crop"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    box = p.predict(img, bbox=(20, 10, 45, 40))
    assert np.array_equal(box.crop_from_image, crop_from_box((20, 10, 45, 40), 32, 0.25))
    # landmarks come back in image pixels: through the inverse of crop_from_image
    crop_xy = a.landmarks @ A[:, :2].T + A[:, 2]
    assert np.isfinite(crop_xy).all() and (crop_xy > -1).all() and (crop_xy < 33).all()


def test_predict_cli_writes_iuv_overlay_and_pts(run, tmp_path):
    img, _ = _face(tmp_path)
    assert main(["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.png"),
                 "--landmarks", str(tmp_path / "face.pts"), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    pred = Predictor(run / "run" / "best.pt", device="cpu").predict(img, landmarks=tmp_path / "face.pts")
    iuv = np.asarray(Image.open(tmp_path / "out" / "face_iuv.png"))
    assert iuv.shape == (32, 32, 3) and np.array_equal(iuv[..., 0], pred.parts)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "face_crop.png")), pred.crop)
    # the whole photo (scaled to 384 px high) beside the zoomed crop (3 x 128 px)
    assert np.asarray(Image.open(tmp_path / "out" / "face_overlay.png")).shape == (384, 930, 3)
    assert np.array_equal(read_pts(tmp_path / "out" / "face.pts").points, pred.landmarks)  # exact round trip
    assert main(["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.png"),
                 "--bbox", "20,10,45,40", "--out", str(tmp_path / "out2")]) == 0
    assert main(["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.png"), "--flip",
                 "--landmarks", str(tmp_path / "face.pts"), "--out", str(tmp_path / "out3"), "--device", "cpu"]) == 0
    flipped = Predictor(run / "run" / "best.pt", device="cpu", flip=True).predict(img, landmarks=tmp_path / "face.pts")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out3" / "face_iuv.png"))[..., 0], flipped.parts)
    assert not np.array_equal(flipped.parts, pred.parts)


def test_labels_to_image_puts_each_crop_pixel_back(run):
    from densereg_net.draw import labels_to_image
    A = np.array([[0.5, 0.0, -5.25], [0.0, 0.5, -3.25]])  # image (x, y) -> crop (x / 2 - 5.25, y / 2 - 3.25)
    parts = np.arange(16, dtype=np.uint8).reshape(4, 4)
    uv = np.stack([parts / 16.0, parts / 32.0], -1).astype(np.float32)
    uv_img, parts_img = labels_to_image(uv, parts, A, (20, 24))
    # crop column c is image columns 2c + 10, 2c + 11; crop row r is image rows 2r + 6, 2r + 7
    want = np.zeros((20, 24), np.uint8)
    want[6:14, 10:18] = np.repeat(np.repeat(parts, 2, 0), 2, 1)
    assert np.array_equal(parts_img, want)
    assert uv_img[8, 12, 1] == uv[1, 1, 1] and uv_img[13, 17, 0] == uv[3, 3, 0] and (uv_img[want == 0] == 0).all()


def test_bench_cli_runs(capsys):
    assert main(["bench", "--device", "cpu", "--size", "32", "--batch-size", "2", "--iters", "1", "--warmup", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0


# --- bad input: one line each, exit 2 ---

def test_wrong_format_version(tmp_path, capsys):
    shards = rewrite_index(write_shards(tmp_path / "s"), format_version=4)
    with pytest.raises(ShardFormatError, match="format_version 4, this reader reads 1, 2, 3"):
        ShardIndex.open(shards)
    one_line_error(capsys, ["train", str(shards), "--out", str(tmp_path / "r")], "format_version 4")


def test_not_a_shard_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["train", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], "no index.json")


def test_missing_split(run, capsys):
    one_line_error(capsys, ["eval", str(run / "run" / "best.pt"), str(run / "shards"), "--split", "nope"],
                    "no split 'nope' in")


def test_empty_split(tmp_path, capsys):
    shards = write_shards(tmp_path / "s", {"train": 0, "val": 2})
    one_line_error(capsys, ["train", str(shards), "--out", str(tmp_path / "r")], "split 'train' in")


def test_checkpoint_from_a_different_k(run, tmp_path, capsys):
    shards = write_shards(tmp_path / "s", {"train": 2, "test": 2}, k=8)
    one_line_error(capsys, ["eval", str(run / "run" / "best.pt"), str(shards)], "trained with K = 10 bins, but")


def test_checkpoint_from_a_different_part_set(run, tmp_path, capsys):
    shards = rewrite_index(write_shards(tmp_path / "s", {"train": 2, "test": 2}), part_names=list("abcdefgh"))
    one_line_error(capsys, ["eval", str(run / "run" / "best.pt"), str(shards)], "trained with parts")


def test_resume_with_a_different_k(run, tmp_path, capsys):
    shutil.copytree(run / "run", tmp_path / "r")
    shards = write_shards(tmp_path / "s", {"train": 2, "val": 2}, k=8)
    one_line_error(capsys, ["train", str(shards), "--out", str(tmp_path / "r"), "--resume", "--width", "8"],
                    "trained with K = 10 bins")


@pytest.mark.parametrize("flags", [["--width", "16"], ["--width", "8", "--head", "regression"],
                                   ["--width", "8", "--input-norm", "imagenet"]])
def test_resume_with_another_model_is_refused(run, tmp_path, capsys, flags):
    shutil.copytree(run / "run", tmp_path / "r")
    one_line_error(capsys, ["train", str(run / "shards"), "--out", str(tmp_path / "r"), "--resume", *flags],
                   "resume with the same --head/--width/--input-norm")


def test_not_a_checkpoint(run, tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    one_line_error(capsys, ["eval", str(tmp_path / "x.pt"), str(run / "shards")], "x.pt: not a densereg HDF5 checkpoint")


def test_image_that_is_not_an_image(run, tmp_path, capsys):
    (tmp_path / "face.jpg").write_text("hello, I am text")
    one_line_error(capsys, ["predict", str(run / "run" / "best.pt"), str(tmp_path / "face.jpg"),
                             "--bbox", "0,0,10,10", "--out", str(tmp_path / "o")], "not an image")


def test_bad_bbox_and_missing_crop(run, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.png")
    one_line_error(capsys, ["predict", str(run / "run" / "best.pt"), str(tmp_path / "f.png"),
                             "--bbox", "1,2,3", "--out", str(tmp_path / "o")], "--bbox must be X0,Y0,X1,Y1")
    # neither --landmarks nor --bbox: the detector runs (or the missing detect extra is named), one line naming the image
    one_line_error(capsys, ["predict", str(run / "run" / "best.pt"), str(tmp_path / "f.png"),
                             "--out", str(tmp_path / "o")], "f.png")
    with pytest.raises(InputError, match="exactly one of landmarks"):
        Predictor(run / "run" / "best.pt", "cpu").crop_from_image(None, None)
    with pytest.raises(InputError, match="bbox must be 4 numbers"):
        Predictor(run / "run" / "best.pt", "cpu").predict(np.zeros((8, 8, 3), np.uint8), bbox=(1, 2, 3))


def test_bad_config_values_are_one_line(run, tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": "many"}))
    one_line_error(capsys, ["train", str(run / "shards"), "--config", str(tmp_path / "c.json")],
                    "epochs must be int, got str 'many'")
    one_line_error(capsys, ["train", str(run / "shards"), "--head", "nope"], "head must be one of")
    (tmp_path / "u.toml").write_text("[train]\nzoom = 2\n")
    one_line_error(capsys, ["train", str(run / "shards"), "--config", str(tmp_path / "u.toml")], "unknown settings")


def test_config_layering_defaults_file_flags(tmp_path):
    from densereg_cli.net_train import train_config
    (tmp_path / "c.toml").write_text('[train]\nepochs = 7\nbatch-size = 4\nhead = "regression"\n')
    cfg = train_config(str(tmp_path / "c.toml"), {"shards": "s", "epochs": 9, "lr": None, "augment": False})
    assert (cfg.epochs, cfg.batch_size, cfg.head, cfg.augment, cfg.lr) == (9, 4, "regression", False, 2e-3)
