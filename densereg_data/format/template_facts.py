"""template.h5, read and checked, and the one U-V -> 3D lookup every score uses.

A shard directory's template.h5 holds what a consumer needs to score U-V predictions without the face
model itself (docs/FORMAT.md): the landmarks' U-V, the U-V -> 3D grid, the eye distance and the parts
in U-V. Label consistency (`densereg_data`) and the network's dense error (`densereg_net`) both call
`TemplateFacts.xyz`, so they are the same measure. Builds since the dense fit add the face model's
truncated linear basis (`ModelFacts`: `TemplateFacts.model`, None in older files), looked up by U-V
with the same rule (`ModelFacts.basis`), so the network can fit the model to its dense output.

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
from densereg_data.errors import ShapeError, ShardFormatError
from densereg_data.format.reader import h5_guard, open_shard_file
from densereg_data.format.schema import (TEMPLATE_ATTRS, TEMPLATE_MODEL_LIMITS, TEMPLATE_MODEL_MAX_BYTES,
                                         TEMPLATE_MODEL_SCHEMA, TEMPLATE_OPTIONAL_ATTRS)
from densereg_data.geometry.model_fit import ContourCandidates

__all__ = ["TemplateFacts", "ModelFacts", "read_template_facts", "check_model_listing", "fill_off_face", "uv_lookup"]


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
    """Bilinear lookup in a filled grid (G, G, C) at U-V points uv (..., 2) -> (..., C) in the grid's
    dtype (float64 for `TemplateFacts.xyz`)."""
    uv = np.asarray(uv, dtype=np.float64)
    g = filled.shape[0]
    col = np.clip(np.nan_to_num(uv[..., 0]), 0, 1) * (g - 1)
    row = (1.0 - np.clip(np.nan_to_num(uv[..., 1]), 0, 1)) * (g - 1)
    c0 = np.minimum(np.floor(col).astype(np.int64), g - 2)
    r0 = np.minimum(np.floor(row).astype(np.int64), g - 2)
    fc, fr = (col - c0)[..., None].astype(filled.dtype), (row - r0)[..., None].astype(filled.dtype)
    return (filled[r0, c0] * (1 - fc) * (1 - fr) + filled[r0, c0 + 1] * fc * (1 - fr)
            + filled[r0 + 1, c0] * (1 - fc) * fr + filled[r0 + 1, c0 + 1] * fc * fr)


@dataclass(frozen=True, eq=False)
class ModelFacts:
    """The face model as a dense fit needs it: template.h5's `TEMPLATE_MODEL_SCHEMA` arrays (docs/FORMAT.md).

    A shape is ``mean + displace(basis, b)``: b the coefficients (mm, prior std `basis_sd`), (K,) for
    vector directions (A = 3), (K, 3) for scalar ones (A = 1: one coefficient per axis); the mean at a
    U-V is `TemplateFacts.xyz`, the basis `basis` (the same lookup in `uv_to_basis`). uv_to_basis:
    (B, B, A, K) float32, NaN off the face; basis_sd: (K,) float64 > 0; basis_to_model: (K, D) float64,
    the model's coefficients of one unit of each direction (`model_coefficients`); basis_constraints:
    (S, K, 3) float64, for scalar directions the rows e_s with ``sum_k e_s[k] . b[k] = 0`` that keep a
    fit's shape free of rotation- and scale-like displacements (S = 0 for vector directions, which
    exclude them already); landmark_mean (68, 3)
    float64, landmark_basis (68, A, K) float32; contour_mean (M, 3) float64, contour_basis (M, A, K)
    float32, contour_row (M,), contour_landmarks (R,), contour_outward (R, 3): the jaw-contour candidates
    (`contour`); model_size: how many of the model's N coefficients are identity (the rest expression).
    """

    uv_to_basis: np.ndarray
    basis_sd: np.ndarray
    basis_to_model: np.ndarray
    basis_constraints: np.ndarray
    landmark_mean: np.ndarray
    landmark_basis: np.ndarray
    contour_mean: np.ndarray
    contour_basis: np.ndarray
    contour_row: np.ndarray
    contour_landmarks: np.ndarray
    contour_outward: np.ndarray
    model_size: int

    def __post_init__(self) -> None:
        check_model_listing({n: (getattr(self, n).shape, getattr(self, n).dtype.name) for n in TEMPLATE_MODEL_SCHEMA},
                            "template facts", n_coefficients=None)
        for name in TEMPLATE_MODEL_SCHEMA:
            if name != "uv_to_basis" and not np.isfinite(getattr(self, name)).all():
                raise ShardFormatError(f"template facts: {name} holds NaN or infinite values")
        b = self.uv_to_basis.shape[0]
        finite = np.isfinite(self.uv_to_basis.reshape(b * b, -1))
        on = finite.all(axis=1)
        if np.isinf(self.uv_to_basis).any() or not on.any() or (finite.any(axis=1) & ~on).any():
            raise ShardFormatError("template facts: uv_to_basis must be finite on the face and all NaN off it")
        if not np.all(self.basis_sd > 0):
            raise ShardFormatError("template facts: basis_sd must be positive")
        if not 0 <= self.model_size <= self.n_coefficients:
            raise ShardFormatError(f"template facts: model_size {self.model_size} exceeds the model's "
                                   f"{self.n_coefficients} coefficients")
        if not np.all((self.contour_landmarks >= 0) & (self.contour_landmarks < N_LANDMARKS)):
            raise ShardFormatError("template facts: contour_landmarks must be landmark indices 0..67")
        try:
            object.__setattr__(self, "contour", ContourCandidates(self.contour_landmarks, self.contour_row,
                                                                  self.contour_outward))
        except ShapeError as exc:
            raise ShardFormatError(f"template facts: {str(exc).removeprefix('contour candidates: ')}") from None

    @property
    def size(self) -> int:
        """K, the number of basis directions."""
        return len(self.basis_sd)

    @property
    def axes(self) -> int:
        """A: 3 for vector directions (one coefficient each), 1 for scalar ones (one coefficient per axis)."""
        return self.uv_to_basis.shape[2]

    @property
    def n_coefficients(self) -> int:
        """N, the model's coefficients (identity and expression)."""
        return self.basis_to_model.shape[1] * (3 // self.axes)

    def zero(self) -> np.ndarray:
        """Coefficients of the mean shape: (K,) for vector directions, (K, 3) for scalar ones."""
        return np.zeros(self.size) if self.axes == 3 else np.zeros((self.size, 3))

    @staticmethod
    def displace(local: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(..., 3) displacements of a basis (..., A, K) at points by coefficients b ((K,) or (K, 3))."""
        if local.shape[-2] == 1:
            return local[..., 0, :] @ b
        return (local.reshape(-1, local.shape[-1]) @ b).reshape(*local.shape[:-2], 3)

    @functools.cached_property
    def filled(self) -> np.ndarray:
        """(B, B, A K) float32: `uv_to_basis` with off-face cells filled (`fill_off_face`)."""
        b = self.uv_to_basis.shape[0]
        return fill_off_face(self.uv_to_basis.reshape(b, b, -1)).astype(np.float32)

    def basis(self, uv: np.ndarray) -> np.ndarray:
        """Basis (..., A, K) float32 at U-V points (..., 2): the U-V lookup of `TemplateFacts.xyz`."""
        uv = np.asarray(uv)
        return uv_lookup(self.filled, uv).reshape(*uv.shape[:-1], self.axes, self.size)

    def model_coefficients(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(identity (C,), expression (E,)) float64: the model's coefficients (the shards' `coefficients`
        and `expression`) of coefficients b (`zero`'s shape)."""
        b = np.asarray(b, np.float64)
        c = b @ self.basis_to_model if self.axes == 3 else (self.basis_to_model.T @ b).ravel()
        return c[: self.model_size], c[self.model_size :]

    def arrays(self) -> dict[str, np.ndarray]:
        """The `TEMPLATE_MODEL_SCHEMA` arrays by name."""
        return {name: getattr(self, name) for name in TEMPLATE_MODEL_SCHEMA}

    @classmethod
    def from_dict(cls, arrays: dict, model_size: int) -> "ModelFacts":
        """From arrays by name (cast to the schema's dtypes); ShardFormatError if one is missing or wrong."""
        missing = [n for n in TEMPLATE_MODEL_SCHEMA if n not in arrays]
        if missing:
            raise ShardFormatError(f"template facts: the face model lacks {', '.join(missing)}")
        try:
            cast = {n: np.asarray(arrays[n], dtype=dt) for n, (dt, _) in TEMPLATE_MODEL_SCHEMA.items()}
        except (TypeError, ValueError) as exc:
            raise ShardFormatError(f"template facts: unreadable face model arrays ({str(exc)[:80]})") from None
        return cls(**cast, model_size=int(model_size))


def check_model_listing(listing: dict[str, tuple[tuple, str]], where: str, n_coefficients: int | None) -> bool:
    """Whether `listing` ({dataset name: (shape, dtype name)}, the datasets of a template.h5 or a
    checkpoint, nothing read yet) holds the face model; ShardFormatError naming `where` unless it holds
    all of `TEMPLATE_MODEL_SCHEMA` or none, with the schema's dtypes, shapes that agree (A 1 or 3,
    B >= 2), within `TEMPLATE_MODEL_LIMITS` and `TEMPLATE_MODEL_MAX_BYTES` together, and D = N / (3 / A)
    for N = `n_coefficients` (when given)."""
    present = [n for n in TEMPLATE_MODEL_SCHEMA if n in listing]
    if not present:
        return False
    if len(present) < len(TEMPLATE_MODEL_SCHEMA):
        lacks = [n for n in TEMPLATE_MODEL_SCHEMA if n not in listing]
        raise ShardFormatError(f"{where}: has face-model arrays ({present[0]}, ...) but not {', '.join(lacks)}")
    sizes: dict[str, int] = {}
    nbytes = 0
    for name, (dtype, want) in TEMPLATE_MODEL_SCHEMA.items():
        shape, got = tuple(listing[name][0]), str(listing[name][1])
        spelled = "(" + ", ".join(map(str, want)) + ("," if len(want) == 1 else "") + ")"
        if got != dtype or len(shape) != len(want):
            raise ShardFormatError(f"{where}: {name} is {got} {shape}, expected {dtype} {spelled}")
        for dim, sym in zip(shape, want):
            if isinstance(sym, int):
                ok = dim == sym
            else:
                ok = (sym != "S") <= dim <= TEMPLATE_MODEL_LIMITS[sym] and sizes.setdefault(sym, dim) == dim
            if not ok:
                raise ShardFormatError(f"{where}: {name} has shape {shape}, expected {spelled} with "
                                       + ", ".join(f"{k} = {v}" for k, v in sizes.items())
                                       + f" (each within {TEMPLATE_MODEL_LIMITS})")
        nbytes += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    if sizes["A"] not in (1, 3) or sizes["B"] < 2:
        raise ShardFormatError(f"{where}: uv_to_basis is {listing['uv_to_basis'][0]}: its grid must be at least "
                               "2 x 2 and its axes 1 or 3")
    if sizes["A"] == 3 and sizes["S"]:
        raise ShardFormatError(f"{where}: basis_constraints must be empty (0, K, 3) for vector directions (A = 3), "
                               f"got {sizes['S']} rows")
    if n_coefficients is not None and sizes["D"] * (3 // sizes["A"]) != n_coefficients:
        raise ShardFormatError(f"{where}: basis_to_model maps to {sizes['D'] * (3 // sizes['A'])} model coefficients, "
                               f"the model has {n_coefficients} (model_size + expression_size)")
    if nbytes > TEMPLATE_MODEL_MAX_BYTES:
        raise ShardFormatError(f"{where}: the face-model arrays take {nbytes} bytes, more than {TEMPLATE_MODEL_MAX_BYTES}")
    return True


@dataclass(frozen=True, eq=False)
class TemplateFacts:
    """The scoring facts of a face model (template.h5).

    landmark_uv: (68, 2) float64 (u, v); uv_to_xyz: (G, G, 3) float32, NaN off the face;
    eye_distance: float, template distance between the outer eye corners; part_uv: (G, G) uint8;
    attrs: {"template_id", "template_hash", "units", "model_size", ...}; model: the face model for a
    dense fit, None when the file has none (built before the dense fit).
    """

    landmark_uv: np.ndarray
    uv_to_xyz: np.ndarray
    eye_distance: float
    part_uv: np.ndarray
    attrs: dict = field(default_factory=dict)
    model: ModelFacts | None = None

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
        """From the dict a face model computes (the arrays of template.h5 and its attributes; the face
        model's arrays when it has them)."""
        model = None
        if any(n in facts for n in TEMPLATE_MODEL_SCHEMA):
            model = ModelFacts.from_dict(facts, int(facts["model_size"]))
        return cls(np.asarray(facts["landmark_uv"], np.float64), np.asarray(facts["uv_to_xyz"], np.float32),
                   float(facts["eye_distance"]), np.asarray(facts["part_uv"], np.uint8),
                   {k: facts[k] for k in TEMPLATE_ATTRS + TEMPLATE_OPTIONAL_ATTRS if k in facts}, model)


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
        model_arrays = None
        listing = {n: (f[n].shape, f[n].dtype.name) for n in TEMPLATE_MODEL_SCHEMA if n in f}
        if listing:
            model_size, expression_size = _model_sizes(attrs, path)
            if check_model_listing(listing, str(path), model_size + expression_size):
                model_arrays = {n: f[n][()] for n in TEMPLATE_MODEL_SCHEMA}
    try:
        model = None if model_arrays is None else ModelFacts.from_dict(model_arrays, model_size)
        return TemplateFacts(landmark_uv, grid, eye, part_uv, attrs, model)
    except ShardFormatError as exc:
        raise ShardFormatError(f"{path}: {str(exc).removeprefix('template facts: ')}") from None


def _model_sizes(attrs: dict, path) -> tuple[int, int]:
    """(model_size, expression_size) of template.h5's attributes, integers in 0..100000."""
    out = []
    for key, default in (("model_size", None), ("expression_size", 0)):
        value = attrs.get(key, default)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 100_000:
            raise ShardFormatError(f"{path}: attribute {key} must be an integer in 0..100000, got {value!r}"[:200])
        out.append(int(value))
    return out[0], out[1]
