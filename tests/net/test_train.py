import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from net_fakes import one_thread, shards, write_shards  # noqa: F401  (fixtures)

from densereg_data.errors import ConfigError
from densereg_data.format import ShardIndex
from densereg_net.augment import AugmentConfig, SeededAugment
from densereg_net.checkpoint import load_checkpoint
from densereg_net.data import DeviceData, epoch_batches
from densereg_net.losses import compute_loss
from densereg_net.model import build_model
from densereg_net.train import TrainConfig, lr_factor, make_optimizer, train

SMALL = dict(epochs=3, batch_size=2, width=8, log_every=1, num_workers=0, warmup_steps=2)


def _cfg(shards, out, **kw):
    return TrainConfig(shards=str(shards), out=str(out), **{**SMALL, **kw})


def _weights(path):
    return load_checkpoint(path)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 4, 100) == 0.25 and lr_factor(3, 4, 100) == 1.0
    assert lr_factor(52, 4, 100) == pytest.approx(0.5)
    assert lr_factor(100, 4, 100) == pytest.approx(0.0)


def test_train_writes_checkpoints_metrics_and_config(shards, tmp_path, caplog):
    caplog.set_level("INFO")
    r = train(_cfg(shards, tmp_path / "run", epochs=2))
    assert r.epoch == 2 and not r.stopped and r.select_best == "val_dense"
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["epoch"] == 2 and ck["step"] == 0 and ck["k"] == 10 and len(ck["index_sha256"]) == 64
    assert ck["config"]["head"] == "quantized" and ck["crop"] == {"margin": 0.25, "size": 32}
    assert _same(ck["model"], r.model.state_dict())
    assert (tmp_path / "run" / "best.pt").is_file()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_dense" in rows[0] and "val_nme" in rows[0]
    assert r.best_metric == pytest.approx(min(float(row["val_dense"]) for row in rows))
    assert any("img/s" in m and "loss" in m and "lr" in m for m in caplog.messages)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["select_best"] == "val_dense"


def test_without_a_val_split_best_is_the_lowest_training_loss_and_says_so(tmp_path, caplog, monkeypatch):
    import densereg_net.train as T

    caplog.set_level("INFO")
    root = write_shards(tmp_path / "s", {"train": 6})
    calls, real = {"n": 0}, T.compute_loss

    def epoch_2_lowest(*a, **k):  # 3 steps per epoch: the loss of epoch 2 (steps 4-6) is scaled down
        calls["n"] += 1
        loss, terms = real(*a, **k)
        return (loss * 0.01 if 4 <= calls["n"] <= 6 else loss), terms

    monkeypatch.setattr(T, "compute_loss", epoch_2_lowest)
    r = train(_cfg(root, tmp_path / "run", epochs=3))
    assert r.select_best == "train_loss"
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    losses = [float(row["train_loss"]) for row in rows]
    assert "val_loss" not in rows[0] and r.best_metric == min(losses) == losses[1]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 2 and best["config"]["select_best"] == "train_loss"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["select_best"] == "train_loss"
    assert any("no validation split 'val'" in m for m in caplog.messages)
    assert any("best.pt: the epoch with the lowest training loss" in m for m in caplog.messages)
    with pytest.raises(ConfigError, match="select_best val_dense needs a validation split"):
        train(_cfg(root, tmp_path / "run2", select_best="val_dense"))


def test_auto_epochs_is_the_recipe_step_budget(shards, tmp_path):
    """epochs 0: 3,750 steps (250 epochs of 240 faces at batch 16), at least 30 epochs; config.json
    records the resolved number."""
    from densereg_net.config import auto_epochs
    assert (auto_epochs(15), auto_epochs(197), auto_epochs(3), auto_epochs(7)) == (250, 30, 1250, 536)
    r = train(_cfg(shards, tmp_path / "auto", epochs=0, stop_after_epoch=1))
    steps = load_checkpoint(tmp_path / "auto" / "last.pt")["global_step"]  # one epoch's
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert r.stopped and config["epochs"] == auto_epochs(steps)


def test_config_values_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="head must be one of classification, quantized, regression, got 'nope'"):
        TrainConfig(head="nope")
    with pytest.raises(ConfigError, match=r"epochs must be >= 0 \(0: auto\), got -1"):
        TrainConfig(epochs=-1)
    with pytest.raises(ConfigError, match="augment_config keys must be among scale, "):
        TrainConfig(augment_config={"zoom": 2})


