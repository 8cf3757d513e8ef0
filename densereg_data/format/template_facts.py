"""template.h5, read and checked, and the one U-V -> 3D lookup every score uses.

A shard directory's template.h5 holds what a consumer needs to score U-V predictions without the face
model itself (docs/FORMAT.md): the landmarks' U-V, the U-V -> 3D grid, the eye distance and the parts
in U-V. Label consistency (`densereg_data`) and the network's dense error (`densereg_net`) both call
`TemplateFacts.xyz`, so they are the same measure.

Convention: U-V -> 3D lookup
    The grid ``uv_to_xyz[row, col]`` holds the template position at ``u = col / (G - 1)``,
    ``v = 1 - row / (G - 1)``; NaN off the face. Off-face cells are first filled with the value of
    their nearest on-face cell (`fill_off_face`), so a U-V on the face's edge (the mouth opening, the
    border) or a predicted U-V slightly off it still has a position. U-V is clipped to [0, 1] and the
    filled grid is sampled bilinearly.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from densereg_data.conventions import N_LANDMARKS
from densereg_data.errors import ShardFormatError
from densereg_data.format.reader import h5_guard, open_shard_file
from densereg_data.format.schema import TEMPLATE_ATTRS, TEMPLATE_OPTIONAL_ATTRS

__all__ = ["TemplateFacts", "read_template_facts", "fill_off_face", "uv_lookup"]


def fill_off_face(grid: np.ndarray) -> np.ndarray:
    """(G, G, C) with NaN cells -> (G, G, C) float64, every NaN cell taking the value of its nearest
    finite cell (Euclidean distance in cells; ties go to the first candidate in row-major order).

    Exact and numpy-only: the nearest finite cell of an off cell always has an off cell among its 8
    neighbours, so only those border cells are searched. An all-NaN grid becomes zeros.
    """
    out = np.array(grid, dtype=np.float64, copy=True)
    valid = np.isfinite(out).all(axis=-1)
    if valid.all():
        return out
    if not valid.any():
        return np.zeros_like(out)
    padded = np.pad(~valid, 1)
    g0, g1 = valid.shape
    touches_off = np.zeros_like(valid)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            touches_off |= padded[1 + dr:1 + dr + g0, 1 + dc:1 + dc + g1]
    border = np.argwhere(valid & touches_off)  # (B, 2) row, col
    off = np.argwhere(~valid)  # (M, 2)
    step = max(1, (1 << 22) // max(len(border), 1))
    for lo in range(0, len(off), step):
        q = off[lo:lo + step]
        d = ((q[:, None, :] - border[None, :, :]) ** 2).sum(-1)  # (m, B) squared distances
        src = border[d.argmin(axis=1)]
        out[q[:, 0], q[:, 1]] = out[src[:, 0], src[:, 1]]
    return out


def uv_lookup(filled: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup in a filled grid (G, G, C) at U-V points uv (..., 2) -> (..., C) float64."""
    uv = np.asarray(uv, dtype=np.float64)
    g = filled.shape[0]
    col = np.clip(np.nan_to_num(uv[..., 0]), 0, 1) * (g - 1)
    row = (1.0 - np.clip(np.nan_to_num(uv[..., 1]), 0, 1)) * (g - 1)
    c0 = np.minimum(np.floor(col).astype(np.int64), g - 2)
    r0 = np.minimum(np.floor(row).astype(np.int64), g - 2)
    fc, fr = (col - c0)[..., None], (row - r0)[..., None]
    return (filled[r0, c0] * (1 - fc) * (1 - fr) + filled[r0, c0 + 1] * fc * (1 - fr)
            + filled[r0 + 1, c0] * (1 - fc) * fr + filled[r0 + 1, c0 + 1] * fc * fr)


@dataclass(frozen=True, eq=False)
class TemplateFacts:
    """The scoring facts of a face model (template.h5).

    landmark_uv: (68, 2) float64 (u, v); uv_to_xyz: (G, G, 3) float32, NaN off the face;
    eye_distance: float, template distance between the outer eye corners; part_uv: (G, G) uint8;
    attrs: {"template_id", "template_hash", "units", "model_size", ...}.
    """

    landmark_uv: np.ndarray
    uv_to_xyz: np.ndarray
    eye_distance: float
    part_uv: np.ndarray
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = self.uv_to_xyz.shape[0] if self.uv_to_xyz.ndim == 3 else -1
        if self.landmark_uv.shape != (N_LANDMARKS, 2) or not np.isfinite(self.landmark_uv).all():
            raise ShardFormatError(f"template facts: landmark_uv must be finite (68, 2), got {self.landmark_uv.shape}")
        if g < 2 or self.uv_to_xyz.shape != (g, g, 3) or self.part_uv.shape != (g, g):
            raise ShardFormatError(f"template facts: uv_to_xyz (G, G, 3) and part_uv (G, G) disagree: "
                                   f"{self.uv_to_xyz.shape}, {self.part_uv.shape}")
        if not (np.isfinite(self.eye_distance) and self.eye_distance > 0):
            raise ShardFormatError(f"template facts: eye_distance must be > 0, got {self.eye_distance}")

    @functools.cached_property
    def filled(self) -> np.ndarray:
        """(G, G, 3) float64: `uv_to_xyz` with off-face cells filled (`fill_off_face`)."""
        return fill_off_face(self.uv_to_xyz)

    def xyz(self, uv: np.ndarray) -> np.ndarray:
        """Template positions (..., 3) float64 of U-V points (..., 2): the one U-V -> 3D lookup."""
        return uv_lookup(self.filled, uv)

    @classmethod
    def from_dict(cls, facts: dict) -> "TemplateFacts":
        """From the dict a face model computes (the arrays of template.h5 and its attributes)."""
        return cls(np.asarray(facts["landmark_uv"], np.float64), np.asarray(facts["uv_to_xyz"], np.float32),
                   float(facts["eye_distance"]), np.asarray(facts["part_uv"], np.uint8),
                   {k: facts[k] for k in TEMPLATE_ATTRS + TEMPLATE_OPTIONAL_ATTRS if k in facts})


def read_template_facts(path: str | os.PathLike) -> TemplateFacts:
    """Read and check a template.h5 (see docs/FORMAT.md); ShardFormatError naming the file otherwise."""
    path = Path(path)
    with open_shard_file(path) as f, h5_guard(path):
        try:
            def get(name, dtype, shape_ndim):
                ds = f[name]
                if ds.ndim != shape_ndim or ds.size > 4096 * 4096 * 3:
                    raise ShardFormatError(f"{path}: {name} has shape {ds.shape}")
                return np.asarray(ds[()], dtype=dtype)

            landmark_uv = get("landmark_uv", np.float64, 2)
            grid = get("uv_to_xyz", np.float32, 3)
            eye = float(get("eye_distance", np.float64, 0))
            part_uv = get("part_uv", np.uint8, 2)
        except KeyError as exc:
            raise ShardFormatError(f"{path}: missing dataset {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ShardFormatError(f"{path}: unreadable template facts ({exc})") from None
        attrs = {}
        for a in TEMPLATE_ATTRS + TEMPLATE_OPTIONAL_ATTRS:
            if a in f.attrs:
                v = f.attrs[a]
                attrs[a] = v.item() if hasattr(v, "item") else v
    try:
        return TemplateFacts(landmark_uv, grid, eye, part_uv, attrs)
    except ShardFormatError as exc:
        raise ShardFormatError(f"{path}: {str(exc).removeprefix('template facts: ')}") from None
