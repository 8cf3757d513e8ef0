"""Label-exact augmentation as batched affine warps (one code path for CPU workers and the GPU).

A batch is a dict of tensors:
    image      (B, 3, S, S) float32 in [0, 1], RGB
    uv         (B, 2, S, S) float32 (u, v), 0 on background
    parts      (B, S, S) int64, 0 = background
    landmarks  (B, 68, 2) float32, (x, y) crop pixels

Convention: affine warps
    `A` is (B, 2, 3), ``out_xy = A @ [x, y, 1]`` maps input crop pixels to output crop pixels (pixel
    centres at integers, as everywhere). The image is resampled bilinearly; uv and parts with
    nearest-neighbour sampling, so a label value is always copied from one input pixel and background
    never blends into the face. Outside the input, image, uv and parts are 0 (background).

Convention: horizontal flip
    Applied after the warp as an exact column reversal: ``x -> S - 1 - x``; on the foreground
    ``u -> 1 - u``; parts 1 <-> 2, 3 <-> 4 (`PART_FLIP`); landmark i takes the mirrored position of
    landmark ``LANDMARK_FLIP[i]``.

Convention: reproducible augmentation
    The parameters of sample ``index`` in epoch ``epoch`` come from a generator seeded by
    ``sample_seed(seed, epoch, index)``, independent of the batch, the rank and the worker. So the
    streaming path (`SeededAugment` as a `ShardDataset` transform) and the in-memory path
    (`SeededAugment.batch` on the device) give the same batches, and a resumed run repeats the
    uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from densereg_data.conventions import LANDMARK_FLIP, PART_FLIP

#: The per-pixel and landmark fields an augmentation changes (the rest of a sample passes through).
LABEL_KEYS = ("image", "uv", "parts", "landmarks")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (all uniform). scale: log-uniform in [1/(1+s), 1+s]."""

    scale: float = 0.15
    rotation_deg: float = 15.0
    translate: float = 0.05  # fraction of the crop side
    flip_prob: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AugmentParams:
    """Random parameters of one batch: A (B, 2, 3) float32, flip (B,) bool, colour (B, 3) float32
    (brightness, contrast, saturation factors)."""

    A: torch.Tensor
    flip: torch.Tensor
    colour: torch.Tensor

    def to(self, device) -> "AugmentParams":
        return AugmentParams(self.A.to(device), self.flip.to(device), self.colour.to(device))


