"""`coco-wholebody`: the 68 face points of COCO-WholeBody v1.0 (Jin et al., ECCV 2020) on COCO 2017 images.

Files, under the root (the COCO folder):

    annotations/coco_wholebody_{train,val}_v1.0.json   COCO keypoint json plus, per person,
        ``face_kpts`` (68 x [x, y, v], flat), ``face_box`` [x, y, w, h], ``face_valid``
    {train,val}2017/<file_name>                         the COCO images

One `FaceAnnotation` per person whose ``face_valid`` is true (the authors label a face only when it is
clear enough; invalid faces are all zeros and are skipped silently, they are not problems). A valid
face whose 68 points are all (0, 0), or with no point of v > 0, is a `Problem`, as is a malformed entry.

Convention: visibility
    data_format.md: for face points "v > 0 means that the keypoint is reliable" (v may be a float);
    v = 0 is "not labeled" with x = y = 0. So v > 0 -> VISIBLE and v = 0 -> MISSING. COCO-WholeBody does
    not mark occluded face points: the body's "v = 1: labeled but not visible" is not used for faces
    (every point of every valid face in the released samples has v = 1), so OCCLUDED never occurs.

source: ``<file_name>#<annotation id>``. box: ``face_box`` as (x0, y0, x1, y1) (None when all zero).
The json is read with a size cap and parsed with `json` alone; a file that is not json, or not a
COCO-WholeBody json (no ``images``/``annotations``, no ``face_kpts`` at all), is one `LandmarkFileError`.

Convention: coordinate base
    `COORDINATE_BASE` = 0: the numbers are used unchanged. The evidence is STRONG for the base and
    weaker for the half pixel: the authors' data_format.md says the keypoints have "a 0-indexed
    location x,y" and the boxes "are 0-indexed", measured from the top left image corner, and that the
    format is COCO's unchanged; COCO's keypoints are integer pixel indices in [0, W - 1] (detectron2
    adds 0.5 to them to reach its corner-at-0 frame), which is densereg's pixel-centre convention.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError
from densereg_data.io.annotations import FaceAnnotation, Problem, relative_image_path
from densereg_data.io.untrusted import read_capped

__all__ = ["COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "available_splits", "read_annotations"]

SPLITS = ("train", "val")
SUBSETS: tuple[str, ...] = ()
LAYOUT = "the COCO folder: annotations/coco_wholebody_{train,val}_v1.0.json and {train,val}2017/ images"
LICENCE = ("COCO-WholeBody annotations: research and non-commercial use only (SenseTime, CC BY-NC 4.0); "
           "COCO images: Flickr terms of use")
COORDINATE_BASE = 0

N_POINTS = 68
#: The v1.0 train json is over a gigabyte; parsing takes several times its size in memory.
MAX_JSON_BYTES = 3 * 2**30


def annotation_file(root: Path, split: str) -> Path:
    return Path(root) / "annotations" / f"coco_wholebody_{split}_v1.0.json"


def available_splits(root: Path) -> tuple[str, ...]:
    return tuple(s for s in SPLITS if annotation_file(root, s).is_file())


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load(path: Path) -> dict:
    data = read_capped(path, "COCO-WholeBody json", LandmarkFileError, MAX_JSON_BYTES)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise LandmarkFileError(f"COCO-WholeBody json is not valid json ({str(exc).splitlines()[0]}): {path}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise LandmarkFileError(f"COCO-WholeBody json needs 'images' and 'annotations' lists: {path}")
    if doc["annotations"] and not any(isinstance(a, dict) and "face_kpts" in a for a in doc["annotations"]):
        raise LandmarkFileError(f"not a COCO-WholeBody json (no annotation has face_kpts): {path}")
    return doc


def _file_names(images: list) -> dict[int, str]:
    """image id -> file name (a relative POSIX path), for the well-formed image entries."""
    names = {}
    for image in images:
        if isinstance(image, dict) and isinstance(image.get("id"), int) and isinstance(image.get("file_name"), str):
            rel = relative_image_path(image["file_name"])
            if rel is not None:
                names[image["id"]] = rel
    return names


def _face(ann: dict, names: dict[int, str]) -> tuple[str, np.ndarray, np.ndarray, tuple | None]:
    """(source, points, state, box) of a valid face, or ValueError with the reason."""
    if ann.get("image_id") not in names:
        raise ValueError(f"image_id {ann.get('image_id')!r} is not among the json's images (with a usable file_name)")
    kpts = ann.get("face_kpts")
    if not isinstance(kpts, list) or len(kpts) != 3 * N_POINTS or not all(_number(v) for v in kpts):
        raise ValueError(f"face_kpts must be {3 * N_POINTS} finite numbers (68 x [x, y, v])")
    arr = np.array(kpts, dtype=np.float64).reshape(N_POINTS, 3)
    if (arr[:, 2] < 0).any():
        raise ValueError("a face point has v < 0")
    if not arr[:, :2].any():
        raise ValueError("face_valid is true but all 68 face points are (0, 0)")
    state = np.where(arr[:, 2] > 0, cv.VISIBLE, cv.MISSING).astype(np.uint8)
    if not state.any():
        raise ValueError("face_valid is true but no face point is labelled (all v = 0)")
    box = ann.get("face_box")
    if box is not None and not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
        raise ValueError("face_box must be 4 finite numbers [x, y, w, h]")
    box = None if box is None or not any(box) else (box[0], box[1], box[0] + box[2], box[1] + box[3])
    return f"{names[ann['image_id']]}#{ann['id']}", arr[:, :2], state, box


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The valid faces of `split` ("train" or "val") under `root`, in the json's order, and the entries
    that cannot be used.

    images: the folder holding the images (``<file_name>`` or ``<split>2017/<file_name>`` in it; default
    ``root/<split>2017``). Returns FaceAnnotations with points (68, 2) float64 (x, y) 0-based pixels,
    NaN where MISSING, state (68,) VISIBLE or MISSING, scheme "ibug68". A missing json is one
    `LandmarkFileError` line.
    """
    if split not in SPLITS:
        raise LandmarkFileError(f"COCO-WholeBody has no split {split!r} (valid: {', '.join(SPLITS)})")
    root = Path(root)
    path = annotation_file(root, split)
    doc = _load(path)
    names = _file_names(doc["images"])
    folders = [Path(images), Path(images) / f"{split}2017"] if images is not None else [root / f"{split}2017"]
    faces, problems, seen = [], [], set()
    for k, ann in enumerate(doc["annotations"]):
        where = f"{path.name} annotations[{k}]"
        if not isinstance(ann, dict) or not isinstance(ann.get("id"), int) or isinstance(ann.get("id"), bool):
            problems.append(Problem(where, split, f"not an annotation with an integer id: {where}"))
            continue
        valid = ann.get("face_valid")
        if valid is False:
            continue
        source = f"{names.get(ann.get('image_id'), 'image ' + str(ann.get('image_id')))}#{ann['id']}"
        try:
            if valid is not True:
                raise ValueError(f"face_valid must be true or false, got {valid!r}")
            if ann["id"] in seen:
                raise ValueError(f"annotation id {ann['id']} is repeated")
            seen.add(ann["id"])
            source, points, state, box = _face(ann, names)
            image = next((f / names[ann["image_id"]] for f in folders if (f / names[ann["image_id"]]).is_file()), None)
            faces.append(FaceAnnotation(source, image, points, state, "ibug68", split, (), None, box,
                                        {"image_id": ann["image_id"], "id": ann["id"]}))
        except (ValueError, LandmarkFileError) as exc:  # LandmarkFileError is a ValueError; both are one line
            problems.append(Problem(source, split, f"{exc} ({where})"))
    return faces, problems
