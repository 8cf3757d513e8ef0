"""Throughput of the default model on synthetic in-memory data: training and inference images/s,
peak memory. Median over timed iterations after warm-up; the training step includes the on-device
augmentation (the in-memory data path), forward, loss, backward and the AdamW step."""

from __future__ import annotations

import logging
import platform
import resource
import statistics
import time

import torch

from densereg_net.augment import AugmentConfig, augment_batch, sample_params
from densereg_net.device import autocast, resolve_device, to_model_layout
from densereg_net.losses import compute_loss
from densereg_net.model import build_model, count_parameters

log = logging.getLogger(__name__)


def synthetic_batch(n: int, size: int, device) -> dict:
    """A batch of elliptical synthetic faces (the layout of `augment`), on `device`."""
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    u = (xs - size / 2) / (0.7 * size) + 0.5
    v = 0.5 - (ys - size / 2) / (0.8 * size)
    fg = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    parts = torch.where(fg, torch.randint(1, 9, (size, size), generator=g), 0)
    return {"image": torch.rand(n, 3, size, size, generator=g).to(device),
            "uv": (torch.stack([u, v]) * fg).expand(n, 2, size, size).contiguous().to(device),
            "parts": parts.expand(n, size, size).contiguous().to(device),
            "landmarks": (torch.rand(n, 68, 2, generator=g) * size).to(device)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(device: str = "auto", size: int = 256, batch_size: int | None = None, head: str = "quantized",
          width: int = 32, warmup: int = 2, iters: int = 5, k: int = 10) -> dict:
    """{"train_images_per_s", "infer_images_per_s", "peak_memory_mb", ...} for one configuration."""
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = 32 if dev.type == "cuda" else 8
    torch.manual_seed(0)
    model = build_model(head, k, width).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=dev.type == "cuda")
    data = synthetic_batch(batch_size, size, dev)
    aug = AugmentConfig()
    gen = torch.Generator().manual_seed(0)

    def train_step():
        batch = augment_batch(data, sample_params(batch_size, size, gen, aug))
        with autocast(dev):
            loss, _ = compute_loss(head, model(to_model_layout(batch["image"])), batch, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    t_train = _median_time(train_step, dev, warmup, iters)
    peak_train = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    model.eval()
    image = to_model_layout(data["image"])

    def infer_step():
        with torch.no_grad(), autocast(dev):
            model.predict(image)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t_infer = _median_time(infer_step, dev, warmup, iters)
    res = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
        "head": head, "size": size, "batch_size": batch_size, "parameters_m": round(count_parameters(model) / 1e6, 3),
        "precision": "bf16 autocast, channels_last" if dev.type == "cuda" else "fp32",
        "train_images_per_s": round(batch_size / t_train, 2), "infer_images_per_s": round(batch_size / t_infer, 2),
        "train_step_s": round(t_train, 4), "infer_step_s": round(t_infer, 4), "warmup": warmup, "iters": iters,
    }
    if dev.type == "cuda":
        res["peak_memory_mb_train"] = round(peak_train, 1)
        res["peak_memory_mb_infer"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    else:
        res["peak_rss_mb_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return res
