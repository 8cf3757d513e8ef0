"""The records labelling produces: `DenseLabels` (one face, any resolution) and `CropLabels` (a
shard sample, docs/FORMAT.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import ShapeError
from densereg_data.face.fit import FitResult


def _check(record: object, expected: dict[str, tuple[tuple[int, ...], type]]) -> None:
    for name, (shape, dtype) in expected.items():
        a = getattr(record, name)
        if a.shape != shape or a.dtype != dtype:
            raise ShapeError(f"{type(record).__name__}.{name} must be {shape} {np.dtype(dtype)}, got {a.shape} {a.dtype}")


@dataclass(frozen=True, eq=False)
class DenseLabels:
    """The dense labels of one face, in the pixels of `image`.

    image: (H, W, 3) uint8 RGB, the pixels labelled (the input image, or the square crop of it);
    uv: (H, W, 2) float32 in [0, 1], 0 on background; parts: (H, W) uint8, 0 background, 1..8 as
    `conventions.PART_NAMES`; mask: (H, W) bool, ``parts > 0``; landmarks: (68, 2) float64 (x, y)
    in `image`'s pixels; crop_from_image: (2, 3) float64 affine from the input image to `image`
    (the identity at full resolution); fit: the FitResult in `image`'s pixels; model: the face
    model's spec; model_id, model_hash: its id and content hash; seconds: time per stage
    ({"crop": s, "fit": s, "render": s}); n_identity: how many of the fit's coefficients are identity
    (the rest are expression; None: all).
    """

    image: np.ndarray
    uv: np.ndarray
    parts: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray
    crop_from_image: np.ndarray
    fit: FitResult
    model: str
    model_id: str
    model_hash: str
    seconds: dict[str, float] = field(default_factory=dict)
    n_identity: int | None = None

    def __post_init__(self) -> None:
        h, w = self.parts.shape[:2]
        _check(self, {
            "image": ((h, w, 3), np.uint8),
            "uv": ((h, w, 2), np.float32),
            "parts": ((h, w), np.uint8),
            "mask": ((h, w), np.bool_),
            "landmarks": ((cv.N_LANDMARKS, 2), np.float64),
            "crop_from_image": ((2, 3), np.float64),
        })

    @property
    def pose(self) -> np.ndarray:
        """(3,) float64 yaw, pitch, roll in degrees (`densereg_data.face.fit`'s Convention: pose)."""
        return self.fit.pose

    @property
    def coefficients(self) -> np.ndarray:
        """The fit's shape model coefficients (the model's `zero()` shape: identity, then expression)."""
        return self.fit.coefficients

    @property
    def identity(self) -> np.ndarray:
        """(C,) float64 the identity coefficients (`MorphableModel.split` of `coefficients`)."""
        return self.fit.coefficients.ravel()[: self.n_identity].astype(np.float64)

    @property
    def expression(self) -> np.ndarray:
        """(E,) float64 the expression coefficients; (0,) for a model without expressions."""
        n = self.fit.coefficients.size if self.n_identity is None else self.n_identity
        return self.fit.coefficients.ravel()[n:].astype(np.float64)

    @property
    def fit_nme(self) -> float:
        """Mean fit residual / outer-eye-corner distance of the landmarks."""
        return self.fit.nme


@dataclass(frozen=True)
class CropLabels:
    """Dense labels of one face crop, as a build writes them (docs/FORMAT.md).

    image (S, S, 3) uint8; uv (S, S, 2) float32, 0 on background; parts (S, S) uint8;
    landmarks (68, 2) float64 crop pixels; crop_from_image (2, 3) float64; crop_from_template (3, 4)
    float64; pose (3,) float64 degrees; coefficients (C,) float64 identity and expression (E,) float64
    expression coefficients of the face model (`split` of the fit's); fit_nme float; seconds: time per
    stage, {"crop": s, "fit": s, "render": s}, and fit: the FitResult in crop pixels (both left empty
    by a producer that does not fit or time itself).
    """

    image: np.ndarray
    uv: np.ndarray
    parts: np.ndarray
    landmarks: np.ndarray
    crop_from_image: np.ndarray
    crop_from_template: np.ndarray
    pose: np.ndarray
    coefficients: np.ndarray
    fit_nme: float
    expression: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (68,) uint8 per-point states (`conventions.VISIBLE`, `OCCLUDED`, `MISSING`); landmarks are NaN where MISSING
    landmark_state: np.ndarray = field(default_factory=lambda: np.full(cv.N_LANDMARKS, cv.VISIBLE, np.uint8))
    seconds: dict[str, float] = field(default_factory=dict, compare=False)
    fit: FitResult | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        s = self.image.shape[0]
        _check(self, {
            "image": ((s, s, 3), np.uint8),
            "uv": ((s, s, 2), np.float32),
            "parts": ((s, s), np.uint8),
            "landmarks": ((cv.N_LANDMARKS, 2), np.float64),
            "crop_from_image": ((2, 3), np.float64),
            "crop_from_template": ((3, 4), np.float64),
            "pose": ((3,), np.float64),
        })
