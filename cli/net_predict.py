"""`densereg-net predict`'s files: the library returns arrays (`densereg_net.predict.Predictor`), this
writes them: STEM_iuv.png (`densereg_data.draw.iuv_image`), STEM_crop.png, STEM_overlay.png (the whole
image with the crop outlined beside the face zoomed, `densereg_net.draw.prediction_overlay`) and STEM.pts
(`densereg_data.io.landmarks.write_pts`, 1-based), never over an input and never into a shard folder
(`prediction_paths`). Faces found by a detector (`predict_faces`) are STEM_face0_iuv.png, ... in
`Predictor.predict_all`'s order (the largest first)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """"X0,Y0,X1,Y1" -> four floats; ShapeError (one line, exit 2) otherwise."""
    from densereg_data.errors import ShapeError

    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ShapeError(f"--bbox must be X0,Y0,X1,Y1 (4 numbers), got {text!r}")
    return values


#: The files `densereg-net predict` writes into --out, named after the image's stem.
PREDICTION_FILES = ("{stem}_iuv.png", "{stem}_crop.png", "{stem}_overlay.png", "{stem}.pts")


def prediction_paths(out_dir: str | Path, stem: str, inputs) -> list[Path]:
    """The paths of the four files, each refused (InputError, one line) if it would replace one of
    `inputs` (the checkpoint, the image, the landmark file) or land in a shard folder (`check_output`)."""
    from densereg_data.io.outputs import check_output

    paths = [Path(out_dir) / name.format(stem=stem) for name in PREDICTION_FILES]
    for path in paths:
        check_output(path, inputs, what=f"--out {out_dir}:")
    return paths


#: The files `densereg-net predict --fit` adds per face: the dense fit's landmarks, its pose and
#: coefficients (JSON), the fitted face as a Wavefront OBJ mesh in the image's pixels, and the combined
#: read-out (the mean of STEM.pts and STEM_fit.pts, `metrics.combined_landmarks`).
FIT_FILES = ("{stem}_fit.pts", "{stem}_fit.json", "{stem}_fit.obj", "{stem}_combined.pts")


def fit_paths(out_dir: str | Path, stem: str, inputs) -> list[Path]:
    """The paths of `FIT_FILES`, each checked as `prediction_paths` checks its own."""
    from densereg_data.io.outputs import check_output

    paths = [Path(out_dir) / name.format(stem=stem) for name in FIT_FILES]
    for path in paths:
        check_output(path, inputs, what=f"--out {out_dir}:")
    return paths


def output_paths(out_dir: str | Path, stem: str, inputs, fit: bool) -> tuple[list[Path], list[Path]]:
    """(`prediction_paths`, `fit_paths` when `fit` else []) of one face, every one checked."""
    return prediction_paths(out_dir, stem, inputs), fit_paths(out_dir, stem, inputs) if fit else []


def write_fit(prediction, facts, paths: list[Path]) -> list[str]:
    """Write the dense fit of one prediction (`Prediction.fit`) at `paths` (from `fit_paths`): the 68
    landmarks (.pts, 1-based), {pose, identity, expression, image_from_template, residuals} (.json),
    the mesh (.obj: v x y depth in image pixels, depth scaled like x and y; f 1-based) and the combined
    read-out's 68 landmarks (.pts)."""
    import json

    import numpy as np

    from densereg_data.geometry.affine import invert_affine
    from densereg_data.io.landmarks import write_pts
    from densereg_net.dense_fit import fitted_mesh

    pts, js, obj, combined = paths
    fit = prediction.fit
    image_from_crop = invert_affine(prediction.crop_from_image)
    lin = image_from_crop[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(lin))))  # image pixels per crop pixel, for depth
    crop_from_template = fit.camera.image_from_template  # (3, 4): crop x, y, depth of a template point
    top = lin @ crop_from_template[:2]
    top[:, 3] += image_from_crop[:, 2]
    image_from_template = np.vstack([top, scale * crop_from_template[2:]])
    doc = {"pose_deg": {"yaw": float(fit.pose[0]), "pitch": float(fit.pose[1]), "roll": float(fit.pose[2])},
           "identity": fit.identity.tolist(), "expression": fit.expression.tolist(),
           "image_from_template": image_from_template.tolist(), "landmarks": prediction.fit_landmarks.tolist(),
           "pixels": fit.pixels, "inlier_fraction": fit.inlier_fraction, "residual_median_px": fit.residual_median,
           "ms": fit.ms}
    js.write_text(json.dumps(doc, indent=1) + "\n")
    vertices, faces = fitted_mesh(fit, facts)
    xy = vertices[:, :2] @ lin.T + image_from_crop[:, 2]
    lines = [f"v {x:.3f} {y:.3f} {z * scale:.3f}" for (x, y), z in zip(xy, vertices[:, 2])]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    obj.write_text("# densereg dense fit: x, y image pixels, depth (smaller is nearer)\n" + "\n".join(lines) + "\n")
    return [str(write_pts(pts, prediction.fit_landmarks)), str(js), str(obj),
            str(write_pts(combined, prediction.combined_landmarks))]


