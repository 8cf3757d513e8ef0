"""`300w-lp`: 300W-LP (Zhu et al., CVPR 2016), 3DDFA's training set: 300-W faces and their profiled views.

Files, under the root (the ``300W_LP`` folder of the release):

    <subset>/<name>.jpg, <subset>/<name>.mat     a 450x450 image and its 3DDFA fit (``Pose_Para`` read)
    landmarks/<subset>/<name>_pts.mat            ``pts_2d`` 68x2 (x, y) and ``pts_3d`` 68x2, for the
                                                 four subsets AFW, HELEN, IBUG, LFPW

subset: AFW, HELEN, IBUG, LFPW and their mirror images AFW_Flip, ... (`SUBSETS`); ``<name>`` is
``<SUBSET>_<300-W name>_<k>`` with k = 0 for the original view and k > 0 for the profiled ones. split:
"train" (the only one). source: ``<subset>/<name>.jpg``.

Faces of the four plain subsets: one per ``landmarks/<subset>/*_pts.mat`` (image or not); points =
``pts_2d`` (the 300-W mark-up: jaw on the visible contour), all VISIBLE; extra ``points_3d`` = ``pts_3d``
(68, 2) 0-based (the same points where the 3D face puts them). The images' own ``pt2d`` is not used:
in the release it is the original 300-W mark-up, the same for every profiled view of a face.

Faces of the ``_Flip`` subsets: the release ships no landmarks for them, so they are derived, one per
``<subset>_Flip/<name>.jpg`` or ``.mat`` found, from ``landmarks/<subset>/<name>_pts.mat`` mirrored:
``x' = IMAGE_WIDTH - 1 - x`` (0-based, pixel centres) with the iBUG points renumbered by
`conventions.LANDMARK_FLIP`. A flipped image without that file is a `Problem`. This assumes each ``_Flip``
image is the exact mirror of the same name in the plain subset (the release's intent; not checked here).

pose: `aflw2000_3d.pose_from_3ddfa` of the image .mat's ``Pose_Para`` (the _Flip .mat files carry the
mirrored fit), None without an image .mat. A landmark or image .mat that cannot be used (v7.3, truncated,
no ``pts_2d``, wrong shapes) is a `Problem` naming it.

Convention: coordinate base
    `COORDINATE_BASE` = 1 (MATLAB's), as for AFLW2000-3D (`aflw2000_3d`): the same authors made both
    sets with the same MATLAB pipeline, whose image frame is 1-based (``height + 1 - y``), from 300-W's
    1-based .pts files. The evidence is WEAK to MODERATE: nothing in the release states a base; mmpose's
    converter (``300wlp2coco.py``) and TFDS copy ``pts_2d`` unchanged (no base stated either).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.build.datasets.aflw2000_3d import matrix, pose_from_3ddfa
from densereg_data.io.matfile import load_mat
from densereg_data.errors import LandmarkFileError
from densereg_data.io.annotations import FaceAnnotation, Problem

__all__ = ["COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "available_splits", "read_annotations"]

SPLITS = ("train",)
PLAIN = ("AFW", "HELEN", "IBUG", "LFPW")
SUBSETS = PLAIN + tuple(f"{s}_Flip" for s in PLAIN)
LAYOUT = ("the 300W_LP folder: landmarks/{AFW,HELEN,IBUG,LFPW}/*_pts.mat and the image folders "
          "{AFW,HELEN,IBUG,LFPW}[_Flip]/*.jpg + .mat")
LICENCE = ("300W-LP: research use, cite Zhu et al., CVPR 2016 (3DDFA); images from 300-W (AFW, HELEN, IBUG, LFPW): "
           "research use only")
COORDINATE_BASE = 1

N_POINTS = 68
#: Every 300W-LP image is 450x450 (TFDS declares that shape); the _Flip mirror uses this width.
IMAGE_WIDTH = 450
LANDMARKS = "landmarks"
_PTS = re.compile(r"^(.+)_pts\.mat$")


def available_splits(root: Path) -> tuple[str, ...]:
    return SPLITS if any((Path(root) / LANDMARKS / s).is_dir() for s in PLAIN) else ()


def _landmarks(path: Path, root: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(pts_2d, pts_3d or None) of a ``*_pts.mat``, 0-based, or ValueError / LandmarkFileError."""
    where = path.relative_to(root).as_posix()
    mat = load_mat(path, ("pts_2d", "pts_3d"), "300W-LP landmark .mat")
    pts_2d = matrix(mat, "pts_2d", (N_POINTS, 2), where) - COORDINATE_BASE
    pts_3d = matrix(mat, "pts_3d", (N_POINTS, 2), where) - COORDINATE_BASE if "pts_3d" in mat else None
    return pts_2d, pts_3d


