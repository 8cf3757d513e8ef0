"""Shared fixtures of the densereg_data tests: tiny synthetic face folders and a three-sample shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densereg_data.io.images import write_png
from densereg_data.io.landmarks import write_pts

DEV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "300w-dev"


def face_landmarks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(68, 2) float64 plausible-ish points inside an (h, w) image."""
    centre = np.array([w / 2, h / 2]) + rng.normal(scale=2, size=2)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    r = min(h, w) * 0.3 * (1 + 0.1 * rng.uniform(size=68))
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], axis=1)


def make_pts_tree(root: Path, n: int = 6, *, seed: int = 0, size=(40, 52)) -> list[Path]:
    """`n` random non-square PNG images with .pts files under root/faces/ (one in a sub-folder)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        folder = root / "faces" / ("sub" if i == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        h, w = size
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        stem = f"face {i:02d}"
        write_png(folder / f"{stem}.png", img)
        write_pts(folder / f"{stem}.pts", face_landmarks(rng, h, w), header_spacing="  ", trailing_newline=False)
        paths.append(folder / f"{stem}.png")
    return paths


@pytest.fixture
def pts_tree(tmp_path):
    root = tmp_path / "data"
    make_pts_tree(root)
    return root


@pytest.fixture
def three_sample_shards(tmp_path):
    """A shard directory with 3 samples (train 2, val 1) built with the fake labeller, at size 32."""
    from densereg_fakes import fake_backend

    from densereg_data.build.pipeline import BuildConfig, run_build

    root = tmp_path / "three"
    make_pts_tree(root, n=3)
    cfg = BuildConfig(dataset="pts", root=str(root), out=str(tmp_path / "shards3"), size=32, val_fraction=0.4, seed=0,
                      workers=1, progress=False)
    run_build(cfg, fake_backend())
    return tmp_path / "shards3"
