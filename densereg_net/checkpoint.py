"""Checkpoints: plain dicts of tensors and JSON-like values, loadable with ``weights_only=True``.

Keys: model, optimizer, scheduler (state dicts); rng {"torch": ByteTensor, "cuda": [ByteTensor]};
epoch (next epoch to run), step (next step within it), global_step, best_metric; config (the resolved
training config), model_config {head, k, width}, k, part_names, index_sha256 (sha256 of the shards'
index.json), build_config (the shards' config.json), crop {margin, size}, template {landmark_uv (68x2
list), eye_distance}, mean_landmarks (68x2 list, training mean in crop pixels), version.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from densereg_data.errors import CheckpointError
from densereg_data.format import ShardIndex
from densereg_data.format.files import fsync_replace, tmp_path
from densereg_net.model import DenseRegNet, build_model

REQUIRED = ("model", "model_config", "k", "part_names", "config")


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write atomically (the format layer's temporary name, fsync and rename), so a kill never leaves a
    half-written checkpoint."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        torch.save(state, tmp)
        fsync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint (``weights_only=True``); CheckpointError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise CheckpointError(f"{path} is not a densereg-net checkpoint (expected keys {', '.join(REQUIRED)})")
    return ckpt


def model_from_checkpoint(ckpt: dict, device="cpu") -> DenseRegNet:
    """The checkpoint's model on `device`, in eval mode."""
    mc = ckpt["model_config"]
    model = build_model(mc["head"], mc["k"], mc["width"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def check_fits_shards(k: int, part_names, index: ShardIndex, where: str) -> None:
    """Raise CheckpointError if a model trained with (k, part_names) cannot read the shards of `index`."""
    if int(k) != index.k:
        raise CheckpointError(f"{where} was trained with K = {k} bins, but {index.root} has k = {index.k}")
    if tuple(part_names) != index.part_names:
        raise CheckpointError(f"{where} was trained with parts {list(part_names)}, but {index.root} has {list(index.part_names)}")
