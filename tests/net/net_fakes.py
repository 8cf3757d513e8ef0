"""A tiny synthetic shard directory, written by the real writer (`densereg_data.format.ShardWriter`,
`write_template`, `write_index`): `densereg_data.format.verify` passes on it (tests/net/test_data.py
checks that once).

Faces are ellipses: u ramps left to right, v bottom to top, parts are blobs at fixed U-V spots,
the 68 landmarks sit where the U-V equals the template's landmark_uv. template.h5 maps U-V to
xyz = (u, v, 0) (NaN outside the unit disc around (0.5, 0.5)), so dense error = U-V distance /
eye distance. The per-sample metadata (crop_from_image, source, pose, ...) is random but stored, so a
reader can be checked field by field.

Also hostile variants of such a folder (`make_hostile`: HDF5 features that read other files, an
index naming /etc/passwd), a PNG that decodes to a huge image (`huge_png`), `one_line_error` (the
command-line contract: exit 2, one line), and the fixtures of these tests (`shards`, `run`, the autouse
`one_thread`); tests/net has no conftest.py, so `from conftest import ...` in tests/data always finds
its own. Test modules import the fixtures: ``from net_fakes import one_thread, shards  # noqa: F401``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from densereg_data.conventions import LANDMARK_FLIP
from densereg_data.format import (
    CONFIG,
    INDEX,
    TEMPLATE,
    ShardWriter,
    dumps_json,
    shard_name,
    write_index,
    write_template,
)
from densereg_data.format.files import atomic_write_bytes, sha256_file

#: Coefficients per sample (template.h5 model_size).
MODEL_SIZE = 3
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


def sample_metadata(split: str, i: int, size: int, rng) -> dict:
    """The non-pixel fields of one sample (random, within their documented ranges)."""
    scale = rng.uniform(0.2, 0.5)
    return {"crop_from_image": np.array([[scale, 0, -rng.uniform(0, 50)], [0, scale, -rng.uniform(0, 50)]]),
            "source": f"{split}/img{i:03d}.png", "source_size": np.array([size * 4 + i, size * 5 + 2 * i]),
            "fit_nme": rng.uniform(0, 0.05), "crop_from_template": rng.normal(size=(3, 4)),
            "pose": rng.uniform(-30, 30, 3), "coefficients": rng.normal(size=MODEL_SIZE),
            "landmark_state": np.ones(68, np.uint8), "view_delta": np.zeros(2, np.float32)}


def write_shards(root: Path, splits=None, size: int = 32, k: int = 10, seed: int = 0) -> Path:
    """Write a shard directory at root with the real writer; splits {name: n samples} (default train 6, val 2)."""
    splits = {"train": 6, "val": 2} if splits is None else splits
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for split, n in splits.items():
        with ShardWriter(root / shard_name(split, 0), split, size=size, model_size=MODEL_SIZE, capacity=n) as w:
            for i in range(n):
                w.append({**synthetic_sample(size, rng), **sample_metadata(split, i, size, rng)})
            records.append(w.close())
    config = dumps_json({"build": {"dataset": "synthetic", "size": size, "margin": 0.25, "seed": seed}})
    atomic_write_bytes(root / CONFIG, config)
    write_template(root / TEMPLATE, template_facts())
    write_index(root, records=records, split_order=list(splits), split_aliases={}, image_size=size,
                template={"id": "synthetic", "hash": "0" * 64}, config_sha256=hashlib.sha256(config).hexdigest(),
                densereg_version="test", k=k)
    return root


def rewrite_index(root: Path, **changes) -> Path:
    """Change index.json's top-level keys (to make a deliberately bad shard directory)."""
    index = json.loads((root / INDEX).read_text())
    index.update(changes)
    (root / INDEX).write_text(json.dumps(index))
    return root


