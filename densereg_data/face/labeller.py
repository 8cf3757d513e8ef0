"""One face in, dense labels out: fit a face model to the landmarks, render U-V, parts and mask.

`Labeller.label` renders at the image's own resolution, or, given a size S, cuts the S x S crop
around the landmarks (`densereg_data.geometry.crop`, the one crop rule) and renders the labels
directly at the crop's resolution (never resized afterwards); `Labeller.label_crop` returns that as
the shard sample a build writes. Both report how long each stage took (``seconds``: "crop", "fit",
"render"), so callers time the work without wrapping the labeller.

A `Labeller` is bound to one face model; `LabellerFactory` builds one from a model spec in a worker
process (it is small and picklable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import ShapeError
from densereg_data.face.fit import FitConfig, FitResult, check_landmarks
from densereg_data.face.labels import CropLabels, DenseLabels
from densereg_data.face.models import FaceModel, load_face_model
from densereg_data.geometry.affine import apply_affine
from densereg_data.geometry.crop import DEFAULT_MARGIN, crop_from_landmarks, warp_crop
from densereg_data.raster.api import render_uv_parts

log = logging.getLogger(__name__)

__all__ = ["Labeller", "LabellerFactory", "CropLabels", "DenseLabels"]


class Labeller:
    """Fits and renders faces with one face model (built once; reuse it for many faces).

    model: a `FaceModel`, or a spec ``NAME[:PATH]`` loaded with `load_face_model`; fit_config: the
    fit's knobs.
    """

    def __init__(self, model: FaceModel | str, fit_config: FitConfig = FitConfig()):
        self.model = load_face_model(model) if isinstance(model, str) else model
        if not isinstance(self.model, FaceModel):
            raise TypeError(f"Labeller needs a FaceModel or a model spec string, got {type(model).__name__}")
        self.fitter = self.model.fitter
        self.fit_config = fit_config

    def render(self, fit: FitResult, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """U-V (H, W, 2) float32 and parts (H, W) uint8 of a fit, rendered at `size` (height, width)."""
        t = self.model.template
        vertices = self.fitter.vertices_in_image(fit)
        _, uv, parts = render_uv_parts(vertices, t.faces, t.uv, t.face_parts, size)
        return uv, parts

    def label(self, image: np.ndarray, landmarks: np.ndarray, size: int | None = None,
              margin: float = DEFAULT_MARGIN, state: np.ndarray | None = None) -> DenseLabels:
        """Labels of the face in `image` (H, W, 3) uint8 with `landmarks` (68, 2) float64 (x, y) pixels:
        at the image's resolution (size None) or in the `size` x `size` crop around the landmarks.
        state: (68,) per-point states (`Fitter.fit`), None for all visible; the crop is placed around
        the placed points."""
        t0 = time.perf_counter()
        if state is None:
            points = check_landmarks(landmarks)
            placed = np.ones(len(points), bool)
        else:
            points = np.array(landmarks, dtype=np.float64)
            placed = np.asarray(state) != cv.MISSING
            if points.shape != (cv.N_LANDMARKS, 2) or placed.shape != (cv.N_LANDMARKS,) or not placed.any():
                raise ShapeError(f"landmarks must be (68, 2) with (68,) states, some placed; got {points.shape}")
            points[placed] = check_landmarks(np.where(placed[:, None], points, 0.0))[placed]
        if size is None:
            crop, crop_from_image = image, np.eye(2, 3)
        else:
            crop_from_image = crop_from_landmarks(points[placed], int(size), margin)
            points = apply_affine(crop_from_image, points)
            crop = warp_crop(image, crop_from_image, int(size))
        t1 = time.perf_counter()
        fit = self.fitter.fit(points, self.fit_config, state=state)
        t2 = time.perf_counter()
        uv, parts = self.render(fit, crop.shape[:2])
        seconds = {"crop": t1 - t0, "fit": t2 - t1, "render": time.perf_counter() - t2}
        m = self.model
        return DenseLabels(image=crop, uv=uv, parts=parts, mask=parts > 0, landmarks=points,
                           crop_from_image=crop_from_image, fit=fit, model=m.spec, model_id=m.id, model_hash=m.hash,
                           seconds=seconds, n_identity=m.shape.n_identity)

    def label_crop(self, image: np.ndarray, landmarks: np.ndarray, size: int = 256, margin: float = DEFAULT_MARGIN,
                   state: np.ndarray | None = None) -> CropLabels:
        """The shard sample of one face: `label` in the `size` x `size` crop, as docs/FORMAT.md's arrays."""
        out = self.label(image, landmarks, size, margin, state)
        fit = out.fit
        return CropLabels(
            image=out.image,
            uv=out.uv,
            parts=out.parts,
            landmarks=out.landmarks,
            crop_from_image=out.crop_from_image,
            crop_from_template=fit.camera.image_from_template,
            pose=fit.pose.astype(np.float64),
            coefficients=out.identity,
            expression=out.expression,
            landmark_state=np.full(cv.N_LANDMARKS, cv.VISIBLE, np.uint8) if fit.state is None else fit.state,
            fit_nme=fit.nme,
            seconds=out.seconds,
            fit=fit,
        )


@dataclass(frozen=True)
class LabellerFactory:
    """A picklable zero-argument factory of `Labeller`s for worker processes: ``LabellerFactory("menpo3d")()``.

    spec: the face model ``NAME[:PATH]`` (each process loads it once, `load_face_model`); fit_config:
    the fit's knobs.
    """

    spec: str
    fit_config: FitConfig = FitConfig()

    def __call__(self) -> Labeller:
        return Labeller(load_face_model(self.spec), self.fit_config)
