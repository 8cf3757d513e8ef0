"""`merlrav`: MERL-RAV (Kumar et al., CVPR 2020), 68 iBUG points with visibility on AFLW's faces.

Files, under the root (a checkout of ``abhi1kumar/MERL-RAV_dataset``, the folder that holds
``merl_rav_labels/``):

    merl_rav_labels/<view>/<set>/labels/imageNNNNN.pts      the face of AFLW's imageNNNNN.jpg
    merl_rav_labels/<view>/<set>/labels/imageNNNNN_K.pts    the K-th labelled face of that image

view: frontal, left, lefthalf, right, righthalf (`SUBSETS`); set: trainset, testset (splits "train",
"test"). The images are AFLW's own (``aflw/flickr/{0,2,3}/imageNNNNN.jpg`` in the authors' layout,
default images folder ``<root>/aflw``): they are found by file name anywhere under the images folder,
``imageNNNNN_K.jpg`` first (the authors' ``merl_rav_organized`` copies), then ``imageNNNNN.jpg``; with
one name in several subfolders the first in sorted order wins.

Convention: visibility (the authors' README)
    positive (x, y): VISIBLE at (x, y); negative (-x, -y): externally occluded, OCCLUDED at the
    annotator's estimate (x, y); (-1, -1): self-occluded, MISSING (no position). A point with one
    positive and one negative (or zero) coordinate, other than the (-1, -1) marker, has no meaning:
    the face is a `Problem`, as is a file that `read_pts` refuses (truncated, not 68 points, ...).

source: ``imageNNNNN.jpg`` or, for ``imageNNNNN_K.pts``, ``imageNNNNN.jpg#K``; a label name seen twice
(in two view or set folders) is a `Problem` the second time. extra: ``where`` (the label file, relative
to the root).

Convention: coordinate base
    `COORDINATE_BASE` = 1: the files are read with `densereg_data.io.landmarks.read_pts` (one rule for
    every .pts file: 1 is subtracted in exact decimal arithmetic), then the signs are decoded from the
    0-based values (v < -1 is a negative number on disk; an occluded point's 0-based position is
    ``-v - 2``, within a unit in the last place of the exact value). The evidence is WEAK: the README
    gives no base. For 1: the files are 300-W's format byte for byte (``version: 1``, ``n_points:  68`` with two
    spaces), and "We follow the 68-landmark labeling scheme of the 300-W", whose .pts files are 1-based; the
    authors' own code (LUVLi's ``get_jsons_from_config.py``) reads MERL-RAV and 300-W .pts files with
    one function and no shift, training on both together; and on the one shared face with AFLW's own
    manual points in the same image (mmpose's ``image04476``) the eye and mouth corners of MERL-RAV lie
    on median 0.2 px right and 0.7 px below AFLW's, the direction a 1-based mark-up would have if
    AFLW's were 0-based (itself unstated; 8 point pairs on one face, and the other face,
    ``image22568``, is too noisy to tell). If the authors meant 0-based,
    every MERL-RAV point here is 1 pixel up-left of where they put it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError
from densereg_data.io.annotations import FaceAnnotation, Problem
from densereg_data.io.landmarks import read_pts

__all__ = ["COORDINATE_BASE", "LAYOUT", "LICENCE", "SPLITS", "SUBSETS", "available_splits", "decode_signed",
           "read_annotations"]

SPLITS = ("train", "test")
SUBSETS = ("frontal", "left", "lefthalf", "right", "righthalf")
LAYOUT = ("the MERL-RAV folder holding merl_rav_labels/<view>/{trainset,testset}/labels/*.pts; "
          "AFLW's images under <root>/aflw or --images (searched by file name)")
LICENCE = ("MERL-RAV labels: no licence stated, cite Kumar et al., CVPR 2020; AFLW images: AFLW's licence "
           "(research use, by request from TU Graz)")
COORDINATE_BASE = 1

N_POINTS = 68
LABELS = "merl_rav_labels"
SET_FOLDERS = {"train": "trainset", "test": "testset"}
_LABEL = re.compile(r"^(image\d+)(?:_(\d+))?\.pts$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def available_splits(root: Path) -> tuple[str, ...]:
    """The splits with at least one view folder under `root`."""
    return tuple(s for s in SPLITS if any(_labels_dir(root, v, s).is_dir() for v in SUBSETS))


def _labels_dir(root: Path, view: str, split: str) -> Path:
    return Path(root) / LABELS / view / SET_FOLDERS[split] / "labels"


def decode_signed(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MERL-RAV's signed points -> (points, state).

    values: (n, 2) float64, what `read_pts` returns for a MERL-RAV file (the numbers on disk minus
    `PTS_ORIGIN`). Returns points (n, 2) float64 0-based (NaN where MISSING) and state (n,) uint8 per
    the module's Convention. Raises ValueError naming the first point whose signs disagree.
    """
    raw = values + cv.PTS_ORIGIN  # only the signs are taken from this sum
    positive, negative = raw > 0, raw < 0
    marker = (values == -1.0 - cv.PTS_ORIGIN).all(axis=1)  # "-1 -1" on disk
    visible, occluded = positive.all(axis=1), negative.all(axis=1) & ~marker
    bad = ~(visible | occluded | marker)
    if bad.any():
        i = int(np.argmax(bad))
        x, y = raw[i]
        raise ValueError(f"point {i + 1} ({x:g}, {y:g}) has mixed signs: neither visible (both positive), "
                         f"occluded (both negative) nor the self-occlusion marker (-1, -1)")
    points = np.where(occluded[:, None], -values - 2.0 * cv.PTS_ORIGIN, values)
    state = np.where(visible, cv.VISIBLE, np.where(occluded, cv.OCCLUDED, cv.MISSING)).astype(np.uint8)
    points[state == cv.MISSING] = np.nan
    return points, state