def template_facts() -> dict:
    """template.h5's arrays and attributes: xyz = (u, v, 0) on a G x G grid, NaN off the face."""
    g = np.linspace(0, 1, G)
    u, v = np.meshgrid(g, 1 - g)  # [row, col]: u = col / (G - 1), v = 1 - row / (G - 1)
    xyz = np.stack([u, v, np.zeros_like(u)], -1).astype(np.float32)
    xyz[(u - 0.5) ** 2 + (v - 0.5) ** 2 > 0.3] = np.nan
    lm = template_landmark_uv()
    return {"landmark_uv": lm, "uv_to_xyz": xyz, "eye_distance": float(np.linalg.norm(lm[36] - lm[45])),
            "part_uv": np.zeros((G, G), np.uint8), "template_id": "synthetic", "template_hash": "0" * 64,
            "units": "uv", "model_size": MODEL_SIZE}


@pytest.fixture
def shards(tmp_path) -> Path:
    return write_shards(tmp_path / "shards")


@pytest.fixture(autouse=True)
def one_thread():
    import torch
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A folder with shards/ (train 6, val 2, test 3) and run/ (one epoch, width 8: best.pt, last.pt)."""
    import torch

    from densereg_net.train import TrainConfig, train

    root = tmp_path_factory.mktemp("net")
    shards = write_shards(root / "shards", {"train": 6, "val": 2, "test": 3})
    torch.set_num_threads(1)
    train(TrainConfig(shards=str(shards), out=str(root / "run"), epochs=1, batch_size=2, width=8, num_workers=0))
    return root


def one_line_error(capsys, argv, *needles) -> str:
    """Run `densereg-net argv`: exit code 2 and exactly one stderr line, "error: ...", holding every needle."""
    from densereg_cli.net import main

    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(n in err[0] for n in needles), (needles, err[0])
    return err[0]


#: make_hostile's cases -> what the refusal says.
HOSTILE_SHARDS = {"external link": "ExternalLink, not a dataset stored in the file",
                  "external storage": "uses external storage", "virtual dataset": "is a virtual dataset",
                  "index naming /etc/passwd": "'/etc/passwd' is not a plain <split>-<nnnnn>.h5 name"}


def make_hostile(root: Path, case: str, outside: Path) -> Path:
    """Make every shard of `root` (written by `write_shards`) hostile in the way `case` names: its
    `parts` read from a file in the folder `outside` (an external link, external raw storage or a
    virtual dataset, made with h5py's API), or index.json naming /etc/passwd; the index's bytes and
    sha256 kept consistent, so the hostile feature is all a reader can object to."""
    import h5py

    outside.mkdir(exist_ok=True)
    index = json.loads((root / INDEX).read_text())
    for rec in index["shards"] if case != "index naming /etc/passwd" else ():
        secret = outside / rec["file"]
        with h5py.File(root / rec["file"], "a") as f:
            parts = f["parts"][()]
            del f["parts"]
            if case == "external storage":
                secret.write_bytes(parts.tobytes())
                f.create_dataset("parts", parts.shape, parts.dtype, external=[(str(secret), 0, parts.nbytes)])
                continue
            with h5py.File(secret, "w") as g:
                g["parts"] = parts
            if case == "external link":
                f["parts"] = h5py.ExternalLink(str(secret), "/parts")
            else:
                layout = h5py.VirtualLayout(shape=parts.shape, dtype=parts.dtype)
                layout[...] = h5py.VirtualSource(str(secret), "parts", shape=parts.shape)
                f.create_virtual_dataset("parts", layout)
        rec["bytes"], rec["sha256"] = (root / rec["file"]).stat().st_size, sha256_file(root / rec["file"])
    if case == "index naming /etc/passwd":
        index["shards"][0]["file"] = "/etc/passwd"
    (root / INDEX).write_text(json.dumps(index))
    return root


def huge_png(path: Path, side: int) -> Path:
    """A small grey PNG (zlib: about 30 kB per 10^8 pixels) that decodes to side x side pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    pixels = b"".join(z.compress(bytes(side + 1)) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path
