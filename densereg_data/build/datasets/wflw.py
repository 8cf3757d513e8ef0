"""`wflw`: WFLW (Wu et al., CVPR 2018), 98 points on WIDER FACE images, from the authors' text lists.

Files, under the root (the folder that holds ``WFLW_annotations/`` and ``WFLW_images/``):

    WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
        one face a line: x0 y0 ... x97 y97 (196 numbers), the detection box x_min y_min x_max y_max,
        six 0/1 attribute flags (pose expression illumination make-up occlusion blur), the image path
        relative to ``WFLW_images/``.
    WFLW_annotations/list_98pt_test/list_98pt_test_<attribute>.txt
        196 numbers and the path: the test faces having that attribute (a face is in every list of
        its attributes).

The test split comes from the full test list when it is there, else from the six attribute lists: a
face in several lists (same path, same coordinates) becomes one `FaceAnnotation` holding all their
subsets. Subsets are `SUBSETS` (``largepose`` is the README's "pose" flag). Every point is VISIBLE: WFLW
marks occlusion per face (the ``occlusion`` attribute), not per point. Negative coordinates are points
beyond the image's left or top edge, kept as given. box: the list's detection box (full lists only).

source: the image path, with ``#k`` appended (k = 1, 2, ...) when several faces of the split share an
image, k counting in the order of the list (attribute lists: order of first appearance, the lists read
in `SUBSETS` order). A line that cannot be used (wrong number of values, a non-number, a flag other
than 0/1, a path leaving ``WFLW_images/``) is one `Problem` naming the list and the line.

Convention: coordinate base
    `COORDINATE_BASE` = 0: the numbers are used unchanged. The evidence is WEAK (practice, not the
    authors' word): the authors' READMEs give no base, and the values (sub-pixel floats with six
    decimals, negative beyond the top/left edge) do not reveal one. mmpose's converter
    (``tools/dataset_converters/wflw2coco.py``) copies the numbers unchanged into COCO-style keypoints
    that mmpose uses as 0-based pixel coordinates (its test json for two WFLW images holds them so,
    all inside the images), and the public preprocessing scripts seen crop with them unchanged on
    OpenCV (0-based) images. An off-by-one would not show in the data; if the authors meant 1-based,
    every WFLW face here is 1 pixel down-right of where they put it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError
from densereg_data.io.annotations import FaceAnnotation, Problem, relative_image_path
from densereg_data.io.untrusted import read_capped

__all__ = ["COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "available_splits", "read_annotations"]

SPLITS = ("train", "test")
#: The six attributes, in the order of the full lists' flags.
SUBSETS = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
LAYOUT = ("the WFLW folder: WFLW_annotations/ (list_98pt_rect_attr_train_test/ and/or list_98pt_test/) "
          "and, for a build, WFLW_images/")
LICENCE = "WFLW: non-commercial research use only (images from WIDER FACE); cite Wu et al., CVPR 2018"
COORDINATE_BASE = 0

N_POINTS = 98
#: Values per line: 196 coordinates + path (attribute lists), + 4 box numbers + 6 flags (full lists).
SUBSET_LINE, FULL_LINE = 2 * N_POINTS + 1, 2 * N_POINTS + 11
#: The official train list is about 17 MB.
MAX_LIST_BYTES = 256 * 2**20

ANNOTATIONS, IMAGES = "WFLW_annotations", "WFLW_images"


def full_list(root: Path, split: str) -> Path:
    return Path(root) / ANNOTATIONS / "list_98pt_rect_attr_train_test" / f"list_98pt_rect_attr_{split}.txt"


def subset_list(root: Path, subset: str) -> Path:
    return Path(root) / ANNOTATIONS / "list_98pt_test" / f"list_98pt_test_{subset}.txt"


def available_splits(root: Path) -> tuple[str, ...]:
    """The splits whose lists exist under `root`."""
    return tuple(s for s in SPLITS if full_list(root, s).is_file()
                 or (s == "test" and any(subset_list(root, a).is_file() for a in SUBSETS)))


def _lines(path: Path, root: Path) -> list[tuple[str, int, list[str]]]:
    """(where, line number, values) of each non-blank line; a file that cannot be read or decoded is one
    `LandmarkFileError` line."""
    data = read_capped(path, "WFLW list", LandmarkFileError, MAX_LIST_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LandmarkFileError(f"WFLW list is not UTF-8 text (byte {exc.start}): {path}") from None
    where = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return [(where, n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _parse(values: list[str], expected: int, what: str) -> tuple[np.ndarray, list[float], str]:
    """(points (98, 2), the other numbers, path) of one line, or ValueError with the reason."""
    if len(values) != expected:
        raise ValueError(f"expected {expected} values ({what}), got {len(values)}")
    numbers = [float(v) for v in values[:-1]]  # ValueError names the bad token
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("a value is NaN or infinite")
    rel = relative_image_path(values[-1])
    if rel is None:
        raise ValueError(f"image path {values[-1]!r} is not a path inside {IMAGES}/")
    return np.array(numbers[:2 * N_POINTS]).reshape(N_POINTS, 2), numbers[2 * N_POINTS:], rel


def _read_full(path: Path, root: Path, split: str, problems: list[Problem]) -> list[dict]:
    faces, seen = [], {}
    for where, n, values in _lines(path, root):
        try:
            points, rest, image = _parse(values, FULL_LINE, "196 coordinates, 4 box numbers, 6 attribute flags, path")
            flags = rest[4:]
            if any(f not in (0.0, 1.0) for f in flags):
                raise ValueError(f"attribute flags must be 0 or 1, got {' '.join(values[200:206])}")
        except ValueError as exc:
            problems.append(Problem(f"{where}:{n}", split, f"{exc} in {where} line {n}"))
            continue
        key = (image, points.tobytes())
        if key in seen:
            problems.append(Problem(f"{where}:{n}", split, f"repeats the face of line {seen[key]} in {where} line {n}"))
            continue
        seen[key] = n
        subsets = tuple(a for a, f in zip(SUBSETS, flags) if f == 1.0)
        faces.append({"image": image, "points": points, "subsets": subsets, "box": rest[:4], "where": f"{where}:{n}"})
    return faces


def _read_subsets(root: Path, split: str, problems: list[Problem]) -> list[dict]:
    faces: dict[tuple[str, bytes], dict] = {}
    for subset in SUBSETS:
        path = subset_list(root, subset)
        if not path.exists():
            continue
        for where, n, values in _lines(path, root):
            try:
                points, _, image = _parse(values, SUBSET_LINE, "196 coordinates, path")
            except ValueError as exc:
                problems.append(Problem(f"{where}:{n}", split, f"{exc} in {where} line {n}"))
                continue
            face = faces.setdefault((image, points.tobytes()),
                                    {"image": image, "points": points, "subsets": (), "box": None, "where": f"{where}:{n}"})
            if subset not in face["subsets"]:
                face["subsets"] += (subset,)
    return list(faces.values())


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The faces of `split` ("train" or "test") under `root`, and the lines that cannot be used.

    images: the folder holding WFLW's image folders (default ``root/WFLW_images``). Faces whose image is
    not there are returned with ``image=None``. A missing list raises one `LandmarkFileError` line.
    Returns FaceAnnotations with points (98, 2) float64 (x, y) 0-based pixels, state (98,) VISIBLE,
    scheme "wflw98", in the lists' order.
    """
    if split not in SPLITS:
        raise LandmarkFileError(f"WFLW has no split {split!r} (valid: {', '.join(SPLITS)})")
    root = Path(root)
    problems: list[Problem] = []
    full = full_list(root, split)
    if full.exists() or split == "train":
        if not full.exists():
            raise LandmarkFileError(f"WFLW {split} list not found: {full}")
        raw = _read_full(full, root, split, problems)
    elif any(subset_list(root, a).exists() for a in SUBSETS):
        raw = _read_subsets(root, split, problems)
    else:
        raise LandmarkFileError(f"WFLW test lists not found: neither {full} nor {subset_list(root, '<attribute>')}")
    image_dir = Path(images) if images is not None else root / IMAGES
    per_image: dict[str, int] = {}
    for face in raw:
        per_image[face["image"]] = per_image.get(face["image"], 0) + 1
    counter: dict[str, int] = {}
    out = []
    for face in raw:
        image = face["image"]
        counter[image] = counter.get(image, 0) + 1
        source = f"{image}#{counter[image]}" if per_image[image] > 1 else image
        file = image_dir / image
        try:
            out.append(FaceAnnotation(source, file if file.is_file() else None, face["points"],
                                      np.full(N_POINTS, cv.VISIBLE, np.uint8), "wflw98", split, face["subsets"],
                                      None, face["box"], {"where": face["where"]}))
        except LandmarkFileError as exc:
            problems.append(Problem(source, split, f"{exc} ({face['where']})"))
    return out, problems
