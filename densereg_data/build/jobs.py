"""The one-call jobs behind `densereg-data label` and `densereg-data template show`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.draw import PART_COLOURS, iuv_image, overlay, uv_colour
from densereg_data.errors import DenseRegError, FitError
from densereg_data.io.images import read_image, write_png
from densereg_data.io.landmarks import read_landmarks
from densereg_data.face.labeller import Labeller

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelSummary:
    """What `label_face_files` wrote and how well the fit matched (NME = mean error / eye distance)."""

    out_dir: Path
    nme: float
    mean_error_px: float
    pose: tuple[float, float, float]
    foreground_pixels: int


def _prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DenseRegError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def label_face_files(image_path: Path, landmarks_path: Path, out_dir: Path, labeller: Labeller | None = None) -> LabelSummary:
    """Fit, render and write the dense labels of one face.

    Writes labels.npz (u, v, parts, mask at full resolution; fit parameters and errors), iuv.png and
    overlay.png into `out_dir`.
    """
    image = read_image(image_path)
    landmarks = read_landmarks(landmarks_path).points
    labeller = labeller or Labeller()
    try:
        labels = labeller.label_image(image.shape[:2], landmarks)
    except FitError as exc:
        raise FitError(f"{landmarks_path}: {exc}") from exc
    fit = labels.fit
    out_dir = _prepare_out_dir(out_dir)
    np.savez_compressed(
        out_dir / "labels.npz",
        u=labels.uv[..., 0],
        v=labels.uv[..., 1],
        parts=labels.parts,
        mask=labels.mask,
        part_names=np.array(cv.PART_NAMES),
        landmarks=fit.landmarks,
        fitted_landmarks=fit.fitted_landmarks,
        residuals_px=fit.residuals,
        nme=np.float64(fit.nme),
        image_from_template=fit.camera.image_from_template,
        pose_deg=fit.pose,
        coefficients=fit.coefficients,
    )
    write_png(out_dir / "iuv.png", iuv_image(labels.uv, labels.parts))
    write_png(out_dir / "overlay.png", overlay(image, labels.uv, labels.parts, fit.landmarks, fit.fitted_landmarks))
    return LabelSummary(
        out_dir=out_dir,
        nme=fit.nme,
        mean_error_px=float(fit.residuals.mean()),
        pose=tuple(float(a) for a in fit.pose),
        foreground_pixels=int(labels.mask.sum()),
    )


def template_summary(template_id: str = "menpo3d-face") -> dict:
    """The template's facts as a JSON-ready dict."""
    from densereg_data.face.template import load_template, uv_signed_areas

    t = load_template(template_id)
    areas = uv_signed_areas(t.uv, t.faces)
    return {
        "id": t.id,
        "hash": t.hash,
        "units": t.units,
        "frame": "right-handed, y up, x to the subject's left, face looks along +z; triangles CCW from the front",
        "vertices": int(len(t.vertices)),
        "triangles": int(len(t.faces)),
        "extent_mm": np.ptp(t.vertices, axis=0).round(1).tolist(),
        "eye_distance_mm": round(t.eye_distance, 3),
        "uv_min_triangle_area": float(areas.min()),
        "uv_folded_triangles": int((areas <= 0).sum()),
        "parts": {name: int((t.face_parts == i + 1).sum()) for i, name in enumerate(cv.PART_NAMES)},
        "contour_landmarks": list(t.contour_landmarks),
        "landmark_uv": {str(i): t.landmark_uv[i].round(4).tolist() for i in (0, 8, 16, 27, 30, 33, 36, 45, 48, 54)},
    }


def show_template(out_dir: Path | None, template_id: str = "menpo3d-face", size: int = 512) -> dict:
    """Template facts; with `out_dir`, also pictures: frontal U-V and parts, and the parts in U-V space."""
    from densereg_data.raster.api import render_uv_parts
    from densereg_data.face.template import frontal_in_pixels, load_template, uv_in_pixels

    facts = template_summary(template_id)
    if out_dir is None:
        return facts
    t = load_template(template_id)
    out_dir = _prepare_out_dir(out_dir)
    # frontal orthographic view filling the picture
    front = frontal_in_pixels(t.vertices, size, fill=0.95)
    _, uv, parts = render_uv_parts(front, t.faces, t.uv, t.face_parts, (size, size))
    write_png(out_dir / "template_uv.png", overlay(uv_colour(uv, parts), uv, parts, alpha=0.0))
    write_png(out_dir / "template_parts.png", overlay(PART_COLOURS[parts], uv, parts, alpha=0.0))
    # the parts laid out in U-V space (u right, v up), with the landmarks
    _, uv2, parts2 = render_uv_parts(uv_in_pixels(t.uv, size), t.faces, t.uv, t.face_parts, (size, size))
    lm = uv_in_pixels(t.landmark_uv, size)[:, :2]
    write_png(out_dir / "uv_parts.png", overlay(PART_COLOURS[parts2], uv2, parts2, landmarks=lm, alpha=0.0))
    (out_dir / "template.json").write_text(json.dumps(facts, indent=2))
    return facts
