"""For tests and benchmarks only (the pipeline never imports this): faces with known truth and label errors.

- `synthetic_face`: shapes from the model's prior, random poses, noisy 68 landmarks, to measure the fit
  against ground truth (pose error, per-pixel label error), which real data cannot give;
- `landmark_label_errors`: label consistency on real faces, with the one U-V -> 3D lookup of
  `densereg_data.format.template_facts`;
- `wflw_layout`, `coco_wholebody_layout`: the small real samples in shared data (mmpose's test copies)
  laid out as their datasets distribute them, for builds and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.face.fit import FitResult, Fitter
from densereg_data.geometry.camera import FLIP_YZ, Camera, rotation_angle, rotation_from_pose
from densereg_data.format.template_facts import TemplateFacts
from densereg_data.raster.api import interpolate, rasterize


@dataclass(frozen=True)
class SyntheticFace:
    """coefficients (n, 3); camera (orthographic); landmarks (68, 2) noisy px; clean (68, 2) px."""

    coefficients: np.ndarray
    camera: Camera
    landmarks: np.ndarray
    clean_landmarks: np.ndarray
    image_size: tuple[int, int]


def synthetic_face(
    fitter: Fitter,
    rng: np.random.Generator,
    *,
    max_yaw: float = 75.0,
    max_pitch: float = 30.0,
    max_roll: float = 30.0,
    noise: float = 0.01,
    size: int = 256,
) -> SyntheticFace:
    """A random face: prior shape, uniform pose within the bounds, landmarks with Gaussian noise of
    `noise` x the outer-eye-corner distance (per coordinate). The jaw landmarks are taken on the
    silhouette, as an annotator marks them (the fit's own contour rule applied to the true shape)."""
    coeffs = fitter.model.sample(rng)
    pose = rng.uniform([-max_yaw, -max_pitch, -max_roll], [max_yaw, max_pitch, max_roll])
    rotation = FLIP_YZ @ rotation_from_pose(*pose)
    scale = 0.45 * size / fitter.template.eye_distance * 1.0  # eye distance ~ 45% of the image when frontal
    camera = Camera("orthographic", rotation, np.array([(size - 1) / 2, (size - 1) / 2, 0.0]), scale=scale)
    clean = fitter.project_landmarks(coeffs, camera)
    eye = cv.eye_distance(clean)
    landmarks = clean + rng.normal(scale=noise * eye, size=clean.shape)
    return SyntheticFace(coeffs, camera, landmarks, clean, (size, size))


def pose_error(fit: FitResult, truth: SyntheticFace) -> float:
    """Geodesic angle (degrees) between the fitted and the true head rotation."""
    return rotation_angle(fit.camera.rotation, truth.camera.rotation)


def label_errors(fitter: Fitter, fit: FitResult, truth: SyntheticFace) -> np.ndarray:
    """Per-pixel label error over the pixels both renders cover: the template distance between the
    fitted and the true correspondence at the pixel, divided by the template's eye distance. (n,)"""
    template = fitter.template
    renders = []
    for coeffs, camera in ((fit.coefficients, fit.camera), (truth.coefficients, truth.camera)):
        vertices = camera.project(fitter.model.shape(coeffs))
        raster = rasterize(vertices, template.faces, truth.image_size)
        renders.append((raster.mask, interpolate(raster, template.faces, template.vertices)))
    both = renders[0][0] & renders[1][0]
    return np.linalg.norm(renders[0][1][both] - renders[1][1][both], axis=1) / template.eye_distance


def landmark_label_errors(uv: np.ndarray, landmarks: np.ndarray, landmark_uv: np.ndarray, facts: TemplateFacts) -> np.ndarray:
    """Label consistency: per landmark, template distance / eye distance between the U-V rendered at the
    landmark's pixel and the landmark's own U-V; NaN where that pixel is background or off the image.

    uv: (H, W, 2) rendered; landmarks (n, 2) px; landmark_uv (n, 2); facts: the template's scoring facts.
    """
    h, w = uv.shape[:2]
    cols, rows = np.round(landmarks[:, 0]).astype(int), np.round(landmarks[:, 1]).astype(int)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    out = np.full(len(landmarks), np.nan)
    got = uv[rows[inside], cols[inside]].astype(np.float64)
    fg = np.any(got > 0, axis=1)
    dist = np.linalg.norm(facts.xyz(got) - facts.xyz(landmark_uv[inside]), axis=1) / facts.eye_distance
    out[np.flatnonzero(inside)[fg]] = dist[fg]
    return out


def wflw_layout(mmpose_json: Path, out: Path) -> Path:
    """WFLW's distributed layout (WFLW_annotations/list_98pt_rect_attr_train_test/
    list_98pt_rect_attr_test.txt + WFLW_images/) made from mmpose's WFLW test json and the images beside
    it (symbolic links): 196 coordinates (mmpose keeps WFLW's numbers), the box, six zero attribute flags."""
    import json

    doc = json.loads(Path(mmpose_json).read_text())
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    lists = out / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    (out / "WFLW_images").mkdir()
    lines = []
    for a in doc["annotations"]:
        xy = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        x, y, w, h = a["bbox"]
        name = names[a["image_id"]]
        link = out / "WFLW_images" / name
        if not link.exists():
            link.symlink_to(Path(mmpose_json).parent / name)
        lines.append(" ".join(f"{v:.6f}" for v in xy.ravel()) + f" {x:.0f} {y:.0f} {x + w:.0f} {y + h:.0f} 0 0 0 0 0 0 {name}")
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")
    return out


def coco_wholebody_layout(folder: Path, out: Path) -> Path:
    """COCO-WholeBody's distributed layout (annotations/coco_wholebody_val_v1.0.json, val2017/) made from
    mmpose's test json and the images in the same `folder` (symbolic links)."""
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "coco_wholebody_val_v1.0.json").symlink_to(Path(folder) / "test_coco_wholebody.json")
    (out / "val2017").symlink_to(Path(folder), target_is_directory=True)
    return out
