"""Annotated faces as datasets distribute them, read into one record: `FaceAnnotation`.

Every dataset adapter (`densereg_data.build.datasets`) turns its own files (WFLW's text lists,
COFW-68's .mat files, MERL-RAV's signed .pts, COCO-WholeBody's json, ...) into `FaceAnnotation`s and
a list of `Problem`s: an entry that cannot be used is a recorded problem with its reason, never an
exception; only a file that cannot be read at all raises one `LandmarkFileError` line.

Convention: points and states
    points (n, 2) float64, (x, y) image pixels, 0-based, an integer coordinate is a pixel centre (each
    adapter converts its dataset's base and says how it knows); NaN where the state is MISSING.
    state (n,) uint8: `conventions.VISIBLE`, `OCCLUDED` (placed behind an occluder, position
    estimated by the annotator) or `MISSING` (no position: self-occluded, not annotated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError
from densereg_data.schemes import SHIPPED_SCHEMES, load_scheme

__all__ = ["FaceAnnotation", "Problem", "SCHEME_SIZES", "IBUG68_SUBSETS", "as_ibug68", "relative_image_path"]

#: Landmark schemes a FaceAnnotation may carry, and their point counts (`densereg_data.schemes`).
SCHEME_SIZES = {name: load_scheme(name).n for name in SHIPPED_SCHEMES}
#: For each scheme, the index of its point at each of the 68 iBUG points (`LandmarkScheme.ibug68`).
IBUG68_SUBSETS: dict[str, tuple[int, ...]] = {name: load_scheme(name).ibug68 for name in SHIPPED_SCHEMES}


@dataclass(frozen=True, eq=False)
class FaceAnnotation:
    """One annotated face.

    source: unique within its dataset (the image path relative to the dataset's image root, POSIX
    separators, with ``#k`` appended for the k-th face of an image holding several); image: the image
    file, or None when the dataset's images are not at hand; points (n, 2), state (n,): the module's
    Convention; scheme: a key of `SCHEME_SIZES`; split: the official split ("train", "test", ...);
    subsets: the official subsets it belongs to (WFLW's attributes, MERL-RAV's view folder, ...);
    pose: (3,) float64 yaw, pitch, roll in degrees as the dataset gives it (densereg's convention,
    `geometry.camera`), or None; box: (4,) float64 x0, y0, x1, y1 pixels as the dataset gives it, or None.
    """

    source: str
    image: Path | None
    points: np.ndarray
    state: np.ndarray
    scheme: str = "ibug68"
    split: str = "all"
    subsets: tuple[str, ...] = ()
    pose: np.ndarray | None = None
    box: np.ndarray | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        where = f" in {self.source}" if self.source else ""
        n = SCHEME_SIZES.get(self.scheme)
        if n is None:
            raise LandmarkFileError(f"unknown landmark scheme {self.scheme!r}{where}; valid: {', '.join(SCHEME_SIZES)}")
        points = np.array(self.points, dtype=np.float64)
        state = np.array(self.state, dtype=np.uint8)
        if points.shape != (n, 2) or state.shape != (n,):
            raise LandmarkFileError(f"{self.scheme} landmarks must be ({n}, 2) with ({n},) states, got "
                                    f"{points.shape} and {state.shape}{where}")
        if not np.isin(state, (cv.MISSING, cv.VISIBLE, cv.OCCLUDED)).all():
            raise LandmarkFileError(f"landmark states must be 0 (missing), 1 (visible) or 2 (occluded){where}")
        placed = state != cv.MISSING
        if not np.isfinite(points[placed]).all():
            raise LandmarkFileError(f"a placed landmark is NaN or infinite{where}")
        if placed.any() and np.abs(points[placed]).max() > cv.LANDMARK_LIMIT_PX:
            raise LandmarkFileError(f"landmark coordinates beyond {cv.LANDMARK_LIMIT_PX:g} pixels{where}")
        points[~placed] = np.nan
        for name, value in (("pose", self.pose), ("box", self.box)):
            if value is not None:
                arr = np.array(value, dtype=np.float64)
                if arr.shape != ((3,) if name == "pose" else (4,)) or not np.isfinite(arr).all():
                    raise LandmarkFileError(f"{name} must be {'3' if name == 'pose' else '4'} finite numbers{where}")
                arr.setflags(write=False)
                object.__setattr__(self, name, arr)
        points.setflags(write=False)
        state.setflags(write=False)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "subsets", tuple(self.subsets))

    @property
    def placed(self) -> np.ndarray:
        """(n,) bool: the points with a position (visible or occluded)."""
        return self.state != cv.MISSING


@dataclass(frozen=True)
class Problem:
    """An annotation entry that cannot be used: source (as `FaceAnnotation.source`, or the file),
    split, reason (one line)."""

    source: str
    split: str
    reason: str


def as_ibug68(annotation: FaceAnnotation) -> FaceAnnotation:
    """The annotation on the 68 iBUG points (`IBUG68_SUBSETS`): itself for ibug68, its subset otherwise."""
    if annotation.scheme == "ibug68":
        return annotation
    idx = list(IBUG68_SUBSETS[annotation.scheme])
    return FaceAnnotation(annotation.source, annotation.image, annotation.points[idx], annotation.state[idx], "ibug68",
                          annotation.split, annotation.subsets, annotation.pose, annotation.box,
                          dict(annotation.extra, native=annotation))


def relative_image_path(text: str) -> str | None:
    """An annotation file's image path as a relative POSIX path (backslashes read as separators), or None
    when it could leave the image folder: absolute, empty, with ``..`` or a drive (``C:``)."""
    rel = PurePosixPath(text.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or ":" in rel.parts[0]:
        return None
    return rel.as_posix()
