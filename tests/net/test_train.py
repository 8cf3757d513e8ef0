import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from densereg_net.train import TrainConfig, lr_factor, train
from net_fakes import one_thread, shards  # noqa: F401  (fixtures)

SMALL = dict(epochs=3, batch_size=2, width=8, log_every=1, num_workers=0, warmup_steps=2)


def _cfg(shards, out, **kw):
    return TrainConfig(shards=str(shards), out=str(out), **{**SMALL, **kw})


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 4, 100) == 0.25 and lr_factor(3, 4, 100) == 1.0
    assert lr_factor(52, 4, 100) == pytest.approx(0.5)
    assert lr_factor(100, 4, 100) == pytest.approx(0.0)


def test_train_writes_checkpoints_metrics_and_config(shards, tmp_path, caplog):
    caplog.set_level("INFO")
    r = train(_cfg(shards, tmp_path / "run", epochs=2))
    assert r["epoch"] == 2 and not r["stopped"]
    ck = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 2 and ck["step"] == 0 and ck["k"] == 10 and len(ck["index_sha256"]) == 64
    assert ck["config"]["head"] == "quantized" and ck["crop"] == {"margin": 0.25, "size": 32}
    assert (tmp_path / "run" / "best.pt").is_file()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_dense" in rows[0] and "val_nme" in rows[0]
    assert any("img/s" in m and "loss" in m and "lr" in m for m in caplog.messages)


def test_resume_after_stop_equals_uninterrupted(shards, tmp_path):
    train(_cfg(shards, tmp_path / "full"))
    r = train(_cfg(shards, tmp_path / "part", stop_after_epoch=1))
    assert r["stopped"] and r["epoch"] == 1
    train(_cfg(shards, tmp_path / "part"), resume=True)
    assert _same(_weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt"))
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    part = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
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
    assert r["stopped"]
    ck = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 1)  # 3 steps per epoch: stopped after the 4th
    monkeypatch.setattr(T, "compute_loss", real)
    train(_cfg(shards, tmp_path / "part", data_mode="stream"), resume=True)
    assert _same(_weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt"))


def _cli_args(shards, out, epochs):
    return [sys.executable, "-m", "densereg_net.train", str(shards), "--out", str(out), "--epochs", str(epochs),
            "--batch-size", "2", "--width", "8", "--num-workers", "0", "--device", "cpu"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    from net_fakes import write_shards
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
    ck = torch.load(last, weights_only=True)
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
    train(TrainConfig(shards=shards, out=out, device="cpu", **{**SMALL, "epochs": 2}))
    ck = torch.load(Path(out) / "last.pt", weights_only=True) if rank == 0 else None
    del ck


def test_ddp_two_processes_gloo_loopback(shards, tmp_path):
    import torch.multiprocessing as mp
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(shards), str(out)), nprocs=2, join=True)
    ck = torch.load(out / "last.pt", weights_only=True)
    # 6 samples, 2 per rank per step, 2 ranks -> 1 step per epoch
    assert ck["epoch"] == 2 and ck["global_step"] == 2
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 2


@pytest.mark.slow
def test_torchrun_two_processes(shards, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside the interpreter")
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "densereg_net.train"] + _cli_args(shards, tmp_path / "tr", 1)[3:]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "tr" / "last.pt").is_file()
