"""Read a shard directory (docs/FORMAT.md, version 1) with json + h5py alone.

`ShardIndex` validates index.json once and answers "which files and rows make up split X";
`load_template` reads template.h5 (the scoring facts). Errors are `NetInputError`, one line each.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from densereg_net.conventions import N_LANDMARKS, PART_NAMES
from densereg_net.errors import NetInputError

FORMAT = "densereg-shards"
FORMAT_VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardIndex:
    """A validated index.json.

    root: the shard directory; k: bins per axis; image_size: (S, S) (height, width);
    part_names: the 8 part names; shards: list of {"file", "split", "samples", ...};
    splits: {name: count}; aliases: {name: [split, ...]}; sha256: hash of index.json;
    build_config: config.json as a dict ({} when absent).
    """

    root: Path
    k: int
    image_size: tuple[int, int]
    part_names: tuple[str, ...]
    shards: tuple[dict, ...]
    splits: dict
    aliases: dict
    sha256: str
    build_config: dict

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ShardIndex":
        root = Path(root)
        path = root / "index.json"
        if not root.is_dir():
            raise NetInputError(f"shard directory not found: {root}")
        if not path.is_file():
            raise NetInputError(f"not a shard directory: {path} is missing")
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise NetInputError(f"cannot read {path}: {exc}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise NetInputError(f"{path}: expected format {FORMAT!r}, got {index.get('format') if isinstance(index, dict) else type(index).__name__!r}")
        if index.get("format_version") != FORMAT_VERSION:
            raise NetInputError(
                f"{path}: shard format version {index.get('format_version')!r} is not supported "
                f"(this densereg_net reads version {FORMAT_VERSION}); rebuild the shards"
            )
        for key in ("image_size", "k", "part_names", "splits", "shards"):
            if key not in index:
                raise NetInputError(f"{path}: missing key {key!r}")
        size = tuple(int(s) for s in index["image_size"])
        if len(size) != 2 or size[0] != size[1] or size[0] < 16:
            raise NetInputError(f"{path}: image_size must be [S, S] with S >= 16, got {index['image_size']}")
        config_path = root / "config.json"
        build_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        return cls(
            root=root, k=int(index["k"]), image_size=size, part_names=tuple(index["part_names"]),
            shards=tuple(index["shards"]), splits=dict(index["splits"]),
            aliases=dict(index.get("split_aliases", {})), sha256=file_sha256(path),
            build_config=build_config,
        )

    def files(self, split: str) -> list[tuple[Path, int]]:
        """(path, samples) of every shard file of `split` (a split name or an alias), in index order.

        Raises NetInputError for an unknown or empty split, naming the ones that exist.
        """
        members = self.aliases.get(split, [split])
        known = sorted(set(self.splits) | set(self.aliases))
        if not all(m in self.splits for m in members):
            raise NetInputError(f"split {split!r} is not in {self.root}; available: {', '.join(known) or 'none'}")
        out = [(self.root / s["file"], int(s["samples"])) for s in self.shards if s["split"] in members]
        if sum(n for _, n in out) == 0:
            raise NetInputError(f"split {split!r} in {self.root} is empty (0 samples)")
        for p, _ in out:
            if not p.is_file():
                raise NetInputError(f"shard file listed in index.json is missing: {p}")
        return out

    def crop(self) -> dict:
        """{"margin", "size"} of the crops, from config.json (top level or its "build" object)."""
        cfg = self.build_config.get("build", self.build_config) if isinstance(self.build_config, dict) else {}
        return {"margin": float(cfg.get("margin", 0.25)), "size": int(cfg.get("size", self.image_size[0]))}

    def has_split(self, split: str) -> bool:
        members = self.aliases.get(split, [split])
        return all(self.splits.get(m, 0) > 0 for m in members)

    def check_compatible(self, k: int, part_names: list | tuple, where: str) -> None:
        """Raise NetInputError if a model trained with (k, part_names) cannot read these shards."""
        if int(k) != self.k:
            raise NetInputError(f"{where} was trained with K = {k} bins, but {self.root} has k = {self.k}")
        if tuple(part_names) != self.part_names:
            raise NetInputError(
                f"{where} was trained with parts {list(part_names)}, but {self.root} has {list(self.part_names)}"
            )

    def check_parts(self) -> None:
        if self.part_names != PART_NAMES:
            raise NetInputError(f"{self.root}: expected the 8 DenseReg parts {list(PART_NAMES)}, got {list(self.part_names)}")


def read_split(index: ShardIndex, split: str, keys=("image", "uv", "parts", "landmarks")) -> dict[str, np.ndarray]:
    """Every sample of a split in memory: {"image": (N, S, S, 3) uint8, "uv": (N, S, S, 2) float16,
    "parts": (N, S, S) uint8, "landmarks": (N, 68, 2) float32, ...}."""
    parts = {k: [] for k in keys}
    for path, n in index.files(split):
        with h5py.File(path, "r") as f:
            check_shard_file(f, path)
            for k in keys:
                parts[k].append(f[k][:n])
    return {k: np.concatenate(v) for k, v in parts.items()}


def check_shard_file(f: h5py.File, path) -> None:
    version = f.attrs.get("format_version", None)
    if version is not None and int(version) != FORMAT_VERSION:
        raise NetInputError(f"{path}: shard format version {int(version)} is not supported (expected {FORMAT_VERSION})")


@dataclass(frozen=True)
class TemplateFacts:
    """template.h5 for scoring.

    landmark_uv: (68, 2) float64 (u, v); uv_to_xyz: (G, G, 3) float32, NaN off the face (raw);
    uv_to_xyz_filled: the same with every NaN cell set to its nearest on-face value (so a predicted
    U-V off the face still has a finite 3D position); eye_distance: float.
    """

    landmark_uv: np.ndarray
    uv_to_xyz: np.ndarray
    uv_to_xyz_filled: np.ndarray
    eye_distance: float


def load_template(path: str | os.PathLike) -> TemplateFacts:
    path = Path(path)
    if not path.is_file():
        raise NetInputError(f"template file not found: {path} (every shard directory has one)")
    with h5py.File(path, "r") as f:
        try:
            landmark_uv = np.asarray(f["landmark_uv"][()], dtype=np.float64)
            grid = np.asarray(f["uv_to_xyz"][()], dtype=np.float32)
            eye = float(f["eye_distance"][()])
        except KeyError as exc:
            raise NetInputError(f"{path}: missing dataset {exc}") from None
    if landmark_uv.shape != (N_LANDMARKS, 2):
        raise NetInputError(f"{path}: landmark_uv must be (68, 2), got {landmark_uv.shape}")
    if grid.ndim != 3 or grid.shape[0] != grid.shape[1] or grid.shape[2] != 3:
        raise NetInputError(f"{path}: uv_to_xyz must be (G, G, 3), got {grid.shape}")
    return TemplateFacts(landmark_uv, grid, fill_nan_nearest(grid), eye)


def fill_nan_nearest(grid: np.ndarray) -> np.ndarray:
    """(G, G, C) with NaN cells -> each NaN cell takes a value of its nearest filled neighbour ring
    (grown one 8-neighbourhood step at a time; good enough for off-face lookups)."""
    out = grid.copy()
    valid = np.isfinite(out).all(-1)
    if valid.all() or not valid.any():
        return np.nan_to_num(out)
    while not valid.all():
        acc = np.zeros_like(out)
        cnt = np.zeros(valid.shape, np.float32)
        pad_v = np.pad(valid, 1)
        pad_o = np.pad(np.where(valid[..., None], out, 0), ((1, 1), (1, 1), (0, 0)))
        g0, g1 = valid.shape
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                v = pad_v[1 + dr:1 + dr + g0, 1 + dc:1 + dc + g1]
                acc += pad_o[1 + dr:1 + dr + g0, 1 + dc:1 + dc + g1] * v[..., None]
                cnt += v
        grow = ~valid & (cnt > 0)
        out[grow] = acc[grow] / cnt[grow][:, None]
        valid = valid | grow
    return out