def _pose(folders: tuple[Path, ...], subset: str, name: str) -> np.ndarray | None:
    for folder in folders:
        path = folder / subset / f"{name}.mat"
        if path.is_file():
            mat = load_mat(path, ("Pose_Para",), "300W-LP image .mat")
            if "Pose_Para" not in mat:
                return None
            return pose_from_3ddfa(matrix(mat, "Pose_Para", (1, 7), f"{subset}/{name}.mat"))
    return None


def _mirror(points: np.ndarray | None) -> np.ndarray | None:
    if points is None:
        return None
    out = points[list(cv.LANDMARK_FLIP)].copy()
    out[:, 0] = IMAGE_WIDTH - 1 - out[:, 0]
    return out


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The 300W-LP faces under `root` (sorted by subset, name) and the files that cannot be used.

    images: the folder holding the ``<subset>/`` image folders when not under the root (their .mat files
    are looked for under the root first, then there). Returns FaceAnnotations with points (68, 2)
    float64 (x, y) 0-based pixels, state (68,) VISIBLE, scheme "ibug68", split "train", subsets
    (the folder,). A root without ``landmarks/`` is one `LandmarkFileError` line.
    """
    if split not in SPLITS:
        raise LandmarkFileError(f"300W-LP has no split {split!r} (valid: {', '.join(SPLITS)})")
    root = Path(root)
    if not (root / LANDMARKS).is_dir():
        raise LandmarkFileError(f"300W-LP landmarks not found: {root / LANDMARKS} is not a folder")
    folders = (root,) if images is None else (root, Path(images))
    image_dir = folders[-1]
    faces: list[FaceAnnotation] = []
    problems: list[Problem] = []

    def add(subset: str, name: str, landmark_file: Path, flip: bool) -> None:
        source = f"{subset}/{name}.jpg"
        try:
            pts_2d, pts_3d = _landmarks(landmark_file, root)
            if flip:
                pts_2d, pts_3d = _mirror(pts_2d), _mirror(pts_3d)
            pose = _pose(folders, subset, name)
            image = image_dir / source
            extra = {"where": landmark_file.relative_to(root).as_posix(), "mirrored": flip}
            if pts_3d is not None:
                extra["points_3d"] = pts_3d
            faces.append(FaceAnnotation(source, image if image.is_file() else None, pts_2d,
                                        np.full(N_POINTS, cv.VISIBLE, np.uint8), "ibug68", split, (subset,), pose,
                                        None, extra))
        except ValueError as exc:  # LandmarkFileError included: every message names the file
            problems.append(Problem(source, split, str(exc)))

    for subset in PLAIN:
        folder = root / LANDMARKS / subset
        files = sorted(p for p in folder.iterdir() if _PTS.match(p.name)) if folder.is_dir() else []
        for path in files:
            add(subset, _PTS.match(path.name).group(1), path, False)
    for subset in PLAIN:
        flipped = f"{subset}_Flip"
        names = sorted({p.stem for f in folders if (f / flipped).is_dir() for p in (f / flipped).iterdir()
                        if p.suffix.lower() in (".jpg", ".mat")})
        for name in names:
            landmark_file = root / LANDMARKS / subset / f"{name}_pts.mat"
            if landmark_file.is_file():
                add(flipped, name, landmark_file, True)
            else:
                where = landmark_file.relative_to(root).as_posix()
                problems.append(Problem(f"{flipped}/{name}.jpg", split,
                                        f"no landmarks to mirror for {flipped}/{name}: {where} not found"))
    return faces, problems
