"""The one-call jobs behind `densereg-data label` and `densereg-data model list / show`."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.draw import iuv_image, overlay
from densereg_data.errors import DenseRegError
from densereg_data.face.api import label_face
from densereg_data.face.fit import FitConfig
from densereg_data.face.models import DEFAULT_FACE_MODEL, FACE_MODELS, load_face_model
from densereg_data.io.images import write_png

log = logging.getLogger(__name__)

__all__ = ["LabelSummary", "label_face_files", "list_face_models", "show_face_model"]


@dataclass(frozen=True)
class LabelSummary:
    """What `label_face_files` wrote and how well the fit matched (NME = mean error / eye distance)."""

    out_dir: Path
    nme: float
    mean_error_px: float
    pose: tuple[float, float, float]
    foreground_pixels: int


def _prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DenseRegError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def label_face_files(image_path: str | os.PathLike, landmarks_path: str | os.PathLike, out_dir: str | os.PathLike,
                     model: str = DEFAULT_FACE_MODEL, fit_config: FitConfig = FitConfig()) -> LabelSummary:
    """Fit face model `model` (``NAME[:PATH]``), render and write the dense labels of one face.

    Writes into `out_dir`: labels.npz (u, v, parts, mask at full resolution; fit parameters and
    errors; the model's spec, id and hash), label.json (the settings: package version, model, fit
    config, inputs), iuv.png and overlay.png.
    """
    from densereg_data.version import __version__

    labels = label_face(image_path, landmarks_path, model, fit_config=fit_config)
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
        identity=labels.identity,
        expression=labels.expression,
        model=np.array(labels.model),
        model_id=np.array(labels.model_id),
        model_hash=np.array(labels.model_hash),
    )
    settings = {"densereg_version": __version__,
                "model": {"spec": labels.model, "id": labels.model_id, "hash": labels.model_hash},
                "fit": asdict(fit_config), "image": str(image_path), "landmarks": str(landmarks_path)}
    (out_dir / "label.json").write_text(json.dumps(settings, indent=2) + "\n")
    write_png(out_dir / "iuv.png", iuv_image(labels.uv, labels.parts))
    write_png(out_dir / "overlay.png", overlay(labels.image, labels.uv, labels.parts, fit.landmarks, fit.fitted_landmarks))
    return LabelSummary(
        out_dir=out_dir,
        nme=fit.nme,
        mean_error_px=float(fit.residuals.mean()),
        pose=tuple(float(a) for a in fit.pose),
        foreground_pixels=int(labels.mask.sum()),
    )


def list_face_models() -> list[dict]:
    """The registered face models (none loaded), the default first: name, whether default, what PATH
    names, needs, licence."""
    entries = sorted(FACE_MODELS.values(), key=lambda e: (e.name != DEFAULT_FACE_MODEL, e.name))
    return [{"name": e.name, "default": e.name == DEFAULT_FACE_MODEL, "path": e.path, "needs": e.needs,
             "licence": e.licence} for e in entries]


def show_face_model(model: str = DEFAULT_FACE_MODEL, out_dir: str | os.PathLike | None = None, size: int = 512) -> dict:
    """The model's facts (`FaceModel.summary`); with `out_dir`, also writes them as template.json and
    its pictures (`densereg_data.face.pictures.PICTURES`: U-V over the mesh, parts, landmarks, jaw
    contour, prior samples; `size` pixels high).

    A file of those names already in `out_dir` is replaced only when the template.json there was written
    by an earlier `model show`; otherwise, as when `out_dir` lies in a shard folder (`check_output`),
    InputError, and nothing is written.
    """
    from densereg_data.errors import InputError
    from densereg_data.face.pictures import PICTURES, prior_samples_picture, template_pictures
    from densereg_data.io.outputs import check_output

    face_model = load_face_model(model)
    facts = face_model.summary()
    if out_dir is None:
        return facts
    check_output(out_dir)
    out_dir = _prepare_out_dir(out_dir)
    names = (*PICTURES, "template.json")
    existing = [n for n in names if os.path.lexists(out_dir / n)]
    if existing:
        try:
            earlier = json.loads((out_dir / "template.json").read_text()) if "template.json" in existing else None
        except (OSError, UnicodeDecodeError, ValueError):
            earlier = None
        if not (isinstance(earlier, dict) and {"model", "id", "hash", "frame", "parts"} <= earlier.keys()):
            raise InputError(f"--out {out_dir}: {existing[0]} already exists and is not from an earlier `model show`;"
                             " choose another folder")
    pictures = template_pictures(face_model.template, size)
    pictures["prior_samples.png"] = prior_samples_picture(face_model.template, face_model.shape, size)
    for name in PICTURES:
        write_png(out_dir / name, pictures[name])
    (out_dir / "template.json").write_text(json.dumps(facts, indent=2))
    return facts
