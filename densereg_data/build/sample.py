"""Labelling one sample of a build: a pure function that never raises on bad input.

`label_sample(ref, settings, factory)` reads the image and landmarks, labels the face with the
process's labeller (built once per process and thread by the picklable `factory`) and returns the
shard arrays or a skip reason, with per-stage timings.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from densereg_data import conventions as cv
from densereg_data.build.datasets import SampleRef
from densereg_data.errors import DenseRegError, FitError, ImageFileError, LandmarkFileError, ShapeError
from densereg_data.geometry.affine import apply_affine, compose_affine
from densereg_data.geometry.crop import crop_from_landmarks

log = logging.getLogger(__name__)

__all__ = ["LabelSettings", "Backend", "decode_sample", "label_sample", "implausible_label", "printable", "STAGES"]

#: Per-stage timers reported at the end of a build (seconds summed over samples).
STAGES = ("decode", "fit", "crop+render", "views", "write")


@dataclass(frozen=True)
class LabelSettings:
    """What a worker needs to label one sample (small, picklable)."""

    size: int
    margin: float
    max_fit_nme: float | None
    reduced_decode: bool = True
    views: Any = None  # a `build.views.ViewSpec`: new views of every face labelled; None: none

    @classmethod
    def of(cls, cfg) -> "LabelSettings":
        """The settings of a `BuildConfig`."""
        return cls(int(cfg.size), float(cfg.margin), cfg.max_fit_nme, bool(cfg.reduced_decode), cfg.view_spec)


class Backend:
    """Where labels come from: a picklable zero-argument `labeller_factory` (returns an object with
    ``label_crop(image, landmarks, size=, margin=)`` -> `CropLabels`) and `template_facts(grid)`
    (template.h5's contents). `Backend.for_model(spec)` is a registered face model's."""

    def __init__(self, labeller_factory: Callable[[], Any], template_facts: Callable[[int], dict]) -> None:
        self.labeller_factory = labeller_factory
        self.template_facts = template_facts

    @classmethod
    def for_model(cls, spec: str) -> "Backend":
        """The face model `spec` (``NAME[:PATH]``, see `densereg_data.face.models`); an unknown name is
        one TemplateError line listing the valid ones."""
        from densereg_data.face.labeller import LabellerFactory
        from densereg_data.face.models import load_face_model

        return cls(LabellerFactory(spec), load_face_model(spec).facts)


_LABELLERS: dict[Any, Any] = {}


def _labeller_for(factory: Callable[[], Any]):
    """One labeller per process (and per thread, for threaded Dask workers), built on first use."""
    import threading

    name = f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"
    key = (name, os.getpid(), threading.get_ident())
    lab = _LABELLERS.get(key)
    if lab is None:
        lab = _LABELLERS[key] = factory()
    return lab


#: A fitted face turned further than this from the camera is a fit of mirrored or misnumbered
#: landmarks (real faces of 300-W stay under 45 degrees, mirrored ones land near 165).
MAX_FACING_DEG = 120.0
#: A crop with less than this fraction of its area inside the source image holds no face to learn from.
MIN_IMAGE_FRACTION = 0.01


def printable(text: str) -> str:
    """`text` as valid UTF-8 (undecodable file-name bytes shown as backslash escapes)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def facing_angle(crop_from_template: np.ndarray) -> float:
    """Degrees between the direction the fitted face looks (template +z) and the direction to the
    camera (smaller depth): 0 frontal, 90 profile, 180 facing away. crop_from_template: (3, 4)."""
    look = crop_from_template[:, 2]
    return float(np.degrees(np.arccos(np.clip(-look[2] / max(np.linalg.norm(look), 1e-300), -1.0, 1.0))))


def image_fraction(crop_from_image: np.ndarray, source_size: tuple[int, int], size: int) -> float:
    """Fraction of the (size x size) crop's area that lies inside the source image (H, W)."""
    a, (tx, ty) = crop_from_image[0, 0], crop_from_image[:, 2]
    lo_x, lo_y = (-0.5 - tx) / a, (-0.5 - ty) / a  # the crop's edges in image coordinates
    side = size / a
    h, w = source_size
    ox = max(0.0, min(lo_x + side, w - 0.5) - max(lo_x, -0.5))
    oy = max(0.0, min(lo_y + side, h - 0.5) - max(lo_y, -0.5))
    return ox * oy / (side * side)


def implausible_label(crop_from_template: np.ndarray, crop_from_image: np.ndarray, source_size, size: int):
    """(kind, reason) when a label must not become training data, else None."""
    angle = facing_angle(crop_from_template)
    if angle > MAX_FACING_DEG:
        return "facing_away", (f"the fitted face looks {angle:.0f} degrees away from the camera "
                               "(mirrored or misnumbered landmarks?)")
    fraction = image_fraction(crop_from_image, source_size, size)
    if fraction < MIN_IMAGE_FRACTION:
        return "outside_image", f"the face crop lies outside the image ({100 * fraction:.1f}% of it inside)"
    return None


def decode_sample(ref: SampleRef, settings: LabelSettings):
    """Read one sample's landmarks and image, decoded at the lowest resolution that loses no detail at
    the crop size: returns (ReducedImage, landmarks (n, 2) float64 in the reduced image's pixels, NaN
    where missing, state (n,) uint8 or None when all are visible). Raises LandmarkFileError / ImageFileError."""
    from densereg_data.io.images import ReducedImage, read_image, read_image_reduced
    from densereg_data.io.landmarks import read_landmarks

    if ref.annotation is not None:
        landmarks, state = ref.annotation.points.copy(), ref.annotation.state
    else:
        landmarks, state = read_landmarks(ref.landmarks).points, None
    placed = landmarks[state != cv.MISSING] if state is not None else landmarks
    try:  # crop pixels per image pixel, by the one crop rule
        crop_scale = float(crop_from_landmarks(placed, settings.size, settings.margin)[0, 0])
    except ShapeError:  # the landmarks span no area: the labeller will say so
        crop_scale = None
    frame = ref.annotation.extra.get("frame") if ref.annotation is not None else None
    if frame is not None:  # a video's frame (300-VW): decoded from the video itself
        from densereg_data.build.datasets.vw300 import read_frame

        full = read_frame(ref.image, int(frame))
        reduced = ReducedImage(full, 1, (full.shape[0], full.shape[1]))
    elif settings.reduced_decode and crop_scale is not None:  # decode at 1/k >= crop_scale: no detail is lost
        reduced = read_image_reduced(ref.image, min_scale=crop_scale)
    else:
        full = read_image(ref.image)
        reduced = ReducedImage(full, 1, (full.shape[0], full.shape[1]))
    if reduced.factor != 1:
        landmarks = apply_affine(reduced.reduced_from_image, landmarks)
    return reduced, landmarks, state


def label_sample(ref: SampleRef, settings: LabelSettings, factory: Callable[[], Any]) -> dict[str, Any]:
    """Label one sample. Never raises on bad input: returns ``{"sample": arrays or None, "skip": {...} or
    None, "views": [arrays, ...], "view_skips": [{...}, ...], "times": {stage: seconds}}``. `sample`
    holds the shard datasets of docs/FORMAT.md; `views` its new views (`settings.views`, build.views)
    and `view_skips` the views not rendered, with the reason."""
    times = {"decode": 0.0, "fit": 0.0, "crop+render": 0.0, "views": 0.0}
    n_views = len(settings.views.deltas) if settings.views is not None else 0

    def skip(kind: str, reason: str) -> dict:
        if n_views:
            reason += f" (so its {n_views} new view{'s are' if n_views > 1 else ' is'} not rendered either)"
        return {"sample": None, "skip": {"source": printable(ref.source), "split": ref.split, "kind": kind,
                                         "reason": printable(reason)}, "views": [], "view_skips": [], "times": times}

    if printable(ref.source) != ref.source:
        return skip("name", f"file name is not valid UTF-8: {printable(ref.source)}")

    t0 = time.perf_counter()
    try:
        reduced, landmarks, state = decode_sample(ref, settings)
    except LandmarkFileError as exc:
        return skip("landmarks", str(exc))
    except ImageFileError as exc:
        return skip("image", str(exc))
    image = reduced.image
    reduced_from_image = reduced.reduced_from_image
    t1 = time.perf_counter()
    times["decode"] = t1 - t0
    try:
        labeller = _labeller_for(factory)
        out = labeller.label_crop(image, landmarks, size=settings.size, margin=settings.margin,
                                  **({} if state is None else {"state": state}))
    except FitError as exc:
        times["fit"] = time.perf_counter() - t1
        return skip("fit", f"fit failed for {ref.source}: {exc}")
    except DenseRegError as exc:
        return skip("label", f"{ref.source}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one sample never ends a build; the skip fraction guards
        log.warning("labelling %s raised %s: %s", ref.source, type(exc).__name__, exc)
        return skip("error", f"unexpected {type(exc).__name__} labelling {ref.source}: {exc}")
    t2 = time.perf_counter()
    seconds = getattr(out, "seconds", None) or {}  # the labeller's own stage timings
    times["fit"] = float(seconds.get("fit", 0.0))
    times["crop+render"] = max(t2 - t1 - times["fit"], 0.0)
    crop_from_image = np.asarray(out.crop_from_image, np.float64)
    if reduced.factor != 1:  # the labeller saw the reduced image: crop_from_image = crop_from_reduced ∘ reduced_from_image
        crop_from_image = compose_affine(crop_from_image, reduced_from_image)
    nme = float(out.fit_nme)
    implausible = implausible_label(np.asarray(out.crop_from_template, np.float64), crop_from_image,
                                    reduced.source_size, settings.size)
    if implausible is not None:
        return skip(implausible[0], f"{ref.source}: {implausible[1]}")
    if settings.max_fit_nme is not None and not nme <= settings.max_fit_nme:
        return skip("fit_nme", f"fit NME {nme:.4f} > --max-fit-nme {settings.max_fit_nme} for {ref.source}")
    sample = {
        "image": np.asarray(out.image, np.uint8),
        "uv": np.asarray(out.uv).astype(np.float16),
        "parts": np.asarray(out.parts, np.uint8),
        "landmarks": np.asarray(out.landmarks, np.float32),
        "crop_from_image": crop_from_image,
        "source": ref.source,
        "source_size": np.asarray(reduced.source_size, np.int32),
        "fit_nme": np.float32(nme),
        "crop_from_template": np.asarray(out.crop_from_template, np.float64),
        "pose": np.asarray(out.pose, np.float32),
        "coefficients": np.asarray(out.coefficients, np.float32),
        "expression": np.asarray(getattr(out, "expression", ()), np.float32),
        "landmark_state": np.asarray(getattr(out, "landmark_state", np.full(cv.N_LANDMARKS, cv.VISIBLE)), np.uint8),
        "view_delta": np.zeros(2, np.float32),  # an original face; its new views (build.views) say their deltas
    }
    views, view_skips = [], []
    if n_views:
        t3 = time.perf_counter()
        views, view_skips = _render_views(ref, settings, labeller, image, out, reduced)
        times["views"] = time.perf_counter() - t3
    return {"sample": sample, "skip": None, "views": views, "view_skips": view_skips, "times": times}


def _render_views(ref: SampleRef, settings: LabelSettings, labeller, image: np.ndarray, out, reduced):
    """The new views of one labelled face (build.views) as shard samples, and the views skipped."""
    from densereg_data.build.views import render_views

    views, skips = [], []
    for view in render_views(labeller, image, out, settings.views, settings.size, settings.margin):
        yaw, pitch = view["delta"]
        if view["sample"] is None:
            skips.append({"source": printable(ref.source), "split": ref.split, "kind": view["skip"]["kind"],
                          "reason": printable(f"{ref.source} view yaw {yaw:+g} pitch {pitch:+g}: {view['skip']['reason']}"),
                          "view_delta": [float(yaw), float(pitch)]})
            continue
        sample = dict(view["sample"])
        sample["source"] = ref.source
        sample["source_size"] = np.asarray(reduced.source_size, np.int32)
        if reduced.factor != 1:  # as the original's: the view's crop from the full-resolution image
            sample["crop_from_image"] = compose_affine(np.asarray(sample["crop_from_image"], np.float64),
                                                       reduced.reduced_from_image)
        views.append(sample)
    return views, skips
