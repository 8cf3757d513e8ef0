"""`aflw2000-3d`: AFLW2000-3D (Zhu et al., CVPR 2016 / TPAMI), 68 points of a 3D face fit on 2,000 AFLW faces.

Files, under the root (the ``AFLW2000`` folder of the release):

    imageNNNNN.jpg    a 450x450 crop of an AFLW image
    imageNNNNN.mat    ``pt3d_68`` 3x68 (x, y, z rows of the fitted model's 68 points, in the crop),
                      ``Pose_Para`` 1x7 [pitch yaw roll tx ty tz s] (radians), ``pt2d`` 2x21 (AFLW's
                      manual points, not read), ``roi`` (the crop in the AFLW image), model parameters

The 68 points are model points, not clicks: every one has a position (self-occluded jaw points at
their 3D place), so all are VISIBLE. split: "test" (AFLW2000-3D is 3DDFA's test set). source:
``imageNNNNN.jpg``. pose: `pose_from_3ddfa` of ``Pose_Para`` (None when the file has none). A .mat that
cannot be used (v7.3/HDF5, truncated, no ``pt3d_68``, wrong shapes, non-finite numbers) is a `Problem`
naming the file (`io.matfile.load_mat`). The 300W-LP reader (`lp300w`) shares `pose_from_3ddfa`: both sets come
from the same 3DDFA pipeline.

Convention: coordinate base
    `COORDINATE_BASE` = 1 (MATLAB's): 1 is subtracted from x and y. The evidence is MODERATE: the
    release states no base; the fit was made in MATLAB, whose image frame puts pixel (1, 1)'s centre
    at (1, 1), and 3DDFA's MATLAB code projects with ``ProjectVertex(2,:) = height + 1 - ProjectVertex(2,:)``
    (the 1-based flip; 0-based code writes ``height - 1 - y``, as PRNet's Python port does) and seeds
    the translation from the box in that same frame; the viewer script shipped in public copies of
    the release draws ``plot(pt3d_68(1,:), pt3d_68(2,:))`` unchanged over ``imshow(img)``. The numbers
    themselves (smooth model projections) cannot show a base.

Convention: pose (3DDFA -> densereg)
    3DDFA's ``RotationMatrix(phi, gamma, theta)`` is ``Rx(-phi) Ry(-gamma) Rz(-theta)`` in
    `densereg_data.geometry.camera`'s matrices, i.e. ``rotation_from_pose(yaw, pitch, roll).T`` of its
    own angles, and the image is ``f R v + t`` with y flipped: exactly densereg's orthographic camera
    ``Q = diag(1, -1, -1) R`` with the same R (BFM's frame is densereg's template frame: x to the
    viewer's right, y up, the face looking along +z). So the pose is `pose_from_rotation` of that R: for
    small angles about (-yaw, -pitch, -roll) of the file's, not equal to it at large ones (image00475:
    (65.6, 40.0, 20.0) degrees in the file is (-61.1, -49.1, 36.6) here). The test checks the converted
    pose against the 3D points themselves (the nose's direction and the eye line) on the real files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError
from densereg_data.geometry.camera import pose_from_rotation, rotation_from_pose
from densereg_data.io.annotations import FaceAnnotation, Problem
from densereg_data.io.matfile import load_mat

__all__ = ["COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "available_splits",
           "matrix", "pose_from_3ddfa", "read_annotations"]

SPLITS = ("test",)
SUBSETS: tuple[str, ...] = ()
LAYOUT = "the AFLW2000 folder of AFLW2000-3D: imageNNNNN.jpg + imageNNNNN.mat pairs"
LICENCE = ("AFLW2000-3D: research use, cite Zhu et al., CVPR 2016 (3DDFA); AFLW images: AFLW's licence "
           "(research use, by request from TU Graz)")
COORDINATE_BASE = 1

N_POINTS = 68
#: A 3DDFA .mat is about 4 kB.
_MAT = re.compile(r"^(image\d+)\.mat$")


def available_splits(root: Path) -> tuple[str, ...]:
    root = Path(root)
    return SPLITS if root.is_dir() and any(_MAT.match(p.name) for p in root.iterdir()) else ()


def matrix(mat: dict, name: str, shape: tuple[int, int], where: str) -> np.ndarray:
    """Variable `name` of a loaded .mat as a finite float64 array of `shape`, or ValueError naming it."""
    if name not in mat:
        raise ValueError(f"no {name} variable in {where}")
    try:
        arr = np.asarray(mat[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not numeric in {where}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} must be {shape[0]}x{shape[1]}, got {'x'.join(map(str, arr.shape))} in {where}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values in {where}")
    return arr


def pose_from_3ddfa(pose_para: np.ndarray) -> np.ndarray:
    """3DDFA's ``Pose_Para`` (7,) [pitch yaw roll tx ty tz s], radians -> (3,) float64 yaw, pitch, roll in
    degrees in densereg's convention (`geometry.camera`); see the module's Convention: pose."""
    pitch, yaw, roll = np.degrees(np.asarray(pose_para, dtype=np.float64).ravel()[:3])
    return pose_from_rotation(rotation_from_pose(yaw, pitch, roll).T)


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The AFLW2000-3D faces under `root` (sorted by file name) and the .mat files that cannot be used.

    images: the folder of the .jpg files when not beside the .mat files. Returns FaceAnnotations with
    points (68, 2) float64 (x, y) 0-based pixels, state (68,) VISIBLE, scheme "ibug68", split "test",
    pose (3,) degrees or None. A root that is not a folder is one `LandmarkFileError` line.
    """
    if split not in SPLITS:
        raise LandmarkFileError(f"AFLW2000-3D has no split {split!r} (valid: {', '.join(SPLITS)})")
    root = Path(root)
    if not root.is_dir():
        raise LandmarkFileError(f"AFLW2000-3D folder not found: {root} is not a folder")
    image_dir = Path(images) if images is not None else root
    faces: list[FaceAnnotation] = []
    problems: list[Problem] = []
    for path in sorted(p for p in root.iterdir() if _MAT.match(p.name)):
        source = f"{path.stem}.jpg"
        try:
            mat = load_mat(path, ("pt3d_68", "Pose_Para"), "AFLW2000-3D .mat")
            pt3d = matrix(mat, "pt3d_68", (3, N_POINTS), path.name)
            pose = pose_from_3ddfa(matrix(mat, "Pose_Para", (1, 7), path.name)) if "Pose_Para" in mat else None
            image = image_dir / source
            faces.append(FaceAnnotation(source, image if image.is_file() else None, pt3d[:2].T - COORDINATE_BASE,
                                        np.full(N_POINTS, cv.VISIBLE, np.uint8), "ibug68", split, (), pose, None,
                                        {"where": path.name}))
        except ValueError as exc:  # LandmarkFileError included: every message names the file
            problems.append(Problem(path.name, split, str(exc)))
    return faces, problems
