"""Label one face in one call: `label_face(image, landmarks)` -> `DenseLabels` (U-V, parts, mask, fit).

    >>> import densereg_data
    >>> labels = densereg_data.label_face("face.jpg", "face.pts")              # full resolution
    >>> labels = densereg_data.label_face(image, points, size=256)             # a 256 x 256 face crop
    >>> labels.uv.shape, labels.parts.dtype, labels.fit_nme

Arrays and files give the same result: an image path is read with `densereg_data.io.images.read_image`
and a landmark path with `densereg_data.io.landmarks.read_landmarks`.
"""

from __future__ import annotations

import os

import numpy as np

from densereg_data.errors import FitError, ShapeError
from densereg_data.face.fit import FitConfig
from densereg_data.face.labeller import Labeller
from densereg_data.face.labels import DenseLabels
from densereg_data.face.models import DEFAULT_FACE_MODEL, FaceModel
from densereg_data.geometry.crop import DEFAULT_MARGIN

__all__ = ["DenseLabels", "label_face"]


def label_face(
    image: np.ndarray | str | os.PathLike,
    landmarks: np.ndarray | str | os.PathLike,
    model: str | FaceModel = DEFAULT_FACE_MODEL,
    size: int | None = None,
    *,
    margin: float = DEFAULT_MARGIN,
    fit_config: FitConfig = FitConfig(),
) -> DenseLabels:
    """Fit `model` to one face's landmarks and render its dense labels.

    image: (H, W, 3) uint8 RGB or an image file; landmarks: (68, 2) float64 (x, y) pixels or a
    .pts / .ljson file; model: a FaceModel or a spec ``NAME[:PATH]`` (`load_face_model`, loaded once
    per process); size: None labels the whole image at its resolution, an int S the S x S crop around
    the landmarks (`densereg_data.geometry.crop`, with `margin`), as a build does.
    Raises ShapeError, FitError (naming the landmark file when given one), ImageFileError,
    LandmarkFileError, TemplateError (an unknown model).
    """
    from densereg_data.io.images import read_image
    from densereg_data.io.landmarks import read_landmarks

    labeller = Labeller(model, fit_config)
    pixels = read_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ShapeError(f"image must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    from_file = isinstance(landmarks, (str, os.PathLike))
    points = read_landmarks(landmarks).points if from_file else landmarks
    try:
        return labeller.label(pixels, points, size, margin)
    except FitError as exc:
        if from_file:
            raise FitError(f"{landmarks}: {exc}") from exc
        raise
