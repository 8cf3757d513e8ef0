"""`cofw68`: the COFW-68 benchmark (Ghiasi & Fowlkes 2015), 68 iBUG points with occlusion on COFW's test faces.

Files, under the root (a checkout of ``golnazghiasi/cofw68-benchmark``, the folder that holds
``COFW68_Data/``):

    COFW68_Data/test_annotations/<i>_points.mat   ``Points`` 68x2 (x, y), ``Occ`` 1x68 (1 = occluded)
    COFW68_Data/cofw68_test_bboxes.mat            ``bboxes`` 507x4 [x y w h], row i for face i

``i`` (1..507) indexes the faces of Caltech's ``COFW_test.mat``, which stores the images inside itself
(MATLAB v7.3; not read here). Images extracted from it are looked for in the images folder (default
``COFW68_Data/test_annotations/``, where the authors' ``ReadCofw68Data.m`` writes them) as ``<i>.jpg``,
``<i>.png``, ``im_<i>.png`` (the authors' name) or ``<1345 + i>`` zero-padded to 6 digits ``.jpg``
(mmpose's COFW numbering, after the 1,345 training faces: ``001805.jpg`` is face 460).

Occluded points are OCCLUDED (placed where the annotator estimated them), the others VISIBLE. split:
"test" (the only one). source: ``<i>``. box: the bboxes row as (x0, y0, x1, y1), 0-based. A .mat that
cannot be used (v7.3/HDF5, truncated, no ``Points``, wrong shapes, occlusion flags other than 0/1) is
one `Problem` naming the file; an unreadable bboxes file is one `LandmarkFileError` line.

Convention: coordinate base
    `COORDINATE_BASE` = 1 (MATLAB's): 1 is subtracted from points and box corners on reading. The
    evidence is MODERATE: the README gives no base, but the authors' own ``VisualizeAnnotations.m``
    draws ``Points`` unchanged over ``imshow(IsT{i})`` and the box with ``rectangle('Position',
    bboxes(i, :))``, and MATLAB's ``imshow`` puts the centre of pixel (1, 1) at (1, 1); the annotations
    were made and saved in MATLAB (the .mat headers say so), and the boxes come from the 300-W detector
    whose .pts files are 1-based. The coordinates themselves (sub-pixel, clicked on an enlarged view) do
    not reveal a base.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError
from densereg_data.io.annotations import FaceAnnotation, Problem
from densereg_data.io.matfile import load_mat

__all__ = ["COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "available_splits", "read_annotations"]

SPLITS = ("test",)
SUBSETS: tuple[str, ...] = ()
LAYOUT = ("the cofw68-benchmark folder holding COFW68_Data/ (test_annotations/<i>_points.mat, "
          "cofw68_test_bboxes.mat); images extracted from COFW_test.mat via --images")
LICENCE = ("COFW-68 annotations: no licence stated, cite Ghiasi & Fowlkes 2015; COFW images (Caltech): research use, "
           "cite Burgos-Artizzu et al. 2013")
COORDINATE_BASE = 1

N_POINTS = 68
#: COFW's training faces; mmpose numbers the test faces after them.
N_TRAIN = 1345
#: A points file is about 1.5 kB, the bboxes file 2.6 kB.
MAX_MAT_BYTES = 2**20

DATA = "COFW68_Data"
_POINTS_FILE = re.compile(r"^([1-9][0-9]{0,5})_points\.mat$")  # no leading zeros: one file per i


class _MatError(ValueError):
    """A .mat that cannot be read (the message is the one-line reason)."""


def available_splits(root: Path) -> tuple[str, ...]:
    return SPLITS if (Path(root) / DATA / "test_annotations").is_dir() else ()


def _load(path: Path, names: tuple[str, ...]) -> dict:
    """The named variables of a COFW-68 .mat (`io.matfile.load_mat`: capped, no v7.3, no inflation bomb)."""
    return load_mat(path, names, "COFW-68 .mat", MAX_MAT_BYTES)


def _numeric(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _MatError(f"{name} is not numeric") from None


def _shape(arr: np.ndarray) -> str:
    return "x".join(map(str, arr.shape))


def _boxes(path: Path) -> np.ndarray | None:
    """(N, 4) float64 [x y w h] as stored, or None when the file is absent."""
    if not path.exists():
        return None
    try:
        raw = _load(path, ("bboxes",))
        if "bboxes" not in raw:
            raise _MatError("no bboxes variable")
        boxes = _numeric(raw["bboxes"], "bboxes")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise _MatError(f"bboxes must be Nx4, got {_shape(boxes)}")
    except _MatError as exc:
        raise LandmarkFileError(f"COFW-68 boxes unreadable: {exc}: {path}") from None
    except LandmarkFileError as exc:
        raise LandmarkFileError(str(exc).replace("COFW-68 .mat unreadable", "COFW-68 boxes unreadable")) from None
    return boxes


def _image(folder: Path, i: int) -> Path | None:
    for name in (f"{i}.jpg", f"{i}.png", f"im_{i}.png", f"{N_TRAIN + i:06d}.jpg"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The COFW-68 test faces under `root` (sorted by i) and the files that cannot be used.

    images: the folder of extracted images (default ``COFW68_Data/test_annotations``). Returns
    FaceAnnotations with points (68, 2) float64 (x, y) 0-based pixels, state (68,) VISIBLE or OCCLUDED,
    scheme "ibug68", split "test", source "<i>". A missing annotation folder is one `LandmarkFileError`.
    """
    if split not in SPLITS:
        raise LandmarkFileError(f"COFW-68 has no split {split!r} (valid: {', '.join(SPLITS)})")
    data = Path(root) / DATA
    folder = data / "test_annotations"
    if not folder.is_dir():
        raise LandmarkFileError(f"COFW-68 annotations not found: {folder} is not a folder")
    boxes = _boxes(data / "cofw68_test_bboxes.mat")
    image_dir = Path(images) if images is not None else folder
    files = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _POINTS_FILE.match(p.name)))
    faces, problems = [], []
    for i, path in files:
        where = f"{DATA}/test_annotations/{path.name}"
        try:
            mat = _load(path, ("Points", "Occ"))
            for name in ("Points", "Occ"):
                if name not in mat:
                    raise _MatError(f"no {name} variable")
            points, occ = _numeric(mat["Points"], "Points"), _numeric(mat["Occ"], "Occ")
            if points.shape != (N_POINTS, 2):
                raise _MatError(f"Points must be {N_POINTS}x2, got {_shape(points)}")
            if occ.size != N_POINTS or max(occ.shape) != N_POINTS:
                raise _MatError(f"Occ must be 1x{N_POINTS}, got {_shape(occ)}")
            points, occ = points - COORDINATE_BASE, occ.ravel()
            if not np.isin(occ, (0, 1)).all():
                raise _MatError("Occ must hold 0 (visible) or 1 (occluded)")
            box = None
            if boxes is not None and 1 <= i <= len(boxes):
                x, y, w, h = boxes[i - 1]
                box = (x - COORDINATE_BASE, y - COORDINATE_BASE, x - COORDINATE_BASE + w, y - COORDINATE_BASE + h)
            state = np.where(occ == 1, cv.OCCLUDED, cv.VISIBLE).astype(np.uint8)
            faces.append(FaceAnnotation(str(i), _image(image_dir, i), points, state, "ibug68", split, (), None, box,
                                        {"where": where}))
        except (_MatError, LandmarkFileError) as exc:
            reason = str(exc) if isinstance(exc, LandmarkFileError) and str(path) in str(exc) else f"{exc}: {where}"
            problems.append(Problem(where, split, reason))
    return faces, problems
