"""One face in, dense labels out: fit the template to the landmarks, render U-V, parts and mask.

`Labeller.label_image` renders at the image's own resolution (the `densereg-data label` command);
`Labeller.label_crop` cuts a square crop around the landmarks and renders the labels directly at the
crop's resolution (never resized afterwards), which is what a build writes into shards.

Convention: crop
    A square of side ``max(w, h) * (1 + 2 * margin)`` centred on the centre of the landmarks'
    bounding box (w, h its width and height), in continuous image coordinates, resampled to S x S pixels:
    ``crop_xy = a * (xy - corner) - 0.5`` with ``a = S / side`` and ``corner`` the square's top-left
    *edge*, so that pixel centres stay at integers in both images. `crop_from_image` (2, 3) holds this
    map. Pixels outside the source image are black.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from densereg_data import conventions as cv
from densereg_data.geometry.affine import apply_affine, compose_affine, invert_affine, reduction_affine
from densereg_data.errors import ImageFileError, ShapeError
from densereg_data.face.fit import FitConfig, FitResult, Fitter, check_landmarks, default_fitter
from densereg_data.raster.api import render_uv_parts

log = logging.getLogger(__name__)

DEFAULT_MARGIN = 0.25


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


def crop_from_image(landmarks: np.ndarray, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(2, 3) float64 affine of the square crop around `landmarks` (68, 2); see the module Convention."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    side = float(max(hi - lo)) * (1.0 + 2.0 * margin)
    if not side > 0:
        raise ShapeError("the landmarks span no area; cannot place a crop")
    centre = (lo + hi) / 2.0
    a = size / side
    corner = centre - side / 2.0  # continuous coordinates of the crop's top-left edge
    return np.array([[a, 0.0, -a * corner[0] - 0.5], [0.0, a, -a * corner[1] - 0.5]])


def warp_crop(image: np.ndarray, crop_from_image_: np.ndarray, size: int) -> np.ndarray:
    """Resample `image` (H, W, 3) uint8 into the (size, size, 3) crop, box-prefiltered when shrinking."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageFileError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    a = crop_from_image_[0, 0]
    pil = Image.fromarray(image)
    factor = max(1, int(np.floor(1.0 / a))) if a < 1.0 else 1
    affine = crop_from_image_
    if factor > 1:  # average factor x factor blocks first: reduced_xy = (xy + 0.5) / factor - 0.5
        pil = pil.reduce(factor)
        affine = compose_affine(crop_from_image_, invert_affine(reduction_affine(factor)))
    image_from_crop = invert_affine(affine)
    lin, t = image_from_crop[:, :2], image_from_crop[:, 2]
    # Pillow samples in pixel-edge coordinates: in_edge = M @ out_edge + c
    c = t + 0.5 - lin @ np.array([0.5, 0.5])
    coeffs = (lin[0, 0], lin[0, 1], c[0], lin[1, 0], lin[1, 1], c[1])
    out = pil.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


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
        affine = crop_from_image(landmarks, size, margin)
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


def landmark_label_errors(uv: np.ndarray, landmarks: np.ndarray, landmark_uv: np.ndarray, uv_to_xyz, eye_distance: float) -> np.ndarray:
    """Label consistency: per landmark, template distance / eye distance between the U-V rendered at the
    landmark's pixel and the landmark's own U-V; NaN where that pixel is background or off the image.

    uv: (H, W, 2) rendered; landmarks (n, 2) px; landmark_uv (n, 2); uv_to_xyz: callable (m, 2) -> (m, 3).
    """
    h, w = uv.shape[:2]
    cols, rows = np.round(landmarks[:, 0]).astype(int), np.round(landmarks[:, 1]).astype(int)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    out = np.full(len(landmarks), np.nan)
    got = uv[rows[inside], cols[inside]].astype(np.float64)
    fg = np.any(got > 0, axis=1)
    dist = np.linalg.norm(uv_to_xyz(got) - uv_to_xyz(landmark_uv[inside]), axis=1) / eye_distance
    out[np.flatnonzero(inside)[fg]] = dist[fg]
    return out