def write_prediction(prediction, image, paths: list[Path], k: int) -> list[str]:
    """Write the four files of one prediction (image: (H, W, 3) uint8, the source) at `paths` (from
    `prediction_paths`); returns them."""
    from densereg_data.draw import iuv_image
    from densereg_data.io.images import write_png
    from densereg_data.io.landmarks import write_pts
    from densereg_net.draw import prediction_overlay

    iuv, crop, overlay, pts = paths
    iuv.parent.mkdir(parents=True, exist_ok=True)
    p = prediction
    files = [write_png(iuv, iuv_image(p.uv, p.parts)), write_png(crop, p.crop),
             write_png(overlay, prediction_overlay(image, p.uv, p.parts, p.crop_from_image,
                                                   p.landmarks if p.fit_landmarks is None
                                                   else p.fit_landmarks, k)),  # the dense fit's when there is one
             write_pts(pts, p.landmarks)]
    return [str(f) for f in files]


def write_outputs(prediction, pixels, stem: str, out_dir, inputs, predictor, fit: bool) -> list[str]:
    """Every file of one face: the four of `write_prediction`, and with `fit` those of `write_fit`
    (a face whose dense fit failed gets none of them, said in the log); all paths checked first."""
    paths, extra = output_paths(out_dir, stem, inputs, fit)
    files = write_prediction(prediction, pixels, paths, predictor.k)
    if fit and prediction.fit is not None:
        files += write_fit(prediction, predictor.facts, extra)
    elif fit:
        log.warning("%s: the dense fit failed; no %s files", stem, "/".join(p.suffix for p in extra))
    return files


def predict_faces(predictor, pixels, image_path, out_dir, inputs, detector: str, fit: bool = False) -> list[str]:
    """Predict every face `detector` finds in pixels (H, W, 3) uint8 (read from `image_path`) and write
    the four files of face i as STEM_face{i}_*; every path is checked before the first is written.
    No face: InputError "no face found in IMAGE" (one line, exit 2)."""
    from densereg_data.errors import InputError
    from densereg_net.detect import MIN_FACE_PX

    predictions = predictor.predict_all(pixels, detector, fit=fit)
    H, W = pixels.shape[:2]
    if not predictions:
        small = (f" (it is {W}x{H} pixels; the detector finds faces of {MIN_FACE_PX} pixels and larger)"
                 if min(H, W) < MIN_FACE_PX else "")
        raise InputError(f"no face found in {image_path}{small}")
    log.info("%d face%s found in %s", len(predictions), "" if len(predictions) == 1 else "s", image_path)
    stem = Path(image_path).stem
    for i in range(len(predictions)):  # every path checked before the first file is written
        output_paths(out_dir, f"{stem}_face{i}", inputs, fit)
    return [f for i, p in enumerate(predictions)
            for f in write_outputs(p, pixels, f"{stem}_face{i}", out_dir, inputs, predictor, fit)]