def test_resume_after_stop_equals_uninterrupted(shards, tmp_path):
    train(_cfg(shards, tmp_path / "full"))
    r = train(_cfg(shards, tmp_path / "part", stop_after_epoch=1))
    assert r.stopped and r.epoch == 1
    train(_cfg(shards, tmp_path / "part"), resume=True)
    assert _same(_weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt"))
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    part = load_checkpoint(tmp_path / "part" / "last.pt")
    assert full["global_step"] == part["global_step"]
    assert torch.equal(full["optimizer"]["state"][0]["exp_avg"], part["optimizer"]["state"][0]["exp_avg"])


def test_resume_after_sigterm_mid_epoch_equals_uninterrupted(shards, tmp_path, monkeypatch):
    """SIGTERM in the middle of an epoch saves (epoch, step); resume reproduces the full run."""
    import densereg_net.train as T

    train(_cfg(shards, tmp_path / "full", data_mode="stream"))
    calls = {"n": 0}
    real = T.compute_loss

    def kill_at_step_4(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(T, "compute_loss", kill_at_step_4)
    r = train(_cfg(shards, tmp_path / "part", data_mode="stream"))
    assert r.stopped
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert (ck["epoch"], ck["step"]) == (1, 1)  # 3 steps per epoch: stopped after the 4th
    monkeypatch.setattr(T, "compute_loss", real)
    train(_cfg(shards, tmp_path / "part", data_mode="stream"), resume=True)
    assert _same(_weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt"))


def _cli_args(shards, out, epochs):
    return [sys.executable, "-m", "densereg_cli.net", "train", str(shards), "--out", str(out), "--epochs", str(epochs),
            "--batch-size", "2", "--width", "8", "--num-workers", "0", "--device", "cpu"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    shards = write_shards(tmp_path / "shards", {"train": 24, "val": 2})
    epochs = 4
    subprocess.run(_cli_args(shards, tmp_path / "full", epochs), check=True, env=_env(), capture_output=True)
    p = subprocess.Popen(_cli_args(shards, tmp_path / "part", epochs), env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "part" / "last.pt"
    t0 = time.time()
    while not last.exists() and time.time() - t0 < 60 and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    ck = load_checkpoint(last)
    assert ck["epoch"] < epochs, "the run finished before it could be killed"
    subprocess.run(_cli_args(shards, tmp_path / "part", epochs) + ["--resume"], check=True, env=_env(), capture_output=True)
    assert _same(_weights(tmp_path / "full" / "last.pt"), _weights(last))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, shards, out):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    r = train(TrainConfig(shards=shards, out=out, device="cpu", **{**SMALL, "epochs": 1}))
    np.savez(Path(out) / f"rank{rank}.npz", **{k: v.numpy() for k, v in r.model.state_dict().items()})


def _one_step_in_one_process(shards, cfg: TrainConfig) -> dict:
    """The same global batch in one process: each rank's half as a micro-batch (BatchNorm normalises
    per rank under DDP, so per half here), gradients averaged over the halves, one optimizer step."""
    index = ShardIndex.open(shards)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.head, index.k, cfg.width).train()
    opt, _ = make_optimizer(model, cfg, total_steps=1)
    data = DeviceData(index, "train", torch.device("cpu"), SeededAugment(AugmentConfig(**cfg.augment_config), cfg.seed))
    opt.zero_grad()
    for rank in range(2):
        batch = data.batch(epoch_batches(len(data), cfg.batch_size, 0, cfg.seed, world=2, rank=rank)[0], 0)
        loss, _ = compute_loss(cfg.head, model(batch["image"]), batch, index.k)
        (loss / 2).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return dict(model.named_parameters())


def test_ddp_two_processes_gloo_loopback(shards, tmp_path):
    """One DDP step on 2 ranks x 2 samples: both ranks hold the same weights afterwards, and they are
    the weights of one process stepping on the same global batch of 4 (gradients averaged)."""
    import torch.multiprocessing as mp
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(shards), str(out)), nprocs=2, join=True)
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1 and ck["global_step"] == 1  # 6 samples, 2 per rank, 2 ranks -> 1 step
    halves = [epoch_batches(6, 2, 0, 0, world=2, rank=r)[0] for r in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(epoch_batches(6, 4, 0, 0)[0])  # one global batch of 4
    rank0, rank1 = ({k: torch.from_numpy(v) for k, v in np.load(out / f"rank{r}.npz").items()} for r in range(2))
    reference = _one_step_in_one_process(shards, TrainConfig(shards=str(shards), device="cpu", **{**SMALL, "epochs": 1}))
    torch.manual_seed(0)
    init = dict(build_model("quantized", 10, SMALL["width"]).named_parameters())
    for name, param in reference.items():
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.allclose(rank0[name], param.detach(), rtol=0, atol=1e-6), name
    assert any(not torch.equal(rank0[n], init[n].detach()) for n in reference)  # the step changed the weights
    assert _same(ck["model"], rank0)
    assert len(list(csv.DictReader(open(out / "metrics.csv")))) == 1


@pytest.mark.slow
def test_torchrun_two_processes(shards, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside the interpreter")
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "densereg_cli.net", "train"] + _cli_args(shards, tmp_path / "tr", 1)[4:]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "tr" / "last.pt").is_file()
