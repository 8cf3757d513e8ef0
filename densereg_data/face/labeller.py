"""One face in, dense labels out: fit the template to the landmarks, render U-V, parts and mask.

`Labeller.label_image` renders at the image's own resolution (the `densereg-data label` command);
`Labeller.label_crop` cuts a square crop around the landmarks and renders the labels directly at the
crop's resolution (never resized afterwards), which is what a build writes into shards.

The crop is `densereg_data.geometry.crop`'s (the one crop rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from densereg_data import conventions as cv
from densereg_data.geometry.affine import apply_affine
from densereg_data.geometry.crop import DEFAULT_MARGIN, crop_from_landmarks, warp_crop
from densereg_data.errors import ShapeError
from densereg_data.face.fit import FitConfig, FitResult, Fitter, check_landmarks, default_fitter
from densereg_data.raster.api import render_uv_parts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageLabels:
    """Dense labels of one face at the image's resolution.

    uv: (H, W, 2) float32, 0 on background; parts: (H, W) uint8, 0 background, 1..8; mask: (H, W) bool;
    fit: the FitResult in image pixels.
    """

    uv: np.ndarray
    parts: np.ndarray
    mask: np.ndarray
    fit: FitResult


@dataclass(frozen=True)
class CropLabels:
    """Dense labels of one face crop, as a build writes them (docs/FORMAT.md).

    image (S, S, 3) uint8; uv (S, S, 2) float32, 0 on background; parts (S, S) uint8;
    landmarks (68, 2) float64 crop pixels; crop_from_image (2, 3) float64; crop_from_template (3, 4)
    float64; pose (3,) float64 degrees; coefficients (C,) float64; fit_nme float.
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

    def __post_init__(self) -> None:
        s = self.image.shape[0]
        expected = {
            "image": ((s, s, 3), np.uint8),
            "uv": ((s, s, 2), np.float32),
            "parts": ((s, s), np.uint8),
            "landmarks": ((cv.N_LANDMARKS, 2), np.float64),
            "crop_from_image": ((2, 3), np.float64),
            "crop_from_template": ((3, 4), np.float64),
            "pose": ((3,), np.float64),
        }
        for name, (shape, dtype) in expected.items():
            a = getattr(self, name)
            if a.shape != shape or a.dtype != dtype:
                raise ShapeError(f"CropLabels.{name} must be {shape} {np.dtype(dtype)}, got {a.shape} {a.dtype}")


class Labeller:
    """Fits and renders faces with one template + model (built once; reuse it for many faces)."""

    def __init__(self, fitter: Fitter | None = None, fit_config: FitConfig = FitConfig()):
        self.fitter = fitter or default_fitter()
        self.fit_config = fit_config
        t = self.fitter.template
        self._faces, self._uv, self._parts = t.faces, t.uv, t.face_parts

    def render(self, fit: FitResult, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """U-V (H, W, 2) float32 and parts (H, W) uint8 of a fit, rendered at `size` (height, width)."""
        vertices = self.fitter.vertices_in_image(fit)
        _, uv, parts = render_uv_parts(vertices, self._faces, self._uv, self._parts, size)
        return uv, parts

    def label_image(self, image_size: tuple[int, int], landmarks: np.ndarray) -> ImageLabels:
        """Labels at full image resolution; `image_size` (height, width), landmarks (68, 2) (x, y) px."""
        fit = self.fitter.fit(landmarks, self.fit_config)
        uv, parts = self.render(fit, image_size)
        return ImageLabels(uv=uv, parts=parts, mask=parts > 0, fit=fit)

    def label_crop(self, image: np.ndarray, landmarks: np.ndarray, size: int = 256, margin: float = DEFAULT_MARGIN) -> CropLabels:
        """Crop around the landmarks, fit in crop pixels and render the labels at (size, size)."""
        landmarks = check_landmarks(landmarks)
        affine = crop_from_landmarks(landmarks, size, margin)
        crop_landmarks = apply_affine(affine, landmarks)
        fit = self.fitter.fit(crop_landmarks, self.fit_config)
        uv, parts = self.render(fit, (size, size))
        return CropLabels(
            image=warp_crop(image, affine, size),
            uv=uv,
            parts=parts,
            landmarks=crop_landmarks,
            crop_from_image=affine,
            crop_from_template=fit.camera.image_from_template,
            pose=fit.pose.astype(np.float64),
            coefficients=fit.coefficients.ravel().astype(np.float64),
            fit_nme=fit.nme,
        )
