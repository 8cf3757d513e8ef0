"""Where the network runs: device choice, mixed precision, memory layout and the DDP process group.

Convention: precision and layout
    On CUDA the model runs under bf16 autocast with channels_last images; on the CPU in fp32 with the
    default (contiguous) layout. Training, evaluation, prediction and the benchmark all use these
    helpers, so they run the same arithmetic.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from densereg_data.errors import ConfigError

__all__ = ["autocast", "resolve_device", "setup_distributed", "to_model_layout"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" (CUDA when available, else the CPU), "cpu", "cuda" or "cuda:N" -> a torch.device.

    Raises ConfigError for another name or for CUDA on a machine without it.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for, but no CUDA device is available")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on the CPU (see the module's convention)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def to_model_layout(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) images in the memory layout the model runs in on their device (channels_last on CUDA)."""
    return image.contiguous(memory_format=torch.channels_last) if image.device.type == "cuda" else image


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
