"""Training data from shards: a torch Dataset over every per-sample field, and an on-device path.

Both paths augment through `densereg_net.augment.SeededAugment`, whose parameters are a function of
(seed, epoch, sample index), so they produce the same batches; the in-memory path just does the work
batched on the training device.

- `ShardDataset`: a map-style Dataset over `densereg_data.format.open_shards` (files opened lazily in
  whichever process reads: DataLoader workers open their own handles), with a `transform` hook.
- `DeviceData`: the training fields of a split loaded once onto the device (uint8 images, float16
  U-V, uint8 parts), batches gathered and augmented there.
- `epoch_batches`: the sample indices of each step of an epoch for one rank (shuffled by
  (seed, epoch), drop-last, the global batch split across ranks), used by both paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch

from densereg_data.format import ShardIndex, open_shard_file, open_shards, read_split
from densereg_net.augment import LABEL_KEYS, SeededAugment, to_float_batch

log = logging.getLogger(__name__)

__all__ = [
    "DeviceData",
    "original_rows",
    "ShardDataset",
    "epoch_batches",
    "eval_batches",
    "fits_in_memory",
    "iterate",
    "split_nbytes",
    "to_sample",
]


def to_sample(raw: dict, index: int) -> dict:
    """One sample of `densereg_data.format.ShardReader` (numpy, as stored) -> the `ShardDataset` item."""
    one = to_float_batch(*(torch.from_numpy(np.ascontiguousarray(raw[k]))[None] for k in LABEL_KEYS))
    item = {k: v[0] for k, v in one.items()}
    for k, v in raw.items():
        if k not in item:
            item[k] = v if k == "source" else torch.from_numpy(np.array(v))
    item["index"] = int(index)
    return item


class ShardDataset(torch.utils.data.Dataset):
    """The samples of one split of a shard directory (docs/FORMAT.md), as torch tensors.

    path: the shard directory (or its `ShardIndex`); split: a split, an alias or "all"; views: False
    leaves out the new views of a `--views` build (only the original faces).
    Item: {"image": (3, S, S) float32 RGB in [0, 1], "uv": (2, S, S) float32 (u, v), 0 on background,
    "parts": (S, S) int64, "landmarks": (68, 2) float32 (x, y) crop pixels, "crop_from_image":
    (2, 3) float64, "source": str, "source_size": (2,) int32 (height, width), "fit_nme": () float32,
    "crop_from_template": (3, 4) float64, "pose": (3,) float32 (yaw, pitch, roll degrees),
    "coefficients": (C,) float32, "index": int (the sample's position in the split)}, passed through
    ``transform(item) -> item`` when one is given. `set_epoch` is forwarded to the transform (the
    seeded augmentation needs it; call it before each epoch).

    Every shard file of the split is opened and checked once here (`open_shard_file`: plain datasets
    stored in the file, the schema), so a hostile or broken file is one `ShardFormatError` naming it
    in the constructing process, never a DataLoader worker's traceback.
    """

    def __init__(self, path: str | os.PathLike | ShardIndex, split: str,
                 transform: Callable[[dict], dict] | None = None, views: bool = True):
        self.reader = open_shards(path.root if isinstance(path, ShardIndex) else path, split)
        self.split, self.transform = split, transform
        index = self.reader.index
        for rec in self.reader.shards:
            open_shard_file(index.root / rec["file"], size=index.image_size[0], samples=rec["samples"],
                            split=rec["split"]).close()
        self.rows = None if views else original_rows(index, split)

    def __len__(self) -> int:
        return len(self.reader) if self.rows is None else len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(epoch)

    def __getitem__(self, idx: int) -> dict:
        idx = range(len(self))[idx]  # IndexError outside the split
        item = to_sample(self.reader[idx if self.rows is None else int(self.rows[idx])], idx)
        return self.transform(item) if self.transform is not None else item


def original_rows(index: ShardIndex, split: str) -> np.ndarray:
    """(n,) int64 the positions in `split` of the original faces (`view_delta` (0, 0)), leaving out the
    new views a build rendered (`densereg-data build --views`)."""
    delta = read_split(index, split, ("view_delta",))["view_delta"]
    return np.flatnonzero(~np.any(delta != 0, axis=1))


def split_nbytes(index: ShardIndex, split: str) -> int:
    """Bytes the split takes on the device in `DeviceData` (uint8 image + float16 uv + uint8 parts)."""
    n = sum(n for _, n in index.files(split))
    S = index.image_size[0]
    return n * (S * S * (3 + 4 + 1) + 68 * 2 * 4)


def fits_in_memory(nbytes: int, device: torch.device, fraction: float = 0.25) -> bool:
    """Does the split fit in `fraction` of the device's free memory (host RAM for the CPU)?"""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return False
    return nbytes <= fraction * free


class DeviceData:
    """The training fields of a whole split on `device`; `batch(indices, epoch)` gathers and augments there.

    Batch: {"image", "uv", "parts", "landmarks"} as in `ShardDataset` with a leading batch axis, and
    "index" (B,) int64.
    """

    def __init__(self, index: ShardIndex, split: str, device: torch.device, augment: SeededAugment | None = None,
                 views: bool = True):
        arrays = read_split(index, split, LABEL_KEYS)
        if not views:
            arrays = {k: v[original_rows(index, split)] for k, v in arrays.items()}
        self.tensors = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
        self.augment, self.device = augment, device

    def __len__(self) -> int:
        return int(self.tensors["image"].shape[0])

    def batch(self, indices: list[int], epoch: int = 0) -> dict:
        idx = torch.as_tensor(indices, device=self.device)
        b = to_float_batch(*(self.tensors[k][idx] for k in LABEL_KEYS))
        if self.augment is not None:
            b = self.augment.batch(b, indices, epoch)
        b["index"] = idx
        return b


def iterate(source: ShardDataset | DeviceData, batches: list[list[int]], epoch: int, device: torch.device,
            num_workers: int = 0):
    """Yield batches (dicts; tensors on `device`, "source" a list of str) for the given per-step indices."""
    if isinstance(source, DeviceData):
        for ids in batches:
            yield source.batch(ids, epoch)
        return
    source.set_epoch(epoch)
    if not batches:
        return
    loader = torch.utils.data.DataLoader(source, batch_sampler=batches, num_workers=num_workers,
                                         pin_memory=device.type == "cuda", persistent_workers=False)
    for b in loader:
        yield {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in b.items()}


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, world: int = 1, rank: int = 0,
                  shuffle: bool = True) -> list[list[int]]:
    """Per-step sample indices for `rank`: a permutation seeded by (seed, epoch), cut into global
    batches of batch_size * world (the remainder dropped; if n is smaller than one global batch, the
    per-rank batch shrinks to n // world), each split into `world` equal per-rank slices."""
    b = min(batch_size, max(1, n // world))
    steps = max(1, n // (b * world))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 9_973 + epoch)) if shuffle else torch.arange(n)
    out = []
    for s in range(steps):
        glob = order[s * b * world:(s + 1) * b * world]
        out.append(glob[rank * b:(rank + 1) * b].tolist())
    return out


def eval_batches(n: int, batch_size: int) -> list[list[int]]:
    """Sequential batches covering all n samples (for evaluation)."""
    return [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
