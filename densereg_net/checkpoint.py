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

from densereg_net.errors import NetInputError
from densereg_net.model import DenseRegNet, build_model

REQUIRED = ("model", "model_config", "k", "part_names", "config")


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write atomically (tmp file + rename), so a kill never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise NetInputError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise NetInputError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise NetInputError(f"{path} is not a densereg-net checkpoint (expected keys {', '.join(REQUIRED)})")
    return ckpt


def model_from_checkpoint(ckpt: dict, device="cpu") -> DenseRegNet:
    mc = ckpt["model_config"]
    model = build_model(mc["head"], mc["k"], mc["width"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
