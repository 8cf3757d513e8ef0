"""Training: AdamW + warm-up/cosine, bf16 autocast + channels_last on CUDA, exact resume, DDP.

    densereg-net train shards/ --out runs/NAME --epochs 30
    torchrun --nproc-per-node 4 -m densereg_net.train shards/ --out runs/NAME     # DDP, one GPU each

Every `log_every` steps one log line (epoch, step, loss, lr, images/s); after each epoch one row of
runs/NAME/metrics.csv (train loss, val loss and val metrics) and checkpoints last.pt and best.pt
(lowest val dense error; val loss when the shards have no template). SIGTERM/SIGINT saves last.pt
mid-epoch and stops; ``--resume`` continues from last.pt exactly (model, optimizer, scheduler, RNG,
epoch and step): the data order and the augmentation are functions of (seed, epoch, sample), so a
resumed run on the CPU reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np
import torch
import torch.distributed as dist

from densereg_net.augment import AugmentConfig
from densereg_net.checkpoint import load_checkpoint, save_checkpoint
from densereg_net.data import DeviceData, ShardDataset, epoch_batches, eval_batches, fits_in_memory, iterate, split_nbytes
from densereg_net.errors import NetInputError
from densereg_net.losses import LossWeights, compute_loss
from densereg_net.metrics import Accumulator
from densereg_net.model import HEADS, build_model, count_parameters
from densereg_net.options import train_options
from densereg_net.shards import ShardIndex, load_template, read_split

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Flat training config: defaults <- optional JSON file (--config) <- command-line flags."""

    shards: str = ""
    out: str = "runs/densereg"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100  # capped at 10% of all steps
    grad_clip: float = 2.0
    head: str = "quantized"
    width: int = 32
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    data_mode: str = "auto"  # auto | memory | stream
    num_workers: int = 2
    log_every: int = 10
    train_split: str = "train"
    val_split: str = "val"
    augment: bool = True
    stop_after_epoch: int = 0  # > 0: stop (as if killed) after this many epochs; for tests and budgets
    augment_config: dict = field(default_factory=lambda: AugmentConfig().to_dict())
    loss_weights: dict = field(default_factory=lambda: LossWeights().to_dict())

    def __post_init__(self):
        if self.head not in HEADS:
            raise NetInputError(f"unknown head {self.head!r}; valid heads: {', '.join(sorted(HEADS))}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise NetInputError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.data_mode not in ("auto", "memory", "stream"):
            raise NetInputError(f"data_mode must be auto, memory or stream, got {self.data_mode!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise NetInputError(f"epochs and batch size must be >= 1, got {self.epochs}, {self.batch_size}")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NetInputError("--device cuda was asked for, but no CUDA device is available")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun
    (WORLD_SIZE > 1): NCCL on CUDA, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def make_source(index: ShardIndex, split: str, device: torch.device, cfg: TrainConfig, augment: AugmentConfig | None):
    mode = cfg.data_mode
    if mode == "auto":
        mode = "memory" if fits_in_memory(split_nbytes(index, split), device) else "stream"
    log.info("%s split: %s data path", split, "in-memory (on %s)" % device if mode == "memory" else "streaming")
    if mode == "memory":
        return DeviceData(index, split, device, augment, cfg.seed)
    return ShardDataset(index, split, augment, cfg.seed)


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def evaluate_source(model, source, device, head: str, k: int, weights: LossWeights, template, batch_size: int) -> dict:
    """Val loss and metrics of a (non-augmented) source: {"loss", "landmarks", "dense", "parts"}."""
    model.eval()
    acc = Accumulator(*template) if template is not None else None
    total, n = 0.0, 0
    for batch in iterate(source, eval_batches(len(source), batch_size), 0, device):
        image = batch["image"].contiguous(memory_format=torch.channels_last) if device.type == "cuda" else batch["image"]
        with autocast(device):
            out = model(image)
            loss, _ = compute_loss(head, out, batch, k, weights)
        total += float(loss) * len(image)
        n += len(image)
        if acc is not None:
            raw = model.module if hasattr(model, "module") else model
            parts = out["parts"].float().argmax(1)
            uv = raw.head.decode_uv({k_: v.float() for k_, v in out.items()})
            acc.update({"uv": uv * (parts > 0).unsqueeze(1), "parts": parts, "fg": parts > 0}, batch)
    model.train()
    res = {"loss": total / max(n, 1)}
    if acc is not None:
        res.update(acc.summary())
    return res


def template_tensors(root: Path):
    path = root / "template.h5"
    if not path.is_file():
        return None, None
    t = load_template(path)
    return t, (torch.from_numpy(t.landmark_uv), torch.from_numpy(t.uv_to_xyz_filled), t.eye_distance)


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


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train a DenseReg network on `cfg.shards`; returns {"best_metric", "epoch", "out"}."""
    rank, world, device = setup_distributed(cfg.device)
    try:
        return _train(cfg, resume, rank, world, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, rank: int, world: int, device: torch.device) -> dict:
    master = rank == 0
    out_dir = Path(cfg.out)
    index = ShardIndex.open(cfg.shards)
    index.check_parts()
    k = index.k
    index.files(cfg.train_split)  # raises on a missing or empty split
    has_val = index.has_split(cfg.val_split)
    template, template_t = template_tensors(index.root)
    weights = LossWeights(**cfg.loss_weights)
    aug = AugmentConfig(**cfg.augment_config) if cfg.augment else None

    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = build_model(cfg.head, k, cfg.width).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999),
                            fused=device.type == "cuda")

    train_src = make_source(index, cfg.train_split, device, cfg, aug)
    val_src = make_source(index, cfg.val_split, device, cfg, None) if has_val else None
    n_train = len(train_src)
    steps_per_epoch = len(epoch_batches(n_train, cfg.batch_size, 0, cfg.seed, world, rank))
    total_steps = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_steps, max(1, total_steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total_steps))

    epoch, step, global_step, best = 0, 0, 0, float("inf")
    if resume and (out_dir / "last.pt").is_file():
        ckpt = load_checkpoint(out_dir / "last.pt")
        index.check_compatible(ckpt["k"], ckpt["part_names"], str(out_dir / "last.pt"))
        if ckpt["model_config"]["head"] != cfg.head or ckpt["model_config"]["width"] != cfg.width:
            raise NetInputError(f"{out_dir / 'last.pt'} is a {ckpt['model_config']} model; resume with the same --head/--width")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        epoch, step, global_step, best = ckpt["epoch"], ckpt["step"], ckpt["global_step"], ckpt["best_metric"]
        log.info("resumed from %s at epoch %d step %d", out_dir / "last.pt", epoch, step)
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
    mean_lm = read_split(index, cfg.train_split, ("landmarks",))["landmarks"].astype(np.float64).mean(0)

    def state(next_epoch, next_step):
        return {
            "model": raw_model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "epoch": next_epoch, "step": next_step, "global_step": global_step, "best_metric": best,
            "config": cfg.to_dict(), "model_config": dict(raw_model.config), "k": k,
            "part_names": list(index.part_names), "index_sha256": index.sha256, "build_config": index.build_config,
            "image_size": list(index.image_size), "crop": index.crop(),
            "template": ({"landmark_uv": template.landmark_uv.tolist(), "eye_distance": template.eye_distance}
                         if template is not None else None),
            "mean_landmarks": mean_lm.tolist(), "version": _version(),
        }

    metrics_path = out_dir / "metrics.csv"
    model.train()
    with StopFlag() as stop:
        while epoch < cfg.epochs:
            batches = epoch_batches(n_train, cfg.batch_size, epoch, cfg.seed, world, rank)
            t0, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
            for i, batch in enumerate(iterate(train_src, batches[step:], epoch, device, cfg.num_workers), start=step):
                image = batch["image"].contiguous(memory_format=torch.channels_last) if device.type == "cuda" else batch["image"]
                with autocast(device):
                    out = model(image)
                    loss, terms = compute_loss(cfg.head, out, batch, k, weights)
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
                    return {"best_metric": best, "epoch": epoch, "out": str(out_dir), "stopped": True}
            epoch, step = epoch + 1, 0
            if master:
                row = {"epoch": epoch, "global_step": global_step, "lr": sched.get_last_lr()[0],
                       "train_loss": loss_sum / max(loss_n, 1), "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
                if val_src is not None:
                    v = evaluate_source(raw_model, val_src, device, cfg.head, k, weights, template_t, cfg.batch_size)
                    row["val_loss"] = v["loss"]
                    if "dense" in v:
                        row.update({"val_nme": v["landmarks"]["nme"], "val_auc": v["landmarks"]["auc@0.08"],
                                    "val_failure": v["landmarks"]["failure_rate"], "val_dense": v["dense"]["error"],
                                    "val_miou": v["parts"]["miou"]})
                metric = row.get("val_dense", row.get("val_loss", row["train_loss"]))
                _append_csv(metrics_path, row)
                log.info("epoch %d done | %s", epoch, " | ".join(f"{k_} {v_:.4g}" for k_, v_ in row.items() if k_ != "epoch"))
                improved = metric < best
                best = min(best, metric)
                save_checkpoint(state(epoch, 0), out_dir / "last.pt")
                if improved:
                    save_checkpoint(state(epoch, 0), out_dir / "best.pt")
            if world > 1:
                dist.barrier()
            if cfg.stop_after_epoch and epoch >= cfg.stop_after_epoch and epoch < cfg.epochs:
                return {"best_metric": best, "epoch": epoch, "out": str(out_dir), "stopped": True}
    return {"best_metric": best, "epoch": epoch, "out": str(out_dir), "stopped": False}


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
    try:
        from importlib.metadata import version
        return version("densereg")
    except Exception:
        return "unknown"


# --- command-line front end shared by `densereg-net train` and `python -m densereg_net.train` ---

def config_from_options(config_file=None, resume=False, **flags) -> TrainConfig:
    """TrainConfig from defaults <- JSON file <- given flags."""
    values = {}
    if config_file:
        try:
            values.update(json.loads(Path(config_file).read_text()))
        except (OSError, ValueError) as exc:
            raise NetInputError(f"cannot read config file {config_file}: {exc}") from None
    values.update({k: v for k, v in flags.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise NetInputError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(known))}")
    return TrainConfig(**values)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@train_options
def _main_command(**kw):
    """Train (for torchrun: python -m densereg_net.train SHARDS ...)."""
    resume = kw.pop("resume")
    cfg = config_from_options(resume=resume, **kw)
    train(cfg, resume=resume)


def main(argv=None) -> int:
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        _main_command.main(args=argv, prog_name="densereg_net.train", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return 2
    except (NetInputError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
