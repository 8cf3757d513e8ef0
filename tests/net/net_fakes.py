"""A tiny synthetic shard directory (docs/FORMAT.md v1), written with h5py directly.

Faces are ellipses: u ramps left to right, v bottom to top, parts are blobs at fixed U-V spots,
the 68 landmarks sit where the U-V equals the template's landmark_uv. template.h5 maps U-V to
xyz = (u, v, 0) (NaN outside the unit disc around (0.5, 0.5)), so dense error = U-V distance /
eye distance.

Also the fixtures of these tests (`shards`, the autouse `one_thread`); tests/net has no conftest.py,
so `from conftest import ...` in tests/data always finds its own. Test modules import the fixtures:
``from net_fakes import one_thread, shards  # noqa: F401``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from densereg_net.conventions import LANDMARK_FLIP, PART_NAMES

G = 33


def template_landmark_uv() -> np.ndarray:
    """(68, 2) symmetric landmark U-V: u[flip[i]] = 1 - u[i]; 36/45 at (0.35, 0.7)/(0.65, 0.7)."""
    rng = np.random.default_rng(1)
    uv = np.zeros((68, 2))
    for i, j in enumerate(LANDMARK_FLIP):
        if i < j:
            uv[i] = [rng.uniform(0.2, 0.45), rng.uniform(0.2, 0.8)]
            uv[j] = [1 - uv[i, 0], uv[i, 1]]
        elif i == j:
            uv[i] = [0.5, rng.uniform(0.2, 0.8)]
    uv[36], uv[45] = [0.35, 0.7], [0.65, 0.7]
    return uv


# (part label, u, v, radius in U-V)
BLOBS = [(1, 0.38, 0.8, 0.07), (2, 0.62, 0.8, 0.07), (3, 0.38, 0.68, 0.07), (4, 0.62, 0.68, 0.07),
         (5, 0.5, 0.55, 0.08), (6, 0.5, 0.36, 0.06), (7, 0.5, 0.27, 0.06)]


def synthetic_sample(size: int, rng) -> dict:
    S = size
    cx, cy = (S - 1) / 2 + rng.uniform(-2, 2), (S - 1) / 2 + rng.uniform(-2, 2)
    a, b = S * rng.uniform(0.3, 0.36), S * rng.uniform(0.36, 0.42)
    rows, cols = np.mgrid[0:S, 0:S].astype(np.float64)
    u = (cols - cx) / (2 * a) + 0.5
    v = 0.5 - (rows - cy) / (2 * b)
    fg = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    parts = np.where(fg, 8, 0).astype(np.uint8)
    for label, bu, bv, r in BLOBS:
        parts[fg & ((u - bu) ** 2 + (v - bv) ** 2 <= r * r)] = label
    uv = np.where(fg[..., None], np.stack([u, v], -1), 0).astype(np.float16)
    image = np.zeros((S, S, 3), np.float64) + rng.uniform(0, 60, 3)
    image[fg] = np.stack([80 + 150 * u, 80 + 150 * v, 40 + 20 * parts], -1)[fg]
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    t = template_landmark_uv()
    lm = np.stack([cx + (t[:, 0] - 0.5) * 2 * a, cy - (t[:, 1] - 0.5) * 2 * b], -1).astype(np.float32)
    return {"image": image, "uv": uv, "parts": parts, "landmarks": lm}


def write_shards(root: Path, splits=None, size: int = 32, k: int = 10, version: int = 1,
                 part_names=PART_NAMES, seed: int = 0) -> Path:
    """Write a shard directory at root; splits {name: n samples} (default train 6, val 2)."""
    splits = {"train": 6, "val": 2} if splits is None else splits
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shards = []
    for split, n in splits.items():
        samples = [synthetic_sample(size, rng) for _ in range(n)]
        fname = f"{split}-00000.h5"
        with h5py.File(root / fname, "w") as f:
            f.attrs.update({"format": "densereg-shards", "format_version": version, "split": split})
            for key, dtype, shape in [("image", np.uint8, (size, size, 3)), ("uv", np.float16, (size, size, 2)),
                                      ("parts", np.uint8, (size, size)), ("landmarks", np.float32, (68, 2))]:
                data = np.stack([s[key] for s in samples]) if n else np.zeros((0, *shape), dtype)
                f.create_dataset(key, data=data, chunks=(1, *shape) if n else None,
                                 compression="lzf" if n else None)
            f.create_dataset("crop_from_image", data=np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1)))
            f.create_dataset("source", data=np.array([f"img{i}.png" for i in range(n)], dtype=object),
                             dtype=h5py.string_dtype())
        shards.append({"file": fname, "split": split, "samples": n, "bytes": (root / fname).stat().st_size,
                       "sha256": hashlib.sha256((root / fname).read_bytes()).hexdigest()})
    config = {"dataset": "synthetic", "size": size, "margin": 0.25, "seed": seed}
    (root / "config.json").write_text(json.dumps(config))
    index = {"format": "densereg-shards", "format_version": version, "densereg_version": "test",
             "template": {"id": "synthetic", "hash": "0"}, "image_size": [size, size], "k": k,
             "part_names": list(part_names), "splits": dict(splits), "split_aliases": {}, "shards": shards,
             "config_sha256": hashlib.sha256((root / "config.json").read_bytes()).hexdigest()}
    (root / "index.json").write_text(json.dumps(index, indent=1))
    write_template(root / "template.h5")
    return root


def write_template(path: Path) -> None:
    g = np.linspace(0, 1, G)
    u, v = np.meshgrid(g, 1 - g)  # [row, col]: u = col / (G - 1), v = 1 - row / (G - 1)
    xyz = np.stack([u, v, np.zeros_like(u)], -1).astype(np.float32)
    xyz[(u - 0.5) ** 2 + (v - 0.5) ** 2 > 0.3] = np.nan
    lm = template_landmark_uv()
    with h5py.File(path, "w") as f:
        f["landmark_uv"] = lm
        f["uv_to_xyz"] = xyz
        f["eye_distance"] = float(np.linalg.norm(lm[36] - lm[45]))
        f["part_uv"] = np.zeros((G, G), np.uint8)
        f.attrs.update({"template_id": "synthetic", "template_hash": "0", "units": "uv", "model_size": 0})


@pytest.fixture
def shards(tmp_path) -> Path:
    return write_shards(tmp_path / "shards")


@pytest.fixture(autouse=True)
def one_thread():
    import torch
    torch.set_num_threads(1)
    yield
