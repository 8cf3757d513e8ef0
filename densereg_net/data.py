"""Training data from shards: a worker-safe streaming Dataset and an on-device in-memory path.

Both paths draw the same augmentation for the same (seed, epoch, sample index), so they produce
the same batches; the in-memory path just does the work batched on the training device.

- `ShardDataset`: a map-style Dataset; h5py files are opened lazily in whichever process reads
  (DataLoader workers each open their own handles after fork/spawn), never shared.
- `DeviceData`: every sample of a split loaded once onto the device (uint8 images, float16 U-V,
  uint8 parts), batches gathered and augmented there with F.affine_grid / F.grid_sample.
- `epoch_batches`: the sample indices of each step of an epoch for one rank (shuffled by
  (seed, epoch), drop-last, the global batch split across ranks), used by both paths.
"""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import torch

from densereg_net.augment import AugmentConfig, AugmentParams, augment_batch, identity_params, sample_params, to_float_batch
from densereg_net.shards import ShardIndex, check_shard_file, read_split

log = logging.getLogger(__name__)

SAMPLE_KEYS = ("image", "uv", "parts", "landmarks")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (independent of batch, rank, worker)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + int(index) * 104_729 + 12_345) % (2**63 - 1)


def params_for(indices, epoch: int, seed: int, size: int, cfg: AugmentConfig) -> AugmentParams:
    """Augmentation parameters of the given samples (one generator per sample: reproducible)."""
    ps = [sample_params(1, size, torch.Generator().manual_seed(sample_seed(seed, epoch, int(i))), cfg) for i in indices]
    return AugmentParams(torch.cat([p.A for p in ps]), torch.cat([p.flip for p in ps]), torch.cat([p.colour for p in ps]))


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


class ShardDataset(torch.utils.data.Dataset):
    """The samples of one split, read lazily from the shard files.

    Item: {"image": (3, S, S) float32 [0, 1], "uv": (2, S, S) float32, "parts": (S, S) int64,
    "landmarks": (68, 2) float32, "index": int}; augmented if `augment` is given, with parameters
    seeded by (seed, epoch, index) (call `set_epoch` before each epoch).
    """

    def __init__(self, index: ShardIndex, split: str, augment: AugmentConfig | None = None, seed: int = 0):
        self.files = index.files(split)
        self.offsets = np.cumsum([0] + [n for _, n in self.files])
        self.size = index.image_size[0]
        self.augment, self.seed, self.epoch = augment, seed, 0
        self._handles: dict[int, h5py.File] = {}
        self._pid = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getstate__(self):  # never pickle open h5py handles into workers
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = {}, None
        return state

    def _file(self, i: int) -> h5py.File:
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if i not in self._handles:
            f = h5py.File(self.files[i][0], "r")
            check_shard_file(f, self.files[i][0])
            self._handles[i] = f
        return self._handles[i]

    def raw(self, idx: int) -> dict[str, np.ndarray]:
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        fi = int(np.searchsorted(self.offsets, idx, side="right") - 1)
        row = idx - int(self.offsets[fi])
        f = self._file(fi)
        return {k: f[k][row] for k in SAMPLE_KEYS}

    def __getitem__(self, idx: int) -> dict:
        r = self.raw(idx)
        batch = to_float_batch(*(torch.from_numpy(np.ascontiguousarray(r[k]))[None] for k in SAMPLE_KEYS))
        if self.augment is not None:
            batch = augment_batch(batch, params_for([idx], self.epoch, self.seed, self.size, self.augment))
        out = {k: v[0] for k, v in batch.items()}
        out["index"] = idx
        return out


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
    """A whole split on `device`; `batch(indices, epoch)` gathers and augments there."""

    def __init__(self, index: ShardIndex, split: str, device: torch.device, augment: AugmentConfig | None = None,
                 seed: int = 0):
        arrays = read_split(index, split, SAMPLE_KEYS)
        self.tensors = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
        self.size, self.augment, self.seed, self.device = index.image_size[0], augment, seed, device

    def __len__(self) -> int:
        return int(self.tensors["image"].shape[0])

    def batch(self, indices: list[int], epoch: int = 0) -> dict:
        idx = torch.as_tensor(indices, device=self.device)
        b = to_float_batch(*(self.tensors[k][idx] for k in SAMPLE_KEYS))
        if self.augment is not None:
            b = augment_batch(b, params_for(indices, epoch, self.seed, self.size, self.augment))
        b["index"] = idx
        return b


def iterate(source, batches: list[list[int]], epoch: int, device: torch.device, num_workers: int = 0):
    """Yield batches (dicts of tensors on `device`) for the given per-step indices."""
    if isinstance(source, DeviceData):
        for ids in batches:
            yield source.batch(ids, epoch)
        return
    source.set_epoch(epoch)
    if not batches:
        return
    loader = torch.utils.data.DataLoader(source, batch_sampler=batches, num_workers=num_workers,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=False)
    for b in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in b.items()}


def eval_batches(n: int, batch_size: int) -> list[list[int]]:
    """Sequential batches covering all n samples (for evaluation)."""
    return [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]


__all__ = ["ShardDataset", "DeviceData", "epoch_batches", "eval_batches", "iterate", "params_for",
           "split_nbytes", "fits_in_memory", "identity_params"]