def sample_params(n: int, size: int, generator: torch.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw n sets of augmentation parameters on the CPU from `generator` (deterministic)."""
    r = torch.rand(n, 8, generator=generator, dtype=torch.float64)
    log_s = math.log1p(cfg.scale)
    s = torch.exp((2 * r[:, 0] - 1) * log_s)
    a = torch.deg2rad((2 * r[:, 1] - 1) * cfg.rotation_deg)
    t = (2 * r[:, 2:4] - 1) * cfg.translate * size
    c = (size - 1) / 2.0
    cos, sin = torch.cos(a) * s, torch.sin(a) * s
    A = torch.zeros(n, 2, 3, dtype=torch.float64)
    A[:, 0, 0], A[:, 0, 1] = cos, -sin
    A[:, 1, 0], A[:, 1, 1] = sin, cos
    # out = M (in - c) + c + t
    A[:, 0, 2] = c + t[:, 0] - (cos * c - sin * c)
    A[:, 1, 2] = c + t[:, 1] - (sin * c + cos * c)
    flip = r[:, 4] < cfg.flip_prob
    colour = torch.stack([
        1 + (2 * r[:, 5] - 1) * cfg.brightness,
        1 + (2 * r[:, 6] - 1) * cfg.contrast,
        1 + (2 * r[:, 7] - 1) * cfg.saturation,
    ], dim=1)
    return AugmentParams(A.float(), flip, colour.float())


def identity_params(n: int) -> AugmentParams:
    A = torch.zeros(n, 2, 3)
    A[:, 0, 0] = A[:, 1, 1] = 1
    return AugmentParams(A, torch.zeros(n, dtype=torch.bool), torch.ones(n, 3))


def to_float_batch(image_u8: torch.Tensor, uv: torch.Tensor, parts: torch.Tensor, landmarks: torch.Tensor) -> dict:
    """Raw shard arrays (as tensors, sample axis first) -> a batch dict in the layout above.

    image_u8: (B, S, S, 3) uint8; uv: (B, S, S, 2) float16/32; parts: (B, S, S) uint8;
    landmarks: (B, 68, 2) float32.
    """
    return {
        "image": image_u8.permute(0, 3, 1, 2).float().div_(255),  # (B, 3, S, S)
        "uv": uv.permute(0, 3, 1, 2).float(),  # (B, 2, S, S)
        "parts": parts.long(),
        "landmarks": landmarks.float(),
    }


def _theta(A: torch.Tensor, size: int) -> torch.Tensor:
    """Output->input map in normalised coordinates (align_corners=False) for F.affine_grid."""
    B = A.shape[0]
    A3 = torch.eye(3, dtype=torch.float64, device=A.device).repeat(B, 1, 1)
    A3[:, :2] = A.double()
    N = torch.tensor([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]],
                     dtype=torch.float64, device=A.device)
    theta = N @ torch.linalg.inv(A3) @ torch.linalg.inv(N)
    return theta[:, :2].float()


def flip_batch(batch: dict, flip: torch.Tensor) -> dict:
    """Mirror the samples where flip (B,) is True (see the module's flip convention)."""
    S = batch["image"].shape[-1]
    f4 = flip.view(-1, 1, 1, 1)
    out = dict(batch)
    out["image"] = torch.where(f4, batch["image"].flip(-1), batch["image"])
    parts = torch.where(flip.view(-1, 1, 1), batch["parts"].flip(-1), batch["parts"])
    table = torch.tensor(PART_FLIP, dtype=parts.dtype, device=parts.device)
    out["parts"] = torch.where(flip.view(-1, 1, 1), table[parts], parts)
    uv = torch.where(f4, batch["uv"].flip(-1), batch["uv"])
    fg = (parts > 0).unsqueeze(1)
    mirrored = torch.cat([1 - uv[:, :1], uv[:, 1:]], dim=1)
    out["uv"] = torch.where(f4 & fg, mirrored, uv)
    lm = batch["landmarks"]
    lm_f = lm[:, list(LANDMARK_FLIP)].clone()
    lm_f[..., 0] = (S - 1) - lm_f[..., 0]
    out["landmarks"] = torch.where(flip.view(-1, 1, 1), lm_f, lm)
    return out


def apply_colour(image: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation jitter of (B, 3, S, S) images in [0, 1]; colour (B, 3)."""
    b, c, s = (colour[:, i].view(-1, 1, 1, 1) for i in range(3))
    x = image * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * s + gray
    return x.clamp_(0, 1)


def augment_batch(batch: dict, params: AugmentParams) -> dict:
    """Warp, flip and colour-jitter a batch on its own device; labels stay exact."""
    params = params.to(batch["image"].device)
    S = batch["image"].shape[-1]
    theta = _theta(params.A, S)
    grid = F.affine_grid(theta, list(batch["image"].shape), align_corners=False)
    image = F.grid_sample(batch["image"], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = torch.cat([batch["uv"], batch["parts"].unsqueeze(1).float()], dim=1)  # (B, 3, S, S)
    labels = F.grid_sample(labels, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    lm = batch["landmarks"]
    lm = lm @ params.A[:, :, :2].transpose(1, 2) + params.A[:, :, 2].unsqueeze(1)
    out = {"image": image, "uv": labels[:, :2], "parts": labels[:, 2].round().long(), "landmarks": lm}
    out = flip_batch(out, params.flip)
    out["image"] = apply_colour(out["image"], params.colour)
    return out


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (independent of batch, rank, worker)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + int(index) * 104_729 + 12_345) % (2**63 - 1)


def params_for(indices, epoch: int, seed: int, size: int, cfg: AugmentConfig) -> AugmentParams:
    """Augmentation parameters of the given samples (one generator per sample: reproducible)."""
    ps = [sample_params(1, size, torch.Generator().manual_seed(sample_seed(seed, epoch, int(i))), cfg) for i in indices]
    return AugmentParams(torch.cat([p.A for p in ps]), torch.cat([p.flip for p in ps]), torch.cat([p.colour for p in ps]))


class SeededAugment:
    """The training augmentation, reproducible per (seed, epoch, sample index).

    As a `ShardDataset` transform, ``aug(sample)`` augments one sample (the dict of
    `densereg_net.data.ShardDataset`, whose ``index`` seeds it) in the epoch set by `set_epoch`;
    ``aug.batch(batch, indices, epoch)`` augments a batch on its own device (the in-memory path).
    Both draw the same parameters for the same sample, so both paths give the same batches.
    """

    def __init__(self, cfg: AugmentConfig | None = None, seed: int = 0):
        self.cfg, self.seed, self.epoch = cfg or AugmentConfig(), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batch(self, batch: dict, indices, epoch: int | None = None) -> dict:
        """Augment batch {"image", "uv", "parts", "landmarks"} (the layout above) of the given samples."""
        size = batch["image"].shape[-1]
        params = params_for(indices, self.epoch if epoch is None else epoch, self.seed, size, self.cfg)
        return augment_batch({k: batch[k] for k in LABEL_KEYS}, params)

    def __call__(self, sample: dict) -> dict:
        out = self.batch({k: sample[k][None] for k in LABEL_KEYS}, [int(sample["index"])])
        return {**sample, **{k: v[0] for k, v in out.items()}}