def _image_index(folder: Path) -> dict[str, Path]:
    """File name -> path of every image under `folder` (first in sorted walk order wins)."""
    index: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(_IMAGE_SUFFIXES):
                index.setdefault(name, Path(dirpath) / name)
    return index


def _find_image(index: dict[str, Path], stem: str, base: str) -> Path | None:
    for name in (stem, base):
        for suffix in (".jpg", ".png"):
            if name + suffix in index:
                return index[name + suffix]
    return None


def read_annotations(root: Path, split: str, images: Path | None = None) -> tuple[list[FaceAnnotation], list[Problem]]:
    """The MERL-RAV faces of `split` ("train" or "test") under `root`, and the files that cannot be used.

    images: the folder searched (recursively, by file name) for AFLW's images; default ``root/aflw``.
    Returns FaceAnnotations with points (68, 2) float64 (x, y) 0-based pixels (NaN where MISSING),
    state (68,) VISIBLE / OCCLUDED / MISSING, scheme "ibug68", subsets (the view folder,), sorted by
    (view, file name). A root without ``merl_rav_labels/`` is one `LandmarkFileError` line.
    """
    if split not in SPLITS:
        raise LandmarkFileError(f"MERL-RAV has no split {split!r} (valid: {', '.join(SPLITS)})")
    root = Path(root)
    if not (root / LABELS).is_dir():
        raise LandmarkFileError(f"MERL-RAV labels not found: {root / LABELS} is not a folder")
    image_dir = Path(images) if images is not None else root / "aflw"
    index = _image_index(image_dir) if image_dir.is_dir() else {}
    faces: list[FaceAnnotation] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for view in SUBSETS:
        folder = _labels_dir(root, view, split)
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".pts"):
            where = path.relative_to(root).as_posix()
            m = _LABEL.match(path.name)
            if m is None:
                problems.append(Problem(where, split, f"label name is not imageNNNNN.pts or imageNNNNN_K.pts: {where}"))
                continue
            base, k = m.group(1), m.group(2)
            source = f"{base}.jpg" + (f"#{int(k)}" if k else "")
            if source in seen:
                problems.append(Problem(where, split, f"face {source} is labelled twice ({seen[source]} and {where})"))
                continue
            seen[source] = where
            try:
                points, state = decode_signed(read_pts(path, n_points=N_POINTS).points)
                image = _find_image(index, path.stem, base)
                faces.append(FaceAnnotation(source, image, points, state, "ibug68", split, (view,), None, None,
                                            {"where": where}))
            except LandmarkFileError as exc:
                problems.append(Problem(where, split, str(exc) if str(path) in str(exc) else f"{exc}: {where}"))
            except ValueError as exc:
                problems.append(Problem(where, split, f"{exc} in {where}"))
    return faces, problems
