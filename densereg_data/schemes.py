"""Landmark schemes: the point sets datasets annotate, as data.

A `LandmarkScheme` names its points' count, the index of its point at each of the 68 iBUG points (the
fit's and the network's common ground), the jaw-contour points that slide to the silhouette, the outer
eye corners (the NME normaliser) and its left/right flip pairs. ``ibug68`` is built in (from
`conventions`); others are JSON files: the shipped ones in ``templates/schemes/`` (``wflw98``) or a
file a user writes with the same keys (`load_scheme(path)`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError

__all__ = ["LandmarkScheme", "load_scheme", "SHIPPED_SCHEMES"]

#: The schemes that ship with densereg (``templates/schemes/<name>.json``), plus the built-in ibug68.
SHIPPED_SCHEMES = ("ibug68", "wflw98")
MAX_SCHEME_BYTES = 1 << 20


@dataclass(frozen=True)
class LandmarkScheme:
    """name; n points; ibug68: (68,) index of the scheme's point at each iBUG point; contour: the
    points that slide along the jaw's silhouette (the chin does not); eye_corners: (right, left) outer
    corners; flip: (n,) index of each point's mirror image; description: for people."""

    name: str
    n: int
    ibug68: tuple[int, ...]
    contour: tuple[int, ...]
    eye_corners: tuple[int, int]
    flip: tuple[int, ...]
    description: str = ""

    def __post_init__(self) -> None:
        def ok(indices, length=None):
            return (all(isinstance(i, int) and 0 <= i < self.n for i in indices)
                    and len(set(indices)) == len(indices) and (length is None or len(indices) == length))

        if not (isinstance(self.n, int) and 4 <= self.n <= 10_000):
            raise LandmarkFileError(f"landmark scheme {self.name!r}: n must be an integer in 4..10000")
        checks = [(ok(self.ibug68, cv.N_LANDMARKS), "ibug68 must be 68 distinct point indices"),
                  (ok(self.contour), "contour must be distinct point indices"),
                  (ok(self.eye_corners, 2), "eye_corners must be 2 distinct point indices"),
                  (ok(self.flip, self.n) and all(self.flip[self.flip[i]] == i for i in range(self.n)),
                   "flip must pair every point with its mirror (an involution of 0..n-1)")]
        for good, what in checks:
            if not good:
                raise LandmarkFileError(f"landmark scheme {self.name!r}: {what}")

    @property
    def extra(self) -> tuple[int, ...]:
        """The points without an iBUG twin."""
        twins = set(self.ibug68)
        return tuple(i for i in range(self.n) if i not in twins)


def _ibug68() -> LandmarkScheme:
    return LandmarkScheme("ibug68", cv.N_LANDMARKS, tuple(range(cv.N_LANDMARKS)),
                          tuple(i for i in cv.JAW if i != 8), cv.OUTER_EYE_CORNERS, cv.LANDMARK_FLIP,
                          "the 68 iBUG / Multi-PIE points (300-W)")


@functools.lru_cache(maxsize=16)
def load_scheme(name_or_path: str) -> LandmarkScheme:
    """A shipped scheme by name ("ibug68", "wflw98") or a scheme JSON file by path; one LandmarkFileError
    line for an unknown name or a bad file."""
    if name_or_path == "ibug68":
        return _ibug68()
    if name_or_path in SHIPPED_SCHEMES:
        from densereg_templates import DEFINITIONS_DIR

        path = DEFINITIONS_DIR / "schemes" / f"{name_or_path}.json"
    else:
        path = Path(name_or_path).expanduser()
        if not path.suffix == ".json":
            raise LandmarkFileError(f"unknown landmark scheme {name_or_path!r}; valid: {', '.join(SHIPPED_SCHEMES)} "
                                    "or a scheme .json file")
    from densereg_data.io.untrusted import read_capped

    try:
        doc = json.loads(read_capped(path, "landmark scheme", LandmarkFileError, MAX_SCHEME_BYTES).decode("utf-8"))
        return LandmarkScheme(str(doc["name"]), doc["n"], tuple(doc["ibug68"]), tuple(doc["contour"]),
                              tuple(doc["eye_corners"]), tuple(doc["flip"]), str(doc.get("description", "")))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise LandmarkFileError(f"{path}: not a landmark scheme ({type(exc).__name__}: {str(exc)[:100]})") from None
