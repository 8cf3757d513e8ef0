"""Training: AdamW + warm-up/cosine, bf16 autocast + channels_last on CUDA, exact resume, DDP.

    densereg-net train shards/ --out runs/NAME --epochs 30
    torchrun --nproc-per-node 4 -m densereg_cli.net train shards/ --out runs/NAME     # DDP, one GPU each

(The command line lives in `densereg_cli.net`; this module is the library: `TrainConfig`, `train`.)
Every `log_every` steps one log line (epoch, step, loss, lr, images/s); after each epoch one row of
runs/NAME/metrics.csv (train loss, val loss and val metrics) and checkpoints last.pt and best.pt.
`epochs` 0 (the default) resolves to `config.auto_epochs` (the recipe's step budget) and config.json
records the number. Which epoch is "best" is `TrainConfig.select_best`: by default the lowest val dense error, the
lowest val loss when the shards have no template.h5, and the lowest training loss when there is no
validation split; the run says which in its log and writes the resolved choice into config.json.
SIGTERM/SIGINT saves last.pt mid-epoch and stops; ``resume=True`` continues from last.pt exactly
(model, optimizer, scheduler, RNG, epoch and step): the data order and the augmentation are
functions of (seed, epoch, sample), so a resumed run on the CPU reproduces the uninterrupted one bit
for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from densereg_data.conventions import PART_NAMES
from densereg_data.errors import CheckpointError, ConfigError, ShardFormatError
from densereg_data.format import TEMPLATE, ShardIndex, TemplateFacts, read_split, read_template_facts
from densereg_data.io.outputs import check_output
from densereg_net.augment import AugmentConfig, SeededAugment
from densereg_net.checkpoint import (check_fits_shards, load_checkpoint, restore_training, save_checkpoint,
                                     template_arrays, template_meta)
from densereg_net.config import SELECT_BEST, TrainConfig, auto_epochs
from densereg_net.data import (
    DeviceData,
    ShardDataset,
    original_rows,
    epoch_batches,
    eval_batches,
    fits_in_memory,
    iterate,
    split_nbytes,
)
from densereg_net.device import autocast, setup_distributed, to_model_layout
from densereg_net.losses import LossWeights, compute_loss
from densereg_net.metrics import Accumulator, calibrate_readout
from densereg_net.model import build_model, complete_config, count_parameters

log = logging.getLogger(__name__)

__all__ = ["SELECT_BEST", "TrainConfig", "TrainResult", "train", "make_optimizer", "lr_factor", "check_run_folder"]

_BEST_WORDS = {"val_dense": "the lowest val dense error", "val_loss": "the lowest val loss",
               "train_loss": "the lowest training loss (no validation split)"}


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What `train` returns: the best metric and the epoch reached, the run folder, whether it
    stopped early (signal or `stop_after_epoch`), the resolved `select_best`, and the trained model
    (the bare module, not the DDP wrapper)."""

    best_metric: float
    epoch: int
    out: str
    stopped: bool
    select_best: str
    model: torch.nn.Module


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """(AdamW with weight decay on conv weights only, LambdaLR warm-up + cosine) for `total_steps`."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    fused = next(model.parameters()).device.type == "cuda"
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999), fused=fused)
    warmup = min(cfg.warmup_steps, max(1, total_steps // 10))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total_steps))


def resolve_select_best(cfg: TrainConfig, has_val: bool, has_template: bool) -> str:
    """`cfg.select_best` with "auto" resolved; ConfigError when the shards lack what it needs."""
    choice = cfg.select_best
    if choice == "auto":
        return ("val_dense" if has_template else "val_loss") if has_val else "train_loss"
    if choice.startswith("val_") and not has_val:
        raise ConfigError(f"select_best {choice} needs a validation split, but {cfg.shards} has no {cfg.val_split!r}")
    if choice == "val_dense" and not has_template:
        raise ConfigError(f"select_best val_dense needs {Path(cfg.shards) / TEMPLATE}, which is missing")
    return choice


def make_source(index: ShardIndex, split: str, device: torch.device, cfg: TrainConfig,
                augment: SeededAugment | None, views: bool = True) -> ShardDataset | DeviceData:
    """The training (or validation) samples of `split`; views False: the original faces only."""
    mode = cfg.data_mode
    if mode == "auto":
        mode = "memory" if fits_in_memory(split_nbytes(index, split), device) else "stream"
    log.info("%s split: %s data path", split, f"in-memory (on {device})" if mode == "memory" else "streaming")
    if mode == "memory":
        return DeviceData(index, split, device, augment, views=views)
    return ShardDataset(index, split, augment, views=views)


@torch.no_grad()
def evaluate_source(model, source, device, head: str, k: int, weights: LossWeights, facts: TemplateFacts | None,
                    batch_size: int, readout_uv: np.ndarray | None = None) -> dict:
    """Val loss and metrics of a (non-augmented) source: {"loss", "landmarks", "dense", "parts"}."""
    model.eval()
    acc = Accumulator(facts, readout_uv) if facts is not None else None
    total, n = 0.0, 0
    for batch in iterate(source, eval_batches(len(source), batch_size), 0, device):
        with autocast(device):
            out = model(to_model_layout(batch["image"]))
            loss, _ = compute_loss(head, out, batch, k, weights)
        total += float(loss) * len(batch["image"])
        n += len(batch["image"])
        if acc is not None:
            parts = out["parts"].float().argmax(1)
            uv = model.head.decode_uv({k_: v.float() for k_, v in out.items()})
            acc.update({"uv": uv * (parts > 0).unsqueeze(1), "parts": parts, "fg": parts > 0}, batch)
    model.train()
    res = {"loss": total / max(n, 1)}
    if acc is not None:
        res.update(acc.summary())
    return res


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop saves a checkpoint and returns at the next step."""

    def __init__(self):
        self.set = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        log.warning("signal %d: saving a checkpoint and stopping", signum)
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Train a DenseReg network on `cfg.shards` (one process, or one rank of a torchrun launch)."""
    rank, world, device = setup_distributed(cfg.device)
    try:
        return _train(cfg, resume, rank, world, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, rank: int, world: int, device: torch.device) -> TrainResult:
    master = rank == 0
    out_dir = check_run_folder(cfg.out, cfg.shards, resume)
    index = ShardIndex.open(cfg.shards)
    if index.part_names != PART_NAMES:
        raise ShardFormatError(f"{index.root}: expected the 8 DenseReg parts {list(PART_NAMES)}, got {list(index.part_names)}")
    k = index.k
    index.files(cfg.train_split)  # raises on a missing or empty split
    has_val = index.has_split(cfg.val_split)
    facts = read_template_facts(index.root / TEMPLATE) if (index.root / TEMPLATE).is_file() else None
    cfg = dataclasses.replace(cfg, select_best=resolve_select_best(cfg, has_val, facts is not None))
    weights = LossWeights(**cfg.loss_weights)
    aug = SeededAugment(AugmentConfig(**cfg.augment_config), cfg.seed) if cfg.augment else None

    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = build_model(cfg.head, k, cfg.width, cfg.input_norm).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    train_src = make_source(index, cfg.train_split, device, cfg, aug, views=cfg.views)
    # the landmarks' read-out U-V, calibrated on the original training faces' labels (metrics convention)
    readout = (calibrate_readout(ShardDataset(index, cfg.train_split, views=False), facts.landmark_uv)
               if facts is not None else None)
    # validation scores real faces: the new views of its faces (if built) are left out
    val_src = make_source(index, cfg.val_split, device, cfg, None, views=False) if has_val else None
    n_train = len(train_src)
    steps_per_epoch = len(epoch_batches(n_train, cfg.batch_size, 0, cfg.seed, world, rank))
    if cfg.epochs == 0:
        cfg = dataclasses.replace(cfg, epochs=auto_epochs(steps_per_epoch))
        if master:
            log.info("epochs: %d (auto: the default recipe's step budget at %d steps/epoch)", cfg.epochs, steps_per_epoch)
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps_per_epoch)

    epoch, step, global_step, best = 0, 0, 0, float("inf")
    if resume and (out_dir / "last.pt").is_file():
        where = str(out_dir / "last.pt")
        ckpt = load_checkpoint(where)
        check_fits_shards(ckpt["k"], ckpt["part_names"], index, where)
        if ckpt["index_sha256"] != index.sha256:
            raise CheckpointError(f"{where} was trained on other shards (index.json sha256 {ckpt['index_sha256'][:12]}..., "
                                  f"{index.root / 'index.json'} has {index.sha256[:12]}...); resume on the same "
                                  "shards, or start a new --out")
        if complete_config(ckpt["model_config"]) != model.config:
            raise CheckpointError(f"{where} is a {ckpt['model_config']} model; resume with the same "
                                  "--head/--width/--input-norm")
        restore_training(ckpt, model, opt, sched, device, where)
        epoch, step, global_step, best = ckpt["epoch"], ckpt["step"], ckpt["global_step"], ckpt["best_metric"]
        log.info("resumed from %s at epoch %d step %d", where, epoch, step)
    elif resume:
        log.warning("--resume: no %s yet, starting fresh", out_dir / "last.pt")

    raw_model = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        log.info("model %s: %.2f M parameters; %d training samples, %d steps/epoch x %d epochs, world %d, device %s",
                 cfg.head, count_parameters(raw_model) / 1e6, n_train, steps_per_epoch, cfg.epochs, world, device)
        if not has_val:
            log.warning("no validation split %r in %s", cfg.val_split, index.root)
        log.info("best.pt: the epoch with %s (select_best %s)", _BEST_WORDS[cfg.select_best], cfg.select_best)
    train_lm = read_split(index, cfg.train_split, ("landmarks",))["landmarks"].astype(np.float64)
    if not cfg.views:
        train_lm = train_lm[original_rows(index, cfg.train_split)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():  # a point missing in every face: 0
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_lm = np.nan_to_num(np.nanmean(train_lm, axis=0))  # missing points (NaN) left out

    def state(next_epoch, next_step):
        return {
            "model": raw_model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "epoch": next_epoch, "step": next_step, "global_step": global_step, "best_metric": best,
            "config": cfg.to_dict(), "model_config": dict(raw_model.config), "k": k,
            "part_names": list(index.part_names), "index_sha256": index.sha256, "build_config": index.build_config,
            "image_size": list(index.image_size), "crop": index.crop(),
            "template": template_meta(facts, readout), "template_arrays": template_arrays(facts),
            "mean_landmarks": mean_lm.tolist(), "version": _version(),
        }

    def result(stopped: bool) -> TrainResult:
        return TrainResult(best, epoch, str(out_dir), stopped, cfg.select_best, raw_model)

    metrics_path = out_dir / "metrics.csv"
    model.train()
    with StopFlag() as stop:
        while epoch < cfg.epochs:
            batches = epoch_batches(n_train, cfg.batch_size, epoch, cfg.seed, world, rank)
            t0, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
            for i, batch in enumerate(iterate(train_src, batches[step:], epoch, device, cfg.num_workers), start=step):
                image = to_model_layout(batch["image"])
                with autocast(device):
                    out = model(image)
                    loss, _ = compute_loss(cfg.head, out, batch, k, weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                global_step += 1
                seen += len(image) * world
                loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
                if master and (global_step % cfg.log_every == 0 or i == len(batches) - 1):
                    dt = time.perf_counter() - t0
                    log.info("epoch %d step %d/%d (global %d) | loss %.4f | lr %.2e | %.1f img/s", epoch + 1, i + 1,
                             len(batches), global_step, loss.item(), sched.get_last_lr()[0], seen / max(dt, 1e-9))
                if _any_rank(stop.set, world, device):
                    if master:
                        save_checkpoint(state(epoch, i + 1), out_dir / "last.pt")
                        log.warning("stopped at epoch %d step %d; --resume continues", epoch + 1, i + 1)
                    return result(True)
            epoch, step = epoch + 1, 0
            if master:
                row = {"epoch": epoch, "global_step": global_step, "lr": sched.get_last_lr()[0],
                       "train_loss": loss_sum / max(loss_n, 1), "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
                if val_src is not None:
                    v = evaluate_source(raw_model, val_src, device, cfg.head, k, weights, facts, cfg.batch_size, readout)
                    row["val_loss"] = v["loss"]
                    if "dense" in v:
                        row.update({"val_nme": v["landmarks"]["nme"], "val_auc": v["landmarks"]["auc@0.08"],
                                    "val_failure": v["landmarks"]["failure_rate"], "val_dense": v["dense"]["error"],
                                    "val_miou": v["parts"]["miou"]})
                metric = row[cfg.select_best]
                _append_csv(metrics_path, row)
                log.info("epoch %d done | %s", epoch, " | ".join(f"{k_} {v_:.4g}" for k_, v_ in row.items() if k_ != "epoch"))
                improved = metric < best
                best = min(best, metric)
                save_checkpoint(state(epoch, 0), out_dir / "last.pt")
                if improved:
                    save_checkpoint(state(epoch, 0), out_dir / "best.pt")
                    log.info("epoch %d is the best so far (%s %.4g): wrote best.pt", epoch, cfg.select_best, metric)
            if world > 1:
                dist.barrier()
            if cfg.stop_after_epoch and epoch >= cfg.stop_after_epoch and epoch < cfg.epochs:
                return result(True)
    return result(False)


def check_run_folder(out, shards, resume: bool) -> Path:
    """`out` as a Path if a run may be written there: never over the shards or inside a shard folder
    (`check_output`), and never over an earlier run's checkpoints unless resuming it (ConfigError)."""
    out_dir = Path(out)
    check_output(out_dir, [shards])
    found = [n for n in ("last.pt", "best.pt") if (out_dir / n).exists()]
    if found and not resume:
        raise ConfigError(f"--out {out} already holds a run ({', '.join(found)}): continue it with --resume, "
                          "or choose another --out")
    if found and "last.pt" not in found:
        raise ConfigError(f"--out {out} holds best.pt but no last.pt to resume from; choose another --out")
    return out_dir


def _any_rank(flag: bool, world: int, device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    if not new:
        with open(path) as f:
            header = next(csv.reader(f), [])
        if header != list(row):
            new = True
            path.rename(path.with_suffix(".csv.old"))
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _version() -> str:
    import densereg_data

    return densereg_data.__version__


if __name__ == "__main__":  # the command line is densereg_cli.net's (libraries never import the CLI)
    import sys

    print("error: densereg_net.train is a library module; run `densereg-net train SHARDS ...`, or for DDP "
          "`torchrun --nproc-per-node G -m densereg_cli.net train SHARDS ...` (docs/NET.md)", file=sys.stderr)
    raise SystemExit(2)
