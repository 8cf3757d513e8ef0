"""Hostile shards, images, landmark files, boxes and flags through densereg-net: each is one line naming
the file or flag and the problem, exit code 2, never a traceback, and nothing written over an input
(issue "Hostile files and faults"; the checkpoint's cases are in test_checkpoint.py)."""

import json

import numpy as np
import pytest
from net_fakes import HOSTILE_SHARDS, huge_png, make_hostile, one_line_error, one_thread, run, write_shards  # noqa: F401
from PIL import Image

from densereg_data.errors import ShardFormatError
from densereg_data.io.landmarks import write_pts
from densereg_net.data import ShardDataset

TRAIN = ["--width", "8", "--epochs", "1", "--batch-size", "2", "--device", "cpu"]


@pytest.mark.parametrize("case", sorted(HOSTILE_SHARDS))
def test_hostile_shards_are_one_line_in_train_eval_and_the_dataset(run, tmp_path, capsys, case):
    root = make_hostile(write_shards(tmp_path / "s"), case, tmp_path / "outside")
    problem = HOSTILE_SHARDS[case]
    by_index = case.startswith("index")
    train_file, val_file = ("index.json", "index.json") if by_index else ("train-00000.h5", "val-00000.h5")
    one_line_error(capsys, ["train", root, "--out", tmp_path / "r1", "--num-workers", "0", *TRAIN], train_file, problem)
    one_line_error(capsys, ["train", root, "--out", tmp_path / "r2", "--data-mode", "stream", "--num-workers", "2",
                            *TRAIN], train_file, problem)  # refused here, not in a DataLoader worker
    one_line_error(capsys, ["eval", run / "run" / "best.pt", root], val_file, problem)
    with pytest.raises(ShardFormatError, match=train_file.replace(".", r"\.")) as exc:
        ShardDataset(root, "train")
    assert problem in str(exc.value)
    assert not (tmp_path / "r1" / "last.pt").exists() and not (tmp_path / "r2" / "last.pt").exists()


