"""Prediction: `Predictor(checkpoint).predict(image, landmarks=None, bbox=None)` -> arrays for one face,
`Predictor(checkpoint).predict_all(image)` -> one `Prediction` per face a detector finds.

The face crop is `densereg_data.geometry.crop`'s rule (the one the shard builder uses), with the
margin and size the checkpoint's shards were built with; the image is read by
`densereg_data.io.images.read_image` and landmark files by `densereg_data.io.landmarks.read_landmarks`.
`predict_all` finds faces with `densereg_net.detect.detect_faces` and crops each around
`densereg_net.detect.landmark_box` of its detector box (the box its 68 landmarks are expected to span),
so a detected crop matches the crop rule the shards were built with.
Nothing is written here: `densereg-net predict` (densereg_cli) writes the pictures and the .pts file.

Convention: prediction frames
    ``uv``, ``parts``, ``fg`` and ``crop`` are in the crop (S x S pixels); ``landmarks`` are in the
    source image's pixels (x, y), 0-based, pixel centres at integers, mapped back through the inverse
    of ``crop_from_image``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from densereg_data.conventions import LANDMARK_LIMIT_PX
from densereg_data.errors import CheckpointError, FitError, InputError, ShapeError
from densereg_data.geometry.affine import apply_affine, invert_affine
from densereg_data.geometry.crop import crop_from_box, crop_from_landmarks, warp_crop
from densereg_data.io.images import read_image
from densereg_data.io.landmarks import Landmarks, read_landmarks
from densereg_net.checkpoint import load_checkpoint, model_from_checkpoint
from densereg_net.detect import DEFAULT_DETECTOR, detect_faces, landmark_box
from densereg_net.device import autocast, resolve_device, to_model_layout
from densereg_net.metrics import combined_landmarks, landmarks_from_uv

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor"]


@dataclass(frozen=True, eq=False)
class Prediction:
    """The network's output for one face.

    uv: (S, S, 2) float32 (u, v), 0 on background; parts: (S, S) uint8, 0 = background;
    fg: (S, S) bool (parts > 0); landmarks: (68, 2) float64 (x, y) image pixels;
    crop_from_image: (2, 3) float64; crop: (S, S, 3) uint8 RGB, the network's input;
    detection: (5,) float64 (x0, y0, x1, y1, score) image pixels, the detector's box the crop came
    from (`Predictor.predict_all`), None when the crop came from landmarks or a box.
    """

    uv: np.ndarray
    parts: np.ndarray
    fg: np.ndarray
    landmarks: np.ndarray
    crop_from_image: np.ndarray
    crop: np.ndarray
    detection: np.ndarray | None = None
    #: with ``fit=True``: the face model fitted to the dense U-V (`densereg_net.dense_fit.DenseFit`, crop
    #: pixels) and its 68 landmarks (68, 2) float64 in image pixels
    fit: object | None = None
    fit_landmarks: np.ndarray | None = None
    #: with ``fit=True``: the combined read-out, the mean of `landmarks` and `fit_landmarks`
    #: (`densereg_net.metrics.combined_landmarks`; `landmarks` when the fit failed)
    combined_landmarks: np.ndarray | None = None


class Predictor:
    """A trained network ready to predict: ``Predictor("runs/x/best.pt").predict("face.jpg", bbox=(x0, y0, x1, y1))``.

    checkpoint: a path (see `densereg_net.checkpoint`); device: "auto", "cpu", "cuda" or "cuda:N"; flip:
    test-time flip (`DenseRegNet.predict`: twice the network time). Attributes: size and margin of the
    crop, k, head, device, model, flip.
    """

    def __init__(self, checkpoint: str | os.PathLike, device: str = "auto", flip: bool = False):
        ckpt = load_checkpoint(checkpoint)
        if ckpt.get("template") is None:
            raise CheckpointError(f"{checkpoint} has no template landmark U-V (trained on shards without template.h5)")
        self.size, self.margin = int(ckpt["crop"]["size"]), float(ckpt["crop"]["margin"])
        self.k, self.head = int(ckpt["k"]), ckpt["model_config"]["head"]
        self.device = resolve_device(device)
        self.model = model_from_checkpoint(ckpt, self.device)
        # the landmarks' read-out U-V: calibrated on the training labels, or the template's (older checkpoints)
        template = ckpt["template"]
        self.landmark_uv = torch.tensor(template.get("readout_uv", template["landmark_uv"]), dtype=torch.float64)
        self.facts = ckpt.get("template_facts")  # TemplateFacts with the face model (dense fit), or None
        self.checkpoint = str(checkpoint)
        self.flip = bool(flip)

    def crop_from_image(self, landmarks=None, bbox=None) -> np.ndarray:
        """(2, 3) float64 crop_from_image from exactly one of `landmarks` ((68, 2) (x, y) pixels or a
        .pts/.ljson path of 68 points: the crop rule the shards were built with) and `bbox`
        ((x0, y0, x1, y1) pixels, finite, within LANDMARK_LIMIT_PX of the origin, x1 > x0, y1 > y0)."""
        if (landmarks is None) == (bbox is None):
            raise InputError("give exactly one of landmarks (points or a .pts file) and bbox (x0, y0, x1, y1)")
        if bbox is not None:
            try:
                box = np.asarray(bbox, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                raise ShapeError(f"bbox must be 4 numbers x0, y0, x1, y1, got {str(bbox)[:60]}") from None
            if box.shape != (4,):
                raise ShapeError(f"bbox must be 4 numbers x0, y0, x1, y1, got {box.size}")
            if not np.all(np.abs(box) <= LANDMARK_LIMIT_PX):  # NaN fails too
                raise ShapeError(f"bbox must be finite and within {LANDMARK_LIMIT_PX:g} pixels of the image origin, "
                                 f"got {', '.join(f'{b:g}' for b in box)}")
            return self._within_reach(crop_from_box(box, self.size, self.margin), "bbox")
        if isinstance(landmarks, (str, os.PathLike)):
            points = read_landmarks(landmarks).points
        else:
            points = Landmarks(np.asarray(landmarks, dtype=np.float64)).points
        return self._within_reach(crop_from_landmarks(points, self.size, self.margin), "landmarks")

    def _within_reach(self, A: np.ndarray, what: str) -> np.ndarray:
        """`A` if the crop square (and the few pixels around it a predicted landmark may reach) lies within
        LANDMARK_LIMIT_PX of the image origin, so the predicted landmarks are valid `Landmarks`."""
        S = self.size
        reach = float(np.abs(apply_affine(invert_affine(A), np.array([[-8.0, -8.0], [S + 8.0, S + 8.0]]))).max())
        if not reach <= LANDMARK_LIMIT_PX:
            raise ShapeError(f"the crop around the {what} reaches {reach:g} pixels from the image origin "
                             f"(more than {LANDMARK_LIMIT_PX:g})")
        return A

    def predict(self, image, landmarks=None, bbox=None, fit: bool = False) -> Prediction:
        """Predict U-V, parts and the 68 landmarks of the face given by `landmarks` or `bbox`.

        image: (H, W, 3) uint8 RGB or an image path; landmarks: (68, 2) float (x, y) pixels or a
        .pts/.ljson path; bbox: (x0, y0, x1, y1) pixels. Exactly one of landmarks and bbox. fit: also
        fit the face model to the dense output (`Prediction.fit`, `fit_landmarks`; `densereg_net.dense_fit`).
        """
        self._check_fit(fit)
        image = _image(image)
        return self._predict_crop(image, self.crop_from_image(landmarks, bbox), fit=fit)

    def _check_fit(self, fit: bool) -> None:
        if fit and (self.facts is None or self.facts.model is None):
            from densereg_net.dense_fit import NO_FACE_MODEL

            raise CheckpointError(f"{self.checkpoint} {NO_FACE_MODEL}")

    def predict_all(self, image, detector: str = DEFAULT_DETECTOR, max_faces: int | None = None,
                    fit: bool = False) -> list[Prediction]:
        """Predict every face `detector` finds in `image` ((H, W, 3) uint8 RGB or an image path): one
        `Prediction` per face, the largest detector box first (ties: the more confident); [] when none.

        Each crop is the shards' crop rule around `densereg_net.detect.landmark_box` of the detector box;
        `max_faces` keeps the first that many. Detection runs on the CPU (see `densereg_net.detect`).
        """
        self._check_fit(fit)
        image = _image(image)
        boxes = detect_faces(image, detector)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes = boxes[np.lexsort((-boxes[:, 4], -area))][:max_faces]
        return [self._predict_crop(image, self._within_reach(
                    crop_from_box(landmark_box(b, detector), self.size, self.margin), "detected face"), b, fit)
                for b in boxes]

    @torch.no_grad()
    def _predict_crop(self, image: np.ndarray, A: np.ndarray, detection: np.ndarray | None = None,
                      fit: bool = False) -> Prediction:
        """The network on the crop `A` (crop_from_image (2, 3)) of image (H, W, 3) uint8; with `fit`, the
        dense fit of the face model too (a fit that fails leaves `Prediction.fit` None, logged)."""
        from densereg_net.dense_fit import dense_confidence, fit_dense, head_outputs

        crop = warp_crop(image, A, self.size)
        x = torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float().div(255).to(self.device)  # (1, 3, S, S)
        with autocast(self.device), head_outputs(self.model) as head:
            pred = self.model.predict(to_model_layout(x), flip=self.flip)
        uv, parts, fg = pred["uv"][0].float(), pred["parts"][0], pred["fg"][0]
        lm_crop = landmarks_from_uv(uv, fg, self.landmark_uv).numpy()
        uv_np, fg_np = uv.permute(1, 2, 0).cpu().numpy(), fg.cpu().numpy()  # (S, S, 2), (S, S)
        dense, fit_lm = None, None
        if fit:
            try:
                dense = fit_dense(uv_np, fg_np, dense_confidence(head["out"])[0].cpu().numpy(), self.facts)
                fit_lm = apply_affine(invert_affine(A), dense.landmarks)
            except (FitError, ShapeError) as exc:
                log.warning("dense fit failed: %s", exc)
        landmarks = apply_affine(invert_affine(A), lm_crop)
        return Prediction(uv=uv_np, parts=parts.cpu().numpy().astype(np.uint8), fg=fg_np,
                          landmarks=landmarks, crop_from_image=A, crop=crop, detection=detection, fit=dense,
                          fit_landmarks=fit_lm, combined_landmarks=combined_landmarks(landmarks, fit_lm) if fit else None)


def _image(image) -> np.ndarray:
    """An image path or array -> (H, W, 3) uint8 RGB array; ShapeError for any other array."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return image