@pytest.fixture
def face(tmp_path):
    """face.png (40 x 60) and face.pts (68 points) in tmp_path."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "face.png")
    write_pts(tmp_path / "face.pts", np.random.default_rng(1).uniform([10, 8], [50, 32], (68, 2)))
    return tmp_path / "face.png"


@pytest.mark.parametrize("bbox, needle", [
    ("0,0,1e300,1e300", "bbox must be finite and within 1e+07 pixels of the image origin, got 0, 0, 1e+300, 1e+300"),
    ("0,0,nan,10", "bbox must be finite and within 1e+07 pixels of the image origin, got 0, 0, nan, 10"),
    ("-inf,0,10,10", "bbox must be finite"),
    ("30,20,10,5", "crop box must have x1 > x0 and y1 > y0 (an area to crop)"),
    ("10,10,10,30", "crop box must have x1 > x0 and y1 > y0 (an area to crop)"),
])
def test_predict_refuses_absurd_boxes(run, face, tmp_path, capsys, bbox, needle):
    one_line_error(capsys, ["predict", run / "run" / "best.pt", face, "--bbox", bbox, "--out", tmp_path / "o"], needle)
    assert not (tmp_path / "o").exists()


def test_predict_refuses_a_crop_beyond_the_landmark_limit(run, face, tmp_path, capsys):
    """A box within the limit whose crop (1 + 2 * margin times larger) is not: said up front, not as a
    bad predicted landmark when the .pts is written."""
    from densereg_cli.net import main

    one_line_error(capsys, ["predict", run / "run" / "best.pt", face, "--bbox", "-1e7,-1e7,1e7,1e7", "--out",
                            tmp_path / "o"], "the crop around the bbox reaches 2.29688e+07 pixels from the image origin")
    assert main(["predict", str(run / "run" / "best.pt"), str(face), "--bbox", "-3e6,-3e6,3e6,3e6",
                 "--out", str(tmp_path / "o")]) == 0


def test_predict_refuses_a_decompression_bomb(run, tmp_path, capsys):
    png = huge_png(tmp_path / "huge.png", 30000)
    assert png.stat().st_size < 2_000_000
    one_line_error(capsys, ["predict", run / "run" / "best.pt", png, "--bbox", "0,0,10,10", "--out", tmp_path / "o"],
                   "image too large to decode safely", "huge.png")


def test_predict_refuses_a_pts_file_of_67_points(run, face, tmp_path, capsys):
    write_pts(tmp_path / "f67.pts", np.random.default_rng(1).uniform(10, 30, (67, 2)))
    one_line_error(capsys, ["predict", run / "run" / "best.pt", face, "--landmarks", tmp_path / "f67.pts",
                            "--out", tmp_path / "o"], f"landmarks must be (68, 2), got (67, 2) in {tmp_path / 'f67.pts'}")


@pytest.mark.parametrize("collides", ["face.pts", "best.pt"])
def test_predict_never_writes_over_an_input(run, face, tmp_path, capsys, collides):
    """--out the image's own folder: face.pts would be replaced by the prediction (the landmarks given,
    or the checkpoint named face.pts); refused before anything is written."""
    checkpoint = run / "run" / "best.pt"
    if collides == "best.pt":
        checkpoint = tmp_path / "face.pts"
        checkpoint.write_bytes((run / "run" / "best.pt").read_bytes())
        args = ["--bbox", "10,8,50,32"]
    else:
        args = ["--landmarks", tmp_path / "face.pts"]
    before = (tmp_path / "face.pts").read_bytes()
    one_line_error(capsys, ["predict", checkpoint, face, *args, "--out", tmp_path],
                   f"--out {tmp_path}: {tmp_path / 'face.pts'} would write over the input")
    assert (tmp_path / "face.pts").read_bytes() == before and not (tmp_path / "face_iuv.png").exists()


def test_predict_and_eval_never_write_into_a_shard_folder(run, face, capsys):
    one_line_error(capsys, ["predict", run / "run" / "best.pt", face, "--bbox", "10,8,50,32", "--out",
                            run / "shards" / "pred"], "is inside the shard folder")
    one_line_error(capsys, ["eval", run / "run" / "best.pt", run / "shards", "--out", run / "shards"],
                   "is inside the shard folder")
    assert not (run / "shards" / "pred").exists() and not (run / "shards" / "report.json").exists()


@pytest.mark.parametrize("flag, value, needle", [
    ("--log-every", "0", "log_every must be >= 1, got 0"),
    ("--lr", "nan", "lr must be a finite number (float), got float 'nan'"),
    ("--lr", "inf", "lr must be a finite number (float), got float 'inf'"),
    ("--width", "0", "width must be >= 1, got 0"),
    ("--width", "100000", "width must be <= 256, got 100000"),
    ("--batch-size", "0", "batch_size must be >= 1, got 0"),
    ("--epochs", "-1", "epochs must be >= 0 (0: auto), got -1"),
    ("--config", {"epochs": "3"}, "epochs must be int, got str '3'"),
    ("--config", {"lr": -1}, "lr must be a finite number >= 0, got -1"),
    ("--config", {"augment_config": {"scale": "big"}}, "augment_config: scale must be float, got str 'big'"),
])
def test_bad_training_settings_are_one_line(run, tmp_path, capsys, flag, value, needle):
    if flag == "--config":
        (tmp_path / "c.json").write_text(json.dumps(value))
        value = tmp_path / "c.json"
    one_line_error(capsys, ["train", run / "shards", "--out", tmp_path / "r", flag, value], needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("batch_size", ["-4", "0"])
def test_eval_refuses_a_batch_size_below_one(run, capsys, batch_size):
    one_line_error(capsys, ["eval", run / "run" / "best.pt", run / "shards", "--batch-size", batch_size],
                   f"batch_size must be an integer >= 1, got {batch_size}")


@pytest.mark.parametrize("name", ["lr", "weight_decay", "grad_clip"])
def test_train_config_refuses_non_finite_numbers(name):
    from densereg_data.errors import ConfigError
    from densereg_net.config import TrainConfig

    with pytest.raises(ConfigError, match=f"{name} must be a finite number >= 0, got nan"):
        TrainConfig(**{name: float("nan")})
